//! Prometheus metrics (text format), served with /healthz and /readyz on
//! the `admin.metrics` address. The daemon updates the registry; what the
//! endpoint must ask at request time (data-path counters, task health) it
//! asks through [`Source`], so this module knows nothing of the daemon.

use std::{
    future::Future,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabels {
    pub service: String,
    pub member: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapOpLabels {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub service: String,
    pub member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlipLabels {
    pub service: String,
    pub reason: String,
}

/// A fleet service's exchanges with the coordination engine: `result` is
/// "won" or "lost" for proposals, "failed" for any failed operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FleetOpLabels {
    pub service: String,
    pub op: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CounterLabels {
    pub counter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SweptLabels {
    pub reason: String,
}

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

fn check_buckets() -> Histogram {
    // 0.25 ms .. ~4 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

fn detection_buckets() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

pub struct Metrics {
    registry: Registry,
    pub member_up: Family<MemberLabels, Gauge>,
    pub active_member: Family<MemberLabels, Gauge>,
    pub flips: Family<FlipLabels, Counter>,
    pub check_seconds: Hist<MemberLabels>,
    pub detection_to_write_seconds: Hist<ServiceLabels>,
    pub datapath: Family<CounterLabels, Gauge<u64, AtomicU64>>,
    pub flows: Family<StateLabels, Gauge<u64, AtomicU64>>,
    pub flow_capacity: Gauge<u64, AtomicU64>,
    pub flow_peak: Gauge<u64, AtomicU64>,
    pub flows_swept: Family<SweptLabels, Counter>,
    pub flow_sweep_errors: Counter,
    pub flow_sweep_seconds: Gauge<f64, AtomicU64>,
    pub metrics_refused: Counter,
    /// Deaths of the daemon's supervised tasks, by task.
    pub task_deaths: Family<TaskLabels, Counter>,
    /// Failed map operations of the map writer, by operation.
    pub map_errors: Family<MapOpLabels, Counter>,
    /// Reactive signals the data path saw about each member, by kind.
    pub reactive_signals: Family<SignalLabels, Counter>,
    /// Signal events the daemon could not hand to a busy service.
    pub reactive_events_dropped: Counter,
    /// Fleet mode: the epoch of the decision this host applied.
    pub fleet_epoch: Family<ServiceLabels, Gauge>,
    /// Fleet mode: 1 while the host holds its lease and watches.
    pub fleet_attached: Family<ServiceLabels, Gauge>,
    /// Fleet mode: live hosts in the fleet's view.
    pub fleet_hosts: Family<ServiceLabels, Gauge>,
    /// Fleet mode: operations on the engine, by result.
    pub fleet_ops: Family<FleetOpLabels, Counter>,
}

impl Metrics {
    // Over 100 lines on purpose: one flat registration per metric, in the
    // order /metrics lists them.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("redirector");
        let member_up = Family::default();
        let active_member = Family::default();
        let flips = Family::default();
        let check_seconds: Hist<MemberLabels> = Family::new_with_constructor(check_buckets);
        let detection_to_write_seconds: Hist<ServiceLabels> =
            Family::new_with_constructor(detection_buckets);
        let datapath = Family::default();
        registry.register(
            "member_up",
            "1 if the member passes its checks",
            member_up.clone(),
        );
        registry.register(
            "active_member",
            "1 for the member a service's VIP points at",
            active_member.clone(),
        );
        registry.register(
            "flips",
            "Changes of the active member, by reason",
            flips.clone(),
        );
        registry.register(
            "check_duration_seconds",
            "Health check latency",
            check_seconds.clone(),
        );
        registry.register(
            "detection_to_write_seconds",
            "From the first failed check to the map write, per failover",
            detection_to_write_seconds.clone(),
        );
        registry.register(
            "datapath_packets",
            "Kernel data-path counters (per-CPU sums)",
            datapath.clone(),
        );
        let flows = Family::default();
        let flow_capacity = Gauge::default();
        let flow_peak = Gauge::default();
        let flows_swept = Family::default();
        let flow_sweep_errors = Counter::default();
        let flow_sweep_seconds = Gauge::default();
        registry.register(
            "flows",
            "Flows in the flow table at the last sweep, by state (open, closing)",
            flows.clone(),
        );
        registry.register(
            "flow_capacity",
            "Entries the flow table can hold (datapath.conntrack_entries)",
            flow_capacity.clone(),
        );
        registry.register(
            "flow_peak",
            "Most flows any sweep has seen since start (how close to full the table ran)",
            flow_peak.clone(),
        );
        registry.register(
            "flows_swept",
            "Flow entries the sweep removed, by reason (idle, closing, orphan_reply)",
            flows_swept.clone(),
        );
        registry.register(
            "flow_sweep_errors",
            "Flow sweeps that failed",
            flow_sweep_errors.clone(),
        );
        registry.register(
            "flow_sweep_seconds",
            "Wall time of the last flow sweep",
            flow_sweep_seconds.clone(),
        );
        let log = crate::logging::counters();
        registry.register(
            "log_write_errors",
            "Log lines dropped because writing them to stderr failed",
            log.write_errors,
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr did not keep up (queue full)",
            log.dropped,
        );
        let metrics_refused = Counter::default();
        registry.register(
            "metrics_connections_refused",
            "Connections to this endpoint closed at accept (over the limit) or accepts that failed",
            metrics_refused.clone(),
        );
        let task_deaths = Family::default();
        registry.register(
            "task_deaths",
            "Deaths (panics, unexpected returns) of supervised tasks, by task",
            task_deaths.clone(),
        );
        let map_errors = Family::default();
        registry.register(
            "map_errors",
            "Map operations of the map writer that failed (the data path keeps its previous state), by operation",
            map_errors.clone(),
        );
        let reactive_signals = Family::default();
        registry.register(
            "reactive_signals",
            "Signals about a member seen in the application's own traffic (refused, reset, syn_unanswered, unreachable, retransmit, redis_error), by service, member and kind",
            reactive_signals.clone(),
        );
        let reactive_events_dropped = Counter::default();
        registry.register(
            "reactive_events_dropped",
            "Signal events not handed to a service because its queue was full (its counts arrive with the next event)",
            reactive_events_dropped.clone(),
        );
        let fleet_epoch = Family::default();
        registry.register(
            "fleet_epoch",
            "Fleet mode: the epoch of the fleet decision this host has applied, by service",
            fleet_epoch.clone(),
        );
        let fleet_attached = Family::default();
        registry.register(
            "fleet_attached",
            "Fleet mode: 1 while this host holds its lease and watches the decision, 0 while cut off from the engine",
            fleet_attached.clone(),
        );
        let fleet_hosts = Family::default();
        registry.register(
            "fleet_hosts",
            "Fleet mode: live hosts (holding their lease) in this host's view of the fleet",
            fleet_hosts.clone(),
        );
        let fleet_ops = Family::default();
        registry.register(
            "fleet_operations",
            "Fleet mode: operations on the coordination engine, by service, operation and result (won, lost, ok, failed)",
            fleet_ops.clone(),
        );
        Arc::new(Self {
            fleet_epoch,
            fleet_attached,
            fleet_hosts,
            fleet_ops,
            reactive_signals,
            reactive_events_dropped,
            task_deaths,
            map_errors,
            registry,
            metrics_refused,
            flows,
            flow_capacity,
            flow_peak,
            flows_swept,
            flow_sweep_errors,
            flow_sweep_seconds,
            member_up,
            active_member,
            flips,
            check_seconds,
            detection_to_write_seconds,
            datapath,
        })
    }

    pub fn member(service: &str, member: &str) -> MemberLabels {
        MemberLabels {
            service: service.into(),
            member: member.into(),
        }
    }

    /// Publishes a sweep's result (called by the sweep thread).
    pub fn flow_table(
        &self,
        status: &crate::status::FlowTableStatus,
        sweep: &crate::datapath::Sweep,
    ) {
        for (state, n) in [("open", status.open), ("closing", status.closing)] {
            self.flows
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(n);
        }
        self.flow_capacity.set(status.capacity);
        self.flow_peak.set(status.peak);
        for (reason, n) in [
            ("idle", sweep.removed_idle),
            ("closing", sweep.removed_closing),
            ("orphan_reply", sweep.removed_orphans),
        ] {
            self.flows_swept
                .get_or_create(&SweptLabels {
                    reason: reason.into(),
                })
                .inc_by(n);
        }
        self.flow_sweep_seconds.set(status.last_sweep_ms / 1000.0);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Limits of the metrics endpoint: whoever can reach it (any local user,
/// with the default address) must not be able to hold the daemon's file
/// descriptors or its only thread.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more are closed at accept.
    pub connections: usize,
    /// Time to send the request headers (slowloris).
    pub header_timeout: Duration,
    /// Longest a connection may live, whatever it does.
    pub connection_lifetime: Duration,
}

pub const LIMITS: Limits = Limits {
    connections: 32,
    header_timeout: Duration::from_secs(5),
    connection_lifetime: Duration::from_secs(30),
};

/// Serves /metrics, /healthz and /readyz until the task is aborted, within
/// `limits`. An accept error (EMFILE, say) is logged and retried after a
/// growing pause instead of spinning.
pub async fn serve<S: Source>(
    listener: Arc<tokio::net::TcpListener>,
    metrics: Arc<Metrics>,
    source: Arc<S>,
    limits: Limits,
) {
    let app = Router::new()
        .route("/metrics", get(render::<S>))
        .route("/healthz", get(healthz::<S>))
        .route("/readyz", get(ready::<S>))
        .with_state((metrics.clone(), source));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    let mut pause = Duration::from_millis(10);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                pause = Duration::from_millis(10);
                stream
            }
            Err(e) => {
                metrics.metrics_refused.inc();
                tracing::warn!(error = %e, pause = ?pause, "metrics endpoint cannot accept; pausing");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once: the client may retry, the daemon keeps its fds.
            metrics.metrics_refused.inc();
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(64 * 1024);
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // Dropping the connection at the deadline closes it.
            let _ = tokio::time::timeout(limits.connection_lifetime, conn).await;
            drop(slot);
        });
    }
}

/// What the endpoint asks the daemon at request time.
pub trait Source: Send + Sync + 'static {
    /// The data path's counters by name; `None` when they cannot be read
    /// (the scrape then shows the last values read).
    fn datapath_counters(&self) -> impl Future<Output = Option<Vec<(&'static str, u64)>>> + Send;
    /// Whether every service is being checked and its decisions reach the
    /// data path (/healthz).
    fn checking(&self) -> bool;
    /// Whether the daemon has started and every supervised task runs
    /// (/readyz); `Err` says why not.
    fn ready(&self) -> Result<(), &'static str>;
}

type AppState<S> = (Arc<Metrics>, Arc<S>);

async fn render<S: Source>(State((metrics, source)): State<AppState<S>>) -> impl IntoResponse {
    if let Some(counters) = source.datapath_counters().await {
        for (counter, v) in counters {
            metrics
                .datapath
                .get_or_create(&CounterLabels {
                    counter: counter.into(),
                })
                .set(v);
        }
    }
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// 200 while every service is being checked: 503 while a service's
/// tasks are dead and not yet restarted.
async fn healthz<S: Source>(State((_, source)): State<AppState<S>>) -> impl IntoResponse {
    if source.checking() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "a service is not being checked\n",
        )
    }
}

/// 200 once started and while every supervised task runs.
async fn ready<S: Source>(State((_, source)): State<AppState<S>>) -> impl IntoResponse {
    match source.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

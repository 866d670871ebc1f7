//! Prometheus metrics (text format), served with /healthz and /readyz on
//! the `admin.metrics` address.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
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
pub struct MemberLabels {
    pub service: String,
    pub member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlipLabels {
    pub service: String,
    pub reason: String,
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
    pub ready: AtomicBool,
    /// The supervised tasks ([`crate::daemon::supervise`]).
    pub tasks: crate::daemon::supervise::Tasks,
}

impl Metrics {
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
        Arc::new(Self {
            tasks: crate::daemon::supervise::Tasks::new(task_deaths),
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
            ready: AtomicBool::new(false),
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
pub async fn serve(
    listener: Arc<tokio::net::TcpListener>,
    metrics: Arc<Metrics>,
    writer: crate::daemon::writer::Writer,
    limits: Limits,
) {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .with_state((metrics.clone(), writer));
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

type AppState = (Arc<Metrics>, crate::daemon::writer::Writer);

async fn render(State((metrics, writer)): State<AppState>) -> impl IntoResponse {
    if let Some(stats) = writer.stats().await {
        for (stat, v) in stats.iter() {
            metrics
                .datapath
                .get_or_create(&CounterLabels {
                    counter: stat.as_str().into(),
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
async fn healthz(State((metrics, _)): State<AppState>) -> impl IntoResponse {
    if metrics.tasks.checking() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "a service is not being checked\n",
        )
    }
}

/// 200 once started and while every supervised task runs.
async fn ready(State((metrics, _)): State<AppState>) -> impl IntoResponse {
    if !metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    } else if !metrics.tasks.all_running() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "a supervised task is down\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}

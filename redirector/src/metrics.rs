//! Prometheus metrics (text format), served with /healthz and /readyz on
//! the `admin.metrics` address.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
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
    pub ready: AtomicBool,
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
        Arc::new(Self {
            registry,
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

/// Serves /metrics, /healthz and /readyz until the task is aborted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    writer: crate::daemon::writer::Writer,
) {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state((metrics, writer));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server stopped");
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

async fn ready(State((metrics, _)): State<AppState>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

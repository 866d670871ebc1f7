//! The validated configuration: the typed values the rest of the daemon
//! reads. Every value here has passed validation (see `validate`), so users
//! of these types never re-check ranges or formats.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub datapath: DatapathSection,
    pub admin: AdminSection,
    pub services: Vec<Service>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DatapathSection {
    pub interfaces: Vec<String>,
    pub ingress: IngressMode,
    pub pin_path: PathBuf,
    pub conntrack_entries: u32,
    /// An open flow with no packet for this long is over (its peer vanished
    /// without FIN or RST); the sweep removes its entries.
    pub flow_idle_timeout: Duration,
    /// A closing flow (FIN from both sides) whose last ACK the data path
    /// never saw is removed after this long.
    pub flow_close_timeout: Duration,
}

/// How replies are reverse-translated (`datapath.ingress`). The daemon
/// maps it onto the data path's own mode when it loads the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngressMode {
    /// Native XDP where the driver supports it, TC ingress otherwise.
    Auto,
    /// XDP: native, or generic where the driver has no native support.
    Xdp,
    /// TC ingress.
    Tc,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdminSection {
    /// Unix socket of the JSON admin API.
    pub socket: PathBuf,
    /// Prometheus endpoint; `None` when set to "off".
    pub metrics: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Failback {
    Auto,
    Manual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailover {
    Reset,
    Keep,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub name: String,
    pub vip: SocketAddr,
    pub failback: Failback,
    pub failback_delay: Duration,
    pub on_failover: OnFailover,
    pub drain_timeout: Duration,
    pub check: Check,
    /// In config order; at least one.
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    /// IP literal or DNS name.
    pub host: String,
    pub port: u16,
    /// Lower is preferred (1 = first choice).
    pub priority: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Recheck interval after a result that differs from the member's state,
    /// until rise/fall confirms or refutes it.
    pub fast_interval: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Reactive health: what the application's own traffic does to a
    /// member's health beside these checks.
    pub observe: Observe,
}

/// Reactive health settings (`check.observe`, `check.error_limit`,
/// `check.on_error`), after HAProxy's `observe`, `error-limit` and
/// `on-error`.
#[derive(Clone, Debug, PartialEq)]
pub struct Observe {
    pub mode: ObserveMode,
    /// Signals, with no healthy check in between, that trigger `on_error`.
    pub error_limit: u32,
    pub on_error: OnError,
    /// Which of `error_limit` and `on_error` the file sets, so `warnings`
    /// can say they do nothing with `observe = "off"`.
    pub keys_set: Vec<&'static str>,
}

impl Default for Observe {
    /// The documented defaults: layer 4, one signal, fail-check.
    fn default() -> Self {
        Self {
            mode: ObserveMode::Layer4,
            error_limit: 1,
            on_error: OnError::FailCheck,
            keys_set: Vec::new(),
        }
    }
}

/// Which signals from the data path count (`check.observe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObserveMode {
    /// None: health comes from the checks alone.
    Off,
    /// Refused and reset connections, unanswered SYNs, ICMP unreachable,
    /// retransmissions.
    Layer4,
    /// Layer 4 and Redis error replies (`-LOADING`, `-MASTERDOWN`, ...).
    Layer7,
}

impl ObserveMode {
    /// Every mode as written in `check.observe`, with its value.
    pub const NAMES: [(&'static str, ObserveMode); 3] = [
        ("off", ObserveMode::Off),
        ("layer4", ObserveMode::Layer4),
        ("layer7", ObserveMode::Layer7),
    ];
}

/// What `error_limit` signals do (`check.on_error`); every action also
/// probes the member at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Nothing more: the probe decides.
    Fastinter,
    /// Counts as one failed check (at most one per failing streak).
    FailCheck,
    /// Leaves an Up member one failed check from Down.
    SuddenDeath,
    /// Down at once, without a probe.
    MarkDown,
}

impl OnError {
    /// Every action as written in `check.on_error`, with its value.
    pub const NAMES: [(&'static str, OnError); 4] = [
        ("fastinter", OnError::Fastinter),
        ("fail-check", OnError::FailCheck),
        ("sudden-death", OnError::SuddenDeath),
        ("mark-down", OnError::MarkDown),
    ];
}

#[derive(Clone, Debug, PartialEq)]
pub enum CheckKind {
    Tcp,
    RedisPing(RedisOptions),
    RedisEcho(RedisOptions),
    RedisSetGet {
        redis: RedisOptions,
        /// One probe per shard (CLUSTER SHARDS/SLOTS + hash tags).
        cluster: bool,
        key_prefix: String,
        ttl: Duration,
    },
    Availability(AvailabilityOptions),
    Exec {
        /// argv; `{host}` and `{port}` are replaced by the member's.
        command: Vec<String>,
    },
}

impl CheckKind {
    /// Every kind's name as written in `check.kind`, in the order errors
    /// list them.
    pub const NAMES: [&'static str; 6] = [
        "tcp",
        "redis-ping",
        "redis-echo",
        "redis-setget",
        "availability",
        "exec",
    ];

    /// The name of this kind, one of [`CheckKind::NAMES`].
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::RedisPing(_) => "redis-ping",
            CheckKind::RedisEcho(_) => "redis-echo",
            CheckKind::RedisSetGet { .. } => "redis-setget",
            CheckKind::Availability(_) => "availability",
            CheckKind::Exec { .. } => "exec",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RedisOptions {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: Option<TlsOptions>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TlsOptions {
    /// PEM CA bundle; the system roots when absent.
    pub ca_file: Option<PathBuf>,
    /// Name to verify; the member's host when absent.
    pub server_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AvailabilityOptions {
    /// REST API port (9443).
    pub port: u16,
    pub bdb_uid: u32,
    pub lag_tolerance_ms: u32,
    pub username: String,
    pub password: Secret,
    pub tls: TlsOptions,
}

/// Where a secret comes from. Its value is read when a checker is built and
/// is never logged, shown in status, or put in an error.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    File(PathBuf),
    Env(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::File(p) => write!(f, "Secret(file {})", p.display()),
            Secret::Env(v) => write!(f, "Secret(env {v})"),
        }
    }
}

//! The validated configuration: the typed values the rest of the daemon
//! reads. Every value here has passed validation (see `validate`), so users
//! of these types never re-check ranges or formats.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub datapath: DatapathSection,
    pub admin: AdminSection,
    /// `[fleet]`: the etcd cluster that fleet services decide through;
    /// `None` when the file has no such section.
    pub fleet: Option<Fleet>,
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
    /// Fleet mode: the active member is decided once for every host,
    /// through `[fleet]`, instead of by this host alone.
    pub fleet: bool,
    pub check: Check,
    /// In config order; at least one.
    pub members: Vec<Member>,
}

/// `[fleet]`: where and how the hosts of a fleet share their view of the
/// members and the one decision they all apply (etcd).
#[derive(Clone, Debug, PartialEq)]
pub struct Fleet {
    /// etcd client URLs (`http://host:port` or `https://host:port`), all of
    /// one scheme.
    pub endpoints: Vec<String>,
    /// Key prefix: starts with '/', no trailing '/'.
    pub prefix: String,
    /// This host's name in the fleet (its key under `hosts/`).
    pub host: String,
    /// TTL of this host's lease, in whole seconds (etcd's unit).
    pub lease_ttl: Duration,
    /// Time one etcd request may take; less than `lease_ttl`.
    pub timeout: Duration,
    pub quorum: FleetQuorum,
    pub barrier: FleetBarrier,
    pub on_detach: OnDetach,
    /// With `on_detach = "local"`: how long a host cut off from etcd keeps
    /// the last fleet decision before it decides alone. At least
    /// `lease_ttl`.
    pub detach_timeout: Duration,
    /// Whether the file sets `detach_timeout`, so `warnings` can say it is
    /// unused with `on_detach = "static"`.
    pub detach_timeout_set: bool,
    /// Present exactly when the endpoints are `https://`.
    pub tls: Option<FleetTls>,
    pub auth: Option<FleetAuth>,
}

/// How many live hosts must see a member down (or up) for the fleet to
/// act on it (`fleet.quorum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetQuorum {
    /// More than half of the hosts whose lease is alive.
    Majority,
    /// At least this many live hosts (at least 1).
    Count(u32),
}

/// Whether a failback waits for every live host (`fleet.barrier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetBarrier {
    /// The new member is active as soon as the decision is written.
    None,
    /// Break before make: no member is active until every live host has
    /// acknowledged the epoch.
    Ack,
}

impl FleetBarrier {
    /// Every value as written in `fleet.barrier`.
    pub const NAMES: [(&'static str, FleetBarrier); 2] =
        [("none", FleetBarrier::None), ("ack", FleetBarrier::Ack)];
}

/// What a host cut off from etcd does (`fleet.on_detach`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDetach {
    /// Keeps the last fleet decision for as long as it is cut off.
    Static,
    /// Decides alone after `detach_timeout`.
    Local,
}

impl OnDetach {
    /// Every value as written in `fleet.on_detach`.
    pub const NAMES: [(&'static str, OnDetach); 2] =
        [("static", OnDetach::Static), ("local", OnDetach::Local)];
}

/// `[fleet.tls]`: TLS to the etcd endpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetTls {
    /// PEM CA bundle the endpoints are verified against.
    pub ca: PathBuf,
    /// Client certificate and its key (both or neither).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Name to verify (and send as SNI); the endpoint's host when absent.
    pub domain: Option<String>,
}

/// `[fleet.auth]`: etcd user and password. The password is read from its
/// file when the configuration is loaded and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetAuth {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for FleetAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
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

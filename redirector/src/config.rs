//! The daemon's configuration: TOML in, validated typed values out.
//!
//! Parsing and validation are pure (no I/O beyond reading the file), so
//! `redirector validate` and a SIGHUP reload share them, and a rejected file
//! never disturbs the running config. Errors name the file, line and field.
//! Secrets are referenced (file or environment variable), never inlined, and
//! [`Secret`] never prints its value.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::Spanned;

use crate::datapath::IngressMode;

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

/// Default `flow_idle_timeout`: longer than Linux's default
/// `tcp_keepalive_time` (2 h) plus its probes and than any idle pool, as
/// Cilium's 6 h TCP lifetime.
pub const DEFAULT_FLOW_IDLE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Default `flow_close_timeout`: covers a retransmitted FIN and the last ACK.
pub const DEFAULT_FLOW_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted `flow_idle_timeout` range. The data path keeps times in 32-bit
/// jiffies, which wrap after 49 days at HZ=1000; 7 days stays far inside.
pub const FLOW_IDLE_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(7 * 24 * 3600));
/// Accepted `flow_close_timeout` range.
pub const FLOW_CLOSE_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(600));

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

// ---------------------------------------------------------------------------
// Defaults

const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/redirector";
const DEFAULT_CONNTRACK_ENTRIES: u32 = 262_144;
const MIN_CONNTRACK_ENTRIES: u32 = 1024;
/// 16 Mi flows. The two flow maps (CONNTRACK, REVERSE_NAT) are
/// preallocated LRU hashes: the kernel refuses more than 2^31 entries
/// outright (the bucket count is rounded up to a power of two in 32 bits)
/// and long before that allocating the elements (some 250 bytes of kernel
/// memory per flow with both maps) fails at load time. 16 Mi flows already
/// take about 4 GB; more is a typo, not a sizing.
pub const MAX_CONNTRACK_ENTRIES: u32 = 1 << 24;
/// `check.interval`, `check.timeout`, `check.fast_interval` and
/// `check.ttl`: a millisecond is the finest period a check can keep, an
/// hour the longest that still makes it a health check.
pub const CHECK_DURATION_RANGE: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(3600));
/// `failback_delay` and `drain_timeout`: zero (at once) up to a day.
pub const SERVICE_DELAY_RANGE: (Duration, Duration) =
    (Duration::ZERO, Duration::from_secs(24 * 3600));
/// `sun_path` is 108 bytes with its terminating NUL: a longer socket path
/// cannot be bound at all.
pub const MAX_SOCKET_PATH: usize = 107;
/// `check.rise` and `check.fall`: consecutive results, 1 to 100.
pub const COUNT_RANGE: (u32, u32) = (1, 100);
const DEFAULT_ADMIN_SOCKET: &str = "/run/redirector/admin.sock";
const DEFAULT_METRICS: &str = "127.0.0.1:9477";
const DEFAULT_FAILBACK_DELAY: Duration = Duration::from_secs(30);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
const DEFAULT_FAST_INTERVAL: Duration = Duration::from_millis(50);
const DEFAULT_RISE: u32 = 3;
const DEFAULT_FALL: u32 = 2;
const DEFAULT_KEY_PREFIX: &str = "redirector:probe:";
const DEFAULT_SETGET_TTL: Duration = Duration::from_secs(10);
const DEFAULT_AVAILABILITY_PORT: u16 = 9443;
const DEFAULT_LAG_TOLERANCE_MS: u32 = 100;
/// Linux `IFNAMSIZ` minus the terminating NUL.
const MAX_INTERFACE_NAME: usize = 15;

// ---------------------------------------------------------------------------
// Errors

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid configuration. `line` and `column` are
    /// 1-based and point at the offending value (or its table when the value
    /// is missing); `field` is a dotted path such as
    /// `services[1].members[0].addr`.
    #[error("{file}:{line}:{column}: {field}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
}

impl ConfigError {
    /// 1-based line of the offending value; 0 when the file was unreadable.
    pub fn line(&self) -> usize {
        match self {
            ConfigError::Read { .. } => 0,
            ConfigError::Invalid { line, .. } => *line,
        }
    }

    /// 1-based column of the offending value; 0 when the file was unreadable.
    pub fn column(&self) -> usize {
        match self {
            ConfigError::Read { .. } => 0,
            ConfigError::Invalid { column, .. } => *column,
        }
    }

    /// Dotted path of the offending field; empty when the file was unreadable.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::Read { .. } => "",
            ConfigError::Invalid { field, .. } => field,
        }
    }

    /// What is wrong, without the location.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Read { source, .. } => format!("cannot read config: {source}"),
            ConfigError::Invalid { message, .. } => message.clone(),
        }
    }
}

// ---------------------------------------------------------------------------
// Entry points

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates `text`; `path` only names the file in errors.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let ctx = Ctx {
        text,
        file: path.display().to_string(),
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;
    ctx.config(raw)
}

/// Non-fatal findings about a valid configuration, one sentence each.
///
/// A member address listed behind two VIPs is allowed but risky: two client
/// connections that use the same source port towards the two VIPs are
/// translated onto the same 4-tuple.
pub fn warnings(config: &Config) -> Vec<String> {
    // (normalized host, port) -> (display endpoint, services), in config order.
    let mut order: Vec<(String, u16)> = Vec::new();
    let mut behind: HashMap<(String, u16), (String, Vec<&str>)> = HashMap::new();
    for service in &config.services {
        for member in &service.members {
            let key = (member.host.to_ascii_lowercase(), member.port);
            let entry = behind.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (endpoint(&member.host, member.port), Vec::new())
            });
            if !entry.1.contains(&service.name.as_str()) {
                entry.1.push(&service.name);
            }
        }
    }
    order
        .iter()
        .filter_map(|key| behind.get(key))
        .filter(|(_, services)| services.len() >= 2)
        .map(|(endpoint, services)| {
            format!(
                "member {endpoint} is behind services {}: two client connections with the \
                 same source port can collide on one 4-tuple",
                join_names(services)
            )
        })
        .collect()
}

fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// "a and b", "a, b and c".
fn join_names(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_string(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------
// Raw (serde) shape

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    datapath: Option<Spanned<RawDatapath>>,
    admin: Option<RawAdmin>,
    services: Option<Spanned<Vec<Spanned<RawService>>>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatapath {
    interfaces: Option<Spanned<Vec<Spanned<String>>>>,
    ingress: Option<IngressMode>,
    pin_path: Option<Spanned<String>>,
    conntrack_entries: Option<Spanned<u32>>,
    flow_idle_timeout: Option<Spanned<String>>,
    flow_close_timeout: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    socket: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Option<Spanned<String>>,
    vip: Option<Spanned<String>>,
    failback: Option<Spanned<String>>,
    failback_delay: Option<Spanned<String>>,
    on_failover: Option<Spanned<String>>,
    drain_timeout: Option<Spanned<String>>,
    check: Option<Spanned<RawCheck>>,
    members: Option<Spanned<Vec<Spanned<RawMember>>>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    kind: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    fast_interval: Option<Spanned<String>>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
    username: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    tls: Option<Spanned<bool>>,
    ca_file: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
    cluster: Option<Spanned<bool>>,
    key_prefix: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
    bdb_uid: Option<Spanned<u32>>,
    port: Option<Spanned<u16>>,
    lag_tolerance_ms: Option<Spanned<u32>>,
    command: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    name: Option<Spanned<String>>,
    addr: Option<Spanned<String>>,
    priority: Option<Spanned<u32>>,
}

/// A kind-specific check key: its name, where it was set (if it was), and
/// the kinds that accept it.
type KeyKinds = (&'static str, Option<Range<usize>>, &'static [Kind]);

/// A value with the byte range it came from.
type At<T> = (Range<usize>, T);

fn split<T>(value: Spanned<T>) -> At<T> {
    (value.span(), value.into_inner())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    RedisPing,
    RedisEcho,
    RedisSetGet,
    Availability,
    Exec,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Tcp,
        Kind::RedisPing,
        Kind::RedisEcho,
        Kind::RedisSetGet,
        Kind::Availability,
        Kind::Exec,
    ];
    const REDIS: &'static [Kind] = &[Kind::RedisPing, Kind::RedisEcho, Kind::RedisSetGet];
    const CREDENTIALS: &'static [Kind] = &[
        Kind::RedisPing,
        Kind::RedisEcho,
        Kind::RedisSetGet,
        Kind::Availability,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::RedisPing => "redis-ping",
            Kind::RedisEcho => "redis-echo",
            Kind::RedisSetGet => "redis-setget",
            Kind::Availability => "availability",
            Kind::Exec => "exec",
        }
    }

    fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

fn describe_kinds(kinds: &[Kind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    if names.len() == 1 {
        format!("kind {}", names.join(""))
    } else {
        format!("kinds {}", names.join(", "))
    }
}

// ---------------------------------------------------------------------------
// Validation

struct Ctx<'a> {
    text: &'a str,
    file: String,
}

impl Ctx<'_> {
    fn err(&self, span: &Range<usize>, field: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError::Invalid {
            file: self.file.clone(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let field = field_at(self.text, span.start);
        let message = e.message().trim().lines().collect::<Vec<_>>().join("; ");
        self.err(&span, &field, message)
    }

    fn required<T>(
        &self,
        value: Option<Spanned<T>>,
        table: &Range<usize>,
        field: &str,
    ) -> Result<At<T>, ConfigError> {
        value
            .map(split)
            .ok_or_else(|| self.err(table, field, "is required"))
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let datapath = self.datapath(raw.datapath)?;
        let admin = self.admin(raw.admin.unwrap_or_default())?;
        let (span, list) = raw.services.map(split).unwrap_or((0..0, Vec::new()));
        if list.is_empty() {
            return Err(self.err(
                &span,
                "services",
                "at least one [[services]] table is required",
            ));
        }
        let mut names = HashMap::new();
        let mut vips = HashMap::new();
        let services = list
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.service(i, s, &mut names, &mut vips))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Config {
            datapath,
            admin,
            services,
        })
    }

    fn datapath(&self, raw: Option<Spanned<RawDatapath>>) -> Result<DatapathSection, ConfigError> {
        let (section, raw) = raw.map(split).unwrap_or((0..0, RawDatapath::default()));
        let (span, list) = raw.interfaces.map(split).unwrap_or((section, Vec::new()));
        if list.is_empty() {
            return Err(self.err(
                &span,
                "datapath.interfaces",
                "at least one interface is required (e.g. interfaces = [\"eth0\"])",
            ));
        }
        let mut interfaces: Vec<String> = Vec::with_capacity(list.len());
        for (i, name) in list.into_iter().enumerate() {
            let (span, name) = split(name);
            let field = format!("datapath.interfaces[{i}]");
            if !valid_interface_name(&name) {
                return Err(self.err(&span, &field, format!("invalid interface name {name:?}")));
            }
            if interfaces.contains(&name) {
                return Err(self.err(&span, &field, format!("interface {name} is listed twice")));
            }
            interfaces.push(name);
        }
        let pin_path = match raw.pin_path.map(split) {
            Some((span, p)) if !Path::new(&p).is_absolute() => {
                return Err(self.err(&span, "datapath.pin_path", "must be an absolute path"));
            }
            Some((_, p)) => PathBuf::from(p),
            None => PathBuf::from(DEFAULT_PIN_PATH),
        };
        let conntrack_entries = match raw.conntrack_entries.map(split) {
            Some((span, n)) if !(MIN_CONNTRACK_ENTRIES..=MAX_CONNTRACK_ENTRIES).contains(&n) => {
                return Err(self.err(
                    &span,
                    "datapath.conntrack_entries",
                    format!(
                        "must be at least {MIN_CONNTRACK_ENTRIES} and at most \
                         {MAX_CONNTRACK_ENTRIES} (16 Mi), got {n}"
                    ),
                ));
            }
            Some((_, n)) => n,
            None => DEFAULT_CONNTRACK_ENTRIES,
        };
        let (_, flow_idle_timeout) = self.bounded_duration(
            raw.flow_idle_timeout,
            DEFAULT_FLOW_IDLE_TIMEOUT,
            "datapath.flow_idle_timeout",
            FLOW_IDLE_TIMEOUT_RANGE,
        )?;
        let (_, flow_close_timeout) = self.bounded_duration(
            raw.flow_close_timeout,
            DEFAULT_FLOW_CLOSE_TIMEOUT,
            "datapath.flow_close_timeout",
            FLOW_CLOSE_TIMEOUT_RANGE,
        )?;
        Ok(DatapathSection {
            interfaces,
            ingress: raw.ingress.unwrap_or(IngressMode::Auto),
            pin_path,
            conntrack_entries,
            flow_idle_timeout,
            flow_close_timeout,
        })
    }

    fn admin(&self, raw: RawAdmin) -> Result<AdminSection, ConfigError> {
        let socket = match raw.socket.map(split) {
            Some((span, s)) if s.is_empty() => {
                return Err(self.err(&span, "admin.socket", "must not be empty"));
            }
            Some((span, s)) if s.len() > MAX_SOCKET_PATH => {
                return Err(self.err(
                    &span,
                    "admin.socket",
                    format!(
                        "path is {} bytes; a Unix socket path holds at most {MAX_SOCKET_PATH} \
                         (sun_path): choose a shorter one",
                        s.len()
                    ),
                ));
            }
            Some((_, s)) => PathBuf::from(s),
            None => PathBuf::from(DEFAULT_ADMIN_SOCKET),
        };
        let (span, metrics) = raw
            .metrics
            .map(split)
            .unwrap_or((0..0, DEFAULT_METRICS.to_string()));
        let metrics = if metrics == "off" {
            None
        } else {
            Some(metrics.parse::<SocketAddr>().map_err(|_| {
                self.err(
                    &span,
                    "admin.metrics",
                    format!("invalid address {metrics:?}: expected \"off\" or IP:port"),
                )
            })?)
        };
        Ok(AdminSection { socket, metrics })
    }

    fn service(
        &self,
        i: usize,
        raw: Spanned<RawService>,
        names: &mut HashMap<String, usize>,
        vips: &mut HashMap<SocketAddr, usize>,
    ) -> Result<Service, ConfigError> {
        let p = format!("services[{i}]");
        let (table, raw) = split(raw);

        let field = format!("{p}.name");
        let (span, name) = self.required(raw.name, &table, &field)?;
        self.check_name(&span, &field, &name)?;
        if let Some(first) = names.insert(name.clone(), i) {
            return Err(self.err(
                &span,
                &field,
                format!("duplicate service name {name:?} (also services[{first}].name)"),
            ));
        }

        let field = format!("{p}.vip");
        let (span, text) = self.required(raw.vip, &table, &field)?;
        let vip: SocketAddr = text.parse().map_err(|_| {
            self.err(
                &span,
                &field,
                format!("invalid address {text:?}: expected IP:port or [IPv6]:port"),
            )
        })?;
        if vip.port() == 0 {
            return Err(self.err(&span, &field, "port must be 1..65535, got 0"));
        }
        if vip.ip().is_unspecified() {
            return Err(self.err(&span, &field, "VIP must not be an unspecified address"));
        }
        if let Some(why) = unroutable(vip.ip()) {
            return Err(self.err(&span, &field, format!("VIP {vip} is {why}")));
        }
        if vip.ip().is_loopback() {
            return Err(self.err(
                &span,
                &field,
                format!(
                    "VIP {vip} is a loopback address: loopback traffic never leaves the \
                     host through the interfaces, so it is never translated"
                ),
            ));
        }
        if let Some(first) = vips.insert(vip, i) {
            return Err(self.err(
                &span,
                &field,
                format!("duplicate VIP {vip} (also services[{first}].vip)"),
            ));
        }

        let failback = match raw.failback.map(split) {
            None => Failback::Auto,
            Some((_, s)) if s == "auto" => Failback::Auto,
            Some((_, s)) if s == "manual" => Failback::Manual,
            Some((span, s)) => {
                return Err(self.err(
                    &span,
                    &format!("{p}.failback"),
                    format!("invalid value {s:?}: expected \"auto\" or \"manual\""),
                ));
            }
        };
        let on_failover = match raw.on_failover.map(split) {
            None => OnFailover::Reset,
            Some((_, s)) if s == "reset" => OnFailover::Reset,
            Some((_, s)) if s == "keep" => OnFailover::Keep,
            Some((span, s)) => {
                return Err(self.err(
                    &span,
                    &format!("{p}.on_failover"),
                    format!("invalid value {s:?}: expected \"reset\" or \"keep\""),
                ));
            }
        };
        let (_, failback_delay) = self.bounded_duration(
            raw.failback_delay,
            DEFAULT_FAILBACK_DELAY,
            &format!("{p}.failback_delay"),
            SERVICE_DELAY_RANGE,
        )?;
        let (_, drain_timeout) = self.bounded_duration(
            raw.drain_timeout,
            DEFAULT_DRAIN_TIMEOUT,
            &format!("{p}.drain_timeout"),
            SERVICE_DELAY_RANGE,
        )?;

        let check = self.check(&p, raw.check)?;

        let field = format!("{p}.members");
        let (span, list) = raw.members.map(split).unwrap_or((table, Vec::new()));
        if list.is_empty() {
            return Err(self.err(
                &span,
                &field,
                "at least one [[services.members]] table is required",
            ));
        }
        let mut member_names = HashMap::new();
        let members = list
            .into_iter()
            .enumerate()
            .map(|(j, m)| self.member(&p, j, m, &vip, &mut member_names))
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Service {
            name,
            vip,
            failback,
            failback_delay,
            on_failover,
            drain_timeout,
            check,
            members,
        })
    }

    fn member(
        &self,
        service: &str,
        j: usize,
        raw: Spanned<RawMember>,
        vip: &SocketAddr,
        names: &mut HashMap<String, usize>,
    ) -> Result<Member, ConfigError> {
        let p = format!("{service}.members[{j}]");
        let (table, raw) = split(raw);

        let field = format!("{p}.name");
        let (span, name) = self.required(raw.name, &table, &field)?;
        self.check_name(&span, &field, &name)?;
        if let Some(first) = names.insert(name.clone(), j) {
            return Err(self.err(
                &span,
                &field,
                format!("duplicate member name {name:?} (also {service}.members[{first}].name)"),
            ));
        }

        let field = format!("{p}.addr");
        let (span, addr) = self.required(raw.addr, &table, &field)?;
        let (host, port) = parse_member_addr(&addr).map_err(|m| self.err(&span, &field, m))?;
        if let Ok(ip) = host.parse::<IpAddr>()
            && let Some(why) = unroutable(ip)
        {
            return Err(self.err(
                &span,
                &field,
                format!("member {addr} is {why}: no server can answer there"),
            ));
        }
        if host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port))
            == Some(*vip)
        {
            return Err(self.err(
                &span,
                &field,
                format!(
                    "member {addr} is the VIP itself: the VIP would be translated to \
                     itself and connections would hang"
                ),
            ));
        }
        if let Ok(ip) = host.parse::<IpAddr>()
            && ip.is_ipv4() != vip.is_ipv4()
        {
            let (family, vip_family) = if ip.is_ipv4() {
                ("IPv4", "IPv6")
            } else {
                ("IPv6", "IPv4")
            };
            return Err(self.err(
                &span,
                &field,
                format!(
                    "{family} member {addr} cannot serve {vip_family} VIP {vip}: \
                     address families differ"
                ),
            ));
        }

        let priority = match raw.priority.map(split) {
            Some((span, 0)) => {
                return Err(self.err(&span, &format!("{p}.priority"), "must be at least 1"));
            }
            Some((_, n)) => n,
            None => u32::try_from(j + 1).unwrap_or(u32::MAX),
        };

        Ok(Member {
            name,
            host,
            port,
            priority,
        })
    }

    fn check_name(&self, span: &Range<usize>, field: &str, name: &str) -> Result<(), ConfigError> {
        if name.is_empty() {
            return Err(self.err(span, field, "must not be empty"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(self.err(
                span,
                field,
                format!("invalid name {name:?}: use only A-Z, a-z, 0-9, '_', '.', '-'"),
            ));
        }
        Ok(())
    }

    /// A humantime duration within `range` (inclusive), or `default`.
    fn bounded_duration(
        &self,
        value: Option<Spanned<String>>,
        default: Duration,
        field: &str,
        (min, max): (Duration, Duration),
    ) -> Result<At<Duration>, ConfigError> {
        let (span, d) = self.duration(value, default, field, !min.is_zero())?;
        if d < min || d > max {
            return Err(self.err(
                &span,
                field,
                format!(
                    "must be between {} and {}, got {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max),
                    humantime::format_duration(d)
                ),
            ));
        }
        Ok((span, d))
    }

    /// A humantime duration, or `default` when absent.
    fn duration(
        &self,
        value: Option<Spanned<String>>,
        default: Duration,
        field: &str,
        positive: bool,
    ) -> Result<At<Duration>, ConfigError> {
        let Some((span, text)) = value.map(split) else {
            return Ok((0..0, default));
        };
        let d = humantime::parse_duration(&text).map_err(|e| {
            self.err(
                &span,
                field,
                format!("invalid duration {text:?}: {e} (e.g. \"250ms\", \"30s\")"),
            )
        })?;
        if positive && d.is_zero() {
            return Err(self.err(&span, field, "must be greater than 0"));
        }
        Ok((span, d))
    }

    fn check(&self, service: &str, raw: Option<Spanned<RawCheck>>) -> Result<Check, ConfigError> {
        let p = format!("{service}.check");
        let f = |key: &str| format!("{p}.{key}");
        let (table, raw) = raw.map(split).unwrap_or((0..0, RawCheck::default()));

        let kind = match raw.kind.map(split) {
            None => Kind::RedisPing,
            Some((span, name)) => Kind::from_name(&name).ok_or_else(|| {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                self.err(
                    &span,
                    &f("kind"),
                    format!(
                        "unknown check kind {name:?}: expected one of {}",
                        known.join(", ")
                    ),
                )
            })?,
        };

        let (_, interval) = self.bounded_duration(
            raw.interval,
            DEFAULT_INTERVAL,
            &f("interval"),
            CHECK_DURATION_RANGE,
        )?;
        let (span, timeout) = self.bounded_duration(
            raw.timeout,
            DEFAULT_TIMEOUT,
            &f("timeout"),
            CHECK_DURATION_RANGE,
        )?;
        if timeout > interval {
            return Err(self.err(
                &span,
                &f("timeout"),
                format!(
                    "timeout {} is longer than interval {}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            ));
        }
        let (span, fast_interval) = self.bounded_duration(
            raw.fast_interval,
            DEFAULT_FAST_INTERVAL,
            &f("fast_interval"),
            CHECK_DURATION_RANGE,
        )?;
        if fast_interval > interval {
            return Err(self.err(
                &span,
                &f("fast_interval"),
                format!(
                    "fast_interval {} is longer than interval {}",
                    humantime::format_duration(fast_interval),
                    humantime::format_duration(interval)
                ),
            ));
        }
        let rise = self.count(raw.rise, DEFAULT_RISE, &f("rise"))?;
        let fall = self.count(raw.fall, DEFAULT_FALL, &f("fall"))?;

        // Keys that only some kinds accept.
        let applicable: [KeyKinds; 13] = [
            (
                "username",
                raw.username.as_ref().map(Spanned::span),
                Kind::CREDENTIALS,
            ),
            (
                "password_file",
                raw.password_file.as_ref().map(Spanned::span),
                Kind::CREDENTIALS,
            ),
            (
                "password_env",
                raw.password_env.as_ref().map(Spanned::span),
                Kind::CREDENTIALS,
            ),
            ("tls", raw.tls.as_ref().map(Spanned::span), Kind::REDIS),
            (
                "ca_file",
                raw.ca_file.as_ref().map(Spanned::span),
                Kind::CREDENTIALS,
            ),
            (
                "server_name",
                raw.server_name.as_ref().map(Spanned::span),
                Kind::CREDENTIALS,
            ),
            (
                "cluster",
                raw.cluster.as_ref().map(Spanned::span),
                &[Kind::RedisSetGet],
            ),
            (
                "key_prefix",
                raw.key_prefix.as_ref().map(Spanned::span),
                &[Kind::RedisSetGet],
            ),
            (
                "ttl",
                raw.ttl.as_ref().map(Spanned::span),
                &[Kind::RedisSetGet],
            ),
            (
                "bdb_uid",
                raw.bdb_uid.as_ref().map(Spanned::span),
                &[Kind::Availability],
            ),
            (
                "port",
                raw.port.as_ref().map(Spanned::span),
                &[Kind::Availability],
            ),
            (
                "lag_tolerance_ms",
                raw.lag_tolerance_ms.as_ref().map(Spanned::span),
                &[Kind::Availability],
            ),
            (
                "command",
                raw.command.as_ref().map(Spanned::span),
                &[Kind::Exec],
            ),
        ];
        for (key, span, kinds) in applicable {
            if let Some(span) = span
                && !kinds.contains(&kind)
            {
                return Err(self.err(
                    &span,
                    &f(key),
                    format!("only valid for {}", describe_kinds(kinds)),
                ));
            }
        }

        let username = match raw.username.map(split) {
            Some((span, u)) if u.is_empty() => {
                return Err(self.err(&span, &f("username"), "must not be empty"));
            }
            other => other.map(|(_, u)| u),
        };
        let password = self.secret(raw.password_file, raw.password_env, &p)?;
        let ca_file = match raw.ca_file.map(split) {
            Some((span, c)) if c.is_empty() => {
                return Err(self.err(&span, &f("ca_file"), "must not be empty"));
            }
            other => other.map(|(span, c)| (span, PathBuf::from(c))),
        };
        let server_name = match raw.server_name.map(split) {
            Some((span, s)) if s.is_empty() => {
                return Err(self.err(&span, &f("server_name"), "must not be empty"));
            }
            other => other,
        };

        let redis = |this: &Self| -> Result<RedisOptions, ConfigError> {
            let tls_on = raw.tls.as_ref().is_some_and(|t| *t.get_ref());
            let tls = if tls_on {
                Some(TlsOptions {
                    ca_file: ca_file.clone().map(|(_, c)| c),
                    server_name: server_name.clone().map(|(_, s)| s),
                })
            } else {
                if let Some((span, _)) = &ca_file {
                    return Err(this.err(span, &f("ca_file"), "requires tls = true"));
                }
                if let Some((span, _)) = &server_name {
                    return Err(this.err(span, &f("server_name"), "requires tls = true"));
                }
                None
            };
            Ok(RedisOptions {
                username: username.clone(),
                password: password.clone(),
                tls,
            })
        };

        let kind = match kind {
            Kind::Tcp => CheckKind::Tcp,
            Kind::RedisPing => CheckKind::RedisPing(redis(self)?),
            Kind::RedisEcho => CheckKind::RedisEcho(redis(self)?),
            Kind::RedisSetGet => {
                let (_, ttl) = self.bounded_duration(
                    raw.ttl,
                    DEFAULT_SETGET_TTL,
                    &f("ttl"),
                    CHECK_DURATION_RANGE,
                )?;
                let key_prefix = match raw.key_prefix.map(split) {
                    Some((span, k)) if k.is_empty() => {
                        return Err(self.err(&span, &f("key_prefix"), "must not be empty"));
                    }
                    Some((_, k)) => k,
                    None => DEFAULT_KEY_PREFIX.to_string(),
                };
                CheckKind::RedisSetGet {
                    redis: redis(self)?,
                    cluster: raw.cluster.is_some_and(|c| c.into_inner()),
                    key_prefix,
                    ttl,
                }
            }
            Kind::Availability => {
                let (_, bdb_uid) = self.required(raw.bdb_uid, &table, &f("bdb_uid"))?;
                let port = match raw.port.map(split) {
                    Some((span, 0)) => {
                        return Err(self.err(&span, &f("port"), "port must be 1..65535, got 0"));
                    }
                    Some((_, port)) => port,
                    None => DEFAULT_AVAILABILITY_PORT,
                };
                let username = username.ok_or_else(|| {
                    self.err(&table, &f("username"), "is required for kind availability")
                })?;
                let password = password.ok_or_else(|| {
                    self.err(
                        &table,
                        &f("password_file"),
                        "password_file or password_env is required for kind availability",
                    )
                })?;
                CheckKind::Availability(AvailabilityOptions {
                    port,
                    bdb_uid,
                    lag_tolerance_ms: raw
                        .lag_tolerance_ms
                        .map_or(DEFAULT_LAG_TOLERANCE_MS, Spanned::into_inner),
                    username,
                    password,
                    tls: TlsOptions {
                        ca_file: ca_file.map(|(_, c)| c),
                        server_name: server_name.map(|(_, s)| s),
                    },
                })
            }
            Kind::Exec => {
                let (span, command) = raw
                    .command
                    .map(split)
                    .ok_or_else(|| self.err(&table, &f("command"), "is required for kind exec"))?;
                if command.first().is_none_or(|c| c.is_empty()) {
                    return Err(self.err(
                        &span,
                        &f("command"),
                        "must be a non-empty argv whose first element is the program",
                    ));
                }
                CheckKind::Exec { command }
            }
        };

        Ok(Check {
            kind,
            interval,
            timeout,
            fast_interval,
            rise,
            fall,
        })
    }

    /// A count within [`COUNT_RANGE`], or `default`.
    fn count(
        &self,
        value: Option<Spanned<u32>>,
        default: u32,
        field: &str,
    ) -> Result<u32, ConfigError> {
        let (min, max) = COUNT_RANGE;
        match value.map(split) {
            None => Ok(default),
            Some((span, n)) if n < min || n > max => Err(self.err(
                &span,
                field,
                format!("must be at least {min} and at most {max}, got {n}"),
            )),
            Some((_, n)) => Ok(n),
        }
    }

    fn secret(
        &self,
        file: Option<Spanned<String>>,
        env: Option<Spanned<String>>,
        p: &str,
    ) -> Result<Option<Secret>, ConfigError> {
        match (file.map(split), env.map(split)) {
            (Some(_), Some((span, _))) => Err(self.err(
                &span,
                &format!("{p}.password_env"),
                "at most one of password_file and password_env may be set",
            )),
            (Some((span, f)), None) => {
                if f.is_empty() {
                    Err(self.err(&span, &format!("{p}.password_file"), "must not be empty"))
                } else {
                    Ok(Some(Secret::File(PathBuf::from(f))))
                }
            }
            (None, Some((span, v))) => {
                if v.is_empty() || v.contains(['=', '\0']) {
                    Err(self.err(
                        &span,
                        &format!("{p}.password_env"),
                        format!("invalid environment variable name {v:?}"),
                    ))
                } else {
                    Ok(Some(Secret::Env(v)))
                }
            }
            (None, None) => Ok(None),
        }
    }
}

fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_INTERFACE_NAME
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// Splits a member address into host (an IP literal without brackets, or a
/// DNS name) and port.
/// Why no server can be reached at `ip` (member or VIP), if so.
fn unroutable(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address (0.0.0.0 or ::)")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
        Some("the broadcast address")
    } else {
        None
    }
}

fn parse_member_addr(addr: &str) -> Result<(String, u16), String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err("port must be 1..65535, got 0".to_string());
        }
        return Ok((sa.ip().to_string(), sa.port()));
    }
    if addr.parse::<IpAddr>().is_ok() {
        return Err(format!("member has no port: {addr:?} (expected host:port)"));
    }
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid address {addr:?}: missing ']'"))?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("invalid address {addr:?}: {inside:?} is not an IPv6 address"))?;
        if after.is_empty() {
            return Err(format!(
                "member has no port: {addr:?} (expected [IPv6]:port)"
            ));
        }
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("invalid address {addr:?}: expected ':' after ']'"))?;
        (ip.to_string(), port)
    } else {
        let Some((host, port)) = addr.rsplit_once(':') else {
            if valid_dns_name(addr) {
                return Err(format!("member has no port: {addr:?} (expected host:port)"));
            }
            return Err(format!("invalid address {addr:?}: expected host:port"));
        };
        if host.contains(':') {
            return Err(format!(
                "invalid address {addr:?}: IPv6 addresses must be written as [IPv6]:port"
            ));
        }
        if !valid_dns_name(host) {
            return Err(format!(
                "invalid address {addr:?}: {host:?} is neither an IP address nor a DNS name"
            ));
        }
        (host.to_string(), port)
    };
    if port.is_empty() {
        return Err(format!("member has no port: {addr:?}"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port must be 1..65535, got 0".to_string()),
        Ok(port) => Ok((host, port)),
        Err(_) => Err(format!("invalid port {port:?}: expected 1..65535")),
    }
}

/// RFC 1123 host name; the last label must not be all digits, so a mistyped
/// IPv4 literal ("198.18.1.300") is not taken for a name.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let labels_ok = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    labels_ok
        && labels
            .last()
            .is_some_and(|l| !l.chars().all(|c| c.is_ascii_digit()))
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Best-effort dotted path (`services[1].check.rise`) of the key at a byte
/// offset, for errors reported by the TOML parser itself. Follows table and
/// array-of-tables headers; a value continued over several lines is
/// attributed to the last key seen.
fn field_at(text: &str, offset: usize) -> String {
    let mut arrays: HashMap<String, usize> = HashMap::new();
    let mut table = String::new();
    let mut last_key: Option<String> = None;
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let here = offset >= start && (offset < end || end == text.len());
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("[[") {
            let name = rest.split("]]").next().unwrap_or_default();
            let base = resolve_table(name, &arrays);
            let count = arrays.entry(base.clone()).or_insert(0);
            *count += 1;
            table = format!("{base}[{}]", *count - 1);
            last_key = None;
            if here {
                return table;
            }
        } else if let Some(rest) = trimmed.strip_prefix('[') {
            let name = rest.split(']').next().unwrap_or_default();
            table = resolve_table(name, &arrays);
            last_key = None;
            if here {
                return table;
            }
        } else {
            if let Some((key, _)) = trimmed.split_once('=')
                && is_key(key)
            {
                last_key = Some(normalize_key(key));
            }
            if here {
                break;
            }
        }
        start = end;
    }
    match last_key {
        Some(key) if table.is_empty() => key,
        Some(key) => format!("{table}.{key}"),
        None => table,
    }
}

/// A header name with the current index of each enclosing array of tables:
/// `services.members` -> `services[1].members`.
fn resolve_table(name: &str, arrays: &HashMap<String, usize>) -> String {
    let segments: Vec<String> = name.split('.').map(unquote).collect();
    let mut path = String::new();
    for (i, segment) in segments.iter().enumerate() {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(segment);
        if i + 1 < segments.len()
            && let Some(n) = arrays.get(&path)
        {
            path = format!("{path}[{}]", n.saturating_sub(1));
        }
    }
    path
}

fn is_key(key: &str) -> bool {
    let key = key.trim();
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\'' | ' '))
}

fn normalize_key(key: &str) -> String {
    key.split('.').map(unquote).collect::<Vec<_>>().join(".")
}

fn unquote(segment: &str) -> String {
    segment
        .trim()
        .trim_matches('"')
        .trim_matches('\'')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"[datapath]
interfaces = ["eth0"]

[[services]]
name = "orders-cache"
vip = "198.18.0.100:6379"

[[services.members]]
name = "us-east"
addr = "198.18.1.10:6379"
"#;

    const FULL: &str = r#"# full example
[datapath]
interfaces = ["eth0", "eth1"]
ingress = "tc"
pin_path = "/sys/fs/bpf/test"
conntrack_entries = 4096
flow_idle_timeout = "2h"
flow_close_timeout = "5s"

[admin]
socket = "/tmp/redirector-admin.sock"
metrics = "off"

[[services]]
name = "orders-cache"
vip = "198.18.0.100:6379"
failback = "manual"
failback_delay = "1m 30s"
on_failover = "keep"
drain_timeout = "0s"

[services.check]
kind = "redis-setget"
interval = "500ms"
timeout = "200ms"
fast_interval = "100ms"
rise = 5
fall = 1
username = "probe"
password_file = "/etc/redirector/redis.pass"
tls = true
ca_file = "/etc/redirector/ca.pem"
server_name = "redis.example"
cluster = true
key_prefix = "probe:"
ttl = "5s"

[[services.members]]
name = "us-east"
addr = "198.18.1.10:6379"

[[services.members]]
name = "us-west"
addr = "Redis-West.example.com:6380"
priority = 7

[[services]]
name = "sessions"
vip = "[2001:db8::100]:6379"

[services.check]
kind = "availability"
bdb_uid = 3
username = "admin@example.com"
password_env = "RS_PASSWORD"
server_name = "cluster.example"

[[services.members]]
name = "a"
addr = "[2001:db8::10]:6379"

[[services.members]]
name = "b"
addr = "redis-b.example:6379"

[[services]]
name = "queue"
vip = "198.18.0.101:6379"

[services.check]
kind = "exec"
command = ["/usr/local/bin/check", "{host}", "{port}"]

[[services.members]]
name = "one"
addr = "198.18.3.10:6379"

[[services]]
name = "plain"
vip = "198.18.0.102:6379"

[services.check]
kind = "tcp"

[[services.members]]
name = "one"
addr = "198.18.4.10:6379"
"#;

    /// The sketch in DESIGN.md, verbatim.
    const DESIGN_SKETCH: &str = r#"[datapath]
interfaces = ["eth0"]
ingress = "auto"
pin_path = "/sys/fs/bpf/redirector"
conntrack_entries = 262144

[admin]
socket = "/run/redirector/admin.sock"   # JSON API, root-only
metrics = "127.0.0.1:9477"              # Prometheus text format

[[services]]
name = "orders-cache"
vip = "198.18.0.100:6379"       # or "[2001:db8::100]:6379"
failback = "auto"               # "auto" | "manual"
failback_delay = "30s"          # preferred member must stay healthy this long
on_failover = "reset"           # flows on a failed member: "reset" | "keep"
drain_timeout = "10s"           # planned moves: open flows on the old member get this
                                # long, then are reset (pooled clients come back)

[services.check]
kind = "redis-ping"             # tcp | redis-ping | redis-echo | redis-setget | availability | exec
interval = "250ms"
timeout = "250ms"
rise = 3
fall = 2

[[services.members]]
name = "us-east"
addr = "198.18.1.10:6379"       # IP or DNS name (re-resolved periodically)
priority = 1

[[services.members]]
name = "us-west"
addr = "198.18.2.10:6379"
priority = 2
"#;

    fn ok(text: &str) -> Config {
        match parse(text, Path::new("test.toml")) {
            Ok(c) => c,
            Err(e) => panic!("config should parse: {e}"),
        }
    }

    fn reject(text: &str) -> ConfigError {
        match parse(text, Path::new("test.toml")) {
            Ok(c) => panic!("config should be rejected: {c:?}"),
            Err(e) => e,
        }
    }

    /// 1-based line of the `nth` (0-based) line containing `needle`.
    fn line_of(text: &str, needle: &str, nth: usize) -> usize {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .nth(nth)
            .map(|(i, _)| i + 1)
            .unwrap_or_else(|| panic!("{needle:?} #{nth} not in text"))
    }

    fn assert_error(e: &ConfigError, line: usize, field: &str, mentions: &str) {
        assert_eq!(e.line(), line, "line of {e}");
        assert_eq!(e.field(), field, "field of {e}");
        assert!(
            e.to_string().contains(mentions),
            "{e} should mention {mentions:?}"
        );
        assert!(e.to_string().starts_with("test.toml:"), "{e}");
    }

    #[test]
    fn full_config_parses_into_expected_values() {
        let c = ok(FULL);
        assert_eq!(
            c.datapath,
            DatapathSection {
                interfaces: vec!["eth0".into(), "eth1".into()],
                ingress: IngressMode::Tc,
                pin_path: PathBuf::from("/sys/fs/bpf/test"),
                conntrack_entries: 4096,
                flow_idle_timeout: Duration::from_secs(2 * 3600),
                flow_close_timeout: Duration::from_secs(5),
            }
        );
        assert_eq!(
            c.admin,
            AdminSection {
                socket: PathBuf::from("/tmp/redirector-admin.sock"),
                metrics: None,
            }
        );
        assert_eq!(c.services.len(), 4);

        let orders = &c.services[0];
        assert_eq!(orders.name, "orders-cache");
        assert_eq!(
            orders.vip,
            "198.18.0.100:6379".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(orders.failback, Failback::Manual);
        assert_eq!(orders.failback_delay, Duration::from_secs(90));
        assert_eq!(orders.on_failover, OnFailover::Keep);
        assert_eq!(orders.drain_timeout, Duration::ZERO);
        assert_eq!(
            orders.check,
            Check {
                kind: CheckKind::RedisSetGet {
                    redis: RedisOptions {
                        username: Some("probe".into()),
                        password: Some(Secret::File("/etc/redirector/redis.pass".into())),
                        tls: Some(TlsOptions {
                            ca_file: Some("/etc/redirector/ca.pem".into()),
                            server_name: Some("redis.example".into()),
                        }),
                    },
                    cluster: true,
                    key_prefix: "probe:".into(),
                    ttl: Duration::from_secs(5),
                },
                interval: Duration::from_millis(500),
                timeout: Duration::from_millis(200),
                fast_interval: Duration::from_millis(100),
                rise: 5,
                fall: 1,
            }
        );
        assert_eq!(
            orders.members,
            vec![
                Member {
                    name: "us-east".into(),
                    host: "198.18.1.10".into(),
                    port: 6379,
                    priority: 1,
                },
                Member {
                    name: "us-west".into(),
                    host: "Redis-West.example.com".into(),
                    port: 6380,
                    priority: 7,
                },
            ]
        );

        let sessions = &c.services[1];
        assert_eq!(
            sessions.vip,
            "[2001:db8::100]:6379".parse::<SocketAddr>().unwrap()
        );
        assert!(sessions.vip.is_ipv6());
        assert_eq!(sessions.failback, Failback::Auto);
        assert_eq!(sessions.failback_delay, Duration::from_secs(30));
        assert_eq!(sessions.on_failover, OnFailover::Reset);
        assert_eq!(sessions.drain_timeout, Duration::from_secs(10));
        assert_eq!(
            sessions.check.kind,
            CheckKind::Availability(AvailabilityOptions {
                port: 9443,
                bdb_uid: 3,
                lag_tolerance_ms: 100,
                username: "admin@example.com".into(),
                password: Secret::Env("RS_PASSWORD".into()),
                tls: TlsOptions {
                    ca_file: None,
                    server_name: Some("cluster.example".into()),
                },
            })
        );
        assert_eq!(sessions.check.interval, Duration::from_millis(250));
        assert_eq!(sessions.check.timeout, Duration::from_millis(250));
        assert_eq!(sessions.check.fast_interval, Duration::from_millis(50));
        assert_eq!((sessions.check.rise, sessions.check.fall), (3, 2));
        assert_eq!(sessions.members[0].host, "2001:db8::10");
        assert_eq!(sessions.members[0].port, 6379);
        assert_eq!(sessions.members[0].priority, 1);
        assert_eq!(sessions.members[1].host, "redis-b.example");
        assert_eq!(sessions.members[1].priority, 2);

        assert_eq!(
            c.services[2].check.kind,
            CheckKind::Exec {
                command: vec![
                    "/usr/local/bin/check".into(),
                    "{host}".into(),
                    "{port}".into()
                ],
            }
        );
        assert_eq!(c.services[3].check.kind, CheckKind::Tcp);
        assert_eq!(c.services[3].check.kind.as_str(), "tcp");
    }

    #[test]
    fn omitted_keys_take_their_defaults() {
        let c = ok(MINIMAL);
        assert_eq!(c.datapath.ingress, IngressMode::Auto);
        assert_eq!(c.datapath.pin_path, PathBuf::from("/sys/fs/bpf/redirector"));
        assert_eq!(c.datapath.conntrack_entries, 262_144);
        assert_eq!(c.admin.socket, PathBuf::from("/run/redirector/admin.sock"));
        assert_eq!(
            c.admin.metrics,
            Some("127.0.0.1:9477".parse::<SocketAddr>().unwrap())
        );
        let s = &c.services[0];
        assert_eq!(s.failback, Failback::Auto);
        assert_eq!(s.failback_delay, Duration::from_secs(30));
        assert_eq!(s.on_failover, OnFailover::Reset);
        assert_eq!(s.drain_timeout, Duration::from_secs(10));
        assert_eq!(
            s.check,
            Check {
                kind: CheckKind::RedisPing(RedisOptions {
                    username: None,
                    password: None,
                    tls: None,
                }),
                interval: Duration::from_millis(250),
                timeout: Duration::from_millis(250),
                fast_interval: Duration::from_millis(50),
                rise: 3,
                fall: 2,
            }
        );
        assert_eq!(s.members[0].priority, 1);
    }

    #[test]
    fn setget_defaults_apply() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\nkind = \"redis-setget\"\n\n[[services.members]]",
        );
        let c = ok(&text);
        assert_eq!(
            c.services[0].check.kind,
            CheckKind::RedisSetGet {
                redis: RedisOptions {
                    username: None,
                    password: None,
                    tls: None,
                },
                cluster: false,
                key_prefix: "redirector:probe:".into(),
                ttl: Duration::from_secs(10),
            }
        );
    }

    #[test]
    fn design_sketch_example_parses() {
        let c = ok(DESIGN_SKETCH);
        assert_eq!(c.services.len(), 1);
        let s = &c.services[0];
        assert_eq!(s.name, "orders-cache");
        assert_eq!(s.members.len(), 2);
        assert_eq!(s.members[1].priority, 2);
        assert_eq!(s.check.kind.as_str(), "redis-ping");
        assert!(warnings(&c).is_empty());
    }

    #[test]
    fn unknown_key_is_rejected_with_its_line_and_table() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\nintervall = \"1s\"\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "intervall", 0),
            "services[0].check.intervall",
            "unknown field `intervall`",
        );
    }

    #[test]
    fn unknown_key_in_second_member_names_its_index() {
        let text = format!("{MINIMAL}\n[[services.members]]\nname = \"b\"\naddres = \"x:1\"\n");
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "addres =", 0),
            "services[0].members[1].addres",
            "unknown field",
        );
    }

    #[test]
    fn unknown_top_level_table_is_rejected() {
        let text = format!("{MINIMAL}\n[daemon]\nx = 1\n");
        let e = reject(&text);
        assert_eq!(e.line(), line_of(&text, "[daemon]", 0));
        assert_eq!(e.field(), "daemon");
        assert!(e.to_string().contains("unknown field `daemon`"), "{e}");
    }

    #[test]
    fn wrong_value_type_is_rejected_with_its_line() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\nrise = \"three\"\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "rise =", 0),
            "services[0].check.rise",
            "invalid type",
        );
    }

    #[test]
    fn toml_syntax_error_reports_its_line() {
        let text = MINIMAL.replace("name = \"us-east\"", "name = \"us-east");
        let e = reject(&text);
        assert_eq!(e.line(), line_of(&text, "name = \"us-east", 0));
        assert!(e.column() >= 1);
    }

    #[test]
    fn bad_vip_address_is_rejected_with_its_line() {
        let text = MINIMAL.replace("198.18.0.100:6379", "198.18.0.300:6379");
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "vip =", 0),
            "services[0].vip",
            "invalid address",
        );
        assert_eq!(e.column(), 7);
    }

    #[test]
    fn vip_port_zero_is_rejected() {
        let text = MINIMAL.replace("198.18.0.100:6379", "198.18.0.100:0");
        let e = reject(&text);
        assert_error(&e, line_of(&text, "vip =", 0), "services[0].vip", "port");
    }

    #[test]
    fn bad_member_address_is_rejected_with_its_line() {
        for bad in [
            "198.18.1.300:6379",
            "not a host:6379",
            "198.18.1.10:99999",
            "2001:db8::10:6379x",
        ] {
            let text = MINIMAL.replace("198.18.1.10:6379", bad);
            let e = reject(&text);
            assert_eq!(e.line(), line_of(&text, "addr =", 0), "{bad}: {e}");
            assert_eq!(e.field(), "services[0].members[0].addr", "{bad}: {e}");
            assert!(e.to_string().contains("invalid"), "{bad}: {e}");
        }
    }

    #[test]
    fn member_without_port_is_rejected() {
        for bad in [
            "198.18.1.10",
            "redis.example",
            "[2001:db8::10]",
            "redis.example:",
        ] {
            let text = MINIMAL.replace("198.18.1.10:6379", bad);
            let e = reject(&text);
            assert_error(
                &e,
                line_of(&text, "addr =", 0),
                "services[0].members[0].addr",
                "member has no port",
            );
        }
    }

    #[test]
    fn member_port_zero_is_rejected() {
        let text = MINIMAL.replace("198.18.1.10:6379", "redis.example:0");
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "addr =", 0),
            "services[0].members[0].addr",
            "port must be 1..65535",
        );
    }

    #[test]
    fn duplicate_service_name_is_rejected_with_its_line() {
        let text = format!(
            "{MINIMAL}\n[[services]]\nname = \"orders-cache\"\nvip = \"198.18.0.101:6379\"\n\
             [[services.members]]\nname = \"a\"\naddr = \"198.18.1.11:6379\"\n"
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "name = \"orders-cache\"", 1),
            "services[1].name",
            "duplicate service name",
        );
    }

    #[test]
    fn duplicate_vip_is_rejected_with_its_line() {
        let text = format!(
            "{MINIMAL}\n[[services]]\nname = \"other\"\nvip = \"198.18.0.100:6379\"\n\
             [[services.members]]\nname = \"a\"\naddr = \"198.18.1.11:6379\"\n"
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "vip =", 1),
            "services[1].vip",
            "duplicate VIP 198.18.0.100:6379",
        );
    }

    #[test]
    fn duplicate_member_name_within_a_service_is_rejected() {
        let text = format!(
            "{MINIMAL}\n[[services.members]]\nname = \"us-east\"\naddr = \"198.18.2.10:6379\"\n"
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "name = \"us-east\"", 1),
            "services[0].members[1].name",
            "duplicate member name",
        );
    }

    #[test]
    fn same_member_name_in_two_services_is_allowed() {
        let text = format!(
            "{MINIMAL}\n[[services]]\nname = \"other\"\nvip = \"198.18.0.101:6379\"\n\
             [[services.members]]\nname = \"us-east\"\naddr = \"198.18.1.11:6379\"\n"
        );
        assert_eq!(ok(&text).services[1].members[0].name, "us-east");
    }

    #[test]
    fn invalid_service_name_is_rejected() {
        let text = MINIMAL.replace("name = \"orders-cache\"", "name = \"orders cache\"");
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "orders cache", 0),
            "services[0].name",
            "invalid name",
        );
    }

    #[test]
    fn missing_service_name_is_rejected_at_its_table() {
        let text = MINIMAL.replace("name = \"orders-cache\"\n", "");
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "[[services]]", 0),
            "services[0].name",
            "is required",
        );
    }

    #[test]
    fn zero_rise_is_rejected() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\nrise = 0\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "rise = 0", 0),
            "services[0].check.rise",
            "at least 1",
        );
    }

    #[test]
    fn zero_fall_is_rejected() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\nfall = 0\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "fall = 0", 0),
            "services[0].check.fall",
            "at least 1",
        );
    }

    #[test]
    fn timeout_longer_than_interval_is_rejected_on_timeout() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\ninterval = \"100ms\"\ntimeout = \"1s\"\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "timeout =", 0),
            "services[0].check.timeout",
            "longer than interval",
        );
    }

    #[test]
    fn fast_interval_longer_than_interval_is_rejected() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nfast_interval = \"1s\"\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "fast_interval =", 0),
            "services[0].check.fast_interval",
            "longer than interval",
        );
    }

    #[test]
    fn zero_interval_and_bad_duration_are_rejected() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\ninterval = \"0s\"\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "interval =", 0),
            "services[0].check.interval",
            "greater than 0",
        );

        let text = MINIMAL.replace(
            "vip = \"198.18.0.100:6379\"",
            "vip = \"198.18.0.100:6379\"\nfailback_delay = \"soon\"",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "failback_delay", 0),
            "services[0].failback_delay",
            "invalid duration",
        );
    }

    /// MINIMAL with `line` added to the service (`service = true`) or to
    /// its check table.
    fn with_line(line: &str, service: bool) -> String {
        if service {
            MINIMAL.replace(
                "vip = \"198.18.0.100:6379\"",
                &format!("vip = \"198.18.0.100:6379\"\n{line}"),
            )
        } else {
            MINIMAL.replace(
                "[[services.members]]",
                &format!("[services.check]\n{line}\n\n[[services.members]]"),
            )
        }
    }

    /// `text` is rejected at the line holding `needle`, naming `field`.
    fn rejected_at(text: &str, needle: &str, field: &str, mentions: &str) {
        assert_error(&reject(text), line_of(text, needle, 0), field, mentions);
    }

    /// One bounded key: values just inside and just outside its range.
    struct Bound {
        key: &'static str,
        /// In the service table (else in its check table).
        service: bool,
        accepted: &'static [&'static str],
        rejected: &'static [&'static str],
        mentions: &'static str,
    }

    impl Bound {
        fn field(&self) -> String {
            match self.service {
                true => format!("services[0].{}", self.key),
                false => format!("services[0].check.{}", self.key),
            }
        }

        /// The config with `key = v`; a check key is tried with interval
        /// 1h and timeout and fast_interval 1ms, so only its bound can fail.
        fn text(&self, v: &str) -> String {
            let line = format!("{} = {v}", self.key);
            if self.service {
                return with_line(&line, true);
            }
            let mut lines: Vec<String> = match self.key {
                "interval" => vec!["timeout = \"1ms\"".into(), "fast_interval = \"1ms\"".into()],
                _ => [
                    "interval = \"1h\"",
                    "timeout = \"1ms\"",
                    "fast_interval = \"1ms\"",
                ]
                .into_iter()
                .filter(|l| !l.starts_with(&format!("{} ", self.key)))
                .map(String::from)
                .collect(),
            };
            lines.push(line);
            with_line(&lines.join("\n"), false)
        }
    }

    /// Every duration and count is bounded: the value just inside each
    /// bound parses, the one just outside is rejected at its line and field.
    #[test]
    fn durations_and_counts_are_bounded() {
        const CHECK: &[&str] = &["\"1ms\"", "\"1h\""];
        const COUNT: &[&str] = &["1", "100"];
        const DELAY: &[&str] = &["\"0s\"", "\"24h\""];
        let bound = |key, service, accepted, rejected, mentions| Bound {
            key,
            service,
            accepted,
            rejected,
            mentions,
        };
        let cases = [
            bound(
                "interval",
                false,
                CHECK,
                &["\"999us\"", "\"3601s\""],
                "between 1ms and 1h",
            ),
            bound(
                "timeout",
                false,
                CHECK,
                &["\"999us\"", "\"2h\""],
                "between 1ms and 1h",
            ),
            bound(
                "fast_interval",
                false,
                CHECK,
                &["\"500us\"", "\"2h\""],
                "between 1ms and 1h",
            ),
            bound("rise", false, COUNT, &["101", "4000000000"], "at most 100"),
            bound("fall", false, COUNT, &["101", "4000000000"], "at most 100"),
            bound(
                "failback_delay",
                true,
                DELAY,
                &["\"86401s\""],
                "between 0s and 1day",
            ),
            bound(
                "drain_timeout",
                true,
                DELAY,
                &["\"86401s\""],
                "between 0s and 1day",
            ),
        ];
        for b in &cases {
            for v in b.accepted {
                ok(&b.text(v));
            }
            for v in b.rejected {
                let needle = format!("{} = {v}", b.key);
                rejected_at(&b.text(v), &needle, &b.field(), b.mentions);
            }
        }
        // redis-setget's key time-to-live.
        let text = with_line("kind = \"redis-setget\"\nttl = \"2h\"", false);
        rejected_at(
            &text,
            "ttl =",
            "services[0].check.ttl",
            "between 1ms and 1h",
        );
    }

    /// The inputs that used to panic the probe task ("overflow when adding
    /// duration to instant") or the service task on switchover.
    #[test]
    fn absurd_durations_that_used_to_panic_are_rejected() {
        for (key, service, mentions) in [
            ("interval", false, "between 1ms and 1h"),
            ("drain_timeout", true, "between 0s and 1day"),
            ("failback_delay", true, "between 0s and 1day"),
        ] {
            let text = with_line(&format!("{key} = \"500000000000y\""), service);
            let field = match service {
                true => format!("services[0].{key}"),
                false => format!("services[0].check.{key}"),
            };
            rejected_at(&text, &format!("{key} ="), &field, mentions);
        }
    }

    /// Configs that parse but cannot work: each is refused at its line.
    #[test]
    fn addresses_that_cannot_work_are_rejected() {
        let member = "addr = \"198.18.1.10:6379\"";
        let vip = "vip = \"198.18.0.100:6379\"";
        let f_member = "services[0].members[0].addr";
        let f_vip = "services[0].vip";
        // (replacement line, what the error mentions); an `addr` line
        // replaces the member's, a `vip` line the VIP's.
        for (to, mentions) in [
            ("addr = \"198.18.0.100:6379\"", "is the VIP itself"),
            ("addr = \"0.0.0.0:6379\"", "unspecified"),
            ("addr = \"224.0.0.1:6379\"", "multicast"),
            ("addr = \"255.255.255.255:6379\"", "broadcast"),
            ("vip = \"127.0.0.1:6379\"", "loopback"),
            ("vip = \"224.0.0.5:6379\"", "multicast"),
            ("vip = \"255.255.255.255:6379\"", "broadcast"),
        ] {
            let (from, field) = match to.starts_with("addr") {
                true => (member, f_member),
                false => (vip, f_vip),
            };
            let text = MINIMAL.replace(from, to);
            rejected_at(&text, to, field, mentions);
        }
        // IPv6: unspecified and multicast members, a loopback VIP.
        let v6 = MINIMAL
            .replace(vip, "vip = \"[2001:db8::100]:6379\"")
            .replace(member, "addr = \"[2001:db8::10]:6379\"");
        ok(&v6);
        for (from, to, field, mentions) in [
            (
                "addr = \"[2001:db8::10]:6379\"",
                "addr = \"[::]:6379\"",
                f_member,
                "unspecified",
            ),
            (
                "addr = \"[2001:db8::10]:6379\"",
                "addr = \"[ff02::1]:6379\"",
                f_member,
                "multicast",
            ),
            (
                "addr = \"[2001:db8::10]:6379\"",
                "addr = \"[2001:db8::100]:6379\"",
                f_member,
                "VIP itself",
            ),
            (
                "vip = \"[2001:db8::100]:6379\"",
                "vip = \"[::1]:6379\"",
                f_vip,
                "loopback",
            ),
        ] {
            let text = v6.replace(from, to);
            rejected_at(&text, to, field, mentions);
        }
        // Same IP as the VIP on another port is a different endpoint.
        ok(&MINIMAL.replace(member, "addr = \"198.18.0.100:6380\""));
    }

    #[test]
    fn an_admin_socket_path_longer_than_sun_path_is_rejected() {
        let path = |len: usize| format!("/{}", "s".repeat(len - 1));
        let with = |p: &str| {
            MINIMAL.replace(
                "[[services]]",
                &format!("[admin]\nsocket = \"{p}\"\n\n[[services]]"),
            )
        };
        ok(&with(&path(107)));
        let text = with(&path(108));
        rejected_at(&text, "socket =", "admin.socket", "at most 107");
    }

    #[test]
    fn conntrack_entries_above_16mi_are_rejected() {
        let base = "interfaces = [\"eth0\"]";
        ok(&MINIMAL.replace(base, &format!("{base}\nconntrack_entries = 16777216")));
        let text = MINIMAL.replace(base, &format!("{base}\nconntrack_entries = 16777217"));
        let e = reject(&text);
        assert_error(&e, 3, "datapath.conntrack_entries", "at most 16777216");
    }

    #[test]
    fn zero_services_is_rejected() {
        let e = reject("[datapath]\ninterfaces = [\"eth0\"]\n");
        assert_error(&e, 1, "services", "at least one [[services]]");

        let text = "# no services\nservices = []\n[datapath]\ninterfaces = [\"eth0\"]\n";
        let e = reject(text);
        assert_error(&e, 2, "services", "at least one [[services]]");
    }

    #[test]
    fn zero_members_is_rejected() {
        let text = "[datapath]\ninterfaces = [\"eth0\"]\n\n[[services]]\nname = \"a\"\nvip = \"198.18.0.100:6379\"\n";
        let e = reject(text);
        assert_error(
            &e,
            4,
            "services[0].members",
            "at least one [[services.members]]",
        );
    }

    #[test]
    fn v6_member_behind_v4_vip_is_rejected() {
        let text = MINIMAL.replace("198.18.1.10:6379", "[2001:db8::10]:6379");
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "addr =", 0),
            "services[0].members[0].addr",
            "address families differ",
        );
    }

    #[test]
    fn v4_member_behind_v6_vip_is_rejected_but_dns_member_is_allowed() {
        let text = MINIMAL.replace("198.18.0.100:6379", "[2001:db8::100]:6379");
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "addr =", 0),
            "services[0].members[0].addr",
            "IPv4 member",
        );
        let text = text.replace("198.18.1.10:6379", "redis.example:6379");
        assert_eq!(ok(&text).services[0].members[0].host, "redis.example");
    }

    #[test]
    fn unknown_check_kind_is_rejected() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\nkind = \"http\"\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "kind =", 0),
            "services[0].check.kind",
            "unknown check kind \"http\"",
        );
    }

    #[test]
    fn key_for_another_kind_is_rejected() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\nkind = \"tcp\"\ncommand = [\"/bin/true\"]\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "command =", 0),
            "services[0].check.command",
            "only valid for kind exec",
        );

        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\nkind = \"redis-ping\"\nttl = \"1s\"\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "ttl =", 0),
            "services[0].check.ttl",
            "only valid for kind redis-setget",
        );
    }

    #[test]
    fn tls_options_without_tls_are_rejected() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\nca_file = \"/ca.pem\"\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "ca_file", 0),
            "services[0].check.ca_file",
            "requires tls = true",
        );
    }

    #[test]
    fn both_password_sources_are_rejected() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\npassword_file = \"/p\"\npassword_env = \"P\"\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "password_env", 0),
            "services[0].check.password_env",
            "at most one",
        );
    }

    #[test]
    fn availability_requires_bdb_uid_and_credentials() {
        let check =
            "[services.check]\nkind = \"availability\"\nusername = \"u\"\npassword_env = \"P\"\n";
        let with = |body: &str| {
            MINIMAL.replace(
                "[[services.members]]",
                &format!("{body}\n[[services.members]]"),
            )
        };

        let text = with(check);
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "[services.check]", 0),
            "services[0].check.bdb_uid",
            "required",
        );

        let text = with(&check.replace("username = \"u\"\n", "bdb_uid = 1\n"));
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "[services.check]", 0),
            "services[0].check.username",
            "required for kind availability",
        );

        let text = with(&check.replace("password_env = \"P\"\n", "bdb_uid = 1\n"));
        let e = reject(&text);
        assert_eq!(e.field(), "services[0].check.password_file");

        let text = with(&format!(
            "{check}bdb_uid = 1\nport = 9444\nlag_tolerance_ms = 5\n"
        ));
        let CheckKind::Availability(a) = &ok(&text).services[0].check.kind else {
            panic!("expected availability");
        };
        assert_eq!((a.bdb_uid, a.port, a.lag_tolerance_ms), (1, 9444, 5));
    }

    #[test]
    fn exec_requires_a_command() {
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\nkind = \"exec\"\ncommand = []\n\n[[services.members]]",
        );
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "command =", 0),
            "services[0].check.command",
            "non-empty",
        );
    }

    #[test]
    fn empty_interfaces_are_rejected() {
        let text = MINIMAL.replace("[\"eth0\"]", "[]");
        let e = reject(&text);
        assert_error(&e, 2, "datapath.interfaces", "at least one interface");

        let text = MINIMAL.replace("[datapath]\ninterfaces = [\"eth0\"]\n", "");
        let e = reject(&text);
        assert_eq!(e.field(), "datapath.interfaces");
    }

    #[test]
    fn flow_timeouts_default_and_are_bounded() {
        let c = ok(MINIMAL);
        assert_eq!(c.datapath.flow_idle_timeout, DEFAULT_FLOW_IDLE_TIMEOUT);
        assert_eq!(c.datapath.flow_close_timeout, DEFAULT_FLOW_CLOSE_TIMEOUT);
        for (line, field, mentions) in [
            (
                "flow_idle_timeout = \"10s\"",
                "datapath.flow_idle_timeout",
                "between 1m and 7days",
            ),
            (
                "flow_idle_timeout = \"30days\"",
                "datapath.flow_idle_timeout",
                "got 30days",
            ),
            (
                "flow_close_timeout = \"0s\"",
                "datapath.flow_close_timeout",
                "greater than 0",
            ),
            (
                "flow_close_timeout = \"1h\"",
                "datapath.flow_close_timeout",
                "between 1s and 10m",
            ),
        ] {
            let text = MINIMAL.replace(
                "interfaces = [\"eth0\"]",
                &format!("interfaces = [\"eth0\"]\n{line}"),
            );
            assert_error(&reject(&text), 3, field, mentions);
        }
    }

    #[test]
    fn small_conntrack_table_is_rejected() {
        let text = MINIMAL.replace(
            "interfaces = [\"eth0\"]",
            "interfaces = [\"eth0\"]\nconntrack_entries = 100",
        );
        let e = reject(&text);
        assert_error(&e, 3, "datapath.conntrack_entries", "at least 1024");
    }

    #[test]
    fn bad_metrics_address_is_rejected_and_off_disables() {
        let text = format!("[admin]\nmetrics = \"localhost\"\n{MINIMAL}");
        let e = reject(&text);
        assert_error(&e, 2, "admin.metrics", "invalid address");

        let text = format!("[admin]\nmetrics = \"off\"\n{MINIMAL}");
        assert_eq!(ok(&text).admin.metrics, None);
    }

    #[test]
    fn error_display_is_file_line_column_field_message() {
        let text = MINIMAL.replace("198.18.0.100:6379", "nope");
        let e = reject(&text);
        assert_eq!(
            e.to_string(),
            "test.toml:6:7: services[0].vip: invalid address \"nope\": expected IP:port or [IPv6]:port"
        );
    }

    #[test]
    fn column_counts_characters_not_bytes() {
        assert_eq!(line_col("a = \"é\"\nb", 0), (1, 1));
        assert_eq!(line_col("é = x", 3), (1, 3));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
        assert_eq!(line_col("a", 100), (1, 2));
    }

    #[test]
    fn secret_debug_shows_only_its_source() {
        let file = Secret::File(PathBuf::from("/etc/redirector/redis.pass"));
        let env = Secret::Env("REDIS_PASSWORD".into());
        assert_eq!(
            format!("{file:?}"),
            "Secret(file /etc/redirector/redis.pass)"
        );
        assert_eq!(format!("{env:?}"), "Secret(env REDIS_PASSWORD)");

        // A whole Config's Debug shows the variable's name, never a value.
        let text = MINIMAL.replace(
            "[[services.members]]",
            "[services.check]\npassword_env = \"REDIRECTOR_TEST_SECRET\"\n\n[[services.members]]",
        );
        let shown = format!("{:?}", ok(&text));
        assert!(
            shown.contains("Secret(env REDIRECTOR_TEST_SECRET)"),
            "{shown}"
        );
    }

    #[test]
    fn member_behind_two_vips_is_warned_about() {
        let text = format!(
            "{MINIMAL}\n[[services]]\nname = \"other\"\nvip = \"198.18.0.101:6379\"\n\
             [[services.members]]\nname = \"a\"\naddr = \"198.18.1.10:6379\"\n\
             [[services.members]]\nname = \"b\"\naddr = \"198.18.1.11:6379\"\n"
        );
        let c = ok(&text);
        assert_eq!(
            warnings(&c),
            vec![
                "member 198.18.1.10:6379 is behind services orders-cache and other: two client \
                 connections with the same source port can collide on one 4-tuple"
                    .to_string()
            ]
        );
    }

    #[test]
    fn ipv6_and_dns_members_behind_two_vips_are_warned_about() {
        let c = ok(FULL);
        assert!(warnings(&c).is_empty());
        let text = format!(
            "{FULL}\n[[services]]\nname = \"s6\"\nvip = \"[2001:db8::101]:6379\"\n\
             [[services.members]]\nname = \"a\"\naddr = \"[2001:db8:0::10]:6379\"\n\
             [[services.members]]\nname = \"b\"\naddr = \"REDIS-B.example:6379\"\n"
        );
        let w = warnings(&ok(&text));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("member [2001:db8::10]:6379 is behind services sessions and s6"));
        assert!(w[1].starts_with("member redis-b.example:6379 is behind services sessions and s6"));
    }

    #[test]
    fn load_reads_the_file_and_names_it_in_errors() {
        let dir = std::env::temp_dir().join(format!("redirector-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, MINIMAL).unwrap();
        assert_eq!(load(&good).unwrap(), ok(MINIMAL));

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, MINIMAL.replace("198.18.1.10:6379", "198.18.1.10")).unwrap();
        let e = load(&bad).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("{}:10:", bad.display())),
            "{e}"
        );

        let missing = dir.join("missing.toml");
        let e = load(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

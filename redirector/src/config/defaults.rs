//! Defaults of omitted keys and the accepted range of each bounded value,
//! by section. The public ones are part of the documented model (tests and
//! the CLI use them); the others only matter to validation.

use std::time::Duration;

// [datapath]

pub(super) const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/redirector";
/// `conntrack_entries` when omitted: the size the kernel maps are declared
/// with.
pub(super) use redirector_common::DEFAULT_CONNTRACK_ENTRIES;
pub(super) const MIN_CONNTRACK_ENTRIES: u32 = 1024;
/// 16 Mi flows. The two flow maps (CONNTRACK, REVERSE_NAT) are
/// preallocated LRU hashes: the kernel refuses more than 2^31 entries
/// outright (the bucket count is rounded up to a power of two in 32 bits)
/// and long before that allocating the elements (some 250 bytes of kernel
/// memory per flow with both maps) fails at load time. 16 Mi flows already
/// take about 4 GB; more is a typo, not a sizing.
pub const MAX_CONNTRACK_ENTRIES: u32 = 1 << 24;
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
/// Linux `IFNAMSIZ` minus the terminating NUL.
pub(super) const MAX_INTERFACE_NAME: usize = 15;

// [admin]

/// The admin socket when `admin.socket` is omitted; also the CLI's default.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/redirector/admin.sock";
/// `sun_path` is 108 bytes with its terminating NUL: a longer socket path
/// cannot be bound at all.
pub const MAX_SOCKET_PATH: usize = 107;
pub(super) const DEFAULT_METRICS: &str = "127.0.0.1:9477";

// [fleet]

pub(super) const DEFAULT_FLEET_PREFIX: &str = "/redirector";
/// `fleet.lease_ttl` when omitted: a dead host stops counting within 3 s.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(3);
/// Accepted `fleet.lease_ttl` range. etcd keeps TTLs in whole seconds and
/// a lease must outlive at least one keep-alive round trip, so 2 s is the
/// shortest that works; past an hour a dead host counts as live for longer
/// than any failover can wait.
pub const LEASE_TTL_RANGE: (Duration, Duration) =
    (Duration::from_secs(2), Duration::from_secs(3600));
/// `fleet.timeout` when omitted: one etcd request.
pub const DEFAULT_FLEET_TIMEOUT: Duration = Duration::from_secs(1);
/// `fleet.detach_timeout` when omitted.
pub const DEFAULT_DETACH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `fleet.detach_timeout`, as `drain_timeout`: a day.
pub(super) const MAX_DETACH_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

// [[services]]

/// `failback_delay` and `drain_timeout`: zero (at once) up to a day.
pub const SERVICE_DELAY_RANGE: (Duration, Duration) =
    (Duration::ZERO, Duration::from_secs(24 * 3600));
pub(super) const DEFAULT_FAILBACK_DELAY: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

// [services.check]

/// `check.interval`, `check.timeout`, `check.fast_interval` and
/// `check.ttl`: a millisecond is the finest period a check can keep, an
/// hour the longest that still makes it a health check.
pub const CHECK_DURATION_RANGE: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(3600));
/// `check.rise` and `check.fall`: consecutive results, 1 to 100.
pub const COUNT_RANGE: (u32, u32) = (1, 100);
pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
pub(super) const DEFAULT_FAST_INTERVAL: Duration = Duration::from_millis(50);
pub(super) const DEFAULT_RISE: u32 = 3;
pub(super) const DEFAULT_FALL: u32 = 2;
pub(super) const DEFAULT_KEY_PREFIX: &str = "redirector:probe:";
pub(super) const DEFAULT_SETGET_TTL: Duration = Duration::from_secs(10);
pub(super) const DEFAULT_AVAILABILITY_PORT: u16 = 9443;
pub(super) const DEFAULT_LAG_TOLERANCE_MS: u32 = 100;
/// `check.error_limit`: signals before `on_error` acts, 1 to 1000
/// (HAProxy's `error-limit` has no bound; past a thousand the reactive
/// side is off in all but name).
pub const ERROR_LIMIT_RANGE: (u32, u32) = (1, 1000);

//! Reactive health signals: what the application's own traffic says about a
//! member, noticed by the kernel programs off the hit path. The kinds, the
//! per-member counter entry the daemon creates for each observed member
//! (`MEMBER_SIGNALS`), the event the kernel sends at most once per member per
//! [`SIGNAL_NOTIFY_NS`] (`SIGNAL_EVENTS`), and the Redis error matcher.

use crate::maps::Endpoint;

/// Layer-4 signals are counted for the member (`MemberSignals::flags`).
pub const OBSERVE_L4: u32 = 1;
/// Redis error replies are counted for the member (`MemberSignals::flags`).
pub const OBSERVE_L7: u32 = 2;

/// Load-time switch (`SIGNALS` global of the kernel object): layer-4 signals
/// and the reply marks they need.
pub const SIGNALS_L4: u32 = 1;
/// Load-time switch: the peek at the start of reply segments.
pub const SIGNALS_L7: u32 = 2;
/// Every signal (the default of the kernel object).
pub const SIGNALS_ALL: u32 = SIGNALS_L4 | SIGNALS_L7;

/// At most one ring event per member per this many ns (10 ms).
pub const SIGNAL_NOTIFY_NS: u64 = 10_000_000;
/// Size of the `SIGNAL_EVENTS` ring: about 1,300 events of 40 + 8 bytes.
pub const SIGNAL_RING_BYTES: u32 = 64 * 1024;

/// What the traffic said about a member.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignalKind {
    /// A SYN to the member was answered with RST.
    Refused = 0,
    /// The member sent RST on an established flow it had not closed.
    Reset = 1,
    /// A SYN was sent again for a flow the member never answered.
    SynUnanswered = 2,
    /// An ICMP/ICMPv6 destination unreachable about a flow to the member.
    Unreachable = 3,
    /// A reply segment of the member starts with a Redis error that says
    /// the member cannot serve (`-LOADING`, `-MASTERDOWN`, ...).
    RedisError = 4,
}

impl SignalKind {
    /// Number of kinds; `MemberSignals::counts` has room for more.
    pub const COUNT: usize = 5;

    pub const ALL: [SignalKind; Self::COUNT] = [
        SignalKind::Refused,
        SignalKind::Reset,
        SignalKind::SynUnanswered,
        SignalKind::Unreachable,
        SignalKind::RedisError,
    ];

    /// Stable snake_case name (metric label, history).
    pub const fn as_str(self) -> &'static str {
        match self {
            SignalKind::Refused => "refused",
            SignalKind::Reset => "reset",
            SignalKind::SynUnanswered => "syn_unanswered",
            SignalKind::Unreachable => "unreachable",
            SignalKind::RedisError => "redis_error",
        }
    }

    /// The `OBSERVE_*` flag a member's entry needs for this kind to count.
    pub const fn observe_flag(self) -> u32 {
        match self {
            SignalKind::RedisError => OBSERVE_L7,
            _ => OBSERVE_L4,
        }
    }

    /// The kind with this number (as in [`SignalEvent::kind`]).
    pub const fn from_u32(n: u32) -> Option<Self> {
        if (n as usize) < Self::COUNT {
            Some(Self::ALL[n as usize])
        } else {
            None
        }
    }
}

/// `MEMBER_SIGNALS` value; the key is the member `Endpoint`. The daemon
/// inserts one per observed member and sets `flags`; the kernel never
/// inserts (no entry: nothing counted, nothing sent) and adds to the rest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberSignals {
    /// Signals so far, indexed by [`SignalKind`]; the last slots are spare.
    /// 64-bit: the BPF target has atomic adds of 64 bits only.
    pub counts: [u64; 8],
    /// Ring events lost because the ring was full (kernel).
    pub lost: u64,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the last ring event (kernel).
    pub notified_ns: u64,
    /// `OBSERVE_L4 | OBSERVE_L7` (daemon).
    pub flags: u32,
    /// Reserved (zero), e.g. for a per-member SYN watch (design note 1.2),
    /// so adding it keeps the pinned layout.
    pub _reserved: [u32; 3],
}
const _: () = assert!(core::mem::size_of::<MemberSignals>() == 96);

impl MemberSignals {
    /// A fresh entry observing what `flags` says.
    pub const fn observing(flags: u32) -> Self {
        Self {
            counts: [0; 8],
            lost: 0,
            notified_ns: 0,
            flags,
            _reserved: [0; 3],
        }
    }

    /// The count of `kind`.
    pub const fn count(&self, kind: SignalKind) -> u64 {
        self.counts[kind as usize]
    }
}

/// One `SIGNAL_EVENTS` record: the member had a signal of `kind`, and
/// `count` of that kind so far (signals between two events are not lost,
/// only not sent one by one).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalEvent {
    pub member: Endpoint,
    /// A [`SignalKind`] as `u32`.
    pub kind: u32,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC, as `Instant`) of the signal.
    pub at_ns: u64,
    /// `MemberSignals::counts[kind]` after this signal.
    pub count: u64,
}
const _: () = assert!(core::mem::size_of::<SignalEvent>() == 40);

/// Bytes of a reply segment the kernel peeks at ([`redis_error_prefix`]).
/// Every error line it looks for is longer (a token, a space and a message).
pub const REDIS_PEEK_LEN: usize = 16;

/// One error token followed by a space, as two masked little-endian words.
struct Pattern {
    words: [u64; 2],
    masks: [u64; 2],
}

const fn pattern(token: &[u8]) -> Pattern {
    let mut bytes = [0u8; REDIS_PEEK_LEN];
    let mut mask = [0u8; REDIS_PEEK_LEN];
    let mut i = 0;
    while i < token.len() {
        bytes[i] = token[i];
        mask[i] = 0xff;
        i += 1;
    }
    Pattern {
        words: split(&bytes),
        masks: split(&mask),
    }
}

/// 16 bytes as two little-endian words.
pub const fn split(b: &[u8; REDIS_PEEK_LEN]) -> [u64; 2] {
    [
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
    ]
}

/// The errors that say the member cannot serve now, each with its space:
/// `-BUSYKEY`, `-BUSYGROUP`, `-ERR`, `-WRONGTYPE`... describe one command.
const PATTERNS: [Pattern; 5] = [
    pattern(b"-LOADING "),
    pattern(b"-MASTERDOWN "),
    pattern(b"-BUSY "),
    pattern(b"-TRYAGAIN "),
    pattern(b"-CLUSTERDOWN "),
];

/// Whether a reply segment starting with `head` starts with one of the
/// Redis errors that say the member cannot serve. Word compares only (no
/// `memcmp` on the BPF target); the caller checks `head[0] == b'-'` first.
#[inline(always)]
pub fn redis_error_prefix(head: &[u8; REDIS_PEEK_LEN]) -> bool {
    let [w0, w1] = split(head);
    redis_error_words(w0, w1)
}

/// [`redis_error_prefix`] of the 16 bytes as two little-endian words (how
/// the kernel passes them to a call: in registers, not on the stack).
#[inline(always)]
pub fn redis_error_words(w0: u64, w1: u64) -> bool {
    let mut i = 0;
    while i < PATTERNS.len() {
        let p = &PATTERNS[i];
        if w0 & p.masks[0] == p.words[0] && w1 & p.masks[1] == p.words[1] {
            return true;
        }
        i += 1;
    }
    false
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, integers only, no padding (size assertions
    // above), so every bit pattern is valid and every byte initialised.
    unsafe impl aya::Pod for super::MemberSignals {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SignalEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &[u8]) -> [u8; REDIS_PEEK_LEN] {
        let mut h = [0u8; REDIS_PEEK_LEN];
        h.copy_from_slice(&s[..REDIS_PEEK_LEN]);
        h
    }

    #[test]
    fn error_prefixes_match_and_busykey_busygroup_err_do_not() {
        for yes in [
            &b"-LOADING Redis is loading the dataset in memory\r\n"[..],
            b"-MASTERDOWN Link with MASTER is down\r\n",
            b"-BUSY Redis is busy running a script.\r\n",
            b"-TRYAGAIN Multiple keys request during rehashing\r\n",
            b"-CLUSTERDOWN The cluster is down\r\n",
        ] {
            assert!(
                redis_error_prefix(&head(yes)),
                "{:?}",
                core::str::from_utf8(yes)
            );
        }
        for no in [
            &b"-BUSYKEY Target key name already exists.\r\n"[..],
            b"-BUSYGROUP Consumer Group name already exists\r\n",
            b"-ERR unknown command 'FOO'\r\n\r\n\r\n",
            b"-WRONGTYPE Operation against a key\r\n",
            b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n",
            b"$5\r\n-LOADING abcdefgh\r\n",
            b"-LOADINGX xxxxxxxxxxxxxxxxx",
            b"-CLUSTERDOWNX xxxxxxxxxxxxxx",
            b"LOADING xxxxxxxxxxxxxxxxxxxx",
        ] {
            assert!(
                !redis_error_prefix(&head(no)),
                "{:?}",
                core::str::from_utf8(no)
            );
        }
    }

    #[test]
    fn kinds_round_trip_and_have_distinct_labels() {
        for (i, k) in SignalKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
            assert_eq!(SignalKind::from_u32(i as u32), Some(*k));
            for other in &SignalKind::ALL[i + 1..] {
                assert_ne!(k.as_str(), other.as_str());
            }
        }
        assert_eq!(SignalKind::from_u32(SignalKind::COUNT as u32), None);
        assert!(SignalKind::COUNT <= MemberSignals::default().counts.len());
        assert_eq!(SignalKind::RedisError.observe_flag(), OBSERVE_L7);
        assert_eq!(SignalKind::Refused.observe_flag(), OBSERVE_L4);
    }
}

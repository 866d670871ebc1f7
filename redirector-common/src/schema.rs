//! The map schema: every pinned map's name, kind, key and value size and
//! capacity, written once. The kernel crate asserts its `#[map]` statics
//! against it, the loader refuses a pinned map that differs from it, and the
//! daemon's typed facade opens the maps by it.

use core::mem::size_of;

use crate::{
    Stat,
    maps::{
        Assignment, DownMark, Endpoint, FlowKey, MemberVip, ReplyTarget, ReverseKey, TrackedFlow,
    },
    signal::{MemberSignals, SIGNAL_RING_BYTES},
};

/// The kind of a map, as the kernel names it (`BPF_MAP_TYPE_*`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// `BPF_MAP_TYPE_HASH`.
    Hash = 1,
    /// `BPF_MAP_TYPE_ARRAY`: the key is a `u32` index.
    Array = 2,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`: the key is a `u32` index, the value one
    /// per CPU.
    PerCpuArray = 6,
    /// `BPF_MAP_TYPE_LRU_HASH`.
    LruHash = 9,
    /// `BPF_MAP_TYPE_RINGBUF`: no key or value; the capacity is its size
    /// in bytes.
    RingBuf = 27,
}

/// What the loader does with a pinned map whose capacity differs from
/// [`MapSpec::max_entries`] (its kind, key and value must always match).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtherCapacity {
    /// Refuse it: a `STATS` array from a build with fewer counters would
    /// leave the new ones silently at zero.
    Refuse,
    /// Reuse it: the capacity only bounds how many entries fit.
    Reuse,
    /// The config sets the capacity (`conntrack_entries`); reuse the pinned
    /// map and warn that a teardown applies the configured one.
    Configured,
}

/// One pinned map: the layout the kernel programs and the daemon agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// Map name in the object, and file name of its pin under `maps/`.
    pub name: &'static str,
    pub kind: MapKind,
    /// Key size in bytes (`u32` indexes for arrays).
    pub key_size: u32,
    /// Value size in bytes (one CPU's value for per-CPU maps).
    pub value_size: u32,
    /// Capacity in this build (the default, for [`OtherCapacity::Configured`]).
    pub max_entries: u32,
    pub other_capacity: OtherCapacity,
}

impl MapSpec {
    const fn new<K, V>(
        name: &'static str,
        kind: MapKind,
        max_entries: u32,
        other_capacity: OtherCapacity,
    ) -> Self {
        Self {
            name,
            kind,
            key_size: size_of::<K>() as u32,
            value_size: size_of::<V>() as u32,
            max_entries,
            other_capacity,
        }
    }

    /// Whether a map of `kind` with keys `K` and values `V` has this
    /// layout (for the kernel crate's `const` assertions).
    pub const fn holds<K, V>(&self, kind: MapKind) -> bool {
        self.kind as u32 == kind as u32
            && self.key_size as usize == size_of::<K>()
            && self.value_size as usize == size_of::<V>()
    }
}

/// Default capacity of `CONNTRACK` and `REVERSE_NAT` (the config may change it).
pub const DEFAULT_CONNTRACK_ENTRIES: u32 = 262_144;
/// Entries of the port filters: one per TCP port.
pub const PORT_FILTER_ENTRIES: u32 = 65_536;

/// The service table: VIP -> active member.
pub const SERVICES_MAP: MapSpec =
    MapSpec::new::<Endpoint, Assignment>("SERVICES", MapKind::Hash, 16_384, OtherCapacity::Reuse);
/// The flow table: (client, VIP) -> member the flow is pinned to.
pub const CONNTRACK_MAP: MapSpec = MapSpec::new::<FlowKey, TrackedFlow>(
    "CONNTRACK",
    MapKind::LruHash,
    DEFAULT_CONNTRACK_ENTRIES,
    OtherCapacity::Configured,
);
/// The reply table: (member, client) -> VIP.
pub const REVERSE_NAT_MAP: MapSpec = MapSpec::new::<ReverseKey, ReplyTarget>(
    "REVERSE_NAT",
    MapKind::LruHash,
    DEFAULT_CONNTRACK_ENTRIES,
    OtherCapacity::Configured,
);
/// The set of members whose flows must be steered away.
pub const DOWN_MEMBERS_MAP: MapSpec =
    MapSpec::new::<Endpoint, DownMark>("DOWN_MEMBERS", MapKind::Hash, 16_384, OtherCapacity::Reuse);
/// Member -> VIP, used to recover a lost reply entry when the answer is
/// unambiguous: one entry per member endpoint.
pub const MEMBER_VIPS_MAP: MapSpec =
    MapSpec::new::<Endpoint, MemberVip>("MEMBER_VIPS", MapKind::Hash, 16_384, OtherCapacity::Reuse);
/// The per-CPU counters, indexed by [`Stat`].
pub const STATS_MAP: MapSpec = MapSpec::new::<u32, u64>(
    "STATS",
    MapKind::PerCpuArray,
    Stat::COUNT,
    OtherCapacity::Refuse,
);
/// The VIP port filter: index = port, value = the
/// [`filter_bit`](crate::filter_bit)s of the VIP addresses on that port.
/// Lets egress skip the hash lookup for other traffic.
pub const VIP_PORTS_MAP: MapSpec = MapSpec::new::<u32, u32>(
    "VIP_PORTS",
    MapKind::Array,
    PORT_FILTER_ENTRIES,
    OtherCapacity::Reuse,
);
/// The member port filter: index = port, value = the
/// [`filter_bit`](crate::filter_bit)s of the member addresses on it. Lets
/// ingress skip the reply lookup for other traffic.
pub const MEMBER_PORTS_MAP: MapSpec = MapSpec::new::<u32, u32>(
    "MEMBER_PORTS",
    MapKind::Array,
    PORT_FILTER_ENTRIES,
    OtherCapacity::Reuse,
);

/// Member -> its reactive signal counters; an entry per observed member
/// endpoint, written by the daemon (see `crate::signal`).
pub const MEMBER_SIGNALS_MAP: MapSpec = MapSpec::new::<Endpoint, MemberSignals>(
    "MEMBER_SIGNALS",
    MapKind::Hash,
    16_384,
    OtherCapacity::Reuse,
);
/// The ring of [`SignalEvent`](crate::signal::SignalEvent)s that wakes the
/// daemon (at most one per member per `SIGNAL_NOTIFY_NS`).
pub const SIGNAL_EVENTS_MAP: MapSpec = MapSpec::new::<(), ()>(
    "SIGNAL_EVENTS",
    MapKind::RingBuf,
    SIGNAL_RING_BYTES,
    OtherCapacity::Reuse,
);

/// Every map the daemon pins, in a stable order.
pub const MAPS: [MapSpec; 10] = [
    SERVICES_MAP,
    CONNTRACK_MAP,
    REVERSE_NAT_MAP,
    DOWN_MEMBERS_MAP,
    MEMBER_VIPS_MAP,
    STATS_MAP,
    VIP_PORTS_MAP,
    MEMBER_PORTS_MAP,
    MEMBER_SIGNALS_MAP,
    SIGNAL_EVENTS_MAP,
];

/// Pin/map name of the service table ([`SERVICES_MAP`]).
pub const SERVICES: &str = SERVICES_MAP.name;
/// Pin/map name of the flow table ([`CONNTRACK_MAP`]).
pub const CONNTRACK: &str = CONNTRACK_MAP.name;
/// Pin/map name of the reply table ([`REVERSE_NAT_MAP`]).
pub const REVERSE_NAT: &str = REVERSE_NAT_MAP.name;
/// Pin/map name of the down members ([`DOWN_MEMBERS_MAP`]).
pub const DOWN_MEMBERS: &str = DOWN_MEMBERS_MAP.name;
/// Pin/map name of the member -> VIP table ([`MEMBER_VIPS_MAP`]).
pub const MEMBER_VIPS: &str = MEMBER_VIPS_MAP.name;
/// Pin/map name of the per-CPU counters ([`STATS_MAP`]).
pub const STATS: &str = STATS_MAP.name;
/// Pin/map name of the VIP port filter ([`VIP_PORTS_MAP`]).
pub const VIP_PORTS: &str = VIP_PORTS_MAP.name;
/// Pin/map name of the member port filter ([`MEMBER_PORTS_MAP`]).
pub const MEMBER_PORTS: &str = MEMBER_PORTS_MAP.name;
/// Pin/map name of the member signal counters ([`MEMBER_SIGNALS_MAP`]).
pub const MEMBER_SIGNALS: &str = MEMBER_SIGNALS_MAP.name;
/// Pin/map name of the signal event ring ([`SIGNAL_EVENTS_MAP`]).
pub const SIGNAL_EVENTS: &str = SIGNAL_EVENTS_MAP.name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_fit_bpf_object_names() {
        for (i, a) in MAPS.iter().enumerate() {
            // BPF_OBJ_NAME_LEN is 16 including the NUL.
            assert!(a.name.len() < 16, "{} is too long for a map name", a.name);
            for b in &MAPS[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn holds_compares_kind_key_and_value() {
        assert!(SERVICES_MAP.holds::<Endpoint, Assignment>(MapKind::Hash));
        assert!(!SERVICES_MAP.holds::<Endpoint, Assignment>(MapKind::LruHash));
        assert!(!SERVICES_MAP.holds::<FlowKey, Assignment>(MapKind::Hash));
        assert!(!SERVICES_MAP.holds::<Endpoint, DownMark>(MapKind::Hash));
        assert!(STATS_MAP.holds::<u32, u64>(MapKind::PerCpuArray));
    }
}

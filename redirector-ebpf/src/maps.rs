//! The maps. Names, capacities and layouts come from
//! `redirector_common::schema` (asserted below at compile time); the loader
//! pins them under the pin path and may resize CONNTRACK and REVERSE_NAT
//! from the config.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use redirector_common::{
    Assignment, CONNTRACK_MAP, DOWN_MEMBERS_MAP, DownMark, Endpoint, FlowKey, MEMBER_PORTS_MAP,
    MEMBER_SIGNALS_MAP, MEMBER_VIPS_MAP, MapKind, MapSpec, MemberVip, REVERSE_NAT_MAP, ReplyTarget,
    ReverseKey, SERVICES_MAP, SIGNAL_EVENTS_MAP, STATS_MAP, TrackedFlow, VIP_PORTS_MAP, filter_bit,
    signal::MemberSignals,
};

/// VIP endpoint -> the service's active member. One update flips a service.
#[map]
pub static SERVICES: HashMap<Endpoint, Assignment> =
    HashMap::with_max_entries(SERVICES_MAP.max_entries, 0);

/// (client, VIP) -> the member the connection is pinned to, and its next hop.
#[map]
pub static CONNTRACK: LruHashMap<FlowKey, TrackedFlow> =
    LruHashMap::with_max_entries(CONNTRACK_MAP.max_entries, 0);

/// (member, client) -> VIP and close state, to rewrite replies.
#[map]
pub static REVERSE_NAT: LruHashMap<ReverseKey, ReplyTarget> =
    LruHashMap::with_max_entries(REVERSE_NAT_MAP.max_entries, 0);

/// Members whose pinned flows are steered to the active member (so they
/// get an RST and fail fast).
#[map]
pub static DOWN_MEMBERS: HashMap<Endpoint, DownMark> =
    HashMap::with_max_entries(DOWN_MEMBERS_MAP.max_entries, 0);

/// Member endpoint -> the VIP it serves (or how many), written by the
/// daemon: recovers a lost reply entry when the answer is unambiguous.
#[map]
pub static MEMBER_VIPS: HashMap<Endpoint, MemberVip> =
    HashMap::with_max_entries(MEMBER_VIPS_MAP.max_entries, 0);

/// Per-CPU room for the values a reply recovery builds: they would not
/// fit in the BPF stack beside the caller's frame. Not pinned, so not in
/// the schema.
#[map]
pub static RECOVERY_SCRATCH: PerCpuArray<crate::conntrack::Recovery> =
    PerCpuArray::with_max_entries(1, 0);

/// Per-CPU counters indexed by `Stat`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_MAP.max_entries, 0);

/// Port (host order) -> the `filter_bit`s of the VIP addresses on it.
#[map]
pub static VIP_PORTS: Array<u32> = Array::with_max_entries(VIP_PORTS_MAP.max_entries, 0);

/// Port (host order) -> the `filter_bit`s of the member addresses on it.
#[map]
pub static MEMBER_PORTS: Array<u32> = Array::with_max_entries(MEMBER_PORTS_MAP.max_entries, 0);

/// Member endpoint -> its signal counters. The daemon inserts an entry per
/// observed member; the kernel only adds to existing ones.
#[map]
pub static MEMBER_SIGNALS: HashMap<Endpoint, MemberSignals> =
    HashMap::with_max_entries(MEMBER_SIGNALS_MAP.max_entries, 0);

/// Signal events for the daemon, at most one per member per
/// `SIGNAL_NOTIFY_NS`.
#[map]
pub static SIGNAL_EVENTS: RingBuf = RingBuf::with_byte_size(SIGNAL_EVENTS_MAP.max_entries, 0);

/// The kind, key and value of a kernel map type, as the schema names them.
trait Layout {
    const KIND: MapKind;
    type Key;
    type Value;
}

impl<K, V> Layout for HashMap<K, V> {
    const KIND: MapKind = MapKind::Hash;
    type Key = K;
    type Value = V;
}

impl<K, V> Layout for LruHashMap<K, V> {
    const KIND: MapKind = MapKind::LruHash;
    type Key = K;
    type Value = V;
}

impl<T> Layout for Array<T> {
    const KIND: MapKind = MapKind::Array;
    type Key = u32;
    type Value = T;
}

impl<T> Layout for PerCpuArray<T> {
    const KIND: MapKind = MapKind::PerCpuArray;
    type Key = u32;
    type Value = T;
}

impl Layout for RingBuf {
    const KIND: MapKind = MapKind::RingBuf;
    type Key = ();
    type Value = ();
}

/// Whether the static `_map` has the kind, key and value `spec` says; the
/// capacities above are the spec's own.
const fn matches<M: Layout>(_map: &M, spec: &MapSpec) -> bool {
    spec.holds::<M::Key, M::Value>(M::KIND)
}

// Every pinned map matches the schema the loader checks pinned maps against.
const _: () = assert!(matches(&SERVICES, &SERVICES_MAP));
const _: () = assert!(matches(&CONNTRACK, &CONNTRACK_MAP));
const _: () = assert!(matches(&REVERSE_NAT, &REVERSE_NAT_MAP));
const _: () = assert!(matches(&DOWN_MEMBERS, &DOWN_MEMBERS_MAP));
const _: () = assert!(matches(&MEMBER_VIPS, &MEMBER_VIPS_MAP));
const _: () = assert!(matches(&STATS, &STATS_MAP));
const _: () = assert!(matches(&VIP_PORTS, &VIP_PORTS_MAP));
const _: () = assert!(matches(&MEMBER_PORTS, &MEMBER_PORTS_MAP));
const _: () = assert!(matches(&MEMBER_SIGNALS, &MEMBER_SIGNALS_MAP));
const _: () = assert!(matches(&SIGNAL_EVENTS, &SIGNAL_EVENTS_MAP));

/// Whether `filter` may hold an endpoint with `port` (network order) and
/// the address `addr` gives: its port is set and has the address's bit.
/// Array lookups are inlined by the verifier: a few instructions, no hashing.
#[inline(always)]
pub fn filter_has(filter: &Array<u32>, port: [u8; 2], addr: impl FnOnce() -> [u32; 4]) -> bool {
    filter
        .get(u16::from_be_bytes(port) as u32)
        .is_some_and(|v| *v != 0 && *v & filter_bit(addr()) != 0)
}

//! The maps. Layouts and names come from `redirector_common::maps`; the
//! loader pins them under the pin path and may resize CONNTRACK and
//! REVERSE_NAT from the config.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray},
};
use redirector_common::{
    Assignment, DEFAULT_CONNTRACK_ENTRIES, DownMark, Endpoint, FlowKey, MAX_DOWN_MEMBERS,
    MAX_SERVICES, ReverseKey, Stat,
};

/// VIP endpoint -> the service's active member. One update flips a service.
#[map]
pub static SERVICES: HashMap<Endpoint, Assignment> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// (client, VIP) -> the member the connection is pinned to.
#[map]
pub static CONNTRACK: LruHashMap<FlowKey, Assignment> =
    LruHashMap::with_max_entries(DEFAULT_CONNTRACK_ENTRIES, 0);

/// (member, client) -> VIP, to rewrite replies.
#[map]
pub static REVERSE_NAT: LruHashMap<ReverseKey, Endpoint> =
    LruHashMap::with_max_entries(DEFAULT_CONNTRACK_ENTRIES, 0);

/// Members whose pinned flows are steered to the active member (so they
/// get an RST and fail fast).
#[map]
pub static DOWN_MEMBERS: HashMap<Endpoint, DownMark> =
    HashMap::with_max_entries(MAX_DOWN_MEMBERS, 0);

/// Per-CPU counters indexed by `Stat`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

//! The maps. Layouts and names come from `redirector_common::maps`; the
//! loader pins them under the pin path and may resize CONNTRACK and
//! REVERSE_NAT from the config.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use redirector_common::{
    Assignment, DEFAULT_CONNTRACK_ENTRIES, DownMark, Endpoint, FlowKey, MAX_DOWN_MEMBERS,
    MAX_MEMBER_VIPS, MAX_SERVICES, MemberVip, PORT_FILTER_ENTRIES, ReplyTarget, ReverseKey, Stat,
    TrackedFlow, filter_bit,
};

/// VIP endpoint -> the service's active member. One update flips a service.
#[map]
pub static SERVICES: HashMap<Endpoint, Assignment> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// (client, VIP) -> the member the connection is pinned to, and its next hop.
#[map]
pub static CONNTRACK: LruHashMap<FlowKey, TrackedFlow> =
    LruHashMap::with_max_entries(DEFAULT_CONNTRACK_ENTRIES, 0);

/// (member, client) -> VIP and close state, to rewrite replies.
#[map]
pub static REVERSE_NAT: LruHashMap<ReverseKey, ReplyTarget> =
    LruHashMap::with_max_entries(DEFAULT_CONNTRACK_ENTRIES, 0);

/// Members whose pinned flows are steered to the active member (so they
/// get an RST and fail fast).
#[map]
pub static DOWN_MEMBERS: HashMap<Endpoint, DownMark> =
    HashMap::with_max_entries(MAX_DOWN_MEMBERS, 0);

/// Member endpoint -> the VIP it serves (or how many), written by the
/// daemon: recovers a lost reply entry when the answer is unambiguous.
#[map]
pub static MEMBER_VIPS: HashMap<Endpoint, MemberVip> =
    HashMap::with_max_entries(MAX_MEMBER_VIPS, 0);

/// Per-CPU room for the values a reply recovery builds: they would not
/// fit in the BPF stack beside the caller's frame. Not pinned.
#[map]
pub static RECOVERY_SCRATCH: PerCpuArray<crate::conntrack::Recovery> =
    PerCpuArray::with_max_entries(1, 0);

/// Per-CPU counters indexed by `Stat`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

/// Port (host order) -> the `filter_bit`s of the VIP addresses on it.
#[map]
pub static VIP_PORTS: Array<u32> = Array::with_max_entries(PORT_FILTER_ENTRIES, 0);

/// Port (host order) -> the `filter_bit`s of the member addresses on it.
#[map]
pub static MEMBER_PORTS: Array<u32> = Array::with_max_entries(PORT_FILTER_ENTRIES, 0);

/// Whether `filter` may hold an endpoint with `port` (network order) and
/// the address `addr` gives: its port is set and has the address's bit.
/// Array lookups are inlined by the verifier: a few instructions, no hashing.
#[inline(always)]
pub fn filter_has(filter: &Array<u32>, port: [u8; 2], addr: impl FnOnce() -> [u32; 4]) -> bool {
    filter
        .get(u16::from_be_bytes(port) as u32)
        .is_some_and(|v| *v != 0 && *v & filter_bit(addr()) != 0)
}

//! Flow pinning: which member a packet of a VIP connection goes to, and
//! the next hop cached for it.
//!
//! A SYN (without ACK) always takes the service's active member and
//! overwrites any old entry with the same key, so a reused source port never
//! inherits an old member. Later packets stay on their flow's member, unless
//! that member is in DOWN_MEMBERS: then they are steered to the active member,
//! whose kernel answers RST, and the client fails fast instead of waiting on
//! retransmission timeouts.

use aya_ebpf::{bindings::BPF_ANY, programs::TcContext};
use redirector_common::{
    Assignment, Endpoint, FLOW_STEERED, FibCache, FlowKey, ReverseKey, Stat, TrackedFlow,
};

use crate::{
    error::Error,
    fib,
    maps::{CONNTRACK, DOWN_MEMBERS, REVERSE_NAT},
    stats,
};

/// Where a packet goes: its flow's member, and how to reach it.
pub struct Route {
    pub member: Endpoint,
    pub fib: FibCache,
}

/// The route of this packet of `flow`.
#[inline(always)]
pub fn route_for(
    ctx: &TcContext,
    flow: &FlowKey,
    active: &Assignment,
    syn: bool,
) -> Result<Route, Error> {
    let ifindex = fib::ifindex(ctx);
    let now = fib::now();
    if !syn && let Some(entry) = CONNTRACK.get_ptr_mut(flow) {
        // SAFETY: a valid map value pointer for this program run. Another
        // CPU may refresh the same entry's FibCache concurrently; both write
        // a complete, valid lookup result of the same second, so a mixed
        // read is at worst a MAC pair from two such results.
        let member = unsafe { (*entry).assignment.member };
        if member.same(&active.member) || !is_down(&member) {
            // SAFETY: as above; FibCache is plain data.
            let fib = unsafe {
                if !(*entry).fib.fresh(ifindex, now) {
                    (*entry).fib = fib::lookup(ctx, &flow.client, &member, ifindex, now);
                }
                (*entry).fib
            };
            return Ok(Route { member, fib });
        }
        // Pinned to a down member: steer to the active one.
        let fib = pin(ctx, flow, active, FLOW_STEERED, ifindex, now)?;
        stats::count(Stat::Steered);
        return Ok(Route {
            member: active.member,
            fib,
        });
    }
    // A new connection, or a flow we never saw (e.g. evicted from the LRU).
    let fib = pin(ctx, flow, active, 0, ifindex, now)?;
    stats::count(Stat::NewFlows);
    Ok(Route {
        member: active.member,
        fib,
    })
}

#[inline(always)]
fn is_down(member: &Endpoint) -> bool {
    DOWN_MEMBERS.get_ptr(member).is_some()
}

/// Records `flow` -> active member with its next hop, and the reverse entry
/// for its replies.
#[inline(always)]
fn pin(
    ctx: &TcContext,
    flow: &FlowKey,
    active: &Assignment,
    flags: u32,
    ifindex: u32,
    now: u32,
) -> Result<FibCache, Error> {
    let entry = TrackedFlow {
        assignment: Assignment {
            member: active.member,
            generation: active.generation,
            flags,
        },
        fib: fib::lookup(ctx, &flow.client, &active.member, ifindex, now),
    };
    let reverse = ReverseKey {
        member: active.member,
        client: flow.client,
    };
    // Reverse entry first: a reply can only come after the packet leaves.
    REVERSE_NAT
        .insert(&reverse, &flow.vip, BPF_ANY as u64)
        .map_err(|_| Error::MapUpdate)?;
    CONNTRACK
        .insert(flow, &entry, BPF_ANY as u64)
        .map_err(|_| Error::MapUpdate)?;
    Ok(entry.fib)
}

/// The VIP a reply from `member` to `client` must appear to come from.
#[inline(always)]
pub fn vip_for_reply(member: &Endpoint, client: &Endpoint) -> Option<Endpoint> {
    let key = ReverseKey {
        member: *member,
        client: *client,
    };
    // SAFETY: valid map value pointer; Endpoint is plain data, copied out.
    REVERSE_NAT.get_ptr(&key).map(|v| unsafe { *v })
}

/// Drops the reply entry of an old VIP flow from `client` to `member`: a
/// new direct connection (not through a VIP) now uses that 4-tuple, and its
/// replies must not be rewritten to the VIP. A missing entry is the
/// common case and no error.
#[inline(always)]
pub fn forget_reply(member: &Endpoint, client: &Endpoint) {
    let key = ReverseKey {
        member: *member,
        client: *client,
    };
    if REVERSE_NAT.remove(&key).is_ok() {
        stats::count(Stat::StaleRepliesRemoved);
    }
}

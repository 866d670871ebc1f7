//! Flow pinning: which member a packet of a VIP connection goes to.
//!
//! A SYN (without ACK) always takes the service's active member and
//! overwrites any old entry with the same key, so a reused source port never
//! inherits an old member. Later packets stay on their flow's member, unless
//! that member is in DOWN_MEMBERS: then they are steered to the active member,
//! whose kernel answers RST, and the client fails fast instead of waiting on
//! retransmission timeouts.

use aya_ebpf::bindings::BPF_ANY;
use redirector_common::{Assignment, Endpoint, FLOW_STEERED, FlowKey, ReverseKey, Stat};

use crate::{
    error::Error,
    maps::{CONNTRACK, DOWN_MEMBERS, REVERSE_NAT},
    stats,
};

/// The member this packet of `flow` must go to.
#[inline(always)]
pub fn member_for(flow: &FlowKey, active: &Assignment, syn: bool) -> Result<Endpoint, Error> {
    if !syn {
        if let Some(entry) = CONNTRACK.get_ptr(flow) {
            // SAFETY: a valid map value pointer; Assignment is plain data,
            // copied out at once.
            let entry = unsafe { *entry };
            if entry.member.same(&active.member) || !is_down(&entry.member) {
                return Ok(entry.member);
            }
            // Pinned to a down member: steer to the active one.
            pin(flow, active, FLOW_STEERED)?;
            stats::count(Stat::Steered);
            return Ok(active.member);
        }
    }
    // A new connection, or a flow we never saw (e.g. evicted from the LRU).
    pin(flow, active, 0)?;
    stats::count(Stat::NewFlows);
    Ok(active.member)
}

#[inline(always)]
fn is_down(member: &Endpoint) -> bool {
    DOWN_MEMBERS.get_ptr(member).is_some()
}

/// Records `flow` -> active member, and the reverse entry for its replies.
#[inline(always)]
fn pin(flow: &FlowKey, active: &Assignment, flags: u32) -> Result<(), Error> {
    let entry = Assignment {
        member: active.member,
        generation: active.generation,
        flags,
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
        .map_err(|_| Error::MapUpdate)
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

//! Flow pinning and the flow lifecycle: which member a packet of a VIP
//! connection goes to, the next hop cached for it, and when its entries
//! go away.
//!
//! A SYN (without ACK) always takes the service's active member and
//! overwrites any old entry with the same key, so a reused source port never
//! inherits an old member. Later packets stay on their flow's member, unless
//! that member is in DOWN_MEMBERS: then they are steered to the active member,
//! whose kernel answers RST, and the client fails fast instead of waiting on
//! retransmission timeouts.
//!
//! Both directions follow the close of a flow (`redirector_common::flow`):
//! its entries are removed at its RST or last ACK, so finished flows never
//! crowd open ones out of the LRU. Packets without FIN or RST on an open
//! flow cost one extra compare. A reply whose reply entry was lost anyway
//! is recovered where the answer is unambiguous ([`reply_for`]).

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_ANY, BPF_NOEXIST},
    programs::TcContext,
};
use redirector_common::{
    Assignment, Endpoint, FLOW_RECOVERED, FLOW_STEERED, FibCache, FlowKey, ReplyTarget, ReverseKey,
    SEEN_JIFFIES, Stat, TrackedFlow,
    flow::{
        self, End, FIN_FROM_CLIENT, FIN_FROM_MEMBER, FLOW_CLOSING, REPLY_MARKS, REPLY_OPENING,
        REPLY_REPINNED, Step,
    },
    parse::{TCP_RST, is_syn},
    signal::SignalKind,
};

use crate::{
    error::Error,
    fib,
    maps::{CONNTRACK, DOWN_MEMBERS, MEMBER_VIPS, RECOVERY_SCRATCH, REVERSE_NAT},
    signal, socket, stats,
};

/// Where a packet goes: its flow's member, and how to reach it.
pub struct Route {
    pub member: Endpoint,
    pub fib: FibCache,
}

/// The route of this packet of `flow` (TCP `flags`), keeping the flow's
/// entries and close state up to date.
#[inline(always)]
pub fn route_for(
    ctx: &TcContext,
    flow: &FlowKey,
    active: &Assignment,
    flags: u8,
) -> Result<Route, Error> {
    let ifindex = fib::ifindex(ctx);
    let now = fib::now();
    let syn = is_syn(flags);
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
            // SAFETY: as above; state and seen are plain words, and a lost
            // concurrent update of `seen` is at most SEEN_JIFFIES stale.
            unsafe {
                let state = (*entry).state;
                if flow::is_plain(state, flags) {
                    if now.wrapping_sub((*entry).seen) >= SEEN_JIFFIES {
                        (*entry).seen = now;
                    }
                } else {
                    client_step(&mut *entry, flow, &member, flags, now);
                }
            }
            return Ok(Route { member, fib });
        }
        // Pinned to a down member: steer to the active one. The old reply
        // entry can only translate replies of a member we no longer use.
        forget(&ReverseKey {
            member,
            client: flow.client,
        });
        let fib = pin(
            ctx,
            flow,
            active,
            FLOW_STEERED,
            0,
            REPLY_REPINNED,
            ifindex,
            now,
        )?;
        stats::count(Stat::Steered);
        return Ok(Route {
            member: active.member,
            fib,
        });
    }
    if !syn {
        // An entry lost (evicted), or a late packet of a flow already over.
        stats::count(Stat::FlowMisses);
        if flags & TCP_RST != 0 {
            // An RST ends whatever it belonged to: translate, keep nothing.
            return Ok(Route {
                member: active.member,
                fib: fib::lookup(ctx, &flow.client, &active.member, ifindex, now),
            });
        }
    }
    let (state, marks) = if syn {
        (0, REPLY_OPENING)
    } else {
        (flow::state_for_unknown_flow(flags), REPLY_REPINNED)
    };
    let fib = pin(ctx, flow, active, 0, state, marks, ifindex, now)?;
    stats::count(Stat::NewFlows);
    Ok(Route {
        member: active.member,
        fib,
    })
}

/// A FIN or RST from the client, or any packet of a closing flow.
#[inline(always)]
fn client_step(entry: &mut TrackedFlow, flow: &FlowKey, member: &Endpoint, flags: u8, now: u32) {
    let key = ReverseKey {
        member: *member,
        client: flow.client,
    };
    match flow::step(entry.state, flags, FIN_FROM_CLIENT) {
        Step::Keep => {
            if entry.state != FLOW_CLOSING {
                entry.seen = now;
            }
        }
        Step::Set(next) => {
            entry.state = next;
            entry.seen = now;
            if let Some(t) = REVERSE_NAT.get_ptr_mut(&key) {
                // SAFETY: valid map value pointer; a plain word.
                unsafe { (*t).state |= next };
            }
        }
        Step::End(end) => {
            let _ = REVERSE_NAT.remove(&key);
            let _ = CONNTRACK.remove(flow);
            count_end(end);
        }
    }
}

#[inline(always)]
fn count_end(end: End) {
    stats::count(match end {
        End::Closed => Stat::FlowsClosed,
        End::Reset => Stat::FlowsReset,
    });
}

#[inline(always)]
fn is_down(member: &Endpoint) -> bool {
    DOWN_MEMBERS.get_ptr(member).is_some()
}

/// Records `flow` -> active member with its next hop and close `state`,
/// and the reverse entry for its replies, with the reply `marks`
/// (`REPLY_*`, only while layer-4 signals are on: off, the programs
/// behave exactly as before them).
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "one call per pinning reason; all plain values"
)]
fn pin(
    ctx: &TcContext,
    flow: &FlowKey,
    active: &Assignment,
    flags: u32,
    state: u32,
    marks: u32,
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
        state,
        seen: now,
    };
    let reverse = ReverseKey {
        member: active.member,
        client: flow.client,
    };
    if marks == REPLY_OPENING && signal::l4() {
        signal::syn_again(&reverse);
    }
    let target = ReplyTarget {
        vip: flow.vip,
        state: if signal::l4() { state | marks } else { state },
    };
    // Reverse entry first: a reply can only come after the packet leaves.
    REVERSE_NAT
        .insert(&reverse, &target, BPF_ANY as u64)
        .map_err(|_| Error::MapUpdate)?;
    CONNTRACK
        .insert(flow, &entry, BPF_ANY as u64)
        .map_err(|_| Error::MapUpdate)?;
    Ok(entry.fib)
}

/// The VIP a reply from `member` to `client` must appear to come from, with
/// no change to the flow (ICMP errors about the flow use this).
#[inline(always)]
pub fn vip_for_reply(member: &Endpoint, client: &Endpoint) -> Option<Endpoint> {
    let key = ReverseKey {
        member: *member,
        client: *client,
    };
    // SAFETY: valid map value pointer; Endpoint is plain data, copied out.
    REVERSE_NAT.get_ptr(&key).map(|t| unsafe { (*t).vip })
}

/// The VIP a reply from `member` to `client` (TCP `flags`) must appear to
/// come from, following the flow's close. A lost reply entry is
/// re-created when `member` serves exactly one VIP and `client` holds a
/// socket connected to it; otherwise the reply is not ours (a direct
/// connection) or ambiguous (counted), and passes.
#[inline(always)]
pub fn reply_for<C: EbpfContext>(
    ctx: &C,
    member: &Endpoint,
    client: &Endpoint,
    flags: u8,
) -> Option<Endpoint> {
    let key = ReverseKey {
        member: *member,
        client: *client,
    };
    let Some(t) = REVERSE_NAT.get_ptr_mut(&key) else {
        return recover(ctx, &key, flags);
    };
    // SAFETY: valid map value pointer; plain data, copied out.
    let (vip, state) = unsafe { ((*t).vip, (*t).state) };
    if !flow::is_plain(state, flags) {
        // SAFETY: as above; the pointer stays valid for this program run.
        reply_step(unsafe { &mut *t }, &key, state, flags);
    }
    Some(vip)
}

/// A reply that is not plain (a FIN, an RST, a closing or marked flow):
/// its signals, then the flow's close. A call of its own, off the hit
/// path: its values would not fit in the ingress programs' stack beside
/// the rest (with `recover` and `signal::raise` below them).
#[inline(never)]
fn reply_step(t: &mut ReplyTarget, key: &ReverseKey, state: u32, flags: u8) {
    let state = reply_signals(t, &key.member, state, flags);
    if flow::is_plain(state, flags) {
        return;
    }
    let flow = FlowKey {
        client: key.client,
        vip: t.vip,
    };
    match flow::step(state, flags, FIN_FROM_MEMBER) {
        Step::Keep => {}
        Step::Set(next) => {
            t.state = next;
            if let Some(e) = CONNTRACK.get_ptr_mut(&flow) {
                // SAFETY: valid map value pointer; plain words.
                unsafe {
                    (*e).state |= next;
                    (*e).seen = fib::now();
                }
            }
        }
        Step::End(end) => {
            let _ = REVERSE_NAT.remove(key);
            let _ = CONNTRACK.remove(&flow);
            count_end(end);
        }
    }
}

/// The signals of a reply that is not plain, and the entry's state without
/// its marks (what `flow::step` takes). An RST refuses an opening flow or
/// resets an established one, unless the flow was re-pinned (the member
/// may rightly not know it) or the member had closed it already (an RST
/// to data after its own FIN is normal TCP). Any other reply clears the
/// marks: the member answered.
#[inline(always)]
fn reply_signals(t: &mut ReplyTarget, member: &Endpoint, state: u32, flags: u8) -> u32 {
    if flags & TCP_RST != 0 {
        if signal::l4() && state & (REPLY_REPINNED | FIN_FROM_MEMBER) == 0 {
            let kind = if state & REPLY_OPENING != 0 {
                SignalKind::Refused
            } else {
                SignalKind::Reset
            };
            signal::raise(member, kind);
        }
        return flow::unmarked(state);
    }
    if state & REPLY_MARKS != 0 {
        t.state = flow::unmarked(state);
    }
    flow::unmarked(state)
}

/// What a reply recovery writes, built in `RECOVERY_SCRATCH`.
pub struct Recovery {
    flow: FlowKey,
    entry: TrackedFlow,
    target: ReplyTarget,
    key: ReverseKey,
}

/// A reply with no reply entry: see [`reply_for`]. Off the hit path, and a
/// call of its own whose values live in a per-CPU scratch slot: beside the
/// caller's frame they would not fit in the BPF stack.
#[inline(never)]
fn recover<C: EbpfContext>(ctx: &C, key: &ReverseKey, flags: u8) -> Option<Endpoint> {
    // Not behind any VIP: a direct connection to some other server.
    let mv = MEMBER_VIPS.get_ptr(&key.member)?;
    // SAFETY: valid map value pointer; read in place.
    let (vip, vips) = unsafe { (&(*mv).vip, (*mv).vips) };
    if vips != 1 {
        stats::count(Stat::RepliesAmbiguous);
        return None;
    }
    // The daemon's checks and other direct connections to the member have
    // no socket connected to the VIP: they pass here.
    if !socket::connected(ctx, vip, &key.client) {
        return None;
    }
    stats::count(Stat::RepliesRecovered);
    let vip = *vip;
    if flags & TCP_RST != 0 {
        return Some(vip);
    }
    let r = RECOVERY_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch slot; no other program run on this CPU
    // uses it until this one ends (BPF programs do not preempt each other
    // on a CPU in TC/XDP context).
    let r = unsafe { &mut *r };
    let state = flow::state_for_unknown_flow(flags);
    r.key = *key;
    r.target = ReplyTarget { vip, state };
    r.flow = FlowKey {
        client: key.client,
        vip,
    };
    r.entry.assignment = Assignment {
        member: key.member,
        generation: 0,
        flags: FLOW_RECOVERED,
    };
    r.entry.fib = FibCache::EMPTY;
    r.entry.state = state;
    r.entry.seen = fib::now();
    // A failed insert only means the next reply recovers again.
    let _ = REVERSE_NAT.insert(&r.key, &r.target, BPF_ANY as u64);
    // An existing flow entry (only the reply entry was lost) stays as is.
    let _ = CONNTRACK.insert(&r.flow, &r.entry, BPF_NOEXIST as u64);
    Some(vip)
}

/// Drops the reply entry of an old VIP flow from `client` to `member`: a
/// new direct connection (not through a VIP) now uses that 4-tuple, and its
/// replies must not be rewritten to the VIP. A missing entry is the
/// common case and no error.
#[inline(always)]
pub fn forget_reply(member: &Endpoint, client: &Endpoint) {
    if forget(&ReverseKey {
        member: *member,
        client: *client,
    }) {
        stats::count(Stat::StaleRepliesRemoved);
    }
}

#[inline(always)]
fn forget(key: &ReverseKey) -> bool {
    REVERSE_NAT.remove(key).is_ok()
}

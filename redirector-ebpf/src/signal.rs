//! Reactive signals: count what the application's traffic says about a
//! member in its `MEMBER_SIGNALS` entry and wake the daemon through
//! `SIGNAL_EVENTS`, at most once per member per `SIGNAL_NOTIFY_NS`.
//!
//! Called only off the hit path (RSTs, a connection's first reply, SYNs,
//! ICMP errors), except the peek at the start of replies ([`peek_reply`]),
//! which costs a compare, one bounds check and one byte compare per data
//! reply. A member without an entry costs one lookup
//! and counts nothing. The `SIGNALS` global, set at load, switches each
//! layer off; the verifier then prunes its code entirely.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::helpers::bpf_ktime_get_ns;
use redirector_common::{
    Endpoint, ReverseKey,
    flow::REPLY_OPENING,
    parse::{Packet, TcpPacket},
    signal::{
        REDIS_PEEK_LEN, SIGNAL_NOTIFY_NS, SIGNALS_ALL, SIGNALS_L4, SIGNALS_L7, SignalEvent,
        SignalKind, redis_error_words, split,
    },
};

use crate::maps::{MEMBER_SIGNALS, REVERSE_NAT, SIGNAL_EVENTS};

/// Which signal layers this object runs (`SIGNALS_L4 | SIGNALS_L7`), set
/// by the loader with `EbpfLoader::set_global`; read-only data, so the
/// verifier knows it and prunes what it switches off.
#[unsafe(no_mangle)]
static SIGNALS: u32 = SIGNALS_ALL;

/// Whether the `SIGNALS_*` layer `bits` is on in this load.
#[inline(always)]
pub fn on(bits: u32) -> bool {
    // SAFETY: a plain read of a static; volatile so the compiler does not
    // fold the default in before the loader sets the real value.
    unsafe { core::ptr::read_volatile(&SIGNALS) & bits != 0 }
}

/// Layer-4 signals are on.
#[inline(always)]
pub fn l4() -> bool {
    on(SIGNALS_L4)
}

/// Counts a signal of `kind` for `member`, if observed for that kind, and
/// sends an event unless one went out for the member in the last
/// `SIGNAL_NOTIFY_NS`. A call of its own: keeps the callers' verifier
/// state and stack small.
#[inline(never)]
pub fn raise(member: &Endpoint, kind: SignalKind) {
    let Some(s) = MEMBER_SIGNALS.get_ptr_mut(member) else {
        return;
    };
    // SAFETY: a valid map value pointer for this program run; other CPUs
    // may update the same entry: counts are added atomically, the rest are
    // plain words where a lost race costs one extra or one missing event.
    let s = unsafe { &mut *s };
    if s.flags & kind.observe_flag() == 0 {
        return;
    }
    let Some(slot) = s.counts.get_mut(kind as usize) else {
        return;
    };
    add(slot);
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(s.notified_ns) < SIGNAL_NOTIFY_NS {
        return;
    }
    s.notified_ns = now;
    // Written in place in the ring: no event on the stack, whose room the
    // egress program needs for itself.
    let Some(mut entry) = SIGNAL_EVENTS.reserve::<SignalEvent>(0) else {
        add(&mut s.lost);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to the reserved record, which this program owns
    // until submit; every field is written (no padding), so the record the
    // daemon reads is initialised.
    unsafe {
        (*e).member = *member;
        (*e).kind = kind as u32;
        (*e).at_ns = now;
        (*e).count = *slot;
    }
    entry.submit(0);
}

/// Adds one to a counter shared between CPUs: the BPF atomic add. Not
/// `AtomicU64::fetch_add`, which the BPF target does not offer; the result
/// stays unused, or LLVM would need the fetch variant (BPF ISA v3).
#[inline(always)]
fn add(counter: &mut u64) {
    // SAFETY: the pointer comes from a live, aligned &mut u64.
    let _ = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, 1) };
}

/// A SYN is about to be pinned under the reply entry `key`: if an earlier
/// SYN on the same 4-tuple to the same member left it opening (no reply at
/// all), the member left that SYN unanswered. Takes the caller's key: the
/// egress program has no stack to spare for another.
#[inline(always)]
pub fn syn_again(key: &ReverseKey) {
    if let Some(t) = REVERSE_NAT.get_ptr(key)
        // SAFETY: valid map value pointer; a plain word.
        && unsafe { (*t).state } & REPLY_OPENING != 0
    {
        raise(&key.member, SignalKind::SynUnanswered);
    }
}

/// A reply of `tcp` from a member whose segment starts with one of the
/// Redis errors of `redis_error_words` counts for the member. On the reply
/// hit path: a compare of the payload length, then for data replies one
/// bounds check and one byte compare; a call only for error replies.
#[inline(always)]
pub fn peek_reply<P: Packet>(pkt: &P, tcp: &TcpPacket) {
    if !on(SIGNALS_L7) || (tcp.payload_len as usize) < REDIS_PEEK_LEN {
        return;
    }
    if let Some(head) = pkt.ref_at::<[u8; REDIS_PEEK_LEN]>(tcp.payload_off as usize)
        && head[0] == b'-'
    {
        // In registers: the call gets no packet pointer (the verifier
        // refuses those as arguments) and no copy on the stack.
        let [w0, w1] = split(head);
        redis_error(&tcp.src, w0, w1);
    }
}

/// The rest of [`peek_reply`], for error replies only.
#[inline(never)]
fn redis_error(member: &Endpoint, w0: u64, w1: u64) {
    if redis_error_words(w0, w1) {
        raise(member, SignalKind::RedisError);
    }
}

//! After DNAT the packet's next hop may differ from the VIP's: look the
//! member up in the FIB and send the packet the right way.
//!
//! Same interface: write the MACs the FIB gave and continue (no second pass
//! through this hook). Another interface: redirect there. Neighbour not
//! resolved yet: `bpf_redirect_neigh` resolves it. Anything else keeps the
//! packet's original path (the VIP's next hop) and is counted.
//!
//! The lookup is done from the ingress perspective of this interface (no
//! `BPF_FIB_LOOKUP_OUTPUT`: that pins the result to this interface, so a
//! member behind another one could never be found). The kernel only answers
//! such lookups where forwarding is enabled on the interface; elsewhere it
//! says FWD_DISABLED and the packet keeps the VIP route's next hop, which is
//! right whenever the members sit behind the same gateway as the VIP.
//!
//! `bpf_fib_lookup` is the most expensive step of the egress path, so its
//! result is kept per flow in CONNTRACK ([`FibCache`]) and reused for
//! `FIB_CACHE_JIFFIES` (about a second); an unresolved neighbour is never
//! cached.

use core::{
    mem::{size_of, zeroed},
    ptr::null_mut,
};

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK, bpf_fib_lookup},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_jiffies64, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use redirector_common::{
    Endpoint, FIB_FALLBACK, FIB_NONE, FIB_REDIRECT, FIB_SAME_IFACE, FibCache, Stat, parse::EthHdr,
};

use crate::{
    error::Error,
    parse::{Skb, mut_at},
    stats,
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The interface the packet is on (the lookup's input).
#[inline(always)]
pub fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: ctx.skb.skb is the program's valid __sk_buff pointer.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Now, for [`FibCache::fresh`]: the low 32 bits of jiffies (the verifier
/// inlines this helper into a load on 64-bit JITs).
#[inline(always)]
pub fn now() -> u32 {
    // SAFETY: plain helper call without arguments.
    unsafe { bpf_jiffies64() as u32 }
}

/// Asks the FIB how to reach `dst` from `src` for a packet on `ifindex`.
/// An unresolved neighbour comes back as `FIB_NONE` with `out_ifindex`
/// set: [`forward`] then lets `bpf_redirect_neigh` resolve it, and the
/// next packet asks again.
#[inline(always)]
pub fn lookup(ctx: &TcContext, src: &Endpoint, dst: &Endpoint, ifindex: u32, now: u32) -> FibCache {
    // SAFETY: bpf_fib_lookup is plain data; all-zero is a valid start.
    let mut p: bpf_fib_lookup = unsafe { zeroed() };
    p.l4_protocol = src.proto;
    p.sport = u16::from_ne_bytes(src.port);
    p.dport = u16::from_ne_bytes(dst.port);
    p.ifindex = ifindex;
    if src.family == redirector_common::FAMILY_V4 {
        p.family = AF_INET;
        p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(src.v4_addr());
        p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(dst.v4_addr());
    } else {
        p.family = AF_INET6;
        p.__bindgen_anon_3.ipv6_src = src.addr_words();
        p.__bindgen_anon_4.ipv6_dst = dst.addr_words();
    }
    // SAFETY: p is a valid, correctly sized bpf_fib_lookup on the stack.
    let rc = unsafe { fib_lookup(ctx.as_ptr(), &mut p, size_of::<bpf_fib_lookup>() as i32, 0) };
    let action = if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        if p.ifindex == ifindex {
            FIB_SAME_IFACE
        } else {
            FIB_REDIRECT
        }
    } else if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        FIB_NONE
    } else {
        FIB_FALLBACK
    };
    FibCache {
        stamp: now,
        ifindex,
        out_ifindex: p.ifindex,
        smac: p.smac,
        dmac: p.dmac,
        action,
        _pad: [0; 3],
    }
}

/// Sends the (already rewritten) packet the way `route` says.
#[inline(always)]
pub fn forward(ctx: &TcContext, route: &FibCache) -> Result<i32, Error> {
    match route.action {
        FIB_SAME_IFACE | FIB_REDIRECT => {
            let eth = mut_at::<EthHdr, _>(&Skb(ctx), 0)?;
            eth.dst = route.dmac;
            eth.src = route.smac;
            if route.action == FIB_SAME_IFACE {
                return Ok(TC_ACT_OK as i32);
            }
            // SAFETY: plain helper call with a FIB-provided ifindex.
            Ok(unsafe { bpf_redirect(route.out_ifindex, 0) } as i32)
        }
        FIB_NONE => {
            // SAFETY: with no params the helper resolves the next hop itself.
            Ok(unsafe { bpf_redirect_neigh(route.out_ifindex, null_mut(), 0, 0) } as i32)
        }
        _ => {
            stats::count(Stat::FibFallback);
            Ok(TC_ACT_OK as i32)
        }
    }
}

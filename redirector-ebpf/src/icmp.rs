//! Ingress ICMP/ICMPv6 errors about a translated flow: the embedded
//! header names the member; rewrite it to the VIP so the client's kernel
//! finds its socket (path MTU discovery through the VIP depends on it).
//!
//! Parsing and the rewrite itself are `redirector_common::icmp`, tested on
//! the host. This runs only where a packet is not TCP, so the TCP hit path
//! does not pay for it.
//!
//! Checksums: the rewrite is direct writes in which one checksum field
//! balances every changed byte (the ICMP/ICMPv6 checksum for the embedded
//! header and the pseudo-header, the outer IPv4 checksum for the outer
//! source), so the one's-complement sum over the packet does not change.
//! In TC that keeps a CHECKSUM_COMPLETE `skb->csum` valid without a helper
//! call, as the IPv4 header patch in `csum.rs` does; CHECKSUM_UNNECESSARY
//! and NONE need nothing. ICMP errors are never CHECKSUM_PARTIAL: every
//! stack computes their checksum in software (Linux `icmp_push_reply`,
//! `icmpv6_push_pending_frames`). XDP has no checksum state at all.

use redirector_common::{
    Stat,
    icmp::{Icmp4Error, Icmp6Error, parse_icmp_error, reverse_v4, reverse_v6},
    parse::{ETH_LEN, Packet},
    signal::SignalKind,
};

use crate::{
    conntrack,
    error::Error,
    maps::{MEMBER_PORTS, filter_has},
    parse::{Bounds, mut_at},
    signal, stats,
};

/// Reverse-translates `pkt` if it is an ICMP error about one of our flows;
/// leaves anything else untouched (counted as passed, or malformed if cut
/// short).
#[inline(always)]
pub fn reverse<P: Packet + Bounds>(pkt: &P) -> Result<(), Error> {
    let err = match parse_icmp_error(pkt, |t, ip| {
        filter_has(&MEMBER_PORTS, t.dst_port, || ip.dst_words())
    }) {
        Ok(e) => e,
        Err(s) if s.is_malformed() => return Err(Error::Malformed),
        Err(_) => {
            stats::count(Stat::Passed);
            return Ok(());
        }
    };
    // The embedded packet went client -> member: its reply entry is keyed
    // (member, client), exactly as for a reply.
    let Some(vip) = conntrack::vip_for_reply(&err.member, &err.client) else {
        stats::count(Stat::Passed);
        return Ok(());
    };
    if err.unreachable && signal::l4() {
        signal::raise(&err.member, SignalKind::Unreachable);
    }
    // One bounds check covers every field written; nothing is written
    // before it.
    if err.is_v4() {
        reverse_v4(mut_at::<Icmp4Error, P>(pkt, ETH_LEN)?, &vip);
    } else {
        reverse_v6(mut_at::<Icmp6Error, P>(pkt, ETH_LEN)?, &vip);
    }
    stats::count(Stat::IcmpReverseTranslated);
    Ok(())
}

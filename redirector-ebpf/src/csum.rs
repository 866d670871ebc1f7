//! Rewrites one endpoint (address + port) of a TCP/IP header and keeps every
//! checksum right.
//!
//! TC uses `bpf_l4_csum_replace` for TCP, with BPF_F_PSEUDO_HDR only for
//! addresses (they are in the pseudo-header; ports are not). The helper knows
//! the skb's checksum state, so CHECKSUM_PARTIAL packets from offloading
//! devices stay right. The IPv4 header checksum has no such state and is
//! patched in place, as `bpf_l3_csum_replace` would. XDP has no skb: it
//! patches checksums with the RFC 1624 arithmetic from
//! `redirector_common::csum`, tested on the host.

use aya_ebpf::{
    bindings::BPF_F_PSEUDO_HDR,
    programs::{TcContext, XdpContext},
};
use redirector_common::{
    Endpoint,
    csum::{diff_words, replace},
    parse::{
        IPV4_DST_OFF, IPV4_SRC_OFF, IPV6_DST_OFF, IPV6_SRC_OFF, Ipv4Hdr, Ipv6Hdr, TCP_CHECK_OFF,
        TCP_DST_PORT_OFF, TCP_SRC_PORT_OFF, TcpHdr, TcpPacket,
    },
};

use crate::{
    error::Error,
    parse::{Frame, Skb, mut_at},
};

/// Which endpoint of the packet to rewrite.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

/// TC: sets the `side` endpoint of `pkt` to `to`.
#[inline(always)]
pub fn tc_rewrite(
    ctx: &TcContext,
    pkt: &TcpPacket,
    side: Side,
    to: &Endpoint,
) -> Result<(), Error> {
    let skb = Skb(ctx);
    let (from, addr_off, port_off) = match (side, pkt.is_v4()) {
        (Side::Source, true) => (&pkt.src, IPV4_SRC_OFF, TCP_SRC_PORT_OFF),
        (Side::Destination, true) => (&pkt.dst, IPV4_DST_OFF, TCP_DST_PORT_OFF),
        (Side::Source, false) => (&pkt.src, IPV6_SRC_OFF, TCP_SRC_PORT_OFF),
        (Side::Destination, false) => (&pkt.dst, IPV6_DST_OFF, TCP_DST_PORT_OFF),
    };
    let check_off = pkt.l4_off + TCP_CHECK_OFF;

    // All direct writes first: the helpers below invalidate packet pointers.
    *mut_at::<[u8; 2], _>(&skb, pkt.l4_off + port_off)? = to.port;
    if pkt.is_v4() {
        *mut_at::<[u8; 4], _>(&skb, pkt.l3_off + addr_off)? = to.v4_addr();
    } else {
        *mut_at::<[u8; 16], _>(&skb, pkt.l3_off + addr_off)? = to.addr;
    }

    if pkt.is_v4() {
        // The IPv4 header checksum is patched in place: bpf_l3_csum_replace
        // does exactly this (it does not depend on the skb's checksum
        // state), and a helper call costs more than the arithmetic.
        let ip = mut_at::<Ipv4Hdr, _>(&skb, pkt.l3_off)?;
        ip.check = replace(ip.check, &from.v4_addr(), &to.v4_addr());
    }

    // Each helper call costs tens of ns here (BPF_PROG_TEST_RUN: the two
    // calls are ~85 ns of the egress hit path). A VIP and its members
    // usually share the port; then the port's checksum update is a no-op
    // and is skipped.
    if from.port != to.port {
        let old_port = u16::from_ne_bytes(from.port) as u64;
        let new_port = u16::from_ne_bytes(to.port) as u64;
        ctx.l4_csum_replace(check_off, old_port, new_port, 2)
            .map_err(|_| Error::Rewrite)?;
    }
    // The address is in the pseudo-header: one diff-mode call (size 0) with
    // BPF_F_PSEUDO_HDR, the diff computed here instead of by bpf_csum_diff.
    let diff = if pkt.is_v4() {
        diff_words(&[from.addr_words()[0]], &[to.addr_words()[0]])
    } else {
        diff_words(&from.addr_words(), &to.addr_words())
    };
    ctx.l4_csum_replace(check_off, 0, diff as u64, BPF_F_PSEUDO_HDR as u64)
        .map_err(|_| Error::Rewrite)?;
    Ok(())
}

/// XDP: sets the source endpoint of `pkt` to `to` (the reverse path only
/// rewrites sources), patching checksums incrementally.
#[inline(always)]
pub fn xdp_rewrite_source(ctx: &XdpContext, pkt: &TcpPacket, to: &Endpoint) -> Result<(), Error> {
    let frame = Frame(ctx);
    let tcp = mut_at::<TcpHdr, _>(&frame, pkt.l4_off)?;
    let mut check = replace(tcp.check, &tcp.src_port, &to.port);
    tcp.src_port = to.port;
    if pkt.is_v4() {
        let ip = mut_at::<Ipv4Hdr, _>(&frame, pkt.l3_off)?;
        let new = to.v4_addr();
        check = replace(check, &ip.src, &new);
        ip.check = replace(ip.check, &ip.src, &new);
        ip.src = new;
    } else {
        let ip = mut_at::<Ipv6Hdr, _>(&frame, pkt.l3_off)?;
        check = replace(check, &ip.src, &to.addr);
        ip.src = to.addr;
    }
    tcp.check = check;
    Ok(())
}

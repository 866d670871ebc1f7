//! The three translation paths: egress DNAT (VIP -> member) and the reverse
//! NAT of replies (member -> VIP) in TC and XDP flavours. The ingress paths
//! hand packets that are not TCP to `icmp` (errors about our flows), and
//! let `signal` peek at the start of each reply from a member.

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action::XDP_PASS},
    programs::{TcContext, XdpContext},
};
use redirector_common::{
    FlowKey, Stat,
    parse::{Skip, TcpPacket, parse_tcp_filtered},
};

use crate::{
    conntrack,
    csum::{self, Side},
    error::Error,
    fib, icmp,
    maps::{MEMBER_PORTS, SERVICES, VIP_PORTS, filter_has},
    parse::{Frame, Skb},
    signal, stats,
};

/// Parsed TCP, or `None` for a packet that is not ours (counted as passed).
#[inline(always)]
fn tcp_or_pass(parsed: Result<TcpPacket, Skip>) -> Result<Option<TcpPacket>, Error> {
    match parsed {
        Ok(p) => Ok(Some(p)),
        Err(s) if s.is_malformed() => Err(Error::Malformed),
        Err(_) => {
            stats::count(Stat::Passed);
            Ok(None)
        }
    }
}

/// TC egress: a packet to a VIP goes to its flow's member. A SYN straight
/// to a member clears the reply entry an old VIP flow may have left on its
/// 4-tuple.
#[inline(always)]
pub fn egress(ctx: &TcContext) -> Result<i32, Error> {
    let parsed = parse_tcp_filtered(&Skb(ctx), |t, ip| {
        filter_has(&VIP_PORTS, t.dst_port, || ip.dst_words())
            || (t.is_syn() && filter_has(&MEMBER_PORTS, t.dst_port, || ip.dst_words()))
    });
    let Some(pkt) = tcp_or_pass(parsed)? else {
        return Ok(TC_ACT_OK as i32);
    };
    let Some(active) = SERVICES.get_ptr(&pkt.dst) else {
        if pkt.is_syn() {
            conntrack::forget_reply(&pkt.dst, &pkt.src);
        }
        stats::count(Stat::Passed);
        return Ok(TC_ACT_OK as i32);
    };
    // SAFETY: valid map value pointer; copied out at once, so a concurrent
    // flip is seen whole or not at all.
    let active = unsafe { *active };
    let flow = FlowKey {
        client: pkt.src,
        vip: pkt.dst,
    };
    let route = conntrack::route_for(ctx, &flow, &active, pkt.flags)?;
    csum::tc_rewrite(ctx, &pkt, Side::Destination, &route.member)?;
    stats::count(Stat::Translated);
    fib::forward(ctx, &route.fib)
}

/// TC ingress: a reply from a member to a VIP client appears to come from
/// the VIP.
#[inline(always)]
pub fn ingress_tc(ctx: &TcContext) -> Result<i32, Error> {
    let parsed = parse_tcp_filtered(&Skb(ctx), |t, ip| {
        filter_has(&MEMBER_PORTS, t.src_port, || ip.src_words())
    });
    if matches!(parsed, Err(Skip::NotTcp)) {
        return icmp::reverse(&Skb(ctx)).map(|()| TC_ACT_OK as i32);
    }
    let Some(pkt) = tcp_or_pass(parsed)? else {
        return Ok(TC_ACT_OK as i32);
    };
    // Before the reply lookup: fewer values live across the call (stack
    // room). So it sees every reply of an observed member endpoint, also
    // those of direct connections (the daemon's checks among them).
    signal::peek_reply(&Skb(ctx), &pkt);
    let Some(vip) = conntrack::reply_for(ctx, &pkt.src, &pkt.dst, pkt.flags) else {
        stats::count(Stat::Passed);
        return Ok(TC_ACT_OK as i32);
    };
    csum::tc_rewrite(ctx, &pkt, Side::Source, &vip)?;
    stats::count(Stat::ReverseTranslated);
    Ok(TC_ACT_OK as i32)
}

/// XDP ingress: the same as [`ingress_tc`] before the skb exists.
#[inline(always)]
pub fn ingress_xdp(ctx: &XdpContext) -> Result<u32, Error> {
    let parsed = parse_tcp_filtered(&Frame(ctx), |t, ip| {
        filter_has(&MEMBER_PORTS, t.src_port, || ip.src_words())
    });
    if matches!(parsed, Err(Skip::NotTcp)) {
        return icmp::reverse(&Frame(ctx)).map(|()| XDP_PASS);
    }
    let Some(pkt) = tcp_or_pass(parsed)? else {
        return Ok(XDP_PASS);
    };
    signal::peek_reply(&Frame(ctx), &pkt);
    let Some(vip) = conntrack::reply_for(ctx, &pkt.src, &pkt.dst, pkt.flags) else {
        stats::count(Stat::Passed);
        return Ok(XDP_PASS);
    };
    csum::xdp_rewrite_source(ctx, &pkt, &vip)?;
    stats::count(Stat::ReverseTranslated);
    Ok(XDP_PASS)
}

//! ICMP and ICMPv6 errors about translated flows: parsing and the reverse
//! translation of the embedded header, shared by the XDP and TC ingress
//! programs and tested on the host.
//!
//! A router on the way to a member answers a packet we DNATed (client ->
//! member) with an error that embeds that packet's header. The client's
//! kernel looks the socket up by the embedded header, which names the
//! member, so it finds none and the error is lost; for "fragmentation
//! needed" / "packet too big" that breaks path MTU discovery and the
//! connection stalls. [`reverse_v4`] / [`reverse_v6`] turn the embedded
//! destination back into the VIP (as Cilium's `nat.h` does for its SNAT
//! entries) and fix every checksum incrementally (RFC 1624):
//!
//! - IPv4: the embedded IPv4 header checksum, and the ICMP checksum, which
//!   covers the whole ICMP message (no pseudo-header).
//! - IPv6: the ICMPv6 checksum, which covers the message and the outer
//!   pseudo-header.
//! - An error sent by the member host itself (outer source = member address)
//!   gets the VIP as outer source too: the outer IPv4 header checksum, or
//!   for ICMPv6 the pseudo-header part of its checksum, follows.
//!
//! The embedded TCP checksum is left alone: it covers the whole original
//! segment, which an error rarely carries, and receivers do not check it
//! (Linux `tcp_v4_err` / `tcp_v6_err` read the ports and sequence only).
//!
//! Every rewrite changes some bytes and one checksum field so that the
//! one's-complement sum over the packet's bytes stays the same (the
//! pseudo-header is not in the packet: an outer IPv6 source change is
//! balanced by the ICMPv6 checksum). So an skb's CHECKSUM_COMPLETE value
//! stays valid without being touched, and XDP and TC share the code.
//!
//! Only what is clearly ours is touched. Passed untouched: non-error ICMP,
//! error types other than those below, outer or embedded IPv4 with options
//! or fragmented, an embedded IPv6 extension header, an embedded packet that
//! is not TCP, and errors cut short: the embedded IP header and the first 8
//! bytes of TCP (ports and sequence, RFC 792's "64 bits of the original
//! datagram") must lie inside both the frame and the outer IP length.

use crate::{
    csum::replace,
    maps::{Endpoint, addr_words},
    parse::{
        ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, IPPROTO_TCP, IpHdr, Ipv4Hdr, Ipv6Hdr, Packet, Skip,
        ip_end, is_ipv6_ext_header,
    },
};

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

/// ICMPv4 destination unreachable (code 4: fragmentation needed).
pub const ICMP_DEST_UNREACH: u8 = 3;
/// ICMPv4 time exceeded.
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// ICMPv4 code of "fragmentation needed and DF set".
pub const ICMP_FRAG_NEEDED: u8 = 4;
/// ICMPv6 destination unreachable.
pub const ICMPV6_DEST_UNREACH: u8 = 1;
/// ICMPv6 packet too big.
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
/// ICMPv6 time exceeded.
pub const ICMPV6_TIME_EXCEED: u8 = 3;

/// ICMP / ICMPv6 header: type, code, checksum and the 4 type-specific
/// bytes (unused + next-hop MTU, or the MTU).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IcmpHdr {
    pub kind: u8,
    pub code: u8,
    pub check: [u8; 2],
    pub rest: [u8; 4],
}
pub const ICMP_LEN: usize = 8;
const _: () = assert!(core::mem::size_of::<IcmpHdr>() == ICMP_LEN);

/// The first 8 bytes of a TCP header: all an ICMP error must carry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcpHead {
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    pub seq: [u8; 4],
}
pub const TCP_HEAD_LEN: usize = 8;
const _: () = assert!(core::mem::size_of::<TcpHead>() == TCP_HEAD_LEN);

/// An ICMPv4 error about a TCP packet, from the outer IP header (at
/// [`ETH_LEN`]) to the embedded ports: one bounds check covers it all.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Icmp4Error {
    pub ip: Ipv4Hdr,
    pub icmp: IcmpHdr,
    pub inner: Ipv4Hdr,
    pub tcp: TcpHead,
}
const _: () = assert!(core::mem::size_of::<Icmp4Error>() == 56);

/// An ICMPv6 error about a TCP packet, as [`Icmp4Error`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Icmp6Error {
    pub ip: Ipv6Hdr,
    pub icmp: IcmpHdr,
    pub inner: Ipv6Hdr,
    pub tcp: TcpHead,
}
const _: () = assert!(core::mem::size_of::<Icmp6Error>() == 96);

/// Offset of the ICMP checksum from the outer IP header, for tests.
pub const ICMP4_CHECK_OFF: usize = 20 + 2;
pub const ICMP6_CHECK_OFF: usize = 40 + 2;

/// The flow an ICMP error is about, in the reverse map's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    /// The embedded source: the client that sent the packet.
    pub client: Endpoint,
    /// The embedded destination: the member we translated the packet to.
    pub member: Endpoint,
    /// A destination unreachable that says the member cannot be reached
    /// ([`is_unreachable`]); false for errors about the path.
    pub unreachable: bool,
}

/// Whether an ICMP (`v4`) or ICMPv6 error of `kind`/`code` says the
/// destination cannot be reached: IPv4 destination unreachable of any
/// code but fragmentation needed, ICMPv6 destination unreachable of any
/// code. Fragmentation needed, packet too big and time exceeded describe
/// the path (an MTU, a routing loop), not the member.
#[inline(always)]
pub const fn is_unreachable(v4: bool, kind: u8, code: u8) -> bool {
    if v4 {
        kind == ICMP_DEST_UNREACH && code != ICMP_FRAG_NEEDED
    } else {
        kind == ICMPV6_DEST_UNREACH
    }
}

impl IcmpError {
    #[inline(always)]
    pub const fn is_v4(&self) -> bool {
        self.member.family == crate::maps::FAMILY_V4
    }
}

/// Parses an ICMPv4/ICMPv6 error that embeds a TCP packet. `keep` sees the
/// embedded ports and IP header before any address is copied (the kernel
/// checks the member port filter there) and returns [`Skip::Filtered`] if
/// it says no. Anything else is a [`Skip`]; [`Skip::is_malformed`] ones
/// are errors cut short.
#[inline(always)]
pub fn parse_icmp_error<P: Packet + ?Sized>(
    pkt: &P,
    keep: impl FnOnce(&TcpHead, IpHdr) -> bool,
) -> Result<IcmpError, Skip> {
    let eth: &EthHdr = pkt.ref_at(0).ok_or(Skip::Truncated)?;
    let l3_off = ETH_LEN;
    if eth.ether_type == ETH_P_IP {
        let ip: &Ipv4Hdr = pkt.ref_at(l3_off).ok_or(Skip::Truncated)?;
        if ip.version_ihl >> 4 != 4 || ip.proto != IPPROTO_ICMP {
            return Err(Skip::NotIcmpError);
        }
        if ip.version_ihl & 0x0f != 5 {
            return Err(Skip::Ipv4Options);
        }
        if ip.is_fragment() {
            return Err(Skip::Fragment);
        }
        let icmp: &IcmpHdr = pkt.ref_at(l3_off + 20).ok_or(Skip::Truncated)?;
        if icmp.kind != ICMP_DEST_UNREACH && icmp.kind != ICMP_TIME_EXCEEDED {
            return Err(Skip::NotIcmpError);
        }
        let end = ip_end(pkt, l3_off, IpHdr::V4(ip))?;
        let e: &Icmp4Error = pkt.ref_at(l3_off).ok_or(Skip::Truncated)?;
        if l3_off + core::mem::size_of::<Icmp4Error>() > end {
            return Err(Skip::Truncated);
        }
        let inner = &e.inner;
        if inner.version_ihl >> 4 != 4 || inner.proto != IPPROTO_TCP {
            return Err(Skip::NotIcmpError);
        }
        if inner.version_ihl & 0x0f != 5 {
            return Err(Skip::Ipv4Options);
        }
        if inner.is_fragment() {
            return Err(Skip::Fragment);
        }
        if !keep(&e.tcp, IpHdr::V4(inner)) {
            return Err(Skip::Filtered);
        }
        Ok(IcmpError {
            client: Endpoint::tcp_v4(inner.src, e.tcp.src_port),
            member: Endpoint::tcp_v4(inner.dst, e.tcp.dst_port),
            unreachable: is_unreachable(true, e.icmp.kind, e.icmp.code),
        })
    } else if eth.ether_type == ETH_P_IPV6 {
        let ip: &Ipv6Hdr = pkt.ref_at(l3_off).ok_or(Skip::Truncated)?;
        if ip.version_class_flow[0] >> 4 != 6 || ip.next_hdr != IPPROTO_ICMPV6 {
            return Err(Skip::NotIcmpError);
        }
        let icmp: &IcmpHdr = pkt.ref_at(l3_off + 40).ok_or(Skip::Truncated)?;
        if !matches!(
            icmp.kind,
            ICMPV6_DEST_UNREACH | ICMPV6_PKT_TOOBIG | ICMPV6_TIME_EXCEED
        ) {
            return Err(Skip::NotIcmpError);
        }
        let end = ip_end(pkt, l3_off, IpHdr::V6(ip))?;
        let e: &Icmp6Error = pkt.ref_at(l3_off).ok_or(Skip::Truncated)?;
        if l3_off + core::mem::size_of::<Icmp6Error>() > end {
            return Err(Skip::Truncated);
        }
        let inner = &e.inner;
        if inner.version_class_flow[0] >> 4 != 6 {
            return Err(Skip::NotIcmpError);
        }
        if inner.next_hdr != IPPROTO_TCP {
            return Err(if is_ipv6_ext_header(inner.next_hdr) {
                Skip::Ipv6ExtHeader
            } else {
                Skip::NotIcmpError
            });
        }
        if !keep(&e.tcp, IpHdr::V6(inner)) {
            return Err(Skip::Filtered);
        }
        Ok(IcmpError {
            client: Endpoint::tcp_v6(inner.src, e.tcp.src_port),
            member: Endpoint::tcp_v6(inner.dst, e.tcp.dst_port),
            unreachable: is_unreachable(false, e.icmp.kind, e.icmp.code),
        })
    } else {
        Err(Skip::NotIp)
    }
}

/// Rewrites the embedded destination of an ICMPv4 error to `vip` (and the
/// outer source, if the member sent it), fixing the embedded IPv4, outer
/// IPv4 and ICMP checksums incrementally. The byte sum over `e` is kept.
#[inline(always)]
pub fn reverse_v4(e: &mut Icmp4Error, vip: &Endpoint) {
    let member = e.inner.dst;
    let to = vip.v4_addr();
    let inner_check = replace(e.inner.check, &member, &to);
    // The ICMP checksum covers every embedded byte we change: the address,
    // the embedded checksum and the port.
    let mut icmp = replace(e.icmp.check, &member, &to);
    icmp = replace(icmp, &e.inner.check, &inner_check);
    icmp = replace(icmp, &e.tcp.dst_port, &vip.port);
    e.inner.dst = to;
    e.inner.check = inner_check;
    e.tcp.dst_port = vip.port;
    e.icmp.check = icmp;
    // Whole-word compare: no memcmp on the BPF target.
    if u32::from_ne_bytes(e.ip.src) == u32::from_ne_bytes(member) {
        e.ip.check = replace(e.ip.check, &member, &to);
        e.ip.src = to;
    }
}

/// Rewrites the embedded destination of an ICMPv6 error to `vip` (and the
/// outer source, if the member sent it), fixing the ICMPv6 checksum, whose
/// pseudo-header holds the outer source. The byte sum over `e` is kept.
#[inline(always)]
pub fn reverse_v6(e: &mut Icmp6Error, vip: &Endpoint) {
    let member = e.inner.dst;
    let mut icmp = replace(e.icmp.check, &member, &vip.addr);
    icmp = replace(icmp, &e.tcp.dst_port, &vip.port);
    let (src, m) = (addr_words(&e.ip.src), addr_words(&member));
    if src[0] == m[0] && src[1] == m[1] && src[2] == m[2] && src[3] == m[3] {
        // In the pseudo-header only: the checksum field balances the
        // address bytes in the outer header.
        icmp = replace(icmp, &member, &vip.addr);
        e.ip.src = vip.addr;
    }
    e.inner.dst = vip.addr;
    e.tcp.dst_port = vip.port;
    e.icmp.check = icmp;
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;
    use crate::{
        builder::{IcmpKind, icmp_error_frame, tcp_frame, verify_icmp_checksums},
        csum,
        parse::{IPV4_LEN, TCP_ACK, TCP_SYN},
    };

    fn ep(s: &str) -> Endpoint {
        Endpoint::from(s.parse::<core::net::SocketAddr>().unwrap())
    }

    #[derive(Clone, Copy)]
    struct Net {
        client: Endpoint,
        vip: Endpoint,
        member: Endpoint,
        router: Endpoint,
    }

    fn nets() -> [Net; 2] {
        [
            Net {
                client: ep("198.18.10.2:40000"),
                vip: ep("198.18.0.100:6379"),
                member: ep("198.18.1.10:6380"),
                router: ep("198.18.10.1:0"),
            },
            Net {
                client: ep("[2001:db8:10::2]:40000"),
                vip: ep("[2001:db8:100::100]:6379"),
                member: ep("[2001:db8:1::10]:6380"),
                router: ep("[2001:db8:10::1]:0"),
            },
        ]
    }

    fn kinds(v4: bool) -> [IcmpKind; 3] {
        IcmpKind::translated(v4)
    }

    /// The IP packet (no Ethernet) the client sent, and the one that left
    /// egress after DNAT to the member.
    fn sent(n: &Net, dst: &Endpoint) -> Vec<u8> {
        tcp_frame(&n.client, dst, TCP_ACK, &[7u8; 100])[ETH_LEN..].to_vec()
    }

    /// A mutable `T` at `off` of a host buffer, as the kernel's `mut_at`.
    fn view_mut<T>(buf: &mut [u8], off: usize) -> &mut T {
        assert!(off + core::mem::size_of::<T>() <= buf.len());
        // SAFETY: in bounds (checked above); the header types are
        // alignment 1 and any bit pattern is valid.
        unsafe { &mut *(buf.as_mut_ptr().add(off) as *mut T) }
    }

    fn reverse(frame: &mut [u8], vip: &Endpoint) {
        if vip.family == crate::maps::FAMILY_V4 {
            reverse_v4(view_mut(frame, ETH_LEN), vip);
        } else {
            reverse_v6(view_mut(frame, ETH_LEN), vip);
        }
    }

    /// The 2-byte range of the embedded TCP checksum in an error frame.
    fn inner_tcp_check(n: &Net) -> core::ops::Range<usize> {
        let ip = if n.vip.family == crate::maps::FAMILY_V4 {
            IPV4_LEN
        } else {
            40
        };
        let off = ETH_LEN + ip + ICMP_LEN + ip + 16;
        off..off + 2
    }

    #[test]
    fn reverse_translation_restores_what_the_client_sent_with_valid_checksums() {
        for n in nets() {
            let v4 = n.vip.family == crate::maps::FAMILY_V4;
            for kind in kinds(v4) {
                // The minimum (embedded header + 8 bytes), with the TCP
                // checksum, with payload, all of it.
                let min = if v4 { 28 } else { 48 };
                for limit in [min, min + 20, 200, 10_000] {
                    for from in [&n.router, &n.member] {
                        let mut got =
                            icmp_error_frame(from, &n.client, kind, &sent(&n, &n.member), limit);
                        let mut want =
                            icmp_error_frame(from, &n.client, kind, &sent(&n, &n.vip), limit);
                        let err = parse_icmp_error(&got[..], |_, _| true).unwrap();
                        assert_eq!(err.member, n.member);
                        assert_eq!(err.client, n.client);
                        reverse(&mut got, &n.vip);
                        if from.same(&n.member) {
                            // The member's own error appears to come from the VIP.
                            want =
                                icmp_error_frame(&n.vip, &n.client, kind, &sent(&n, &n.vip), limit);
                        }
                        verify_icmp_checksums(&got).unwrap();
                        // The embedded TCP checksum is not restored (see
                        // the module doc); everything else is.
                        let r = inner_tcp_check(&n);
                        if got.len() >= r.end {
                            want[r.clone()].copy_from_slice(&got[r]);
                            crate::builder::refresh_icmp_checksums(&mut want);
                        }
                        assert_eq!(got, want, "{kind:?} limit {limit}");
                    }
                }
            }
        }
    }

    #[test]
    fn byte_sum_of_the_packet_is_unchanged_so_checksum_complete_stays_valid() {
        for n in nets() {
            for from in [&n.router, &n.member] {
                let v4 = n.vip.family == crate::maps::FAMILY_V4;
                let kind = kinds(v4)[0];
                let mut f = icmp_error_frame(from, &n.client, kind, &sent(&n, &n.member), 10_000);
                let before = csum::fold(csum::add_bytes(0, &f[ETH_LEN..]));
                reverse(&mut f, &n.vip);
                let after = csum::fold(csum::add_bytes(0, &f[ETH_LEN..]));
                let norm = |c: u16| if c == 0xffff { 0 } else { c };
                assert_eq!(norm(before), norm(after));
            }
        }
    }

    #[test]
    fn random_addresses_and_ports_keep_checksums_valid() {
        let mut x: u64 = 5;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            (x >> 33) as u32
        };
        for round in 0..500 {
            let v4 = round % 2 == 0;
            let mut n = nets()[round % 2];
            let alen = if v4 { 4 } else { 16 };
            for b in n.member.addr.iter_mut().take(alen) {
                *b = next() as u8;
            }
            for b in n.vip.addr.iter_mut().take(alen) {
                *b = next() as u8;
            }
            n.vip.port = (next() as u16).to_be_bytes();
            n.member.port = (next() as u16).to_be_bytes();
            let kind = kinds(v4)[round % 3];
            let from = if round % 3 == 0 { n.member } else { n.router };
            let mut f = icmp_error_frame(&from, &n.client, kind, &sent(&n, &n.member), 100);
            reverse(&mut f, &n.vip);
            verify_icmp_checksums(&f).unwrap_or_else(|e| panic!("round {round}: {e:?}"));
            let err = parse_icmp_error(&f[..], |_, _| true).unwrap();
            assert_eq!(err.member, n.vip);
        }
    }

    #[test]
    fn errors_cut_short_are_truncated_by_frame_or_ip_length() {
        for n in nets() {
            let v4 = n.vip.family == crate::maps::FAMILY_V4;
            let full = icmp_error_frame(
                &n.router,
                &n.client,
                kinds(v4)[0],
                &sent(&n, &n.member),
                10_000,
            );
            let need = ETH_LEN
                + if v4 {
                    core::mem::size_of::<Icmp4Error>()
                } else {
                    core::mem::size_of::<Icmp6Error>()
                };
            let ip = if v4 { 20 } else { 40 };
            // Cut by the frame: past the ICMP header it is an error cut short.
            for len in ETH_LEN + ip + ICMP_LEN..need {
                assert_eq!(
                    parse_icmp_error(&full[..len], |_, _| true),
                    Err(Skip::Malformed),
                    "len {len}: the IP length claims more than the frame"
                );
            }
            // Embedding less than 8 bytes of TCP, with a consistent IP length.
            for limit in 0..(need - ETH_LEN - ip - ICMP_LEN) {
                let f = icmp_error_frame(
                    &n.router,
                    &n.client,
                    kinds(v4)[0],
                    &sent(&n, &n.member),
                    limit,
                );
                assert_eq!(
                    parse_icmp_error(&f[..], |_, _| true),
                    Err(Skip::Truncated),
                    "embedded {limit} bytes"
                );
                // Ethernet padding does not make up for it.
                let mut padded = f.clone();
                padded.resize(need + 10, 0);
                assert_eq!(
                    parse_icmp_error(&padded[..], |_, _| true),
                    Err(Skip::Truncated)
                );
            }
            // Exactly the minimum is enough.
            let f = icmp_error_frame(
                &n.router,
                &n.client,
                kinds(v4)[0],
                &sent(&n, &n.member),
                need - ETH_LEN - ip - ICMP_LEN,
            );
            assert!(parse_icmp_error(&f[..], |_, _| true).is_ok());
        }
    }

    #[test]
    fn everything_but_an_error_about_plain_tcp_is_skipped() {
        for n in nets() {
            let v4 = n.vip.family == crate::maps::FAMILY_V4;
            let ip = if v4 { 20 } else { 40 };
            let inner = ETH_LEN + ip + ICMP_LEN;
            let base = icmp_error_frame(
                &n.router,
                &n.client,
                kinds(v4)[0],
                &sent(&n, &n.member),
                100,
            );
            let refix = |f: &mut Vec<u8>| crate::builder::refresh_icmp_checksums(f);
            let mut cases: Vec<(&str, Vec<u8>, Skip)> = Vec::new();
            for kind in if v4 {
                vec![0u8, 8, 5, 12, 4]
            } else {
                vec![128u8, 129, 4, 135, 0]
            } {
                let mut f = base.clone();
                f[ETH_LEN + ip] = kind;
                refix(&mut f);
                cases.push(("other type", f, Skip::NotIcmpError));
            }
            let tcp = tcp_frame(&n.member, &n.client, TCP_SYN, b"");
            cases.push(("tcp", tcp, Skip::NotIcmpError));
            let mut udp = base.clone();
            udp[inner + if v4 { 9 } else { 6 }] = 17;
            refix(&mut udp);
            cases.push(("embedded udp", udp, Skip::NotIcmpError));
            if v4 {
                let mut opts = base.clone();
                opts[inner] = 0x46;
                refix(&mut opts);
                cases.push(("embedded options", opts, Skip::Ipv4Options));
                let mut frag = base.clone();
                frag[inner + 6] |= 0x20;
                refix(&mut frag);
                cases.push(("embedded first fragment", frag, Skip::Fragment));
                let mut later = base.clone();
                later[inner + 7] = 1;
                refix(&mut later);
                cases.push(("embedded later fragment", later, Skip::Fragment));
                let mut outer_opts = base.clone();
                outer_opts[ETH_LEN] = 0x46;
                cases.push(("outer options", outer_opts, Skip::Ipv4Options));
                let mut outer_frag = base.clone();
                outer_frag[ETH_LEN + 6] |= 0x20;
                cases.push(("outer fragment", outer_frag, Skip::Fragment));
            } else {
                let mut ext = base.clone();
                ext[inner + 6] = 44;
                refix(&mut ext);
                cases.push(("embedded ext header", ext, Skip::Ipv6ExtHeader));
                let mut outer_ext = base.clone();
                outer_ext[ETH_LEN + 6] = 0;
                cases.push(("outer ext header", outer_ext, Skip::NotIcmpError));
            }
            let mut badver = base.clone();
            badver[inner] = 0x15;
            cases.push(("embedded version", badver, Skip::NotIcmpError));
            for (what, f, want) in cases {
                assert_eq!(parse_icmp_error(&f[..], |_, _| true), Err(want), "{what}");
            }
            // The filter sees the member's port and address.
            let mut seen = None;
            let r = parse_icmp_error(&base[..], |t, ip| {
                seen = Some((t.dst_port, ip.dst_words()));
                false
            });
            assert_eq!(r, Err(Skip::Filtered));
            assert_eq!(seen, Some((n.member.port, n.member.addr_words())));
        }
    }

    #[test]
    fn unreachable_is_set_for_unreachable_codes_only() {
        for n in nets() {
            let v4 = n.vip.family == crate::maps::FAMILY_V4;
            let mut cases = vec![];
            if v4 {
                for code in [0u8, 1, 2, 3, 9, 10, 13] {
                    cases.push((IcmpKind::Other(ICMP_DEST_UNREACH, code), true));
                }
                cases.push((IcmpKind::FragNeeded(1280), false));
                cases.push((IcmpKind::Other(ICMP_TIME_EXCEEDED, 0), false));
            } else {
                for code in [0u8, 1, 3, 4] {
                    cases.push((IcmpKind::Other(ICMPV6_DEST_UNREACH, code), true));
                }
                cases.push((IcmpKind::PacketTooBig(1280), false));
                cases.push((IcmpKind::Other(ICMPV6_TIME_EXCEED, 0), false));
            }
            for (kind, want) in cases {
                let f = icmp_error_frame(&n.router, &n.client, kind, &sent(&n, &n.member), 100);
                let e = parse_icmp_error(&f[..], |_, _| true).expect("parsed");
                assert_eq!(e.unreachable, want, "{kind:?} (v4: {v4})");
            }
        }
    }
}

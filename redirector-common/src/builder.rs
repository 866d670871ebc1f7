//! Crafts Ethernet/IP/TCP packets and ICMP/ICMPv6 errors with valid
//! checksums, and validates them by recomputing every checksum from scratch
//! (never with the incremental code the programs use).
//!
//! Used by the host unit tests here and by the BPF_PROG_TEST_RUN packet tests
//! in `tests/` (feature `builder`), so both check packets the same way.

extern crate alloc;
use alloc::vec::Vec;

use crate::{
    csum,
    icmp::{
        ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_LEN, ICMP_TIME_EXCEEDED, ICMPV6_DEST_UNREACH,
        ICMPV6_PKT_TOOBIG, ICMPV6_TIME_EXCEED, IPPROTO_ICMP, IPPROTO_ICMPV6,
    },
    maps::{Endpoint, FAMILY_V4},
    parse::*,
};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// An Ethernet frame carrying one TCP segment from `src` to `dst` with
/// `flags`, valid IP and TCP checksums, and `payload`.
pub fn tcp_frame(src: &Endpoint, dst: &Endpoint, flags: u8, payload: &[u8]) -> Vec<u8> {
    assert_eq!(src.family, dst.family, "mixed families");
    let mut f = eth_ip(src, dst, IPPROTO_TCP, TCP_LEN + payload.len());
    let mut tcp = [0u8; TCP_LEN];
    tcp[0..2].copy_from_slice(&src.port);
    tcp[2..4].copy_from_slice(&dst.port);
    tcp[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    if flags & TCP_ACK != 0 {
        tcp[8..12].copy_from_slice(&0x0a0b_0c0du32.to_be_bytes());
    }
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let l4 = f.len();
    f.extend_from_slice(&tcp);
    f.extend_from_slice(payload);
    let (s, d) = addrs(src, dst);
    let c = csum::tcp_checksum(s, d, &f[l4..]);
    f[l4 + TCP_CHECK_OFF..l4 + TCP_CHECK_OFF + 2].copy_from_slice(&c.to_be_bytes());
    f
}

/// Ethernet and IP headers (IPv4 with DF, no options) from `src` to `dst`
/// for `l4_len` bytes of protocol `proto`, valid IPv4 header checksum.
fn eth_ip(src: &Endpoint, dst: &Endpoint, proto: u8, l4_len: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&GATEWAY_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    if src.family == FAMILY_V4 {
        f.extend_from_slice(&ETH_P_IP);
        let tot = (IPV4_LEN + l4_len) as u16;
        let mut ip = [0u8; IPV4_LEN];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&tot.to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src.v4_addr());
        ip[16..20].copy_from_slice(&dst.v4_addr());
        let c = csum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
    } else {
        f.extend_from_slice(&ETH_P_IPV6);
        let mut ip = [0u8; IPV6_LEN];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        ip[6] = proto;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&src.addr);
        ip[24..40].copy_from_slice(&dst.addr);
        f.extend_from_slice(&ip);
    }
    f
}

/// Recomputes the IPv4 header checksum of `frame` (after a test edited the
/// header); IPv6 has none.
pub fn fix_ipv4_checksum(frame: &mut [u8]) {
    if frame[12..14] == ETH_P_IP {
        let h = ETH_LEN..ETH_LEN + IPV4_LEN;
        frame[ETH_LEN + IPV4_CHECK_OFF..][..2].fill(0);
        let c = csum::checksum(&frame[h]);
        frame[ETH_LEN + IPV4_CHECK_OFF..][..2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Which ICMP error [`icmp_error_frame`] builds.
#[derive(Clone, Copy, Debug)]
pub enum IcmpKind {
    /// IPv4 destination unreachable, fragmentation needed, next-hop MTU.
    FragNeeded(u16),
    /// ICMPv6 packet too big, MTU.
    PacketTooBig(u32),
    /// Any other (type, code), the type-specific bytes zero.
    Other(u8, u8),
}

impl IcmpKind {
    /// One error of each type the programs translate, "too big" first:
    /// IPv4 frag needed, port unreachable, TTL exceeded; ICMPv6 packet too
    /// big, port unreachable, hop limit exceeded.
    pub fn translated(v4: bool) -> [IcmpKind; 3] {
        if v4 {
            [
                IcmpKind::FragNeeded(1280),
                IcmpKind::Other(ICMP_DEST_UNREACH, 3),
                IcmpKind::Other(ICMP_TIME_EXCEEDED, 0),
            ]
        } else {
            [
                IcmpKind::PacketTooBig(1280),
                IcmpKind::Other(ICMPV6_DEST_UNREACH, 4),
                IcmpKind::Other(ICMPV6_TIME_EXCEED, 0),
            ]
        }
    }
}

/// An ICMP (IPv4 `from`) or ICMPv6 error from `from` to `to` embedding the
/// first `limit` bytes of the IP packet `embedded` (no Ethernet header), as
/// a router would send it; valid checksums.
pub fn icmp_error_frame(
    from: &Endpoint,
    to: &Endpoint,
    kind: IcmpKind,
    embedded: &[u8],
    limit: usize,
) -> Vec<u8> {
    let body = &embedded[..embedded.len().min(limit)];
    let v4 = from.family == FAMILY_V4;
    let proto = if v4 { IPPROTO_ICMP } else { IPPROTO_ICMPV6 };
    let mut f = eth_ip(from, to, proto, ICMP_LEN + body.len());
    let mut icmp = [0u8; ICMP_LEN];
    match kind {
        IcmpKind::FragNeeded(mtu) => {
            icmp[0] = ICMP_DEST_UNREACH;
            icmp[1] = ICMP_FRAG_NEEDED;
            icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
        }
        IcmpKind::PacketTooBig(mtu) => {
            icmp[0] = ICMPV6_PKT_TOOBIG;
            icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
        }
        IcmpKind::Other(t, c) => {
            icmp[0] = t;
            icmp[1] = c;
        }
    }
    f.extend_from_slice(&icmp);
    f.extend_from_slice(body);
    refresh_icmp_checksums(&mut f);
    f
}

/// Offset of the ICMP header and end of the IP packet of an ICMP frame.
fn icmp_bounds(frame: &[u8]) -> (usize, usize) {
    if frame[12..14] == ETH_P_IP {
        let tot = u16::from_be_bytes([frame[ETH_LEN + 2], frame[ETH_LEN + 3]]) as usize;
        (ETH_LEN + IPV4_LEN, ETH_LEN + tot)
    } else {
        let pl = u16::from_be_bytes([frame[ETH_LEN + 4], frame[ETH_LEN + 5]]) as usize;
        (ETH_LEN + IPV6_LEN, ETH_LEN + IPV6_LEN + pl)
    }
}

/// The ICMP / ICMPv6 checksum of the message in `frame`, from scratch; 0
/// when the stored one is right.
fn icmp_sum(frame: &[u8]) -> u16 {
    let (l4, end) = icmp_bounds(frame);
    if frame[12..14] == ETH_P_IP {
        csum::checksum(&frame[l4..end])
    } else {
        let ip = &frame[ETH_LEN..];
        csum::l4_checksum(IPPROTO_ICMPV6, &ip[8..24], &ip[24..40], &frame[l4..end])
    }
}

/// Recomputes every checksum of an ICMP error frame from scratch: the
/// embedded IPv4 header's (when all of it is there), the ICMP one and the
/// outer IPv4 header's. For tests that edit a frame.
pub fn refresh_icmp_checksums(frame: &mut [u8]) {
    let (l4, _) = icmp_bounds(frame);
    let inner = l4 + ICMP_LEN;
    if frame[12..14] == ETH_P_IP && frame.len() >= inner + IPV4_LEN && frame[inner] == 0x45 {
        frame[inner + IPV4_CHECK_OFF..][..2].fill(0);
        let c = csum::checksum(&frame[inner..inner + IPV4_LEN]);
        frame[inner + IPV4_CHECK_OFF..][..2].copy_from_slice(&c.to_be_bytes());
    }
    frame[l4 + 2..l4 + 4].fill(0);
    let c = icmp_sum(frame);
    frame[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
    fix_ipv4_checksum(frame);
}

/// Checks an ICMP error frame's checksums from scratch: outer IPv4 header,
/// ICMP / ICMPv6 (with the pseudo-header), and the embedded IPv4 header.
pub fn verify_icmp_checksums(frame: &[u8]) -> Result<(), BadChecksum> {
    let v4 = frame[12..14] == ETH_P_IP;
    if v4 && csum::checksum(&frame[ETH_LEN..ETH_LEN + IPV4_LEN]) != 0 {
        return Err(BadChecksum::Ipv4Header);
    }
    if icmp_sum(frame) != 0 {
        return Err(BadChecksum::Icmp);
    }
    let inner = icmp_bounds(frame).0 + ICMP_LEN;
    if v4 && csum::checksum(&frame[inner..inner + IPV4_LEN]) != 0 {
        return Err(BadChecksum::EmbeddedIpv4Header);
    }
    Ok(())
}

fn addrs<'a>(src: &'a Endpoint, dst: &'a Endpoint) -> (&'a [u8], &'a [u8]) {
    if src.family == FAMILY_V4 {
        (&src.addr[..4], &dst.addr[..4])
    } else {
        (&src.addr[..], &dst.addr[..])
    }
}

/// Why [`verify_checksums`] rejected a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum BadChecksum {
    NotTcp(Skip),
    Ipv4Header,
    Tcp,
    /// The ICMP / ICMPv6 checksum.
    Icmp,
    /// The IPv4 header embedded in an ICMP error.
    EmbeddedIpv4Header,
}

/// Recomputes the IPv4 header and TCP checksums from scratch.
pub fn verify_checksums(frame: &[u8]) -> Result<TcpPacket, BadChecksum> {
    let p = parse_tcp(frame).map_err(BadChecksum::NotTcp)?;
    let (s, d) = addrs(&p.src, &p.dst);
    let l4_end = if p.is_v4() {
        if csum::checksum(&frame[p.l3_off..p.l3_off + IPV4_LEN]) != 0 {
            return Err(BadChecksum::Ipv4Header);
        }
        let tot = u16::from_be_bytes([frame[p.l3_off + 2], frame[p.l3_off + 3]]) as usize;
        p.l3_off + tot
    } else {
        let pl = u16::from_be_bytes([frame[p.l3_off + 4], frame[p.l3_off + 5]]) as usize;
        p.l4_off + pl
    };
    if csum::tcp_checksum(s, d, &frame[p.l4_off..l4_end]) != 0 {
        return Err(BadChecksum::Tcp);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::Endpoint;

    fn v4(a: [u8; 4], p: u16) -> Endpoint {
        Endpoint::tcp_v4(a, p.to_be_bytes())
    }
    fn v6(last: u8, p: u16) -> Endpoint {
        let mut a = [0u8; 16];
        a[0] = 0x20;
        a[1] = 0x01;
        a[2] = 0x0d;
        a[3] = 0xb8;
        a[15] = last;
        Endpoint::tcp_v6(a, p.to_be_bytes())
    }

    #[test]
    fn parses_ipv4_syn() {
        let f = tcp_frame(
            &v4([198, 18, 0, 2], 40000),
            &v4([198, 18, 0, 100], 6379),
            TCP_SYN,
            b"",
        );
        let p = verify_checksums(&f).unwrap();
        assert_eq!(p.l4_off, 34);
        assert_eq!(p.dst, v4([198, 18, 0, 100], 6379));
        assert_eq!(p.src.port(), 40000);
        assert!(p.is_syn());
    }

    #[test]
    fn parses_ipv6_ack_with_odd_payload() {
        let f = tcp_frame(&v6(2, 40000), &v6(100, 6379), TCP_ACK | 0x08, b"PING\r\n!");
        let p = verify_checksums(&f).unwrap();
        assert_eq!(p.l4_off, 54);
        assert_eq!(p.dst, v6(100, 6379));
        assert!(!p.is_syn());
        assert!(!p.is_v4());
    }

    #[test]
    fn payload_off_follows_tcp_options_and_len_ignores_padding() {
        let (c, v) = (v4([198, 18, 0, 2], 40000), v4([198, 18, 0, 100], 6379));
        let f = tcp_frame(&c, &v, TCP_ACK, b"-LOADING x\r\n");
        let p = parse_tcp(&f[..]).unwrap();
        assert_eq!((p.payload_off, p.payload_len), (54, 12));
        // 12 option bytes (NOPs): data offset 8, IP length 12 more.
        let mut o = f.clone();
        o.splice(54..54, [1u8; 12]);
        o[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&(20u16 + 32 + 12).to_be_bytes());
        o[ETH_LEN + IPV4_LEN + 12] = 8 << 4;
        let p = parse_tcp(&o[..]).unwrap();
        assert_eq!((p.payload_off, p.payload_len), (66, 12));
        let off = p.payload_off as usize;
        assert_eq!(&o[off..off + 8], b"-LOADING");
        // Ethernet padding of a short frame is no payload.
        let mut padded = tcp_frame(&c, &v, TCP_ACK, b"-");
        padded.resize(60, 0);
        assert_eq!(parse_tcp(&padded[..]).unwrap().payload_len, 1);
        let f6 = tcp_frame(&v6(2, 40000), &v6(100, 6379), TCP_ACK, b"");
        let p = parse_tcp(&f6[..]).unwrap();
        assert_eq!((p.payload_off, p.payload_len), (74, 0));
    }

    #[test]
    fn syn_ack_is_not_a_new_connection() {
        let f = tcp_frame(
            &v4([1, 1, 1, 1], 1),
            &v4([2, 2, 2, 2], 2),
            TCP_SYN | TCP_ACK,
            b"",
        );
        assert!(!parse_tcp(&f[..]).unwrap().is_syn());
    }

    #[test]
    fn skips_everything_that_is_not_plain_tcp() {
        let base = tcp_frame(&v4([1, 1, 1, 1], 1), &v4([2, 2, 2, 2], 2), TCP_SYN, b"x");
        let mut udp = base.clone();
        udp[ETH_LEN + 9] = 17;
        assert_eq!(parse_tcp(&udp[..]), Err(Skip::NotTcp));
        let mut opts = base.clone();
        opts[ETH_LEN] = 0x46;
        assert_eq!(parse_tcp(&opts[..]), Err(Skip::Ipv4Options));
        let mut mf = base.clone();
        mf[ETH_LEN + 6] = 0x20;
        assert_eq!(parse_tcp(&mf[..]), Err(Skip::Fragment));
        let mut off = base.clone();
        off[ETH_LEN + 7] = 1;
        assert_eq!(parse_tcp(&off[..]), Err(Skip::Fragment));
        let mut arp = base.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse_tcp(&arp[..]), Err(Skip::NotIp));
        let mut badver = base.clone();
        badver[ETH_LEN] = 0x65;
        assert_eq!(parse_tcp(&badver[..]), Err(Skip::NotIp));

        let b6 = tcp_frame(&v6(1, 1), &v6(2, 2), TCP_SYN, b"");
        let mut hbh = b6.clone();
        hbh[ETH_LEN + 6] = 0; // hop-by-hop options
        assert_eq!(parse_tcp(&hbh[..]), Err(Skip::Ipv6ExtHeader));
        let mut frag = b6.clone();
        frag[ETH_LEN + 6] = 44;
        assert_eq!(parse_tcp(&frag[..]), Err(Skip::Ipv6ExtHeader));
        let mut icmp6 = b6.clone();
        icmp6[ETH_LEN + 6] = 58;
        assert_eq!(parse_tcp(&icmp6[..]), Err(Skip::NotTcp));
    }

    #[test]
    fn port_filter_rejects_before_addresses_are_read() {
        let f = tcp_frame(
            &v4([1, 1, 1, 1], 1000),
            &v4([2, 2, 2, 2], 6379),
            TCP_SYN,
            b"",
        );
        let keep_6379 = |t: &TcpHdr, _: IpHdr| t.dst_port == 6379u16.to_be_bytes();
        assert!(parse_tcp_filtered(&f[..], keep_6379).is_ok());
        let g = tcp_frame(&v4([1, 1, 1, 1], 1000), &v4([2, 2, 2, 2], 80), TCP_SYN, b"");
        assert_eq!(parse_tcp_filtered(&g[..], keep_6379), Err(Skip::Filtered));
        // Non-TCP is still reported as such, not as filtered.
        let mut udp = f.clone();
        udp[ETH_LEN + 9] = 17;
        assert_eq!(parse_tcp_filtered(&udp[..], keep_6379), Err(Skip::NotTcp));
    }

    #[test]
    fn filter_sees_the_address_words_and_bits_the_daemon_sets() {
        for (src, dst) in [
            (v4([198, 18, 10, 2], 40000), v4([198, 18, 0, 100], 6379)),
            (
                Endpoint::tcp_v6(
                    [0x20, 1, 0xd, 0xb8, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                    [0x9c, 0x40],
                ),
                Endpoint::tcp_v6(
                    [0x20, 1, 0xd, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
                    [0x18, 0xeb],
                ),
            ),
        ] {
            let f = tcp_frame(&src, &dst, TCP_SYN, b"");
            let mut seen = None;
            parse_tcp_filtered(&f[..], |_, ip| {
                seen = Some((ip.src_words(), ip.dst_words()));
                true
            })
            .unwrap();
            let (s, d) = seen.unwrap();
            assert_eq!(s, src.addr_words());
            assert_eq!(d, dst.addr_words());
            assert_eq!(crate::filter_bit(d), crate::filter_bit(dst.addr_words()));
        }
        // The bench's and tests' VIP and other member addresses differ in bit.
        let bit = |e: Endpoint| crate::filter_bit(e.addr_words());
        assert_ne!(bit(v4([198, 18, 0, 100], 1)), bit(v4([198, 18, 1, 10], 1)));
    }

    #[test]
    fn every_truncation_is_reported_not_misparsed() {
        for f in [
            tcp_frame(&v4([1, 1, 1, 1], 1), &v4([2, 2, 2, 2], 2), TCP_SYN, b""),
            tcp_frame(&v6(1, 1), &v6(2, 2), TCP_SYN, b""),
        ] {
            for len in 0..f.len() {
                assert_eq!(parse_tcp(&f[..len]), Err(Skip::Truncated), "len {len}");
            }
            assert!(parse_tcp(&f[..]).is_ok());
        }
    }

    /// Sets the IP length field of `f` (IPv4 total, IPv6 payload length).
    fn set_ip_len(f: &mut [u8], len: u16) {
        let off = if f[12..14] == ETH_P_IP { 2 } else { 4 };
        f[ETH_LEN + off..][..2].copy_from_slice(&len.to_be_bytes());
        fix_ipv4_checksum(f);
    }

    fn l4_off(f: &[u8]) -> usize {
        ETH_LEN
            + if f[12..14] == ETH_P_IP {
                IPV4_LEN
            } else {
                IPV6_LEN
            }
    }

    /// What an IP length field says for `l4_bytes` after the IP header.
    fn ip_len_for(f: &[u8], l4_bytes: usize) -> u16 {
        (l4_bytes + if f[12..14] == ETH_P_IP { IPV4_LEN } else { 0 }) as u16
    }

    fn both() -> [Vec<u8>; 2] {
        [
            tcp_frame(&v4([1, 1, 1, 1], 1), &v4([2, 2, 2, 2], 2), TCP_ACK, b""),
            tcp_frame(&v6(1, 1), &v6(2, 2), TCP_ACK, b""),
        ]
    }

    #[test]
    fn ip_length_ending_inside_the_tcp_header_is_malformed() {
        for base in both() {
            for l4 in 0..TCP_LEN {
                let mut f = base.clone();
                let len = ip_len_for(&f, l4);
                set_ip_len(&mut f, len);
                if len == 0 {
                    continue; // IPv6 with payload 0: the BIG TCP case below
                }
                assert_eq!(parse_tcp(&f[..]), Err(Skip::Malformed), "l4 bytes {l4}");
            }
        }
    }

    #[test]
    fn ip_length_beyond_the_frame_is_malformed() {
        for base in both() {
            let mut f = base.clone();
            let len = ip_len_for(&f, TCP_LEN + 1);
            set_ip_len(&mut f, len);
            assert_eq!(parse_tcp(&f[..]), Err(Skip::Malformed));
            set_ip_len(&mut f, 0xffff);
            assert_eq!(parse_tcp(&f[..]), Err(Skip::Malformed));
        }
    }

    #[test]
    fn ethernet_padding_after_the_ip_packet_is_fine() {
        for base in both() {
            let mut f = base.clone();
            f.resize(f.len().max(60) + 6, 0);
            let p = parse_tcp(&f[..]).unwrap();
            assert_eq!(p, parse_tcp(&base[..]).unwrap());
        }
    }

    #[test]
    fn tcp_data_offset_below_5_or_past_the_ip_length_is_malformed() {
        for base in both() {
            let off = l4_off(&base);
            for doff in 0..5u8 {
                let mut f = base.clone();
                f[off + 12] = doff << 4;
                assert_eq!(parse_tcp(&f[..]), Err(Skip::Malformed), "doff {doff}");
            }
            // Past the packet.
            let mut f = base.clone();
            f[off + 12] = 15 << 4;
            assert_eq!(parse_tcp(&f[..]), Err(Skip::Malformed));
            // Inside the frame (padding) but past the IP length.
            let mut padded = base.clone();
            padded.resize(base.len() + 40, 0);
            padded[off + 12] = 10 << 4;
            assert_eq!(parse_tcp(&padded[..]), Err(Skip::Malformed));
            // Options the IP length covers are fine.
            let len = ip_len_for(&padded, 40);
            set_ip_len(&mut padded, len);
            assert!(parse_tcp(&padded[..]).is_ok());
            let mut six = base.clone();
            six.extend_from_slice(&[1, 1, 1, 1]); // 4 bytes of NOP options
            six[off + 12] = 6 << 4;
            let len = ip_len_for(&six, 24);
            set_ip_len(&mut six, len);
            assert!(parse_tcp(&six[..]).is_ok());
        }
    }

    /// An skb as TC sees it: the headers in the linear part, the rest of a
    /// GSO/GRO super-packet in pages the program cannot read directly.
    struct Paged<'a> {
        linear: &'a [u8],
        len: usize,
    }

    impl Packet for Paged<'_> {
        fn ref_at<T>(&self, offset: usize) -> Option<&T> {
            self.linear.ref_at(offset)
        }
        fn packet_len(&self) -> usize {
            self.len
        }
    }

    #[test]
    fn gso_super_packets_are_judged_by_their_whole_length() {
        for base in both() {
            let headers = l4_off(&base) + TCP_LEN;
            // A 64000-byte TSO packet: right IP length, only headers linear.
            let mut f = base.clone();
            let len = ip_len_for(&f, 64_000 - l4_off(&base));
            set_ip_len(&mut f, len);
            let skb = Paged {
                linear: &f[..headers],
                len: 64_000,
            };
            assert!(parse_tcp(&skb).is_ok());
            // One byte more claimed than the skb holds.
            let short = Paged {
                linear: &f[..headers],
                len: 64_000 - 1,
            };
            assert_eq!(parse_tcp(&short), Err(Skip::Malformed));
        }
    }

    #[test]
    fn ip_length_zero_is_big_tcp_only_on_packets_too_long_for_the_field() {
        for base in both() {
            let mut f = base.clone();
            set_ip_len(&mut f, 0);
            // A small packet with length 0 is broken ...
            assert_eq!(parse_tcp(&f[..]), Err(Skip::Malformed));
            let headers = l4_off(&base) + TCP_LEN;
            let fixed = l4_off(&base) - if f[12..14] == ETH_P_IP { IPV4_LEN } else { 0 };
            let at_max = Paged {
                linear: &f[..headers],
                len: fixed + 0xffff,
            };
            assert_eq!(parse_tcp(&at_max), Err(Skip::Malformed));
            // ... a BIG TCP one (more than the field can hold) is not.
            let big = Paged {
                linear: &f[..headers],
                len: fixed + 0xffff + 1,
            };
            assert!(parse_tcp(&big).is_ok());
            // The same, wholly readable.
            let mut whole = f.clone();
            whole.resize(200_000, 0);
            assert!(parse_tcp(&whole[..]).is_ok());
        }
    }

    #[test]
    fn corrupted_checksums_are_detected() {
        let mut f = tcp_frame(&v4([1, 1, 1, 1], 1), &v4([2, 2, 2, 2], 2), TCP_ACK, b"abc");
        f[ETH_LEN + 8] ^= 1; // TTL, covered by the header checksum only
        assert_eq!(verify_checksums(&f), Err(BadChecksum::Ipv4Header));
        let mut g = tcp_frame(&v6(1, 1), &v6(2, 2), TCP_ACK, b"abc");
        let n = g.len();
        g[n - 1] ^= 1;
        assert_eq!(verify_checksums(&g), Err(BadChecksum::Tcp));
    }
}

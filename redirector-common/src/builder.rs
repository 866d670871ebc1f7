//! Crafts Ethernet/IP/TCP packets with valid checksums and validates them.
//!
//! Used by the host unit tests here and by the BPF_PROG_TEST_RUN packet tests
//! in `tests/` (feature `builder`), so both check packets the same way.

extern crate alloc;
use alloc::vec::Vec;

use crate::{
    csum,
    maps::{Endpoint, FAMILY_V4},
    parse::*,
};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// An Ethernet frame carrying one TCP segment from `src` to `dst` with
/// `flags`, valid IP and TCP checksums, and `payload`.
pub fn tcp_frame(src: &Endpoint, dst: &Endpoint, flags: u8, payload: &[u8]) -> Vec<u8> {
    assert_eq!(src.family, dst.family, "mixed families");
    let mut f = Vec::new();
    f.extend_from_slice(&GATEWAY_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    let tcp_len = TCP_LEN + payload.len();
    if src.family == FAMILY_V4 {
        f.extend_from_slice(&ETH_P_IP);
        let tot = (IPV4_LEN + tcp_len) as u16;
        let mut ip = [0u8; IPV4_LEN];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&tot.to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = IPPROTO_TCP;
        ip[12..16].copy_from_slice(&src.v4_addr());
        ip[16..20].copy_from_slice(&dst.v4_addr());
        let c = csum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
    } else {
        f.extend_from_slice(&ETH_P_IPV6);
        let mut ip = [0u8; IPV6_LEN];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        ip[6] = IPPROTO_TCP;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&src.addr);
        ip[24..40].copy_from_slice(&dst.addr);
        f.extend_from_slice(&ip);
    }
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

//! TCP packets whose IP length or TCP data offset disagree with the packet
//! are not translated: they pass byte for byte and count as malformed. The
//! same packets with consistent lengths (Ethernet padding, TCP options) are
//! translated. See `redirector_common::parse` for the rules; the GSO and
//! BIG TCP cases need skbs larger than BPF_PROG_TEST_RUN builds and are
//! host-tested there (and the 200 KB SETs of `pmtu` go through TSO).

use redirector_common::{
    FAMILY_V4, Stat,
    builder::{fix_ipv4_checksum, tcp_frame, verify_checksums},
    parse::{ETH_LEN, IPV4_LEN, IPV6_LEN, TCP_ACK, TCP_LEN},
};

use super::packets::{Net, PSH, TC_ACT_OK, XDP_PASS, both_families, data, with_programs};

fn l4_off(n: &Net) -> usize {
    ETH_LEN
        + if n.vip.family == FAMILY_V4 {
            IPV4_LEN
        } else {
            IPV6_LEN
        }
}

/// Sets the IP length field to say `l4` bytes follow the IP header.
fn set_l4_len(n: &Net, f: &mut [u8], l4: usize) {
    if n.vip.family == FAMILY_V4 {
        f[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&((IPV4_LEN + l4) as u16).to_be_bytes());
        fix_ipv4_checksum(f);
    } else {
        f[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&(l4 as u16).to_be_bytes());
    }
}

/// Every way `good` (a TCP frame with a payload) can be malformed.
fn malformed(n: &Net, good: &[u8]) -> Vec<(String, Vec<u8>)> {
    let off = l4_off(n);
    let l4 = good.len() - off;
    let mut cases = Vec::new();
    for short in [0, 1, 10, TCP_LEN - 1] {
        let mut f = good.to_vec();
        set_l4_len(n, &mut f, short);
        cases.push((format!("IP length says {short} TCP bytes"), f));
    }
    let mut long = good.to_vec();
    set_l4_len(n, &mut long, l4 + 1);
    cases.push(("IP length one byte past the frame".into(), long));
    let mut zero = good.to_vec();
    if n.vip.family == FAMILY_V4 {
        zero[ETH_LEN + 2..ETH_LEN + 4].fill(0);
        fix_ipv4_checksum(&mut zero);
        cases.push(("IPv4 total length 0 on a small packet".into(), zero));
    } else {
        // (payload 0 is covered by the "0 TCP bytes" case above)
    }
    for doff in [0u8, 4] {
        let mut f = good.to_vec();
        f[off + 12] = doff << 4;
        cases.push((format!("data offset {doff}"), f));
    }
    let mut past = good.to_vec();
    past[off + 12] = 15 << 4; // 60 bytes: past the packet
    cases.push(("data offset past the packet".into(), past));
    // Padding after the IP packet makes room in the frame, but the data
    // offset runs past the IP length.
    let mut padded = good.to_vec();
    padded.resize(good.len() + 64, 0);
    padded[off + 12] = (((l4 + 4) / 4) as u8) << 4;
    cases.push((
        "data offset past the IP length, into padding".into(),
        padded,
    ));
    cases
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn tcp_with_bad_ip_length_or_data_offset_passes_untouched_as_malformed() {
    both_families(|n| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.west).unwrap();
            h.egress(&super::packets::syn(&n));
            let before = (h.stat(Stat::Translated), h.stat(Stat::ReverseTranslated));
            let reply = tcp_frame(&n.west, &n.client, TCP_ACK | PSH, b"+PONG\r\n");
            let mut runs = 0;
            for (what, frame) in malformed(&n, &data(&n)) {
                let (rc, out) = h.egress(&frame);
                assert_eq!(rc, TC_ACT_OK, "egress: {what}");
                assert_eq!(out, frame, "egress: {what} was modified");
                runs += 1;
            }
            for (what, frame) in malformed(&n, &reply) {
                for (prog, (rc, out)) in [("tc", h.ingress_tc(&frame)), ("xdp", h.xdp(&frame))] {
                    let pass = if prog == "xdp" { XDP_PASS } else { TC_ACT_OK };
                    assert_eq!(rc, pass, "{prog}: {what}");
                    assert_eq!(out, frame, "{prog}: {what} was modified");
                    runs += 1;
                }
            }
            assert_eq!(
                h.stat(Stat::Malformed),
                runs,
                "each run counts as malformed"
            );
            let after = (h.stat(Stat::Translated), h.stat(Stat::ReverseTranslated));
            assert_eq!(before, after, "nothing malformed was translated");
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn tcp_with_ethernet_padding_or_options_is_still_translated() {
    both_families(|n| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.west).unwrap();
            h.egress(&super::packets::syn(&n));
            let off = l4_off(&n);
            // A bare ACK padded to the 60-byte Ethernet minimum and beyond.
            let mut padded = tcp_frame(&n.client, &n.vip, TCP_ACK, b"");
            let ip_end = padded.len();
            padded.resize(ip_end.max(60) + 8, 0xee);
            // TCP options (12 bytes: NOP NOP timestamp) inside the IP length.
            let mut opts = tcp_frame(
                &n.client,
                &n.vip,
                TCP_ACK,
                &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            );
            opts[off + 12] = 8 << 4;
            let src = if n.vip.family == FAMILY_V4 {
                &opts[ETH_LEN + 12..ETH_LEN + 16]
            } else {
                &opts[ETH_LEN + 8..ETH_LEN + 24]
            };
            let dst = if n.vip.family == FAMILY_V4 {
                &opts[ETH_LEN + 16..ETH_LEN + 20]
            } else {
                &opts[ETH_LEN + 24..ETH_LEN + 40]
            };
            let (src, dst) = (src.to_vec(), dst.to_vec());
            opts[off + 16..off + 18].fill(0);
            let c = redirector_common::csum::tcp_checksum(&src, &dst, &opts[off..]);
            opts[off + 16..off + 18].copy_from_slice(&c.to_be_bytes());
            // Bytes after the rewritten fields that must come out as they went in.
            for (what, frame, kept) in [("padded", padded, ip_end), ("options", opts, off + 20)] {
                let (_, out) = h.egress(&frame);
                let p = verify_checksums(&out).unwrap_or_else(|e| panic!("{what}: {e:?}"));
                assert_eq!(p.dst, n.west, "{what}: not translated");
                assert_eq!(out.len(), frame.len(), "{what}: length");
                assert_eq!(out[kept..], frame[kept..], "{what}: padding/options kept");
            }
            assert_eq!(h.stat(Stat::Malformed), 0);
        })
    });
}

//! ICMP/ICMPv6 errors through the real ingress programs (BPF_PROG_TEST_RUN).
//!
//! ```text
//!  client 198.18.10.2:40000 ── SYN to VIP 198.18.0.100:6379
//!      TC egress DNAT ──────────> west 198.18.2.10:6380
//!  router 198.18.10.1 ── "fragmentation needed" [client -> west:6380] ──> client
//!      XDP / TC ingress ────────> [client -> VIP:6379], checksums fixed
//! ```
//!
//! West listens on another port than the VIP, so the port rewrite is
//! exercised too. Every checksum is checked from scratch
//! (`verify_icmp_checksums`), and the whole frame is compared with the error
//! the router would have sent had there been no DNAT.

use redirector_common::{
    Endpoint, FAMILY_V4, Stat,
    builder::{IcmpKind, icmp_error_frame, refresh_icmp_checksums, verify_icmp_checksums},
    icmp::ICMP_LEN,
    parse::{ETH_LEN, IPV4_LEN, IPV6_LEN, TCP_SYN},
};

use super::packets::{
    Harness, Net, TC_ACT_OK, XDP_PASS, both_families, data, ep, syn, with_programs,
};

/// As much of the offending packet as a Linux router embeds at least.
const EMBED: usize = 548;

fn router(n: &Net) -> Endpoint {
    if n.vip.family == FAMILY_V4 {
        ep("198.18.10.1:0")
    } else {
        ep("[2001:db8:10::1]:0")
    }
}

fn ip_len(n: &Net) -> usize {
    if n.vip.family == FAMILY_V4 {
        IPV4_LEN
    } else {
        IPV6_LEN
    }
}

fn kinds(n: &Net) -> [IcmpKind; 3] {
    IcmpKind::translated(n.vip.family == FAMILY_V4)
}

/// Opens a flow client -> VIP (pinned to west) and returns the data packet
/// as the client sent it and as egress sent it on (IP packets, no
/// Ethernet header).
fn open_flow(h: &mut Harness, n: &Net) -> (Vec<u8>, Vec<u8>) {
    h.maps.set_active(n.vip, n.west).unwrap();
    h.egress(&syn(n));
    let sent = data(n);
    let (_, out) = h.egress(&sent);
    (sent[ETH_LEN..].to_vec(), out[ETH_LEN..].to_vec())
}

/// Both ingress programs on `frame`, with their names and pass verdicts.
fn ingress(h: &Harness, frame: &[u8]) -> [(&'static str, u32, u32, Vec<u8>); 2] {
    let (x, xo) = h.xdp(frame);
    let (t, to) = h.ingress_tc(frame);
    [("xdp", x, XDP_PASS, xo), ("tc", t, TC_ACT_OK, to)]
}

/// Offsets in an error frame: embedded destination address and port.
fn embedded_dst(n: &Net, frame: &[u8]) -> (Vec<u8>, [u8; 2]) {
    let inner = ETH_LEN + ip_len(n) + ICMP_LEN;
    let (off, len) = if n.vip.family == FAMILY_V4 {
        (16, 4)
    } else {
        (24, 16)
    };
    let port = inner + ip_len(n) + 2;
    (
        frame[inner + off..inner + off + len].to_vec(),
        [frame[port], frame[port + 1]],
    )
}

fn outer_src(n: &Net, frame: &[u8]) -> Vec<u8> {
    if n.vip.family == FAMILY_V4 {
        frame[ETH_LEN + 12..ETH_LEN + 16].to_vec()
    } else {
        frame[ETH_LEN + 8..ETH_LEN + 24].to_vec()
    }
}

fn addr(e: &Endpoint) -> Vec<u8> {
    if e.family == FAMILY_V4 {
        e.addr[..4].to_vec()
    } else {
        e.addr.to_vec()
    }
}

/// What the client should get: the error about the packet it sent, with the
/// embedded TCP checksum as the router saw it (it is not restored; see
/// `redirector_common::icmp`), checksums recomputed from scratch.
fn expected(n: &Net, from: &Endpoint, kind: IcmpKind, sent: &[u8], got: &[u8]) -> Vec<u8> {
    let mut want = icmp_error_frame(from, &n.client, kind, sent, EMBED);
    let check = ETH_LEN + ip_len(n) + ICMP_LEN + ip_len(n) + 16;
    want[check..check + 2].copy_from_slice(&got[check..check + 2]);
    refresh_icmp_checksums(&mut want);
    want
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn frag_needed_and_packet_too_big_about_a_translated_flow_carry_the_vip_after_xdp_and_tc() {
    both_families(|n| {
        with_programs(move |h| {
            let (sent, translated) = open_flow(h, &n);
            let mut runs = 0;
            for kind in kinds(&n) {
                let error = icmp_error_frame(&router(&n), &n.client, kind, &translated, EMBED);
                assert_eq!(
                    embedded_dst(&n, &error),
                    (addr(&n.west), n.west.port),
                    "setup: the error names west"
                );
                for (prog, rc, pass, out) in ingress(h, &error) {
                    runs += 1;
                    assert_eq!(rc, pass, "{prog} {kind:?}: verdict");
                    verify_icmp_checksums(&out)
                        .unwrap_or_else(|e| panic!("{prog} {kind:?}: bad checksum {e:?}"));
                    let (a, p) = embedded_dst(&n, &out);
                    assert_eq!(a, addr(&n.vip), "{prog} {kind:?}: embedded dst address");
                    assert_eq!(p, n.vip.port, "{prog} {kind:?}: embedded dst port");
                    assert_eq!(
                        outer_src(&n, &out),
                        addr(&router(&n)),
                        "{prog} {kind:?}: the router's address must stay"
                    );
                    let want = expected(&n, &router(&n), kind, &sent, &out);
                    assert_eq!(out, want, "{prog} {kind:?}: frame");
                }
            }
            assert_eq!(h.stat(Stat::IcmpReverseTranslated), runs);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn error_sent_by_the_member_itself_appears_to_come_from_the_vip() {
    both_families(|n| {
        with_programs(move |h| {
            let (sent, translated) = open_flow(h, &n);
            let kind = kinds(&n)[0];
            let error = icmp_error_frame(&n.west, &n.client, kind, &translated, EMBED);
            for (prog, rc, pass, out) in ingress(h, &error) {
                assert_eq!(rc, pass, "{prog}");
                verify_icmp_checksums(&out)
                    .unwrap_or_else(|e| panic!("{prog}: bad checksum {e:?}"));
                assert_eq!(outer_src(&n, &out), addr(&n.vip), "{prog}: outer source");
                assert_eq!(embedded_dst(&n, &out).0, addr(&n.vip), "{prog}: embedded");
                assert_eq!(out, expected(&n, &n.vip, kind, &sent, &out), "{prog}");
            }
            assert_eq!(h.stat(Stat::IcmpReverseTranslated), 2);
        })
    });
}

/// ICMP frames that are not errors about a flow we translated, or are cut
/// short, with whether they count as malformed.
fn not_ours(n: &Net, sent: &[u8], translated: &[u8]) -> Vec<(String, Vec<u8>, bool)> {
    let v4 = n.vip.family == FAMILY_V4;
    let kind = kinds(n)[0];
    let err = |embedded: &[u8], limit: usize| {
        icmp_error_frame(&router(n), &n.client, kind, embedded, limit)
    };
    let inner = ETH_LEN + ip_len(n) + ICMP_LEN;
    let mut cases = Vec::new();
    // About other flows.
    let mut other_port = translated.to_vec();
    let sport = ip_len(n);
    other_port[sport..sport + 2].copy_from_slice(&40001u16.to_be_bytes());
    cases.push(("another client port".into(), err(&other_port, EMBED), false));
    let direct = redirector_common::builder::tcp_frame(&n.client, &n.east, TCP_SYN, b"");
    cases.push((
        "a direct flow to east".into(),
        err(&direct[ETH_LEN..], EMBED),
        false,
    ));
    cases.push(("the untranslated packet".into(), err(sent, EMBED), false));
    // Not errors, or not about plain TCP.
    for t in if v4 {
        [0u8, 8, 5, 12]
    } else {
        [128u8, 129, 4, 135]
    } {
        let mut f = err(translated, EMBED);
        f[ETH_LEN + ip_len(n)] = t;
        f[ETH_LEN + ip_len(n) + 1] = 0;
        refresh_icmp_checksums(&mut f);
        cases.push((format!("ICMP type {t}"), f, false));
    }
    let mut udp = err(translated, EMBED);
    udp[inner + if v4 { 9 } else { 6 }] = 17;
    refresh_icmp_checksums(&mut udp);
    cases.push(("about UDP".into(), udp, false));
    if v4 {
        let mut opts = err(translated, EMBED);
        opts[inner] = 0x46;
        refresh_icmp_checksums(&mut opts);
        cases.push(("embedded IPv4 options".into(), opts, false));
        let mut frag = err(translated, EMBED);
        frag[inner + 6] |= 0x20;
        refresh_icmp_checksums(&mut frag);
        cases.push(("embedded first fragment".into(), frag, false));
    } else {
        let mut ext = err(translated, EMBED);
        ext[inner + 6] = 60;
        refresh_icmp_checksums(&mut ext);
        cases.push(("embedded extension header".into(), ext, false));
    }
    // Cut short: fewer than the embedded IP header + 8 bytes of TCP.
    for limit in 0..ip_len(n) + 8 {
        cases.push((
            format!("embeds {limit} bytes"),
            err(translated, limit),
            true,
        ));
    }
    // The frame is shorter than the outer IP length says.
    let full = err(translated, EMBED);
    for len in [inner + 4, inner + ip_len(n) + 7, full.len() - 1] {
        cases.push((format!("frame cut at {len}"), full[..len].to_vec(), true));
    }
    // The outer IP length ends inside the embedded ports; the rest is padding.
    let mut short = full.clone();
    let cut = (ip_len(n) + ICMP_LEN + ip_len(n) + 4) as u16;
    if v4 {
        short[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&cut.to_be_bytes());
    } else {
        short[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&(cut - IPV6_LEN as u16).to_be_bytes());
    }
    refresh_icmp_checksums(&mut short);
    cases.push(("IP length cuts the ports".into(), short, true));
    cases
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn icmp_errors_about_other_flows_and_cut_short_ones_pass_byte_for_byte() {
    both_families(|n| {
        with_programs(move |h| {
            let (sent, translated) = open_flow(h, &n);
            let mut malformed = 0;
            for (what, frame, broken) in not_ours(&n, &sent, &translated) {
                for (prog, rc, pass, out) in ingress(h, &frame) {
                    assert_eq!(rc, pass, "{prog}: {what}: verdict");
                    assert_eq!(out, frame, "{prog}: {what} was modified");
                    malformed += u64::from(broken);
                }
            }
            assert_eq!(h.stat(Stat::IcmpReverseTranslated), 0);
            assert_eq!(h.stat(Stat::Malformed), malformed);
        })
    });
}

//! The real kernel programs run with BPF_PROG_TEST_RUN on crafted packets.
//! Each test runs in its own network namespace (so FIB lookups see only what
//! the test set up) with its own pinned maps.

use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun, TestRunOptions, TestRunResult, Xdp},
};
use redirector::datapath::{EGRESS_PROGRAM, INGRESS_PROGRAM, Maps, XDP_PROGRAM, load_programs};
use redirector_common::{
    DOWN_UNHEALTHY, Endpoint, FLOW_STEERED, FlowKey, Stat,
    builder::{CLIENT_MAC, GATEWAY_MAC, tcp_frame, verify_checksums},
    parse::{ETH_LEN, TCP_ACK, TCP_RST, TCP_SYN},
};

use crate::{netns::NetNs, pins::PinDir, unique};

pub(super) const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;
pub(super) const XDP_PASS: u32 = 2;
pub(super) const PSH: u8 = 0x08;

pub(super) struct Harness {
    pub(super) ebpf: Ebpf,
    pub(super) maps: Maps,
    /// The pin directory the programs' maps live in.
    pub(super) maps_path: std::path::PathBuf,
}

#[derive(Clone, Copy)]
pub(super) struct Net {
    pub(super) client: Endpoint,
    pub(super) vip: Endpoint,
    pub(super) east: Endpoint,
    pub(super) west: Endpoint,
}

pub(super) fn ep(s: &str) -> Endpoint {
    Endpoint::from(s.parse::<std::net::SocketAddr>().unwrap())
}

pub(super) fn v4() -> Net {
    Net {
        client: ep("198.18.10.2:40000"),
        vip: ep("198.18.0.100:6379"),
        east: ep("198.18.1.10:6379"),
        west: ep("198.18.2.10:6380"),
    }
}

pub(super) fn v6() -> Net {
    Net {
        client: ep("[2001:db8:10::2]:40000"),
        vip: ep("[2001:db8:100::100]:6379"),
        east: ep("[2001:db8:1::10]:6379"),
        west: ep("[2001:db8:2::10]:6380"),
    }
}

/// Runs `body` with freshly loaded programs, inside a new network namespace.
pub(super) fn with_programs(body: impl FnOnce(&mut Harness) + Send + 'static) {
    let ns = NetNs::new(&unique("pkt"));
    let pins = PinDir::new("pkt");
    let path = pins.path.clone();
    ns.run(move || {
        body(&mut Harness::load(&path));
    });
}

impl Harness {
    /// Loads the programs with their maps pinned under `path`.
    pub(super) fn load(path: &std::path::Path) -> Self {
        Self {
            ebpf: load_programs(path, 1024).expect("load programs"),
            maps: Maps::open(path).expect("open maps"),
            maps_path: path.into(),
        }
    }

    pub(super) fn run_tc(&self, name: &str, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog: &SchedClassifier = self.ebpf.program(name).unwrap().try_into().unwrap();
        run(prog, frame)
    }
    pub(super) fn egress(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.run_tc(EGRESS_PROGRAM, frame)
    }
    pub(super) fn ingress_tc(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.run_tc(INGRESS_PROGRAM, frame)
    }
    pub(super) fn xdp(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog: &Xdp = self.ebpf.program(XDP_PROGRAM).unwrap().try_into().unwrap();
        run(prog, frame)
    }
    pub(super) fn stat(&self, s: Stat) -> u64 {
        self.maps.stats().unwrap().get(s)
    }
}

fn run<P>(prog: &P, frame: &[u8]) -> (u32, Vec<u8>)
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let r = crate::testrun::run(prog, frame, 1, None).unwrap_or_else(|e| {
        panic!(
            "BPF_PROG_TEST_RUN of {} on {} bytes: {e:?}",
            std::any::type_name::<P>(),
            frame.len()
        )
    });
    (r.verdict, r.packet)
}

pub(super) fn dst_of(frame: &[u8]) -> Endpoint {
    verify_checksums(frame).expect("valid checksums").dst
}

pub(super) fn src_of(frame: &[u8]) -> Endpoint {
    verify_checksums(frame).expect("valid checksums").src
}

pub(super) fn syn(n: &Net) -> Vec<u8> {
    tcp_frame(&n.client, &n.vip, TCP_SYN, b"")
}

pub(super) fn data(n: &Net) -> Vec<u8> {
    tcp_frame(&n.client, &n.vip, TCP_ACK | PSH, b"*1\r\n$4\r\nPING\r\n")
}

pub(super) fn both_families(test: fn(Net)) {
    test(v4());
    test(v6());
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn syn_to_vip_is_rewritten_to_active_member_with_valid_checksums() {
    both_families(|n| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            let (rc, out) = h.egress(&syn(&n));
            // No route in this namespace: the rewritten packet keeps its path.
            assert_eq!(rc, TC_ACT_OK);
            let p = verify_checksums(&out).expect("checksums valid after rewrite");
            assert_eq!(p.dst, n.east);
            assert_eq!(p.src, n.client);
            assert_eq!(out.len(), syn(&n).len());
            let flows = h.maps.flows().unwrap();
            assert_eq!(flows.len(), 1);
            assert_eq!(
                flows[0].flow,
                FlowKey {
                    client: n.client,
                    vip: n.vip
                }
            );
            assert_eq!(flows[0].assignment.member, n.east);
            assert_eq!(h.maps.reverse_entries().unwrap(), 1);
            assert_eq!(h.stat(Stat::Translated), 1);
            assert_eq!(h.stat(Stat::NewFlows), 1);
            assert_eq!(h.stat(Stat::FibFallback), 1);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn payload_packet_rewrite_keeps_payload_and_checksums() {
    both_families(|n| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.west).unwrap();
            let input = data(&n);
            let (_, out) = h.egress(&input);
            assert_eq!(dst_of(&out), n.west);
            let plen = b"*1\r\n$4\r\nPING\r\n".len();
            assert_eq!(out[out.len() - plen..], input[input.len() - plen..]);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn established_flow_stays_on_member_after_flip() {
    both_families(|n| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            assert_eq!(dst_of(&h.egress(&syn(&n)).1), n.east);
            let g = h.maps.set_active(n.vip, n.west).unwrap();
            assert_eq!(g, 2, "a flip bumps the generation");
            // The open connection drains on east ...
            assert_eq!(dst_of(&h.egress(&data(&n)).1), n.east);
            // ... while a new connection from another port goes west.
            let mut other = n;
            other.client.port = 40001u16.to_be_bytes();
            assert_eq!(dst_of(&h.egress(&syn(&other)).1), n.west);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn syn_reusing_a_source_port_takes_the_active_member() {
    both_families(|n| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.egress(&syn(&n));
            h.maps.set_active(n.vip, n.west).unwrap();
            assert_eq!(dst_of(&h.egress(&syn(&n)).1), n.west);
            assert_eq!(dst_of(&h.egress(&data(&n)).1), n.west);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn flow_on_down_member_is_steered_to_active_member() {
    both_families(|n| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.egress(&syn(&n));
            h.maps.set_active(n.vip, n.west).unwrap();
            h.maps.mark_down(n.east, DOWN_UNHEALTHY).unwrap();
            assert_eq!(dst_of(&h.egress(&data(&n)).1), n.west);
            assert_eq!(h.stat(Stat::Steered), 1);
            let f = h.maps.flows().unwrap();
            assert_eq!(f[0].assignment.member, n.west);
            assert_eq!(f[0].assignment.flags, FLOW_STEERED);
            // West's RST for the steered flow is translated back to the VIP,
            // so the client's socket accepts it and fails fast.
            let rst = tcp_frame(&n.west, &n.client, TCP_RST | TCP_ACK, b"");
            let (rc, out) = h.ingress_tc(&rst);
            assert_eq!(rc, TC_ACT_OK);
            assert_eq!(src_of(&out), n.vip);
            // Marked up again: nothing more is steered.
            assert!(h.maps.mark_up(&n.east).unwrap());
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn flow_on_down_active_member_is_not_steered_when_all_are_down() {
    both_families(|n| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.egress(&syn(&n));
            // Fail static: the active member is itself down; keep it.
            h.maps.mark_down(n.east, DOWN_UNHEALTHY).unwrap();
            h.maps.mark_down(n.west, DOWN_UNHEALTHY).unwrap();
            assert_eq!(dst_of(&h.egress(&data(&n)).1), n.east);
            assert_eq!(h.stat(Stat::Steered), 0);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn replies_are_rewritten_back_to_vip_by_tc_and_xdp() {
    both_families(|n| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.egress(&syn(&n));
            let reply = tcp_frame(&n.east, &n.client, TCP_SYN | TCP_ACK, b"");
            for (name, (rc, out)) in [("tc", h.ingress_tc(&reply)), ("xdp", h.xdp(&reply))] {
                let want = if name == "tc" { TC_ACT_OK } else { XDP_PASS };
                assert_eq!(rc, want, "{name}");
                let p = verify_checksums(&out).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(p.src, n.vip, "{name}");
                assert_eq!(p.dst, n.client, "{name}");
            }
            let payload = tcp_frame(&n.east, &n.client, TCP_ACK | PSH, b"+PONG\r\n");
            for (rc, out) in [h.ingress_tc(&payload), h.xdp(&payload)] {
                assert!(rc == TC_ACT_OK || rc == XDP_PASS);
                assert_eq!(src_of(&out), n.vip);
            }
            assert_eq!(h.stat(Stat::ReverseTranslated), 4);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn direct_syn_to_a_member_clears_an_old_vip_flows_reply_entry() {
    both_families(|n| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            // A VIP connection from the client's port, long closed; its
            // reply entry is still in the LRU map.
            h.egress(&syn(&n));
            assert_eq!(h.maps.reverse_entries().unwrap(), 1);
            // Now the same port connects to east directly.
            let direct = tcp_frame(&n.client, &n.east, TCP_SYN, b"");
            let (rc, out) = h.egress(&direct);
            assert_eq!(rc, TC_ACT_OK);
            assert_eq!(out, direct, "a direct SYN passes byte for byte");
            assert_eq!(h.maps.reverse_entries().unwrap(), 0);
            assert_eq!(h.stat(Stat::StaleRepliesRemoved), 1);
            // East's SYN-ACK keeps east's address.
            let reply = tcp_frame(&n.east, &n.client, TCP_SYN | TCP_ACK, b"");
            for (rc, out) in [h.ingress_tc(&reply), h.xdp(&reply)] {
                assert!(rc == TC_ACT_OK || rc == XDP_PASS);
                assert_eq!(out, reply);
            }
        })
    });
}

/// Frames that are not ours, for every program.
fn not_ours(n: &Net) -> Vec<(&'static str, Vec<u8>)> {
    let mut other_port = n.vip;
    other_port.port = 6380u16.to_be_bytes();
    let mut other_addr = n.vip;
    other_addr.addr[3] ^= 1;
    let base = syn(n);
    let mut cases = vec![
        (
            "other port",
            tcp_frame(&n.client, &other_port, TCP_SYN, b""),
        ),
        (
            "other address",
            tcp_frame(&n.client, &other_addr, TCP_SYN, b""),
        ),
        (
            "reply from a non-member",
            tcp_frame(&other_addr, &n.client, TCP_ACK, b"x"),
        ),
    ];
    let mut arp = base.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    cases.push(("ARP", arp));
    if n.vip.family == redirector_common::FAMILY_V4 {
        let mut udp = base.clone();
        udp[ETH_LEN + 9] = 17;
        cases.push(("UDP", udp));
        let mut opts = base.clone();
        opts[ETH_LEN] = 0x46;
        cases.push(("IPv4 options", opts));
        let mut frag = base.clone();
        frag[ETH_LEN + 6] = 0x20; // more fragments
        cases.push(("IPv4 first fragment", frag));
        let mut later = base.clone();
        later[ETH_LEN + 7] = 0x10; // offset 128
        cases.push(("IPv4 later fragment", later));
    } else {
        let mut udp = base.clone();
        udp[ETH_LEN + 6] = 17;
        cases.push(("UDP", udp));
        for (what, nh) in [
            ("hop-by-hop", 0u8),
            ("routing", 43),
            ("fragment", 44),
            ("dest opts", 60),
        ] {
            let mut ext = base.clone();
            ext[ETH_LEN + 6] = nh;
            cases.push((what, ext));
        }
    }
    // Every truncation of a VIP SYN. TEST_RUN rejects frames of an Ethernet
    // header alone, so start one byte into the IP header (and see below).
    for len in ETH_LEN + 1..base.len() {
        cases.push(("truncated", base[..len].to_vec()));
    }
    cases
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn everything_not_ours_passes_byte_for_byte_unchanged() {
    both_families(|n| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            // A live flow, so the reverse map has something that could match.
            h.egress(&syn(&n));
            let l4_off = syn(&n).len() - redirector_common::parse::TCP_LEN;
            for (what, frame) in not_ours(&n) {
                let mut results = vec![("xdp", h.xdp(&frame))];
                // For skb programs TEST_RUN itself refuses (EINVAL) frames
                // without a whole IP header, as the stack never hands such
                // an skb to TC; XDP gets every length.
                if frame.len() >= l4_off || what != "truncated" {
                    results.push(("egress", h.egress(&frame)));
                    results.push(("tc ingress", h.ingress_tc(&frame)));
                }
                for (prog, (rc, out)) in results {
                    let want = if prog == "xdp" { XDP_PASS } else { TC_ACT_OK };
                    assert_eq!(rc, want, "{prog}: {what} (len {})", frame.len());
                    assert_eq!(
                        out,
                        frame,
                        "{prog}: {what} (len {}) was modified",
                        frame.len()
                    );
                }
            }
            assert!(h.stat(Stat::Malformed) > 0);
            assert!(h.stat(Stat::Passed) > 0);
            assert_eq!(h.stat(Stat::Translated), 1, "only the one SYN was ours");
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN and veths in a network namespace"]
fn egress_follows_the_fib_to_the_members_next_hop() {
    // fib0 is the interface the packet leaves by. East is routed via a
    // neighbour on fib1 (another interface: redirect), west via one on fib0
    // (same interface: new MACs, continue). Forwarding is on, as the kernel
    // requires for FIB lookups from BPF.
    let ns = NetNs::new(&unique("fib"));
    ns.exec(&[
        "ip", "link", "add", "fib0", "type", "veth", "peer", "name", "fib1",
    ]);
    for (dev, net, mac) in [
        ("fib0", "198.18.20", "02:aa:00:00:00:20"),
        ("fib1", "198.18.21", "02:aa:00:00:00:21"),
    ] {
        ns.exec(&["ip", "link", "set", dev, "up"]);
        ns.exec(&["ip", "addr", "add", &format!("{net}.1/24"), "dev", dev]);
        ns.exec(&[
            "ip",
            "neigh",
            "add",
            &format!("{net}.254"),
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }
    ns.exec(&[
        "ip",
        "route",
        "add",
        "198.18.1.0/24",
        "via",
        "198.18.21.254",
    ]);
    ns.exec(&[
        "ip",
        "route",
        "add",
        "198.18.2.0/24",
        "via",
        "198.18.20.254",
    ]);
    ns.exec(&["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"]);
    let mac = |dev: &str| -> Vec<u8> {
        ns.exec(&["cat", &format!("/sys/class/net/{dev}/address")])
            .trim()
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    };
    let (mac0, mac1) = (mac("fib0"), mac("fib1"));
    let ifindex0: u32 = ns
        .exec(&["cat", "/sys/class/net/fib0/ifindex"])
        .trim()
        .parse()
        .unwrap();
    let pins = PinDir::new("fib");
    let path = pins.path.clone();
    ns.run(move || {
        let mut h = Harness::load(&path);
        let prog: &SchedClassifier = h.ebpf.program(EGRESS_PROGRAM).unwrap().try_into().unwrap();
        // struct __sk_buff up to and including `ifindex` (offset 40).
        let mut ctx = [0u8; 44];
        ctx[40..44].copy_from_slice(&ifindex0.to_ne_bytes());
        let egress_on_fib0 = |frame: &[u8]| {
            let r = crate::testrun::run(prog, frame, 1, Some(&ctx))
                .expect("BPF_PROG_TEST_RUN with ctx");
            (r.verdict, r.packet)
        };
        let n = v4();
        h.maps.set_active(n.vip, n.east).unwrap();
        let (rc, out) = egress_on_fib0(&syn(&n));
        assert_eq!(rc, TC_ACT_REDIRECT, "east is behind fib1");
        assert_eq!(dst_of(&out), n.east);
        assert_eq!(out[0..6], [0x02, 0xaa, 0, 0, 0, 0x21]);
        assert_eq!(out[6..12], mac1[..]);

        h.maps.set_active(n.vip, ep("198.18.2.10:6379")).unwrap();
        let mut other = n;
        other.client.port = 40001u16.to_be_bytes();
        let (rc, out) = egress_on_fib0(&syn(&other));
        assert_eq!(rc, TC_ACT_OK, "west is behind fib0 itself");
        assert_eq!(out[0..6], [0x02, 0xaa, 0, 0, 0, 0x20]);
        assert_eq!(out[6..12], mac0[..]);
        assert_ne!(out[0..6], GATEWAY_MAC);
        assert_ne!(out[6..12], CLIENT_MAC);
        assert_eq!(h.stat(Stat::FibFallback), 0);
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn reloading_programs_adopts_pinned_state_without_reset() {
    let ns = NetNs::new(&unique("adopt"));
    let pins = PinDir::new("adopt");
    let path = pins.path.clone();
    ns.run(move || {
        let n = v4();
        let mut h = Harness::load(&path);
        h.maps.set_active(n.vip, n.east).unwrap();
        h.egress(&syn(&n));
        drop(h);
        // A new load (as by a restarted daemon) reuses the pinned maps.
        let h = Harness::load(&path);
        assert_eq!(h.maps.active(&n.vip).unwrap().unwrap().member, n.east);
        assert_eq!(h.maps.flows().unwrap().len(), 1);
        assert_eq!(h.stat(Stat::Translated), 1);
        assert_eq!(dst_of(&h.egress(&data(&n)).1), n.east);
    });
}

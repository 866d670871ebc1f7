//! The flow lifecycle in the kernel programs (BPF_PROG_TEST_RUN): entries
//! leave both maps at a flow's RST or last ACK, churn of finished flows
//! never evicts an open one, and a lost reply entry is recovered only when
//! the answer is unambiguous.
//!
//! ```text
//!  client 198.18.10.2:40000 ──egress──> VIP 198.18.0.100:6379 => east
//!                           <─ingress── east 198.18.1.10:6379  => VIP
//! ```

use std::{net::SocketAddr, process::Command};

use redirector_common::{
    FLOW_RECOVERED, Stat,
    builder::tcp_frame,
    flow::{FIN_FROM_CLIENT, FLOW_CLOSING},
    parse::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

use super::packets::{
    Harness, Net, PSH, TC_ACT_OK, XDP_PASS, both_families, dst_of, src_of, syn, with_programs,
};

const FIN_ACK: u8 = TCP_FIN | TCP_ACK;

/// Which program carries replies in a test.
#[derive(Clone, Copy, Debug)]
enum Ingress {
    Tc,
    Xdp,
}

impl Harness {
    fn reply(&self, via: Ingress, frame: &[u8]) -> Vec<u8> {
        let (rc, out) = match via {
            Ingress::Tc => self.ingress_tc(frame),
            Ingress::Xdp => self.xdp(frame),
        };
        assert!(rc == TC_ACT_OK || rc == XDP_PASS, "{via:?} verdict {rc}");
        out
    }

    fn open(&self, n: &Net, via: Ingress) {
        assert_eq!(dst_of(&self.egress(&syn(n)).1), n.east);
        let synack = tcp_frame(&n.east, &n.client, TCP_SYN | TCP_ACK, b"");
        assert_eq!(src_of(&self.reply(via, &synack)), n.vip);
    }

    fn entries(&self) -> (usize, usize) {
        (
            self.maps.flows().unwrap().len(),
            self.maps.reverse_entries().unwrap(),
        )
    }
}

fn each_ingress(test: fn(Net, Ingress)) {
    for via in [Ingress::Tc, Ingress::Xdp] {
        for n in [super::packets::v4(), super::packets::v6()] {
            test(n, via);
        }
    }
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn client_closing_first_leaves_both_maps_at_its_last_ack() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.open(&n, via);
            assert_eq!(h.entries(), (1, 1));
            let fin = tcp_frame(&n.client, &n.vip, FIN_ACK, b"");
            assert_eq!(dst_of(&h.egress(&fin).1), n.east);
            let f = h.maps.flows().unwrap();
            assert_eq!(f[0].state, FIN_FROM_CLIENT, "client FIN recorded");
            let target = h.maps.reply_target(n.east, n.client).unwrap().unwrap();
            assert_eq!(target.state, FIN_FROM_CLIENT, "reply entry knows it too");
            let member_fin = tcp_frame(&n.east, &n.client, FIN_ACK, b"");
            assert_eq!(src_of(&h.reply(via, &member_fin)), n.vip);
            assert_eq!(h.maps.flows().unwrap()[0].state, FLOW_CLOSING);
            assert_eq!(h.entries(), (1, 1), "kept until the last ACK");
            let last_ack = tcp_frame(&n.client, &n.vip, TCP_ACK, b"");
            assert_eq!(
                dst_of(&h.egress(&last_ack).1),
                n.east,
                "last ACK translated"
            );
            assert_eq!(h.entries(), (0, 0), "both entries gone");
            assert_eq!(h.stat(Stat::FlowsClosed), 1);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn member_closing_first_leaves_both_maps_at_its_last_ack() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.open(&n, via);
            let member_fin = tcp_frame(&n.east, &n.client, FIN_ACK, b"");
            assert_eq!(src_of(&h.reply(via, &member_fin)), n.vip);
            // The client acknowledges, sends more (half-close), then its FIN.
            let more = tcp_frame(&n.client, &n.vip, TCP_ACK | PSH, b"+x\r\n");
            assert_eq!(dst_of(&h.egress(&more).1), n.east);
            let fin = tcp_frame(&n.client, &n.vip, FIN_ACK, b"");
            assert_eq!(dst_of(&h.egress(&fin).1), n.east);
            assert_eq!(h.entries(), (1, 1));
            let last_ack = tcp_frame(&n.east, &n.client, TCP_ACK, b"");
            assert_eq!(
                src_of(&h.reply(via, &last_ack)),
                n.vip,
                "last ACK translated"
            );
            assert_eq!(h.entries(), (0, 0));
            assert_eq!(h.stat(Stat::FlowsClosed), 1);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn rst_from_either_side_removes_the_flow_after_translating_it() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.open(&n, via);
            let rst = tcp_frame(&n.client, &n.vip, TCP_RST | TCP_ACK, b"");
            assert_eq!(dst_of(&h.egress(&rst).1), n.east, "client RST translated");
            assert_eq!(h.entries(), (0, 0));
            h.open(&n, via);
            let rst = tcp_frame(&n.east, &n.client, TCP_RST | TCP_ACK, b"");
            assert_eq!(src_of(&h.reply(via, &rst)), n.vip, "member RST translated");
            assert_eq!(h.entries(), (0, 0));
            assert_eq!(h.stat(Stat::FlowsReset), 2);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn a_late_fin_of_an_unknown_flow_starts_closing_and_is_swept_not_kept_open() {
    both_families(|n| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            let fin = tcp_frame(&n.client, &n.vip, FIN_ACK, b"");
            assert_eq!(dst_of(&h.egress(&fin).1), n.east);
            assert_eq!(h.stat(Stat::FlowMisses), 1);
            let f = h.maps.flows().unwrap();
            assert_eq!(f[0].state, FLOW_CLOSING, "never counted as open");
            let ack = tcp_frame(&n.east, &n.client, TCP_ACK, b"");
            assert_eq!(src_of(&h.reply(Ingress::Tc, &ack)), n.vip);
            assert_eq!(h.entries(), (0, 0), "its ACK ended it");
        })
    });
}

/// 20 x the table size of short connections (SYN, SYN-ACK, FIN, FIN, ACK)
/// through the VIP while one connection stays open and idle: the open one
/// keeps both entries. With LRU eviction as the only lifecycle, the idle
/// flow is the coldest entry and goes first.
#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn churn_of_short_connections_never_evicts_an_open_idle_flow() {
    with_programs(|h| {
        let n = super::packets::v4();
        h.maps.set_active(n.vip, n.east).unwrap();
        let mut idle = n;
        idle.client.port = 30000u16.to_be_bytes();
        h.open(&idle, Ingress::Xdp);
        let entries = 1024; // with_programs's conntrack_entries
        for i in 0..20 * entries {
            let mut c = n;
            c.client.port = (32768 + (i % 28000) as u16).to_be_bytes();
            h.open(&c, Ingress::Xdp);
            h.egress(&tcp_frame(&c.client, &c.vip, FIN_ACK, b""));
            h.reply(Ingress::Xdp, &tcp_frame(&c.east, &c.client, FIN_ACK, b""));
            h.egress(&tcp_frame(&c.client, &c.vip, TCP_ACK, b""));
        }
        assert_eq!(h.stat(Stat::FlowsClosed), 20 * entries as u64);
        let late = tcp_frame(&idle.east, &idle.client, TCP_ACK | PSH, b"+message\r\n");
        assert_eq!(
            src_of(&h.reply(Ingress::Xdp, &late)),
            n.vip,
            "the idle flow's reply is still translated"
        );
        assert_eq!(h.entries(), (1, 1), "only the open flow is left");
        assert_eq!(h.stat(Stat::FlowMisses), 0);
    });
}

/// Adds the client and VIP addresses to `lo` and returns a socket on the
/// client endpoint connected to the VIP (and the listener it reached), so
/// the kernel's socket table has what a real VIP connection leaves there.
fn connect_through_lo(n: &Net) -> (socket2::Socket, std::net::TcpListener) {
    let (c, v): (SocketAddr, SocketAddr) = (n.client.socket_addr(), n.vip.socket_addr());
    for a in [c.ip(), v.ip()] {
        let (plen, dad) = if a.is_ipv4() {
            ("32", None)
        } else {
            ("128", Some("nodad"))
        };
        let ok = Command::new("ip")
            .args(["addr", "add", &format!("{a}/{plen}"), "dev", "lo"])
            .args(dad)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip addr add {a}");
    }
    assert!(
        Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success()
    );
    let listener = std::net::TcpListener::bind(v).expect("listen on the VIP");
    let domain = if c.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    s.bind(&c.into()).expect("bind the client port");
    s.connect(&v.into()).expect("connect to the VIP");
    (s, listener)
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn lost_reply_entry_is_recovered_only_for_a_socket_connected_to_the_one_vip() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            let _conn = connect_through_lo(&n);
            h.maps.set_active(n.vip, n.east).unwrap();
            let reply = tcp_frame(&n.east, &n.client, TCP_ACK | PSH, b"+PONG\r\n");
            // Unknown member: a direct connection's reply, untouched.
            assert_eq!(h.reply(via, &reply), reply, "no MEMBER_VIPS entry");
            h.maps.set_member_vip(n.east, n.vip, 1).unwrap();
            // A client port with no socket to the VIP (the daemon's own
            // check, say) is left alone.
            let mut direct = n;
            direct.client.port = 40001u16.to_be_bytes();
            let other = tcp_frame(&n.east, &direct.client, TCP_ACK | PSH, b"+PONG\r\n");
            assert_eq!(
                h.reply(via, &other),
                other,
                "no socket connected to the VIP"
            );
            // The connected socket: recovered, and both entries re-created.
            assert_eq!(src_of(&h.reply(via, &reply)), n.vip);
            assert_eq!(h.stat(Stat::RepliesRecovered), 1);
            let t = h.maps.reply_target(n.east, n.client).unwrap().unwrap();
            assert_eq!(t.vip, n.vip);
            let f = h.maps.flows().unwrap();
            assert_eq!(f.len(), 1);
            assert_eq!(
                f[0].assignment.member, n.east,
                "flow stays on the member that replied"
            );
            assert_eq!(f[0].assignment.flags, FLOW_RECOVERED);
            // Behind two VIPs: ambiguous, counted, untouched.
            assert!(h.maps.remove_member_vip(&n.east).unwrap());
            h.maps.set_member_vip(n.east, n.vip, 2).unwrap();
            h.egress(&tcp_frame(&n.client, &n.vip, TCP_RST | TCP_ACK, b""));
            assert_eq!(h.entries(), (0, 0));
            assert_eq!(h.reply(via, &reply), reply, "ambiguous member");
            assert_eq!(h.stat(Stat::RepliesAmbiguous), 1);
        })
    });
}

/// The daemon's sweep (`FlowTable::sweep`) on entries the real programs
/// wrote: it counts open and closing flows, removes a closing flow whose
/// last ACK never came after the close lifetime, and an open one only
/// after the idle lifetime, both entries each time.
#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn sweep_removes_closing_flows_after_close_and_open_ones_after_idle_lifetime() {
    use redirector::datapath::{FlowTable, Lifetimes, clock::Jiffies};
    with_programs(|h| {
        let n = super::packets::v4();
        h.maps.set_active(n.vip, n.east).unwrap();
        let mut closing = n;
        closing.client.port = 40001u16.to_be_bytes();
        h.open(&n, Ingress::Tc);
        h.open(&closing, Ingress::Tc);
        h.egress(&tcp_frame(&closing.client, &closing.vip, FIN_ACK, b""));
        h.reply(
            Ingress::Tc,
            &tcp_frame(&closing.east, &closing.client, FIN_ACK, b""),
        );
        // ... and its last ACK is lost.
        let pins = h.maps_path.clone();
        let mut table = FlowTable::open(&pins).expect("open the flow table");
        assert_eq!(table.capacity(), 1024);
        let now = Jiffies::calibrate(std::time::Duration::from_millis(20))
            .unwrap()
            .now()
            .unwrap();
        let life = Lifetimes {
            idle: 100_000,
            close: 1_000,
        };
        let s = table.sweep(now, life).unwrap();
        assert_eq!((s.open, s.closing, s.replies), (1, 1, 2), "{s:?}");
        assert_eq!(s.removed_closing + s.removed_idle, 0);
        let s = table.sweep(now + 1_001 + 100, life).unwrap();
        assert_eq!((s.open, s.closing, s.removed_closing), (1, 0, 1), "{s:?}");
        assert_eq!(h.entries(), (1, 1), "the closing flow's entries are gone");
        let s = table.sweep(now + 100_001 + 100, life).unwrap();
        assert_eq!((s.open, s.removed_idle), (0, 1), "{s:?}");
        assert_eq!(h.entries(), (0, 0));
    });
}

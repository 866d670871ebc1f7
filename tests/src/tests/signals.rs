//! Reactive signals in the kernel programs (BPF_PROG_TEST_RUN): what the
//! application's own traffic says about a member is counted in its
//! `MEMBER_SIGNALS` entry and sent, rate-limited, to `SIGNAL_EVENTS`;
//! the packets themselves come out exactly as without signals.
//!
//! ```text
//!  client 198.18.10.2:40000 ──egress──> VIP 198.18.0.100:6379 => east
//!                           <─ingress── east 198.18.1.10:6379  => VIP
//!  router 198.18.10.1 ── ICMP error [client -> east] ──> client
//! ```

use std::time::Instant;

use redirector::datapath::{Maps, SignalEvents, load_programs_with};
use redirector_common::{
    DOWN_UNHEALTHY, Endpoint, FAMILY_V4, Stat,
    builder::{IcmpKind, icmp_error_frame, tcp_frame},
    icmp::{ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED, ICMPV6_DEST_UNREACH, ICMPV6_TIME_EXCEED},
    parse::{ETH_LEN, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    signal::{MemberSignals, OBSERVE_L4, OBSERVE_L7, SignalEvent, SignalKind},
};

use super::packets::{
    Harness, Net, PSH, TC_ACT_OK, XDP_PASS, dst_of, ep, src_of, syn, v4, v6, with_programs,
};
use crate::{netns::NetNs, pins::PinDir, unique};

const RST_ACK: u8 = TCP_RST | TCP_ACK;

/// Which program carries replies in a test.
#[derive(Clone, Copy, Debug)]
enum Ingress {
    Tc,
    Xdp,
}

fn each_ingress(test: fn(Net, Ingress)) {
    for via in [Ingress::Tc, Ingress::Xdp] {
        for n in [v4(), v6()] {
            test(n, via);
        }
    }
}

impl Harness {
    fn reply_via(&self, via: Ingress, frame: &[u8]) -> Vec<u8> {
        let (rc, out) = match via {
            Ingress::Tc => self.ingress_tc(frame),
            Ingress::Xdp => self.xdp(frame),
        };
        assert!(rc == TC_ACT_OK || rc == XDP_PASS, "{via:?} verdict {rc}");
        out
    }

    /// The counters of `member`, or `None` if it is not observed.
    fn signals(&self, member: &Endpoint) -> Option<MemberSignals> {
        self.maps
            .member_signals()
            .unwrap()
            .into_iter()
            .find(|(e, _)| e == member)
            .map(|(_, s)| s)
    }

    fn count(&self, member: &Endpoint, kind: SignalKind) -> u64 {
        self.signals(member).expect("member observed").count(kind)
    }

    /// Every count of `member` but `kind` is zero, and `kind` has `want`.
    fn only(&self, member: &Endpoint, kind: SignalKind, want: u64) {
        let s = self.signals(member).expect("member observed");
        for k in SignalKind::ALL {
            let expect = if k == kind { want } else { 0 };
            assert_eq!(s.count(k), expect, "{} count of {member:?}", k.as_str());
        }
    }

    fn nothing_counted(&self, member: &Endpoint) {
        let s = self.signals(member).expect("member observed");
        assert_eq!(s.counts, [0; 8], "no signal for {member:?}");
    }

    /// Every event in the ring so far.
    fn events(&self) -> Vec<SignalEvent> {
        let mut ring = SignalEvents::open(&self.maps_path).expect("open the ring");
        std::iter::from_fn(|| ring.next_event()).collect()
    }

    /// SYN and SYN-ACK of `n`'s flow: open, marks cleared.
    fn open_answered(&self, n: &Net, via: Ingress) {
        assert_eq!(dst_of(&self.egress(&syn(n)).1), n.east);
        let synack = tcp_frame(&n.east, &n.client, TCP_SYN | TCP_ACK, b"");
        assert_eq!(src_of(&self.reply_via(via, &synack)), n.vip);
    }
}

fn rst(from: &Endpoint, n: &Net) -> Vec<u8> {
    tcp_frame(from, &n.client, RST_ACK, b"")
}

/// A reply of east with `payload`.
fn reply(n: &Net, payload: &[u8]) -> Vec<u8> {
    tcp_frame(&n.east, &n.client, TCP_ACK | PSH, payload)
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn rst_answering_a_syn_counts_refused_and_reaches_the_client_from_the_vip() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.maps.observe_member(n.east, OBSERVE_L4).unwrap();
            assert_eq!(dst_of(&h.egress(&syn(&n)).1), n.east);
            let out = h.reply_via(via, &rst(&n.east, &n));
            assert_eq!(src_of(&out), n.vip, "the RST still comes from the VIP");
            h.only(&n.east, SignalKind::Refused, 1);
            let events = h.events();
            assert_eq!(events.len(), 1, "one event");
            assert_eq!(events[0].member, n.east);
            assert_eq!(events[0].kind, SignalKind::Refused as u32);
            assert_eq!(events[0].count, 1);
            assert_eq!(h.maps.flows().unwrap().len(), 0, "the flow ended");
            assert_eq!(h.stat(Stat::FlowsReset), 1);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn rst_on_an_established_flow_counts_reset_not_refused() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.maps.observe_member(n.east, OBSERVE_L4).unwrap();
            h.open_answered(&n, via);
            let target = h.maps.reply_target(n.east, n.client).unwrap().unwrap();
            assert_eq!(target.state, 0, "the SYN-ACK cleared the opening mark");
            h.reply_via(via, &reply(&n, b"+OK\r\n"));
            assert_eq!(src_of(&h.reply_via(via, &rst(&n.east, &n))), n.vip);
            h.only(&n.east, SignalKind::Reset, 1);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn rst_after_the_members_own_fin_blames_nobody() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.maps.observe_member(n.east, OBSERVE_L4).unwrap();
            h.open_answered(&n, via);
            // Redis closes an idle client; the client writes; RST.
            let fin = tcp_frame(&n.east, &n.client, TCP_FIN | TCP_ACK, b"");
            h.reply_via(via, &fin);
            h.egress(&tcp_frame(
                &n.client,
                &n.vip,
                TCP_ACK | PSH,
                b"*1\r\n$4\r\nPING\r\n",
            ));
            assert_eq!(src_of(&h.reply_via(via, &rst(&n.east, &n))), n.vip);
            h.nothing_counted(&n.east);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn rst_on_a_steered_flow_blames_nobody() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            for m in [n.east, n.west] {
                h.maps.observe_member(m, OBSERVE_L4).unwrap();
            }
            h.open_answered(&n, via);
            h.maps.set_active(n.vip, n.west).unwrap();
            h.maps.mark_down(n.east, DOWN_UNHEALTHY).unwrap();
            let data = tcp_frame(&n.client, &n.vip, TCP_ACK | PSH, b"*1\r\n$4\r\nPING\r\n");
            assert_eq!(dst_of(&h.egress(&data).1), n.west, "steered");
            assert_eq!(h.stat(Stat::Steered), 1);
            // West's kernel does not know the flow: RST, on purpose.
            assert_eq!(src_of(&h.reply_via(via, &rst(&n.west, &n))), n.vip);
            h.nothing_counted(&n.west);
            h.nothing_counted(&n.east);
            assert!(h.events().is_empty());
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn rst_after_a_conntrack_miss_blames_nobody() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.maps.observe_member(n.east, OBSERVE_L4).unwrap();
            // No SYN seen: an evicted flow, re-pinned.
            let data = tcp_frame(&n.client, &n.vip, TCP_ACK | PSH, b"*1\r\n$4\r\nPING\r\n");
            assert_eq!(dst_of(&h.egress(&data).1), n.east);
            assert_eq!(h.stat(Stat::FlowMisses), 1);
            assert_eq!(src_of(&h.reply_via(via, &rst(&n.east, &n))), n.vip);
            h.nothing_counted(&n.east);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn a_retransmitted_syn_counts_syn_unanswered_and_an_answered_one_does_not() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.maps.observe_member(n.east, OBSERVE_L4).unwrap();
            assert_eq!(dst_of(&h.egress(&syn(&n)).1), n.east);
            h.nothing_counted(&n.east);
            assert_eq!(dst_of(&h.egress(&syn(&n)).1), n.east, "still translated");
            h.only(&n.east, SignalKind::SynUnanswered, 1);
            assert_eq!(h.events()[0].kind, SignalKind::SynUnanswered as u32);
            // Answered: a later SYN on the same 4-tuple is a new connection.
            let synack = tcp_frame(&n.east, &n.client, TCP_SYN | TCP_ACK, b"");
            h.reply_via(via, &synack);
            h.egress(&syn(&n));
            h.only(&n.east, SignalKind::SynUnanswered, 1);
            // Another port's first SYN is no retransmission either.
            let mut other = n;
            other.client.port = 40001u16.to_be_bytes();
            h.egress(&syn(&other));
            h.only(&n.east, SignalKind::SynUnanswered, 1);
        })
    });
}

/// An ICMP error from the router about the client's packet to east.
fn icmp_about_east(n: &Net, kind: IcmpKind) -> Vec<u8> {
    let router = if n.vip.family == FAMILY_V4 {
        ep("198.18.10.1:0")
    } else {
        ep("[2001:db8:10::1]:0")
    };
    let sent = tcp_frame(&n.client, &n.east, TCP_ACK | PSH, &[7u8; 100]);
    icmp_error_frame(&router, &n.client, kind, &sent[ETH_LEN..], 548)
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn icmp_unreachable_about_a_flow_counts_unreachable_and_path_errors_do_not() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.maps.observe_member(n.east, OBSERVE_L4).unwrap();
            h.open_answered(&n, via);
            let v4 = n.vip.family == FAMILY_V4;
            let path_errors = if v4 {
                [
                    IcmpKind::FragNeeded(1280),
                    IcmpKind::Other(ICMP_TIME_EXCEEDED, 0),
                ]
            } else {
                [
                    IcmpKind::PacketTooBig(1280),
                    IcmpKind::Other(ICMPV6_TIME_EXCEED, 0),
                ]
            };
            for kind in path_errors {
                h.reply_via(via, &icmp_about_east(&n, kind));
            }
            h.nothing_counted(&n.east);
            assert_eq!(h.stat(Stat::IcmpReverseTranslated), 2, "still translated");
            let unreachable = if v4 {
                IcmpKind::Other(ICMP_DEST_UNREACH, 1)
            } else {
                IcmpKind::Other(ICMPV6_DEST_UNREACH, 3)
            };
            h.reply_via(via, &icmp_about_east(&n, unreachable));
            h.only(&n.east, SignalKind::Unreachable, 1);
            assert_eq!(h.stat(Stat::IcmpReverseTranslated), 3);
        })
    });
}

/// Error replies that say the member cannot serve.
const SERVING_ERRORS: [&[u8]; 5] = [
    b"-LOADING Redis is loading the dataset in memory\r\n",
    b"-MASTERDOWN Link with MASTER is down\r\n",
    b"-BUSY Redis is busy running a script.\r\n",
    b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
    b"-CLUSTERDOWN The cluster is down\r\n",
];

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn each_error_prefix_counts_redis_error_only_with_layer7() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.maps.observe_member(n.east, OBSERVE_L4).unwrap();
            h.open_answered(&n, via);
            for e in SERVING_ERRORS {
                assert_eq!(src_of(&h.reply_via(via, &reply(&n, e))), n.vip);
            }
            h.nothing_counted(&n.east);
            h.maps
                .observe_member(n.east, OBSERVE_L4 | OBSERVE_L7)
                .unwrap();
            for (i, e) in SERVING_ERRORS.iter().enumerate() {
                let out = h.reply_via(via, &reply(&n, e));
                assert_eq!(src_of(&out), n.vip);
                assert_eq!(&out[out.len() - e.len()..], *e, "payload untouched");
                h.only(&n.east, SignalKind::RedisError, i as u64 + 1);
            }
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn error_like_bytes_not_at_a_reply_start_count_nothing() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.maps
                .observe_member(n.east, OBSERVE_L4 | OBSERVE_L7)
                .unwrap();
            h.open_answered(&n, via);
            for p in [
                &b"-BUSYKEY Target key name already exists.\r\n"[..],
                b"-BUSYGROUP Consumer Group name already exists\r\n",
                b"-ERR unknown command 'FOO', with args beginning with:\r\n",
                b"$20\r\n-LOADING xxxxxxxxxx\r\n",
                b"+OK\r\n-LOADING Redis is loading\r\n",
                b"-BUSY short\r\n",
                b"-LOADING",
            ] {
                assert_eq!(src_of(&h.reply_via(via, &reply(&n, p))), n.vip);
            }
            h.nothing_counted(&n.east);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn a_burst_of_signals_wakes_once_per_window_and_counts_all() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.maps.observe_member(n.east, OBSERVE_L4).unwrap();
            let flows: Vec<Net> = (0..10u16)
                .map(|i| {
                    let mut c = n;
                    c.client.port = (41000 + i).to_be_bytes();
                    c
                })
                .collect();
            for c in &flows {
                h.egress(&syn(c));
            }
            let start = Instant::now();
            for c in &flows {
                h.reply_via(via, &rst(&c.east, c));
            }
            let windows = start.elapsed().as_nanos() / 10_000_000 + 1;
            h.only(&n.east, SignalKind::Refused, 10);
            let events = h.events();
            assert!(!events.is_empty());
            assert!(
                events.len() as u128 <= windows,
                "{} events in {windows} windows of 10 ms",
                events.len()
            );
            assert_eq!(events[0].count, 1, "the first signal wakes at once");
            assert_eq!(h.signals(&n.east).unwrap().lost, 0);
        })
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn members_without_an_entry_are_not_observed() {
    each_ingress(|n, via| {
        with_programs(move |h| {
            h.maps.set_active(n.vip, n.east).unwrap();
            h.maps.observe_member(n.west, OBSERVE_L4).unwrap();
            h.egress(&syn(&n));
            h.egress(&syn(&n));
            assert_eq!(src_of(&h.reply_via(via, &rst(&n.east, &n))), n.vip);
            assert_eq!(h.signals(&n.east), None, "the kernel never inserts");
            h.nothing_counted(&n.west);
            assert!(h.events().is_empty());
            // Forgetting a member stops counting it.
            h.maps.observe_member(n.east, OBSERVE_L4).unwrap();
            assert!(h.maps.forget_member(&n.east).unwrap());
            assert!(!h.maps.forget_member(&n.east).unwrap());
            h.egress(&syn(&n));
            h.reply_via(via, &rst(&n.east, &n));
            assert_eq!(h.signals(&n.east), None);
        })
    });
}

/// Runs `body` with two loads of the programs in one namespace: signals on
/// (every member observed for everything) and `SIGNALS = 0`.
fn with_and_without_signals(body: impl FnOnce(&mut Harness, &mut Harness) + Send + 'static) {
    let ns = NetNs::new(&unique("sig"));
    let (on, off) = (PinDir::new("sig-on"), PinDir::new("sig-off"));
    let (on, off) = (on.path.clone(), off.path.clone());
    ns.run(move || {
        let mut with = Harness::load(&on);
        let mut without = Harness {
            ebpf: load_programs_with(&off, 1024, 0).expect("load without signals"),
            maps: Maps::open(&off).expect("open maps"),
            maps_path: off.clone(),
        };
        body(&mut with, &mut without);
    });
}

#[test]
#[ignore = "needs root: BPF_PROG_TEST_RUN in a network namespace"]
fn signal_frames_come_out_byte_identical_with_and_without_signals() {
    for n in [v4(), v6()] {
        with_and_without_signals(move |on, off| {
            for h in [&mut *on, &mut *off] {
                h.maps.set_active(n.vip, n.east).unwrap();
                h.maps
                    .observe_member(n.east, OBSERVE_L4 | OBSERVE_L7)
                    .unwrap();
            }
            let synack = tcp_frame(&n.east, &n.client, TCP_SYN | TCP_ACK, b"");
            let mut steps: Vec<(&str, bool, Vec<u8>)> = vec![
                ("syn", true, syn(&n)),
                ("refusing rst", false, rst(&n.east, &n)),
                ("syn", true, syn(&n)),
                ("retransmitted syn", true, syn(&n)),
                ("syn-ack", false, synack),
            ];
            for e in SERVING_ERRORS {
                steps.push(("error reply", false, reply(&n, e)));
            }
            steps.push(("ok reply", false, reply(&n, b"+OK\r\n")));
            let unreachable = if n.vip.family == FAMILY_V4 {
                IcmpKind::Other(ICMP_DEST_UNREACH, 3)
            } else {
                IcmpKind::Other(ICMPV6_DEST_UNREACH, 4)
            };
            steps.push(("unreachable", false, icmp_about_east(&n, unreachable)));
            let too_big = if n.vip.family == FAMILY_V4 {
                IcmpKind::FragNeeded(1280)
            } else {
                IcmpKind::PacketTooBig(1280)
            };
            steps.push(("too big", false, icmp_about_east(&n, too_big)));
            steps.push(("reset", false, rst(&n.east, &n)));
            for (name, egress, frame) in &steps {
                let runs = |h: &Harness| {
                    if *egress {
                        vec![h.egress(frame)]
                    } else {
                        vec![h.xdp(frame), h.ingress_tc(frame)]
                    }
                };
                assert_eq!(runs(on), runs(off), "{name}: verdict or bytes differ");
            }
            assert_eq!(on.maps.stats().unwrap(), off.maps.stats().unwrap());
            assert!(on.count(&n.east, SignalKind::Refused) >= 1, "signals ran");
            assert!(on.count(&n.east, SignalKind::RedisError) >= 5);
            off.nothing_counted(&n.east);
        });
    }
}

//! Per-packet cost of the kernel programs, measured with BPF_PROG_TEST_RUN
//! `repeat` (the kernel reports the mean time per run) beside empty programs
//! of the same types; our cost is the difference. Cases alternate within
//! each round and the median over rounds is reported, since this machine is
//! shared and noisy.
//!
//! The hit paths map the VIP to itself, so a rewritten packet is the same
//! packet and every repetition takes the same path (the helpers do the same
//! work whatever the values). The run happens in a fresh network namespace,
//! where the FIB lookup after DNAT ends at "forwarding disabled", as on an
//! application host with forwarding off.

use anyhow::{Context as _, bail};

use super::{Summary, summary};
use aya::{
    Ebpf,
    programs::{SchedClassifier, Xdp},
};
use redirector::datapath::{
    EGRESS_PROGRAM, INGRESS_PROGRAM, Maps, XDP_PROGRAM, load_programs, load_programs_with,
};
use redirector_common::{
    Endpoint,
    builder::tcp_frame,
    parse::{TCP_ACK, TCP_SYN},
    signal::{OBSERVE_L4, OBSERVE_L7},
};
use redirector_tests::{netns::NetNs, pins::PinDir, testrun, unique};

/// Empty programs of the same types (`baseline_tc`, `baseline_xdp`), built
/// by `tests/build.rs` from `tests/baseline-ebpf`: the zero point of the
/// per-packet costs. Only the bench embeds them.
static BASELINE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/baseline"));

const PSH: u8 = 0x08;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Prog {
    Egress,
    IngressTc,
    Xdp,
    BaselineTc,
    BaselineXdp,
}

struct Case {
    name: &'static str,
    prog: Prog,
    frame: Vec<u8>,
    baseline: Prog,
    /// Run the copy loaded with `SIGNALS = 0` (the programs as they were
    /// before reactive signals), for the same run's comparison.
    signals_off: bool,
}

impl Case {
    fn new(name: &'static str, prog: Prog, frame: Vec<u8>) -> Self {
        let baseline = if prog == Prog::Xdp {
            Prog::BaselineXdp
        } else {
            Prog::BaselineTc
        };
        Self {
            name,
            prog,
            frame,
            baseline,
            signals_off: false,
        }
    }

    fn signals_off(mut self) -> Self {
        self.signals_off = true;
        self
    }
}

/// Per-packet cost rows, measured in a fresh namespace.
pub fn measure_all(quick: bool) -> anyhow::Result<Vec<Row>> {
    let repeat: u32 = if quick { 100_000 } else { 1_000_000 };
    let rounds = if quick { 3 } else { 7 };
    let ns = NetNs::new(&unique("bench"));
    let pins = PinDir::new("bench");
    let path = pins.path.clone();
    ns.run(move || measure(&path, repeat, rounds))
}

#[derive(serde::Serialize)]
pub struct Row {
    pub name: &'static str,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub baseline: f64,
    pub repeat: u32,
    pub rounds: usize,
}

fn ep(s: &str) -> Endpoint {
    Endpoint::from(s.parse::<std::net::SocketAddr>().expect("literal address"))
}

pub fn measure(pin_path: &std::path::Path, repeat: u32, rounds: usize) -> anyhow::Result<Vec<Row>> {
    let ebpf = load_programs(pin_path, 65536).context("load programs")?;
    // A second copy on the same maps with every signal compiled out by the
    // verifier: the hit-path cost of the signals is the difference.
    let ebpf_off = load_programs_with(pin_path, 65536, 0).context("load programs, signals off")?;
    let mut baseline = Ebpf::load(BASELINE_OBJECT).context("load baseline")?;
    let p: &mut SchedClassifier = baseline
        .program_mut("baseline_tc")
        .expect("in object")
        .try_into()?;
    p.load()?;
    let p: &mut Xdp = baseline
        .program_mut("baseline_xdp")
        .expect("in object")
        .try_into()?;
    p.load()?;
    let mut maps = Maps::open(pin_path)?;

    let client = ep("198.18.10.2:40000");
    let vip = ep("198.18.0.100:6379");
    let client6 = ep("[2001:db8:10::2]:40000");
    let vip6 = ep("[2001:db8:100::100]:6379");
    let other = ep("198.18.1.10:6379");
    let web = ep("198.18.1.10:443");
    // Identity mapping: the rewrite leaves the packet as it was. VIP and
    // member then share the port, as they usually do.
    maps.set_active(vip, vip)?;
    maps.set_active(vip6, vip6)?;
    // Two VIPs on different addresses and ports, each the other's member:
    // every run rewrites address and port, and the result is a packet of
    // the other flow, so all repetitions take the same (worst-case) path.
    let swap_a = ep("198.18.0.110:6390");
    let swap_b = ep("198.18.0.111:6391");
    maps.set_active(swap_a, swap_b)?;
    maps.set_active(swap_b, swap_a)?;
    let payload = b"*3\r\n$3\r\nGET\r\n$6\r\nregion\r\n";
    // The identity members are observed for everything: the signal paths
    // run as far as they can without raising anything.
    maps.observe_member(vip, OBSERVE_L4 | OBSERVE_L7)?;
    maps.observe_member(vip6, OBSERVE_L4 | OBSERVE_L7)?;
    let ok = b"+OK\r\n";
    let bulk = b"$11\r\nhello world\r\n";
    let err = b"-ERR unknown command 'FOO'\r\n";
    let mut cases = vec![
        Case {
            name: "egress, conntrack hit (IPv4)",
            prog: Prog::Egress,
            frame: tcp_frame(&client, &vip, TCP_ACK | PSH, payload),
            baseline: Prog::BaselineTc,
            signals_off: false,
        },
        Case {
            name: "egress, conntrack hit (IPv6)",
            prog: Prog::Egress,
            frame: tcp_frame(&client6, &vip6, TCP_ACK | PSH, payload),
            baseline: Prog::BaselineTc,
            signals_off: false,
        },
        Case {
            name: "egress, conntrack hit (IPv4, address and port change)",
            prog: Prog::Egress,
            frame: tcp_frame(&client, &swap_a, TCP_ACK | PSH, payload),
            baseline: Prog::BaselineTc,
            signals_off: false,
        },
        Case {
            name: "egress, new flow (SYN)",
            prog: Prog::Egress,
            frame: tcp_frame(&client, &vip, TCP_SYN, b""),
            baseline: Prog::BaselineTc,
            signals_off: false,
        },
        Case {
            name: "egress, miss (other port)",
            prog: Prog::Egress,
            frame: tcp_frame(&client, &web, TCP_ACK | PSH, payload),
            baseline: Prog::BaselineTc,
            signals_off: false,
        },
        Case {
            name: "egress, miss (VIP port, other address)",
            prog: Prog::Egress,
            frame: tcp_frame(&client, &other, TCP_ACK | PSH, payload),
            baseline: Prog::BaselineTc,
            signals_off: false,
        },
        Case {
            name: "reverse XDP, hit",
            prog: Prog::Xdp,
            frame: tcp_frame(&vip, &client, TCP_ACK | PSH, payload),
            baseline: Prog::BaselineXdp,
            signals_off: false,
        },
        Case {
            name: "reverse XDP, miss (member port)",
            prog: Prog::Xdp,
            frame: tcp_frame(&other, &client, TCP_ACK | PSH, payload),
            baseline: Prog::BaselineXdp,
            signals_off: false,
        },
        Case {
            name: "reverse XDP, miss (other port)",
            prog: Prog::Xdp,
            frame: tcp_frame(&web, &client, TCP_ACK | PSH, payload),
            baseline: Prog::BaselineXdp,
            signals_off: false,
        },
        Case {
            name: "reverse TC, hit",
            prog: Prog::IngressTc,
            frame: tcp_frame(&vip, &client, TCP_ACK | PSH, payload),
            baseline: Prog::BaselineTc,
            signals_off: false,
        },
        Case {
            name: "reverse TC, hit (address and port change)",
            prog: Prog::IngressTc,
            frame: tcp_frame(&swap_b, &client, TCP_ACK | PSH, payload),
            baseline: Prog::BaselineTc,
            signals_off: false,
        },
        Case {
            name: "reverse TC, miss (member port)",
            prog: Prog::IngressTc,
            frame: tcp_frame(&other, &client, TCP_ACK | PSH, payload),
            baseline: Prog::BaselineTc,
            signals_off: false,
        },
        Case {
            name: "reverse TC, miss (other port)",
            prog: Prog::IngressTc,
            frame: tcp_frame(&web, &client, TCP_ACK | PSH, payload),
            baseline: Prog::BaselineTc,
            signals_off: false,
        },
    ];
    // Signals on (the default load) against off, side by side in each round.
    let reply = |p: &[u8]| tcp_frame(&vip, &client, TCP_ACK | PSH, p);
    for (name_on, name_off, prog, frame) in [
        (
            "signals on: egress hit (IPv4)",
            "signals off: egress hit (IPv4)",
            Prog::Egress,
            tcp_frame(&client, &vip, TCP_ACK | PSH, payload),
        ),
        (
            "signals on: egress hit (IPv6)",
            "signals off: egress hit (IPv6)",
            Prog::Egress,
            tcp_frame(&client6, &vip6, TCP_ACK | PSH, payload),
        ),
        (
            "signals on: reverse XDP hit, +OK",
            "signals off: reverse XDP hit, +OK",
            Prog::Xdp,
            reply(ok),
        ),
        (
            "signals on: reverse TC hit, +OK",
            "signals off: reverse TC hit, +OK",
            Prog::IngressTc,
            reply(ok),
        ),
        (
            "signals on: reverse XDP hit, 18-byte bulk reply",
            "signals off: reverse XDP hit, 18-byte bulk reply",
            Prog::Xdp,
            reply(bulk),
        ),
        (
            "signals on: reverse TC hit, 18-byte bulk reply",
            "signals off: reverse TC hit, 18-byte bulk reply",
            Prog::IngressTc,
            reply(bulk),
        ),
        (
            "signals on: reverse XDP hit, -ERR",
            "signals off: reverse XDP hit, -ERR",
            Prog::Xdp,
            reply(err),
        ),
        (
            "signals on: reverse TC hit, -ERR",
            "signals off: reverse TC hit, -ERR",
            Prog::IngressTc,
            reply(err),
        ),
        (
            // The same 4-tuple every time: with signals on, each is a
            // retransmission and raises syn_unanswered (worst case).
            "signals on: egress SYN (retransmitted, raises)",
            "signals off: egress SYN",
            Prog::Egress,
            tcp_frame(&client, &vip, TCP_SYN, b""),
        ),
    ] {
        cases.push(Case::new(name_on, prog, frame.clone()));
        cases.push(Case::new(name_off, prog, frame).signals_off());
    }
    // Create the flow entries the hit cases rely on (both swap flows).
    for c in &cases {
        if c.prog == Prog::Egress {
            run_once(&ebpf, &baseline, c.prog, &c.frame, 1)?;
        }
    }
    run_once(
        &ebpf,
        &baseline,
        Prog::Egress,
        &tcp_frame(&client, &swap_b, TCP_ACK | PSH, payload),
        1,
    )?;
    let mut samples = vec![Vec::new(); cases.len()];
    let mut base_tc = Vec::new();
    let mut base_xdp = Vec::new();
    for _ in 0..rounds {
        base_tc.push(run_once(
            &ebpf,
            &baseline,
            Prog::BaselineTc,
            &cases[0].frame,
            repeat,
        )?);
        for (i, c) in cases.iter().enumerate() {
            let obj = if c.signals_off { &ebpf_off } else { &ebpf };
            samples[i].push(run_once(obj, &baseline, c.prog, &c.frame, repeat)?);
        }
        base_xdp.push(run_once(
            &ebpf,
            &baseline,
            Prog::BaselineXdp,
            &cases[0].frame,
            repeat,
        )?);
    }
    let stats = maps.stats()?;
    if stats.get(redirector_common::Stat::RewriteFailed) != 0 {
        bail!("rewrite failures during the run: {stats:?}");
    }
    let (btc, bxdp) = (summary(&mut base_tc).median, summary(&mut base_xdp).median);
    Ok(cases
        .iter()
        .zip(samples.iter_mut())
        .map(|(c, s)| {
            let Summary {
                median, min, max, ..
            } = summary(s);
            Row {
                name: c.name,
                median,
                min,
                max,
                baseline: if c.baseline == Prog::BaselineXdp {
                    bxdp
                } else {
                    btc
                },
                repeat,
                rounds,
            }
        })
        .collect())
}

pub fn run_once(
    ebpf: &Ebpf,
    baseline: &Ebpf,
    prog: Prog,
    frame: &[u8],
    repeat: u32,
) -> anyhow::Result<f64> {
    let (obj, name) = match prog {
        Prog::Egress => (ebpf, EGRESS_PROGRAM),
        Prog::IngressTc => (ebpf, INGRESS_PROGRAM),
        Prog::Xdp => (ebpf, XDP_PROGRAM),
        Prog::BaselineTc => (baseline, "baseline_tc"),
        Prog::BaselineXdp => (baseline, "baseline_xdp"),
    };
    let p = obj.program(name).expect("loaded");
    let r = if matches!(prog, Prog::Xdp | Prog::BaselineXdp) {
        testrun::run(<&Xdp>::try_from(p)?, frame, repeat, None)?
    } else {
        testrun::run(<&SchedClassifier>::try_from(p)?, frame, repeat, None)?
    };
    Ok(r.ns_per_run)
}

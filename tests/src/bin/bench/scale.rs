//! Scale: the cost of flips with 1,000 services, and the per-packet cost of
//! a conntrack hit when the flow table holds 1,000,000 entries.

use std::time::Instant;

use aya::programs::SchedClassifier;
use redirector::datapath::{EGRESS_PROGRAM, Maps, load_programs};
use redirector_common::{Endpoint, builder::tcp_frame, parse::TCP_SYN};
use redirector_tests::{netns::NetNs, pins::PinDir, testrun, unique};

use super::summary;

#[derive(serde::Serialize)]
pub struct Flips {
    pub services: usize,
    /// Median of single flips, microseconds.
    pub one_flip_us: f64,
    /// All services flipped one after another, milliseconds (median of rounds).
    pub all_flips_ms: f64,
    pub rounds: usize,
}

fn vip(i: usize) -> Endpoint {
    Endpoint::tcp_v4(
        [198, 19, (i / 250) as u8, (i % 250) as u8 + 1],
        6379u16.to_be_bytes(),
    )
}

pub fn flips(services: usize, rounds: usize) -> anyhow::Result<Flips> {
    let ns = NetNs::new(&unique("scale"));
    let pins = PinDir::new("scale");
    let path = pins.path.clone();
    ns.run(move || {
        let _ebpf = load_programs(&path, 65536)?;
        let mut maps = Maps::open(&path)?;
        let a = Endpoint::tcp_v4([198, 18, 1, 10], 6379u16.to_be_bytes());
        let b = Endpoint::tcp_v4([198, 18, 2, 10], 6379u16.to_be_bytes());
        for i in 0..services {
            maps.set_active(vip(i), a)?;
        }
        let mut singles = Vec::new();
        let mut alls = Vec::new();
        for r in 0..rounds {
            let to = if r % 2 == 0 { b } else { a };
            let t = Instant::now();
            maps.set_active(vip(0), to)?;
            singles.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            for i in 1..services {
                maps.set_active(vip(i), to)?;
            }
            alls.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(Flips {
            services,
            one_flip_us: summary(&mut singles).median,
            all_flips_ms: summary(&mut alls).median,
            rounds,
        })
    })
}

#[derive(serde::Serialize)]
pub struct BigConntrack {
    pub entries: u32,
    pub hit_small_ns: f64,
    pub hit_full_ns: f64,
    pub repeat: u32,
}

/// Egress hit cost with a nearly empty table vs a table filled with
/// `entries` flows (inserted by the program itself, one SYN each).
pub fn big_conntrack(entries: u32, repeat: u32) -> anyhow::Result<BigConntrack> {
    let ns = NetNs::new(&unique("ct"));
    let pins = PinDir::new("ct");
    let path = pins.path.clone();
    ns.run(move || {
        let ebpf = load_programs(&path, entries)?;
        let mut maps = Maps::open(&path)?;
        let vip = Endpoint::tcp_v4([198, 18, 0, 100], 6379u16.to_be_bytes());
        maps.set_active(vip, vip)?;
        let prog: &SchedClassifier = ebpf.program(EGRESS_PROGRAM).expect("loaded").try_into()?;
        let run = |frame: &[u8], repeat: u32| -> anyhow::Result<f64> {
            Ok(testrun::run(prog, frame, repeat, None)?.ns_per_run)
        };
        // Distinct clients in 198.18.0.0/15 (no packet leaves TEST_RUN).
        let client = |i: u32| {
            Endpoint::tcp_v4(
                [198, 18 | ((i >> 16) & 1) as u8, (i >> 8) as u8, i as u8],
                (1024 + (i >> 17) as u16).to_be_bytes(),
            )
        };
        let probe = tcp_frame(&client(0), &vip, 0x18, b"*1\r\n$4\r\nPING\r\n");
        run(&tcp_frame(&client(0), &vip, TCP_SYN, b""), 1)?;
        let mut small = Vec::new();
        for _ in 0..5 {
            small.push(run(&probe, repeat)?);
        }
        for i in 1..entries {
            run(&tcp_frame(&client(i), &vip, TCP_SYN, b""), 1)?;
        }
        // The probe flow may have been evicted by the LRU: put it back.
        run(&tcp_frame(&client(0), &vip, TCP_SYN, b""), 1)?;
        let mut full = Vec::new();
        for _ in 0..5 {
            full.push(run(&probe, repeat)?);
        }
        Ok(BigConntrack {
            entries,
            hit_small_ns: summary(&mut small).median,
            hit_full_ns: summary(&mut full).median,
            repeat,
        })
    })
}

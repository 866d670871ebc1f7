//! Fleet mode against independent hosts (issue 13), side by side on one
//! topology: three groups of four application hosts, each host with its
//! own daemon and its own writer, share the members (east, west) and one
//! etcd cluster, so one fault hits every group at the same instant.
//!
//! - **fleet**: `fleet = true`, `barrier = "none"`, drain_timeout 1 s;
//! - **independent**: no `[fleet]` (each daemon decides alone, today's
//!   behaviour);
//! - **fleet + barrier**: `fleet = true`, `barrier = "ack"`,
//!   `drain_timeout = "0s"`, under an etcd prefix of its own.
//!
//! Each repetition: east's redis killed (failover), restarted (failback,
//! failback_delay 2 s), then the first host of each group cut from east
//! on the router for [`PARTITION_HOLD`] (a minority partition). Map-write
//! instants come from each host's `history`; fault instants are taken on
//! the same wall clock (every namespace shares the host's).

use std::{ops::Range, time::Duration};

use redirector::status::FlipRecord;
use redirector_tests::fleet_topology::{FLEET_BOUND, FleetTopology};

use super::fleet_writer::{Overlap, Reply, Sent, Writers, landed, overlap, unix_ms_f};

/// Hosts per group.
pub const HOSTS: usize = 4;
/// The fleet's quorum with four live hosts (`quorum = "majority"`).
pub const QUORUM: usize = HOSTS / 2 + 1;
/// Writers run this long before each fault.
pub const BEFORE: Duration = Duration::from_millis(300);
/// How long the partition is held (about three times a host's detection).
pub const PARTITION_HOLD: Duration = Duration::from_secs(3);
/// The services' drain_timeout outside the barrier group.
const DRAIN: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
pub enum Mode {
    Fleet,
    Independent,
    Barrier,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Fleet, Mode::Independent, Mode::Barrier];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Fleet => "fleet",
            Mode::Independent => "independent",
            Mode::Barrier => "fleet, barrier = \"ack\", drain 0s",
        }
    }

    /// This group's hosts in the topology.
    pub fn hosts(self) -> Range<usize> {
        let g = Self::ALL.iter().position(|&m| m == self).unwrap_or(0);
        g * HOSTS..(g + 1) * HOSTS
    }

    fn of_host(i: usize) -> Mode {
        Self::ALL[i / HOSTS]
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
pub enum Kind {
    /// East's redis-server SIGKILLed; fault instant: just before the kill.
    Failover,
    /// East's redis-server started again; fault instant: once it answers.
    Failback,
    /// Each group's first host cut from east (both ways, on the router).
    Partition,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Failover => "member killed (failover)",
            Kind::Failback => "member restarted (failback)",
            Kind::Partition => "minority partition (1 of 4 hosts cut from east)",
        }
    }
}

/// One fault as one group lived it.
#[derive(Clone, Default, serde::Serialize)]
pub struct Switch {
    /// Hosts that wrote their map for the move (4 when all moved).
    pub moved: usize,
    /// Fault to the first and the last host's map write of the move, ms.
    pub first_ms: Option<f64>,
    pub last_ms: Option<f64>,
    /// Last minus first.
    pub skew_ms: Option<f64>,
    /// Failovers: fault to the QUORUM-th host's own `marked_down_ms`.
    pub quorum_down_ms: Option<f64>,
    /// Barrier group: fault to the first host's barrier write (no member
    /// serves from then until its serving write).
    pub barrier_ms: Option<f64>,
    /// Flip records (of any kind) after the fault, all hosts of the group.
    pub flips: usize,
    /// From the members' tags; None when the old member keeps nothing (a
    /// killed one).
    pub overlap: Option<Overlap>,
    /// Writes that failed, as the clients saw them, from the fault on.
    pub errors: usize,
}

/// One repetition: the three faults, a [`Switch`] per group each.
#[derive(serde::Serialize)]
pub struct Rep {
    pub failover: Vec<Switch>,
    pub failback: Vec<Switch>,
    pub partition: Vec<Switch>,
}

/// One host through one fault, times in ms after the fault.
#[derive(serde::Serialize)]
pub struct HostTrace {
    pub name: String,
    pub mode: Mode,
    pub writes: Vec<(f64, Reply)>,
    /// Map writes after the fault: (when, member it serves, "barrier" or
    /// not).
    pub map_writes: Vec<(f64, String, bool)>,
}

/// Every host through one fault (the first repetition's), for the plot.
#[derive(serde::Serialize)]
pub struct Trace {
    pub kind: Kind,
    pub hosts: Vec<HostTrace>,
}

#[derive(serde::Serialize)]
pub struct Fleet {
    pub quick: bool,
    pub hosts_per_group: usize,
    pub reps: Vec<Rep>,
    /// First repetition's failover and failback.
    pub traces: Vec<Trace>,
    pub setup_s: f64,
    pub took_s: f64,
}

/// Host `i`'s config in its group.
fn config(t: &FleetTopology, i: usize) -> String {
    match Mode::of_host(i) {
        Mode::Independent => t.service_config(""),
        Mode::Fleet => t.fleet_config(i, "static", "none"),
        // A fleet of its own: the same etcd, another prefix.
        Mode::Barrier => t.fleet_config(i, "static", "ack").replace(
            &format!("prefix = \"{}\"", t.prefix),
            &format!("prefix = \"{}-ack\"", t.prefix),
        ),
    }
}

/// Every host on east with east confirmed up, each fleet settled.
fn ready(t: &FleetTopology) {
    t.wait_all_on_east();
    t.wait_settled_on_east(Mode::Fleet.hosts());
    t.wait_settled_on_east(Mode::Barrier.hosts());
}

/// The records of host `i` written at or after `fault_ms` (the history
/// rounds to whole ms).
fn after(t: &FleetTopology, i: usize, fault_ms: f64) -> Vec<FlipRecord> {
    t.daemon(i)
        .history()
        .into_iter()
        .filter(|r| r.map_written_ms as f64 + 1.0 >= fault_ms)
        .collect()
}

/// What one group's hosts did for a move to `want` after `fault_ms`.
fn switch(
    records: &[Vec<FlipRecord>],
    sent: &[Vec<Sent>],
    want: Option<&str>,
    fault_ms: f64,
) -> Switch {
    let rel = |ms: u64| ms as f64 - fault_ms;
    let first_of = |barrier: bool| -> Vec<f64> {
        records
            .iter()
            .filter_map(|rs| {
                rs.iter()
                    .filter(|r| Some(r.to.as_str()) == want && r.phase.is_some() == barrier)
                    .map(|r| rel(r.map_written_ms))
                    .reduce(f64::min)
            })
            .collect()
    };
    let writes = first_of(false);
    let min = writes.iter().copied().reduce(f64::min);
    let max = writes.iter().copied().reduce(f64::max);
    let mut downs: Vec<f64> = records
        .iter()
        .filter_map(|rs| {
            rs.iter()
                .find(|r| Some(r.to.as_str()) == want)
                .and_then(|r| r.marked_down_ms)
                .map(rel)
        })
        .collect();
    downs.sort_by(f64::total_cmp);
    Switch {
        moved: writes.len(),
        first_ms: min,
        last_ms: max,
        skew_ms: min.zip(max).map(|(a, b)| b - a),
        quorum_down_ms: downs.get(QUORUM - 1).copied(),
        barrier_ms: first_of(true).into_iter().reduce(f64::min),
        flips: records.iter().map(Vec::len).sum(),
        overlap: None,
        errors: sent
            .iter()
            .flatten()
            .filter(|s| s.reply == Reply::Error && s.at_ms >= fault_ms)
            .count(),
    }
}

/// Polls until every host serves `want` (bounded).
fn wait_all(t: &FleetTopology, want: &str) {
    for i in 0..t.hosts.len() {
        t.daemon(i).wait_active("cache", want, FLEET_BOUND);
    }
}

/// One fault under writers; a Switch per group, and the trace.
fn trial(t: &mut FleetTopology, kind: Kind, tag: &str) -> anyhow::Result<(Vec<Switch>, Trace)> {
    let writers = Writers::start(t, tag);
    std::thread::sleep(BEFORE);
    let (fault_ms, want) = match kind {
        Kind::Failover => {
            let at = unix_ms_f();
            t.kill_redis("east");
            std::thread::sleep(Duration::from_secs(1));
            wait_all(t, "west");
            std::thread::sleep(Duration::from_millis(300));
            (at, Some("west"))
        }
        Kind::Failback => {
            t.restart_redis("east");
            let at = unix_ms_f();
            std::thread::sleep(Duration::from_millis(2500));
            wait_all(t, "east");
            // Kept connections on west are reset once drained.
            std::thread::sleep(DRAIN + Duration::from_millis(400));
            (at, Some("east"))
        }
        Kind::Partition => {
            let at = unix_ms_f();
            for m in Mode::ALL {
                t.partition(m.hosts().start, "east");
            }
            std::thread::sleep(PARTITION_HOLD);
            (at, None)
        }
    };
    let sent = writers.stop()?;
    let records: Vec<Vec<FlipRecord>> = (0..t.hosts.len()).map(|i| after(t, i, fault_ms)).collect();
    if kind == Kind::Partition {
        for m in Mode::ALL {
            t.heal(m.hosts().start, "east");
        }
    }
    let kept = landed(t, tag);
    let switches = Mode::ALL
        .iter()
        .map(|m| {
            let r = m.hosts();
            let mut s = switch(&records[r.clone()], &sent[r.clone()], want, fault_ms);
            if kind != Kind::Failover {
                let hosts: Vec<&[_]> = kept[r].iter().map(Vec::as_slice).collect();
                s.overlap = Some(overlap(&hosts));
            }
            s
        })
        .collect();
    let trace = Trace {
        kind,
        hosts: t
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| HostTrace {
                name: h.name.clone(),
                mode: Mode::of_host(i),
                writes: sent[i]
                    .iter()
                    .map(|s| (s.at_ms - fault_ms, s.reply))
                    .collect(),
                map_writes: records[i]
                    .iter()
                    .map(|r| {
                        (
                            r.map_written_ms as f64 - fault_ms,
                            r.to.clone(),
                            r.phase.is_some(),
                        )
                    })
                    .collect(),
            })
            .collect(),
    };
    Ok((switches, trace))
}

/// `reps` repetitions of the three faults.
pub fn run(reps: usize, quick: bool) -> anyhow::Result<Fleet> {
    let started = std::time::Instant::now();
    let mut t = FleetTopology::new(HOSTS * Mode::ALL.len());
    t.start_daemons(config);
    ready(&t);
    let setup_s = started.elapsed().as_secs_f64();
    println!(
        "  fleet: {} hosts ready after {setup_s:.0} s",
        t.hosts.len()
    );
    let mut out = Vec::new();
    let mut traces = Vec::new();
    for rep in 0..reps {
        let (failover, tf) = trial(&mut t, Kind::Failover, &format!("fo{rep}"))?;
        let (failback, tb) = trial(&mut t, Kind::Failback, &format!("fb{rep}"))?;
        ready(&t);
        let (partition, _) = trial(&mut t, Kind::Partition, &format!("mp{rep}"))?;
        ready(&t);
        if rep == 0 {
            traces = vec![tf, tb];
        }
        println!(
            "  fleet: rep {}/{reps}: failover last map write {} ms (independent {} ms), failback {} ms, partition flips {} (independent {})",
            rep + 1,
            ms(failover[0].last_ms),
            ms(failover[1].last_ms),
            ms(failback[0].last_ms),
            partition[0].flips,
            partition[1].flips,
        );
        out.push(Rep {
            failover,
            failback,
            partition,
        });
    }
    drop(t);
    Ok(Fleet {
        quick,
        hosts_per_group: HOSTS,
        reps: out,
        traces,
        setup_s,
        took_s: started.elapsed().as_secs_f64(),
    })
}

/// A time in ms, or "-".
pub fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

//! The fleet part's application traffic: one writer per host, each tagging
//! its writes so every member's data says which host wrote what and when,
//! and the overlap computed from those tags: writes that landed on one
//! member while another host's writes were landing on the other.
//!
//! A write is one `EVAL`: `RPUSH w:<trial>:<host> <send time, Unix µs>`,
//! then `GET region`, so the member keeps the tag and the client learns
//! which member took it. Each writer keeps one connection (as an
//! application's pool does), sends every [`EVERY`] with a [`TIMEOUT`]
//! limit, and reconnects after any error.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::anyhow;
use redirector_tests::{
    fleet_topology::FleetTopology,
    netns,
    resp::Client,
    topology::{Family, Member, vip},
};

pub const EVERY: Duration = Duration::from_millis(5);
pub const TIMEOUT: Duration = Duration::from_millis(100);
/// Whatever happens, a writer stops this long after it started.
const HARD_LIMIT: Duration = Duration::from_secs(30);

const WRITE: &str = "redis.call('RPUSH', KEYS[1], ARGV[1]) return redis.call('GET', 'region')";
const READ: &str = "return table.concat(redis.call('LRANGE', KEYS[1], 0, -1), ',')";

#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
pub enum Reply {
    East,
    West,
    Error,
}

/// One write as its client saw it.
#[derive(Clone, Copy, serde::Serialize)]
pub struct Sent {
    /// Send time, Unix ms.
    pub at_ms: f64,
    pub reply: Reply,
}

/// Unix ms now, with the fraction.
pub fn unix_ms_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// The writers of one trial, one thread per host, until [`Writers::stop`].
pub struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Sent>>>,
}

/// The key host `host` writes to in trial `trial`.
fn key(trial: &str, host: &str) -> String {
    format!("w:{trial}:{host}")
}

impl Writers {
    /// Starts a writer on every host of `t`, writing under `trial`.
    pub fn start(t: &FleetTopology, trial: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = t
            .hosts
            .iter()
            .map(|h| {
                let (ns, key, stop) = (h.ns.name.clone(), key(trial, &h.name), stop.clone());
                std::thread::spawn(move || write_loop(&ns, &key, &stop))
            })
            .collect();
        Self { stop, threads }
    }

    /// Stops and joins every writer; what each host's client saw, in host
    /// order.
    pub fn stop(mut self) -> anyhow::Result<Vec<Vec<Sent>>> {
        self.stop.store(true, Ordering::Relaxed);
        std::mem::take(&mut self.threads)
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a writer thread panicked")))
            .collect()
    }
}

impl Drop for Writers {
    /// A trial that fails still ends and joins its writers (each stops
    /// within [`TIMEOUT`] and one period).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn write_loop(ns: &str, key: &str, stop: &AtomicBool) -> Vec<Sent> {
    netns::enter(&format!("/run/netns/{ns}"));
    let target = vip(Family::V4);
    let (started, mut next) = (Instant::now(), Instant::now());
    let mut conn: Option<Client> = None;
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < HARD_LIMIT {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at_ms = unix_ms_f();
        let reply = write_one(&mut conn, target, key, &format!("{:.0}", at_ms * 1e3));
        out.push(Sent { at_ms, reply });
        while next <= Instant::now() {
            next += EVERY;
        }
    }
    out
}

/// One tagged write on the kept connection (connecting first if there is
/// none); drops the connection after an error.
fn write_one(conn: &mut Option<Client>, target: SocketAddr, key: &str, tag: &str) -> Reply {
    let result = (|| -> std::io::Result<Option<String>> {
        let c = match conn {
            Some(c) => c,
            None => {
                let s = std::net::TcpStream::connect_timeout(&target, TIMEOUT)?;
                let mut c = Client::new(s);
                c.set_timeout(TIMEOUT);
                conn.insert(c)
            }
        };
        c.command(&["EVAL", WRITE, "1", key, tag])
    })();
    match result.as_ref().map(|r| r.as_deref()) {
        Ok(Some("east")) => Reply::East,
        Ok(Some("west")) => Reply::West,
        _ => {
            *conn = None;
            Reply::Error
        }
    }
}

/// One write as its member kept it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Landed {
    /// Send time, Unix µs (the tag).
    pub at_us: u64,
    /// 0: east, 1: west.
    pub member: usize,
}

/// What `member` kept of each host's writes in `trial` (nothing if it
/// does not answer: a killed member keeps nothing).
fn read_member(m: &Member, trial: &str, hosts: &[String]) -> Vec<Vec<u64>> {
    let addr = m.addr(Family::V4);
    let keys: Vec<String> = hosts.iter().map(|h| key(trial, h)).collect();
    m.ns.run(move || {
        let Ok(mut c) = Client::connect(addr) else {
            return vec![Vec::new(); keys.len()];
        };
        keys.iter()
            .map(|k| {
                c.command(&["EVAL", READ, "1", k])
                    .ok()
                    .flatten()
                    .map(|s| s.split(',').filter_map(|v| v.parse().ok()).collect())
                    .unwrap_or_default()
            })
            .collect()
    })
}

/// Every host's writes of `trial` as east and west kept them, each host's
/// sorted by send time.
pub fn landed(t: &FleetTopology, trial: &str) -> Vec<Vec<Landed>> {
    let hosts: Vec<String> = t.hosts.iter().map(|h| h.name.clone()).collect();
    let per_member = [&t.east, &t.west].map(|m| read_member(m, trial, &hosts));
    (0..hosts.len())
        .map(|h| {
            let mut v: Vec<Landed> = per_member
                .iter()
                .enumerate()
                .flat_map(|(member, all)| all[h].iter().map(move |&at_us| Landed { at_us, member }))
                .collect();
            v.sort_by_key(|l| l.at_us);
            v
        })
        .collect()
}

/// Concurrent access among a group of hosts, from the members' tags.
#[derive(Clone, Copy, Default, serde::Serialize)]
pub struct Overlap {
    /// Writes that landed on one member at a time inside a run of another
    /// host's writes landing on the other member.
    pub writes: usize,
    /// Total time during which two hosts' runs on different members
    /// overlapped, ms.
    pub window_ms: f64,
    /// Writes the members kept, all hosts of the group.
    pub kept: usize,
}

/// A host's run: consecutive writes (by send time) that landed on one
/// member, from the first's send time to the last's.
#[derive(Clone, Copy)]
struct Run {
    member: usize,
    from_us: u64,
    to_us: u64,
}

fn runs(writes: &[Landed]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for w in writes {
        match out.last_mut() {
            Some(r) if r.member == w.member => r.to_us = w.at_us,
            _ => out.push(Run {
                member: w.member,
                from_us: w.at_us,
                to_us: w.at_us,
            }),
        }
    }
    out
}

/// The overlap among `hosts` (each host's writes sorted by send time).
pub fn overlap(hosts: &[&[Landed]]) -> Overlap {
    let runs: Vec<Vec<Run>> = hosts.iter().map(|w| runs(w)).collect();
    let mut writes = 0;
    for (h, ws) in hosts.iter().enumerate() {
        writes += ws
            .iter()
            .filter(|w| {
                runs.iter().enumerate().any(|(g, rs)| {
                    g != h
                        && rs.iter().any(|r| {
                            r.member != w.member && r.from_us <= w.at_us && w.at_us <= r.to_us
                        })
                })
            })
            .count();
    }
    // The union of the pairwise intersections, as +1/-1 events.
    let mut events = BTreeMap::<u64, i64>::new();
    for (h, a) in runs.iter().enumerate() {
        for b in runs.iter().skip(h + 1) {
            for x in a {
                for y in b.iter().filter(|y| y.member != x.member) {
                    let (from, to) = (x.from_us.max(y.from_us), x.to_us.min(y.to_us));
                    if from < to {
                        *events.entry(from).or_default() += 1;
                        *events.entry(to).or_default() -= 1;
                    }
                }
            }
        }
    }
    let (mut depth, mut since, mut total_us) = (0, 0, 0);
    for (at, d) in events {
        if depth == 0 && d > 0 {
            since = at;
        }
        depth += d;
        if depth == 0 {
            total_us += at - since;
        }
    }
    Overlap {
        writes,
        window_ms: total_us as f64 / 1e3,
        kept: hosts.iter().map(|w| w.len()).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(at_us: u64, member: usize) -> Landed {
        Landed { at_us, member }
    }

    #[test]
    fn writes_on_one_member_never_overlap() {
        let a = [w(0, 0), w(10, 0)];
        let b = [w(5, 0), w(20, 0)];
        let o = overlap(&[&a, &b]);
        assert_eq!((o.writes, o.window_ms, o.kept), (0, 0.0, 4));
    }

    #[test]
    fn a_host_on_the_other_member_inside_a_run_overlaps() {
        // h1 on east from 0 to 10 ms, then west; h2 on west from 4 ms.
        let a = [w(0, 0), w(5_000, 0), w(10_000, 0), w(15_000, 1)];
        let b = [w(4_000, 1), w(12_000, 1)];
        let o = overlap(&[&a, &b]);
        // h1's writes at 5 and 10 ms fall in h2's west run (4..12 ms);
        // h2's write at 4 ms falls in h1's east run (0..10 ms).
        assert_eq!(o.writes, 3);
        assert!((o.window_ms - 6.0).abs() < 1e-9, "{}", o.window_ms);
    }
}

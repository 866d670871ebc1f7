//! The daemon under abuse from whoever can reach its endpoints: a member
//! killed during the abuse must still be failed over, in about the time the
//! same run measured without it.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redirector::decide::Reason;

use crate::{
    daemon::DaemonProc,
    topology::{Topology, start_redis},
};

use super::failover::{BOUND, assert_failover_recorded, default_config, started, until_region};

const METRICS: &str = "127.0.0.1:9477";

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// One HTTP/1.0 GET; the whole response, or why not.
fn get(path: &str) -> Result<String, String> {
    let addr: SocketAddr = METRICS.parse().unwrap();
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Detection-to-write of the last flip, which must be a failover.
fn last_failover_ms(d: &DaemonProc) -> u64 {
    let f = d.history().pop().expect("a flip");
    assert_eq!(f.reason, Reason::Failover, "{f:?}");
    f.map_written_ms - f.first_failed_check_ms.expect("first failed check")
}

/// Kills east, waits for west, brings east back and waits for the
/// failback; returns the failover's detection-to-write time.
fn kill_and_recover(t: &mut Topology, d: &DaemonProc) -> u64 {
    t.east.kill_redis();
    until_region(t, "west", BOUND);
    let ms = last_failover_ms(d);
    start_redis(&mut t.east);
    d.wait_active("cache", "east", BOUND * 3);
    ms
}

/// Hundreds of connections that send half a request header and wait: the
/// endpoint holds at most its limit, closes them after its header timeout,
/// answers again, and failover is untouched meanwhile. Without the limits
/// the connections were held forever and took the daemon's descriptors.
#[test]
fn slowloris_on_metrics_holds_a_bounded_number_of_fds_and_failover_still_happens() {
    let mut t = Topology::new(true);
    let d = started(&t, &default_config());
    let pid = d.pid();
    let before = open_fds(pid);
    let held = t.app.run(|| {
        let addr: SocketAddr = METRICS.parse().unwrap();
        (0..300)
            .filter_map(|_| {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").ok()?;
                Some(s)
            })
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_millis(500));
    let during = open_fds(pid);
    eprintln!(
        "{} half-open requests; daemon fds {before} -> {during}",
        held.len()
    );
    let limit = redirector::metrics::LIMITS.connections;
    assert!(
        during <= before + limit + 8,
        "fds grew from {before} to {during} (limit {limit})"
    );
    t.east.kill_redis();
    until_region(&t, "west", BOUND);
    assert_failover_recorded(&d);
    // The header timeout frees the slots while the abusers still hold
    // their sockets open.
    let start = Instant::now();
    while t
        .app
        .run(|| get("/healthz"))
        .map_or(true, |r| !r.contains("ok"))
    {
        assert!(
            start.elapsed() < redirector::metrics::LIMITS.header_timeout * 3,
            "metrics never answered again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(held);
}

/// Writes `n` open flows of made-up clients into the pinned CONNTRACK, as
/// a busy host would have.
fn fill_conntrack(t: &Topology, n: u32) {
    use aya::maps::{HashMap, Map, MapData};
    use redirector_common::{Assignment, CONNTRACK, Endpoint, FibCache, FlowKey, TrackedFlow};
    let data = MapData::from_pin(t.pins.path.join("maps").join(CONNTRACK)).unwrap();
    let mut map: HashMap<MapData, FlowKey, TrackedFlow> =
        Map::from_map_data(data).unwrap().try_into().unwrap();
    let now = redirector::datapath::clock::Jiffies::calibrate(Duration::from_millis(20))
        .unwrap()
        .now()
        .unwrap();
    let vip = Endpoint::from(crate::topology::vip(crate::topology::Family::V4));
    let east = Endpoint::from(t.east.addr(crate::topology::Family::V4));
    for i in 0..n {
        let [a, b, c, e] = i.to_be_bytes();
        let key = FlowKey {
            client: Endpoint::tcp_v4([198, 19, a ^ b, c], [e, 1]),
            vip,
        };
        let flow = TrackedFlow {
            assignment: Assignment {
                member: east,
                generation: 1,
                flags: 0,
            },
            fib: FibCache::EMPTY,
            state: 0,
            seen: now,
        };
        map.insert(key, flow, 0).unwrap();
    }
}

/// Scrapes of /metrics and `status` calls in a loop (what a hostile local
/// user or a misconfigured scraper does) while east is killed, with 250k
/// flows in the table: failover keeps its time. Before, each scrape walked
/// CONNTRACK on the decision thread (0.28 s at 250k flows) and
/// detection-to-write grew to seconds.
#[test]
fn scrape_and_status_storm_does_not_delay_failover() {
    let mut t = Topology::new(true);
    let cfg = default_config().replace("conntrack_entries = 16384", "conntrack_entries = 262144");
    let d = started(&t, &cfg);
    fill_conntrack(&t, 250_000);
    let quiet = kill_and_recover(&mut t, &d);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let storm: Vec<_> = (0..2)
        .map(|i| {
            let (stop, done) = (stop.clone(), done.clone());
            let socket = d.socket.clone();
            let app = t.app.name.clone();
            std::thread::spawn(move || {
                if i == 0 {
                    // This thread only: the metrics port is in the app host.
                    crate::netns::enter(&format!("/run/netns/{app}"));
                }
                let end = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    if i == 0 {
                        let _ = get("/metrics");
                    } else {
                        let _ = std::process::Command::new(crate::daemon::binary())
                            .arg("--socket")
                            .arg(&socket)
                            .arg("status")
                            .output();
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let busy = kill_and_recover(&mut t, &d);
    stop.store(true, Ordering::Relaxed);
    for s in storm {
        s.join().unwrap();
    }
    let n = done.load(Ordering::Relaxed);
    eprintln!(
        "detection to map write: {quiet} ms quiet, {busy} ms under {n} scrapes and status calls ({:.1}x)",
        busy as f64 / quiet.max(1) as f64
    );
    assert!(n > 20, "the storm ran ({n} requests)");
    // Same-run comparison: within 2x of the quiet run, plus one probe
    // interval of slack for a loaded 2-core machine.
    assert!(
        busy <= 2 * quiet + 250,
        "failover took {busy} ms under load, {quiet} ms without"
    );
}

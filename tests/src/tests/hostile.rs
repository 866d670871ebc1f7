//! The daemon under abuse from whoever can reach its endpoints, its logs,
//! its lock or its sockets: a member killed during the abuse must still be
//! failed over, in about the time the same run measured without it, and
//! the process stays up.

use std::{
    fs::File,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::fd::OwnedFd,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redirector::decide::Reason;

use crate::{
    daemon::DaemonProc,
    pins::PinDir,
    topology::{Topology, start_redis},
};

use super::failover::{
    BOUND, assert_failover_recorded, default_config, scrape_metrics, started, until_region,
};

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
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
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
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
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

/// The value of the un-labelled metric `name` in a /metrics text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// Starts the daemon with stderr on `stderr`, runs `after_start`, kills
/// east's redis and asserts the failover happened and the daemon lives.
fn fails_over_with_stderr_on(stderr: Stdio, after_start: impl FnOnce()) {
    let mut t = Topology::new(true);
    let mut d = DaemonProc::start_with_stderr(&t, &default_config(), stderr);
    d.wait_active("cache", "east", BOUND);
    until_region(&t, "east", BOUND);
    d.wait_east_up();
    after_start();
    t.east.kill_redis();
    d.wait_active("cache", "west", BOUND);
    until_region(&t, "west", BOUND);
    assert_failover_recorded(&d);
    assert!(d.alive(), "the daemon exited");
    let text = scrape_metrics(&t);
    assert!(
        metric(&text, "redirector_log_write_errors_total") > 0,
        "the failed log writes were not counted:\n{text}"
    );
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn failover_goes_on_after_the_log_pipe_reader_goes_away() {
    let (read, write) = std::io::pipe().expect("pipe");
    let read: OwnedFd = read.into();
    fails_over_with_stderr_on(Stdio::from(OwnedFd::from(write)), move || {
        // The log shipper goes away: every later write gets EPIPE.
        drop(read);
    });
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn failover_goes_on_with_stderr_on_a_full_disk() {
    let full = File::options()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    fails_over_with_stderr_on(Stdio::from(full), || {});
}

/// A refused daemon exits non-zero and names the running one's PID.
fn assert_refused_naming(out: &std::process::Output, d: &DaemonProc, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second daemon exited 0:\n{err}");
    assert!(
        err.contains(&format!("PID {}", d.pid())) && err.contains(what),
        "the refusal does not name {what} and the first daemon's PID {}:\n{err}",
        d.pid()
    );
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn a_second_daemon_on_the_same_config_is_refused_and_the_first_still_fails_over() {
    let mut t = Topology::new(true);
    let d = started(&t, &default_config());
    let out = d.run_another(&d.config);
    assert_refused_naming(&out, &d, "pin path");
    assert!(d.socket.exists(), "the first daemon's socket was deleted");
    t.east.kill_redis();
    d.wait_active("cache", "west", BOUND);
    until_region(&t, "west", BOUND);
    assert_failover_recorded(&d);
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn a_second_daemon_on_the_same_admin_socket_is_refused_and_the_socket_kept() {
    let t = Topology::new(true);
    let d = started(&t, &default_config());
    // Another pin path (cleaned up if the daemon got that far), no metrics
    // port: only the socket is shared.
    let other = PinDir::new("other");
    let text = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace(
            &t.pins.path.display().to_string(),
            &other.path.display().to_string(),
        )
        .replace("metrics = \"127.0.0.1:9477\"", "metrics = \"off\"");
    let config = d.dir.join("other.toml");
    std::fs::write(&config, text).unwrap();
    let out = d.run_another(&config);
    assert_refused_naming(&out, &d, "admin socket");
    let s = d.status();
    assert_eq!(
        s.pin_path,
        t.pins.path.display().to_string(),
        "another daemon answers"
    );
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn teardown_refuses_while_a_daemon_runs_and_works_after_it_stopped() {
    let t = Topology::new(true);
    let mut d = started(&t, &default_config());
    let config = d.config.display().to_string();
    let out = d.cli(&["teardown", "--config", &config]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "teardown ran under a live daemon:\n{err}"
    );
    assert!(
        err.contains(&format!("PID {}", d.pid())) && err.contains("--force"),
        "the refusal names neither the daemon's PID nor --force:\n{err}"
    );
    assert!(t.pins.path.exists(), "pins were removed");
    until_region(&t, "east", BOUND);
    d.stop();
    assert!(
        !redirector::lock::pin_lock_path(&t.pins.path).exists(),
        "a clean stop left the lock file"
    );
    let out = d.cli(&["teardown", "--config", &config]);
    assert!(
        out.status.success(),
        "teardown after stop failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The daemon's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Sends up to 100 MiB without a newline on `s` and returns the first
/// answer line (empty if none came within 20 s).
fn flood(mut s: std::os::unix::net::UnixStream) -> String {
    use std::io::BufRead as _;
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        // The daemon closes once the request is too long: EPIPE here.
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut answer = String::new();
    let _ = std::io::BufReader::new(&s).read_line(&mut answer);
    answer
}

/// 32 MiB: far above what a bounded request costs, far below 100 MiB.
const RSS_GROWTH_BOUND_KIB: u64 = 32 * 1024;

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn a_huge_admin_request_is_cut_off_and_failover_goes_on() {
    let mut t = Topology::new(true);
    let d = started(&t, &default_config());
    let before = peak_rss_kib(d.pid());
    let s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    let answer = flood(s);
    assert!(
        answer.contains("longer than"),
        "a 100 MiB request line was not refused: {answer:?}"
    );
    let grown = peak_rss_kib(d.pid()) - before;
    assert!(grown < RSS_GROWTH_BOUND_KIB, "peak RSS grew by {grown} KiB");
    t.east.kill_redis();
    d.wait_active("cache", "west", BOUND);
    assert_failover_recorded(&d);
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn a_huge_request_from_a_non_root_peer_is_bounded_too() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = Topology::new(true);
    let d = started(&t, &default_config());
    // Open the file mode so only SO_PEERCRED stands in the way.
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = peak_rss_kib(d.pid());
    let socket = d.socket.clone();
    let answer = std::thread::spawn(move || {
        // Thread-local credentials (the raw syscall, not libc's setresuid).
        // SAFETY: plain syscall with valid arguments.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(rc, 0);
        flood(std::os::unix::net::UnixStream::connect(&socket).unwrap())
    })
    .join()
    .unwrap();
    assert!(answer.contains("permission denied"), "{answer:?}");
    let grown = peak_rss_kib(d.pid()) - before;
    assert!(grown < RSS_GROWTH_BOUND_KIB, "peak RSS grew by {grown} KiB");
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn an_idle_admin_connection_is_closed() {
    let t = Topology::new(true);
    let d = started(&t, &default_config());
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    // Generous: the daemon closes after 5 s.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 16];
    // A read with a timeout is not restarted after a signal (another
    // test's child exiting): EINTR is read again, not an answer.
    let start = Instant::now();
    let read = loop {
        match s.read(&mut buf) {
            Err(e)
                if e.kind() == std::io::ErrorKind::Interrupted
                    && start.elapsed() < Duration::from_secs(30) => {}
            other => break other,
        }
    };
    match read {
        Ok(0) => {}
        other => panic!("an idle connection was kept open: {other:?}"),
    }
    assert!(d.status().services[0].active.is_some());
}

/// A reload whose only fault is what `run` reads beyond the file (a
/// missing password file, an unset variable) is rejected before anything
/// changes: the service keeps running and a killed member is still failed
/// over. Before, every changed service was stopped first, `status` showed
/// no services and nothing failed over. `validate` refuses the same file.
#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn reload_with_an_unreadable_secret_changes_nothing_and_failover_still_happens() {
    let mut t = Topology::new(true);
    let d = started(&t, &default_config());
    let good = std::fs::read_to_string(&d.config).unwrap();
    let missing = d.dir.join("no-such-password");
    for broken in [
        format!("password_file = \"{}\"", missing.display()),
        "password_env = \"REDIRECTOR_TEST_SURELY_UNSET\"".to_string(),
    ] {
        let text = good.replace("fall = 2", &format!("fall = 2\n{broken}"));
        std::fs::write(&d.config, &text).unwrap();
        let v = std::process::Command::new(crate::daemon::binary())
            .args(["validate", "--config"])
            .arg(&d.config)
            .output()
            .unwrap();
        assert!(!v.status.success(), "validate accepted {broken}");
        let out = d.cli(&["reload"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "reload accepted {broken}");
        assert!(err.contains("cache"), "names the service: {err}");
        let s = d.status();
        assert_eq!(s.services.len(), 1, "the service still runs after {broken}");
        assert_eq!(s.services[0].active.as_deref(), Some("east"));
    }
    t.east.kill_redis();
    until_region(&t, "west", BOUND);
    assert_failover_recorded(&d);
}

/// The status code of a GET on the metrics endpoint, if it answered.
fn code(t: &Topology, path: &'static str) -> Option<String> {
    let r = t.app.run(move || get(path)).ok()?;
    r.split_whitespace().nth(1).map(String::from)
}

/// West's probe task panics on its first 5 starts (fault injection, a
/// debug-build-only hook). The supervisor restarts the service after each
/// death (backoff 100 ms doubling, about 3 s down in all): meanwhile
/// /healthz and /readyz say 503; afterwards both say 200, status and
/// /metrics show 5 deaths of `service:cache` running again, and a killed
/// member is failed over to the restarted probe's member.
#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn a_panicking_probe_task_is_restarted_reported_and_failover_goes_on() {
    let mut t = Topology::new(true);
    let d = DaemonProc::start_with_env(
        &t,
        &default_config(),
        &[(
            "REDIRECTOR_FAULT_INJECTION_PROBE_PANICS",
            "198.18.2.10:6379=5",
        )],
    );
    let start = Instant::now();
    let mut saw_down = false;
    loop {
        let (h, r) = (code(&t, "/healthz"), code(&t, "/readyz"));
        let ok = Some("200".to_string());
        if h.as_deref() == Some("503") && r.as_deref() == Some("503") {
            saw_down = true;
        }
        if saw_down && h == ok && r == ok {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "saw 503 while down: {saw_down}; now /healthz {h:?}, /readyz {r:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = d.status();
    let task = s
        .tasks
        .iter()
        .find(|x| x.name == "service:cache")
        .unwrap_or_else(|| panic!("no service task in {:?}", s.tasks));
    assert!(task.running, "{task:?}");
    assert_eq!(task.deaths, 5, "{task:?}");
    assert!(
        task.last_error
            .as_deref()
            .is_some_and(|e| e.contains("fault injection")),
        "{task:?}"
    );
    let text = scrape_metrics(&t);
    assert!(
        text.contains("redirector_task_deaths_total{task=\"service:cache\"} 5"),
        "deaths not counted:\n{text}"
    );
    assert!(d.log_text().contains("supervised task died"));
    d.wait_active("cache", "east", BOUND);
    t.east.kill_redis();
    d.wait_active("cache", "west", BOUND);
    until_region(&t, "west", BOUND);
    assert_failover_recorded(&d);
}

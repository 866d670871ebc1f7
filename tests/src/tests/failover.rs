//! The daemon end to end: real `redirector run` in the application host's
//! namespace, real redis-server members, faults injected for real.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redirector::decide::{Health, Reason};

use crate::{
    daemon::DaemonProc,
    netns::NetNs,
    topology::{Family, Topology, region_via_vip, start_redis, vip},
};

pub(super) const BOUND: Duration = Duration::from_secs(5);

pub(super) use crate::topology::{cache_config as config, until_region_from};

pub(super) fn default_config() -> String {
    config("", "kind = \"redis-ping\"")
}

/// Polls new connections through the VIP (every 20 ms, bounded) until
/// `want` answers; returns how long that took.
pub(super) fn until_region(t: &Topology, want: &str, within: Duration) -> Duration {
    until_region_from(&t.app, want, within)
}

pub(super) fn started(t: &Topology, cfg: &str) -> DaemonProc {
    let d = DaemonProc::start(t, cfg);
    d.wait_active("cache", "east", BOUND);
    until_region(t, "east", BOUND);
    d.wait_east_up();
    d
}

fn last_flip(d: &DaemonProc) -> redirector::status::FlipRecord {
    d.history().pop().expect("a flip was recorded")
}

pub(super) fn assert_failover_recorded(d: &DaemonProc) {
    let f = last_flip(d);
    assert_eq!(
        (f.from.as_deref(), f.to.as_str(), f.reason),
        (Some("east"), "west", Reason::Failover)
    );
    let first = f
        .first_failed_check_ms
        .expect("first failed check recorded");
    let down = f.marked_down_ms.expect("down decision recorded");
    assert!(first <= down && down <= f.map_written_ms, "{f:?}");
    eprintln!(
        "first failed check -> map write: {} ms",
        f.map_written_ms - first
    );
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn member_process_killed_fails_over() {
    let mut t = Topology::new(true);
    let d = started(&t, &default_config());
    t.east.kill_redis();
    let took = until_region(&t, "west", BOUND);
    eprintln!("failover after kill: {took:?}");
    assert_failover_recorded(&d);
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn member_hung_with_sigstop_fails_over() {
    let t = Topology::new(true);
    let d = started(&t, &default_config());
    t.east.signal_redis(libc::SIGSTOP);
    let took = until_region(&t, "west", BOUND);
    eprintln!("failover after SIGSTOP: {took:?}");
    assert_failover_recorded(&d);
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn member_link_down_fails_over() {
    let t = Topology::new(true);
    let d = started(&t, &default_config());
    t.east.ns.cmd("ip link set eth0 down");
    until_region(&t, "west", BOUND);
    assert_failover_recorded(&d);
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn member_silently_dropping_packets_fails_over_and_open_connection_fails_fast() {
    let t = Topology::new(true);
    let d = started(&t, &default_config());
    let mut open = t.connect(vip(Family::V4)).unwrap();
    assert_eq!(open.get("region").unwrap().as_deref(), Some("east"));
    t.east.ns.cmd("nft add table inet rdt");
    t.east
        .ns
        .cmd("nft add chain inet rdt input { type filter hook input priority 0 ; policy drop ; }");
    let took = until_region(&t, "west", BOUND);
    eprintln!("failover after silent drop: {took:?}");
    assert_failover_recorded(&d);
    // The open connection to the black-holed member is reset (steered to
    // west, which answers RST), not left to retransmission timeouts.
    let started = Instant::now();
    let err = open
        .get("region")
        .expect_err("connection to a dead member must fail");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}: {err}",
        started.elapsed()
    );
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn flapping_member_causes_a_bounded_number_of_flips() {
    let t = Topology::new(true);
    let d = started(&t, &default_config());
    t.east.ns.cmd("nft add table inet rdt");
    t.east
        .ns
        .cmd("nft add chain inet rdt input { type filter hook input priority 0 ; }");
    // Drop east's traffic for 300 ms out of every 600 ms, for 6 s.
    let end = Instant::now() + Duration::from_secs(6);
    while Instant::now() < end {
        t.east.ns.cmd("nft add rule inet rdt input drop");
        std::thread::sleep(Duration::from_millis(300));
        t.east.ns.cmd("nft flush chain inet rdt input");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Whether a 300 ms drop is long enough to be confirmed depends on where
    // the probes fall (a hang is confirmed timeout + fast_interval = 300 ms
    // after the first unanswered probe), so the number of failovers varies.
    // What must hold is the damping: every failback comes at least
    // failback_delay (2 s) after east was marked down, so there is at most
    // one failover and one failback per 2 s, far fewer than the 10 flaps.
    let history = d.history();
    let mut last_down = None;
    for f in &history {
        match f.reason {
            Reason::Failover => last_down = f.marked_down_ms,
            Reason::Failback => {
                let down = last_down.expect("a failback follows a failover");
                assert!(
                    f.map_written_ms >= down + 2000,
                    "failback {} ms after east was marked down: {history:?}",
                    f.map_written_ms - down
                );
            }
            _ => {}
        }
    }
    let flips = history.len();
    // Initial + at most three failover/failback pairs in 6 s.
    assert!(flips <= 1 + 2 * 3, "{flips} flips: {history:?}");
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn all_members_down_fails_static_then_recovers() {
    let mut t = Topology::new(true);
    let d = started(&t, &default_config());
    t.east.kill_redis();
    t.west.kill_redis();
    let start = Instant::now();
    loop {
        let s = d.status();
        let svc = &s.services[0];
        if svc.degraded {
            // Fail static: the VIP still points at a member.
            assert!(svc.active.is_some());
            assert!(svc.members.iter().all(|m| m.health == Health::Down));
            break;
        }
        assert!(start.elapsed() < BOUND, "not degraded: {svc:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let flips_before = d.history().len();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        d.history().len(),
        flips_before,
        "no flapping while everything is down"
    );
    start_redis(&mut t.west);
    until_region(&t, "west", BOUND);
    let start = Instant::now();
    while d.status().services[0].degraded {
        assert!(
            start.elapsed() < BOUND,
            "still degraded after west came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn automatic_failback_after_delay_brings_pooled_clients_back() {
    let mut t = Topology::new(true);
    let d = started(&t, &default_config());
    t.east.kill_redis();
    until_region(&t, "west", BOUND);
    // A pooled client: one long-lived connection, on west now.
    let mut pooled = t.connect(vip(Family::V4)).unwrap();
    assert_eq!(pooled.get("region").unwrap().as_deref(), Some("west"));
    start_redis(&mut t.east);
    let back = Instant::now();
    d.wait_active("cache", "east", Duration::from_secs(8));
    assert!(
        back.elapsed() >= Duration::from_secs(2),
        "failback before the delay"
    );
    assert_eq!(last_flip(&d).reason, Reason::Failback);
    // It keeps west during the drain period, is reset after it, and its
    // reconnect lands on east.
    assert_eq!(pooled.get("region").unwrap().as_deref(), Some("west"));
    let deadline = Instant::now() + BOUND;
    while pooled.get("region").is_ok() {
        assert!(Instant::now() < deadline, "pooled connection never reset");
        std::thread::sleep(Duration::from_millis(100));
    }
    pooled = t.connect(vip(Family::V4)).unwrap();
    assert_eq!(pooled.get("region").unwrap().as_deref(), Some("east"));
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn manual_failback_waits_for_the_operator() {
    let mut t = Topology::new(true);
    let d = started(
        &t,
        &config("failback = \"manual\"", "kind = \"redis-ping\""),
    );
    t.east.kill_redis();
    until_region(&t, "west", BOUND);
    start_redis(&mut t.east);
    // Well past rise + failback_delay: still west.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(d.status().services[0].active.as_deref(), Some("west"));
    let out = d.cli(&["release", "cache"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until_region(&t, "east", BOUND);
    assert_eq!(last_flip(&d).reason, Reason::Release);
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn switchover_and_drain_move_traffic_and_release_returns() {
    let t = Topology::new(true);
    let d = started(&t, &default_config());
    assert!(d.cli(&["switchover", "cache", "west"]).status.success());
    until_region(&t, "west", BOUND);
    assert_eq!(d.status().services[0].pinned.as_deref(), Some("west"));
    assert!(d.cli(&["release", "cache"]).status.success());
    until_region(&t, "east", BOUND);
    assert!(d.cli(&["drain", "cache", "east"]).status.success());
    until_region(&t, "west", BOUND);
    assert!(d.cli(&["undrain", "cache", "east"]).status.success());
    until_region(&t, "east", BOUND);
    let bad = d.cli(&["switchover", "cache", "nosuch"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nosuch"));
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn daemon_killed_under_load_loses_no_request_and_restart_adopts_state() {
    let t = Arc::new(Topology::new(true));
    let mut d = started(&t, &default_config());
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (t, stop, ok, failed) = (t.clone(), stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let mut kept = t.connect(vip(Family::V4)).expect("connect");
            let end = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                // One request on the kept connection, one on a new one.
                let a = kept.get("region");
                let b = t.connect(vip(Family::V4)).and_then(|mut c| c.get("region"));
                for r in [a, b] {
                    match r {
                        Ok(Some(r)) if r == "east" => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    d.kill();
    std::thread::sleep(Duration::from_secs(1));
    let during = ok.load(Ordering::Relaxed);
    d.spawn();
    let s = d.status();
    assert_eq!(s.services[0].active.as_deref(), Some("east"), "adopted");
    assert!(
        s.attachments.iter().all(|a| a.contains("adopted")),
        "{:?}",
        s.attachments
    );
    // The status counts flows only after its first sweep; read the map.
    let flows = redirector::datapath::Maps::open(&t.pins.path)
        .and_then(|m| m.flows())
        .expect("read CONNTRACK");
    assert!(!flows.is_empty(), "conntrack kept");
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert!(
        ok.load(Ordering::Relaxed) > during,
        "requests kept flowing after restart"
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no failed request");
    // The restarted daemon made no flip of its own.
    assert!(d.history().is_empty(), "{:?}", d.history());
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn invalid_reload_is_rejected_and_the_old_config_keeps_serving() {
    let t = Topology::new(true);
    let mut d = started(&t, &default_config());
    let good = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, good.replace("rise = 3", "rise = 0")).unwrap();
    let out = d.cli(&["reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rise") && err.contains("redirector.toml:"),
        "{err}"
    );
    // SIGHUP with the same bad file: logged, still serving.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(d.log_text().contains("reload rejected"), "{}", d.log_text());
    assert_eq!(region_via_vip(&t.app).as_deref(), Some("east"));
    assert!(d.cli(&["status"]).status.success());
    // A valid change applies.
    std::fs::write(
        &d.config,
        good.replace("failback_delay = \"2s\"", "failback_delay = \"3s\""),
    )
    .unwrap();
    let out = d.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(region_via_vip(&t.app).as_deref(), Some("east"));
    assert_eq!(
        d.stop().map(|s| s.success()),
        Some(true),
        "SIGTERM exits cleanly"
    );
    // Stopped daemon: the data path stays and traffic flows.
    assert_eq!(region_via_vip(&t.app).as_deref(), Some("east"));
    let out = d.cli(&["status"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn auth_protected_members_are_checked_and_a_wrong_password_is_reported() {
    let t = Topology::with_redis_args(true, &["--requirepass", "s3cret-pw"]);
    let dir = std::env::temp_dir().join(crate::unique("pw"));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, "s3cret-pw\n").unwrap();
    let check = format!(
        "kind = \"redis-ping\"\npassword_file = \"{}\"",
        pw.display()
    );
    let d = DaemonProc::start(&t, &config("", &check));
    d.wait_active("cache", "east", BOUND);
    let deadline = Instant::now() + BOUND;
    while d.status().services[0]
        .members
        .iter()
        .any(|m| m.health != Health::Up)
    {
        assert!(
            Instant::now() < deadline,
            "members not up with the right password"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(d);
    std::fs::write(&pw, "wrong-pw\n").unwrap();
    let d = DaemonProc::start(&t, &config("", &check));
    let deadline = Instant::now() + BOUND;
    loop {
        let s = d.status();
        let m = &s.services[0].members[0];
        if m.health == Health::Down {
            let c = m.last_check.as_ref().unwrap();
            let text = format!("{:?} {:?}", c.error, c.code).to_lowercase();
            assert!(
                text.contains("auth") || text.contains("wrongpass"),
                "{text}"
            );
            assert!(
                !text.contains("wrong-pw") && !text.contains("s3cret"),
                "secret leaked: {text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "wrong password not reported");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!d.log_text().contains("wrong-pw"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// GET /metrics from the daemon in the app namespace.
pub(super) fn scrape_metrics(t: &Topology) -> String {
    scrape_metrics_in(&t.app)
}

/// GET /metrics from the daemon running in `ns` (its 127.0.0.1:9477).
pub(super) fn scrape_metrics_in(ns: &NetNs) -> String {
    ns.run(|| {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect("127.0.0.1:9477").unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn metrics_endpoint_reports_health_active_member_and_flips() {
    let mut t = Topology::new(true);
    let d = started(&t, &default_config());
    t.east.kill_redis();
    until_region(&t, "west", BOUND);
    let text = scrape_metrics(&t);
    for want in [
        "redirector_member_up{service=\"cache\",member=\"east\"} 0",
        "redirector_active_member{service=\"cache\",member=\"west\"} 1",
        "redirector_flips_total{service=\"cache\",reason=\"failover\"} 1",
        "redirector_check_duration_seconds_count",
        "redirector_detection_to_write_seconds_count{service=\"cache\"} 1",
        "redirector_datapath_packets{counter=\"translated\"}",
    ] {
        assert!(text.contains(want), "missing {want} in:\n{text}");
    }
    drop(d);
}

#[test]
#[ignore = "needs root: network namespaces, the daemon's BPF programs and setresuid"]
fn admin_socket_refuses_a_peer_that_is_not_root() {
    let t = Topology::new(true);
    let d = started(&t, &default_config());
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Open the file mode so only SO_PEERCRED stands in the way.
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let socket = d.socket.clone();
    let answer = std::thread::spawn(move || {
        // Thread-local credentials: the raw syscall, not libc's setresuid,
        // which would change every thread of the test process.
        // SAFETY: plain syscall with valid arguments.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(rc, 0);
        redirector::admin::request(
            &socket,
            &redirector::admin::Request::Switchover {
                service: "cache".into(),
                member: "west".into(),
            },
            Duration::from_secs(5),
        )
    })
    .join()
    .unwrap()
    .expect("an answer");
    assert!(!answer.ok);
    assert!(answer.error.unwrap().contains("permission denied"));
    assert_eq!(
        d.status().services[0].active.as_deref(),
        Some("east"),
        "nothing flipped"
    );
}

#[test]
fn validate_names_file_line_and_field_and_cli_says_when_daemon_is_down() {
    let dir = std::env::temp_dir().join(crate::unique("validate"));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.toml");
    let text = default_config()
        .replace("{pin_path}", "/sys/fs/bpf/rdt-unused")
        .replace("{socket}", "/run/rdt-unused.sock")
        .replace("rise = 3", "rise = 0");
    std::fs::write(&f, text).unwrap();
    let out = std::process::Command::new(crate::daemon::binary())
        .args(["validate", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:") && err.contains("rise"), "{err}");
    let out = std::process::Command::new(crate::daemon::binary())
        .args(["--socket"])
        .arg(dir.join("none.sock"))
        .arg("status")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("daemon is not running"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs root: network namespaces"]
fn check_verb_runs_one_round_without_the_kernel() {
    let mut t = Topology::new(true);
    let dir = std::env::temp_dir().join(crate::unique("check"));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("check.toml");
    let text = default_config()
        .replace("{pin_path}", "/sys/fs/bpf/rdt-unused")
        .replace("{socket}", "/run/rdt-unused.sock");
    std::fs::write(&f, text).unwrap();
    let run = |t: &Topology| {
        std::process::Command::new("ip")
            .args(["netns", "exec", &t.app.name])
            .arg(crate::daemon::binary())
            .args(["check", "--config"])
            .arg(&f)
            .output()
            .unwrap()
    };
    let out = run(&t);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("east") && text.contains("UP"), "{text}");
    t.west.kill_redis();
    let out = run(&t);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("west") && l.contains("DOWN")),
        "{text}"
    );
    assert!(!t.pins.path.exists(), "check touched no pins");
    let _ = std::fs::remove_dir_all(&dir);
}

//! The daemon under abuse (issue 10): whatever a careless operator or a
//! hostile local user does to its logs, config, lock or sockets, a member
//! killed meanwhile is still failed over and the process stays up.

use std::{fs::File, os::fd::OwnedFd, process::Stdio, time::Duration};

use super::failover::{
    BOUND, assert_failover_recorded, default_config, scrape_metrics, started, until_region,
};
use crate::{daemon::DaemonProc, pins::PinDir, topology::Topology};

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
fn failover_goes_on_after_the_log_pipe_reader_goes_away() {
    let (read, write) = std::io::pipe().expect("pipe");
    let read: OwnedFd = read.into();
    fails_over_with_stderr_on(Stdio::from(OwnedFd::from(write)), move || {
        // The log shipper goes away: every later write gets EPIPE.
        drop(read);
    });
}

#[test]
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
    use std::io::{BufRead as _, Write as _};
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
fn an_idle_admin_connection_is_closed() {
    use std::io::Read as _;
    let t = Topology::new(true);
    let d = started(&t, &default_config());
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    // Generous: the daemon closes after 5 s.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        other => panic!("an idle connection was kept open: {other:?}"),
    }
    assert!(d.status().services[0].active.is_some());
}

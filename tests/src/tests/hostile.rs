//! The daemon under abuse (issue 10): whatever a careless operator or a
//! hostile local user does to its logs, config, lock or sockets, a member
//! killed meanwhile is still failed over and the process stays up.

use std::{fs::File, os::fd::OwnedFd, process::Stdio};

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

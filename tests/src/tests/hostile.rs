//! The daemon under abuse (issue 10): whatever a careless operator or a
//! hostile local user does to its logs, config, lock or sockets, a member
//! killed meanwhile is still failed over and the process stays up.

use std::{fs::File, os::fd::OwnedFd, process::Stdio};

use super::failover::{
    BOUND, assert_failover_recorded, default_config, scrape_metrics, until_region,
};
use crate::{daemon::DaemonProc, topology::Topology};

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

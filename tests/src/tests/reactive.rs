//! Reactive health end to end: the application's own traffic is a health
//! check. With scheduled checks 30 s apart, only the data path's signals
//! can explain a failover within seconds of a fault.

use std::time::{Duration, Instant};

use super::failover::{BOUND, config, scrape_metrics, started, until_region};
use crate::topology::Topology;

/// TCP checks 30 s apart (no kept connection whose loss would probe
/// early), confirmed by one result, failed by two.
fn slow_checks(observe: &str) -> String {
    config(
        "failback = \"manual\"",
        &format!("kind = \"tcp\"\n{observe}"),
    )
    .replace("interval = \"250ms\"", "interval = \"30s\"")
    .replace("fast_interval = \"50ms\"", "fast_interval = \"30s\"")
    .replace("rise = 3", "rise = 1")
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn killed_member_with_live_traffic_fails_over_on_the_first_refused_syn() {
    let mut t = Topology::new(true);
    let d = started(&t, &slow_checks(""));
    t.east.kill_redis();
    // New connections through the VIP: the first SYN to east is refused.
    // The next scheduled probe is 30 s away, so within BOUND (5 s) nothing
    // but the signal, and the probe it asks for, can find east down.
    let took = until_region(&t, "west", BOUND);
    eprintln!("failover on a refused SYN: {took:?} after the kill");
    let f = d.history().pop().expect("a flip was recorded");
    assert_eq!((f.from.as_deref(), f.to.as_str()), (Some("east"), "west"));
    assert!(
        f.signals.get("refused").copied().unwrap_or(0) >= 1,
        "the flip does not say a refused SYN was seen: {f:?}"
    );
    let metrics = scrape_metrics(&t);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("redirector_reactive_signals_total")
                && l.contains("member=\"east\"")
                && l.contains("kind=\"refused\"")),
        "no refused signal in /metrics:\n{metrics}"
    );
}

#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn with_observe_off_a_killed_member_waits_for_the_scheduled_checks() {
    let mut t = Topology::new(true);
    let d = started(&t, &slow_checks("observe = \"off\""));
    t.east.kill_redis();
    // Refused connections for a while: no check is due, nothing moves.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let _ = t.connect(crate::topology::vip(crate::topology::Family::V4));
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = d.status();
    assert_eq!(s.services[0].active.as_deref(), Some("east"));
    assert!(
        d.history().iter().all(|f| f.to != "west"),
        "{:?}",
        d.history()
    );
}

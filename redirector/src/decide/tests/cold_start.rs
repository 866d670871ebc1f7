//! Cold start: a fresh daemon holds the preferred member until the first
//! verdicts are in, moves only to a member confirmed Up, and a member's
//! first Up since start skips `failback_delay`.

use super::*;

/// Starts a fresh machine on the preferred member, as the service task's
/// first tick does.
fn started(failback: Failback) -> (ServiceMachine, Clock) {
    let (mut m, c) = start(failback);
    let f = m.on_tick(c.0).expect("initial assignment");
    assert_eq!((f.from, f.to, f.reason), (None, EAST, Reason::Initial));
    (m, c)
}

/// The report that led to this rule: an IPv6 service on a fresh topology.
/// East's first two probes time out during neighbour discovery (timeout
/// 250 ms, the second one sent at fast_interval), east is marked Down;
/// before, the daemon moved to west at once and stayed there for the whole
/// failback_delay (30 s) although east answered a second later.
#[test]
fn ipv6_neighbour_discovery_timeouts_at_start_do_not_keep_the_service_off_the_preferred_member() {
    let (mut m, mut c) = started(Failback::Auto);
    // 250 ms: east's first probe times out, west's first probe passes.
    assert_eq!(m.on_check(EAST, false, c.at(250)), None);
    assert_eq!(m.on_check(WEST, true, c.at(0)), None);
    // 300 ms: east's second probe times out: Down. West has no verdict yet,
    // so the service stays on east (before: failover to an unconfirmed west).
    assert_eq!(m.on_check(EAST, false, c.at(50)), None);
    assert_eq!(m.members[EAST].health, Health::Down);
    assert_eq!(m.active, Some(EAST), "held on the preferred member");
    assert!(m.settling());
    // West confirmed Up (3 passes): the first member confirmed Up serves.
    assert_eq!(m.on_check(WEST, true, c.at(200)), None);
    let f = m.on_check(WEST, true, c.at(250)).expect("settles on west");
    assert_eq!(
        (f.from, f.to, f.reason),
        (Some(EAST), WEST, Reason::Startup)
    );
    // Neighbour discovery is done: east answers from about 1 s on.
    let healthy = c.at(250);
    assert_eq!(m.on_check(EAST, true, healthy), None);
    assert_eq!(m.on_check(EAST, true, c.at(50)), None);
    let f = m
        .on_check(EAST, true, c.at(50))
        .expect("east takes over as soon as it is Up, not 30 s later");
    assert_eq!(
        (f.from, f.to, f.reason),
        (Some(WEST), EAST, Reason::Startup)
    );
    assert!(f.decided_at.duration_since(healthy) < Duration::from_secs(1));
    // West's flows get the planned drain, then are reset.
    assert!(!m.reset_members(f.decided_at).contains(&WEST));
    assert!(
        m.reset_members(f.decided_at + Duration::from_secs(10))
            .contains(&WEST)
    );
}

#[test]
fn cold_start_holds_the_preferred_member_while_its_first_probes_time_out() {
    let (mut m, mut c) = started(Failback::Auto);
    assert!(feed(&mut m, &mut c, EAST, false, 2).is_empty());
    assert_eq!(m.members[EAST].health, Health::Down);
    assert_eq!(m.active, Some(EAST));
    assert!(!m.degraded(), "west, not yet checked, is still eligible");
    assert!(
        !m.reset_members(c.0).contains(&EAST),
        "the active member is never reset"
    );
    // East recovers within the window: nothing ever moved.
    assert!(feed(&mut m, &mut c, EAST, true, 3).is_empty());
    assert_eq!(m.active, Some(EAST));
    assert!(!m.settling());
}

#[test]
fn cold_start_moves_only_to_a_confirmed_up_member() {
    let (mut m, mut c) = started(Failback::Auto);
    let first_fail = c.0 + Duration::from_millis(250);
    feed(&mut m, &mut c, EAST, false, 2);
    // The window ends with west still unconfirmed: stay on east.
    assert_eq!(m.on_tick(c.at(1000)), None);
    assert_eq!(m.active, Some(EAST));
    assert!(m.settling());
    // Two passes are not Up yet.
    assert!(feed(&mut m, &mut c, WEST, true, 2).is_empty());
    let f = m
        .on_check(WEST, true, c.at(250))
        .expect("west confirmed Up");
    assert_eq!(
        (f.from, f.to, f.reason),
        (Some(EAST), WEST, Reason::Startup)
    );
    // Recorded like a failover: east failed.
    assert_eq!(f.first_failed_check, Some(first_fail));
    assert_eq!(f.trigger, Some(Trigger::Checks));
    assert!(m.reset_members(f.decided_at).contains(&EAST));
    assert!(!m.settling());
}

#[test]
fn cold_start_settles_early_when_every_member_has_a_verdict() {
    let (mut m, mut c) = started(Failback::Auto);
    let window_end = c.0 + SETTLE;
    // East Down and west Up, both within 300 ms: no need to wait 750 ms.
    m.on_check(EAST, false, c.at(100));
    m.on_check(WEST, true, c.at(0));
    m.on_check(WEST, true, c.at(100));
    m.on_check(EAST, false, c.at(0));
    let f = m.on_check(WEST, true, c.at(100)).expect("settled on west");
    assert!(f.decided_at < window_end);
    assert_eq!((f.to, f.reason), (WEST, Reason::Startup));

    // And a preferred member Up at once settles on it, other verdicts or not.
    let (mut m, mut c) = started(Failback::Auto);
    assert!(feed(&mut m, &mut c, EAST, true, 3).is_empty());
    assert!(!m.settling());
    assert_eq!(m.next_deadline(c.0), None);
}

#[test]
fn preferred_members_first_up_after_start_takes_over_without_failback_delay() {
    let (mut m, mut c) = started(Failback::Auto);
    // East is down at start; west serves.
    feed(&mut m, &mut c, EAST, false, 2);
    feed(&mut m, &mut c, WEST, true, 3);
    assert_eq!(m.active, Some(WEST));
    // Ten minutes later east comes up for the first time since start.
    c.at(600_000);
    let f = feed(&mut m, &mut c, EAST, true, 3);
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].from, f[0].to, f[0].reason),
        (Some(WEST), EAST, Reason::Startup)
    );
    assert_eq!(f[0].trigger, None, "west did not fail");
}

#[test]
fn a_second_recovery_waits_failback_delay() {
    let (mut m, mut c) = started(Failback::Auto);
    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, true, 3);
    feed(&mut m, &mut c, EAST, false, 2);
    assert_eq!(m.active, Some(WEST));
    // East's second Up since start: failback_delay applies.
    assert!(feed(&mut m, &mut c, EAST, true, 3).is_empty());
    let up = m.members[EAST].up_since.unwrap();
    assert_eq!(m.on_tick(up + Duration::from_secs(29)), None);
    let f = m.on_tick(up + Duration::from_secs(30)).expect("failback");
    assert_eq!((f.to, f.reason), (EAST, Reason::Failback));
}

#[test]
fn a_first_up_after_settling_on_west_also_skips_the_delay_once() {
    // East down at start, west serves; east's first Up takes over, its
    // second one waits.
    let (mut m, mut c) = started(Failback::Auto);
    feed(&mut m, &mut c, EAST, false, 2);
    feed(&mut m, &mut c, WEST, true, 3);
    assert_eq!(
        feed(&mut m, &mut c, EAST, true, 3)[0].reason,
        Reason::Startup
    );
    feed(&mut m, &mut c, EAST, false, 2);
    assert!(feed(&mut m, &mut c, EAST, true, 3).is_empty());
    assert_eq!(m.active, Some(WEST));
}

#[test]
fn manual_failback_has_no_startup_exemption() {
    let (mut m, mut c) = started(Failback::Manual);
    feed(&mut m, &mut c, EAST, false, 2);
    // Settling on the first member confirmed Up is the initial choice, not
    // a failback: manual allows it.
    let f = feed(&mut m, &mut c, WEST, true, 3);
    assert_eq!((f[0].to, f[0].reason), (WEST, Reason::Startup));
    // East's first Up does not move the service back by itself.
    assert!(feed(&mut m, &mut c, EAST, true, 3).is_empty());
    assert_eq!(m.on_tick(c.at(3_600_000)), None);
    assert_eq!(m.active, Some(WEST));
}

#[test]
fn adopted_member_gets_no_cold_start_rules() {
    // A restarted daemon adopts west from the data path.
    let mut c = Clock(Instant::now());
    let mut m = ServiceMachine::new(
        policy(Failback::Auto),
        vec![("east".into(), 1), ("west".into(), 2)],
        Some(WEST),
        c.0,
    );
    assert!(!m.settling());
    assert_eq!(m.on_tick(c.0), None);
    // East's first Up since this start still waits failback_delay.
    assert!(feed(&mut m, &mut c, EAST, true, 3).is_empty());
    let up = m.members[EAST].up_since.unwrap();
    assert_eq!(m.next_deadline(c.0), Some(up + Duration::from_secs(30)));

    // Adopted east whose first probes fail: fails over at once, as before.
    let mut c = Clock(Instant::now());
    let mut m = ServiceMachine::new(
        policy(Failback::Auto),
        vec![("east".into(), 1), ("west".into(), 2)],
        Some(EAST),
        c.0,
    );
    let f = feed(&mut m, &mut c, EAST, false, 2);
    assert_eq!((f[0].to, f[0].reason), (WEST, Reason::Failover));
}

#[test]
fn next_deadline_includes_the_end_of_the_cold_window() {
    let (mut m, mut c) = started(Failback::Auto);
    let end = c.0 + SETTLE;
    assert_eq!(m.next_deadline(c.0), Some(end));
    feed(&mut m, &mut c, EAST, false, 2);
    assert_eq!(m.next_deadline(c.0), Some(end));
    // Past the window (still settling: nothing Up) there is no deadline:
    // only a check can settle it now.
    assert_eq!(m.on_tick(end), None);
    assert_eq!(m.next_deadline(end), None);
    assert!(m.settling());
}

#[test]
fn reason_startup_is_listed_and_named() {
    assert!(Reason::ALL.contains(&Reason::Startup));
    assert_eq!(Reason::Startup.as_str(), "startup");
}

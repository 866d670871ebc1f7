//! Fleet mode's follower: checks still decide health, the fleet decides
//! the active member.

use super::*;

#[test]
fn a_following_machine_never_flips_by_itself() {
    let (mut m, mut c) = start(Failback::Auto);
    m.set_following(true);
    assert!(feed(&mut m, &mut c, EAST, true, 3).is_empty());
    assert!(m.on_tick(c.at(1000)).is_none());
    assert_eq!(m.active, None, "nothing serves until the fleet decides");
    assert_eq!(m.members[EAST].health, Health::Up, "checks still count");
    let f = m.follow(EAST, Reason::Initial, c.at(10)).expect("flip");
    assert_eq!((f.from, f.to), (None, EAST));
    // East fails here: a local machine would fail over, a follower waits.
    feed(&mut m, &mut c, WEST, true, 3);
    assert!(feed(&mut m, &mut c, EAST, false, 2).is_empty());
    assert_eq!(m.members[EAST].health, Health::Down);
    assert_eq!(m.active, Some(EAST));
    let f = m.follow(WEST, Reason::Failover, c.at(10)).expect("flip");
    assert_eq!(f.from, Some(EAST));
    assert!(
        f.first_failed_check.is_some(),
        "a failover keeps its timeline"
    );
    assert!(
        m.follow(WEST, Reason::Failover, c.at(10)).is_none(),
        "already active"
    );
    // Down here and not active: its flows are reset.
    assert!(m.reset_members(c.at(0)).contains(&EAST));
}

#[test]
fn a_fleet_failover_from_a_member_this_host_still_reaches_drains_it() {
    let (mut m, mut c) = start(Failback::Auto);
    m.set_following(true);
    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, true, 3);
    m.follow(EAST, Reason::Initial, c.at(10));
    let f = m.follow(WEST, Reason::Failover, c.at(10)).expect("flip");
    assert_eq!(
        f.first_failed_check, None,
        "not down here: no local timeline"
    );
    assert!(
        m.reset_members(c.at(0)).is_empty(),
        "draining, not reset yet"
    );
    assert!(
        m.reset_members(c.at(10_001)).contains(&EAST),
        "drain_timeout over"
    );
}

#[test]
fn hold_stops_serving_and_drains_the_old_member() {
    let mut p = policy(Failback::Auto);
    p.drain_timeout = Duration::ZERO;
    let (mut m, mut c) = start_with(p);
    m.set_following(true);
    feed(&mut m, &mut c, EAST, true, 3);
    m.follow(EAST, Reason::Initial, c.at(10));
    assert_eq!(m.hold(c.at(10)), Some(EAST));
    assert_eq!(m.active, None);
    assert!(
        m.reset_members(c.at(0)).contains(&EAST),
        "zero drain: reset now"
    );
    assert_eq!(m.hold(c.at(10)), None, "nothing serves already");
}

#[test]
fn a_machine_that_stops_following_decides_locally_at_once() {
    let (mut m, mut c) = start(Failback::Auto);
    m.set_following(true);
    feed(&mut m, &mut c, WEST, true, 3);
    feed(&mut m, &mut c, EAST, true, 3);
    m.follow(EAST, Reason::Initial, c.at(10));
    feed(&mut m, &mut c, EAST, false, 2);
    assert_eq!(m.active, Some(EAST), "the fleet has not moved");
    m.set_following(false);
    let f = m.on_tick(c.at(10)).expect("local failover");
    assert_eq!(
        (f.from, f.to, f.reason),
        (Some(EAST), WEST, Reason::Failover)
    );
}

//! Fleet mode's decision rule: quorum over live hosts, fail static, the
//! failback delay, operator actions and the break-before-make barrier, and
//! the same proposal from every host that evaluates the same view.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use proptest::prelude::*;

use crate::decide::{Failback, Reason, fleet::*};

const EAST: usize = 0;
const WEST: usize = 1;
const DELAY: Duration = Duration::from_secs(30);

/// East preferred (priority 1), west second.
fn members() -> Vec<FleetMember> {
    vec![
        FleetMember {
            name: "east".into(),
            priority: 1,
        },
        FleetMember {
            name: "west".into(),
            priority: 2,
        },
    ]
}

fn policy(failback: Failback, barrier: Barrier) -> FleetPolicy {
    FleetPolicy {
        quorum: Quorum::Majority,
        failback_delay: DELAY,
        failback,
        barrier,
    }
}

fn auto() -> FleetPolicy {
    policy(Failback::Auto, Barrier::None)
}

/// The evaluation's clock: an hour after a base, so views can be old.
fn now() -> Instant {
    use std::sync::OnceLock;
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now) + Duration::from_secs(3600)
}

/// Seen up for `secs` seconds at `now()`.
fn up(secs: u64) -> Seen {
    Seen::Up {
        since: now() - Duration::from_secs(secs),
    }
}

/// Up long past the failback delay.
fn long_up() -> Seen {
    up(600)
}

fn host(name: &str, live: bool, east: Seen, west: Seen) -> HostView {
    HostView {
        name: name.into(),
        live,
        members: vec![east, west],
        applied_epoch: 0,
    }
}

/// Live hosts `h0…`, one per `(east, west)` pair.
fn live(views: &[(Seen, Seen)]) -> FleetView {
    FleetView {
        hosts: views
            .iter()
            .enumerate()
            .map(|(i, &(e, w))| host(&format!("h{i}"), true, e, w))
            .collect(),
    }
}

/// Every host applied `epoch`.
fn applied(mut view: FleetView, epoch: u64) -> FleetView {
    for h in &mut view.hosts {
        h.applied_epoch = epoch;
    }
    view
}

/// `member` serving at `epoch`.
fn serving(member: usize, epoch: u64, reason: Reason) -> Decision {
    Decision {
        epoch,
        active: Some(member),
        phase: Phase::Serving,
        reason,
        ..Decision::initial()
    }
}

fn eval(view: &FleetView, current: &Decision, policy: &FleetPolicy) -> Proposal {
    evaluate(view, current, policy, &members(), now())
}

fn changed(p: Proposal) -> Decision {
    match p {
        Proposal::Change(d) => d,
        Proposal::Keep => panic!("expected a new decision, got Keep"),
    }
}

#[test]
fn a_fresh_fleet_starts_on_the_preferred_member_once_a_quorum_sees_it_up() {
    let view = live(&[(up(0), up(0)), (up(0), up(0)), (Seen::Unknown, up(0))]);
    let d = changed(eval(&view, &Decision::initial(), &auto()));
    assert_eq!(d, serving(EAST, 1, Reason::Initial));
    let unknown = live(&[(Seen::Unknown, Seen::Unknown); 3]);
    assert_eq!(
        eval(&unknown, &Decision::initial(), &auto()),
        Proposal::Keep,
        "no member up for a quorum: nothing to decide yet"
    );
}

#[test]
fn a_fresh_fleet_waits_for_a_quorum_verdict_on_the_preferred_member() {
    let early = live(&[
        (Seen::Unknown, up(0)),
        (Seen::Unknown, up(0)),
        (up(0), up(0)),
    ]);
    assert_eq!(
        eval(&early, &Decision::initial(), &auto()),
        Proposal::Keep,
        "east is still being judged by most hosts: starting on west would mean a failback later"
    );
    let east_down = live(&[
        (Seen::Down, up(0)),
        (Seen::Down, up(0)),
        (Seen::Unknown, up(0)),
    ]);
    let d = changed(eval(&east_down, &Decision::initial(), &auto()));
    assert_eq!(d, serving(WEST, 1, Reason::Initial));
    let mixed = live(&[(Seen::Down, up(0)), (up(0), up(0)), (Seen::Down, up(0))]);
    assert_eq!(
        changed(eval(&mixed, &Decision::initial(), &auto())),
        serving(WEST, 1, Reason::Initial),
        "judged by a quorum (down for a majority): west"
    );
}

#[test]
fn a_majority_of_live_hosts_seeing_the_active_down_flips_to_the_next_member() {
    let view = live(&[
        (Seen::Down, long_up()),
        (Seen::Down, long_up()),
        (Seen::Down, long_up()),
        (long_up(), long_up()),
    ]);
    let d = changed(eval(&view, &serving(EAST, 5, Reason::Initial), &auto()));
    assert_eq!(d, serving(WEST, 6, Reason::Failover));
}

#[test]
fn a_minority_seeing_the_active_down_changes_nothing() {
    let current = serving(EAST, 5, Reason::Initial);
    let one = live(&[
        (Seen::Down, long_up()),
        (long_up(), long_up()),
        (long_up(), long_up()),
        (long_up(), long_up()),
    ]);
    assert_eq!(eval(&one, &current, &auto()), Proposal::Keep);
    let half = live(&[
        (Seen::Down, long_up()),
        (Seen::Down, long_up()),
        (long_up(), long_up()),
        (Seen::Unknown, long_up()),
    ]);
    assert_eq!(
        eval(&half, &current, &auto()),
        Proposal::Keep,
        "2 of 4 is not a majority"
    );
}

#[test]
fn nothing_up_for_a_quorum_keeps_the_current_decision_fail_static() {
    let current = serving(EAST, 5, Reason::Initial);
    let all_down = live(&[(Seen::Down, Seen::Down); 3]);
    assert_eq!(eval(&all_down, &current, &auto()), Proposal::Keep);
    let west_minority = live(&[
        (Seen::Down, long_up()),
        (Seen::Down, Seen::Down),
        (Seen::Down, Seen::Unknown),
    ]);
    assert_eq!(
        eval(&west_minority, &current, &auto()),
        Proposal::Keep,
        "west is up for one host only: not a member the fleet may move to"
    );
}

#[test]
fn failback_waits_for_a_quorum_up_for_failback_delay() {
    let current = serving(WEST, 6, Reason::Failover);
    let recent = live(&[(up(10), long_up()); 4]);
    assert_eq!(eval(&recent, &current, &auto()), Proposal::Keep);
    let half_long = live(&[
        (up(31), long_up()),
        (up(31), long_up()),
        (up(10), long_up()),
        (up(10), long_up()),
    ]);
    assert_eq!(
        eval(&half_long, &current, &auto()),
        Proposal::Keep,
        "only 2 of 4 hosts have seen east up for the delay"
    );
    let quorum = live(&[
        (up(30), long_up()),
        (up(31), long_up()),
        (up(45), long_up()),
        (up(10), long_up()),
    ]);
    let d = changed(eval(&quorum, &current, &auto()));
    assert_eq!(d, serving(EAST, 7, Reason::Failback));
}

#[test]
fn manual_failback_never_proposes_a_failback() {
    let manual = policy(Failback::Manual, Barrier::None);
    let current = serving(WEST, 6, Reason::Failover);
    let view = live(&[(up(86_400), long_up()); 3]);
    assert_eq!(eval(&view, &current, &manual), Proposal::Keep);
    let d = Fleet::new(&view, &manual, &members(), now()).release(&current);
    assert_eq!(
        d,
        serving(EAST, 7, Reason::Release),
        "an operator's release moves back at once"
    );
}

#[test]
fn drained_members_are_skipped() {
    let view = live(&[(long_up(), long_up()); 3]);
    let mut current = serving(WEST, 3, Reason::Drain);
    current.drained.insert(EAST);
    assert_eq!(
        eval(&view, &current, &auto()),
        Proposal::Keep,
        "no failback to a drained member"
    );
    let mut fresh = Decision::initial();
    fresh.drained.insert(EAST);
    assert_eq!(changed(eval(&view, &fresh, &auto())).active, Some(WEST));

    let on_east = serving(EAST, 3, Reason::Initial);
    let d = Fleet::new(&view, &auto(), &members(), now())
        .drain(&on_east, EAST)
        .expect("west can take over");
    assert_eq!(
        d,
        Decision {
            epoch: 4,
            ..current.clone()
        }
    );
    let west_down = live(&[(long_up(), Seen::Down); 3]);
    assert_eq!(
        Fleet::new(&west_down, &auto(), &members(), now()).drain(&on_east, EAST),
        Err(FleetOpError::NoOtherMember("east".into()))
    );
    let d = Fleet::new(&view, &auto(), &members(), now())
        .undrain(&current, EAST)
        .expect("east exists");
    assert_eq!(
        d,
        serving(EAST, 4, Reason::Release),
        "undrain moves back at once"
    );
}

#[test]
fn a_dead_host_does_not_count_toward_quorum() {
    let current = serving(EAST, 5, Reason::Initial);
    let mut view = live(&[(long_up(), long_up()); 2]);
    for i in 0..3 {
        view.hosts
            .push(host(&format!("dead{i}"), false, Seen::Down, long_up()));
    }
    assert_eq!(
        eval(&view, &current, &auto()),
        Proposal::Keep,
        "3 of 5 hosts see east down, but their leases expired"
    );
    let mut view = live(&[(Seen::Down, long_up()); 2]);
    for i in 0..3 {
        view.hosts
            .push(host(&format!("dead{i}"), false, long_up(), long_up()));
    }
    assert_eq!(
        changed(eval(&view, &current, &auto())),
        serving(WEST, 6, Reason::Failover),
        "both live hosts see east down: a majority of live hosts"
    );
}

#[test]
fn a_count_quorum_larger_than_the_live_hosts_keeps_everything_static() {
    let count = FleetPolicy {
        quorum: Quorum::Count(3),
        ..auto()
    };
    let view = live(&[(Seen::Down, long_up()); 2]);
    let current = serving(EAST, 5, Reason::Initial);
    assert_eq!(eval(&view, &current, &count), Proposal::Keep);
    let three = live(&[(Seen::Down, long_up()); 3]);
    assert_eq!(changed(eval(&three, &current, &count)).active, Some(WEST));
}

#[test]
fn barrier_holds_no_active_member_until_every_live_host_acked_then_serves_the_new_member() {
    let ack = policy(Failback::Auto, Barrier::Ack);
    let current = serving(WEST, 7, Reason::Failover);
    let mut view = applied(live(&[(long_up(), long_up()); 3]), 7);
    view.hosts.push(host("dead", false, long_up(), long_up()));
    let barrier = changed(eval(&view, &current, &ack));
    assert_eq!(
        barrier,
        Decision {
            epoch: 8,
            active: None,
            phase: Phase::Barrier { to: EAST },
            reason: Reason::Failback,
            ..Decision::initial()
        }
    );
    view.hosts[0].applied_epoch = 8;
    view.hosts[1].applied_epoch = 8;
    assert_eq!(
        eval(&view, &barrier, &ack),
        Proposal::Keep,
        "h2 has not applied epoch 8 yet"
    );
    view.hosts[2].applied_epoch = 8;
    let done = changed(eval(&view, &barrier, &ack));
    assert_eq!(
        done,
        serving(EAST, 9, Reason::Failback),
        "every live host acked (the dead one is not waited for)"
    );
    assert_eq!(eval(&view, &done, &ack), Proposal::Keep);
}

#[test]
fn barrier_is_skipped_when_the_old_member_is_fleet_down() {
    let ack = policy(Failback::Auto, Barrier::Ack);
    let view = live(&[(Seen::Down, long_up()); 3]);
    let d = changed(eval(&view, &serving(EAST, 2, Reason::Initial), &ack));
    assert_eq!(
        d,
        serving(WEST, 3, Reason::Failover),
        "a failover does not wait"
    );
}

#[test]
fn a_barrier_whose_target_fails_starts_over_towards_the_next_member() {
    let ack = policy(Failback::Auto, Barrier::Ack);
    let barrier = Decision {
        epoch: 8,
        active: None,
        phase: Phase::Barrier { to: EAST },
        reason: Reason::Failback,
        ..Decision::initial()
    };
    let view = applied(live(&[(Seen::Down, long_up()); 3]), 8);
    let d = changed(eval(&view, &barrier, &ack));
    assert_eq!(
        (d.epoch, d.active, d.phase),
        (9, None, Phase::Barrier { to: WEST })
    );
}

#[test]
fn switchover_pins_a_member_for_the_whole_fleet_until_release() {
    let view = live(&[(long_up(), long_up()); 3]);
    let current = serving(EAST, 4, Reason::Initial);
    let pinned = Fleet::new(&view, &auto(), &members(), now())
        .switchover(&current, WEST)
        .expect("west is up");
    assert_eq!(
        pinned,
        Decision {
            pinned: Some(WEST),
            ..serving(WEST, 5, Reason::Switchover)
        }
    );
    assert_eq!(
        eval(&view, &pinned, &auto()),
        Proposal::Keep,
        "no failback away from a pin"
    );
    let released = Fleet::new(&view, &auto(), &members(), now()).release(&pinned);
    assert_eq!(released, serving(EAST, 6, Reason::Release));
}

#[test]
fn switchover_to_a_member_not_up_for_a_quorum_is_refused() {
    let view = live(&[
        (long_up(), Seen::Down),
        (long_up(), Seen::Down),
        (long_up(), long_up()),
    ]);
    let current = serving(EAST, 4, Reason::Initial);
    assert_eq!(
        Fleet::new(&view, &auto(), &members(), now()).switchover(&current, WEST),
        Err(FleetOpError::NotUp("west".into()))
    );
    assert_eq!(
        Fleet::new(&view, &auto(), &members(), now()).switchover(&current, 7),
        Err(FleetOpError::NoSuchMember(7))
    );
}

#[test]
fn a_pinned_member_that_fails_over_takes_over_again_once_up() {
    let pinned = Decision {
        pinned: Some(WEST),
        ..serving(WEST, 5, Reason::Switchover)
    };
    let west_down = live(&[(long_up(), Seen::Down); 3]);
    let away = changed(eval(&west_down, &pinned, &auto()));
    assert_eq!((away.active, away.reason), (Some(EAST), Reason::Failover));
    let west_back = live(&[(long_up(), up(1)); 3]);
    let back = changed(eval(&west_back, &away, &auto()));
    assert_eq!(
        (back.epoch, back.active, back.reason),
        (7, Some(WEST), Reason::Switchover),
        "without failback_delay"
    );
}

#[test]
fn a_planned_move_goes_through_the_barrier_too() {
    let ack = policy(Failback::Auto, Barrier::Ack);
    let view = live(&[(long_up(), long_up()); 3]);
    let current = serving(EAST, 4, Reason::Initial);
    let d = Fleet::new(&view, &ack, &members(), now())
        .switchover(&current, WEST)
        .expect("west is up");
    assert_eq!(
        (d.epoch, d.active, d.phase, d.pinned),
        (5, None, Phase::Barrier { to: WEST }, Some(WEST))
    );
}

#[test]
fn the_decision_key_reads_back_what_was_written() {
    let d = Decision {
        drained: BTreeSet::from([WEST]),
        ..Decision {
            epoch: 3,
            active: None,
            phase: Phase::Barrier { to: EAST },
            reason: Reason::Failback,
            ..Decision::initial()
        }
    };
    let json = serde_json::to_string(&d).expect("serialize");
    let back: Decision = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, d);
}

// Random views: determinism, the quorum-down guarantee, growing epochs.

fn seen() -> impl Strategy<Value = Seen> {
    prop_oneof![
        Just(Seen::Unknown),
        Just(Seen::Down),
        (0u64..90).prop_map(up),
    ]
}

fn hosts(n: usize, max_epoch: u64) -> impl Strategy<Value = Vec<HostView>> {
    proptest::collection::vec(
        (
            any::<bool>(),
            proptest::collection::vec(seen(), n),
            0..=max_epoch,
        ),
        0..7,
    )
    .prop_map(|hs| {
        hs.into_iter()
            .enumerate()
            .map(|(i, (live, members, applied_epoch))| HostView {
                name: format!("h{i}"),
                live: live || i == 0,
                members,
                applied_epoch,
            })
            .collect()
    })
}

fn fleet_policy() -> impl Strategy<Value = FleetPolicy> {
    (
        prop_oneof![Just(Quorum::Majority), (0usize..4).prop_map(Quorum::Count)],
        0u64..60,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(quorum, delay, auto, ack)| FleetPolicy {
            quorum,
            failback_delay: Duration::from_secs(delay),
            failback: if auto {
                Failback::Auto
            } else {
                Failback::Manual
            },
            barrier: if ack { Barrier::Ack } else { Barrier::None },
        })
}

fn decision(n: usize) -> impl Strategy<Value = Decision> {
    (
        0u64..10,
        proptest::option::of(0..n),
        proptest::option::of(0..n),
        proptest::option::of(0..n),
        proptest::collection::btree_set(0..n, 0..n),
    )
        .prop_map(|(epoch, active, barrier, pinned, drained)| match barrier {
            Some(to) => Decision {
                epoch,
                active: None,
                phase: Phase::Barrier { to },
                reason: Reason::Failback,
                pinned,
                drained,
            },
            None => Decision {
                epoch,
                active,
                phase: Phase::Serving,
                reason: Reason::Initial,
                pinned,
                drained,
            },
        })
}

#[derive(Clone, Debug)]
struct Case {
    members: Vec<FleetMember>,
    view: FleetView,
    current: Decision,
    policy: FleetPolicy,
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..5).prop_flat_map(|n| {
        (
            proptest::collection::vec(1u32..4, n),
            hosts(n, 10),
            decision(n),
            fleet_policy(),
        )
            .prop_map(|(prios, hosts, current, policy)| Case {
                members: prios
                    .into_iter()
                    .enumerate()
                    .map(|(i, priority)| FleetMember {
                        name: format!("m{i}"),
                        priority,
                    })
                    .collect(),
                view: FleetView { hosts },
                current,
                policy,
            })
    })
}

/// A quorum of live hosts sees `member` down (counted here, apart from
/// the rule).
fn quorum_sees_down(view: &FleetView, policy: &FleetPolicy, member: usize) -> bool {
    let live: Vec<_> = view.hosts.iter().filter(|h| h.live).collect();
    let down = live
        .iter()
        .filter(|h| h.members.get(member) == Some(&Seen::Down))
        .count();
    down >= policy.quorum.needed(live.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn every_host_evaluating_the_same_view_proposes_the_same_decision(c in case()) {
        let first = evaluate(&c.view, &c.current, &c.policy, &c.members, now());
        let again = evaluate(&c.view, &c.current, &c.policy, &c.members, now());
        prop_assert_eq!(&first, &again);
        let mut reordered = c.view.clone();
        reordered.hosts.reverse();
        let other = evaluate(&reordered, &c.current, &c.policy, &c.members, now());
        prop_assert_eq!(&first, &other, "the order hosts are listed in does not matter");
        if let Proposal::Change(d) = first {
            prop_assert_eq!(d.epoch, c.current.epoch + 1);
            let serves = match d.phase {
                Phase::Serving => d.active,
                Phase::Barrier { to } => {
                    prop_assert_eq!(d.active, None);
                    Some(to)
                }
            };
            if let Some(m) = serves {
                prop_assert!(
                    !quorum_sees_down(&c.view, &c.policy, m),
                    "proposed m{} which a quorum sees down", m
                );
                prop_assert!(!d.drained.contains(&m), "proposed drained m{}", m);
            }
        }
    }

    #[test]
    fn epochs_only_grow(
        c in case(),
        steps in proptest::collection::vec((0u8..5, 0usize..4), 1..20),
    ) {
        let mut current = c.current.clone();
        for (op, m) in steps {
            let m = m % c.members.len();
            let (view, policy, members) = (&c.view, &c.policy, &c.members);
            let next = match op {
                0 => Fleet::new(view, policy, members, now()).switchover(&current, m).ok(),
                1 => Some(Fleet::new(view, policy, members, now()).release(&current)),
                2 => Fleet::new(view, policy, members, now()).drain(&current, m).ok(),
                3 => Fleet::new(view, policy, members, now()).undrain(&current, m).ok(),
                _ => match evaluate(&applied(view.clone(), current.epoch), &current, policy, members, now()) {
                    Proposal::Change(d) => Some(d),
                    Proposal::Keep => None,
                },
            };
            if let Some(next) = next {
                prop_assert_eq!(next.epoch, current.epoch + 1);
                current = next;
            }
        }
    }
}

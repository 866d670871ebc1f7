//! Reactive signals: error_limit, the on_error actions, which members they
//! count on, and what a flip records of them.

use super::*;

/// Both members Up, east active and settled; `on_error` with
/// `error_limit` and `fall`.
fn serving(on_error: OnError, error_limit: u32, fall: u32) -> (ServiceMachine, Clock) {
    let mut p = policy(Failback::Auto);
    p.fall = fall;
    p.observe.on_error = on_error;
    p.observe.error_limit = error_limit;
    let (mut m, mut c) = start_with(p);
    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, true, 3);
    assert_eq!(m.active, Some(EAST));
    assert!(!m.settling());
    (m, c)
}

fn refused(n: u32) -> SignalCounts {
    SignalCounts::of(SignalKind::Refused, n)
}

#[test]
fn a_signal_alone_does_not_mark_down_unless_mark_down() {
    for on_error in [OnError::Fastinter, OnError::FailCheck, OnError::SuddenDeath] {
        for fall in 1..=3 {
            let (mut m, mut c) = serving(on_error, 1, fall);
            for _ in 0..100 {
                let out = m.on_signal(EAST, refused(1), c.at(5));
                assert!(out.probe_now, "{on_error:?}: every action probes");
                assert_eq!(out.flip, None, "{on_error:?} fall {fall}");
            }
            assert_eq!(
                m.members[EAST].health,
                Health::Up,
                "{on_error:?} fall {fall}"
            );
            assert_eq!(m.active, Some(EAST));
        }
    }
}

#[test]
fn a_signal_completes_a_fall_started_by_a_failed_probe() {
    let (mut m, mut c) = serving(OnError::FailCheck, 1, 2);
    let first_fail = c.at(250);
    assert_eq!(m.on_check(EAST, false, first_fail), None);
    let at = c.at(3);
    let out = m.on_signal(EAST, refused(1), at);
    assert!(out.probe_now);
    let f = out.flip.expect("failover on the signal");
    assert_eq!(
        (f.from, f.to, f.reason),
        (Some(EAST), WEST, Reason::Failover)
    );
    assert_eq!(f.trigger, Some(Trigger::Signals));
    assert_eq!(f.signals, refused(1));
    assert_eq!(f.first_failed_check, Some(first_fail));
    assert_eq!(f.marked_down, Some(at));
}

#[test]
fn a_failed_probe_completes_a_fall_started_by_a_signal() {
    let (mut m, mut c) = serving(OnError::FailCheck, 1, 2);
    let signal_at = c.at(3);
    assert!(m.on_signal(EAST, refused(2), signal_at).probe_now);
    assert!(
        m.members[EAST].in_transition(),
        "rechecked at fast_interval"
    );
    let f = m
        .on_check(EAST, false, c.at(20))
        .expect("failover on the probe");
    assert_eq!(f.trigger, Some(Trigger::Checks));
    assert_eq!(f.signals, refused(2));
    assert_eq!(
        f.first_failed_check,
        Some(signal_at),
        "the streak began with the signal"
    );
}

#[test]
fn one_reactive_failure_per_failing_streak() {
    // fall 3: signal, probe fails, more signals: still one probe short.
    let (mut m, mut c) = serving(OnError::FailCheck, 1, 3);
    m.on_signal(EAST, refused(1), c.at(1));
    assert_eq!(m.on_check(EAST, false, c.at(50)), None);
    for _ in 0..10 {
        assert_eq!(m.on_signal(EAST, refused(1), c.at(1)).flip, None);
    }
    assert_eq!(m.members[EAST].health, Health::Up);
    assert!(m.on_check(EAST, false, c.at(50)).is_some());
}

#[test]
fn fail_check_with_fall_one_only_probes() {
    let (mut m, mut c) = serving(OnError::FailCheck, 1, 1);
    let out = m.on_signal(EAST, refused(5), c.at(1));
    assert_eq!(
        out,
        SignalOutcome {
            probe_now: true,
            flip: None
        }
    );
    assert!(!m.members[EAST].in_transition());
}

#[test]
fn sudden_death_leaves_the_member_one_failure_from_down() {
    let (mut m, mut c) = serving(OnError::SuddenDeath, 1, 3);
    let out = m.on_signal(EAST, refused(1), c.at(1));
    assert!(out.probe_now);
    assert_eq!(out.flip, None);
    assert_eq!(m.members[EAST].health, Health::Up);
    let f = m
        .on_check(EAST, false, c.at(20))
        .expect("one failed probe is enough");
    assert_eq!(
        (f.to, f.reason, f.trigger),
        (WEST, Reason::Failover, Some(Trigger::Checks))
    );
}

#[test]
fn mark_down_fails_over_at_once_and_records_the_signals() {
    let (mut m, mut c) = serving(OnError::MarkDown, 3, 2);
    let out = m.on_signal(EAST, refused(2), c.at(1));
    assert_eq!(out, SignalOutcome::default(), "below error_limit");
    let at = c.at(1);
    let out = m.on_signal(EAST, SignalCounts::of(SignalKind::Reset, 1), at);
    assert!(out.probe_now);
    let f = out.flip.expect("down at once, no probe");
    assert_eq!(
        (f.from, f.to, f.reason),
        (Some(EAST), WEST, Reason::Failover)
    );
    assert_eq!(f.trigger, Some(Trigger::Signals));
    let recorded: Vec<(&str, u32)> = f.signals.iter().map(|(k, n)| (k.as_str(), n)).collect();
    assert_eq!(recorded, vec![("refused", 2), ("reset", 1)]);
    assert_eq!((f.first_failed_check, f.marked_down), (Some(at), Some(at)));
    assert!(m.reset_members(at).contains(&EAST));
}

#[test]
fn error_limit_counts_signals_and_a_good_check_resets_them() {
    let (mut m, mut c) = serving(OnError::FailCheck, 3, 2);
    assert!(!m.on_signal(EAST, refused(2), c.at(1)).probe_now);
    m.on_check(EAST, true, c.at(250));
    assert!(
        !m.on_signal(EAST, refused(1), c.at(1)).probe_now,
        "reset by the good check"
    );
    assert!(!m.on_signal(EAST, refused(1), c.at(1)).probe_now);
    assert!(
        m.on_signal(EAST, refused(1), c.at(1)).probe_now,
        "third since the check"
    );
    // Reaching the limit starts a new count.
    assert!(!m.on_signal(EAST, refused(2), c.at(1)).probe_now);
    // Several signals in one report count each.
    m.on_check(EAST, true, c.at(250));
    assert!(m.on_signal(EAST, refused(3), c.at(1)).probe_now);
}

#[test]
fn signals_on_an_inactive_member_count() {
    // West is the standby (or still drains flows): its signals count too,
    // so a failback never lands on a member whose flows are refused.
    let (mut m, mut c) = serving(OnError::FailCheck, 1, 2);
    assert!(m.on_signal(WEST, refused(1), c.at(1)).probe_now);
    assert_eq!(m.on_check(WEST, false, c.at(20)), None);
    assert_eq!(m.members[WEST].health, Health::Down);

    // A drained member's signals with mark-down: Down at once, so its
    // flows are reset now instead of at the end of drain_timeout.
    let (mut m, mut c) = serving(OnError::MarkDown, 1, 2);
    m.drain(EAST, c.at(1)).unwrap();
    assert!(!m.reset_members(c.0).contains(&EAST));
    assert_eq!(m.on_signal(EAST, refused(1), c.at(1)).flip, None);
    assert_eq!(m.members[EAST].health, Health::Down);
    assert!(m.reset_members(c.0).contains(&EAST));
}

#[test]
fn signals_on_a_down_member_change_nothing() {
    let (mut m, mut c) = serving(OnError::MarkDown, 1, 2);
    feed(&mut m, &mut c, EAST, false, 2);
    assert_eq!(m.active, Some(WEST));
    // East is recovering: one good check of three.
    m.on_check(EAST, true, c.at(250));
    let before = m.members[EAST].clone();
    let out = m.on_signal(EAST, refused(10), c.at(1));
    assert_eq!(out, SignalOutcome::default());
    assert_eq!(m.active, Some(WEST));
    let after = &m.members[EAST];
    assert_eq!(
        (after.health, after.ok_streak, after.errors),
        (before.health, before.ok_streak, before.errors)
    );
    // Kept for history only, until the next good check.
    assert_eq!(after.streak_signals, refused(10));
    assert_eq!(feed(&mut m, &mut c, EAST, true, 2).len(), 0);
    assert_eq!(m.members[EAST].health, Health::Up, "the recovery went on");
}

#[test]
fn observe_off_ignores_every_signal_and_layer4_ignores_redis_errors() {
    let (mut m, mut c) = serving(OnError::MarkDown, 1, 2);
    m.policy.observe.mode = ObserveMode::Off;
    for kind in SignalKind::ALL {
        assert_eq!(
            m.on_signal(EAST, SignalCounts::of(kind, 5), c.at(1)),
            SignalOutcome::default()
        );
    }
    assert!(m.members[EAST].streak_signals.is_empty());

    m.policy.observe.mode = ObserveMode::Layer4;
    let redis = SignalCounts::of(SignalKind::RedisError, 5);
    assert_eq!(m.on_signal(EAST, redis, c.at(1)), SignalOutcome::default());
    m.policy.observe.mode = ObserveMode::Layer7;
    let f = m
        .on_signal(EAST, redis, c.at(1))
        .flip
        .expect("layer 7 counts Redis errors");
    assert_eq!(f.signals, redis);
}

#[test]
fn a_signal_during_cold_start_counts_but_does_not_move_the_service() {
    let (mut m, mut c) = start(Failback::Auto);
    m.on_tick(c.0);
    // fail-check on an unchecked east: one failure, no verdict yet.
    let out = m.on_signal(EAST, refused(1), c.at(10));
    assert_eq!(
        out,
        SignalOutcome {
            probe_now: true,
            flip: None
        }
    );
    assert_eq!(m.members[EAST].health, Health::Unknown);
    assert_eq!(m.active, Some(EAST));
}

#[test]
fn signal_kinds_have_their_label_names() {
    let names: Vec<&str> = SignalKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "refused",
            "reset",
            "syn_unanswered",
            "unreachable",
            "retransmit",
            "redis_error"
        ]
    );
    assert_eq!(SignalKind::ALL.len(), SignalKind::COUNT);
    let counts: SignalCounts = [
        (SignalKind::Reset, 2),
        (SignalKind::Reset, 1),
        (SignalKind::Refused, 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts.total(), 4);
    assert_eq!(counts.get(SignalKind::Reset), 3);
    let mut big = SignalCounts::of(SignalKind::Retransmit, u32::MAX);
    big.add(SignalKind::Retransmit, 1);
    assert_eq!(big.get(SignalKind::Retransmit), u32::MAX, "saturates");
    assert_eq!(
        (Trigger::Checks.as_str(), Trigger::Signals.as_str()),
        ("checks", "signals")
    );
}

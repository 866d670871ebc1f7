use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

mod cold_start;
mod fleet;
mod follow;
mod signals;

/// The defaults: rise 3, fall 2, timeout and interval 250 ms (so `settle`
/// is 750 ms), observe layer 4 with one signal triggering fail-check.
fn policy(failback: Failback) -> Policy {
    Policy {
        rise: 3,
        fall: 2,
        failback,
        failback_delay: Duration::from_secs(30),
        on_failover: OnFailover::Reset,
        drain_timeout: Duration::from_secs(10),
        settle: SETTLE,
        observe: Observe {
            mode: ObserveMode::Layer4,
            error_limit: 1,
            on_error: OnError::FailCheck,
        },
    }
}

const SETTLE: Duration = Duration::from_millis(750);

/// A fresh east/west machine started at the clock's time.
fn start(failback: Failback) -> (ServiceMachine, Clock) {
    start_with(policy(failback))
}

fn start_with(policy: Policy) -> (ServiceMachine, Clock) {
    let c = Clock(Instant::now());
    let m = ServiceMachine::new(
        policy,
        vec![("east".into(), 1), ("west".into(), 2)],
        None,
        c.0,
    );
    (m, c)
}

const EAST: usize = 0;
const WEST: usize = 1;

struct Clock(Instant);
impl Clock {
    fn at(&mut self, ms: u64) -> Instant {
        self.0 += Duration::from_millis(ms);
        self.0
    }
}

/// Feeds `n` identical results for `member`, 250 ms apart.
fn feed(m: &mut ServiceMachine, c: &mut Clock, member: usize, ok: bool, n: u32) -> Vec<Flip> {
    (0..n)
        .filter_map(|_| m.on_check(member, ok, c.at(250)))
        .collect()
}

#[test]
fn fresh_service_starts_on_the_preferred_member() {
    let (mut m, mut c) = start(Failback::Auto);
    let flips = feed(&mut m, &mut c, WEST, true, 1);
    assert_eq!(flips.len(), 1);
    assert_eq!((flips[0].to, flips[0].reason), (EAST, Reason::Initial));
}

#[test]
fn active_member_down_fails_over_at_once_after_fall_results() {
    let (mut m, mut c) = start(Failback::Auto);
    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, true, 3);
    let first_fail = c.0 + Duration::from_millis(250);
    let flips = feed(&mut m, &mut c, EAST, false, 2);
    assert_eq!(flips.len(), 1);
    let f = &flips[0];
    assert_eq!(
        (f.from, f.to, f.reason),
        (Some(EAST), WEST, Reason::Failover)
    );
    assert_eq!(f.first_failed_check, Some(first_fail));
    assert_eq!(f.marked_down, Some(f.decided_at));
    // The failed member's flows are reset at once.
    assert!(m.reset_members(c.0).contains(&EAST));
}

#[test]
fn one_failed_check_is_not_enough() {
    let (mut m, mut c) = start(Failback::Auto);
    feed(&mut m, &mut c, EAST, true, 3);
    assert!(feed(&mut m, &mut c, EAST, false, 1).is_empty());
    assert!(m.members[EAST].in_transition());
    assert!(feed(&mut m, &mut c, EAST, true, 1).is_empty());
    assert_eq!(m.active, Some(EAST));
}

#[test]
fn automatic_failback_waits_for_the_delay_of_continuous_health() {
    let (mut m, mut c) = start(Failback::Auto);
    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, true, 3);
    feed(&mut m, &mut c, EAST, false, 2);
    assert_eq!(m.active, Some(WEST));
    feed(&mut m, &mut c, EAST, true, 3);
    let up = m.members[EAST].up_since.unwrap();
    assert_eq!(m.next_deadline(c.0), Some(up + Duration::from_secs(30)));
    assert_eq!(m.on_tick(up + Duration::from_secs(29)), None);
    // A failure in between restarts the delay.
    feed(&mut m, &mut c, EAST, false, 2);
    feed(&mut m, &mut c, EAST, true, 3);
    let up2 = m.members[EAST].up_since.unwrap();
    assert!(up2 > up);
    assert_eq!(m.on_tick(up + Duration::from_secs(31)), None);
    let f = m.on_tick(up2 + Duration::from_secs(30)).expect("failback");
    assert_eq!(
        (f.from, f.to, f.reason),
        (Some(WEST), EAST, Reason::Failback)
    );
    // West drains for drain_timeout, then its flows are reset.
    assert!(!m.reset_members(f.decided_at).contains(&WEST));
    assert!(
        m.reset_members(f.decided_at + Duration::from_secs(10))
            .contains(&WEST)
    );
}

#[test]
fn manual_failback_waits_for_the_operator() {
    let (mut m, mut c) = start(Failback::Manual);
    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, true, 3);
    feed(&mut m, &mut c, EAST, false, 2);
    feed(&mut m, &mut c, EAST, true, 3);
    assert_eq!(m.on_tick(c.at(3_600_000)), None);
    assert_eq!(m.active, Some(WEST));
    let f = m
        .release(c.at(1))
        .expect("release returns to the preferred member");
    assert_eq!((f.to, f.reason), (EAST, Reason::Release));
}

#[test]
fn all_members_down_fails_static_and_does_not_flap() {
    let (mut m, mut c) = start(Failback::Auto);
    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, true, 3);
    feed(&mut m, &mut c, WEST, false, 2);
    assert!(feed(&mut m, &mut c, EAST, false, 10).is_empty());
    assert_eq!(m.active, Some(EAST));
    assert!(m.degraded());
    // The active member's own flows are not reset while it is all we have.
    assert!(!m.reset_members(c.0).contains(&EAST));
    // West comes back: fail over to it.
    let f = feed(&mut m, &mut c, WEST, true, 3);
    assert_eq!((f[0].to, f[0].reason), (WEST, Reason::Failover));
    assert!(!m.degraded());
}

#[test]
fn switchover_pins_until_release_and_still_fails_over() {
    let (mut m, mut c) = start(Failback::Auto);
    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, true, 3);
    let f = m.switchover(WEST, c.at(1)).unwrap().unwrap();
    assert_eq!((f.to, f.reason), (WEST, Reason::Switchover));
    assert_eq!(m.on_tick(c.at(3_600_000)), None, "pinned: no failback");
    // The pinned member goes down: fail over anyway ...
    let f = feed(&mut m, &mut c, WEST, false, 2);
    assert_eq!((f[0].to, f[0].reason), (EAST, Reason::Failover));
    // ... and back to the pin when it recovers.
    let f = feed(&mut m, &mut c, WEST, true, 3);
    assert_eq!((f[0].to, f[0].reason), (WEST, Reason::Switchover));
    let f = m.release(c.at(1)).unwrap();
    assert_eq!((f.to, f.reason), (EAST, Reason::Release));
}

#[test]
fn switchover_to_a_down_member_is_refused() {
    let (mut m, mut c) = start(Failback::Auto);
    feed(&mut m, &mut c, WEST, false, 2);
    assert_eq!(
        m.switchover(WEST, c.at(1)),
        Err(OpError::MemberDown("west".into()))
    );
}

#[test]
fn drain_moves_traffic_and_undrain_allows_failback() {
    let (mut m, mut c) = start(Failback::Auto);
    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, true, 3);
    let f = m.drain(EAST, c.at(1)).unwrap().unwrap();
    assert_eq!((f.to, f.reason), (WEST, Reason::Drain));
    assert!(m.reset_members(c.at(10_000)).contains(&EAST));
    assert_eq!(
        m.on_tick(c.at(3_600_000)),
        None,
        "a drained member gets nothing"
    );
    m.undrain(EAST, c.at(1));
    assert_eq!(
        m.active,
        Some(EAST),
        "undrained preferred member is taken back"
    );
    assert!(!m.reset_members(c.0).contains(&EAST));
}

#[test]
fn draining_the_last_healthy_member_is_refused() {
    let (mut m, mut c) = start(Failback::Auto);
    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, false, 2);
    assert_eq!(
        m.drain(EAST, c.at(1)),
        Err(OpError::NoOtherMember("east".into()))
    );
}

#[test]
fn zero_drain_timeout_resets_at_once() {
    let (mut m, mut c) = start(Failback::Auto);
    m.policy.drain_timeout = Duration::ZERO;

    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, true, 3);
    let f = m.switchover(WEST, c.at(1)).unwrap().unwrap();
    assert!(m.reset_members(f.decided_at).contains(&EAST));
}

#[test]
fn keep_on_failover_does_not_reset_the_failed_member() {
    let (mut m, mut c) = start(Failback::Auto);
    m.policy.on_failover = OnFailover::Keep;

    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, EAST, false, 2);
    assert_eq!(m.active, Some(WEST));
    assert!(!m.reset_members(c.0).contains(&EAST));
}

#[test]
fn adopted_active_member_is_kept_until_checks_decide() {
    let mut c = Clock(Instant::now());
    let mut m = ServiceMachine::new(
        policy(Failback::Auto),
        vec![("east".into(), 1), ("west".into(), 2)],
        Some(WEST),
        c.0,
    );
    // East is healthy at once, but failback still waits for the delay.
    assert!(feed(&mut m, &mut c, EAST, true, 3).is_empty());
    assert_eq!(m.active, Some(WEST));
}

#[test]
fn flapping_member_causes_no_flips() {
    let (mut m, mut c) = start(Failback::Auto);
    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, true, 3);
    let mut flips = 0;
    for i in 0..1000 {
        flips += usize::from(m.on_check(EAST, i % 2 == 0, c.at(250)).is_some());
    }
    assert_eq!(flips, 0, "alternating results never complete a fall of 2");
}

// ---- property tests ----

#[derive(Clone, Debug)]
enum Ev {
    Check(usize, bool),
    Signal(usize, SignalKind, u32),
    Tick(u64),
    Switchover(usize),
    Release,
    Drain(usize),
    Undrain(usize),
}

fn ev(n: usize) -> impl Strategy<Value = Ev> {
    prop_oneof![
        8 => (0..n, any::<bool>()).prop_map(|(m, ok)| Ev::Check(m, ok)),
        3 => (0..n, proptest::sample::select(SignalKind::ALL.to_vec()), 1u32..3)
            .prop_map(|(m, k, c)| Ev::Signal(m, k, c)),
        2 => (0u64..60_000).prop_map(Ev::Tick),
        1 => (0..n).prop_map(Ev::Switchover),
        1 => Just(Ev::Release),
        1 => (0..n).prop_map(Ev::Drain),
        1 => (0..n).prop_map(Ev::Undrain),
    ]
}

fn observe() -> impl Strategy<Value = Observe> {
    (
        proptest::sample::select(vec![
            ObserveMode::Off,
            ObserveMode::Layer4,
            ObserveMode::Layer7,
        ]),
        1u32..4,
        proptest::sample::select(vec![
            OnError::Fastinter,
            OnError::FailCheck,
            OnError::SuddenDeath,
            OnError::MarkDown,
        ]),
    )
        .prop_map(|(mode, error_limit, on_error)| Observe {
            mode,
            error_limit,
            on_error,
        })
}

#[derive(Clone, Debug)]
struct Scenario {
    prios: Vec<u32>,
    auto: bool,
    fall: u32,
    observe: Observe,
    events: Vec<Ev>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (2usize..5).prop_flat_map(|n| {
        (
            proptest::collection::vec(1u32..4, n),
            any::<bool>(),
            1u32..4,
            observe(),
            proptest::collection::vec(ev(n), 1..300),
        )
            .prop_map(|(prios, auto, fall, observe, events)| Scenario {
                prios,
                auto,
                fall,
                observe,
                events,
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn decisions_respect_the_rules(sc in scenario()) {
        let Scenario { prios, auto, fall, observe, events } = sc;
        let failback = if auto { Failback::Auto } else { Failback::Manual };
        let members: Vec<(String, u32)> =
            prios.iter().enumerate().map(|(i, p)| (format!("m{i}"), *p)).collect();
        let n = members.len();
        let mut p = policy(failback);
        p.fall = fall;
        p.observe = observe;
        let mut now = Instant::now();
        let mut m = ServiceMachine::new(p, members, None, now);
        let mut health_changes = 0usize;
        let mut flips = 0usize;
        let mut ops = 0usize;
        // Failed checks since each member's last healthy one.
        let mut failed_checks = vec![0u32; n];
        for e in events {
            now += Duration::from_millis(50);
            let before: Vec<Health> = m.members.iter().map(|s| s.health).collect();
            let was_settling = m.settling();
            let mut probe_now = false;
            let flip = match e.clone() {
                Ev::Check(i, ok) => {
                    failed_checks[i] = if ok { 0 } else { failed_checks[i] + 1 };
                    m.on_check(i, ok, now)
                }
                Ev::Signal(i, kind, count) => {
                    let out = m.on_signal(i, SignalCounts::of(kind, count), now);
                    probe_now = out.probe_now;
                    let counted = observe.mode.observes(kind) && before[i] != Health::Down;
                    prop_assert!(counted || out == SignalOutcome::default(), "{:?}: {:?}", e, out);
                    prop_assert!(out.flip.is_none() || out.probe_now);
                    out.flip
                }
                Ev::Tick(ms) => { now += Duration::from_millis(ms); m.on_tick(now) }
                Ev::Switchover(i) => { ops += 1; m.switchover(i, now).unwrap_or(None) }
                Ev::Release => { ops += 1; m.release(now) }
                Ev::Drain(i) => { ops += 1; m.drain(i, now).unwrap_or(None) }
                Ev::Undrain(i) => { ops += 1; m.undrain(i, now) }
            };
            let changed = m.members.iter().zip(&before).filter(|(s, b)| s.health != **b).count();
            health_changes += changed;
            // Who may mark a member Down: a failed check, after at least
            // `fall - 1` of them when signals count as one (fail-check);
            // a signal only with mark-down, or as fail-check's one failure
            // completing a fall that checks started.
            for i in 0..n {
                if before[i] == Health::Down || m.members[i].health != Health::Down {
                    continue;
                }
                match (&e, observe.on_error) {
                    (Ev::Check(j, false), on_error) if *j == i => {
                        if on_error == OnError::FailCheck && observe.mode != ObserveMode::Off {
                            prop_assert!(failed_checks[i] + 1 >= fall, "down after {} failed checks", failed_checks[i]);
                        }
                    }
                    (Ev::Signal(j, ..), OnError::MarkDown) if *j == i => prop_assert!(probe_now),
                    (Ev::Signal(j, ..), OnError::FailCheck) if *j == i => {
                        prop_assert!(fall >= 2 && failed_checks[i] + 1 >= fall, "a signal alone marked {i} down");
                    }
                    _ => prop_assert!(false, "{i} went down on {:?} with {:?}", e, observe.on_error),
                }
            }
            if let Some(f) = &flip {
                flips += 1;
                // Never onto a Down member.
                prop_assert_ne!(m.members[f.to].health, Health::Down, "{:?}", e);
                // Reasons match what happened.
                match f.reason {
                    Reason::Failback => {
                        prop_assert!(auto, "failback with manual policy");
                        let up = m.members[f.to].up_since.expect("failback target is up");
                        prop_assert!(now.duration_since(up) >= Duration::from_secs(30));
                    }
                    Reason::Startup => {
                        // Onto a member confirmed Up: settling, or its
                        // first Up with an automatic failback.
                        prop_assert_eq!(m.members[f.to].health, Health::Up);
                        if !was_settling {
                            prop_assert!(auto && m.members[f.to].ups == 1);
                        }
                    }
                    Reason::Failover => prop_assert!(changed > 0 || matches!(e, Ev::Drain(_) | Ev::Undrain(_) | Ev::Release | Ev::Switchover(_))),
                    Reason::Switchover | Reason::Release | Reason::Drain => {
                        prop_assert!(changed > 0 || !matches!(e, Ev::Tick(_)), "{:?} on {:?}", f.reason, e)
                    }
                    Reason::Initial => prop_assert_eq!(f.from, None),
                }
                // Signals and trigger describe failovers only.
                if f.trigger.is_none() {
                    prop_assert!(f.signals.is_empty());
                }
            }
            if let Some(a) = m.active {
                // A Down or drained active member only when nothing else is
                // eligible, or while a fresh start settles.
                if (m.members[a].health == Health::Down || m.members[a].drained) && !m.settling() {
                    prop_assert!((0..n).all(|i| m.members[i].health == Health::Down || m.members[i].drained));
                }
                // A live pin wins.
                if let Some(p) = m.pinned && m.members[p].health != Health::Down {
                    prop_assert_eq!(a, p);
                }
                prop_assert!(!m.reset_members(now).contains(&a));
            }
        }
        // Flips are bounded by their causes: one initial assignment, one per
        // health change in the event itself, one later failback per member
        // that came Up, one per operator command, and the end of the cold
        // window.
        prop_assert!(flips <= 2 + 2 * health_changes + ops, "{flips} flips, {health_changes} changes, {ops} ops");
    }
}

/// A drain_timeout or failback_delay far past what config accepts must
/// not panic the service task on a switchover or a failback deadline.
#[test]
fn absurd_delays_saturate_instead_of_panicking() {
    let mut p = policy(Failback::Auto);
    p.drain_timeout = Duration::MAX;
    p.failback_delay = Duration::MAX;
    let (mut m, mut c) = start_with(p);
    feed(&mut m, &mut c, EAST, true, 3);
    feed(&mut m, &mut c, WEST, true, 3);
    let f = m
        .switchover(WEST, c.at(1))
        .expect("switchover")
        .expect("a flip");
    assert_eq!((f.from, f.to), (Some(EAST), WEST));
    assert!(m.next_deadline(c.0).is_some_and(|d| d > c.0));
    assert!(!m.reset_members(c.at(1)).contains(&EAST));
    m.release(c.at(1));
    feed(&mut m, &mut c, EAST, false, 2);
    feed(&mut m, &mut c, EAST, true, 3);
    assert!(m.next_deadline(c.0).is_some_and(|d| d > c.0));
    assert_eq!(m.on_tick(c.at(1)), None);
}

#[test]
fn later_saturates() {
    let t = Instant::now();
    assert_eq!(later(t, Duration::from_secs(1)), t + Duration::from_secs(1));
    assert!(later(t, Duration::MAX) > t);
}

//! When to probe one member, and the task that does it.
//!
//! A member is probed every `interval`, and every `fast_interval` while a
//! result awaits confirmation (rise/fall). Two things make failures show up
//! sooner than `fall` full rounds of `timeout`:
//!
//! - **Late probes overlap.** A probe of a healthy (or not yet confirmed)
//!   member that is still unanswered after `fast_interval`, or after twice
//!   the member's last good round trip if that is longer, is late: the next
//!   probe starts then, on a connection of its own, up to `fall` in flight.
//!   A hung or unreachable member thus collects its `fall` timeouts about
//!   `timeout + (fall - 1) * fast_interval` after it stopped answering,
//!   instead of `fall * timeout`. Each probe still gets its full `timeout`.
//!   A member confirmed down is probed one at a time.
//! - **A lost connection is a reason to look.** When the member closes the
//!   checker's kept connection (process killed, restarted), the next probe
//!   starts at once (at most once per `fast_interval`).
//!
//! [`Schedule`] holds those rules and no I/O, so they are tested without a
//! clock or a network; [`run`] drives it with real checkers.

use std::{
    future::{Future, pending},
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::sync::{Notify, mpsc, watch};

use crate::{
    config,
    decide::later,
    health::{self, Checker, Outcome},
    resolve::resolve,
};

/// How often DNS member names are resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(30);

/// The probe timing rules of one member.
#[derive(Debug)]
pub struct Schedule {
    interval: Duration,
    fast_interval: Duration,
    max_in_flight: usize,
    /// When the next probe is due while none is in flight.
    next: Instant,
    /// When the newest probe started.
    last_start: Option<Instant>,
    /// The last result, if any.
    previous: Option<bool>,
    /// The last healthy round trip.
    good_rtt: Duration,
    /// When the last probe asked for by a reactive signal was due.
    last_signal: Option<Instant>,
}

impl Schedule {
    /// A schedule whose first probe is due at `now`.
    pub fn new(interval: Duration, fast_interval: Duration, fall: u32, now: Instant) -> Self {
        Schedule {
            interval,
            fast_interval,
            max_in_flight: fall.max(1) as usize,
            next: now,
            last_start: None,
            previous: None,
            good_rtt: Duration::ZERO,
            last_signal: None,
        }
    }

    /// When the next probe should start, given the start times of the
    /// probes in flight and whether the service still has a result of this
    /// member to confirm; `None` while no probe may start.
    pub fn due(&self, in_flight: &[Instant], confirming: bool) -> Option<Instant> {
        let Some(newest) = in_flight.iter().max() else {
            return Some(self.next);
        };
        let suspect_allowed = self.previous != Some(false) || confirming;
        if !suspect_allowed || in_flight.len() >= self.max_in_flight {
            return None;
        }
        Some(later(*newest, self.late_after()))
    }

    /// How long a probe may stay unanswered before it counts as late.
    fn late_after(&self) -> Duration {
        self.fast_interval.max(self.good_rtt.saturating_mul(2))
    }

    /// A probe started at `at`.
    pub fn started(&mut self, at: Instant) {
        self.last_start = Some(at);
    }

    /// A probe that started at `started` finished: healthy or not, after
    /// `latency`. A result unlike the last one, or one the service still has
    /// to confirm, is followed up after `fast_interval`.
    pub fn finished(
        &mut self,
        started: Instant,
        healthy: bool,
        latency: Duration,
        confirming: bool,
    ) {
        if healthy {
            self.good_rtt = latency;
        }
        let fast = self.previous != Some(healthy) || confirming;
        self.previous = Some(healthy);
        let period = if fast {
            self.fast_interval
        } else {
            self.interval
        };
        // With overlapping probes, the newest start decides.
        let from = self.last_start.map_or(started, |l| l.max(started));
        self.next = later(from, period);
    }

    /// The member closed the kept connection at `now`: probe at once, but
    /// not sooner than `fast_interval` after the last probe started.
    pub fn connection_lost(&mut self, now: Instant) {
        let earliest = self
            .last_start
            .map_or(now, |l| later(l, self.fast_interval));
        self.next = self.next.min(earliest.max(now));
    }

    /// The application's own traffic said something bad about the member
    /// at `now` (a reactive signal): probe at once. Signal probes are
    /// spaced by `fast_interval` among themselves, not from the last start,
    /// so a probe started because the connection was lost does not hold
    /// back the one that confirms a refused connection.
    pub fn signal(&mut self, now: Instant) {
        if self
            .last_signal
            .is_some_and(|l| now < later(l, self.fast_interval))
        {
            return;
        }
        self.last_signal = Some(now);
        self.next = self.next.min(now);
    }
}

/// One probe's result, as the probe loop reports it to its service.
#[derive(Debug)]
pub struct Report {
    /// The member's index in the service's config.
    pub member: usize,
    pub outcome: Outcome,
    /// The address probed (`None`: the name did not resolve).
    pub addr: Option<SocketAddr>,
    /// When the probe was sent.
    pub at: Instant,
}

/// What the probe loop of one member needs; `M` is the service's message
/// type, which a [`Report`] converts into (the service depends on this
/// module, not the other way round).
pub struct ProbeLoop<M> {
    pub member: usize,
    pub host: Arc<str>,
    pub port: u16,
    pub vip_v4: bool,
    pub addr: Option<SocketAddr>,
    pub check: config::Check,
    pub checker: Box<dyn Checker>,
    /// Whether the service still has a result of this member to confirm.
    pub confirming: watch::Receiver<bool>,
    /// Notified when a reactive signal asks for a probe now.
    pub wake: Arc<Notify>,
    pub tx: mpsc::Sender<M>,
}

type Probe = Pin<Box<dyn Future<Output = (Box<dyn Checker>, Instant, Outcome)> + Send>>;

enum Event {
    Due,
    Done(Box<dyn Checker>, Instant, Outcome),
    Lost,
    Signal,
    Confirming,
    Stop,
}

/// FAULT INJECTION for the end-to-end test of task supervision, in debug
/// builds only (compiled out of release builds):
/// `REDIRECTOR_FAULT_INJECTION_PROBE_PANICS=HOST:PORT=N` makes the first
/// `N` starts of the probe task of member `HOST:PORT` panic.
#[cfg(debug_assertions)]
fn fault_injection_probe_panic(host: &str, port: u16) {
    use std::sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    };
    static PLAN: OnceLock<Option<(String, AtomicU32)>> = OnceLock::new();
    let plan = PLAN.get_or_init(|| {
        let v = std::env::var("REDIRECTOR_FAULT_INJECTION_PROBE_PANICS").ok()?;
        let (member, n) = v.rsplit_once('=')?;
        Some((member.to_string(), AtomicU32::new(n.parse().ok()?)))
    });
    if let Some((member, left)) = plan
        && *member == format!("{host}:{port}")
        && left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        panic!("fault injection: probe task of {member}");
    }
}

/// Probes one member until the service task goes away.
pub async fn run<M: From<Report> + Send>(mut p: ProbeLoop<M>) {
    #[cfg(debug_assertions)]
    fault_injection_probe_panic(&p.host, p.port);
    let mut schedule = Schedule::new(
        p.check.interval,
        p.check.fast_interval,
        p.check.fall,
        Instant::now(),
    );
    let mut resolved_at = Instant::now();
    // Checkers not probing now; the first one's connection is watched.
    let mut idle = vec![p.checker];
    let mut in_flight: FuturesUnordered<Probe> = FuturesUnordered::new();
    let mut starts: Vec<Instant> = Vec::new();
    // Set when a second checker cannot be built: then probes never overlap.
    let mut no_spares = false;
    loop {
        let confirming = *p.confirming.borrow();
        let due = if idle.is_empty() && no_spares {
            None
        } else {
            schedule.due(&starts, confirming)
        };
        let event = {
            let lost: Pin<Box<dyn Future<Output = ()> + Send + '_>> =
                match (starts.is_empty(), idle.first_mut()) {
                    (true, Some(c)) => c.connection_lost(),
                    _ => Box::pin(pending()),
                };
            let sleep = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => pending().await,
                }
            };
            tokio::select! {
                Some((c, started, outcome)) = in_flight.next(), if !starts.is_empty() => {
                    Event::Done(c, started, outcome)
                }
                () = sleep => Event::Due,
                () = lost => Event::Lost,
                () = p.wake.notified() => Event::Signal,
                changed = p.confirming.changed() => match changed {
                    Ok(()) => Event::Confirming,
                    Err(_) => Event::Stop,
                },
            }
        };
        match event {
            Event::Stop => return,
            Event::Confirming => {}
            Event::Lost => schedule.connection_lost(Instant::now()),
            Event::Signal => schedule.signal(Instant::now()),
            Event::Due => {
                if p.addr.is_none() || resolved_at.elapsed() >= RESOLVE_EVERY {
                    if let Some(a) = resolve(&p.host, p.port, p.vip_v4).await {
                        p.addr = Some(a);
                    }
                    resolved_at = Instant::now();
                }
                let Some(checker) = idle.pop().or_else(|| spare(&p.check)) else {
                    // No second checker (its secret went away): wait for the
                    // probe in flight.
                    no_spares = true;
                    continue;
                };
                let at = Instant::now();
                schedule.started(at);
                starts.push(at);
                in_flight.push(probe(checker, p.addr, p.host.clone(), at));
            }
            Event::Done(checker, started, outcome) => {
                if let Some(i) = starts.iter().position(|s| *s == started) {
                    starts.swap_remove(i);
                }
                idle.push(checker);
                let healthy = outcome.healthy;
                let latency = outcome.latency;
                let report = Report {
                    member: p.member,
                    outcome,
                    addr: p.addr,
                    at: started,
                };
                if p.tx.send(report.into()).await.is_err() {
                    return;
                }
                schedule.finished(started, healthy, latency, *p.confirming.borrow());
                // Steady again: keep one connection, not `fall`.
                if starts.is_empty() && healthy && !*p.confirming.borrow() {
                    idle.truncate(1);
                }
            }
        }
    }
}

/// One probe with `checker`, handing the checker back with the result.
fn probe(
    mut checker: Box<dyn Checker>,
    addr: Option<SocketAddr>,
    host: Arc<str>,
    at: Instant,
) -> Probe {
    Box::pin(async move {
        let outcome = match addr {
            Some(a) => checker.check(a, &host).await,
            None => Outcome {
                healthy: false,
                latency: Duration::ZERO,
                error: Some(format!("cannot resolve {host}")),
                code: None,
                kind: Some(health::FailureKind::Resolve),
            },
        };
        (checker, at, outcome)
    })
}

/// Another checker for an overlapping probe.
fn spare(check: &config::Check) -> Option<Box<dyn Checker>> {
    health::build(check)
        .inspect_err(|e| tracing::warn!(error = %e, "cannot build a second checker"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn schedule(t0: Instant) -> Schedule {
        // interval 250ms, fast 50ms, fall 2
        Schedule::new(250 * MS, 50 * MS, 2, t0)
    }

    /// A schedule whose first probe, at `t0`, found the member healthy
    /// after `rtt`.
    fn healthy_once(t0: Instant, rtt: Duration) -> Schedule {
        let mut s = schedule(t0);
        s.started(t0);
        s.finished(t0, true, rtt, false);
        s
    }

    /// Durations far past what config accepts must not panic the probe
    /// task ("overflow when adding duration to instant").
    #[test]
    fn absurd_periods_saturate_instead_of_panicking() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Duration::MAX, Duration::MAX, 2, t0);
        s.started(t0);
        s.finished(t0, true, Duration::MAX, false);
        assert!(s.due(&[], false).is_some_and(|d| d > t0));
        assert!(s.due(&[t0], true).is_some_and(|d| d > t0));
        s.connection_lost(t0);
        s.finished(t0, false, Duration::ZERO, false);
        assert!(s.due(&[], false).is_some_and(|d| d > t0));
    }

    #[test]
    fn first_probe_is_due_at_once() {
        let t0 = Instant::now();
        assert_eq!(schedule(t0).due(&[], false), Some(t0));
    }

    #[test]
    fn steady_healthy_member_is_probed_every_interval() {
        let t0 = Instant::now();
        let mut s = healthy_once(t0, MS);
        // The first result differs from "no result": confirm quickly.
        assert_eq!(s.due(&[], false), Some(t0 + 50 * MS));
        let t1 = t0 + 50 * MS;
        s.started(t1);
        s.finished(t1, true, MS, false);
        assert_eq!(s.due(&[], false), Some(t1 + 250 * MS));
    }

    #[test]
    fn a_late_probe_of_a_healthy_member_starts_an_overlapping_one() {
        let t0 = Instant::now();
        let mut s = healthy_once(t0, MS);
        let t1 = t0 + 250 * MS;
        s.started(t1);
        assert_eq!(s.due(&[t1], false), Some(t1 + 50 * MS));
        // Up to `fall` (2) in flight, then wait for a result.
        let t2 = t1 + 50 * MS;
        s.started(t2);
        assert_eq!(s.due(&[t1, t2], false), None);
    }

    #[test]
    fn a_hung_member_is_confirmed_down_after_timeout_plus_fast_interval() {
        // fall = 2, timeout 250ms: the two failures end 250ms and 300ms
        // after the first probe started, not 250 + 50 + 250.
        let t0 = Instant::now();
        let mut s = healthy_once(t0, MS);
        let t1 = t0 + 250 * MS;
        s.started(t1);
        let t2 = s.due(&[t1], false).expect("overlap");
        s.started(t2);
        let timeout = 250 * MS;
        assert_eq!(t2 + timeout - t1, 300 * MS);
    }

    #[test]
    fn a_member_confirmed_down_is_probed_one_at_a_time() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        s.started(t0);
        s.finished(t0, false, 250 * MS, false);
        let t1 = t0 + 300 * MS;
        s.started(t1);
        assert_eq!(s.due(&[t1], false), None);
        // ...unless the service is still confirming a result.
        assert_eq!(s.due(&[t1], true), Some(t1 + 50 * MS));
    }

    #[test]
    fn slow_members_are_late_only_after_twice_their_round_trip() {
        let t0 = Instant::now();
        let mut s = healthy_once(t0, 80 * MS);
        let t1 = t0 + 250 * MS;
        s.started(t1);
        assert_eq!(s.due(&[t1], false), Some(t1 + 160 * MS));
    }

    #[test]
    fn a_lost_connection_brings_the_next_probe_forward_but_not_too_often() {
        let t0 = Instant::now();
        let mut s = healthy_once(t0, MS);
        let t1 = t0 + 50 * MS;
        s.started(t1);
        s.finished(t1, true, MS, false);
        assert_eq!(s.due(&[], false), Some(t1 + 250 * MS));
        // Lost 100ms after the last start: probe now.
        s.connection_lost(t1 + 100 * MS);
        assert_eq!(s.due(&[], false), Some(t1 + 100 * MS));
        // Lost 10ms after a start: not before fast_interval has passed.
        let t2 = t1 + 100 * MS;
        s.started(t2);
        s.finished(t2, true, MS, false);
        s.connection_lost(t2 + 10 * MS);
        assert_eq!(s.due(&[], false), Some(t2 + 50 * MS));
    }

    #[test]
    fn a_signal_starts_a_probe_at_once_even_right_after_a_connection_lost_probe() {
        let t0 = Instant::now();
        let mut s = healthy_once(t0, MS);
        let t1 = t0 + 50 * MS;
        // The kept connection was lost: a probe started at t1 and failed.
        s.connection_lost(t1);
        s.started(t1);
        s.finished(t1, false, MS, true);
        // The application's SYN is refused 2 ms later: probe now, not at
        // t1 + fast_interval.
        s.signal(t1 + 2 * MS);
        assert_eq!(s.due(&[], true), Some(t1 + 2 * MS));
    }

    #[test]
    fn signal_probes_are_spaced_by_fast_interval() {
        let t0 = Instant::now();
        let mut s = healthy_once(t0, MS);
        let t1 = t0 + 50 * MS;
        s.signal(t1);
        s.started(t1);
        s.finished(t1, true, MS, false);
        // A burst of signals 10 ms later asks for nothing new...
        s.signal(t1 + 10 * MS);
        assert_eq!(s.due(&[], false), Some(t1 + 250 * MS));
        // ...one after fast_interval does.
        s.signal(t1 + 50 * MS);
        assert_eq!(s.due(&[], false), Some(t1 + 50 * MS));
    }

    #[test]
    fn a_signal_never_exceeds_fall_probes_in_flight() {
        let t0 = Instant::now();
        let mut s = healthy_once(t0, MS);
        let (a, b) = (t0 + 50 * MS, t0 + 100 * MS);
        s.started(a);
        s.started(b);
        s.signal(t0 + 101 * MS);
        assert_eq!(
            s.due(&[a, b], true),
            None,
            "fall = 2 probes already in flight"
        );
    }

    #[test]
    fn a_result_unlike_the_last_is_followed_up_fast() {
        let t0 = Instant::now();
        let mut s = healthy_once(t0, MS);
        let t1 = t0 + 50 * MS;
        s.started(t1);
        s.finished(t1, true, MS, false);
        let t2 = t1 + 250 * MS;
        s.started(t2);
        s.finished(t2, false, MS, false);
        assert_eq!(s.due(&[], false), Some(t2 + 50 * MS));
    }
}

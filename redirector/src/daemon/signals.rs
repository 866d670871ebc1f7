//! Reactive signals from the data path to the services. The kernel counts,
//! per observed member endpoint, what the application's own traffic says
//! about it and wakes this task through a ring buffer (at most one event
//! per member per few ms); this task turns the kernel's cumulative counts
//! into new signals and hands them to every service that has the member.
//! It never blocks on a service: a full queue drops the event and counts
//! it (the counts arrive with the member's next event).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use redirector_common::{
    Endpoint,
    signal::{OBSERVE_L4, OBSERVE_L7, SignalKind as KernelKind},
};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::service::Msg;
use crate::{
    datapath::SignalEvents,
    decide::{SignalCounts, SignalKind},
    metrics::Metrics,
};

/// Which service member each observed endpoint is. Cheap to clone.
#[derive(Clone, Default)]
pub struct Routes(Arc<Mutex<HashMap<Endpoint, Vec<Route>>>>);

#[derive(Clone)]
struct Route {
    service: String,
    /// Which start of the service registered the route: a stopped
    /// incarnation whose drop runs late must not remove its successor's.
    incarnation: u64,
    member: usize,
    tx: mpsc::Sender<Msg>,
}

/// A new incarnation number for [`Routes::set`].
pub fn incarnation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Routes {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Endpoint, Vec<Route>>) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `service`'s members are now at `members` (endpoint, index); its
    /// service task (`incarnation`) listens on `tx`. Replaces what the
    /// service had.
    pub fn set(
        &self,
        service: &str,
        incarnation: u64,
        members: impl IntoIterator<Item = (Endpoint, usize)>,
        tx: &mpsc::Sender<Msg>,
    ) {
        let members: Vec<_> = members.into_iter().collect();
        self.with(|m| {
            m.retain(|_, routes| {
                routes.retain(|r| r.service != service);
                !routes.is_empty()
            });
            for (endpoint, member) in members {
                m.entry(endpoint).or_default().push(Route {
                    service: service.into(),
                    incarnation,
                    member,
                    tx: tx.clone(),
                });
            }
        });
    }

    /// The service's `incarnation` stopped.
    pub fn remove(&self, incarnation: u64) {
        self.with(|m| {
            m.retain(|_, routes| {
                routes.retain(|r| r.incarnation != incarnation);
                !routes.is_empty()
            })
        });
    }

    fn lookup(&self, endpoint: &Endpoint) -> Vec<Route> {
        self.with(|m| m.get(endpoint).cloned().unwrap_or_default())
    }

    /// Hands `signals` about `endpoint` to every service that has it;
    /// returns how many could not take it (queue full or gone).
    pub fn deliver(&self, endpoint: &Endpoint, signals: SignalCounts, at: Instant) -> usize {
        let mut dropped = 0;
        for r in self.lookup(endpoint) {
            let msg = Msg::Signal {
                member: r.member,
                signals,
                at,
            };
            if r.tx.try_send(msg).is_err() {
                tracing::debug!(
                    service = r.service,
                    "service queue full; signal event dropped"
                );
                dropped += 1;
            }
        }
        dropped
    }
}

/// Turns the kernel's cumulative per-kind counts into new signals.
#[derive(Default)]
pub struct Deltas(HashMap<(Endpoint, SignalKind), u64>);

impl Deltas {
    /// The signals of `kind` about `endpoint` since the last event, given
    /// the kernel's count now. The first event of an endpoint counts one
    /// (the one that woke us), not the whole history of a previous daemon;
    /// counts that did not move (a race with an earlier event) count one.
    pub fn new_signals(&mut self, endpoint: Endpoint, kind: SignalKind, count: u64) -> u32 {
        let last = self.0.insert((endpoint, kind), count);
        match last {
            Some(last) => u32::try_from(count.saturating_sub(last))
                .unwrap_or(u32::MAX)
                .max(1),
            None => 1,
        }
    }
}

/// The decision machine's name for a kernel signal kind.
fn kind_of(kernel: KernelKind) -> SignalKind {
    match kernel {
        KernelKind::Refused => SignalKind::Refused,
        KernelKind::Reset => SignalKind::Reset,
        KernelKind::SynUnanswered => SignalKind::SynUnanswered,
        KernelKind::Unreachable => SignalKind::Unreachable,
        KernelKind::RedisError => SignalKind::RedisError,
    }
}

/// The `OBSERVE_*` flags of a service's observe mode (none: not observed).
pub fn observe_flags(mode: crate::config::ObserveMode) -> u32 {
    match mode {
        crate::config::ObserveMode::Off => 0,
        crate::config::ObserveMode::Layer4 => OBSERVE_L4,
        crate::config::ObserveMode::Layer7 => OBSERVE_L4 | OBSERVE_L7,
    }
}

/// Reads the data path's signal events and hands them to the services
/// until the task is aborted; returns (a death, reported and restarted by
/// the supervisor) when the ring cannot be opened or read.
pub async fn run(pin_path: PathBuf, routes: Routes, metrics: Arc<Metrics>) {
    let ring = match SignalEvents::open(&pin_path) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %crate::error_chain::error_chain(&e), "cannot open the signal event ring; reactive signals are not read");
            return;
        }
    };
    // SAFETY: the ring owns its map fd and keeps it open, and the same, for
    // as long as the AsyncFd holds the ring.
    let mut ring = match unsafe { AsyncFd::register(ring) } {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot poll the signal event ring");
            return;
        }
    };
    let mut deltas = Deltas::default();
    loop {
        let mut guard = match ring.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "polling the signal event ring failed");
                return;
            }
        };
        while let Some(event) = guard.get_inner_mut().next_event() {
            let Some(kind) = KernelKind::from_u32(event.kind).map(kind_of) else {
                continue;
            };
            let n = deltas.new_signals(event.member, kind, event.count);
            let at = instant_of_ktime(event.at_ns);
            let dropped = routes.deliver(&event.member, SignalCounts::of(kind, n), at);
            metrics.reactive_events_dropped.inc_by(dropped as u64);
        }
        guard.clear_ready();
    }
}

/// The monotonic instant of a kernel timestamp (`bpf_ktime_get_ns`, the
/// same CLOCK_MONOTONIC as [`Instant`]); never later than now.
pub fn instant_of_ktime(ktime_ns: u64) -> Instant {
    let now = Instant::now();
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return now;
    }
    let mono_now = (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64);
    let age = Duration::from_nanos(mono_now.saturating_sub(ktime_ns));
    now.checked_sub(age).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn ep(s: &str) -> Endpoint {
        s.parse::<SocketAddr>().unwrap().into()
    }

    #[test]
    fn deltas_count_what_is_new_and_one_for_a_first_or_stale_event() {
        let mut d = Deltas::default();
        let east = ep("198.18.1.10:6379");
        assert_eq!(d.new_signals(east, SignalKind::Refused, 40), 1);
        assert_eq!(d.new_signals(east, SignalKind::Refused, 43), 3);
        assert_eq!(d.new_signals(east, SignalKind::Refused, 43), 1);
        assert_eq!(d.new_signals(east, SignalKind::Reset, 7), 1, "kinds apart");
        assert_eq!(
            d.new_signals(east, SignalKind::Refused, 2),
            1,
            "entry recreated"
        );
    }

    #[test]
    fn a_kernel_timestamp_becomes_an_instant_in_the_past() {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into the struct we pass.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        assert_eq!(rc, 0);
        let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        let at = instant_of_ktime(ns - 30_000_000);
        let age = Instant::now().duration_since(at);
        assert!(
            age >= Duration::from_millis(30) && age < Duration::from_secs(5),
            "{age:?}"
        );
        assert!(instant_of_ktime(u64::MAX) <= Instant::now());
    }

    #[tokio::test]
    async fn signals_reach_every_service_of_the_member_and_a_full_queue_drops() {
        let routes = Routes::default();
        let (a_tx, mut a_rx) = mpsc::channel(1);
        let (b_tx, mut b_rx) = mpsc::channel(1);
        let shared = ep("198.18.1.10:6379");
        routes.set("a", 1, [(shared, 0)], &a_tx);
        routes.set("b", 2, [(ep("198.18.2.10:6379"), 0), (shared, 1)], &b_tx);
        let s = SignalCounts::of(SignalKind::Refused, 1);
        assert_eq!(routes.deliver(&shared, s, Instant::now()), 0);
        assert!(matches!(a_rx.try_recv(), Ok(Msg::Signal { member: 0, .. })));
        assert!(matches!(b_rx.try_recv(), Ok(Msg::Signal { member: 1, .. })));
        // b's queue is full after one message: dropped and reported.
        routes.deliver(&shared, s, Instant::now());
        assert_eq!(routes.deliver(&shared, s, Instant::now()), 2);
        routes.remove(1);
        while a_rx.try_recv().is_ok() {}
        routes.deliver(&shared, s, Instant::now());
        assert!(a_rx.try_recv().is_err(), "a removed service gets nothing");
        // A late removal of an old incarnation leaves its successor alone.
        routes.set("b", 3, [(shared, 1)], &b_tx);
        routes.remove(2);
        while b_rx.try_recv().is_ok() {}
        assert_eq!(routes.deliver(&shared, s, Instant::now()), 0);
        assert!(b_rx.try_recv().is_ok());
    }
}

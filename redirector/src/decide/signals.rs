//! Reactive health: what the application's own traffic says about a member
//! (refused connections, resets, unanswered SYNs, ...) as an input of the
//! machine beside the checks, after HAProxy's `observe`/`error-limit`/
//! `on-error`. The daemon maps the data path's signal kinds onto these.

use std::time::Instant;

use super::{Flip, Health, MemberState, ServiceMachine};

/// One kind of signal the data path reports about a member. Layer 4 is
/// every kind but [`SignalKind::RedisError`], which is layer 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalKind {
    /// A SYN to the member answered with RST: nothing listens.
    Refused,
    /// RST from the member on an established flow.
    Reset,
    /// A SYN to the member left without an answer.
    SynUnanswered,
    /// ICMP/ICMPv6 destination unreachable about a flow to the member.
    Unreachable,
    /// Data sent again to the member on an established flow.
    Retransmit,
    /// A Redis error reply (`-LOADING`, `-MASTERDOWN`, ...) from the member.
    RedisError,
}

impl SignalKind {
    /// How many kinds there are.
    pub const COUNT: usize = 6;

    /// Every kind, in the order [`SignalCounts`] keeps them.
    pub const ALL: [SignalKind; SignalKind::COUNT] = [
        SignalKind::Refused,
        SignalKind::Reset,
        SignalKind::SynUnanswered,
        SignalKind::Unreachable,
        SignalKind::Retransmit,
        SignalKind::RedisError,
    ];

    /// The kind's name in metrics labels and history.
    pub const fn as_str(self) -> &'static str {
        match self {
            SignalKind::Refused => "refused",
            SignalKind::Reset => "reset",
            SignalKind::SynUnanswered => "syn_unanswered",
            SignalKind::Unreachable => "unreachable",
            SignalKind::Retransmit => "retransmit",
            SignalKind::RedisError => "redis_error",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Signals counted per kind (saturating at `u32::MAX`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalCounts([u32; SignalKind::COUNT]);

impl SignalCounts {
    /// `n` signals of `kind`.
    pub fn of(kind: SignalKind, n: u32) -> Self {
        let mut c = Self::default();
        c.add(kind, n);
        c
    }

    /// Counts `n` more signals of `kind`.
    pub fn add(&mut self, kind: SignalKind, n: u32) {
        let slot = &mut self.0[kind.index()];
        *slot = slot.saturating_add(n);
    }

    /// Counts every signal of `other` too.
    pub fn add_all(&mut self, other: &SignalCounts) {
        for (kind, n) in other.iter() {
            self.add(kind, n);
        }
    }

    /// The signals of `kind`.
    pub fn get(&self, kind: SignalKind) -> u32 {
        self.0[kind.index()]
    }

    /// Signals of every kind together.
    pub fn total(&self) -> u32 {
        self.0.iter().fold(0, |sum, n| sum.saturating_add(*n))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }

    /// The kinds counted at least once, with their counts, in
    /// [`SignalKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (SignalKind, u32)> + '_ {
        SignalKind::ALL
            .into_iter()
            .map(|k| (k, self.get(k)))
            .filter(|(_, n)| *n > 0)
    }

    /// Only the kinds `mode` observes.
    fn observed_by(&self, mode: ObserveMode) -> Self {
        let mut seen = Self::default();
        for (kind, n) in self.iter().filter(|(k, _)| mode.observes(*k)) {
            seen.add(kind, n);
        }
        seen
    }
}

impl FromIterator<(SignalKind, u32)> for SignalCounts {
    fn from_iter<I: IntoIterator<Item = (SignalKind, u32)>>(iter: I) -> Self {
        let mut c = Self::default();
        for (kind, n) in iter {
            c.add(kind, n);
        }
        c
    }
}

/// Which signals count (config `check.observe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObserveMode {
    /// None: health comes from the checks alone.
    Off,
    /// Every kind but Redis error replies.
    Layer4,
    /// Every kind.
    Layer7,
}

impl ObserveMode {
    pub const fn observes(self, kind: SignalKind) -> bool {
        match self {
            ObserveMode::Off => false,
            ObserveMode::Layer4 => !matches!(kind, SignalKind::RedisError),
            ObserveMode::Layer7 => true,
        }
    }
}

/// What `error_limit` signals do (config `check.on_error`). Every action
/// also asks for a probe at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Nothing more: the probe decides.
    Fastinter,
    /// Counts as one failed check, at most once per failing streak, so
    /// signals alone never complete a `fall` of 2 or more (with `fall = 1`
    /// this is `Fastinter`).
    FailCheck,
    /// Leaves a member that is not Down one failed check from Down.
    SuddenDeath,
    /// Down at once, without waiting for a probe.
    MarkDown,
}

/// The reactive part of the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observe {
    pub mode: ObserveMode,
    /// Signals, with no healthy check in between, that trigger `on_error`
    /// (at least 1).
    pub error_limit: u32,
    pub on_error: OnError,
}

/// What completed the failure that took a member Down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// A failed check (the last of `fall`).
    Checks,
    /// Signals: a reactive failure that completed `fall`, or `mark-down`.
    Signals,
}

impl Trigger {
    pub const fn as_str(self) -> &'static str {
        match self {
            Trigger::Checks => "checks",
            Trigger::Signals => "signals",
        }
    }
}

/// What the daemon must do after [`ServiceMachine::on_signal`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignalOutcome {
    /// Probe the member now (at most once per `fast_interval`: the probe
    /// schedule spaces them).
    pub probe_now: bool,
    pub flip: Option<Flip>,
}

impl ServiceMachine {
    /// Records `signals` about `member` seen at `at`. Kinds the policy does
    /// not observe are ignored. Signals accumulate (for history) until a
    /// healthy check; on a member that is not Down they also count towards
    /// `error_limit`, and reaching it resets the count, asks for a probe and
    /// applies `on_error`. Signals about a member that is not active
    /// (flows still draining to it) count the same way.
    pub fn on_signal(
        &mut self,
        member: usize,
        signals: SignalCounts,
        at: Instant,
    ) -> SignalOutcome {
        let observe = self.policy.observe;
        let fall = self.policy.fall;
        let seen = signals.observed_by(observe.mode);
        if seen.is_empty() {
            return SignalOutcome::default();
        }
        let m = &mut self.members[member];
        m.streak_signals.add_all(&seen);
        if m.health == Health::Down {
            return SignalOutcome::default();
        }
        m.errors = m.errors.saturating_add(seen.total());
        if m.errors < observe.error_limit {
            return SignalOutcome::default();
        }
        m.errors = 0;
        m.react(observe.on_error, fall, at);
        SignalOutcome {
            probe_now: true,
            flip: self.evaluate(at, None),
        }
    }
}

impl MemberState {
    /// Applies `on_error` to a member that is not Down.
    fn react(&mut self, on_error: OnError, fall: u32, at: Instant) {
        match on_error {
            OnError::Fastinter => {}
            OnError::FailCheck => {
                if fall >= 2 && !self.reactive_in_streak {
                    self.reactive_in_streak = true;
                    self.failed(fall, at, Trigger::Signals);
                }
            }
            OnError::SuddenDeath => {
                let edge = fall.saturating_sub(1);
                if self.fail_streak < edge {
                    self.fail_streak = edge;
                    self.ok_streak = 0;
                    self.first_failure.get_or_insert(at);
                }
            }
            OnError::MarkDown => {
                self.fail_streak = self.fail_streak.max(fall);
                self.ok_streak = 0;
                self.first_failure.get_or_insert(at);
                self.went_down(at, Trigger::Signals);
            }
        }
    }
}

//! The failover decisions of one service, as a pure state machine.
//!
//! Inputs are check results, operator commands and the passage of time;
//! outputs are flips of the active member and the set of members whose
//! flows the data path must reset. No I/O and no clock of its own (every
//! call takes `now`), so it is tested exhaustively on the host.
//!
//! Rules:
//! - member health by rise/fall over consecutive results (Unknown until the
//!   first rise or fall completes; Unknown members may be chosen, as HAProxy
//!   starts servers up, so a fresh start serves at once);
//! - the active member is the highest-priority eligible one (not Down, not
//!   drained); a Down active fails over at once;
//! - a better member that recovers takes over after `failback_delay` of
//!   continuous health (`auto`), or never by itself (`manual`);
//! - nothing eligible: keep the last active (fail static), degraded;
//! - `switchover` pins a member until `release`; a pinned member that goes
//!   Down still fails over, and takes over again once it is Up;
//! - planned moves (failback, switchover, release, drain) give the previous
//!   member's open flows `drain_timeout`, then they are reset; a failover
//!   resets the failed member's flows at once (`on_failover = "reset"`);
//! - cold start (`cold_start`): a fresh daemon holds the preferred member
//!   until the first verdicts are in, then moves only to a member confirmed
//!   Up; a member's first Up since a fresh start skips `failback_delay`;
//! - reactive signals (`signals`): the application's own traffic counts
//!   towards a member's health beside the checks, never marking it Down
//!   alone unless `on_error = "mark-down"`;
//! - fleet mode (`fleet`): one decision for every application host, over
//!   the hosts' shared view of the members (the rule only; not wired yet).

mod cold_start;
pub mod fleet;
mod signals;

use std::{collections::BTreeSet, time::Duration, time::Instant};

pub use self::signals::{
    Observe, ObserveMode, OnError, SignalCounts, SignalKind, SignalOutcome, Trigger,
};

/// `t + d`, saturating: when that moment cannot be represented, the
/// latest one that can within `d` (far beyond any process lifetime). A
/// deadline computed from an absurd duration must never panic the task
/// that computes it; config validation keeps durations sane, this keeps
/// the arithmetic safe whatever reaches it.
pub fn later(t: Instant, d: Duration) -> Instant {
    let mut d = d;
    loop {
        if let Some(at) = t.checked_add(d) {
            return at;
        }
        d /= 2;
    }
}

/// Whether a recovered better member takes over by itself (config
/// `failback`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failback {
    /// After `failback_delay` of continuous health.
    Auto,
    /// Never by itself: an operator moves it back (switchover, release).
    Manual,
}

/// What happens to the flows of a member that failed (config
/// `on_failover`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailover {
    /// Reset them at once, so clients reconnect to the new member.
    Reset,
    /// Leave them alone: they end on TCP timeouts.
    Keep,
}

/// What the machine needs from the service config.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub rise: u32,
    pub fall: u32,
    pub failback: Failback,
    pub failback_delay: Duration,
    pub on_failover: OnFailover,
    pub drain_timeout: Duration,
    /// The longest a fresh start waits for every member's first verdict
    /// before it moves off the preferred member: the check's
    /// `timeout × fall + interval`.
    pub settle: Duration,
    /// What the application's own traffic does to a member's health.
    pub observe: Observe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Unknown,
    Up,
    Down,
}

/// Why the active member changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// First assignment of the service.
    Initial,
    /// The active member went down (or nothing was up and one came back).
    Failover,
    /// The preferred member was healthy for `failback_delay`.
    Failback,
    /// Operator pinned a member.
    Switchover,
    /// Operator released a pin.
    Release,
    /// Operator drained the active member.
    Drain,
    /// A fresh daemon settled on its first member confirmed Up, or a better
    /// member's first Up since a fresh start (no `failback_delay`).
    Startup,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::Initial,
        Reason::Failover,
        Reason::Failback,
        Reason::Switchover,
        Reason::Release,
        Reason::Drain,
        Reason::Startup,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Initial => "initial",
            Reason::Failover => "failover",
            Reason::Failback => "failback",
            Reason::Switchover => "switchover",
            Reason::Release => "release",
            Reason::Drain => "drain",
            Reason::Startup => "startup",
        }
    }

    /// Planned moves let the old member's flows drain first.
    const fn planned(self) -> bool {
        matches!(
            self,
            Reason::Failback | Reason::Switchover | Reason::Release | Reason::Drain
        )
    }
}

/// A change of the active member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flip {
    pub from: Option<usize>,
    pub to: usize,
    pub reason: Reason,
    /// First failed check of the streak that took `from` down (failovers).
    pub first_failed_check: Option<Instant>,
    /// When `from` was decided down (failovers).
    pub marked_down: Option<Instant>,
    /// The signals about `from` since its last healthy check (failovers).
    pub signals: SignalCounts,
    /// What completed the failure of `from` (failovers).
    pub trigger: Option<Trigger>,
    pub decided_at: Instant,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MemberState {
    pub name: String,
    pub priority: u32,
    pub health: Health,
    ok_streak: u32,
    fail_streak: u32,
    /// First failed check of the current failing streak.
    pub first_failure: Option<Instant>,
    /// When the member was last decided Down.
    pub down_since: Option<Instant>,
    /// When the member was last decided Up (cleared when it goes Down).
    pub up_since: Option<Instant>,
    pub drained: bool,
    /// When a planned move away from this member ends its drain period.
    drain_deadline: Option<Instant>,
    /// Times decided Up since the daemon started (cold start: the first
    /// one skips `failback_delay`).
    ups: u32,
    /// Signals towards `error_limit` since the last healthy check or action.
    errors: u32,
    /// A reactive failure counts in the current failing streak already.
    reactive_in_streak: bool,
    /// Every observed signal since the last healthy check.
    pub streak_signals: SignalCounts,
    /// What completed the failure that took it Down.
    down_trigger: Option<Trigger>,
}

impl MemberState {
    fn new(name: String, priority: u32) -> Self {
        Self {
            name,
            priority,
            health: Health::Unknown,
            ok_streak: 0,
            fail_streak: 0,
            first_failure: None,
            down_since: None,
            up_since: None,
            drained: false,
            drain_deadline: None,
            ups: 0,
            errors: 0,
            reactive_in_streak: false,
            streak_signals: SignalCounts::default(),
            down_trigger: None,
        }
    }

    /// A healthy check result.
    fn passed(&mut self, rise: u32, now: Instant) {
        self.ok_streak += 1;
        self.fail_streak = 0;
        self.first_failure = None;
        self.errors = 0;
        self.reactive_in_streak = false;
        self.streak_signals = SignalCounts::default();
        if self.health != Health::Up && self.ok_streak >= rise {
            self.health = Health::Up;
            self.up_since = Some(now);
            self.down_since = None;
            self.down_trigger = None;
            self.ups = self.ups.saturating_add(1);
        }
    }

    /// A failed check, or a reactive failure (`by` says which).
    fn failed(&mut self, fall: u32, now: Instant, by: Trigger) {
        self.fail_streak += 1;
        self.ok_streak = 0;
        if self.first_failure.is_none() {
            self.first_failure = Some(now);
        }
        if self.fail_streak >= fall {
            self.went_down(now, by);
        }
    }

    /// Decided Down (nothing changes if it already is).
    fn went_down(&mut self, now: Instant, by: Trigger) {
        if self.health != Health::Down {
            self.health = Health::Down;
            self.down_since = Some(now);
            self.up_since = None;
            self.down_trigger = Some(by);
        }
    }

    /// A result is pending confirmation (checks run at `fast_interval`).
    pub fn in_transition(&self) -> bool {
        match self.health {
            Health::Up => self.fail_streak > 0,
            Health::Down => self.ok_streak > 0,
            Health::Unknown => true,
        }
    }
}

/// An operator command that cannot be carried out.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("member {0} is down")]
    MemberDown(String),
    #[error("no other member is up to take over from {0}")]
    NoOtherMember(String),
}

#[derive(Clone, Debug)]
pub struct ServiceMachine {
    pub policy: Policy,
    pub members: Vec<MemberState>,
    pub active: Option<usize>,
    pub pinned: Option<usize>,
    /// Nothing was adopted at start: the cold-start rules apply.
    fresh: bool,
    /// The end of the cold window of a fresh start (`now + settle`).
    cold_until: Option<Instant>,
    /// The active member has been Up since start (always, when adopted).
    settled: bool,
    /// Fleet mode: the active member is the fleet's decision ([`follow`],
    /// [`hold`]); checks still decide each member's health, but nothing
    /// here moves the active member.
    ///
    /// [`follow`]: ServiceMachine::follow
    /// [`hold`]: ServiceMachine::hold
    follows: bool,
}

impl ServiceMachine {
    /// `members` as (name, priority). `adopted` is the active member found
    /// in the data path at start: it is kept until checks decide otherwise
    /// and no cold-start rule applies. Without one, the start is fresh and
    /// its cold window runs from `now` for `policy.settle`.
    pub fn new(
        policy: Policy,
        members: Vec<(String, u32)>,
        adopted: Option<usize>,
        now: Instant,
    ) -> Self {
        let fresh = adopted.is_none();
        Self {
            cold_until: fresh.then(|| later(now, policy.settle)),
            policy,
            members: members
                .into_iter()
                .map(|(n, p)| MemberState::new(n, p))
                .collect(),
            active: adopted,
            pinned: None,
            fresh,
            settled: !fresh,
            follows: false,
        }
    }

    /// Fleet mode on or off. Off (the host was cut off from the fleet and
    /// `on_detach = "local"`), the next evaluation decides locally again.
    pub fn set_following(&mut self, follows: bool) {
        self.follows = follows;
    }

    pub fn following(&self) -> bool {
        self.follows
    }

    /// Fleet mode: makes `to` active because the fleet decided so, with
    /// the same bookkeeping as a local flip (the old member drains after a
    /// planned move, or when it is not down here).
    pub fn follow(&mut self, to: usize, reason: Reason, now: Instant) -> Option<Flip> {
        let flip = self.flip(to, reason, now);
        self.note_settled();
        flip
    }

    /// Fleet mode, break-before-make: no member serves until the fleet's
    /// barrier completes. The member that served drains from now (for
    /// `drain_timeout`); returns it.
    pub fn hold(&mut self, now: Instant) -> Option<usize> {
        let old = self.active.take()?;
        self.members[old].drain_deadline = Some(later(now, self.policy.drain_timeout));
        Some(old)
    }

    /// Every member down or drained: the service is served fail-static.
    pub fn degraded(&self) -> bool {
        !(0..self.members.len()).any(|i| self.eligible(i))
    }

    fn eligible(&self, i: usize) -> bool {
        let m = &self.members[i];
        !m.drained && m.health != Health::Down
    }

    /// The highest-priority member satisfying `ok` (ties: config order).
    fn best(&self, ok: impl Fn(usize) -> bool) -> Option<usize> {
        (0..self.members.len())
            .filter(|&i| ok(i))
            .min_by_key(|&i| (self.members[i].priority, i))
    }

    /// Records one check result.
    pub fn on_check(&mut self, member: usize, healthy: bool, now: Instant) -> Option<Flip> {
        let (rise, fall) = (self.policy.rise, self.policy.fall);
        let m = &mut self.members[member];
        if healthy {
            m.passed(rise, now);
        } else {
            m.failed(fall, now, Trigger::Checks);
        }
        self.evaluate(now, None)
    }

    /// Time passing: failback delays and drain periods.
    pub fn on_tick(&mut self, now: Instant) -> Option<Flip> {
        self.evaluate(now, None)
    }

    pub fn switchover(&mut self, member: usize, now: Instant) -> Result<Option<Flip>, OpError> {
        let m = &mut self.members[member];
        if m.health == Health::Down {
            return Err(OpError::MemberDown(m.name.clone()));
        }
        m.drained = false;
        self.pinned = Some(member);
        Ok(self.evaluate(now, Some(Reason::Switchover)))
    }

    pub fn release(&mut self, now: Instant) -> Option<Flip> {
        self.pinned = None;
        self.evaluate(now, Some(Reason::Release))
    }

    pub fn drain(&mut self, member: usize, now: Instant) -> Result<Option<Flip>, OpError> {
        if self.active == Some(member) && self.best(|i| i != member && self.eligible(i)).is_none() {
            return Err(OpError::NoOtherMember(self.members[member].name.clone()));
        }
        self.members[member].drained = true;
        if self.pinned == Some(member) {
            self.pinned = None;
        }
        Ok(self.evaluate(now, Some(Reason::Drain)))
    }

    pub fn undrain(&mut self, member: usize, now: Instant) -> Option<Flip> {
        self.members[member].drained = false;
        self.evaluate(now, Some(Reason::Release))
    }

    /// The member that should be active now, and why it would change.
    fn target(&self, now: Instant, op: Option<Reason>) -> Option<(usize, Reason)> {
        if let Some(p) = self.pinned
            && self.members[p].health != Health::Down
        {
            return Some((p, Reason::Switchover));
        }
        let Some(a) = self.active else {
            return self
                .best(|i| self.eligible(i))
                .map(|b| (b, Reason::Initial));
        };
        if let Some(cold) = self.cold_target(a, now) {
            return Some(cold);
        }
        if !self.eligible(a) {
            let why = if self.members[a].drained {
                Reason::Drain
            } else {
                Reason::Failover
            };
            // Nothing else eligible: fail static on `a`.
            return Some(
                self.best(|i| self.eligible(i))
                    .map_or((a, why), |b| (b, why)),
            );
        }
        // `a` is fine; move only to a better member that is confirmed Up.
        let better =
            self.best(|i| self.eligible(i) && self.members[i].priority < self.members[a].priority);
        if let Some(b) = better
            && self.members[b].health == Health::Up
        {
            // A released pin returns to the normal choice at once.
            if op == Some(Reason::Release) {
                return Some((b, Reason::Release));
            }
            if self.first_up_since_start(b) {
                return Some((b, Reason::Startup));
            }
            if self.policy.failback == Failback::Auto
                && self.members[b]
                    .up_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= self.policy.failback_delay)
            {
                return Some((b, Reason::Failback));
            }
        }
        Some((a, Reason::Initial))
    }

    fn evaluate(&mut self, now: Instant, op: Option<Reason>) -> Option<Flip> {
        if self.follows {
            self.note_settled();
            return None;
        }
        let flip = self.flip_to_target(now, op);
        self.note_settled();
        flip
    }

    fn flip_to_target(&mut self, now: Instant, op: Option<Reason>) -> Option<Flip> {
        let (to, reason) = self.target(now, op)?;
        self.flip(to, reason, now)
    }

    /// Makes `to` active (nothing if it is), draining or recording the
    /// failure of the member it replaces.
    fn flip(&mut self, to: usize, reason: Reason, now: Instant) -> Option<Flip> {
        let from = self.active;
        if from == Some(to) {
            return None;
        }
        self.active = Some(to);
        self.members[to].drain_deadline = None;
        let mut flip = Flip {
            from,
            to,
            reason,
            first_failed_check: None,
            marked_down: None,
            signals: SignalCounts::default(),
            trigger: None,
            decided_at: now,
        };
        if let Some(f) = from {
            let old = &mut self.members[f];
            if reason.planned() || old.health != Health::Down {
                old.drain_deadline = Some(later(now, self.policy.drain_timeout));
            } else {
                flip.first_failed_check = old.first_failure;
                flip.marked_down = old.down_since;
                flip.signals = old.streak_signals;
                flip.trigger = old.down_trigger;
            }
        }
        Some(flip)
    }

    /// Members whose open flows the data path must reset now: a Down
    /// member (with `on_failover = "reset"`) or one whose drain period
    /// after a planned move has ended. Never the active member.
    pub fn reset_members(&self, now: Instant) -> BTreeSet<usize> {
        (0..self.members.len())
            .filter(|&i| Some(i) != self.active)
            .filter(|&i| {
                let m = &self.members[i];
                (m.health == Health::Down && self.policy.on_failover == OnFailover::Reset)
                    || m.drain_deadline.is_some_and(|d| now >= d)
            })
            .collect()
    }

    /// The next moment `on_tick` may change something (failback delay,
    /// drain deadline or the end of the cold window), if any.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let drains = self
            .members
            .iter()
            .filter_map(|m| m.drain_deadline)
            .filter(|&d| d > now);
        let active_prio = self.active.map_or(u32::MAX, |a| self.members[a].priority);
        let failback = (self.policy.failback == Failback::Auto)
            .then(|| {
                self.members
                    .iter()
                    .filter(move |m| m.priority < active_prio)
                    .filter_map(|m| m.up_since)
            })
            .into_iter()
            .flatten()
            .map(|t| later(t, self.policy.failback_delay))
            .filter(|&d| d > now);
        drains.chain(failback).chain(self.cold_deadline(now)).min()
    }
}

#[cfg(test)]
mod tests;

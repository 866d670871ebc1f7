//! Fleet mode's decision rule: one active member per service for every
//! application host, decided over the hosts' shared view of the members.
//! Pure, like the rest of `decide`: the etcd part (leases, watch,
//! compare-and-swap on the decision's revision) lives elsewhere and feeds
//! this rule what it sees; every host evaluating the same inputs proposes
//! the same decision, so at most one proposal per epoch can win.
//!
//! Terms:
//! - a host is **live** while it holds its lease: its key
//!   `…/<service>/hosts/<host>` exists in the engine. A host whose lease
//!   expired (crashed, cut off from the engine) is not live; its last view
//!   is ignored, it is not waited for by the barrier.
//! - the **quorum** counts live hosts only: `Majority` is more than half
//!   of the live hosts, `Count(n)` is `n` of them (at least one). Fewer
//!   live hosts than `n` means no member is ever fleet-up or fleet-down,
//!   so the decision stays (fail static).
//! - a member is **fleet-down** when a quorum of live hosts see it down,
//!   **up** when a quorum see it up, and **up for the delay** when a
//!   quorum have seen it up for `failback_delay`. A member the fleet may
//!   move to is up, not fleet-down and not drained.
//!
//! Rule (`evaluate`, or `Fleet::evaluate`):
//! - a fresh fleet (nothing serves yet) starts on the best member up for a
//!   quorum once a quorum has judged every better member (up or down);
//! - the active member stays while it is not fleet-down and not drained,
//!   whatever a minority sees (no concurrent access: hosts that cannot
//!   reach it get errors rather than write elsewhere);
//! - otherwise the highest-priority member the fleet may move to takes
//!   over (failover, or drain); with none, the decision stays (fail
//!   static);
//! - a better member that is up for the delay takes over with
//!   `failback = "auto"`, never by itself with `manual`;
//! - a pinned member (`switchover`) ranks first, and takes over again, at
//!   once, when it comes back up after a failure;
//! - with `barrier = "ack"`, a planned move (the old member is not
//!   fleet-down) first goes through a phase with no active member, until
//!   every live host has applied that epoch; then the new member serves.
//!
//! Operator actions (`Fleet::{switchover, release, drain, undrain}`) are new
//! decisions too, so they act on the whole fleet at once. Every new
//! decision has the epoch after the current one.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use super::{Failback, Reason};

/// How one host sees one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// No verdict yet (a fresh daemon, or a member the host does not know).
    Unknown,
    /// Decided down by the host's own checks.
    Down,
    /// Decided up by the host's own checks.
    Up {
        /// Since when, in the evaluating host's clock (an `Instant` never
        /// crosses hosts: the caller converts what the host published).
        since: Instant,
    },
}

/// One application host's entry in the shared view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostView {
    /// The host's name (its key under `…/<service>/hosts/`).
    pub name: String,
    /// The host holds its lease (its key exists in the engine).
    pub live: bool,
    /// Its view of each member, in the service's member order; a missing
    /// entry counts as `Unknown`.
    pub members: Vec<Seen>,
    /// The latest decision epoch the host has applied to its data path
    /// (its acknowledgement, which the barrier waits for).
    pub applied_epoch: u64,
}

impl HostView {
    fn seen(&self, member: usize) -> Seen {
        self.members.get(member).copied().unwrap_or(Seen::Unknown)
    }
}

/// Every host's entry for one service, live or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetView {
    pub hosts: Vec<HostView>,
}

impl FleetView {
    fn live(&self) -> impl Iterator<Item = &HostView> {
        self.hosts.iter().filter(|h| h.live)
    }
}

/// How many live hosts make a quorum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    /// More than half of the live hosts.
    Majority,
    /// This many live hosts (0 counts as 1).
    Count(usize),
}

impl Quorum {
    /// The number of live hosts that must agree, out of `live`.
    pub fn needed(self, live: usize) -> usize {
        match self {
            Quorum::Majority => live / 2 + 1,
            Quorum::Count(n) => n.max(1),
        }
    }
}

/// Break-before-make for planned moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Barrier {
    /// The new member serves in the same epoch that stops the old one.
    None,
    /// No active member until every live host has applied the epoch that
    /// stops the old one (with `drain_timeout = "0s"`, zero overlap).
    Ack,
}

/// What the fleet rule needs from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetPolicy {
    pub quorum: Quorum,
    pub failback_delay: Duration,
    pub failback: Failback,
    pub barrier: Barrier,
}

/// Where a decision stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "phase")]
pub enum Phase {
    /// `active` serves (or nothing does, before the first member is up).
    Serving,
    /// Break-before-make: no member serves until every live host has
    /// applied this epoch, then `to` does.
    Barrier {
        /// The member that serves once every live host has acknowledged.
        to: usize,
    },
}

/// The fleet's decision for one service (the `…/<service>/decision` key).
/// Members are indices in the service's member order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// Grows by one with every change; one writer per epoch.
    pub epoch: u64,
    /// The member every host sends new flows to; `None` before the first
    /// member is up and during a barrier.
    pub active: Option<usize>,
    pub phase: Phase,
    /// Why the last change was made.
    pub reason: Reason,
    /// The member an operator switched over to, until `release`.
    pub pinned: Option<usize>,
    /// Members an operator drained, until `undrain`.
    pub drained: BTreeSet<usize>,
}

impl Decision {
    /// Epoch 0: nothing decided yet (the daemon creates the key with it).
    pub fn initial() -> Self {
        Self {
            epoch: 0,
            active: None,
            phase: Phase::Serving,
            reason: Reason::Initial,
            pinned: None,
            drained: BTreeSet::new(),
        }
    }
}

/// One member of the service, as the fleet rule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetMember {
    pub name: String,
    /// Lower is preferred; ties go to config order.
    pub priority: u32,
}

/// What a host should do after evaluating the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proposal {
    /// The current decision holds.
    Keep,
    /// Propose this decision (epoch + 1) by compare-and-swap on the
    /// current decision's revision.
    Change(Decision),
}

/// An operator action the fleet cannot carry out.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FleetOpError {
    /// Switchover to a member a quorum of live hosts does not see up.
    #[error(
        "member {0} is not up for a quorum of live hosts; check it from the hosts that see it down"
    )]
    NotUp(String),
    /// Draining the active member with no other member to take over.
    #[error("no other member is up for a quorum of live hosts to take over from {0}")]
    NoOtherMember(String),
    /// The action names a member the service does not have.
    #[error("the service has no member number {0}")]
    NoSuchMember(usize),
}

/// Whether this host should propose a new decision, given the shared view
/// and the current decision (`Fleet::evaluate` on these inputs).
pub fn evaluate(
    view: &FleetView,
    current: &Decision,
    policy: &FleetPolicy,
    members: &[FleetMember],
    now: Instant,
) -> Proposal {
    Fleet::new(view, policy, members, now).evaluate(current)
}

/// The inputs of one evaluation (the shared view, the policy, the
/// service's members, the evaluating host's clock), with the quorum over
/// them. The rule and the operator actions are its methods.
pub struct Fleet<'a> {
    view: &'a FleetView,
    policy: &'a FleetPolicy,
    members: &'a [FleetMember],
    now: Instant,
    /// Live hosts that must agree.
    needed: usize,
}

impl<'a> Fleet<'a> {
    pub fn new(
        view: &'a FleetView,
        policy: &'a FleetPolicy,
        members: &'a [FleetMember],
        now: Instant,
    ) -> Self {
        let needed = policy.quorum.needed(view.live().count());
        Self {
            view,
            policy,
            members,
            now,
            needed,
        }
    }

    /// Whether this host should propose a new decision instead of
    /// `current`. Deterministic: the same inputs give the same proposal on
    /// every host, whatever the order of `view.hosts`.
    pub fn evaluate(&self, current: &Decision) -> Proposal {
        let Some((to, reason)) = self.target(current, None) else {
            return Proposal::Keep;
        };
        match current.phase {
            Phase::Serving if current.active == Some(to) => Proposal::Keep,
            Phase::Barrier { to: next } if next == to => {
                if self.all_applied(current.epoch) {
                    Proposal::Change(Decision {
                        epoch: current.epoch + 1,
                        active: Some(to),
                        phase: Phase::Serving,
                        ..current.clone()
                    })
                } else {
                    Proposal::Keep
                }
            }
            _ => Proposal::Change(self.move_to(current, to, reason)),
        }
    }

    /// Pins `member` for the whole fleet (and undrains it); it takes over
    /// at once (through the barrier, if configured).
    pub fn switchover(&self, current: &Decision, member: usize) -> Result<Decision, FleetOpError> {
        let name = self.name(member)?;
        let mut next = current.clone();
        next.pinned = Some(member);
        next.drained.remove(&member);
        if !self.may_take_over(member, &next) {
            return Err(FleetOpError::NotUp(name));
        }
        Ok(self.apply(current, next, Reason::Switchover))
    }

    /// Removes the pin; the normal choice applies at once (a better member
    /// that is up takes over without `failback_delay`).
    pub fn release(&self, current: &Decision) -> Decision {
        let mut next = current.clone();
        next.pinned = None;
        self.apply(current, next, Reason::Release)
    }

    /// Drains `member` for the whole fleet (and unpins it); if it serves,
    /// the best other member takes over.
    pub fn drain(&self, current: &Decision, member: usize) -> Result<Decision, FleetOpError> {
        let name = self.name(member)?;
        let mut next = current.clone();
        next.drained.insert(member);
        if next.pinned == Some(member) {
            next.pinned = None;
        }
        if serving(current) == Some(member) && self.best(&next, |_| true).is_none() {
            return Err(FleetOpError::NoOtherMember(name));
        }
        Ok(self.apply(current, next, Reason::Drain))
    }

    /// Undrains `member`; the normal choice applies at once, as after
    /// `release`.
    pub fn undrain(&self, current: &Decision, member: usize) -> Result<Decision, FleetOpError> {
        self.name(member)?;
        let mut next = current.clone();
        next.drained.remove(&member);
        Ok(self.apply(current, next, Reason::Release))
    }

    fn name(&self, member: usize) -> Result<String, FleetOpError> {
        self.members
            .get(member)
            .map(|m| m.name.clone())
            .ok_or(FleetOpError::NoSuchMember(member))
    }

    /// A quorum of live hosts see `member` as `ok` says.
    fn quorum_sees(&self, member: usize, ok: impl Fn(Seen) -> bool) -> bool {
        self.view.live().filter(|h| ok(h.seen(member))).count() >= self.needed
    }

    /// A quorum of live hosts have a verdict (up or down) on `member`.
    fn judged(&self, member: usize) -> bool {
        self.quorum_sees(member, |s| s != Seen::Unknown)
    }

    fn fleet_down(&self, member: usize) -> bool {
        self.quorum_sees(member, |s| s == Seen::Down)
    }

    fn fleet_up(&self, member: usize) -> bool {
        self.quorum_sees(member, |s| matches!(s, Seen::Up { .. }))
    }

    fn up_for_delay(&self, member: usize) -> bool {
        let delay = self.policy.failback_delay;
        self.quorum_sees(member, |s| match s {
            Seen::Up { since } => self.now.saturating_duration_since(since) >= delay,
            Seen::Unknown | Seen::Down => false,
        })
    }

    /// `member` may keep serving under decision `d`.
    fn may_stay(&self, member: usize, d: &Decision) -> bool {
        !d.drained.contains(&member) && !self.fleet_down(member)
    }

    /// The fleet may move to `member` under decision `d`.
    fn may_take_over(&self, member: usize, d: &Decision) -> bool {
        self.may_stay(member, d) && self.fleet_up(member)
    }

    /// Preference order: the pinned member, then priority, then config
    /// order.
    fn rank(&self, member: usize, d: &Decision) -> (bool, u32, usize) {
        (
            d.pinned != Some(member),
            self.members[member].priority,
            member,
        )
    }

    /// The best-ranked member the fleet may move to that satisfies `ok`.
    fn best(&self, d: &Decision, ok: impl Fn(usize) -> bool) -> Option<usize> {
        (0..self.members.len())
            .filter(|&m| ok(m) && self.may_take_over(m, d))
            .min_by_key(|&m| self.rank(m, d))
    }

    /// The member that should serve under `d`, and why; `None` keeps `d`
    /// (fail static). `op` is an operator action: a better member takes
    /// over at once, for that reason.
    fn target(&self, d: &Decision, op: Option<Reason>) -> Option<(usize, Reason)> {
        let Some(a) = serving(d) else {
            let b = self.best(d, |_| true)?;
            // A fresh fleet: a better member that a quorum has not judged
            // yet may be up a moment later; wait for its verdict, as a
            // fresh daemon's cold window does, rather than start on the
            // wrong member and fail back after `failback_delay`.
            let b_rank = self.rank(b, d);
            let waiting = (0..self.members.len())
                .any(|m| self.rank(m, d) < b_rank && !d.drained.contains(&m) && !self.judged(m));
            return (!waiting).then(|| (b, op.unwrap_or(Reason::Initial)));
        };
        if !self.may_stay(a, d) {
            let why = if d.drained.contains(&a) {
                Reason::Drain
            } else {
                Reason::Failover
            };
            return self.best(d, |_| true).map(|b| (b, why));
        }
        let a_rank = self.rank(a, d);
        let better = self.best(d, |m| self.rank(m, d) < a_rank);
        match (better, op) {
            (Some(b), _) if d.pinned == Some(b) => Some((b, Reason::Switchover)),
            (Some(b), Some(op)) => Some((b, op)),
            (Some(b), None) if self.policy.failback == Failback::Auto && self.up_for_delay(b) => {
                Some((b, Reason::Failback))
            }
            _ => Some((a, d.reason)),
        }
    }

    /// Every live host has applied `epoch`.
    fn all_applied(&self, epoch: u64) -> bool {
        self.view.live().all(|h| h.applied_epoch >= epoch)
    }

    /// The decision after `d` that makes `to` serve: through a barrier
    /// when configured and the member serving (or about to) is not
    /// fleet-down, so no host can still be writing through it.
    fn move_to(&self, d: &Decision, to: usize, reason: Reason) -> Decision {
        let mut next = d.clone();
        next.epoch = d.epoch + 1;
        next.reason = reason;
        let old_reachable = match d.phase {
            Phase::Barrier { .. } => true,
            Phase::Serving => d.active.is_some_and(|a| a != to && !self.fleet_down(a)),
        };
        if self.policy.barrier == Barrier::Ack && old_reachable {
            next.active = None;
            next.phase = Phase::Barrier { to };
        } else {
            next.active = Some(to);
            next.phase = Phase::Serving;
        }
        next
    }

    /// An operator's change of `current` into `next` (pin, drain), with
    /// the member that must serve under it chosen at once.
    fn apply(&self, current: &Decision, next: Decision, op: Reason) -> Decision {
        let target = self.target(&next, Some(op));
        let moves = match (target, next.phase) {
            (Some((to, _)), Phase::Barrier { to: next_to }) => to != next_to,
            (Some((to, _)), Phase::Serving) => next.active != Some(to),
            (None, _) => false,
        };
        match target {
            Some((to, _)) if moves => self.move_to(&next, to, op),
            _ => Decision {
                epoch: current.epoch + 1,
                reason: op,
                ..next
            },
        }
    }
}

/// The member serving under `d`, or about to once its barrier completes.
fn serving(d: &Decision) -> Option<usize> {
    match d.phase {
        Phase::Barrier { to } => Some(to),
        Phase::Serving => d.active,
    }
}

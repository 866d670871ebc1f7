//! Cold start: a fresh daemon (nothing adopted from the data path) must not
//! fail over on its first probes, which may time out for reasons that have
//! nothing to do with the member (IPv6 neighbour discovery on a new
//! topology). Until the first verdicts are in it keeps the preferred member,
//! then moves only to a member confirmed Up; a member's first Up since start
//! is not subject to `failback_delay`.

use std::time::Instant;

use super::{Failback, Health, Reason, ServiceMachine};

impl ServiceMachine {
    /// A fresh daemon still waits for its first verdicts or for a member
    /// confirmed Up (status shows it; `next_deadline` includes the end of
    /// the wait).
    pub fn settling(&self) -> bool {
        !self.settled
    }

    /// The target while settling, with `a` active; `None` once settled, or
    /// when `a` was drained (an operator's drain moves at once).
    ///
    /// - Hold: until `cold_until`, while some member still has no verdict,
    ///   `a` (the preferred member, picked at the first tick) stays, even
    ///   if its first probes time out.
    /// - Settle: then the best member confirmed Up; with none Up, `a`
    ///   stays, never an unconfirmed member.
    pub(super) fn cold_target(&self, a: usize, now: Instant) -> Option<(usize, Reason)> {
        if self.settled || self.members[a].drained {
            return None;
        }
        let waiting = self.cold_until.is_some_and(|end| now < end)
            && self
                .members
                .iter()
                .any(|m| !m.drained && m.health == Health::Unknown);
        if waiting {
            return Some((a, Reason::Initial));
        }
        let up = self.best(|i| self.eligible(i) && self.members[i].health == Health::Up);
        Some(match up {
            Some(b) if b != a => (b, Reason::Startup),
            _ => (a, Reason::Initial),
        })
    }

    /// Whether `b`, a better member than the active one and Up, takes over
    /// at once: its first Up since a fresh start (never with a manual
    /// failback, never on an adopted start).
    pub(super) fn first_up_since_start(&self, b: usize) -> bool {
        self.fresh
            && self.settled
            && self.policy.failback == Failback::Auto
            && self.members[b].ups == 1
    }

    /// Called after every evaluation: settled once the active member is Up.
    pub(super) fn note_settled(&mut self) {
        if !self.settled
            && self
                .active
                .is_some_and(|a| self.members[a].health == Health::Up)
        {
            self.settled = true;
        }
    }

    /// The end of the cold window, while it matters.
    pub(super) fn cold_deadline(&self, now: Instant) -> Option<Instant> {
        self.cold_until.filter(|&end| !self.settled && end > now)
    }
}

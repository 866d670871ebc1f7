//! Upkeep of the flow table from userspace: the sweep that removes what
//! the data path cannot see end (a peer gone without FIN or RST, a last
//! ACK lost on the wire, a reply entry left without its flow) and counts
//! open and closing flows against capacity.
//!
//! The data path removes finished flows itself (`redirector_common::flow`);
//! this only catches the rest. It opens its own map handles, so it runs on
//! a thread of its own and never waits on, or delays, the map writer.

use std::{collections::HashSet, path::Path};

use aya::maps::{HashMap, MapData, MapError};
use redirector_common::{
    CONNTRACK, CONNTRACK_MAP, FlowKey, REVERSE_NAT, REVERSE_NAT_MAP, ReplyTarget, ReverseKey,
    TrackedFlow, flow::FLOW_CLOSING,
};
use serde::{Deserialize, Serialize};

use super::{
    DatapathError,
    pinned::{map_err, open_pinned, open_typed, typed},
};

/// How long flows may go without a packet, in jiffies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// An open flow (any FIN from at most one side).
    pub idle: u32,
    /// A closing flow (FIN from both sides), since it started closing.
    pub close: u32,
}

/// What one flow entry is, at one sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Open,
    /// A FIN from one side (half-closed) or both.
    Closing,
    /// Past its lifetime: remove it.
    Expired,
}

/// The pure rule of the sweep. `seen` and `now` are 32-bit jiffies; the
/// difference is wrap-safe for lifetimes under 2^31 jiffies.
pub fn verdict(flow: &TrackedFlow, now: u32, lifetimes: Lifetimes) -> Verdict {
    let age = now.wrapping_sub(flow.seen);
    // A `seen` ahead of `now` (written between our clock read and the
    // walk) is a fresh entry, not a very old one.
    let age = if age > u32::MAX / 2 { 0 } else { age };
    if flow.state == FLOW_CLOSING {
        if age > lifetimes.close {
            Verdict::Expired
        } else {
            Verdict::Closing
        }
    } else if age > lifetimes.idle {
        Verdict::Expired
    } else if flow.state != 0 {
        Verdict::Closing
    } else {
        Verdict::Open
    }
}

/// What one sweep found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    /// Open flows left in CONNTRACK.
    pub open: u64,
    /// Closing flows left (a FIN seen from one side or both).
    pub closing: u64,
    /// REVERSE_NAT entries left.
    pub replies: u64,
    /// Flows removed as idle past `flow_idle_timeout`.
    pub removed_idle: u64,
    /// Flows removed as closing past `flow_close_timeout`.
    pub removed_closing: u64,
    /// Reply entries removed because their flow was gone in two sweeps.
    pub removed_orphans: u64,
}

/// The sweep's own handles on CONNTRACK and REVERSE_NAT.
pub struct FlowTable {
    conntrack: HashMap<MapData, FlowKey, TrackedFlow>,
    reverse: HashMap<MapData, ReverseKey, ReplyTarget>,
    capacity: u32,
    /// Reply entries without a matching flow at the last sweep. One is
    /// removed only when it is still orphaned at the next: egress writes
    /// the reply entry just before the flow entry.
    orphans: HashSet<ReverseKey>,
}

impl FlowTable {
    pub fn open(pin_path: &Path) -> Result<Self, DatapathError> {
        let conntrack = open_pinned(pin_path, &CONNTRACK_MAP)?;
        let capacity = conntrack.info().map_err(map_err(CONNTRACK))?.max_entries();
        Ok(Self {
            conntrack: typed(conntrack, &CONNTRACK_MAP)?,
            reverse: open_typed(pin_path, &REVERSE_NAT_MAP)?,
            capacity,
            orphans: HashSet::new(),
        })
    }

    /// Entries CONNTRACK (and REVERSE_NAT) can hold.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// One pass over both maps at jiffies `now`. Keys to remove are
    /// collected first: deleting the key a walk stands on restarts it.
    pub fn sweep(&mut self, now: u32, lifetimes: Lifetimes) -> Result<Sweep, DatapathError> {
        let mut out = Sweep::default();
        let mut expired = Vec::new();
        for item in self.conntrack.iter() {
            let (key, flow) = match item {
                Ok(kv) => kv,
                // Removed by the data path while we walked.
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(map_err(CONNTRACK)(e)),
            };
            match verdict(&flow, now, lifetimes) {
                Verdict::Open => out.open += 1,
                Verdict::Closing => out.closing += 1,
                Verdict::Expired => {
                    if flow.state == FLOW_CLOSING {
                        out.removed_closing += 1;
                    } else {
                        out.removed_idle += 1;
                    }
                    let reply = ReverseKey {
                        member: flow.assignment.member,
                        client: key.client,
                    };
                    expired.push((key, reply));
                }
            }
        }
        for (key, reply) in &expired {
            gone(self.conntrack.remove(key), CONNTRACK)?;
            gone(self.reverse.remove(reply), REVERSE_NAT)?;
        }
        let mut orphans = HashSet::new();
        for item in self.reverse.iter() {
            let (key, target) = match item {
                Ok(kv) => kv,
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(map_err(REVERSE_NAT)(e)),
            };
            // Its flow, looked up rather than remembered from the walk
            // above: a set of every flow would cost ~100 bytes a flow.
            let flow = FlowKey {
                client: key.client,
                vip: target.vip,
            };
            match self.conntrack.get(&flow, 0) {
                Ok(f) if f.assignment.member == key.member => out.replies += 1,
                Ok(_) | Err(MapError::KeyNotFound) => {
                    orphans.insert(key);
                }
                Err(e) => return Err(map_err(CONNTRACK)(e)),
            }
        }
        for key in orphans.intersection(&self.orphans) {
            gone(self.reverse.remove(key), REVERSE_NAT)?;
            out.removed_orphans += 1;
        }
        out.replies += orphans.difference(&self.orphans).count() as u64;
        self.orphans = orphans;
        Ok(out)
    }
}

/// A remove of an entry the data path already removed is no error.
fn gone(r: Result<(), MapError>, map: &'static str) -> Result<(), DatapathError> {
    match r {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(map_err(map)(e)),
    }
}

#[cfg(test)]
mod tests {
    use redirector_common::{Assignment, Endpoint, FibCache, flow::FIN_FROM_CLIENT};

    use super::*;

    fn flow(state: u32, seen: u32) -> TrackedFlow {
        TrackedFlow {
            assignment: Assignment {
                member: Endpoint::tcp_v4([198, 18, 1, 10], [0x18, 0xeb]),
                generation: 1,
                flags: 0,
            },
            fib: FibCache::EMPTY,
            state,
            seen,
        }
    }

    const L: Lifetimes = Lifetimes {
        idle: 1000,
        close: 10,
    };

    #[test]
    fn open_flows_live_until_idle_past_their_lifetime() {
        assert_eq!(verdict(&flow(0, 100), 1100, L), Verdict::Open);
        assert_eq!(verdict(&flow(0, 100), 1101, L), Verdict::Expired);
    }

    #[test]
    fn closing_flows_expire_after_the_close_lifetime() {
        assert_eq!(verdict(&flow(FLOW_CLOSING, 100), 110, L), Verdict::Closing);
        assert_eq!(verdict(&flow(FLOW_CLOSING, 100), 111, L), Verdict::Expired);
    }

    #[test]
    fn half_closed_flows_count_as_closing_but_live_as_open() {
        let f = flow(FIN_FROM_CLIENT, 100);
        assert_eq!(verdict(&f, 500, L), Verdict::Closing);
        assert_eq!(verdict(&f, 1101, L), Verdict::Expired);
    }

    #[test]
    fn ages_are_wrap_safe_and_a_seen_ahead_of_now_is_fresh() {
        assert_eq!(verdict(&flow(0, u32::MAX - 5), 10, L), Verdict::Open);
        assert_eq!(verdict(&flow(0, u32::MAX - 5), 2000, L), Verdict::Expired);
        assert_eq!(verdict(&flow(FLOW_CLOSING, 120), 100, L), Verdict::Closing);
    }
}

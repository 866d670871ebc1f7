//! What the daemon reports: the admin API's JSON shapes, shared by the
//! daemon (which fills them) and the CLI (which prints them).

use std::{collections::BTreeMap, net::SocketAddr};

use serde::{Deserialize, Serialize};

use crate::decide::{Health, Reason};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub config: String,
    pub pin_path: String,
    pub attachments: Vec<String>,
    pub services: Vec<ServiceStatus>,
    /// Data-path counters summed over CPUs, by name.
    pub counters: Vec<(String, u64)>,
    /// Open and closing flows against capacity, as of the last sweep.
    pub flows: FlowTableStatus,
    /// The supervised long-lived tasks: running now, deaths, last error.
    #[serde(default)]
    pub tasks: Vec<TaskStatus>,
}

/// One supervised task (`service:NAME`, `admin`, `metrics`, `writer`,
/// `flow_sweep`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub name: String,
    pub running: bool,
    pub deaths: u64,
    pub last_error: Option<String>,
}

/// The flow table as the background sweep last saw it. Counts come from
/// its walk (off the decision path), so they are up to one sweep old.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowTableStatus {
    /// Entries CONNTRACK can hold.
    pub capacity: u64,
    /// Open flows at the last sweep.
    pub open: u64,
    /// Closing flows (a FIN seen from one side or both) at the last sweep.
    pub closing: u64,
    /// Reply entries at the last sweep.
    pub replies: u64,
    /// The most flows (open + closing) any sweep has seen since start: how
    /// close to full the table ran. The kernel does not report LRU
    /// evictions; above about 80 % of capacity they become likely.
    pub peak: u64,
    /// Flows the sweep removed: idle past `flow_idle_timeout`.
    pub removed_idle: u64,
    /// ... closing past `flow_close_timeout`.
    pub removed_closing: u64,
    /// Reply entries removed whose flow was gone.
    pub removed_orphans: u64,
    /// Sweeps done since start.
    pub sweeps: u64,
    /// Unix ms of the last sweep (0: none yet).
    pub last_sweep_unix_ms: u64,
    /// Wall time the last sweep took, milliseconds.
    pub last_sweep_ms: f64,
    /// Why the last sweep failed, if it did.
    pub error: Option<String>,
}

impl FlowTableStatus {
    /// Flows in the table (open + closing) as a share of capacity.
    pub fn fill(&self) -> f64 {
        if self.capacity == 0 {
            return 0.0;
        }
        (self.open + self.closing) as f64 / self.capacity as f64
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub vip: SocketAddr,
    pub active: Option<String>,
    pub pinned: Option<String>,
    pub degraded: bool,
    pub failback: String,
    pub members: Vec<MemberStatus>,
    /// Fleet mode's view, for a service with `fleet = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// A fleet service as this host sees it: its link to the coordination
/// engine, the fleet's decision and every live host's view.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FleetStatus {
    /// This host's name in the fleet.
    pub host: String,
    /// The host holds its lease and watches the decision.
    pub attached: bool,
    /// Unix ms since when the host has been cut off from the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detached_since_ms: Option<u64>,
    /// The host applies the fleet's decision; `false` once
    /// `on_detach = "local"` has handed the service to its own checks.
    pub following: bool,
    /// The decision's epoch (0: nothing decided yet).
    pub epoch: u64,
    /// The member the fleet serves through.
    pub active: Option<String>,
    /// During a barrier: the member that serves once every live host has
    /// applied the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barrier_to: Option<String>,
    pub reason: Option<Reason>,
    /// The host that wrote the decision.
    pub by: String,
    pub pinned: Option<String>,
    #[serde(default)]
    pub drained: Vec<String>,
    /// The epoch this host has applied to its data path.
    pub applied_epoch: u64,
    /// Live hosts (holding their lease) and what each sees.
    pub hosts: Vec<FleetHostStatus>,
    /// The last error talking to the engine, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One live host's published view of a fleet service.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FleetHostStatus {
    pub name: String,
    pub applied_epoch: u64,
    /// Member name → "up", "down" or "unknown".
    pub members: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    pub name: String,
    pub addr: String,
    pub resolved: Option<SocketAddr>,
    pub priority: u32,
    pub health: Health,
    pub drained: bool,
    pub last_check: Option<CheckStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckStatus {
    pub healthy: bool,
    pub latency_ms: f64,
    pub error: Option<String>,
    pub code: Option<String>,
    /// Unix time of the check, milliseconds.
    pub at_unix_ms: u64,
}

/// One flip of one service, with the timeline that led to it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlipRecord {
    pub service: String,
    pub from: Option<String>,
    pub to: String,
    pub reason: Reason,
    /// Unix ms of the first failed check of the failing streak (failovers).
    pub first_failed_check_ms: Option<u64>,
    /// Unix ms when the old member was decided down (failovers).
    pub marked_down_ms: Option<u64>,
    /// Unix ms when the SERVICES entry was written.
    pub map_written_ms: u64,
    /// Reactive signals about the old member in its failing streak, by
    /// kind (failovers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub signals: BTreeMap<String, u64>,
    /// What completed the old member's failure: "checks" or "signals"
    /// (failovers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The fleet decision's epoch this flip applied (fleet services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// "barrier": the entry was cleared (no member serves) until every
    /// live host applies the epoch; `to` serves after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// Converts a monotonic instant to Unix milliseconds.
pub fn unix_ms(t: std::time::Instant) -> u64 {
    let now_wall = std::time::SystemTime::now();
    let age = std::time::Instant::now().saturating_duration_since(t);
    now_wall
        .checked_sub(age)
        .and_then(|w| w.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

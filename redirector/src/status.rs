//! What the daemon reports: the admin API's JSON shapes, shared by the
//! daemon (which fills them) and the CLI (which prints them).

use std::net::SocketAddr;

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
    pub flows: usize,
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
}

/// Admin API request (one JSON object per line).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    History,
    Switchover { service: String, member: String },
    Release { service: String },
    Drain { service: String, member: String },
    Undrain { service: String, member: String },
    Reload,
}

/// Admin API response (one JSON object per line).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DaemonStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<FlipRecord>>,
}

impl Response {
    pub fn ok(message: impl Into<String>) -> Self {
        Self {
            ok: true,
            error: None,
            message: Some(message.into()),
            status: None,
            history: None,
        }
    }

    pub fn err(error: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(error.into()),
            message: None,
            status: None,
            history: None,
        }
    }
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

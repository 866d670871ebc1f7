//! The admin wire protocol: one JSON object per line each way over the
//! admin socket. The daemon answers with the status snapshots of
//! [`crate::status`]; the CLI and tests speak it through
//! [`super::request`].

use serde::{Deserialize, Serialize};

use crate::status::{DaemonStatus, FlipRecord};

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

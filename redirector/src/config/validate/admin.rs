//! `[admin]`: the Unix socket of the admin API and the metrics endpoint.

use std::{net::SocketAddr, path::PathBuf};

use super::Ctx;
use crate::config::{
    defaults::{DEFAULT_ADMIN_SOCKET, DEFAULT_METRICS, MAX_SOCKET_PATH},
    error::ConfigError,
    model::AdminSection,
    raw::{RawAdmin, split},
};

impl Ctx<'_> {
    /// `[admin]`: the admin socket path and the metrics address.
    pub(super) fn admin(&self, raw: RawAdmin) -> Result<AdminSection, ConfigError> {
        let socket = match raw.socket.map(split) {
            Some((span, s)) if s.is_empty() => {
                return Err(self.err(&span, "admin.socket", "must not be empty"));
            }
            Some((span, s)) if s.len() > MAX_SOCKET_PATH => {
                return Err(self.err(
                    &span,
                    "admin.socket",
                    format!(
                        "path is {} bytes; a Unix socket path holds at most {MAX_SOCKET_PATH} \
                         (sun_path): choose a shorter one",
                        s.len()
                    ),
                ));
            }
            Some((_, s)) => PathBuf::from(s),
            None => PathBuf::from(DEFAULT_ADMIN_SOCKET),
        };
        let (span, metrics) = raw
            .metrics
            .map(split)
            .unwrap_or((0..0, DEFAULT_METRICS.to_string()));
        let metrics = if metrics == "off" {
            None
        } else {
            Some(metrics.parse::<SocketAddr>().map_err(|_| {
                self.err(
                    &span,
                    "admin.metrics",
                    format!("invalid address {metrics:?}: expected \"off\" or IP:port"),
                )
            })?)
        };
        Ok(AdminSection { socket, metrics })
    }
}

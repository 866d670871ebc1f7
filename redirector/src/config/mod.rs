//! The daemon's configuration: TOML in, validated typed values out.
//!
//! Parsing and validation are pure (no I/O beyond reading the file, the
//! hostname and the etcd password of `[fleet.auth]`), so `redirector
//! validate` and a SIGHUP reload share them, and a rejected file never
//! disturbs the running config. Errors name the file, line and field.
//! Secrets are referenced (file or environment variable), never inlined;
//! [`Secret`] and [`FleetAuth`] never print a password.
//!
//! This module depends on nothing else in the crate: the daemon converts
//! its values into the types of `datapath` and `decide`.
//!
//! Layout: [`model`] is the validated public model, `raw` the serde shape
//! of the file, `validate` turns one into the other section by section,
//! `addr` parses member addresses, `span` maps byte offsets to lines and
//! dotted field names, `warnings` reports risky but valid setups.

mod addr;
mod defaults;
mod error;
mod model;
mod raw;
mod span;
mod validate;
mod warnings;

use std::path::Path;

pub use self::{
    defaults::{
        CHECK_DURATION_RANGE, COUNT_RANGE, DEFAULT_ADMIN_SOCKET, DEFAULT_DETACH_TIMEOUT,
        DEFAULT_FLEET_TIMEOUT, DEFAULT_FLOW_CLOSE_TIMEOUT, DEFAULT_FLOW_IDLE_TIMEOUT,
        DEFAULT_LEASE_TTL, ERROR_LIMIT_RANGE, FLOW_CLOSE_TIMEOUT_RANGE, FLOW_IDLE_TIMEOUT_RANGE,
        LEASE_TTL_RANGE, MAX_CONNTRACK_ENTRIES, MAX_SOCKET_PATH, SERVICE_DELAY_RANGE,
    },
    error::ConfigError,
    model::{
        AdminSection, AvailabilityOptions, Check, CheckKind, Config, DatapathSection, Failback,
        Fleet, FleetAuth, FleetBarrier, FleetQuorum, FleetTls, IngressMode, Member, Observe,
        ObserveMode, OnDetach, OnError, OnFailover, RedisOptions, Secret, Service, TlsOptions,
    },
    warnings::warnings,
};

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates `text`; `path` only names the file in errors.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let ctx = validate::Ctx::new(text, path);
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;
    ctx.config(raw)
}

#[cfg(test)]
mod tests;

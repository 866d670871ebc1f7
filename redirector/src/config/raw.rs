//! The file as serde reads it: every key optional and spanned, so
//! validation can tell "absent" from "wrong" and point at the line of
//! either. Unknown keys are rejected here (`deny_unknown_fields`).

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::model::IngressMode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) datapath: Option<Spanned<RawDatapath>>,
    pub(super) admin: Option<RawAdmin>,
    pub(super) fleet: Option<Spanned<RawFleet>>,
    pub(super) services: Option<Spanned<Vec<Spanned<RawService>>>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatapath {
    pub(super) interfaces: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) ingress: Option<IngressMode>,
    pub(super) pin_path: Option<Spanned<String>>,
    pub(super) conntrack_entries: Option<Spanned<u32>>,
    pub(super) flow_idle_timeout: Option<Spanned<String>>,
    pub(super) flow_close_timeout: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) socket: Option<Spanned<String>>,
    pub(super) metrics: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    pub(super) endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) prefix: Option<Spanned<String>>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) lease_ttl: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    /// "majority" or an integer: checked in validation, so a wrong type
    /// gets the same message as a wrong value.
    pub(super) quorum: Option<Spanned<toml::Value>>,
    pub(super) barrier: Option<Spanned<String>>,
    pub(super) on_detach: Option<Spanned<String>>,
    pub(super) detach_timeout: Option<Spanned<String>>,
    pub(super) tls: Option<Spanned<RawFleetTls>>,
    pub(super) auth: Option<Spanned<RawFleetAuth>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleetTls {
    pub(super) ca: Option<Spanned<String>>,
    pub(super) cert: Option<Spanned<String>>,
    pub(super) key: Option<Spanned<String>>,
    pub(super) domain: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleetAuth {
    pub(super) user: Option<Spanned<String>>,
    pub(super) password_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) name: Option<Spanned<String>>,
    pub(super) vip: Option<Spanned<String>>,
    pub(super) failback: Option<Spanned<String>>,
    pub(super) failback_delay: Option<Spanned<String>>,
    pub(super) on_failover: Option<Spanned<String>>,
    pub(super) drain_timeout: Option<Spanned<String>>,
    pub(super) fleet: Option<Spanned<bool>>,
    pub(super) check: Option<Spanned<RawCheck>>,
    pub(super) members: Option<Spanned<Vec<Spanned<RawMember>>>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) kind: Option<Spanned<String>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) fast_interval: Option<Spanned<String>>,
    pub(super) rise: Option<Spanned<u32>>,
    pub(super) fall: Option<Spanned<u32>>,
    pub(super) observe: Option<Spanned<String>>,
    pub(super) error_limit: Option<Spanned<u32>>,
    pub(super) on_error: Option<Spanned<String>>,
    pub(super) username: Option<Spanned<String>>,
    pub(super) password_file: Option<Spanned<String>>,
    pub(super) password_env: Option<Spanned<String>>,
    pub(super) tls: Option<Spanned<bool>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) server_name: Option<Spanned<String>>,
    pub(super) cluster: Option<Spanned<bool>>,
    pub(super) key_prefix: Option<Spanned<String>>,
    pub(super) ttl: Option<Spanned<String>>,
    pub(super) bdb_uid: Option<Spanned<u32>>,
    pub(super) port: Option<Spanned<u16>>,
    pub(super) lag_tolerance_ms: Option<Spanned<u32>>,
    pub(super) command: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMember {
    pub(super) name: Option<Spanned<String>>,
    pub(super) addr: Option<Spanned<String>>,
    pub(super) priority: Option<Spanned<u32>>,
}

/// A value with the byte range it came from.
pub(super) type At<T> = (Range<usize>, T);

/// Takes a spanned value apart into its byte range and value.
pub(super) fn split<T>(value: Spanned<T>) -> At<T> {
    (value.span(), value.into_inner())
}

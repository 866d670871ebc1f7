//! The coordination engine as fleet mode uses it: leases that keep a
//! host's record alive, a linearizable snapshot of a service's keys, a
//! watch from a revision, and a compare-and-swap on the decision. etcd
//! implements it (`etcd.rs`), an in-memory store too (`memory.rs`, for
//! tests); a Kubernetes Lease/ConfigMap backend would implement the same
//! trait (resourceVersion as the revision, a Lease object per host).
//!
//! Also here: turning what an engine stores (key, bytes, revision) into
//! snapshots and events, so every engine decodes the same way and a
//! malformed value is an error, never skipped.

use std::{collections::BTreeMap, future::Future, time::Duration};

use tokio::sync::mpsc;

use super::{
    keys::{Key, Keys},
    wire::{DecisionRecord, HostRecord, WireError, decode},
};

/// A point in the engine's history (etcd's revision); it grows with every
/// write.
pub type Revision = i64;

/// A lease granted by the engine; keys attached to it go when it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

/// Everything under a service's prefix at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The engine's revision the snapshot was read at: watch from it.
    pub revision: Revision,
    /// The live hosts' records, by host name.
    pub hosts: BTreeMap<String, HostRecord>,
    /// The decision and its `mod_revision` (what `propose` compares
    /// against), when the key exists.
    pub decision: Option<(DecisionRecord, Revision)>,
}

/// A change under a service's prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A host wrote its record.
    Host { host: String, record: HostRecord },
    /// A host's record went: its lease expired or was revoked.
    HostGone { host: String },
    /// The decision was written; `mod_revision` is what the next
    /// `propose` compares against.
    Decision {
        record: DecisionRecord,
        mod_revision: Revision,
    },
    /// The decision key was deleted (by hand: fleet mode never deletes
    /// it); the next proposal creates it (`expected = None`).
    DecisionGone,
}

/// The watch's stream of batches: one batch per engine response, in
/// revision order. After an `Err`, nothing more comes; the receiver also
/// ends when the watch breaks. Either way the caller takes a new snapshot.
pub type Watch = mpsc::Receiver<Result<Vec<Event>, EngineError>>;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine could not be reached or did not serve the call
    /// (connection refused, no leader, the connection broke).
    #[error(
        "coordination engine unreachable during {op}: {source}; check the endpoints and the engine's health"
    )]
    Unreachable {
        op: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The call did not complete within the engine's timeout.
    #[error(
        "coordination engine did not answer {op} within {after:?}; check the endpoints and the engine's health"
    )]
    Timeout { op: &'static str, after: Duration },
    /// The lease is gone (expired or revoked): the host's record went with
    /// it; grant a new lease and write the record again.
    #[error("lease {0:?} expired or was revoked; the host's record went with it")]
    LeaseExpired(LeaseId),
    /// The watch's start revision was compacted away; take a new snapshot.
    #[error("revisions up to {revision} were compacted; take a new snapshot")]
    Compacted { revision: Revision },
    /// A value under the service's prefix cannot be read.
    #[error("malformed value under {key}: {source}")]
    Malformed { key: String, source: WireError },
    /// The engine refused the credentials or the permission.
    #[error("coordination engine refused {op}: {source}; check the user, password and role")]
    Denied {
        op: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The engine answered with an error of another kind.
    #[error("coordination engine failed {op}: {source}")]
    Failed {
        op: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The engine's options are wrong (an endpoint URL, a TLS file).
    #[error("fleet engine options: {what}: {source}")]
    Options {
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A coordination engine for fleet mode. Every call is bounded by the
/// engine's timeout (`EngineError::Timeout`); none blocks forever.
pub trait Engine: Send + Sync + 'static {
    /// A new lease that expires `ttl` after its last renewal.
    fn grant(&self, ttl: Duration) -> impl Future<Output = Result<LeaseId, EngineError>> + Send;

    /// Renews `lease` once; `Err(LeaseExpired)` when it is gone.
    fn keep_alive(&self, lease: LeaseId) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Ends `lease` now; the keys attached to it go.
    fn revoke(&self, lease: LeaseId) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Writes `host`'s record for `service`, attached to `lease`;
    /// `Err(LeaseExpired)` when the lease is gone.
    fn put_host(
        &self,
        service: &str,
        host: &str,
        record: &HostRecord,
        lease: LeaseId,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// A linearizable read of everything under `service`'s prefix. Any
    /// malformed value fails it (`Malformed`).
    fn snapshot(&self, service: &str)
    -> impl Future<Output = Result<Snapshot, EngineError>> + Send;

    /// The changes under `service`'s prefix after revision `after` (the
    /// first has revision `after + 1`), in order, batched per engine
    /// response. The watch is established when this returns. See `Watch`
    /// for how it ends; dropping the receiver cancels it.
    fn watch(
        &self,
        service: &str,
        after: Revision,
    ) -> impl Future<Output = Result<Watch, EngineError>> + Send;

    /// Compare-and-swap on `service`'s decision: writes `record` iff the
    /// key's `mod_revision` is still `expected` (`None`: the key must not
    /// exist). `Some(revision)`: written, at that revision (the new
    /// `mod_revision`); `None`: someone else wrote first.
    fn propose(
        &self,
        service: &str,
        expected: Option<Revision>,
        record: &DecisionRecord,
    ) -> impl Future<Output = Result<Option<Revision>, EngineError>> + Send;
}

/// One key as an engine reports it: written (its value and
/// `mod_revision`) or deleted (`put: None`).
pub(crate) struct Change<'a> {
    pub key: &'a str,
    pub put: Option<(&'a [u8], Revision)>,
}

/// The snapshot of `service` at `revision` from its stored keys (changes
/// that are puts); keys not of ours are ignored, a malformed value fails
/// it.
pub(crate) fn snapshot_of<'a>(
    keys: &Keys,
    service: &str,
    revision: Revision,
    stored: impl IntoIterator<Item = Change<'a>>,
) -> Result<Snapshot, EngineError> {
    let mut snap = Snapshot {
        revision,
        ..Snapshot::default()
    };
    for c in stored {
        match event_of(keys, service, &c)? {
            Some(Event::Host { host, record }) => {
                snap.hosts.insert(host, record);
            }
            Some(Event::Decision {
                record,
                mod_revision,
            }) => snap.decision = Some((record, mod_revision)),
            Some(Event::HostGone { .. } | Event::DecisionGone) | None => {}
        }
    }
    Ok(snap)
}

/// The event for `c`, `None` for a key not of ours; a malformed value is
/// `Malformed`.
pub(crate) fn event_of(
    keys: &Keys,
    service: &str,
    c: &Change<'_>,
) -> Result<Option<Event>, EngineError> {
    let malformed = |source: WireError| EngineError::Malformed {
        key: c.key.to_string(),
        source,
    };
    Ok(match (keys.parse(service, c.key), c.put) {
        (Key::Host(host), Some((value, _))) => Some(Event::Host {
            host: host.to_string(),
            record: decode(c.key, value).map_err(malformed)?,
        }),
        (Key::Host(host), None) => Some(Event::HostGone {
            host: host.to_string(),
        }),
        (Key::Decision, Some((value, mod_revision))) => Some(Event::Decision {
            record: decode(c.key, value).map_err(malformed)?,
            mod_revision,
        }),
        (Key::Decision, None) => Some(Event::DecisionGone),
        (Key::Other, _) => None,
    })
}

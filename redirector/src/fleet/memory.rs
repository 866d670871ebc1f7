//! An in-memory coordination engine with etcd's semantics (one revision
//! per write, leases carrying keys, watches from a revision, compaction,
//! compare-and-swap on `mod_revision`), for the agent's tests. Each host
//! gets its own handle on one store (`handle()`), so a test can cut one
//! host off (`set_reachable(false)`: its calls fail `Unreachable`, its
//! watches end) while the others go on. Leases never expire by time: the
//! test expires them (`expire`), so nothing depends on the clock.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::sync::mpsc;

use super::{
    engine::{
        Change, Engine, EngineError, Event, LeaseId, Revision, Snapshot, Watch, event_of,
        snapshot_of,
    },
    keys::Keys,
    wire::{DecisionRecord, HostRecord, encode},
};

/// Room in a watch's channel beyond what it replays; a watcher further
/// behind than this is dropped (its receiver ends), as a broken watch.
const WATCH_ROOM: usize = 64;

/// One handle on an in-memory store; see the module header.
pub struct MemoryEngine {
    store: Arc<Mutex<Store>>,
    keys: Keys,
    /// This handle's number, for reachability and its watches.
    id: usize,
}

struct Kv {
    value: Vec<u8>,
    mod_revision: Revision,
    lease: Option<LeaseId>,
}

/// One key's change at one revision; `value: None` is a delete.
struct Logged {
    revision: Revision,
    key: String,
    value: Option<Vec<u8>>,
}

struct Watcher {
    handle: usize,
    keys: Keys,
    service: String,
    tx: mpsc::Sender<Result<Vec<Event>, EngineError>>,
}

#[derive(Default)]
struct Store {
    revision: Revision,
    /// Revisions below this are compacted away.
    compacted: Revision,
    kvs: BTreeMap<String, Kv>,
    history: Vec<Logged>,
    leases: BTreeMap<LeaseId, Duration>,
    next_lease: i64,
    next_handle: usize,
    cut_off: BTreeSet<usize>,
    watchers: Vec<Watcher>,
}

fn unreachable(op: &'static str) -> EngineError {
    EngineError::Unreachable {
        op,
        source: "this host is cut off from the in-memory engine".into(),
    }
}

impl MemoryEngine {
    /// A new, empty store with its first handle; keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            store: Arc::new(Mutex::new(Store {
                next_handle: 1,
                ..Store::default()
            })),
            keys: Keys::new(prefix),
            id: 0,
        }
    }

    /// Another handle on the same store (another host), reachable.
    pub fn handle(&self) -> Self {
        let mut s = self.lock();
        let id = s.next_handle;
        s.next_handle += 1;
        Self {
            store: self.store.clone(),
            keys: self.keys.clone(),
            id,
        }
    }

    /// Cuts this handle off (`false`: every call fails `Unreachable`, its
    /// open watches get that error and end) or reconnects it.
    pub fn set_reachable(&self, reachable: bool) {
        let mut s = self.lock();
        if reachable {
            s.cut_off.remove(&self.id);
            return;
        }
        s.cut_off.insert(self.id);
        let (mine, others) = std::mem::take(&mut s.watchers)
            .into_iter()
            .partition(|w| w.handle == self.id);
        s.watchers = others;
        for w in mine {
            let _ = w.tx.try_send(Err(unreachable("watch")));
        }
    }

    /// Expires `lease` as its TTL would: the keys attached to it go, in
    /// one revision. Nothing happens for a lease that is already gone.
    pub fn expire(&self, lease: LeaseId) {
        self.lock().end_lease(lease);
    }

    /// The leases alive now.
    pub fn leases(&self) -> Vec<LeaseId> {
        self.lock().leases.keys().copied().collect()
    }

    /// Writes raw bytes under `key` (a test writing a malformed value, or
    /// a hand edit), whatever this handle's reachability.
    pub fn put_raw(&self, key: &str, value: &[u8]) -> Revision {
        self.lock()
            .write(vec![(key.to_string(), Some(value.to_vec()), None)])
    }

    /// Deletes `key` (a hand edit), whatever this handle's reachability.
    pub fn delete(&self, key: &str) -> Revision {
        self.lock().write(vec![(key.to_string(), None, None)])
    }

    /// Forgets the history below `revision`: a watch from before it fails
    /// `Compacted`.
    pub fn compact(&self, revision: Revision) {
        let mut s = self.lock();
        s.compacted = s.compacted.max(revision);
        s.history.retain(|c| c.revision >= revision);
    }

    /// The store, when this handle is reachable.
    fn reach(&self, op: &'static str) -> Result<MutexGuard<'_, Store>, EngineError> {
        let s = self.lock();
        if s.cut_off.contains(&self.id) {
            return Err(unreachable(op));
        }
        Ok(s)
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves the store as consistent as
        // any single write: keep going.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store {
    /// Applies `changes` (key, value or delete, lease) as one revision,
    /// tells the watchers, and returns the revision.
    fn write(&mut self, changes: Vec<(String, Option<Vec<u8>>, Option<LeaseId>)>) -> Revision {
        self.revision += 1;
        let revision = self.revision;
        for (key, value, lease) in changes {
            match &value {
                Some(v) => {
                    self.kvs.insert(
                        key.clone(),
                        Kv {
                            value: v.clone(),
                            mod_revision: revision,
                            lease,
                        },
                    );
                }
                None => {
                    self.kvs.remove(&key);
                }
            }
            self.history.push(Logged {
                revision,
                key,
                value,
            });
        }
        self.notify(revision);
        revision
    }

    /// Sends every watcher its events of `revision`. A watcher whose
    /// receiver is gone or full is dropped, and so is one just sent an
    /// error (nothing follows an error).
    fn notify(&mut self, revision: Revision) {
        let changes: Vec<&Logged> = self
            .history
            .iter()
            .filter(|c| c.revision == revision)
            .collect();
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.watchers) {
            let batch = events(&w.keys, &w.service, &changes);
            let last = batch.is_err();
            let sent = batch.as_ref().is_ok_and(Vec::is_empty) || w.tx.try_send(batch).is_ok();
            if sent && !last {
                keep.push(w);
            }
        }
        self.watchers = keep;
    }

    /// The batches of the revisions after `after` still in the history,
    /// one per revision with events under `service`.
    fn replay(
        &self,
        keys: &Keys,
        service: &str,
        after: Revision,
    ) -> Vec<Result<Vec<Event>, EngineError>> {
        let later: Vec<&Logged> = self.history.iter().filter(|c| c.revision > after).collect();
        later
            .chunk_by(|a, b| a.revision == b.revision)
            .map(|changes| events(keys, service, changes))
            .filter(|b| !b.as_ref().is_ok_and(Vec::is_empty))
            .collect()
    }

    fn end_lease(&mut self, lease: LeaseId) {
        if self.leases.remove(&lease).is_none() {
            return;
        }
        let gone: Vec<_> = self
            .kvs
            .iter()
            .filter(|(_, kv)| kv.lease == Some(lease))
            .map(|(k, _)| (k.clone(), None, None))
            .collect();
        if !gone.is_empty() {
            self.write(gone);
        }
    }
}

/// The events of `changes` under `service`, in order.
fn events(keys: &Keys, service: &str, changes: &[&Logged]) -> Result<Vec<Event>, EngineError> {
    let mut out = Vec::new();
    for c in changes {
        let change = Change {
            key: &c.key,
            put: c.value.as_deref().map(|v| (v, c.revision)),
        };
        out.extend(event_of(keys, service, &change)?);
    }
    Ok(out)
}

impl Engine for MemoryEngine {
    async fn grant(&self, ttl: Duration) -> Result<LeaseId, EngineError> {
        let mut s = self.reach("grant")?;
        s.next_lease += 1;
        let lease = LeaseId(s.next_lease);
        s.leases.insert(lease, ttl);
        Ok(lease)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), EngineError> {
        let s = self.reach("keep_alive")?;
        if s.leases.contains_key(&lease) {
            Ok(())
        } else {
            Err(EngineError::LeaseExpired(lease))
        }
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), EngineError> {
        self.reach("revoke")?.end_lease(lease);
        Ok(())
    }

    async fn put_host(
        &self,
        service: &str,
        host: &str,
        record: &HostRecord,
        lease: LeaseId,
    ) -> Result<(), EngineError> {
        let mut s = self.reach("put_host")?;
        if !s.leases.contains_key(&lease) {
            return Err(EngineError::LeaseExpired(lease));
        }
        s.write(vec![(
            self.keys.host(service, host),
            Some(encode(record)),
            Some(lease),
        )]);
        Ok(())
    }

    async fn snapshot(&self, service: &str) -> Result<Snapshot, EngineError> {
        let s = self.reach("snapshot")?;
        let prefix = self.keys.service_prefix(service);
        let stored = s
            .kvs
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(key, kv)| Change {
                key,
                put: Some((&kv.value, kv.mod_revision)),
            });
        snapshot_of(&self.keys, service, s.revision, stored)
    }

    async fn watch(&self, service: &str, after: Revision) -> Result<Watch, EngineError> {
        let mut s = self.reach("watch")?;
        if after + 1 < s.compacted {
            let (tx, rx) = mpsc::channel(1);
            let _ = tx.try_send(Err(EngineError::Compacted {
                revision: s.compacted,
            }));
            return Ok(rx);
        }
        let replay = s.replay(&self.keys, service, after);
        let (tx, rx) = mpsc::channel(replay.len() + WATCH_ROOM);
        for batch in replay {
            let last = batch.is_err();
            let _ = tx.try_send(batch);
            if last {
                return Ok(rx);
            }
        }
        s.watchers.push(Watcher {
            handle: self.id,
            keys: self.keys.clone(),
            service: service.to_string(),
            tx,
        });
        Ok(rx)
    }

    async fn propose(
        &self,
        service: &str,
        expected: Option<Revision>,
        record: &DecisionRecord,
    ) -> Result<Option<Revision>, EngineError> {
        let mut s = self.reach("propose")?;
        let key = self.keys.decision(service);
        let value = encode(record);
        match s.kvs.get(&key) {
            Some(kv) if Some(kv.mod_revision) != expected => {
                // As on etcd: our own record already there was written by
                // an earlier attempt.
                Ok((kv.value == value).then_some(kv.mod_revision))
            }
            None if expected.is_some() => Ok(None),
            _ => Ok(Some(s.write(vec![(key, Some(value), None)]))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{decide::Reason, fleet::wire::SeenRecord};

    const SVC: &str = "cache";

    fn host(epoch: u64) -> HostRecord {
        HostRecord {
            members: [("east".to_string(), SeenRecord::Up)].into(),
            applied_epoch: epoch,
            at_unix_ms: 0,
            instance: 1,
        }
    }

    fn decision(epoch: u64, by: &str) -> DecisionRecord {
        DecisionRecord {
            epoch,
            active: Some("east".into()),
            barrier_to: None,
            reason: Reason::Initial,
            pinned: None,
            drained: BTreeSet::new(),
            by: by.into(),
            at_unix_ms: 0,
        }
    }

    /// The next batch, which must already be there.
    fn next(w: &mut Watch) -> Result<Vec<Event>, EngineError> {
        w.try_recv().expect("a batch is waiting")
    }

    #[tokio::test]
    async fn two_proposals_on_the_same_revision_exactly_one_wins() {
        let a = MemoryEngine::new("/r");
        let b = a.handle();
        assert!(
            a.propose(SVC, None, &decision(0, "a"))
                .await
                .unwrap()
                .is_some()
        );
        let rev = a.snapshot(SVC).await.unwrap().decision.unwrap().1;
        let (da, db) = (decision(1, "a"), decision(1, "b"));
        let (ra, rb) = tokio::join!(
            a.propose(SVC, Some(rev), &da),
            b.propose(SVC, Some(rev), &db),
        );
        let won: Vec<_> = [ra.unwrap(), rb.unwrap()].into_iter().flatten().collect();
        assert_eq!(won.len(), 1, "exactly one proposal is written");
        let (stored, stored_rev) = b.snapshot(SVC).await.unwrap().decision.unwrap();
        assert_eq!(stored_rev, won[0], "the winner's revision is the key's");
        assert_eq!(stored.by, "a", "the first proposal in the join wins");
        // Creating an existing key fails too.
        assert_eq!(b.propose(SVC, None, &decision(2, "b")).await.unwrap(), None);
        // The winner proposing its record again (after a timeout, say)
        // learns it was written; the loser still lost.
        assert_eq!(a.propose(SVC, Some(rev), &da).await.unwrap(), Some(won[0]));
        assert_eq!(b.propose(SVC, Some(rev), &db).await.unwrap(), None);
    }

    #[tokio::test]
    async fn lease_expiry_removes_the_host_and_the_watch_sees_it_gone() {
        let e = MemoryEngine::new("/r");
        let lease = e.grant(Duration::from_secs(2)).await.unwrap();
        e.put_host(SVC, "app-1", &host(1), lease).await.unwrap();
        let snap = e.snapshot(SVC).await.unwrap();
        assert_eq!(snap.hosts.get("app-1"), Some(&host(1)));
        let mut w = e.watch(SVC, snap.revision).await.unwrap();
        e.expire(lease);
        assert_eq!(
            next(&mut w).unwrap(),
            [Event::HostGone {
                host: "app-1".into()
            }]
        );
        assert!(e.snapshot(SVC).await.unwrap().hosts.is_empty());
        assert!(matches!(
            e.keep_alive(lease).await,
            Err(EngineError::LeaseExpired(l)) if l == lease
        ));
        assert!(matches!(
            e.put_host(SVC, "app-1", &host(2), lease).await,
            Err(EngineError::LeaseExpired(_))
        ));
    }

    #[tokio::test]
    async fn a_watch_sees_what_follows_its_revision_and_nothing_before() {
        let e = MemoryEngine::new("/r");
        let lease = e.grant(Duration::from_secs(5)).await.unwrap();
        e.put_host(SVC, "early", &host(1), lease).await.unwrap();
        let from = e.snapshot(SVC).await.unwrap().revision;
        e.put_host(SVC, "late", &host(2), lease).await.unwrap();
        e.put_host("other", "late", &host(3), lease).await.unwrap();
        let mut w = e.watch(SVC, from).await.unwrap();
        // Replayed from the history, then live.
        assert_eq!(
            next(&mut w).unwrap(),
            [Event::Host {
                host: "late".into(),
                record: host(2)
            }]
        );
        let rev = e
            .propose(SVC, None, &decision(1, "x"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            next(&mut w).unwrap(),
            [Event::Decision {
                record: decision(1, "x"),
                mod_revision: rev
            }]
        );
        assert!(
            w.try_recv().is_err(),
            "the other service's write is not seen"
        );
    }

    #[tokio::test]
    async fn a_cut_off_host_fails_every_call_and_its_watch_ends() {
        let e = MemoryEngine::new("/r");
        let other = e.handle();
        let mut w = e.watch(SVC, 0).await.unwrap();
        let mut w_other = other.watch(SVC, 0).await.unwrap();
        e.set_reachable(false);
        assert!(matches!(next(&mut w), Err(EngineError::Unreachable { .. })));
        assert!(w.recv().await.is_none(), "the watch ends after its error");
        assert!(matches!(
            e.snapshot(SVC).await,
            Err(EngineError::Unreachable { .. })
        ));
        assert!(matches!(
            e.grant(Duration::from_secs(1)).await,
            Err(EngineError::Unreachable { .. })
        ));
        assert!(matches!(
            e.propose(SVC, None, &decision(1, "a")).await,
            Err(EngineError::Unreachable { .. })
        ));
        // The other host goes on, and sees its own write.
        let rev = other
            .propose(SVC, None, &decision(1, "b"))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            &next(&mut w_other).unwrap()[..],
            [Event::Decision { mod_revision, .. }] if *mod_revision == rev
        ));
        e.set_reachable(true);
        assert_eq!(e.snapshot(SVC).await.unwrap().decision.unwrap().1, rev);
    }

    #[tokio::test]
    async fn a_malformed_value_is_an_error_in_the_watch_and_the_snapshot() {
        let e = MemoryEngine::new("/r");
        let mut w = e.watch(SVC, 0).await.unwrap();
        let key = Keys::new("/r").host(SVC, "bad");
        e.put_raw(&key, b"{not json");
        assert!(matches!(
            next(&mut w),
            Err(EngineError::Malformed { key: k, .. }) if k == key
        ));
        assert!(w.recv().await.is_none(), "the watch ends after its error");
        assert!(matches!(
            e.snapshot(SVC).await,
            Err(EngineError::Malformed { .. })
        ));
        // A key that is not ours is ignored.
        e.delete(&key);
        e.put_raw(
            &format!("{}notes", Keys::new("/r").service_prefix(SVC)),
            b"hi",
        );
        assert_eq!(e.snapshot(SVC).await.unwrap().hosts.len(), 0);
    }

    #[tokio::test]
    async fn a_watch_from_a_compacted_revision_fails_compacted() {
        let e = MemoryEngine::new("/r");
        for epoch in 0..3 {
            let expected = e.snapshot(SVC).await.unwrap().decision.map(|d| d.1);
            e.propose(SVC, expected, &decision(epoch, "a"))
                .await
                .unwrap();
        }
        e.compact(3);
        let mut w = e.watch(SVC, 1).await.unwrap();
        assert!(matches!(
            next(&mut w),
            Err(EngineError::Compacted { revision: 3 })
        ));
        let mut w = e.watch(SVC, 2).await.unwrap();
        assert!(matches!(
            &next(&mut w).unwrap()[..],
            [Event::Decision {
                mod_revision: 3,
                ..
            }]
        ));
        let deleted = e.delete(&Keys::new("/r").decision(SVC));
        assert_eq!(next(&mut w).unwrap(), [Event::DecisionGone]);
        assert_eq!(deleted, 4);
    }
}

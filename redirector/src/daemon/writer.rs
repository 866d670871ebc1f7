//! The single owner of map writes, on its own thread. Service tasks send it decisions; it
//! applies each as one map update and reports when it was written, so the
//! history can show detection-to-write time. A failed map operation is
//! logged and counted in `redirector_map_errors_total{op}`, never dropped.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Instant,
};

use prometheus_client::metrics::{counter::Counter, family::Family};
use redirector_common::{Endpoint, MemberVip};
use tokio::sync::{mpsc, oneshot};

use super::map_store::MapStore;
use crate::{
    datapath::{DatapathError, Stats},
    metrics::MapOpLabels,
};

/// Why the writer could not do what a service asked.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The map operation failed; the data path keeps its previous state.
    #[error(transparent)]
    Map(#[from] DatapathError),
    /// The writer thread is gone: no decision reaches the data path until
    /// the daemon restarts.
    #[error("the map writer thread stopped; restart the daemon")]
    Stopped,
}

enum Cmd {
    SetActive {
        vip: Endpoint,
        member: Endpoint,
        reply: oneshot::Sender<Result<Instant, WriterError>>,
    },
    Active {
        vip: Endpoint,
        reply: oneshot::Sender<Result<Option<Endpoint>, WriterError>>,
    },
    ClearActive {
        vip: Endpoint,
        reply: oneshot::Sender<Result<Instant, WriterError>>,
    },
    RemoveService {
        vip: Endpoint,
        service: String,
    },
    SyncDown {
        service: String,
        members: BTreeMap<Endpoint, u32>,
    },
    Members {
        vip: Endpoint,
        members: Vec<Endpoint>,
    },
    Observe {
        service: String,
        members: BTreeMap<Endpoint, u32>,
    },
    ForgetService {
        service: String,
    },
    Stats {
        reply: oneshot::Sender<Option<Stats>>,
    },
}

/// A handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Cmd>,
}

impl Writer {
    /// Starts the writer on an OS thread of its own: map updates are
    /// blocking syscalls, and the runtime's one thread runs every check
    /// and decision.
    /// Errors are counted in `errors` by operation.
    pub fn spawn(
        maps: impl MapStore,
        errors: Family<MapOpLabels, Counter>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(1024);
        std::thread::Builder::new()
            .name("map-writer".into())
            .spawn(move || run(maps, errors, rx))?;
        Ok(Self { tx })
    }

    /// Points `vip` at `member` (one atomic map update); returns when.
    pub async fn set_active(
        &self,
        vip: Endpoint,
        member: Endpoint,
    ) -> Result<Instant, WriterError> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::SetActive { vip, member, reply }).await;
        rx.await.unwrap_or(Err(WriterError::Stopped))
    }

    /// Removes `vip`'s active member (fleet mode's barrier): its packets
    /// pass untranslated until the next `set_active`. The service's other
    /// entries (ports, member VIPs, down marks) stay.
    pub async fn clear_active(&self, vip: Endpoint) -> Result<Instant, WriterError> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::ClearActive { vip, reply }).await;
        rx.await.unwrap_or(Err(WriterError::Stopped))
    }

    /// The member `vip` points at in the data path (`None`: no entry).
    pub async fn active(&self, vip: Endpoint) -> Result<Option<Endpoint>, WriterError> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Active { vip, reply }).await;
        rx.await.unwrap_or(Err(WriterError::Stopped))
    }

    pub async fn remove_service(&self, vip: Endpoint, service: String) {
        self.send(Cmd::RemoveService { vip, service }).await;
    }

    /// The members whose flows `service` wants reset right now, with the
    /// reason (`DOWN_*`) recorded in the map.
    pub async fn sync_down(&self, service: String, members: BTreeMap<Endpoint, u32>) {
        self.send(Cmd::SyncDown { service, members }).await;
    }

    /// The member endpoints behind `vip` (resolved addresses), for the
    /// recovery of lost reply entries (`MEMBER_VIPS`). Endpoints announced
    /// once stay until the service is removed: old addresses may still
    /// have flows.
    pub async fn members(&self, vip: Endpoint, members: Vec<Endpoint>) {
        self.send(Cmd::Members { vip, members }).await;
    }

    /// The member endpoints whose signals `service` wants counted, with
    /// the `OBSERVE_*` flags (empty: none). Endpoints no service wants are
    /// no longer observed.
    pub async fn observe(&self, service: String, members: BTreeMap<Endpoint, u32>) {
        self.send(Cmd::Observe { service, members }).await;
    }

    /// `service` stopped: its members to reset and to observe no longer
    /// count (a restarted service announces its own again).
    pub async fn forget_service(&self, service: String) {
        self.send(Cmd::ForgetService { service }).await;
    }

    /// The data path's counters (one per-CPU lookup each; no map walk).
    pub async fn stats(&self) -> Option<Stats> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Stats { reply }).await;
        rx.await.ok().flatten()
    }

    /// Returns when the writer thread is gone (it only ends by dying while
    /// a handle exists).
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    async fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).await.is_err() {
            tracing::error!("map writer task is gone");
        }
    }
}

/// Counts a failed map operation; the caller logs it with its context.
#[derive(Clone)]
struct ErrorCount(Family<MapOpLabels, Counter>);

impl ErrorCount {
    fn inc(&self, op: &'static str) {
        self.0.get_or_create(&MapOpLabels { op: op.into() }).inc();
    }
}

fn run(mut maps: impl MapStore, errors: Family<MapOpLabels, Counter>, mut rx: mpsc::Receiver<Cmd>) {
    let errors = ErrorCount(errors);
    // Marks left by a previous daemon are ours to reconcile.
    let mut down = DownMarks::adopt(&maps, &errors);
    let mut served = MemberVips::adopt(&maps, &errors);
    let mut observed = Observed::default();
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            Cmd::SetActive { vip, member, reply } => {
                served.add(&mut maps, &errors, vip, [member]);
                let r = maps.set_active(vip, member).map(|()| Instant::now());
                if let Err(e) = &r {
                    errors.inc("set_active");
                    tracing::error!(vip = %vip.socket_addr(), error = %e, "writing the active member failed");
                }
                // A member that becomes active must not stay marked down.
                down.now_active(&mut maps, &errors, member);
                let _ = reply.send(r.map_err(WriterError::from));
            }
            Cmd::Active { vip, reply } => {
                let r = maps.active(&vip);
                if let Err(e) = &r {
                    errors.inc("read_active");
                    tracing::error!(vip = %vip.socket_addr(), error = %e, "reading the active member failed");
                }
                let _ = reply.send(r.map_err(WriterError::from));
            }
            Cmd::ClearActive { vip, reply } => {
                let r = maps.remove_service(&vip).map(|()| Instant::now());
                if let Err(e) = &r {
                    errors.inc("clear_active");
                    tracing::error!(vip = %vip.socket_addr(), error = %e, "clearing the active member failed");
                }
                let _ = reply.send(r.map_err(WriterError::from));
            }
            Cmd::RemoveService { vip, service } => {
                if let Err(e) = maps.remove_service(&vip) {
                    errors.inc("remove_service");
                    tracing::error!(vip = %vip.socket_addr(), error = %e, "removing a service failed");
                }
                served.remove(&mut maps, &errors, &vip);
                down.forget(&service);
                observed.wanted.remove(&service);
            }
            Cmd::SyncDown { service, members } => down.want(service, members),
            Cmd::Members { vip, members } => served.add(&mut maps, &errors, vip, members),
            Cmd::Observe { service, members } => {
                observed.wanted.insert(service, members);
            }
            Cmd::ForgetService { service } => {
                down.forget(&service);
                observed.wanted.remove(&service);
            }
            Cmd::Stats { reply } => {
                let s = maps.stats();
                if let Err(e) = &s {
                    errors.inc("read_stats");
                    tracing::error!(error = %e, "reading the data-path counters failed");
                }
                let _ = reply.send(s.ok());
            }
        }
        // Every command ends with the marks as wanted, so a mark that
        // failed to change is retried at the next one.
        down.reconcile(&mut maps, &errors);
        observed.reconcile(&mut maps, &errors);
    }
}

/// What `DOWN_MEMBERS` should hold (the union of every service's wish) and
/// what it holds as far as the writer knows.
struct DownMarks {
    /// Members marked in the map.
    applied: BTreeSet<Endpoint>,
    /// Each service's members to reset, with the reason.
    wanted: HashMap<String, BTreeMap<Endpoint, u32>>,
    /// Members that just became active: never marked, whatever a service
    /// still wants, until that service says otherwise.
    active: BTreeSet<Endpoint>,
}

impl DownMarks {
    fn adopt(maps: &impl MapStore, errors: &ErrorCount) -> Self {
        let applied = match maps.down_members() {
            Ok(v) => v.into_iter().map(|(e, _)| e).collect(),
            Err(e) => {
                errors.inc("read_down_members");
                tracing::error!(error = %e, "reading DOWN_MEMBERS failed; marks left by a previous daemon stay until a service clears them");
                BTreeSet::new()
            }
        };
        Self {
            applied,
            wanted: HashMap::new(),
            active: BTreeSet::new(),
        }
    }

    fn want(&mut self, service: String, members: BTreeMap<Endpoint, u32>) {
        self.active.retain(|e| !members.contains_key(e));
        self.wanted.insert(service, members);
    }

    fn forget(&mut self, service: &str) {
        self.wanted.remove(service);
    }

    /// `member` was just written active: its mark goes now.
    fn now_active(&mut self, maps: &mut impl MapStore, errors: &ErrorCount, member: Endpoint) {
        self.active.insert(member);
        self.reconcile(maps, errors);
    }

    fn reconcile(&mut self, maps: &mut impl MapStore, errors: &ErrorCount) {
        let reasons: BTreeMap<Endpoint, u32> = self
            .wanted
            .values()
            .flat_map(|m| m.iter().map(|(e, r)| (*e, *r)))
            .filter(|(e, _)| !self.active.contains(e))
            .collect();
        for (&e, &reason) in &reasons {
            if self.applied.contains(&e) {
                continue;
            }
            match maps.mark_down(e, reason) {
                Ok(()) => {
                    self.applied.insert(e);
                    tracing::info!(member = %e.socket_addr(), "flows to member are now reset");
                }
                Err(err) => {
                    errors.inc("mark_down");
                    tracing::error!(member = %e.socket_addr(), error = %err, "marking a member down failed")
                }
            }
        }
        let stale: Vec<Endpoint> = self
            .applied
            .iter()
            .filter(|e| !reasons.contains_key(e))
            .copied()
            .collect();
        for e in stale {
            match maps.mark_up(&e) {
                Ok(()) => {
                    self.applied.remove(&e);
                }
                Err(err) => {
                    errors.inc("mark_up");
                    tracing::error!(member = %e.socket_addr(), error = %err, "clearing a member's down mark failed; its flows are still reset, retried at the next map command");
                }
            }
        }
    }
}

/// Which member endpoints the kernel counts signals for (`MEMBER_SIGNALS`):
/// the union of every service's wish, flags or-ed.
#[derive(Default)]
struct Observed {
    wanted: HashMap<String, BTreeMap<Endpoint, u32>>,
    applied: BTreeMap<Endpoint, u32>,
}

impl Observed {
    fn reconcile(&mut self, maps: &mut impl MapStore, errors: &ErrorCount) {
        let mut target: BTreeMap<Endpoint, u32> = BTreeMap::new();
        for (e, flags) in self.wanted.values().flatten() {
            if *flags != 0 {
                *target.entry(*e).or_default() |= flags;
            }
        }
        for (&e, &flags) in &target {
            if self.applied.get(&e) == Some(&flags) {
                continue;
            }
            match maps.observe_member(e, flags) {
                Ok(()) => {
                    self.applied.insert(e, flags);
                }
                Err(err) => {
                    errors.inc("observe_member");
                    tracing::error!(member = %e.socket_addr(), error = %err, "observing a member's signals failed; retried at the next map command");
                }
            }
        }
        let stale: Vec<Endpoint> = self
            .applied
            .keys()
            .filter(|e| !target.contains_key(e))
            .copied()
            .collect();
        for e in stale {
            match maps.forget_member(&e) {
                Ok(()) => {
                    self.applied.remove(&e);
                }
                Err(err) => {
                    errors.inc("forget_member");
                    tracing::error!(member = %e.socket_addr(), error = %err, "forgetting a member's signals failed; retried at the next map command");
                }
            }
        }
    }
}

/// Which VIPs each member endpoint is behind, and what `MEMBER_VIPS` holds.
struct MemberVips {
    by_vip: HashMap<Endpoint, BTreeSet<Endpoint>>,
    written: HashMap<Endpoint, MemberVip>,
}

impl MemberVips {
    /// Starts from what a previous daemon wrote (corrected at the first
    /// service announcement) and the active members in the data path.
    fn adopt(maps: &impl MapStore, errors: &ErrorCount) -> Self {
        let written = maps.member_vips().unwrap_or_else(|e| {
            errors.inc("read_member_vips");
            tracing::error!(error = %e, "reading MEMBER_VIPS failed; rewriting it");
            Vec::new()
        });
        let services = maps.services().unwrap_or_else(|e| {
            errors.inc("read_services");
            tracing::error!(error = %e, "reading SERVICES failed; MEMBER_VIPS is rebuilt from the services as they start");
            Vec::new()
        });
        let mut by_vip: HashMap<Endpoint, BTreeSet<Endpoint>> = HashMap::new();
        for s in services {
            by_vip.entry(s.vip).or_default().insert(s.active.member);
        }
        Self {
            by_vip,
            written: written.into_iter().collect(),
        }
    }

    fn add(
        &mut self,
        maps: &mut impl MapStore,
        errors: &ErrorCount,
        vip: Endpoint,
        members: impl IntoIterator<Item = Endpoint>,
    ) {
        let set = self.by_vip.entry(vip).or_default();
        let before = set.len();
        set.extend(members);
        if set.len() != before {
            self.sync(maps, errors);
        }
    }

    fn remove(&mut self, maps: &mut impl MapStore, errors: &ErrorCount, vip: &Endpoint) {
        if self.by_vip.remove(vip).is_some() {
            self.sync(maps, errors);
        }
    }

    /// Writes the entries that differ from what is wanted.
    fn sync(&mut self, maps: &mut impl MapStore, errors: &ErrorCount) {
        let mut want: BTreeMap<Endpoint, (Endpoint, u32)> = BTreeMap::new();
        for (vip, members) in &self.by_vip {
            for m in members {
                want.entry(*m).and_modify(|e| e.1 += 1).or_insert((*vip, 1));
            }
        }
        for (member, (vip, vips)) in &want {
            let value = MemberVip {
                vip: *vip,
                vips: *vips,
            };
            if self.written.get(member) == Some(&value) {
                continue;
            }
            match maps.set_member_vip(*member, *vip, *vips) {
                Ok(()) => {
                    self.written.insert(*member, value);
                }
                Err(e) => {
                    errors.inc("set_member_vip");
                    tracing::error!(member = %member.socket_addr(), error = %e, "writing MEMBER_VIPS failed; lost reply entries of this member are not recovered")
                }
            }
        }
        let stale: Vec<Endpoint> = self
            .written
            .keys()
            .filter(|m| !want.contains_key(*m))
            .copied()
            .collect();
        for member in stale {
            match maps.remove_member_vip(&member) {
                Ok(()) => {
                    self.written.remove(&member);
                }
                Err(e) => {
                    errors.inc("remove_member_vip");
                    tracing::error!(member = %member.socket_addr(), error = %e, "removing a MEMBER_VIPS entry failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use redirector_common::DOWN_UNHEALTHY;

    use super::*;
    use crate::daemon::map_store::fake::{FakeMaps, Op};

    fn ep(s: &str) -> Endpoint {
        s.parse::<SocketAddr>().unwrap().into()
    }

    fn errors_of(errors: &Family<MapOpLabels, Counter>, op: &str) -> u64 {
        errors.get_or_create(&MapOpLabels { op: op.into() }).get()
    }

    #[tokio::test]
    async fn a_failed_mark_up_is_counted_and_retried_so_the_new_active_member_is_not_left_down() {
        let maps = FakeMaps::default();
        let errors = Family::default();
        let w = Writer::spawn(maps.clone(), errors.clone()).unwrap();
        let (vip, east, west) = (
            ep("198.18.0.100:6379"),
            ep("198.18.1.10:6379"),
            ep("198.18.2.10:6379"),
        );
        w.set_active(vip, east).await.unwrap();
        w.sync_down("svc".into(), BTreeMap::from([(west, DOWN_UNHEALTHY)]))
            .await;
        w.stats().await;
        assert!(maps.state().down.contains_key(&west), "west marked down");

        // east fails, west is back: west becomes active, but clearing its
        // mark fails once.
        maps.fail(Op::MarkUp, 1);
        w.set_active(vip, west).await.unwrap();
        assert_eq!(errors_of(&errors, "mark_up"), 1, "the failure is counted");
        w.sync_down("svc".into(), BTreeMap::from([(east, DOWN_UNHEALTHY)]))
            .await;
        w.stats().await;
        let state = maps.state();
        assert!(
            !state.down.contains_key(&west),
            "the active member is still marked down: all its flows would be reset"
        );
        assert!(state.down.contains_key(&east), "east marked down");
    }

    #[tokio::test]
    async fn a_stopped_service_leaves_no_down_mark_or_observed_member_behind() {
        let maps = FakeMaps::default();
        let w = Writer::spawn(maps.clone(), Family::default()).unwrap();
        let east = ep("198.18.1.10:6379");
        w.sync_down("old".into(), BTreeMap::from([(east, DOWN_UNHEALTHY)]))
            .await;
        w.observe("old".into(), BTreeMap::from([(east, 1)])).await;
        w.stats().await;
        assert!(maps.state().down.contains_key(&east));
        assert!(maps.state().observed.contains_key(&east));
        // Renamed on reload, same VIP: the VIP's entry stays, the old
        // name's wishes go.
        w.forget_service("old".into()).await;
        w.stats().await;
        assert!(!maps.state().down.contains_key(&east), "east still reset");
        assert!(!maps.state().observed.contains_key(&east));
    }

    #[tokio::test]
    async fn a_failed_read_of_the_active_member_is_an_error_not_an_empty_entry() {
        let maps = FakeMaps::default();
        let errors = Family::default();
        let w = Writer::spawn(maps.clone(), errors.clone()).unwrap();
        let (vip, west) = (ep("198.18.0.100:6379"), ep("198.18.2.10:6379"));
        w.set_active(vip, west).await.unwrap();
        maps.fail(Op::Active, 1);
        assert!(matches!(w.active(vip).await, Err(WriterError::Map(_))));
        assert_eq!(errors_of(&errors, "read_active"), 1);
        assert_eq!(w.active(vip).await.unwrap(), Some(west));
    }
}

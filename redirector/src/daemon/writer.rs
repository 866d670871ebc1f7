//! The single owner of map writes, on its own thread. Service tasks send it decisions; it
//! applies each as one map update and reports when it was written, so the
//! history can show detection-to-write time.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Instant,
};

use redirector_common::{Endpoint, MemberVip};
use tokio::sync::{mpsc, oneshot};

use crate::datapath::{Maps, Stats};

enum Cmd {
    SetActive {
        vip: Endpoint,
        member: Endpoint,
        reply: oneshot::Sender<Result<Instant, String>>,
    },
    Active {
        vip: Endpoint,
        reply: oneshot::Sender<Option<Endpoint>>,
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
    pub fn spawn(maps: Maps) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(1024);
        std::thread::Builder::new()
            .name("map-writer".into())
            .spawn(move || run(maps, rx))?;
        Ok(Self { tx })
    }

    /// Points `vip` at `member` (one atomic map update); returns when.
    pub async fn set_active(&self, vip: Endpoint, member: Endpoint) -> Result<Instant, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::SetActive { vip, member, reply }).await;
        rx.await
            .unwrap_or_else(|_| Err("map writer stopped".into()))
    }

    pub async fn active(&self, vip: Endpoint) -> Option<Endpoint> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Active { vip, reply }).await;
        rx.await.ok().flatten()
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

fn run(mut maps: Maps, mut rx: mpsc::Receiver<Cmd>) {
    // Marks left by a previous daemon are ours to reconcile.
    let mut applied: BTreeSet<Endpoint> = maps
        .down_members()
        .map(|v| v.into_iter().map(|(e, _)| e).collect())
        .unwrap_or_default();
    let mut wanted: HashMap<String, BTreeMap<Endpoint, u32>> = HashMap::new();
    let mut served = MemberVips::adopt(&maps);
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            Cmd::SetActive { vip, member, reply } => {
                served.add(&mut maps, vip, [member]);
                let r = maps
                    .set_active(vip, member)
                    .map(|_| Instant::now())
                    .map_err(|e| e.to_string());
                if let Err(e) = &r {
                    tracing::error!(vip = %vip.socket_addr(), error = %e, "writing the active member failed");
                }
                // A member that becomes active must not stay marked down.
                if applied.remove(&member) {
                    let _ = maps.mark_up(&member);
                }
                let _ = reply.send(r);
            }
            Cmd::Active { vip, reply } => {
                let _ = reply.send(maps.active(&vip).ok().flatten().map(|a| a.member));
            }
            Cmd::RemoveService { vip, service } => {
                if let Err(e) = maps.remove_service(&vip) {
                    tracing::error!(vip = %vip.socket_addr(), error = %e, "removing a service failed");
                }
                served.remove(&mut maps, &vip);
                wanted.remove(&service);
                reconcile(&mut maps, &mut applied, &wanted);
            }
            Cmd::SyncDown { service, members } => {
                wanted.insert(service, members);
                reconcile(&mut maps, &mut applied, &wanted);
            }
            Cmd::Members { vip, members } => served.add(&mut maps, vip, members),
            Cmd::Stats { reply } => {
                let s = maps.stats();
                if let Err(e) = &s {
                    tracing::error!(error = %e, "reading the data-path counters failed");
                }
                let _ = reply.send(s.ok());
            }
        }
    }
}

fn reconcile(
    maps: &mut Maps,
    applied: &mut BTreeSet<Endpoint>,
    wanted: &HashMap<String, BTreeMap<Endpoint, u32>>,
) {
    let reasons: BTreeMap<Endpoint, u32> = wanted
        .values()
        .flat_map(|m| m.iter().map(|(e, r)| (*e, *r)))
        .collect();
    let target: BTreeSet<Endpoint> = reasons.keys().copied().collect();
    for e in target.difference(applied).copied().collect::<Vec<_>>() {
        match maps.mark_down(e, reasons[&e]) {
            Ok(()) => {
                applied.insert(e);
                tracing::info!(member = %e.socket_addr(), "flows to member are now reset");
            }
            Err(err) => {
                tracing::error!(member = %e.socket_addr(), error = %err, "marking a member down failed")
            }
        }
    }
    for e in applied.difference(&target).copied().collect::<Vec<_>>() {
        if maps.mark_up(&e).is_ok() {
            applied.remove(&e);
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
    fn adopt(maps: &Maps) -> Self {
        let written = maps.member_vips().unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading MEMBER_VIPS failed; rewriting it");
            Vec::new()
        });
        let mut by_vip: HashMap<Endpoint, BTreeSet<Endpoint>> = HashMap::new();
        for s in maps.services().unwrap_or_default() {
            by_vip.entry(s.vip).or_default().insert(s.active.member);
        }
        Self {
            by_vip,
            written: written.into_iter().collect(),
        }
    }

    fn add(&mut self, maps: &mut Maps, vip: Endpoint, members: impl IntoIterator<Item = Endpoint>) {
        let set = self.by_vip.entry(vip).or_default();
        let before = set.len();
        set.extend(members);
        if set.len() != before {
            self.sync(maps);
        }
    }

    fn remove(&mut self, maps: &mut Maps, vip: &Endpoint) {
        if self.by_vip.remove(vip).is_some() {
            self.sync(maps);
        }
    }

    /// Writes the entries that differ from what is wanted.
    fn sync(&mut self, maps: &mut Maps) {
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
                Ok(_) => {
                    self.written.remove(&member);
                }
                Err(e) => {
                    tracing::error!(member = %member.socket_addr(), error = %e, "removing a MEMBER_VIPS entry failed")
                }
            }
        }
    }
}

//! The single owner of map writes. Service tasks send it decisions; it
//! applies each as one map update and reports when it was written, so the
//! history can show detection-to-write time.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Instant,
};

use redirector_common::Endpoint;
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
    Stats {
        reply: oneshot::Sender<Option<(Stats, usize)>>,
    },
}

/// A handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Cmd>,
}

impl Writer {
    pub fn spawn(maps: Maps) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(maps, rx));
        Self { tx }
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

    pub async fn stats(&self) -> Option<(Stats, usize)> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Stats { reply }).await;
        rx.await.ok().flatten()
    }

    async fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).await.is_err() {
            tracing::error!("map writer task is gone");
        }
    }
}

async fn run(mut maps: Maps, mut rx: mpsc::Receiver<Cmd>) {
    // Marks left by a previous daemon are ours to reconcile.
    let mut applied: BTreeSet<Endpoint> = maps
        .down_members()
        .map(|v| v.into_iter().map(|(e, _)| e).collect())
        .unwrap_or_default();
    let mut wanted: HashMap<String, BTreeMap<Endpoint, u32>> = HashMap::new();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::SetActive { vip, member, reply } => {
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
                wanted.remove(&service);
                reconcile(&mut maps, &mut applied, &wanted);
            }
            Cmd::SyncDown { service, members } => {
                wanted.insert(service, members);
                reconcile(&mut maps, &mut applied, &wanted);
            }
            Cmd::Stats { reply } => {
                let s = maps.stats().ok();
                let flows = maps.flows().map(|f| f.len()).unwrap_or(0);
                let _ = reply.send(s.map(|s| (s, flows)));
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

//! A fleet service's side of fleet mode: it starts the service's agent,
//! publishes the host's own view of the members, applies the fleet's
//! decisions to the data path (acknowledging each epoch once written),
//! and hands operator actions to the agent, which makes them fleet
//! decisions.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use super::{Msg, Op, ServiceTask, Shared};
use crate::{
    config,
    daemon::{
        error::DaemonError,
        fleet_agent::{Agent, AgentLinks, AgentSpec, FleetEvent, FleetOp, LocalView, OpRequest},
    },
    decide::{
        Failback, Health, Reason,
        fleet::{Barrier, Decision, FleetMember, FleetPolicy, Phase, Quorum},
    },
    fleet::{EtcdEngine, SeenRecord},
    metrics::ServiceLabels,
    status::{FleetStatus, FlipRecord, unix_ms},
};

/// How often a decision that could not be written is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// The engine and the `[fleet]` settings every fleet service shares.
#[derive(Clone)]
pub struct FleetShared {
    pub engine: Arc<EtcdEngine>,
    pub config: config::Fleet,
}

/// The service task's end of its agent.
pub struct FleetLink {
    view: watch::Sender<LocalView>,
    ops: mpsc::Sender<OpRequest>,
    status: Arc<Mutex<FleetStatus>>,
    /// The last epoch written to the data path (acknowledged).
    applied: u64,
    /// A decision not written yet (map error, unresolved address).
    pending: Option<Decision>,
}

/// Starts the agent of `cfg` when it is a fleet service (its task joins
/// `tasks`, so its death restarts the service).
pub(super) fn start(
    cfg: &config::Service,
    shared: &Shared,
    tx: &mpsc::Sender<Msg>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Option<FleetLink> {
    if !cfg.fleet {
        return None;
    }
    let Some(fleet) = &shared.fleet else {
        // Validation rejects `fleet = true` without [fleet]; say so if a
        // config ever gets here anyway, and serve locally.
        tracing::error!(
            service = cfg.name,
            "fleet = true but no [fleet] section: the service decides locally"
        );
        return None;
    };
    let (view, local) = watch::channel(LocalView {
        seen: vec![SeenRecord::Unknown; cfg.members.len()],
        applied_epoch: 0,
    });
    let (ops_tx, ops) = mpsc::channel(16);
    let status = Arc::new(Mutex::new(FleetStatus {
        host: fleet.config.host.clone(),
        following: true,
        ..FleetStatus::default()
    }));
    let spec = spec(cfg, &fleet.config);
    let agent = Agent::new(
        spec,
        fleet.engine.clone(),
        AgentLinks {
            local,
            ops,
            to_service: tx.clone(),
            status: status.clone(),
        },
        shared.metrics.clone(),
    );
    tasks.push(tokio::spawn(agent.run()));
    Some(FleetLink {
        view,
        ops: ops_tx,
        status,
        applied: 0,
        pending: None,
    })
}

/// The agent's settings from the service's and the fleet's config.
pub fn spec(cfg: &config::Service, fleet: &config::Fleet) -> AgentSpec {
    AgentSpec {
        service: cfg.name.clone(),
        host: fleet.host.clone(),
        members: cfg
            .members
            .iter()
            .map(|m| FleetMember {
                name: m.name.clone(),
                priority: m.priority,
            })
            .collect(),
        policy: FleetPolicy {
            quorum: match fleet.quorum {
                config::FleetQuorum::Majority => Quorum::Majority,
                config::FleetQuorum::Count(n) => Quorum::Count(n as usize),
            },
            failback_delay: cfg.failback_delay,
            failback: match cfg.failback {
                config::Failback::Auto => Failback::Auto,
                config::Failback::Manual => Failback::Manual,
            },
            barrier: match fleet.barrier {
                config::FleetBarrier::None => Barrier::None,
                config::FleetBarrier::Ack => Barrier::Ack,
            },
        },
        lease_ttl: fleet.lease_ttl,
        retry: fleet.timeout.min(Duration::from_millis(500)),
        local_after: match fleet.on_detach {
            config::OnDetach::Static => None,
            config::OnDetach::Local => Some(fleet.detach_timeout),
        },
        // Past the lease: a host that is gone no longer counts anyway.
        barrier_timeout: fleet.lease_ttl * 2,
    }
}

impl ServiceTask {
    /// Returns whether the active member or the fleet state changed.
    pub(super) async fn on_fleet(&mut self, e: FleetEvent) -> bool {
        match e {
            FleetEvent::Decision(d) => {
                let Some(link) = self.fleet.as_mut() else {
                    return false;
                };
                if link.applied == d.epoch && link.pending.is_none() && self.machine.following() {
                    return false;
                }
                self.machine.set_following(true);
                link.pending = Some(d);
                self.retry_fleet().await;
                true
            }
            FleetEvent::GoLocal => {
                self.machine.set_following(false);
                let flip = self.machine.on_tick(Instant::now());
                self.apply(flip).await;
                true
            }
        }
    }

    /// When to try a pending decision again.
    pub(super) fn fleet_retry_at(&self, now: Instant) -> Option<Instant> {
        self.fleet
            .as_ref()
            .and_then(|l| l.pending.as_ref())
            .map(|_| now + RETRY)
    }

    /// Writes the pending fleet decision, if any; acknowledges its epoch
    /// once the data path has it.
    pub(super) async fn retry_fleet(&mut self) {
        let Some(d) = self.fleet.as_ref().and_then(|l| l.pending.clone()) else {
            return;
        };
        if !self.machine.following() {
            return;
        }
        let now = Instant::now();
        let written = match (d.phase, d.active) {
            (Phase::Serving, Some(to)) if to < self.cfg.members.len() => {
                let flip = self.machine.follow(to, d.reason, now);
                self.apply_epoch(flip, Some(d.epoch)).await
            }
            (Phase::Barrier { to }, _) if to < self.cfg.members.len() => {
                self.barrier(to, d.reason, d.epoch, now).await
            }
            (Phase::Serving, None) => true,
            _ => {
                tracing::error!(
                    service = self.cfg.name,
                    epoch = d.epoch,
                    "the fleet decision names a member this service does not have"
                );
                false
            }
        };
        if !written {
            return;
        }
        // The down marks of this epoch (a drained or failed old member)
        // are in the map before the epoch is acknowledged.
        self.sync_down().await;
        if let Some(link) = self.fleet.as_mut() {
            link.pending = None;
            link.applied = d.epoch;
        }
        self.shared
            .metrics
            .fleet_epoch
            .get_or_create(&ServiceLabels {
                service: self.cfg.name.clone(),
            })
            .set(d.epoch as i64);
        self.publish_view();
    }

    /// Break-before-make: no member serves until the fleet's barrier
    /// completes; the member that served drains from now.
    async fn barrier(&mut self, to: usize, reason: Reason, epoch: u64, now: Instant) -> bool {
        let Some(old) = self.machine.hold(now) else {
            return true;
        };
        match self.shared.writer.clear_active(self.vip).await {
            Ok(written) => {
                tracing::info!(
                    service = self.cfg.name,
                    from = self.cfg.members[old].name,
                    to = self.cfg.members[to].name,
                    epoch,
                    "fleet barrier: no member serves until every host has stopped writing to the old one"
                );
                self.shared.history.push(FlipRecord {
                    service: self.cfg.name.clone(),
                    from: Some(self.cfg.members[old].name.clone()),
                    to: self.cfg.members[to].name.clone(),
                    reason,
                    first_failed_check_ms: None,
                    marked_down_ms: None,
                    map_written_ms: unix_ms(written),
                    signals: Default::default(),
                    trigger: None,
                    epoch: Some(epoch),
                    phase: Some("barrier".into()),
                });
                true
            }
            Err(e) => {
                tracing::error!(service = self.cfg.name, error = %e, "clearing the active member for a fleet barrier failed; retried");
                self.machine.active = Some(old);
                false
            }
        }
    }

    /// Publishes this host's view of the members (the agent writes it to
    /// the engine when it changed).
    pub(super) fn publish_view(&self) {
        let Some(link) = &self.fleet else { return };
        let seen: Vec<SeenRecord> = self
            .machine
            .members
            .iter()
            .map(|m| match m.health {
                Health::Up => SeenRecord::Up,
                Health::Down => SeenRecord::Down,
                Health::Unknown => SeenRecord::Unknown,
            })
            .collect();
        let view = LocalView {
            seen,
            applied_epoch: link.applied,
        };
        link.view.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }

    /// An operator action on a fleet service: a new fleet decision, which
    /// every host applies (this one included, through the watch).
    pub(super) async fn fleet_op(&mut self, op: Op) -> Result<String, DaemonError> {
        let svc = self.cfg.name.clone();
        let (op, done) = match op {
            Op::Switchover(m) => (
                FleetOp::Switchover(self.member_index(&m)?),
                format!("pinned to {m}"),
            ),
            Op::Release => (FleetOp::Release, "released".to_string()),
            Op::Drain(m) => (
                FleetOp::Drain(self.member_index(&m)?),
                format!("{m} drained"),
            ),
            Op::Undrain(m) => (
                FleetOp::Undrain(self.member_index(&m)?),
                format!("{m} back in rotation"),
            ),
        };
        let link = self
            .fleet
            .as_ref()
            .expect("fleet_op is called for fleet services");
        let (reply, rx) = oneshot::channel();
        if link.ops.send(OpRequest { op, reply }).await.is_err() {
            return Err(DaemonError::Stopped(svc));
        }
        // The agent answers after one round trip to the engine, bounded by
        // the engine's timeout (or at once while cut off); it never waits
        // on this task to answer.
        let decision = rx
            .await
            .map_err(|_| DaemonError::Stopped(svc.clone()))?
            .map_err(|source| DaemonError::Fleet {
                service: svc.clone(),
                source,
            })?;
        let name =
            |i: Option<usize>| i.map_or("-".to_string(), |i| self.cfg.members[i].name.clone());
        let serving = match decision.phase {
            Phase::Serving => format!("active is now {}", name(decision.active)),
            Phase::Barrier { to } => format!(
                "{} serves once every host has stopped using the old member",
                name(Some(to))
            ),
        };
        Ok(format!(
            "{svc}: {done} for the whole fleet (epoch {}); {serving}",
            decision.epoch
        ))
    }

    pub(super) fn fleet_status(&self) -> Option<FleetStatus> {
        let link = self.fleet.as_ref()?;
        let mut st = link
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        st.following = self.machine.following();
        st.applied_epoch = link.applied;
        Some(st)
    }
}

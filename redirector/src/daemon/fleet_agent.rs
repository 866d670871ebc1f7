//! Fleet mode's agent: one task per fleet service that links this host to
//! the coordination engine. It publishes the host's own view of the
//! members on its lease, watches every live host's view and the fleet's
//! decision, proposes a new decision (compare-and-swap on the decision's
//! revision) when the shared rule of [`crate::decide::fleet`] says so, and
//! hands every decision to the service task, which writes the map and
//! acknowledges the epoch by publishing it.
//!
//! Cut off from the engine, the host keeps the last decision (the data
//! path goes on serving it), or, with `on_detach = "local"`, hands the
//! service back to its own checks after `detach_timeout`. Every failure is
//! counted (`redirector_fleet_operations_total`), shown in `status` and
//! retried; nothing here can stop the service's checks.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    decide::{
        fleet::{
            self, Decision, FleetMember, FleetOpError, FleetPolicy, FleetView, HostView, Phase,
            Proposal, Seen,
        },
        later,
    },
    fleet::{
        DecisionRecord, Engine, EngineError, Event, HostRecord, LeaseId, Revision, SeenRecord,
        Snapshot,
    },
    metrics::{FleetOpLabels, Metrics, ServiceLabels},
    status::{FleetHostStatus, FleetStatus, unix_ms},
};

/// What the agent needs to know about its service and the fleet.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    pub service: String,
    /// This host's name in the fleet.
    pub host: String,
    pub members: Vec<FleetMember>,
    pub policy: FleetPolicy,
    pub lease_ttl: Duration,
    /// Pause between two attempts to reach the engine.
    pub retry: Duration,
    /// `on_detach = "local"`: hand the service to its own checks after
    /// this long cut off; `None` keeps the last decision.
    pub local_after: Option<Duration>,
    /// A barrier that a live host has not acknowledged for this long goes
    /// on without it (a host that cannot write its map must not leave the
    /// whole fleet with no member).
    pub barrier_timeout: Duration,
}

/// What the service task publishes: its own view of each member (in
/// member order) and the last epoch it applied to the data path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalView {
    pub seen: Vec<SeenRecord>,
    pub applied_epoch: u64,
}

/// What the agent tells the service task.
#[derive(Debug)]
pub enum FleetEvent {
    /// The fleet's decision, to apply (sent again after every reconnection).
    Decision(Decision),
    /// Cut off past `detach_timeout` with `on_detach = "local"`: decide
    /// locally until the next decision.
    GoLocal,
}

/// An operator action on the whole fleet.
#[derive(Debug)]
pub enum FleetOp {
    Switchover(usize),
    Release,
    Drain(usize),
    Undrain(usize),
}

pub struct OpRequest {
    pub op: FleetOp,
    pub reply: oneshot::Sender<Result<Decision, FleetOpFailed>>,
}

/// Why an operator action on the fleet was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum FleetOpFailed {
    #[error(transparent)]
    Rule(#[from] FleetOpError),
    #[error("this host is cut off from the coordination engine ({0}); nothing changed")]
    Detached(String),
    #[error(
        "another host changed the fleet's decision first (it was at epoch {0}); see `status` and retry"
    )]
    Lost(u64),
    #[error("the coordination engine failed ({0}); nothing changed")]
    Engine(String),
}

/// The channels between the agent and its service task.
pub struct AgentLinks<M> {
    pub local: watch::Receiver<LocalView>,
    pub ops: mpsc::Receiver<OpRequest>,
    pub to_service: mpsc::Sender<M>,
    /// Filled by the agent, read by the service's status.
    pub status: Arc<Mutex<FleetStatus>>,
}

/// How a session with the engine ended.
enum End {
    Engine(EngineError),
    /// The service task is gone (stopped or restarted): so is the agent.
    ServiceGone,
}

impl From<EngineError> for End {
    fn from(e: EngineError) -> Self {
        End::Engine(e)
    }
}

/// Another live host, as this host has seen it.
struct Peer {
    record: HostRecord,
    /// Per member (in member order): since when this host has seen the
    /// peer report it up, on this host's clock (no clock crosses hosts).
    up_since: Vec<Option<Instant>>,
}

struct Current {
    decision: Decision,
    revision: Revision,
    by: String,
    /// When this host first saw it (barrier timeout).
    seen_at: Instant,
}

pub struct Agent<E, M> {
    spec: AgentSpec,
    engine: Arc<E>,
    links: AgentLinks<M>,
    names: Vec<String>,
    hosts: BTreeMap<String, Peer>,
    current: Option<Current>,
    /// A decision this host cannot read (a member it does not know): no
    /// proposal over it until a readable one replaces it.
    unreadable: Option<Revision>,
    /// The last proposal, on the revision it expected: not repeated.
    proposed: Option<(Option<Revision>, Decision)>,
    detached_since: Option<Instant>,
    went_local: bool,
    last_error: Option<String>,
    metrics: Arc<Metrics>,
}

impl<E: Engine, M: From<FleetEvent> + Send + 'static> Agent<E, M> {
    pub fn new(
        spec: AgentSpec,
        engine: Arc<E>,
        links: AgentLinks<M>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let names = spec.members.iter().map(|m| m.name.clone()).collect();
        Self {
            spec,
            engine,
            links,
            names,
            hosts: BTreeMap::new(),
            current: None,
            unreadable: None,
            proposed: None,
            detached_since: Some(now()),
            went_local: false,
            last_error: None,
            metrics,
        }
    }

    /// Runs until the service task is gone.
    pub async fn run(mut self) {
        loop {
            let end = self.session().await;
            match end {
                End::ServiceGone => return,
                End::Engine(e) => self.detached(&e),
            }
            if !self.wait_before_retry().await {
                return;
            }
        }
    }

    fn labels(&self) -> ServiceLabels {
        ServiceLabels {
            service: self.spec.service.clone(),
        }
    }

    fn count(&self, op: &str, result: &str) {
        self.metrics
            .fleet_ops
            .get_or_create(&FleetOpLabels {
                service: self.spec.service.clone(),
                op: op.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Counts a failed operation and passes its error on.
    fn failed(&self, op: &str, e: EngineError) -> End {
        self.count(op, "failed");
        End::Engine(e)
    }

    fn detached(&mut self, e: &EngineError) {
        let text = crate::error_chain::error_chain(e);
        if self.detached_since.is_none() {
            tracing::error!(
                service = self.spec.service,
                error = text,
                "cut off from the coordination engine; keeping the last fleet decision"
            );
            self.detached_since = Some(now());
        } else {
            tracing::warn!(
                service = self.spec.service,
                error = text,
                "the coordination engine is still unreachable"
            );
        }
        self.last_error = Some(text);
        self.metrics
            .fleet_attached
            .get_or_create(&self.labels())
            .set(0);
        self.publish_status();
    }

    /// Waits `retry`, answering operator actions and going local when the
    /// time comes. Returns false when the service task is gone.
    async fn wait_before_retry(&mut self) -> bool {
        let until = later(now(), self.spec.retry);
        loop {
            if self.go_local_if_due().await.is_err() {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => return true,
                req = self.links.ops.recv() => match req {
                    None => return false,
                    Some(r) => {
                        let why = self.last_error.clone().unwrap_or_default();
                        let _ = r.reply.send(Err(FleetOpFailed::Detached(why)));
                    }
                },
                r = self.links.local.changed() => if r.is_err() { return false },
            }
        }
    }

    async fn go_local_if_due(&mut self) -> Result<(), End> {
        let (Some(after), Some(since)) = (self.spec.local_after, self.detached_since) else {
            return Ok(());
        };
        if self.went_local || now().saturating_duration_since(since) < after {
            return Ok(());
        }
        tracing::warn!(
            service = self.spec.service,
            after = ?after,
            "cut off from the coordination engine too long: the service follows its own checks until the host is back (on_detach = \"local\")"
        );
        self.went_local = true;
        self.publish_status();
        self.tell(FleetEvent::GoLocal).await
    }

    async fn tell(&self, e: FleetEvent) -> Result<(), End> {
        self.links
            .to_service
            .send(M::from(e))
            .await
            .map_err(|_| End::ServiceGone)
    }

    /// One session: a lease, our key, a snapshot, then the watch. Returns
    /// only on an error (or when the service is gone).
    async fn session(&mut self) -> End {
        let lease = match self.engine.grant(self.spec.lease_ttl).await {
            Ok(l) => l,
            Err(e) => return self.failed("grant", e),
        };
        let end = match self.attached(lease).await {
            Ok(never) => match never {},
            Err(end) => end,
        };
        if matches!(end, End::ServiceGone) {
            // Leave at once rather than after the TTL; best effort.
            let _ = self.engine.revoke(lease).await;
        }
        end
    }

    async fn attached(&mut self, lease: LeaseId) -> Result<std::convert::Infallible, End> {
        let view = self.links.local.borrow_and_update().clone();
        self.put(&view, lease).await?;
        let snap = self
            .engine
            .snapshot(&self.spec.service)
            .await
            .map_err(|e| self.failed("snapshot", e))?;
        let revision = snap.revision;
        self.load(snap);
        let mut events = self
            .engine
            .watch(&self.spec.service, revision)
            .await
            .map_err(|e| self.failed("watch", e))?;
        if let Some(since) = self.detached_since.take() {
            tracing::info!(
                service = self.spec.service,
                after = ?now().saturating_duration_since(since),
                "attached to the coordination engine"
            );
        }
        self.last_error = None;
        self.metrics
            .fleet_attached
            .get_or_create(&self.labels())
            .set(1);
        // The service applies it again if it went local meanwhile; the
        // same epoch already applied changes nothing.
        self.went_local = false;
        if let Some(c) = &self.current {
            self.tell(FleetEvent::Decision(c.decision.clone())).await?;
        }
        let mut keepalive = tokio::time::interval(self.spec.lease_ttl / 3);
        keepalive.tick().await;
        loop {
            self.evaluate().await?;
            self.publish_status();
            let deadline = self.next_deadline(now());
            tokio::select! {
                r = self.links.local.changed() => {
                    if r.is_err() {
                        return Err(End::ServiceGone);
                    }
                    let view = self.links.local.borrow_and_update().clone();
                    self.put(&view, lease).await?;
                }
                batch = events.recv() => match batch {
                    None => {
                        let e = EngineError::Failed { op: "watch", source: "the watch ended".into() };
                        return Err(self.failed("watch", e));
                    }
                    Some(Err(e)) => return Err(self.failed("watch", e)),
                    Some(Ok(evs)) => {
                        for e in evs {
                            self.on_event(e).await?;
                        }
                    }
                },
                _ = keepalive.tick() => {
                    self.engine
                        .keep_alive(lease)
                        .await
                        .map_err(|e| self.failed("keep_alive", e))?;
                }
                req = self.links.ops.recv() => match req {
                    None => return Err(End::ServiceGone),
                    Some(r) => self.on_op(r).await?,
                },
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }

    async fn put(&self, view: &LocalView, lease: LeaseId) -> Result<(), End> {
        let record = HostRecord {
            members: self
                .names
                .iter()
                .cloned()
                .zip(view.seen.iter().copied())
                .collect(),
            applied_epoch: view.applied_epoch,
            at_unix_ms: unix_ms(Instant::now()),
            instance: instance(),
        };
        self.engine
            .put_host(&self.spec.service, &self.spec.host, &record, lease)
            .await
            .map_err(|e| self.failed("put_host", e))
    }

    /// Replaces the view with a snapshot, keeping the up-since times of
    /// members that stayed up (a reconnection does not restart a
    /// failback delay).
    fn load(&mut self, snap: Snapshot) {
        let old = std::mem::take(&mut self.hosts);
        let now = now();
        for (name, record) in snap.hosts {
            self.check_instance(&name, &record);
            let before = old.get(&name);
            let peer = self.peer(record, before, now);
            self.hosts.insert(name, peer);
        }
        self.current = None;
        self.unreadable = None;
        if let Some((record, revision)) = snap.decision {
            self.take_decision(record, revision);
        }
    }

    fn peer(&self, record: HostRecord, before: Option<&Peer>, now: Instant) -> Peer {
        let seen = record.seen(&self.names);
        let up_since = seen
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                SeenRecord::Up => Some(
                    before
                        .and_then(|p| p.up_since.get(i).copied().flatten())
                        .unwrap_or(now),
                ),
                SeenRecord::Down | SeenRecord::Unknown => None,
            })
            .collect();
        Peer { record, up_since }
    }

    /// Another daemon writing under this host's name would merge two
    /// hosts' views into one key, and the fleet would count one host where
    /// there are two: loud, every time it is seen.
    fn check_instance(&mut self, host: &str, record: &HostRecord) {
        if host != self.spec.host || record.instance == instance() {
            return;
        }
        let text = format!(
            "another daemon writes as fleet host {host:?} (instance {} here, {} there): give every host its own [fleet] host name",
            instance(),
            record.instance
        );
        tracing::error!(service = self.spec.service, "{text}");
        self.count("host_name_conflict", "failed");
        self.last_error = Some(text);
    }

    async fn on_event(&mut self, e: Event) -> Result<(), End> {
        match e {
            Event::Host { host, record } => {
                self.check_instance(&host, &record);
                let peer = self.peer(record, self.hosts.get(&host), now());
                self.hosts.insert(host, peer);
            }
            Event::HostGone { host } => {
                if self.hosts.remove(&host).is_some() {
                    tracing::info!(
                        service = self.spec.service,
                        host,
                        "host left the fleet (lease ended)"
                    );
                }
            }
            Event::DecisionGone => {
                tracing::error!(
                    service = self.spec.service,
                    "the fleet's decision key was deleted; the fleet decides again from scratch (hosts keep serving what they applied until then)"
                );
                self.count("decision_deleted", "failed");
                self.current = None;
                self.unreadable = None;
            }
            Event::Decision {
                record,
                mod_revision,
            } => {
                if self.take_decision(record, mod_revision) {
                    let d = self.current.as_ref().map(|c| c.decision.clone());
                    if let Some(d) = d {
                        self.tell(FleetEvent::Decision(d)).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Takes a decision read from the engine; returns whether it is a new
    /// one to apply.
    fn take_decision(&mut self, record: DecisionRecord, revision: Revision) -> bool {
        match record.to_decision(&self.names) {
            Ok(d) => {
                self.unreadable = None;
                let new = self.current.as_ref().is_none_or(|c| c.decision != d);
                if new {
                    tracing::info!(
                        service = self.spec.service,
                        epoch = d.epoch,
                        active = d.active.map(|i| self.names[i].as_str()).unwrap_or("-"),
                        phase = ?d.phase,
                        reason = d.reason.as_str(),
                        by = record.by,
                        "fleet decision"
                    );
                }
                self.current = Some(Current {
                    decision: d,
                    revision,
                    by: record.by,
                    seen_at: now(),
                });
                new
            }
            Err(e) => {
                let text = format!(
                    "the fleet's decision at revision {revision} (by {}) cannot be read here: {e}; this host keeps the last one it applied and proposes nothing over it",
                    record.by
                );
                tracing::error!(service = self.spec.service, "{text}");
                self.count("decode", "failed");
                self.last_error = Some(text);
                self.unreadable = Some(revision);
                false
            }
        }
    }

    /// The shared view as the rule takes it. During a barrier older than
    /// `barrier_timeout`, hosts that have not acknowledged it count as
    /// gone.
    fn view(&self, now: Instant) -> FleetView {
        let stalled = self.current.as_ref().and_then(|c| match c.decision.phase {
            Phase::Barrier { .. }
                if now.saturating_duration_since(c.seen_at) >= self.spec.barrier_timeout =>
            {
                Some(c.decision.epoch)
            }
            _ => None,
        });
        FleetView {
            hosts: self
                .hosts
                .iter()
                .map(|(name, p)| HostView {
                    name: name.clone(),
                    live: stalled.is_none_or(|epoch| p.record.applied_epoch >= epoch),
                    members: p
                        .record
                        .seen(&self.names)
                        .iter()
                        .zip(&p.up_since)
                        .map(|(s, since)| match (s, since) {
                            (SeenRecord::Up, Some(since)) => Seen::Up { since: *since },
                            (SeenRecord::Up, None) => Seen::Up { since: now },
                            (SeenRecord::Down, _) => Seen::Down,
                            (SeenRecord::Unknown, _) => Seen::Unknown,
                        })
                        .collect(),
                    applied_epoch: p.record.applied_epoch,
                })
                .collect(),
        }
    }

    fn decision_now(&self) -> (Decision, Option<Revision>) {
        match &self.current {
            Some(c) => (c.decision.clone(), Some(c.revision)),
            None => (Decision::initial(), None),
        }
    }

    async fn evaluate(&mut self) -> Result<(), End> {
        if self.unreadable.is_some() {
            return Ok(());
        }
        let now = now();
        let (current, expected) = self.decision_now();
        let view = self.view(now);
        let Proposal::Change(next) =
            fleet::evaluate(&view, &current, &self.spec.policy, &self.spec.members, now)
        else {
            return Ok(());
        };
        if self.proposed.as_ref() == Some(&(expected, next.clone())) {
            return Ok(());
        }
        self.propose(expected, next, "propose").await.map(drop)
    }

    /// Writes `next` if the decision is still at `expected`; returns
    /// whether it was written.
    async fn propose(
        &mut self,
        expected: Option<Revision>,
        next: Decision,
        op: &str,
    ) -> Result<bool, End> {
        let record = DecisionRecord::from_decision(
            &next,
            &self.names,
            &self.spec.host,
            unix_ms(Instant::now()),
        );
        let won = self
            .engine
            .propose(&self.spec.service, expected, &record)
            .await
            .map_err(|e| self.failed(op, e))?
            .is_some();
        self.count(op, if won { "won" } else { "lost" });
        if won {
            tracing::info!(
                service = self.spec.service,
                epoch = next.epoch,
                active = record.active.as_deref().unwrap_or("-"),
                barrier_to = record.barrier_to.as_deref().unwrap_or("-"),
                reason = next.reason.as_str(),
                "proposed a new fleet decision"
            );
        }
        self.proposed = Some((expected, next));
        Ok(won)
    }

    async fn on_op(&mut self, req: OpRequest) -> Result<(), End> {
        let now = now();
        let (current, expected) = self.decision_now();
        let view = self.view(now);
        let rule = fleet::Fleet::new(&view, &self.spec.policy, &self.spec.members, now);
        let next = match req.op {
            FleetOp::Switchover(i) => rule.switchover(&current, i),
            FleetOp::Release => Ok(rule.release(&current)),
            FleetOp::Drain(i) => rule.drain(&current, i),
            FleetOp::Undrain(i) => rule.undrain(&current, i),
        };
        let next = match next {
            Ok(n) => n,
            Err(e) => {
                let _ = req.reply.send(Err(e.into()));
                return Ok(());
            }
        };
        match self.propose(expected, next.clone(), "operator").await {
            Ok(true) => {
                let _ = req.reply.send(Ok(next));
                Ok(())
            }
            Ok(false) => {
                let _ = req.reply.send(Err(FleetOpFailed::Lost(current.epoch)));
                Ok(())
            }
            Err(End::Engine(e)) => {
                let text = crate::error_chain::error_chain(&e);
                let _ = req.reply.send(Err(FleetOpFailed::Engine(text)));
                Err(End::Engine(e))
            }
            Err(End::ServiceGone) => Err(End::ServiceGone),
        }
    }

    /// When the rule may change its mind with nothing new arriving: a
    /// failback delay ending, or a barrier timing out.
    fn next_deadline(&self, now: Instant) -> Instant {
        let delay = self.spec.policy.failback_delay;
        let failbacks = self
            .hosts
            .values()
            .flat_map(|p| p.up_since.iter().flatten())
            .map(|&t| later(t, delay));
        let barrier = self.current.as_ref().and_then(|c| match c.decision.phase {
            Phase::Barrier { .. } => Some(later(c.seen_at, self.spec.barrier_timeout)),
            Phase::Serving => None,
        });
        failbacks
            .chain(barrier)
            .filter(|&t| t > now)
            .min()
            .unwrap_or_else(|| later(now, Duration::from_secs(3600)))
    }

    fn publish_status(&self) {
        let name = |i: Option<usize>| i.and_then(|i| self.names.get(i).cloned());
        self.metrics
            .fleet_hosts
            .get_or_create(&self.labels())
            .set(self.hosts.len() as i64);
        let mut st = self.links.status.lock().unwrap_or_else(|e| e.into_inner());
        st.host = self.spec.host.clone();
        st.attached = self.detached_since.is_none();
        st.detached_since_ms = self.detached_since.map(unix_ms);
        st.last_error = self.last_error.clone();
        st.hosts = self
            .hosts
            .iter()
            .map(|(name, p)| FleetHostStatus {
                name: name.clone(),
                applied_epoch: p.record.applied_epoch,
                members: p
                    .record
                    .members
                    .iter()
                    .map(|(m, s)| (m.clone(), seen_text(*s).to_string()))
                    .collect(),
            })
            .collect();
        if let Some(c) = &self.current {
            let d = &c.decision;
            st.epoch = d.epoch;
            st.active = name(d.active);
            st.barrier_to = match d.phase {
                Phase::Barrier { to } => name(Some(to)),
                Phase::Serving => None,
            };
            st.reason = Some(d.reason);
            st.by = c.by.clone();
            st.pinned = name(d.pinned);
            st.drained = d.drained.iter().filter_map(|&i| name(Some(i))).collect();
        }
    }
}

/// This daemon's number in its host records, drawn once per process.
fn instance() -> u64 {
    use std::hash::BuildHasher;
    static INSTANCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *INSTANCE.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .hash_one((std::process::id(), std::time::SystemTime::now()))
            .max(1)
    })
}

/// The agent's clock: tokio's, so that its tests run on a paused clock;
/// the same as `Instant::now()` outside them.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

pub fn seen_text(s: SeenRecord) -> &'static str {
    match s {
        SeenRecord::Up => "up",
        SeenRecord::Down => "down",
        SeenRecord::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests;

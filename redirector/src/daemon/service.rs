//! One task per service: it owns the service's decision state machine,
//! receives its members' check results and operator commands, and sends
//! every decision to the map writer. One probe task per member
//! ([`super::probe`]) runs the checks and re-resolves DNS names.

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use redirector_common::{DOWN_DRAINED, DOWN_UNHEALTHY, Endpoint};
use tokio::{
    sync::{Notify, mpsc, oneshot, watch},
    task::JoinHandle,
};

use super::{
    error::DaemonError,
    fleet_agent::FleetEvent,
    probe::{self, ProbeLoop, Report},
    signals::{self, Routes},
    tasks::Tasks,
    writer::Writer,
};
use crate::{
    config,
    decide::{Flip, Health, Policy, ServiceMachine, SignalCounts, later},
    health::{self, Outcome},
    metrics::{FlipLabels, Metrics, ServiceLabels},
    resolve::resolve,
    status::{CheckStatus, FlipRecord, MemberStatus, ServiceStatus, unix_ms},
};

/// Flip records kept for `redirector history`.
const HISTORY_LEN: usize = 1000;

/// Flip records of every service, newest last.
#[derive(Clone, Default)]
pub struct History(Arc<Mutex<VecDeque<FlipRecord>>>);

impl History {
    fn push(&self, r: FlipRecord) {
        let mut h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if h.len() == HISTORY_LEN {
            h.pop_front();
        }
        h.push_back(r);
    }

    pub fn all(&self) -> Vec<FlipRecord> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// An operator command for one service.
#[derive(Debug)]
pub enum Op {
    Switchover(String),
    Release,
    Drain(String),
    Undrain(String),
}

pub enum Msg {
    /// A probe's result.
    Check(Report),
    Op {
        op: Op,
        reply: oneshot::Sender<Result<String, DaemonError>>,
    },
    Status {
        reply: oneshot::Sender<ServiceStatus>,
    },
    /// Fleet mode: the fleet's decision, or the agent's word that this
    /// host decides locally for now ([`super::fleet_agent`]).
    Fleet(FleetEvent),
    /// Reactive signals about a member, seen by the data path in the
    /// application's own traffic ([`super::signals`]).
    Signal {
        member: usize,
        signals: SignalCounts,
        /// When the kernel saw the last of them.
        at: Instant,
    },
}

impl From<Report> for Msg {
    fn from(r: Report) -> Self {
        Msg::Check(r)
    }
}

impl From<FleetEvent> for Msg {
    fn from(e: FleetEvent) -> Self {
        Msg::Fleet(e)
    }
}

/// A running service; dropping it stops its tasks (the map keeps the
/// last decision).
pub struct ServiceHandle {
    pub config: config::Service,
    pub tx: mpsc::Sender<Msg>,
    tasks: Vec<JoinHandle<()>>,
    routes: Routes,
    incarnation: u64,
}

impl ServiceHandle {
    /// Returns when the first of the service's tasks ends (they run until
    /// aborted, so any end is a death).
    pub async fn wait(&mut self) -> Result<(), tokio::task::JoinError> {
        if self.tasks.is_empty() {
            return std::future::pending().await;
        }
        futures_util::future::select_all(self.tasks.iter_mut())
            .await
            .0
    }
}

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        self.routes.remove(self.incarnation);
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Clone)]
pub struct Shared {
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub history: History,
    pub tasks: Tasks,
    /// Where reactive signals about each member endpoint go.
    pub routes: Routes,
    /// Fleet mode's engine and settings, when the config has `[fleet]`.
    pub fleet: Option<fleet::FleetShared>,
}

/// Each member's address now (`None`: the name does not resolve yet; the
/// probe loop keeps trying).
async fn resolve_members(cfg: &config::Service) -> Vec<Option<SocketAddr>> {
    let mut resolved = Vec::new();
    for m in &cfg.members {
        let r = resolve(&m.host, m.port, cfg.vip.is_ipv4()).await;
        if r.is_none() {
            tracing::warn!(
                service = cfg.name,
                member = m.name,
                host = m.host,
                "cannot resolve member yet"
            );
        }
        resolved.push(r);
    }
    resolved
}

/// The member the data path already points at, if it is one of ours, and
/// whether writes must wait for a member confirmed Up. An unreadable entry
/// is not an empty one: writing the preferred member blind could move every
/// new connection off a member a previous daemon failed over to, so the
/// entry stays as it is until a member is confirmed Up (the writer has
/// logged and counted the error).
async fn adopt(
    cfg: &config::Service,
    resolved: &[Option<SocketAddr>],
    writer: &Writer,
) -> (Option<usize>, bool) {
    let current = match writer.active(Endpoint::from(cfg.vip)).await {
        Ok(current) => current,
        Err(e) => {
            tracing::error!(
                service = cfg.name,
                error = %e,
                "cannot read the active member from the data path; it stays as it is until a member is confirmed up"
            );
            return (None, true);
        }
    };
    let adopted = current.and_then(|c| {
        resolved
            .iter()
            .position(|r| r.map(Endpoint::from) == Some(c))
    });
    if let Some(i) = adopted {
        tracing::info!(
            service = cfg.name,
            member = cfg.members[i].name,
            "adopted the active member from the data path"
        );
    }
    (adopted, false)
}

/// The machine's reactive policy from the config's.
fn observe_policy(o: &config::Observe) -> crate::decide::Observe {
    crate::decide::Observe {
        mode: match o.mode {
            config::ObserveMode::Off => crate::decide::ObserveMode::Off,
            config::ObserveMode::Layer4 => crate::decide::ObserveMode::Layer4,
            config::ObserveMode::Layer7 => crate::decide::ObserveMode::Layer7,
        },
        error_limit: o.error_limit,
        on_error: match o.on_error {
            config::OnError::Fastinter => crate::decide::OnError::Fastinter,
            config::OnError::FailCheck => crate::decide::OnError::FailCheck,
            config::OnError::SuddenDeath => crate::decide::OnError::SuddenDeath,
            config::OnError::MarkDown => crate::decide::OnError::MarkDown,
        },
    }
}

/// Starts `cfg` with its members' `checkers` (from [`health::checkers`],
/// built before anything changed), one per member in order.
pub async fn start(
    cfg: config::Service,
    checkers: Vec<Box<dyn health::Checker>>,
    shared: &Shared,
) -> ServiceHandle {
    let vip_v4 = cfg.vip.is_ipv4();
    let resolved = resolve_members(&cfg).await;
    let vip = Endpoint::from(cfg.vip);
    shared
        .writer
        .members(
            vip,
            resolved
                .iter()
                .flatten()
                .map(|a| Endpoint::from(*a))
                .collect(),
        )
        .await;
    let (adopted, hold_until_up) = adopt(&cfg, &resolved, &shared.writer).await;
    let policy = Policy {
        rise: cfg.check.rise,
        fall: cfg.check.fall,
        failback: match cfg.failback {
            config::Failback::Auto => crate::decide::Failback::Auto,
            config::Failback::Manual => crate::decide::Failback::Manual,
        },
        failback_delay: cfg.failback_delay,
        on_failover: match cfg.on_failover {
            config::OnFailover::Reset => crate::decide::OnFailover::Reset,
            config::OnFailover::Keep => crate::decide::OnFailover::Keep,
        },
        drain_timeout: cfg.drain_timeout,
        settle: cfg
            .check
            .timeout
            .saturating_mul(cfg.check.fall)
            .saturating_add(cfg.check.interval),
        observe: observe_policy(&cfg.check.observe),
    };
    let mut machine = ServiceMachine::new(
        policy,
        cfg.members
            .iter()
            .map(|m| (m.name.clone(), m.priority))
            .collect(),
        adopted,
        Instant::now(),
    );
    let (tx, rx) = mpsc::channel(256);
    let incarnation = signals::incarnation();
    let mut tasks = Vec::new();
    let fleet = fleet::start(&cfg, shared, &tx, &mut tasks);
    if fleet.is_some() {
        // The fleet decides the active member; its decision is
        // confirmation enough to write.
        machine.set_following(true);
    }
    let mut transition = Vec::new();
    let wake: Vec<Arc<Notify>> = cfg.members.iter().map(|_| Arc::default()).collect();
    for ((i, m), checker) in cfg.members.iter().enumerate().zip(checkers) {
        let (ttx, trx) = watch::channel(true);
        transition.push(ttx);
        tasks.push(tokio::spawn(probe::run(ProbeLoop {
            member: i,
            host: m.host.as_str().into(),
            port: m.port,
            vip_v4,
            addr: resolved[i],
            check: cfg.check.clone(),
            checker,
            confirming: trx,
            wake: wake[i].clone(),
            tx: tx.clone(),
        })));
    }
    let task = ServiceTask {
        cfg: cfg.clone(),
        vip,
        machine,
        resolved,
        last: cfg.members.iter().map(|_| None).collect(),
        handles: cfg
            .members
            .iter()
            .map(|m| MemberMetrics::new(&shared.metrics, &cfg.name, &m.name))
            .collect(),
        transition,
        wake,
        shared: shared.clone(),
        sent_down: None,
        hold_until_up: hold_until_up && fleet.is_none(),
        fleet,
        tx: tx.clone(),
        incarnation,
    };
    tasks.push(tokio::spawn(task.run(rx)));
    ServiceHandle {
        config: cfg,
        tx,
        tasks,
        routes: shared.routes.clone(),
        incarnation,
    }
}

struct MemberMetrics {
    check: prometheus_client::metrics::histogram::Histogram,
    up: prometheus_client::metrics::gauge::Gauge,
    active: prometheus_client::metrics::gauge::Gauge,
}

impl MemberMetrics {
    fn new(m: &Metrics, service: &str, member: &str) -> Self {
        let labels = Metrics::member(service, member);
        Self {
            check: m.check_seconds.get_or_create(&labels).clone(),
            up: m.member_up.get_or_create(&labels).clone(),
            active: m.active_member.get_or_create(&labels).clone(),
        }
    }
}

struct ServiceTask {
    cfg: config::Service,
    vip: Endpoint,
    machine: ServiceMachine,
    resolved: Vec<Option<SocketAddr>>,
    /// Last check of each member, converted for status only when asked.
    last: Vec<Option<(Outcome, Instant)>>,
    /// Metric handles per member, looked up once (no label allocation per
    /// check).
    handles: Vec<MemberMetrics>,
    transition: Vec<watch::Sender<bool>>,
    /// Per member: asks its probe loop for a probe now.
    wake: Vec<Arc<Notify>>,
    /// This task's own queue, for the signal routes.
    tx: mpsc::Sender<Msg>,
    incarnation: u64,
    shared: Shared,
    sent_down: Option<BTreeMap<Endpoint, u32>>,
    /// The data path's active member could not be read at start: write
    /// nothing until the member chosen is confirmed Up.
    hold_until_up: bool,
    /// Fleet mode's link to the service's agent.
    fleet: Option<fleet::FleetLink>,
}

impl ServiceTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        self.route_signals().await;
        // Fresh start: serve at once on the preferred member (members are
        // Unknown, hence eligible); an adopted member is simply kept.
        let flip = self.machine.on_tick(Instant::now());
        self.apply(flip).await;
        self.sync_down().await;
        self.update_gauges();
        loop {
            let now = Instant::now();
            let wake = self
                .machine
                .next_deadline(now)
                .into_iter()
                .chain(self.fleet_retry_at(now))
                .min()
                .unwrap_or(later(now, Duration::from_secs(3600)));
            // Whether anything the data path or the gauges show may have
            // changed; most checks change nothing.
            let changed = tokio::select! {
                msg = rx.recv() => match msg {
                    None => return,
                    Some(Msg::Check(Report { member, outcome, addr, at })) => self.on_check(member, outcome, addr, at).await,
                    Some(Msg::Op { op, reply }) => {
                        let r = self.on_op(op).await;
                        let _ = reply.send(r);
                        true
                    }
                    Some(Msg::Status { reply }) => {
                        let _ = reply.send(self.status());
                        false
                    }
                    Some(Msg::Signal { member, signals, at }) => self.on_signal(member, signals, at).await,
                    Some(Msg::Fleet(e)) => self.on_fleet(e).await,
                },
                _ = tokio::time::sleep_until(wake.into()) => {
                    self.retry_fleet().await;
                    let flip = self.machine.on_tick(Instant::now());
                    self.apply(flip).await;
                    true
                }
            };
            if changed {
                self.sync_down().await;
                self.update_gauges();
                self.publish_view();
            }
        }
    }

    /// Returns whether the member's health or the active member changed.
    async fn on_check(
        &mut self,
        member: usize,
        outcome: Outcome,
        addr: Option<SocketAddr>,
        at: Instant,
    ) -> bool {
        let name = &self.cfg.members[member].name;
        self.handles[member]
            .check
            .observe(outcome.latency.as_secs_f64());
        let healthy = outcome.healthy;
        let error_text = if healthy { None } else { outcome.error.clone() };
        // The machine hears of the result when it came in, not when the probe
        // was sent: with overlapping probes a confirming probe may have been
        // sent before the first failure was known, and "marked down" is the
        // decision, not that send.
        let answered = later(at, outcome.latency);
        self.last[member] = Some((outcome, at));
        let mut changed = false;
        if addr.is_some() && addr != self.resolved[member] {
            changed = true;
            tracing::info!(service = self.cfg.name, member = name, old = ?self.resolved[member], new = ?addr, "member address changed");
            self.resolved[member] = addr;
            if let Some(a) = addr {
                self.shared.writer.members(self.vip, vec![a.into()]).await;
            }
            self.route_signals().await;
            if self.machine.active == Some(member)
                && let Some(a) = addr
                && let Err(e) = self.shared.writer.set_active(self.vip, a.into()).await
            {
                tracing::error!(
                    service = self.cfg.name,
                    error = %e,
                    "updating the active member's address failed"
                );
            }
        }
        let before = self.machine.members[member].health;
        let flip = self.machine.on_check(member, healthy, answered);
        let after = self.machine.members[member].health;
        if before != after {
            tracing::info!(
                service = self.cfg.name,
                member = name,
                health = ?after,
                error = error_text.as_deref().unwrap_or(""),
                "member health changed"
            );
        }
        let transition = self.machine.members[member].in_transition();
        self.transition[member]
            .send_if_modified(|t| std::mem::replace(t, transition) != transition);
        changed |= before != after || flip.is_some();
        self.apply(flip).await;
        changed
    }

    /// Signals about the members' current addresses come to this task.
    /// The kernel counts their signals as the service's observe mode says.
    async fn route_signals(&self) {
        let members: Vec<(Endpoint, usize)> = self
            .resolved
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.map(|a| (Endpoint::from(a), i)))
            .collect();
        self.shared
            .routes
            .set(&self.cfg.name, self.incarnation, members.clone(), &self.tx);
        let flags = signals::observe_flags(self.cfg.check.observe.mode);
        self.shared
            .writer
            .observe(
                self.cfg.name.clone(),
                members.into_iter().map(|(e, _)| (e, flags)).collect(),
            )
            .await;
    }

    /// Returns whether the member's health or the active member changed.
    async fn on_signal(&mut self, member: usize, signals: SignalCounts, at: Instant) -> bool {
        let name = &self.cfg.members[member].name;
        for (kind, n) in signals.iter() {
            self.shared
                .metrics
                .reactive_signals
                .get_or_create(&crate::metrics::SignalLabels {
                    service: self.cfg.name.clone(),
                    member: name.clone(),
                    kind: kind.as_str().into(),
                })
                .inc_by(u64::from(n));
        }
        let before = self.machine.members[member].health;
        let outcome = self.machine.on_signal(member, signals, at);
        let after = self.machine.members[member].health;
        if outcome.probe_now {
            self.wake[member].notify_one();
        }
        tracing::debug!(
            service = self.cfg.name,
            member = name,
            signals = ?signals,
            probe_now = outcome.probe_now,
            "reactive signals"
        );
        if before != after {
            tracing::info!(
                service = self.cfg.name,
                member = name,
                health = ?after,
                signals = ?signals,
                "member health changed on reactive signals"
            );
        }
        let transition = self.machine.members[member].in_transition();
        self.transition[member]
            .send_if_modified(|t| std::mem::replace(t, transition) != transition);
        let changed = before != after || outcome.flip.is_some();
        self.apply(outcome.flip).await;
        changed
    }

    fn member_index(&self, name: &str) -> Result<usize, DaemonError> {
        self.cfg
            .members
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| DaemonError::NoMember {
                service: self.cfg.name.clone(),
                member: name.into(),
            })
    }

    async fn on_op(&mut self, op: Op) -> Result<String, DaemonError> {
        if self.fleet.is_some() {
            return self.fleet_op(op).await;
        }
        let now = Instant::now();
        let svc = self.cfg.name.clone();
        let (flip, done) = match op {
            Op::Switchover(m) => {
                let i = self.member_index(&m)?;
                let f = self.machine.switchover(i, now)?;
                (f, format!("{svc}: pinned to {m}"))
            }
            Op::Release => (self.machine.release(now), format!("{svc}: released")),
            Op::Drain(m) => {
                let i = self.member_index(&m)?;
                let f = self.machine.drain(i, now)?;
                (f, format!("{svc}: {m} drained"))
            }
            Op::Undrain(m) => {
                let i = self.member_index(&m)?;
                (
                    self.machine.undrain(i, now),
                    format!("{svc}: {m} back in rotation"),
                )
            }
        };
        let moved = flip.as_ref().map(|f| self.cfg.members[f.to].name.clone());
        self.apply(flip).await;
        Ok(match moved {
            Some(to) => format!("{done}; active is now {to}"),
            None => done,
        })
    }

    async fn apply(&mut self, flip: Option<Flip>) {
        self.apply_epoch(flip, None).await;
    }

    /// Writes `flip` to the data path, for fleet decision `epoch` if any;
    /// returns false when it could not (the machine then still points
    /// where the data path does).
    async fn apply_epoch(&mut self, flip: Option<Flip>, epoch: Option<u64>) -> bool {
        let Some(f) = flip else { return true };
        if self.hold_until_up {
            if self.machine.members[f.to].health != Health::Up {
                // Not written: the machine goes on knowing no active member.
                self.machine.active = f.from;
                return false;
            }
            self.hold_until_up = false;
        }
        let to = &self.cfg.members[f.to];
        let Some(addr) = self.resolved[f.to] else {
            tracing::error!(
                service = self.cfg.name,
                member = to.name,
                "cannot switch: member address unresolved"
            );
            self.machine.active = f.from;
            return false;
        };
        let written = match self.shared.writer.set_active(self.vip, addr.into()).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(service = self.cfg.name, error = %e, "map write failed; retried at the next check");
                // The data path still points where it did: so does the
                // machine, whose next evaluation makes the same flip again.
                self.machine.active = f.from;
                return false;
            }
        };
        let from = f.from.map(|i| self.cfg.members[i].name.clone());
        let detection = f
            .first_failed_check
            .map(|t| written.saturating_duration_since(t));
        tracing::info!(
            service = self.cfg.name,
            from = from.as_deref().unwrap_or("-"),
            to = to.name,
            reason = f.reason.as_str(),
            detection_to_write_ms = detection.map(|d| d.as_millis() as u64),
            decision_to_write_us =
                written.saturating_duration_since(f.decided_at).as_micros() as u64,
            "active member changed"
        );
        if let Some(d) = detection {
            self.shared
                .metrics
                .detection_to_write_seconds
                .get_or_create(&ServiceLabels {
                    service: self.cfg.name.clone(),
                })
                .observe(d.as_secs_f64());
        }
        self.shared
            .metrics
            .flips
            .get_or_create(&FlipLabels {
                service: self.cfg.name.clone(),
                reason: f.reason.as_str().into(),
            })
            .inc();
        self.shared.history.push(FlipRecord {
            service: self.cfg.name.clone(),
            from,
            to: to.name.clone(),
            reason: f.reason,
            first_failed_check_ms: f.first_failed_check.map(unix_ms),
            marked_down_ms: f.marked_down.map(unix_ms),
            map_written_ms: unix_ms(written),
            signals: f
                .signals
                .iter()
                .map(|(k, n)| (k.as_str().to_string(), u64::from(n)))
                .collect(),
            trigger: f.trigger.map(|t| t.as_str().to_string()),
            epoch,
            phase: None,
        });
        true
    }

    async fn sync_down(&mut self) {
        let now = Instant::now();
        let wanted: BTreeMap<Endpoint, u32> = self
            .machine
            .reset_members(now)
            .into_iter()
            .filter_map(|i| {
                let reason = if self.machine.members[i].health == Health::Down {
                    DOWN_UNHEALTHY
                } else {
                    DOWN_DRAINED
                };
                self.resolved[i].map(|a| (Endpoint::from(a), reason))
            })
            .collect();
        if self.sent_down.as_ref() != Some(&wanted) {
            self.shared
                .writer
                .sync_down(self.cfg.name.clone(), wanted.clone())
                .await;
            self.sent_down = Some(wanted);
        }
    }

    fn update_gauges(&self) {
        for (i, h) in self.handles.iter().enumerate() {
            h.up.set(i64::from(self.machine.members[i].health == Health::Up));
            h.active.set(i64::from(self.machine.active == Some(i)));
        }
    }

    fn status(&self) -> ServiceStatus {
        let name = |i: Option<usize>| i.map(|i| self.cfg.members[i].name.clone());
        ServiceStatus {
            name: self.cfg.name.clone(),
            vip: self.cfg.vip,
            active: name(self.machine.active),
            pinned: name(self.machine.pinned),
            degraded: self.machine.degraded(),
            failback: format!("{:?}", self.cfg.failback).to_lowercase(),
            members: self
                .cfg
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| MemberStatus {
                    name: m.name.clone(),
                    addr: format!("{}:{}", m.host, m.port),
                    resolved: self.resolved[i],
                    priority: m.priority,
                    health: self.machine.members[i].health,
                    drained: self.machine.members[i].drained,
                    last_check: self.last[i].as_ref().map(|(o, at)| CheckStatus {
                        healthy: o.healthy,
                        latency_ms: o.latency.as_secs_f64() * 1000.0,
                        error: o.error.clone(),
                        code: o.code.clone(),
                        at_unix_ms: unix_ms(*at),
                    }),
                })
                .collect(),
            fleet: self.fleet_status(),
        }
    }
}

mod fleet;
pub use fleet::FleetShared;
#[cfg(test)]
mod tests;

//! `redirector run`: loads or adopts the data path, runs one task per
//! service plus the map writer, the admin API and the metrics endpoint, and
//! reloads on SIGHUP. SIGTERM stops the daemon and leaves the data path in
//! place: traffic keeps flowing on the last decision.

mod endpoint_source;
pub mod error;
pub mod fleet_agent;
pub mod flow_sweeper;
pub mod map_store;
pub mod probe;
pub mod service;
pub mod signals;
pub mod supervise;
pub mod tasks;
pub mod writer;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
};

use self::{
    endpoint_source::EndpointSource,
    error::DaemonError,
    service::{FleetShared, History, Msg, Op, Shared},
    supervise::Supervised,
    tasks::{Task, Tasks},
    writer::Writer,
};
use crate::{
    admin::{self, Request, Response},
    config,
    config::Config,
    datapath::{Datapath, Options},
    error_chain::error_chain,
    fleet::{EtcdEngine, EtcdOptions, EtcdTls},
    metrics::Metrics,
    status::DaemonStatus,
};

struct Daemon {
    config_path: PathBuf,
    flows: flow_sweeper::FlowSweep,
    config: Config,
    attachments: Vec<String>,
    shared: Shared,
    services: BTreeMap<String, Supervised>,
}

fn datapath_options(c: &Config) -> Options {
    Options {
        interfaces: c.datapath.interfaces.clone(),
        ingress: match c.datapath.ingress {
            config::IngressMode::Auto => crate::datapath::IngressMode::Auto,
            config::IngressMode::Xdp => crate::datapath::IngressMode::Xdp,
            config::IngressMode::Tc => crate::datapath::IngressMode::Tc,
        },
        pin_path: c.datapath.pin_path.clone(),
        conntrack_entries: c.datapath.conntrack_entries,
    }
}

fn load_datapath(c: &Config) -> Result<Datapath, crate::datapath::DatapathError> {
    let dp = Datapath::load(&datapath_options(c))?;
    for a in &dp.attachments {
        tracing::info!(
            interface = a.interface,
            hook = a.hook.as_str(),
            adopted = a.adopted,
            "program attached"
        );
    }
    Ok(dp)
}

fn describe(dp: &Datapath) -> Vec<String> {
    dp.attachments
        .iter()
        .map(|a| {
            format!(
                "{}@{}{}",
                a.interface,
                a.hook.as_str(),
                if a.adopted { " (adopted)" } else { "" }
            )
        })
        .collect()
}

/// One kept connection per member check: with many services the default
/// soft limit of 1024 descriptors is too low. Raise it to the hard limit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Serves /metrics, /healthz and /readyz on `addr`, supervised.
async fn spawn_metrics(
    addr: std::net::SocketAddr,
    metrics: &Arc<Metrics>,
    endpoint: &Arc<EndpointSource>,
    tasks: &Tasks,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr}"))?;
    tracing::info!(%addr, "metrics on /metrics, probes on /healthz and /readyz");
    let l = Arc::new(l);
    let (metrics, endpoint) = (metrics.clone(), endpoint.clone());
    Ok(supervise::spawn(tasks.clone(), Task::Metrics, move || {
        crate::metrics::serve(
            l.clone(),
            metrics.clone(),
            endpoint.clone(),
            crate::metrics::LIMITS,
        )
    }))
}

/// The coordination engine every fleet service shares, when the config
/// has `[fleet]`. The client connects lazily: an engine down at start is
/// the agents' to retry (and report), not a reason not to start.
async fn fleet_shared(config: &config::Config) -> anyhow::Result<Option<FleetShared>> {
    let Some(f) = &config.fleet else {
        return Ok(None);
    };
    let engine = EtcdEngine::connect(EtcdOptions {
        endpoints: f.endpoints.clone(),
        prefix: f.prefix.clone(),
        timeout: f.timeout,
        tls: f.tls.as_ref().map(|t| EtcdTls {
            ca: t.ca.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
            domain: t.domain.clone(),
        }),
        auth: f
            .auth
            .as_ref()
            .map(|a| (a.user.clone(), a.password.clone())),
    })
    .await
    .context("setting up the etcd client for [fleet]")?;
    tracing::info!(host = f.host, endpoints = ?f.endpoints, prefix = f.prefix, "fleet mode");
    Ok(Some(FleetShared {
        engine: Arc::new(engine),
        config: f.clone(),
    }))
}

pub async fn run(config_path: PathBuf) -> anyhow::Result<()> {
    let config = config::load(&config_path)?;
    // Held until run returns (and released by the kernel however the
    // process ends): one daemon per pin path and per socket.
    let _pin_lock = crate::lock::pin_path(&config.datapath.pin_path)?;
    let _socket_lock = crate::lock::socket(&config.admin.socket)?;
    raise_fd_limit();
    for w in config::warnings(&config) {
        tracing::warn!("{w}");
    }
    crate::health::install_crypto_provider();
    let dp = load_datapath(&config).context("loading the data path")?;
    let attachments = describe(&dp);
    let metrics = Metrics::new();
    let writer = Writer::spawn(dp.maps, metrics.map_errors.clone())
        .context("starting the map writer thread")?;
    let flows = flow_sweeper::spawn(&config.datapath, metrics.clone());
    let tasks = Tasks::new(metrics.task_deaths.clone());
    let shared = Shared {
        writer: writer.clone(),
        metrics: metrics.clone(),
        history: History::default(),
        tasks: tasks.clone(),
        routes: signals::Routes::default(),
        fleet: fleet_shared(&config).await?,
    };
    let endpoint = Arc::new(EndpointSource {
        writer: writer.clone(),
        tasks: tasks.clone(),
        started: AtomicBool::new(false),
    });
    let mut daemon = Daemon {
        config_path,
        flows,
        config: config.clone(),
        attachments,
        shared,
        services: BTreeMap::new(),
    };
    for s in &config.services {
        let checkers = crate::health::checkers(s)?;
        let h = supervise::service(s.clone(), checkers, &daemon.shared).await;
        daemon.services.insert(s.name.clone(), h);
    }

    let metrics_task = match config.admin.metrics {
        Some(addr) => Some(spawn_metrics(addr, &metrics, &endpoint, &tasks).await?),
        None => None,
    };
    let socket = config.admin.socket.clone();
    let listener = Arc::new(admin::bind(&socket)?);
    let (admin_tx, mut admin_rx) = mpsc::channel::<admin::Incoming>(64);
    let admin_task = supervise::spawn(tasks.clone(), Task::Admin, move || {
        admin::serve(listener.clone(), admin_tx.clone())
    });
    let signals_task = {
        let (pin_path, routes, metrics) = (
            config.datapath.pin_path.clone(),
            daemon.shared.routes.clone(),
            metrics.clone(),
        );
        supervise::spawn(tasks.clone(), Task::Signals, move || {
            signals::run(pin_path.clone(), routes.clone(), metrics.clone())
        })
    };
    let watchers = supervise::watch_threads(&tasks, &writer, &daemon.flows);
    endpoint.started.store(true, Ordering::Relaxed);
    tracing::info!(socket = %socket.display(), services = daemon.services.len(), "redirector running");

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            Some((req, reply)) = admin_rx.recv() => {
                let r = daemon.handle(req).await;
                let _ = reply.send(r);
            }
            _ = hup.recv() => {
                match daemon.reload().await {
                    Ok(m) => tracing::info!("{m}"),
                    Err(e) => tracing::error!(error = error_chain(&e), "reload rejected; the running config stays"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping; the data path stays in place");
    admin_task.abort();
    signals_task.abort();
    for w in watchers {
        w.abort();
    }
    if let Some(t) = metrics_task {
        t.abort();
    }
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

impl Daemon {
    async fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::Status => Response {
                status: Some(self.status().await),
                ..Response::ok("status")
            },
            Request::History => Response {
                history: Some(self.shared.history.all()),
                ..Response::ok("history")
            },
            Request::Reload => match self.reload().await {
                Ok(m) => Response::ok(m),
                Err(e) => {
                    let e = error_chain(&e);
                    tracing::error!(error = e, "reload rejected; the running config stays");
                    Response::err(format!("reload rejected, the running config stays: {e}"))
                }
            },
            Request::Switchover { service, member } => {
                self.op(&service, Op::Switchover(member)).await
            }
            Request::Release { service } => self.op(&service, Op::Release).await,
            Request::Drain { service, member } => self.op(&service, Op::Drain(member)).await,
            Request::Undrain { service, member } => self.op(&service, Op::Undrain(member)).await,
        }
    }

    async fn op(&self, service: &str, op: Op) -> Response {
        match self.send_op(service, op).await {
            Ok(m) => {
                tracing::info!("{m}");
                Response::ok(m)
            }
            Err(e) => Response::err(error_chain(&e)),
        }
    }

    async fn send_op(&self, service: &str, op: Op) -> Result<String, DaemonError> {
        let h = self
            .services
            .get(service)
            .ok_or_else(|| DaemonError::NoService(service.into()))?;
        let (reply, rx) = oneshot::channel();
        if h.tx().send(Msg::Op { op, reply }).await.is_err() {
            return Err(DaemonError::NotRunning(service.into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(DaemonError::Stopped(service.into())))
    }

    async fn status(&self) -> DaemonStatus {
        let mut services = Vec::new();
        for h in self.services.values() {
            let (reply, rx) = oneshot::channel();
            if h.tx().send(Msg::Status { reply }).await.is_ok()
                && let Ok(s) = rx.await
            {
                services.push(s);
            }
        }
        let counters = match self.shared.writer.stats().await {
            Some(stats) => stats
                .iter()
                .map(|(s, v)| (s.as_str().to_string(), v))
                .collect(),
            None => Vec::new(),
        };
        let flows = self.flows.status.borrow().clone();
        DaemonStatus {
            config: self.config_path.display().to_string(),
            pin_path: self.config.datapath.pin_path.display().to_string(),
            attachments: self.attachments.clone(),
            services,
            counters,
            flows,
            tasks: self.shared.tasks.list(),
        }
    }

    /// Applies the config file again. Anything invalid is rejected before
    /// a single thing changes.
    async fn reload(&mut self) -> Result<String, DaemonError> {
        let new = config::load(&self.config_path)?;
        if new.datapath.pin_path != self.config.datapath.pin_path {
            return Err(DaemonError::PinPathChanged {
                from: self.config.datapath.pin_path.clone(),
                to: new.datapath.pin_path.clone(),
            });
        }
        if new.admin != self.config.admin {
            return Err(DaemonError::AdminChanged);
        }
        if new.fleet != self.config.fleet {
            return Err(DaemonError::FleetChanged);
        }
        // Everything that can fail comes first, before anything changes: a
        // rejected reload leaves every running service exactly as it was.
        let mut prepared = BTreeMap::new();
        for s in &new.services {
            let running = self.services.get(&s.name).map(|h| &h.config);
            if running != Some(s) {
                let checkers = crate::health::checkers(s)?;
                prepared.insert(s.name.clone(), checkers);
            }
        }
        for w in config::warnings(&new) {
            tracing::warn!("{w}");
        }
        if new.datapath != self.config.datapath {
            let dp = load_datapath(&new).map_err(DaemonError::Datapath)?;
            self.attachments = describe(&dp);
            self.flows.set_timeouts(&new.datapath);
        }
        let mut changed = 0;
        // Removed or changed services stop; removed ones leave the map.
        let old: Vec<String> = self.services.keys().cloned().collect();
        for name in old {
            let keep = new
                .services
                .iter()
                .any(|s| Some(s) == self.services.get(&name).map(|h| &h.config));
            if !keep {
                let h = self.services.remove(&name).expect("listed above");
                self.shared.writer.forget_service(name.clone()).await;
                if !new.services.iter().any(|s| s.vip == h.config.vip) {
                    self.shared
                        .writer
                        .remove_service(h.config.vip.into(), h.config.name.clone())
                        .await;
                }
                changed += 1;
            }
        }
        for s in &new.services {
            if !self.services.contains_key(&s.name) {
                let checkers = prepared
                    .remove(&s.name)
                    .expect("every service not running was prepared above");
                let h = supervise::service(s.clone(), checkers, &self.shared).await;
                self.services.insert(s.name.clone(), h);
                changed += 1;
            }
        }
        self.config = new;
        Ok(format!(
            "reloaded {}: {changed} services started or stopped",
            self.config_path.display()
        ))
    }
}

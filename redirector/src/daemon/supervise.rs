//! The one supervision rule for the daemon's long-lived tasks: a task that
//! dies (panics or returns when it should run forever) is logged at error
//! level, counted in `redirector_task_deaths_total{task}`, shown in
//! `status`, turns `/readyz` into 503 (and `/healthz` too when it is a
//! service, whose members are then not being checked, or the map writer)
//! until it runs again,
//! and is restarted after a backoff (100 ms doubling to 10 s, reset once it
//! has run for [`HEALTHY_RUN`]).
//!
//! The map writer and flow sweep OS threads are watched, not restarted: the
//! writer owns the map handles every decision needs (a lost writer is a
//! daemon restart), and the sweep thread's death is rare enough that a
//! loud report is the right answer. Both still count and report the same
//! way.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    service::{self, Msg, Shared},
    tasks::{Task, Tasks},
};
use crate::config;

pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A task that ran this long before dying starts again from the first
/// backoff.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// Restart delays: 100 ms doubling to 10 s; reset after a healthy run.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    /// The pause before the next restart of a task that ran for `ran`.
    pub fn after(&mut self, ran: Duration) -> Duration {
        if ran >= HEALTHY_RUN {
            self.next = FIRST_BACKOFF;
        }
        let d = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        d
    }
}

fn death_text(r: Result<(), tokio::task::JoinError>) -> String {
    match r {
        Ok(()) => "returned".into(),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown payload".into());
            format!("panicked: {msg}")
        }
        Err(e) => e.to_string(),
    }
}

/// Runs `make()` as task `name` forever: each death is reported and the
/// task started again after the backoff. Abort the returned handle to
/// stop it.
pub fn spawn<F, Fut>(tasks: Tasks, task: Task, mut make: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tasks.running(&task);
    tokio::spawn(async move {
        let mut backoff = Backoff::default();
        loop {
            let started = Instant::now();
            let r = Child(tokio::spawn(make())).wait().await;
            tasks.died(&task, &death_text(r));
            tokio::time::sleep(backoff.after(started.elapsed())).await;
            tasks.running(&task);
        }
    })
}

/// A child task aborted when its supervisor is dropped (aborted).
struct Child<T>(JoinHandle<T>);

impl<T> Child<T> {
    async fn wait(&mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for Child<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A supervised service. The admin path sends to `tx`, which always
/// points at the running incarnation; dropping this stops the service.
pub struct Supervised {
    pub config: config::Service,
    tx: Arc<Mutex<mpsc::Sender<Msg>>>,
    task: JoinHandle<()>,
    tasks: Tasks,
}

impl Supervised {
    pub fn tx(&self) -> mpsc::Sender<Msg> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.task.abort();
        self.tasks.remove(&Task::Service(self.config.name.clone()));
    }
}

/// Starts service `cfg` and supervises it: when its service task or any
/// probe task dies, the whole service stops and starts again the way a
/// reload starts one (fresh checkers, the active member adopted from the
/// data path).
pub async fn service(
    cfg: config::Service,
    checkers: Vec<Box<dyn crate::health::Checker>>,
    shared: &Shared,
) -> Supervised {
    let tasks = shared.tasks.clone();
    let name = Task::Service(cfg.name.clone());
    let mut handle = service::start(cfg.clone(), checkers, shared).await;
    tasks.running(&name);
    let tx = Arc::new(Mutex::new(handle.tx.clone()));
    let shared = shared.clone();
    let task = tokio::spawn({
        let (cfg, tx, tasks) = (cfg.clone(), tx.clone(), tasks.clone());
        async move {
            let mut backoff = Backoff::default();
            let mut started = Instant::now();
            loop {
                let r = handle.wait().await;
                drop(handle);
                tasks.died(&name, &death_text(r));
                loop {
                    tokio::time::sleep(backoff.after(started.elapsed())).await;
                    started = Instant::now();
                    let c = match crate::health::checkers(&cfg) {
                        Ok(c) => c,
                        Err(e) => {
                            tasks.died(&name, &format!("cannot restart: {e:#}"));
                            continue;
                        }
                    };
                    // A start that panics is one more death, not the end of
                    // supervision; stopping the service (reload) aborts it.
                    let (cfg, shared) = (cfg.clone(), shared.clone());
                    match Child(tokio::spawn(async move {
                        service::start(cfg, c, &shared).await
                    }))
                    .wait()
                    .await
                    {
                        Ok(h) => {
                            handle = h;
                            break;
                        }
                        Err(e) => tasks.died(&name, &format!("cannot restart: {e}")),
                    }
                }
                *tx.lock().unwrap_or_else(|e| e.into_inner()) = handle.tx.clone();
                tasks.running(&name);
                tracing::info!(service = cfg.name, "service restarted");
            }
        }
    });
    Supervised {
        config: cfg,
        tx,
        task,
        tasks,
    }
}

/// Watches the map writer and flow sweep threads; a death is reported
/// (not restarted, see the module text). Abort the handles at shutdown.
pub fn watch_threads(
    tasks: &Tasks,
    writer: &super::writer::Writer,
    flows: &super::flow_sweeper::FlowSweep,
) -> [JoinHandle<()>; 2] {
    tasks.running(&Task::Writer);
    tasks.running(&Task::FlowSweep);
    let w = tokio::spawn({
        let (tasks, writer) = (tasks.clone(), writer.clone());
        async move {
            writer.closed().await;
            tasks.died(
                &Task::Writer,
                "the map writer thread exited: decisions no longer reach the data path; restart the daemon",
            );
        }
    });
    let f = tokio::spawn({
        let (tasks, mut status) = (tasks.clone(), flows.status.clone());
        async move {
            while status.changed().await.is_ok() {}
            tasks.died(
                &Task::FlowSweep,
                "the flow sweep thread exited: idle and closed flows are only removed by the LRU; restart the daemon",
            );
        }
    });
    [w, f]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_healthy_run() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(5);
        let got: Vec<_> = (0..9).map(|_| b.after(short).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(b.after(HEALTHY_RUN), FIRST_BACKOFF);
        assert_eq!(b.after(short), FIRST_BACKOFF * 2);
    }

    #[tokio::test]
    async fn a_panicking_task_is_restarted_counted_and_reported() {
        let t = Tasks::default();
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (ok_tx, mut ok_rx) = mpsc::channel::<()>(1);
        let h = spawn(t.clone(), Task::Metrics, {
            let runs = runs.clone();
            move || {
                let n = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let ok_tx = ok_tx.clone();
                async move {
                    if n == 0 {
                        panic!("injected");
                    }
                    let _ = ok_tx.send(()).await;
                    std::future::pending::<()>().await
                }
            }
        });
        // The first run panics: reported dead (and the backoff, at least
        // 100 ms, has not run out when the death shows).
        while t.list()[0].deaths == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!t.all_running());
        let s = &t.list()[0];
        assert_eq!((s.running, s.deaths), (false, 1));
        assert_eq!(s.last_error.as_deref(), Some("panicked: injected"));
        // After the 100 ms backoff it runs again.
        ok_rx.recv().await.unwrap();
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(t.all_running());
        assert_eq!(t.list()[0].deaths, 1);
        h.abort();
    }
}

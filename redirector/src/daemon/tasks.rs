//! Which of the daemon's long-lived tasks run, and how often each died: the
//! registry that supervision writes and that `status`, /healthz and /readyz
//! read. Deaths are also counted in `redirector_task_deaths_total{task}`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use prometheus_client::metrics::{counter::Counter, family::Family};

use crate::{metrics::TaskLabels, status::TaskStatus};

/// A supervised task, by what it does. The order is the order `status`
/// lists them in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Task {
    /// The admin socket's accept loop.
    Admin,
    /// The flow sweep thread (watched, not restarted).
    FlowSweep,
    /// The metrics endpoint's accept loop.
    Metrics,
    /// A service's decision task and its probe tasks, by service name.
    Service(String),
    /// The reader of the data path's reactive signal events (checks go on
    /// without it; only the reaction to live traffic stops).
    Signals,
    /// The map writer thread (watched, not restarted).
    Writer,
}

impl Task {
    /// Whether failover stops while this task is down: a service's members
    /// are then not checked, and without the writer no decision reaches
    /// the data path.
    fn fails_over(&self) -> bool {
        matches!(self, Task::Service(_) | Task::Writer)
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Task::Admin => f.write_str("admin"),
            Task::FlowSweep => f.write_str("flow_sweep"),
            Task::Metrics => f.write_str("metrics"),
            Task::Service(name) => write!(f, "service:{name}"),
            Task::Signals => f.write_str("signals"),
            Task::Writer => f.write_str("writer"),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Entry {
    running: bool,
    deaths: u64,
    last_error: Option<String>,
}

/// Which supervised tasks run, and how often each died. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tasks {
    entries: Arc<Mutex<BTreeMap<Task, Entry>>>,
    deaths: Family<TaskLabels, Counter>,
}

impl Tasks {
    pub fn new(deaths: Family<TaskLabels, Counter>) -> Self {
        Self {
            entries: Arc::default(),
            deaths,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<Task, Entry>) -> R) -> R {
        f(&mut self.entries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `task` runs (first start or restart).
    pub fn running(&self, task: &Task) {
        self.with(|m| m.entry(task.clone()).or_default().running = true);
    }

    /// `task` died with `error`: logged, counted, not running.
    pub fn died(&self, task: &Task, error: &str) {
        tracing::error!(%task, error, "supervised task died");
        self.deaths
            .get_or_create(&TaskLabels {
                task: task.to_string(),
            })
            .inc();
        self.with(|m| {
            let e = m.entry(task.clone()).or_default();
            e.running = false;
            e.deaths += 1;
            e.last_error = Some(error.into());
        });
    }

    /// A stopped service (reload) is no longer supervised.
    pub fn remove(&self, task: &Task) {
        self.with(|m| m.remove(task));
    }

    /// Every supervised task runs.
    pub fn all_running(&self) -> bool {
        self.with(|m| m.values().all(|e| e.running))
    }

    /// Every service is being checked and its decisions written.
    pub fn checking(&self) -> bool {
        self.with(|m| m.iter().all(|(t, e)| e.running || !t.fails_over()))
    }

    pub fn list(&self) -> Vec<TaskStatus> {
        self.with(|m| {
            m.iter()
                .map(|(task, e)| TaskStatus {
                    name: task.to_string(),
                    running: e.running,
                    deaths: e.deaths,
                    last_error: e.last_error.clone(),
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_task_is_not_ready_and_a_dead_service_is_not_checking() {
        let t = Tasks::default();
        let (admin, a, writer) = (Task::Admin, Task::Service("a".into()), Task::Writer);
        t.running(&admin);
        t.running(&a);
        assert!(t.all_running() && t.checking());
        t.died(&admin, "panicked: x");
        assert!(!t.all_running());
        assert!(t.checking(), "admin down: services are still checked");
        t.running(&admin);
        t.died(&a, "returned");
        assert!(!t.all_running() && !t.checking());
        let l = t.list();
        let listed = l.iter().find(|s| s.name == "service:a").unwrap();
        assert_eq!((listed.running, listed.deaths), (false, 1));
        assert_eq!(listed.last_error.as_deref(), Some("returned"));
        t.running(&a);
        assert!(t.all_running() && t.checking());
        t.died(&a, "again");
        t.remove(&a);
        assert!(t.all_running() && t.checking(), "a removed service is gone");
        t.running(&writer);
        t.died(&writer, "exited");
        assert!(!t.checking(), "no decision reaches the data path");
        let deaths = |task: &str| {
            t.deaths
                .get_or_create(&TaskLabels { task: task.into() })
                .get()
        };
        assert_eq!((deaths("admin"), deaths("service:a")), (1, 2));
    }
}

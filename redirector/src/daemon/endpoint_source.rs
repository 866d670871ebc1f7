//! What the metrics endpoint asks the daemon at request time
//! ([`crate::metrics::Source`]): the data-path counters through the map
//! writer, and the supervised tasks' health for /healthz and /readyz.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{tasks::Tasks, writer::Writer};

pub struct EndpointSource {
    pub writer: Writer,
    pub tasks: Tasks,
    /// Set once every service and endpoint has started.
    pub started: AtomicBool,
}

impl crate::metrics::Source for EndpointSource {
    async fn datapath_counters(&self) -> Option<Vec<(&'static str, u64)>> {
        let stats = self.writer.stats().await?;
        Some(stats.iter().map(|(s, v)| (s.as_str(), v)).collect())
    }

    fn checking(&self) -> bool {
        self.tasks.checking()
    }

    fn ready(&self) -> Result<(), &'static str> {
        if !self.started.load(Ordering::Relaxed) {
            Err("starting")
        } else if !self.tasks.all_running() {
            Err("a supervised task is down")
        } else {
            Ok(())
        }
    }
}

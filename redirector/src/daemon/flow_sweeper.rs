//! The flow sweep's thread: every few seconds it walks the flow table
//! (`datapath::FlowTable`), removes what expired, and publishes counts for
//! `status` and `/metrics`. It has its own map handles and its own OS
//! thread, so a large table never delays a check or a map write, and
//! observers read its last result instead of walking the map themselves.
//!
//! A failure (the clock or a map unreadable) is logged, kept in the
//! published status and counted; the next sweep tries again.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::watch;

use crate::{
    config::DatapathSection,
    datapath::{FlowTable, Lifetimes, Sweep, clock::Jiffies},
    metrics::Metrics,
    status::FlowTableStatus,
};

/// Above this share of capacity the daemon warns: the kernel's LRU starts
/// evicting before the table is full (per-CPU free lists), and an evicted
/// open flow loses its translation.
const WARN_FILL: f64 = 0.8;
/// The warning re-arms below this share.
const REARM_FILL: f64 = 0.7;

/// How often to sweep for a given close timeout: twice per close timeout,
/// between 1 and 5 s.
pub fn interval(close_timeout: Duration) -> Duration {
    (close_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// The running sweep: its last result, and its timeouts (a reload may
/// change them).
pub struct FlowSweep {
    pub status: watch::Receiver<FlowTableStatus>,
    timeouts: watch::Sender<(Duration, Duration)>,
}

impl FlowSweep {
    /// Applies a reloaded config's flow timeouts from the next sweep on.
    pub fn set_timeouts(&self, cfg: &DatapathSection) {
        self.timeouts
            .send_replace((cfg.flow_idle_timeout, cfg.flow_close_timeout));
    }
}

/// Starts the sweep thread for the data path of `cfg`.
pub fn spawn(cfg: &DatapathSection, metrics: Arc<Metrics>) -> FlowSweep {
    let (tx, rx) = watch::channel(FlowTableStatus::default());
    let (timeouts, timeouts_rx) = watch::channel((cfg.flow_idle_timeout, cfg.flow_close_timeout));
    let sweeper = Sweeper {
        pin_path: cfg.pin_path.clone(),
        timeouts: timeouts_rx,
        metrics,
        tx,
        warned: false,
    };
    let spawned = std::thread::Builder::new()
        .name("flow-sweep".into())
        .spawn(move || sweeper.run());
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the flow sweep thread; closed and idle flows are only removed by the data path and the LRU");
    }
    FlowSweep {
        status: rx,
        timeouts,
    }
}

struct Sweeper {
    pin_path: PathBuf,
    /// (flow_idle_timeout, flow_close_timeout)
    timeouts: watch::Receiver<(Duration, Duration)>,
    metrics: Arc<Metrics>,
    tx: watch::Sender<FlowTableStatus>,
    warned: bool,
}

impl Sweeper {
    fn run(mut self) {
        let mut setup: Option<(FlowTable, Jiffies)> = None;
        loop {
            let (idle, close) = *self.timeouts.borrow();
            std::thread::sleep(interval(close));
            if setup.is_none() {
                match self.open() {
                    Ok(s) => setup = Some(s),
                    Err(e) => {
                        self.fail(e);
                        continue;
                    }
                }
            }
            let (table, clock) = setup.as_mut().expect("set above");
            let started = Instant::now();
            let lifetimes = Lifetimes {
                idle: clock.ticks(idle),
                close: clock.ticks(close),
            };
            let result = clock
                .now()
                .map_err(SweepError::Clock)
                .and_then(|now| table.sweep(now, lifetimes).map_err(SweepError::Map));
            match result {
                Ok(sweep) => {
                    let capacity = u64::from(table.capacity());
                    self.publish(sweep, capacity, started.elapsed());
                }
                Err(e) => {
                    // Handles may be stale (teardown, reload): reopen.
                    setup = None;
                    self.fail(e);
                }
            }
        }
    }

    fn open(&self) -> Result<(FlowTable, Jiffies), SweepError> {
        let table = FlowTable::open(&self.pin_path).map_err(SweepError::Map)?;
        let clock = Jiffies::calibrate(Duration::from_millis(100)).map_err(SweepError::Clock)?;
        tracing::info!(
            hz = clock.hz(),
            capacity = table.capacity(),
            "flow sweep running"
        );
        Ok((table, clock))
    }

    fn fail(&self, e: SweepError) {
        let e = crate::error_chain::error_chain(&e);
        tracing::error!(error = %e, "flow sweep failed; flows whose end the data path did not see stay until it works");
        self.metrics.flow_sweep_errors.inc();
        self.tx.send_modify(|s| s.error = Some(e));
    }

    fn publish(&mut self, sweep: Sweep, capacity: u64, took: Duration) {
        let mut status = self.tx.borrow().clone();
        status.capacity = capacity;
        status.open = sweep.open;
        status.closing = sweep.closing;
        status.replies = sweep.replies;
        status.peak = status.peak.max(sweep.open + sweep.closing);
        status.removed_idle += sweep.removed_idle;
        status.removed_closing += sweep.removed_closing;
        status.removed_orphans += sweep.removed_orphans;
        status.sweeps += 1;
        status.last_sweep_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        status.last_sweep_ms = took.as_secs_f64() * 1000.0;
        status.error = None;
        let fill = status.fill();
        if fill > WARN_FILL && !self.warned {
            self.warned = true;
            tracing::warn!(
                open = status.open,
                closing = status.closing,
                capacity,
                "flow table {:.0} % full: the kernel may evict open flows; raise datapath.conntrack_entries",
                fill * 100.0
            );
        } else if fill < REARM_FILL {
            self.warned = false;
        }
        self.metrics.flow_table(&status, &sweep);
        self.tx.send_replace(status);
    }
}

/// Why a sweep could not run; the next one tries again.
#[derive(Debug, thiserror::Error)]
enum SweepError {
    /// The kernel's jiffies clock could not be read or calibrated.
    #[error(transparent)]
    Clock(crate::datapath::clock::ClockError),
    /// The flow maps could not be opened or walked.
    #[error(transparent)]
    Map(crate::datapath::DatapathError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_twice_per_close_timeout_within_bounds() {
        assert_eq!(interval(Duration::from_secs(10)), Duration::from_secs(5));
        assert_eq!(interval(Duration::from_secs(4)), Duration::from_secs(2));
        assert_eq!(interval(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(interval(Duration::from_secs(600)), Duration::from_secs(5));
    }
}

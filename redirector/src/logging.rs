//! The daemon's log writer. A log line must never stop a failover: a full
//! disk (`2>/dev/full`), a log pipe whose reader went away or a reader that
//! stalls would otherwise panic a task (std's `eprintln!` panics on a write
//! error) or block the runtime's only thread. Lines go into a bounded queue
//! that one thread drains to stderr; a full queue drops the line, a failed
//! write drops it too, and both are counted (`redirector_log_*` metrics).

use std::{
    sync::{
        LazyLock,
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    time::Duration,
};

use prometheus_client::metrics::counter::Counter;

/// Lines the queue holds before new ones are dropped.
pub const QUEUE_LINES: usize = 4096;

/// How long [`LogGuard`]'s drop waits for queued lines to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// What went wrong with log lines since start (shared with `metrics`).
#[derive(Clone, Default)]
pub struct LogCounters {
    /// Lines whose write to stderr failed (and were dropped).
    pub write_errors: Counter,
    /// Lines dropped because the queue was full (stderr too slow or stuck).
    pub dropped: Counter,
}

static COUNTERS: LazyLock<LogCounters> = LazyLock::new(LogCounters::default);

/// The process-wide log counters.
pub fn counters() -> LogCounters {
    COUNTERS.clone()
}

enum Msg {
    Line(Vec<u8>),
    /// Answer once every line queued before this one was handled.
    Flush(SyncSender<()>),
}

/// A `MakeWriter` for tracing-subscriber: each event is one queued line.
#[derive(Clone)]
pub struct QueueWriter {
    tx: SyncSender<Msg>,
    counters: LogCounters,
}

/// Flushes queued lines (bounded by [`FLUSH_WAIT`]) when dropped.
pub struct LogGuard {
    tx: SyncSender<Msg>,
}

/// Starts the thread that writes queued lines to `out` (stderr in the
/// daemon) and returns the writer to give tracing and a guard to keep.
pub fn spawn(
    out: impl std::io::Write + Send + 'static,
    queue_lines: usize,
    counters: LogCounters,
) -> (QueueWriter, LogGuard) {
    let (tx, rx) = sync_channel(queue_lines);
    let c = counters.clone();
    // If the thread cannot start, lines are dropped and counted: the
    // writer side never notices beyond a full or closed queue.
    let _ = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || drain(rx, out, c));
    (
        QueueWriter {
            tx: tx.clone(),
            counters,
        },
        LogGuard { tx },
    )
}

fn drain(rx: Receiver<Msg>, mut out: impl std::io::Write, counters: LogCounters) {
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Line(line) => {
                if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                    counters.write_errors.inc();
                }
            }
            Msg::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

impl std::io::Write for QueueWriter {
    /// Queues `buf` as one line; never fails and never blocks (tracing
    /// formats a whole event first and hands it over in one call).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.tx.try_send(Msg::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.inc();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for QueueWriter {
    type Writer = QueueWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let (done_tx, done_rx) = sync_channel(1);
        let deadline = std::time::Instant::now() + FLUSH_WAIT;
        // The queue may be full: retry until the flush marker is in, but
        // never past the deadline.
        let mut msg = Msg::Flush(done_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(m)) => {
                    if std::time::Instant::now() >= deadline {
                        return;
                    }
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // Written, timed out or the thread is gone: exit goes on either way.
        let _ = done_rx.recv_timeout(left);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write as _,
        sync::{Arc, Condvar, Mutex},
    };

    use super::*;

    /// A sink that fails every write, like stderr on /dev/full.
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A sink that blocks every write until released, like a stalled pipe.
    #[derive(Clone, Default)]
    struct Stuck(Arc<(Mutex<bool>, Condvar)>);
    impl std::io::Write for Stuck {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (m, c) = &*self.0;
            let _g = c.wait_while(m.lock().unwrap(), |open| !*open).unwrap();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn failed_writes_are_counted_not_returned() {
        let counters = LogCounters::default();
        let (mut w, guard) = spawn(Full, 16, counters.clone());
        for _ in 0..3 {
            assert_eq!(w.write(b"line\n").unwrap(), 5);
        }
        drop(guard); // waits until the three were handled
        assert_eq!(counters.write_errors.get(), 3);
        assert_eq!(counters.dropped.get(), 0);
    }

    #[test]
    fn a_stuck_sink_drops_lines_instead_of_blocking() {
        let counters = LogCounters::default();
        let stuck = Stuck::default();
        let (mut w, guard) = spawn(stuck.clone(), 4, counters.clone());
        // One line is taken by the (blocked) thread, four fill the queue;
        // the rest must return at once and be counted as dropped.
        for _ in 0..100 {
            assert!(w.write(b"x\n").is_ok());
        }
        assert!(counters.dropped.get() >= 95, "{}", counters.dropped.get());
        let (m, c) = &*stuck.0;
        *m.lock().unwrap() = true;
        c.notify_all();
        drop(guard);
        assert_eq!(counters.write_errors.get(), 0);
    }
}

//! Our own load generator (tokio, HDR histograms): 50 connections from the
//! application host send Redis GET with pipeline 1 through the three paths
//! of `throughput` (direct, VIP, co-located HAProxy), alternating in rounds.
//!
//! Open loop, at fixed request rates: every connection sends on its own
//! schedule, and latency runs from the *intended* send time, so a reply that
//! comes late also counts against the requests queued behind it (no
//! coordinated omission). Closed loop (saturation): every connection sends
//! its next GET as soon as the reply arrives. The generator is one thread
//! (a current-thread runtime), like redis-benchmark. CPU per request is
//! whole-machine CPU time over the run.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use redirector_tests::{daemon::DaemonProc, topology::Topology};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _, unix::AsyncFd},
    net::TcpStream,
    task::JoinSet,
};

use super::{
    failover::{Haproxy, REDIRECTOR_CONFIG, System},
    paired_ratio, summary, svg,
    throughput::{Path, busy_jiffies},
};

const CONNECTIONS: usize = 50;
const GET: &[u8] = b"*2\r\n$3\r\nGET\r\n$6\r\nregion\r\n";

/// What one run asks of the target.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
pub enum Load {
    /// Open loop at this many requests per second in total.
    Rate(u32),
    /// Closed loop, as fast as replies come back.
    Saturation,
}

impl Load {
    fn name(self) -> String {
        match self {
            Load::Rate(r) => format!("{}k req/s", r / 1000),
            Load::Saturation => "saturation".into(),
        }
    }
}

/// One run of one load through one path.
#[derive(serde::Serialize, Clone)]
pub struct Sample {
    /// Completed requests per second.
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Connections that broke off (each ends that connection's run).
    pub errors: u32,
    /// Why the first of them broke off.
    pub first_error: Option<String>,
    /// Whole-machine CPU time per request, microseconds.
    pub cpu_us_per_req: f64,
}

/// Median and range over rounds.
#[derive(serde::Serialize, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

fn spread(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Spread {
    let s = summary(&mut samples.iter().map(f).collect::<Vec<_>>());
    Spread {
        median: s.median,
        min: s.min,
        max: s.max,
    }
}

#[derive(serde::Serialize)]
pub struct Cell {
    pub path: Path,
    pub load: Load,
    pub seconds: f64,
    pub samples: Vec<Sample>,
    pub rps: Spread,
    pub p50_ms: Spread,
    pub p99_ms: Spread,
    pub p999_ms: Spread,
    pub cpu_us: Spread,
}

/// A timerfd armed at each send time. tokio's own timer rounds to whole
/// milliseconds, which at these rates would add up to a millisecond of the
/// generator's lateness to every open-loop latency; an hrtimer behind a
/// timerfd fires within microseconds.
struct Pacer(AsyncFd<OwnedFd>);

impl Pacer {
    fn new() -> std::io::Result<Self> {
        // SAFETY: plain syscall; the fd is checked and then owned.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the OwnedFd keeps the fd open, and the same, for as long
        // as the AsyncFd holds it.
        Ok(Self(unsafe { AsyncFd::register(owned) }?))
    }

    async fn until(&self, at: Instant) -> std::io::Result<()> {
        let Some(wait) = at.checked_duration_since(Instant::now()) else {
            return Ok(());
        };
        if wait.is_zero() {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            },
        };
        let fd = self.0.get_ref().as_raw_fd();
        // SAFETY: a valid timerfd and a valid itimerspec.
        if unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        loop {
            let mut ready = self.0.readable().await?;
            let read = ready.try_io(|fd| {
                let mut expirations = 0u64;
                // SAFETY: reads 8 bytes into a u64 from a valid timerfd.
                let n = unsafe {
                    libc::read(fd.get_ref().as_raw_fd(), (&raw mut expirations).cast(), 8)
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            if let Ok(result) = read {
                return result;
            }
        }
    }
}

/// Reads one RESP reply (simple string, integer or bulk string) into `buf`;
/// a Redis error reply is an error.
async fn read_reply(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let header = &buf[..end];
            let complete = match header.first() {
                Some(b'-') => {
                    let msg = String::from_utf8_lossy(header).into_owned();
                    return Err(std::io::Error::other(msg));
                }
                Some(b'$') => {
                    let n: i64 = std::str::from_utf8(&header[1..])
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| std::io::Error::other("bad bulk length"))?;
                    n < 0 || buf.len() >= end + 2 + n as usize + 2
                }
                _ => true,
            };
            if complete {
                return Ok(());
            }
        }
        let mut chunk = [0u8; 256];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// What one connection measured.
struct ConnResult {
    hist: Histogram<u64>,
    /// Every reply, warm-up included (for CPU per request).
    replies: u64,
    last_done: Instant,
    error: Option<std::io::Error>,
}

/// Plan of one run, shared by its connections.
#[derive(Clone, Copy)]
struct Plan {
    /// Open loop: this connection's first send and its interval.
    schedule: Option<(Instant, Duration)>,
    /// Requests sent (intended) before this are warm-up, not recorded.
    record_from: Instant,
    /// No request is started at or after this.
    end: Instant,
}

/// One connection's run; latency in microseconds into its histogram. An
/// error ends the connection (and is reported), keeping what it measured.
async fn connection(mut s: TcpStream, plan: Plan) -> anyhow::Result<ConnResult> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let pacer = Pacer::new().context("timerfd_create")?;
    let mut buf = Vec::with_capacity(64);
    let mut last_done = Instant::now();
    let mut replies = 0;
    let mut next = plan.schedule.map(|(first, _)| first);
    let run: std::io::Result<()> = async {
        loop {
            let start = match next {
                Some(at) => {
                    pacer.until(at).await?;
                    at
                }
                None => Instant::now(),
            };
            if start >= plan.end {
                return Ok(());
            }
            s.write_all(GET).await?;
            read_reply(&mut s, &mut buf).await?;
            last_done = Instant::now();
            replies += 1;
            if start >= plan.record_from {
                let us = (last_done - start).as_micros() as u64;
                hist.saturating_record(us.max(1));
            }
            if let (Some(at), Some((_, every))) = (next, plan.schedule) {
                next = Some(at + every);
            }
        }
    }
    .await;
    Ok(ConnResult {
        hist,
        replies,
        last_done,
        error: run.err(),
    })
}

/// One run of `load` against `target`, for `seconds` after a warm-up; on
/// the calling thread (which must be in the application namespace).
fn measure(
    target: SocketAddr,
    load: Load,
    warmup: Duration,
    seconds: f64,
) -> anyhow::Result<Sample> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build tokio runtime")?;
    let window = Duration::from_secs_f64(seconds);
    rt.block_on(async {
        let mut conns = Vec::with_capacity(CONNECTIONS);
        // Kernel-chosen client ports: the same port may serve a VIP run and
        // then a direct one (the data path clears the old flow's reply
        // entry when a direct SYN reuses its 4-tuple).
        for _ in 0..CONNECTIONS {
            let s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target))
                .await
                .with_context(|| format!("connect to {target}: timed out"))?
                .with_context(|| format!("connect to {target}"))?;
            s.set_nodelay(true)?;
            conns.push(s);
        }
        let start = Instant::now() + Duration::from_millis(20);
        let record_from = start + warmup;
        let end = record_from + window;
        let cpu_before = busy_jiffies();
        let mut tasks = JoinSet::new();
        for (i, s) in conns.into_iter().enumerate() {
            let schedule = match load {
                Load::Rate(rate) => {
                    let every = Duration::from_secs_f64(CONNECTIONS as f64 / rate as f64);
                    // Spread the connections' phases over one interval.
                    Some((start + every.mul_f64(i as f64 / CONNECTIONS as f64), every))
                }
                Load::Saturation => None,
            };
            let plan = Plan {
                schedule,
                record_from,
                end,
            };
            tasks.spawn(connection(s, plan));
        }
        // Hard deadline: a generator that falls far behind, or a target
        // that stops answering, ends the run with an error.
        let deadline = end + Duration::from_secs(5);
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let (mut errors, mut first_error, mut replies, mut last_done) = (0, None, 0, end);
        while let Some(joined) = tokio::time::timeout_at(deadline.into(), tasks.join_next())
            .await
            .with_context(|| format!("{} through {target}: past the deadline", load.name()))?
        {
            let r = joined.context("load generator task")??;
            hist.add(&r.hist)?;
            if let Some(e) = r.error {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
            replies += r.replies;
            last_done = last_done.max(r.last_done);
        }
        let cpu_s = (busy_jiffies() - cpu_before) as f64 / 100.0;
        let requests = hist.len();
        if requests == 0 {
            bail!("no replies through {target}");
        }
        let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        Ok(Sample {
            // Requests started in the window, over the time to finish them
            // (an open loop that falls behind finishes late).
            rps: requests as f64 / (last_done - record_from).as_secs_f64(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            errors,
            first_error,
            cpu_us_per_req: cpu_s * 1e6 / replies as f64,
        })
    })
}

fn target(path: Path) -> anyhow::Result<SocketAddr> {
    let (host, port) = path.target();
    Ok(SocketAddr::new(
        host.parse().context("target address")?,
        port,
    ))
}

pub fn run(rounds: usize, quick: bool) -> anyhow::Result<Vec<Cell>> {
    let seconds = if quick { 0.6 } else { 2.0 };
    let warmup = Duration::from_millis(200);
    let loads = [Load::Rate(10_000), Load::Rate(30_000), Load::Saturation];
    let t = Topology::new(true);
    let d = DaemonProc::start(&t, REDIRECTOR_CONFIG);
    d.wait_active("cache", "east", Duration::from_secs(10));
    // HAProxy with default checks, as in `throughput` (tuned checks can
    // time out under full load and cut the connections).
    let haproxy = Haproxy::start(&t, System::HaproxyDefaults)?;
    std::thread::sleep(Duration::from_secs(1));
    let mut runs: Vec<(Path, Load, Sample)> = Vec::new();
    for _ in 0..rounds {
        for load in loads {
            for path in Path::ALL {
                let addr = target(path)?;
                let sample = t
                    .app
                    .run(move || measure(addr, load, warmup, seconds))
                    .with_context(|| format!("{} via {}", load.name(), path.name()))
                    .map_err(|e| {
                        match std::fs::read_to_string(haproxy.dir.join("haproxy.log")) {
                            Ok(log) if !log.trim().is_empty() => {
                                e.context(format!("haproxy log:\n{log}"))
                            }
                            _ => e,
                        }
                    })?;
                if let Some(e) = &sample.first_error {
                    println!(
                        "  {} via {}: {} connections broke off, the first with: {e}",
                        load.name(),
                        path.name(),
                        sample.errors
                    );
                }
                runs.push((path, load, sample));
            }
        }
    }
    let mut cells = Vec::new();
    for load in loads {
        for path in Path::ALL {
            let samples: Vec<Sample> = runs
                .iter()
                .filter(|r| r.0 == path && r.1 == load)
                .map(|r| r.2.clone())
                .collect();
            cells.push(Cell {
                path,
                load,
                seconds,
                rps: spread(&samples, |s| s.rps),
                p50_ms: spread(&samples, |s| s.p50_ms),
                p99_ms: spread(&samples, |s| s.p99_ms),
                p999_ms: spread(&samples, |s| s.p999_ms),
                cpu_us: spread(&samples, |s| s.cpu_us_per_req),
                samples,
            });
        }
    }
    drop(haproxy);
    drop(d);
    Ok(cells)
}

pub fn table(cells: &[Cell], quick: bool) -> String {
    let mut o = String::new();
    let first = cells.first();
    let _ = writeln!(
        o,
        "Our load generator (tokio, one thread; HDR histograms): {CONNECTIONS} connections from the application host to member east, GET with pipeline 1, {:.1} s per run after 0.2 s of warm-up, {} rounds with the three paths alternating. Open loop at fixed rates, latency from the intended send time (no coordinated omission); closed loop for saturation. Median (min..max) over rounds; CPU is whole-machine CPU per request; ratios vs direct and HAProxy are medians of per-round ratios. Targets: at the fixed rates VIP p99 <= 1.05x direct; at saturation VIP >= 0.97x direct throughput and >= 1.5x HAProxy (latency at saturation is queueing, so not judged).\n",
        first.map_or(0.0, |c| c.seconds),
        first.map_or(0, |c| c.samples.len()),
    );
    let _ = writeln!(
        o,
        "| load | path | req/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | broken connections | vs direct (req/s, p99) | verdict |"
    );
    let _ = writeln!(
        o,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for c in cells {
        let vs = |p: Path, f: fn(&Sample) -> f64| {
            cells
                .iter()
                .find(|d| d.path == p && d.load == c.load)
                .map_or(0.0, |d| paired_ratio(&c.samples, &d.samples, f))
        };
        let rate = vs(Path::Direct, |s| s.rps);
        let p99 = vs(Path::Direct, |s| s.p99_ms);
        let vs_h = vs(Path::Haproxy, |s| s.rps);
        let verdict = match (c.path, c.load) {
            (Path::Redirector, Load::Rate(_)) => {
                format!("{} (p99 <= 1.05x)", super::verdict(p99 <= 1.05, quick))
            }
            (Path::Redirector, Load::Saturation) => format!(
                "{} ({vs_h:.2}x HAProxy)",
                super::verdict(rate >= 0.97 && vs_h >= 1.5, quick)
            ),
            _ => "-".into(),
        };
        let errors: u32 = c.samples.iter().map(|s| s.errors).sum();
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} ({:.0}..{:.0}) | {:.3} | {:.3} ({:.3}..{:.3}) | {:.3} | {:.1} | {errors} | {rate:.2}, {p99:.2} | {verdict} |",
            c.load.name(),
            c.path.name(),
            c.rps.median,
            c.rps.min,
            c.rps.max,
            c.p50_ms.median,
            c.p99_ms.median,
            c.p99_ms.min,
            c.p99_ms.max,
            c.p999_ms.median,
            c.cpu_us.median,
        );
    }
    o
}

/// Latency bars for the three paths at each load: the bar is the median
/// p99, a tick marks the median p50 and a whisker reaches the median p99.9;
/// log scale, milliseconds.
pub fn svg(cells: &[Cell]) -> String {
    let (w, row, left) = (900.0, 22.0, 260.0);
    let h = 40.0 + row * cells.len() as f64 + 30.0;
    let (lo, hi) = (
        0.01_f64,
        cells.iter().map(|c| c.p999_ms.median).fold(1.0, f64::max),
    );
    let x = |ms: f64| left + (w - left - 60.0) * (ms.max(lo) / lo).log10() / (hi / lo).log10();
    let mut o = svg::open(
        w,
        h,
        &format!(
            "GET latency, {CONNECTIONS} connections: p99 bar, p50 tick, p99.9 whisker (median over rounds; log scale, ms)"
        ),
    );
    for (i, c) in cells.iter().enumerate() {
        svg::BarRow {
            y: 34.0 + row * i as f64,
            label: &format!("{} {}", c.load.name(), c.path.name()),
            color: c.path.color(),
            left,
            bar: x(c.p99_ms.median),
            tick: Some(x(c.p50_ms.median)),
            whisker: Some(x(c.p999_ms.median)),
            value: format!("{:.3}", c.p99_ms.median),
        }
        .write(&mut o);
    }
    svg::log_axis(&mut o, &[0.01, 0.1, 1.0, 10.0, 100.0], hi, x, h - 8.0);
    o += "</svg>\n";
    o
}

//! Failover time, from fault to the first successful reply from the next
//! member as a client sees it, for redirector (default check settings) and
//! for HAProxy co-located on the application host (TCP mode, `option
//! redis-check`, west as `backup`, `on-marked-down shutdown-sessions`), with
//! HAProxy's default check timings and with timings tuned to redirector's.
//! Each [`System`] carries its config (redirector's `[services.check]`
//! block, HAProxy's server check parameters), so the reactive-health part
//! runs the same trials with other settings.
//!
//! The client keeps one connection, sends GET every 5 ms with a 100 ms
//! limit, and reconnects after any error; every error is counted. Between
//! trials the fault is healed and the test waits until east answers again
//! (redirector runs with `failback = "manual"` and is released, so a trial
//! does not wait out a failback delay).

use std::{
    fmt::Write as _,
    net::SocketAddr,
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::bail;

use super::{summary, svg};
use redirector_tests::{
    daemon::DaemonProc,
    resp::Client,
    topology::{Family, Topology, start_redis, vip},
    unique,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
pub enum Fault {
    Kill,
    Sigstop,
    LinkDown,
    SilentDrop,
}

impl Fault {
    pub const ALL: [Fault; 4] = [
        Fault::Kill,
        Fault::Sigstop,
        Fault::LinkDown,
        Fault::SilentDrop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "member killed",
            Fault::Sigstop => "member hung (SIGSTOP)",
            Fault::LinkDown => "link down",
            Fault::SilentDrop => "silent drop (nft)",
        }
    }

    pub fn inject(self, t: &mut Topology) {
        match self {
            Fault::Kill => t.east.kill_redis(),
            Fault::Sigstop => t.east.signal_redis(libc::SIGSTOP),
            Fault::LinkDown => {
                t.east.ns.cmd("ip link set eth0 down");
            }
            Fault::SilentDrop => {
                t.east.ns.cmd("nft add table inet rdtbench");
                t.east.ns.cmd(
                    "nft add chain inet rdtbench input { type filter hook input priority 0 ; policy drop ; }",
                );
            }
        }
    }

    pub fn heal(self, t: &mut Topology) {
        match self {
            Fault::Kill => start_redis(&mut t.east),
            Fault::Sigstop => t.east.signal_redis(libc::SIGCONT),
            Fault::LinkDown => {
                // IPv4 flushes routes through a link that went down.
                t.east.ns.cmd("ip link set eth0 up");
                t.east.ns.cmd("ip route replace default via 198.18.1.1");
            }
            Fault::SilentDrop => {
                t.east.ns.cmd("nft delete table inet rdtbench");
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
pub enum System {
    /// redirector with the default config (on r12: reactive signals on,
    /// `observe = "layer4"`, `on_error = "fail-check"`).
    Redirector,
    /// redirector with scheduled checks only (`observe = "off"`).
    RedirectorChecksOnly,
    /// redirector failing over on the first signal (`on_error = "mark-down"`).
    RedirectorMarkDown,
    HaproxyDefaults,
    HaproxyTuned,
    /// Tuned checks plus `observe layer4 error-limit 1 on-error mark-down`.
    HaproxyTunedObserve,
}

/// The tuned HAProxy check timings, redirector's own.
const HAPROXY_TUNED: &str = "check inter 250ms fastinter 50ms fall 2 rise 3";

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Redirector => "redirector (defaults)",
            System::RedirectorChecksOnly => "redirector (observe off: checks only)",
            System::RedirectorMarkDown => "redirector (on_error mark-down)",
            System::HaproxyDefaults => "HAProxy (defaults: inter 2s fall 3 rise 2)",
            System::HaproxyTuned => "HAProxy (inter 250ms fastinter 50ms fall 2 rise 3)",
            System::HaproxyTunedObserve => {
                "HAProxy (tuned + observe layer4 error-limit 1 on-error mark-down)"
            }
        }
    }

    /// The name on a chart's row.
    pub fn short_name(self) -> &'static str {
        match self {
            System::Redirector => "redirector",
            System::RedirectorChecksOnly => "redirector, checks only",
            System::RedirectorMarkDown => "redirector, mark-down",
            System::HaproxyDefaults => "HAProxy defaults",
            System::HaproxyTuned => "HAProxy tuned",
            System::HaproxyTunedObserve => "HAProxy tuned+observe",
        }
    }

    /// The `[services.check]` block of this system's redirector config
    /// (empty: defaults); None for HAProxy.
    pub fn redirector_check(self) -> Option<&'static str> {
        match self {
            System::Redirector => Some(""),
            System::RedirectorChecksOnly => Some("[services.check]\nobserve = \"off\"\n"),
            System::RedirectorMarkDown => Some("[services.check]\non_error = \"mark-down\"\n"),
            _ => None,
        }
    }

    /// HAProxy's server check parameters and its `timeout check`; None for
    /// redirector.
    fn haproxy_check(self) -> Option<(String, Option<&'static str>)> {
        match self {
            System::HaproxyDefaults => Some(("check".into(), None)),
            System::HaproxyTuned => Some((HAPROXY_TUNED.into(), Some("250ms"))),
            System::HaproxyTunedObserve => Some((
                format!("{HAPROXY_TUNED} observe layer4 error-limit 1 on-error mark-down"),
                Some("250ms"),
            )),
            _ => None,
        }
    }
}

#[derive(serde::Serialize)]
pub struct Series {
    pub system: System,
    pub fault: Fault,
    pub trials_ms: Vec<f64>,
    pub errors: Vec<u32>,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    /// Client errors per failover.
    pub errors_median: f64,
    pub errors_p95: f64,
    pub errors_max: f64,
    /// redirector only, per trial: ms from the fault to the SERVICES map
    /// write of the failover (from `redirector history`); separates
    /// detection from the client's own recovery.
    pub map_write_ms: Vec<f64>,
    /// redirector only, per trial: what completed east's failure
    /// ("checks" or "signals").
    pub triggers: Vec<String>,
}

pub const REDIRECTOR_CONFIG: &str = r#"
[datapath]
interfaces = ["eth0"]
pin_path = "{pin_path}"
[admin]
socket = "{socket}"
metrics = "off"
[[services]]
name = "cache"
vip = "198.18.0.100:6379"
failback = "manual"
[[services.members]]
name = "east"
addr = "198.18.1.10:6379"
[[services.members]]
name = "west"
addr = "198.18.2.10:6379"
"#;

/// [`REDIRECTOR_CONFIG`] with `check` (a `[services.check]` block, or
/// empty) in its service.
pub fn redirector_config(check: &str) -> String {
    let at = "failback = \"manual\"\n";
    REDIRECTOR_CONFIG.replacen(at, &format!("{at}{check}"), 1)
}

pub const HAPROXY_PORT: u16 = 7000;

/// HAProxy's config for `system`: east first, west as backup, both with
/// the system's check parameters.
pub fn haproxy_config(system: System) -> String {
    let (params, timeout) = system
        .haproxy_check()
        .unwrap_or_else(|| panic!("{} is not HAProxy", system.name()));
    let check_timeout = timeout.map_or(String::new(), |t| format!("    timeout check {t}\n"));
    format!(
        "global\n    maxconn 4096\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 60s\n    timeout server 60s\n{check_timeout}listen redis\n    bind 127.0.0.1:{HAPROXY_PORT}\n    option redis-check\n    default-server on-marked-down shutdown-sessions\n    server east 198.18.1.10:6379 {params}\n    server west 198.18.2.10:6379 {params} backup\n"
    )
}

/// haproxy in the app namespace, killed by PID on drop.
pub struct Haproxy {
    child: Child,
    pub dir: std::path::PathBuf,
}

impl Haproxy {
    /// Starts HAProxy as `system` (one of the HAProxy systems).
    pub fn start(t: &Topology, system: System) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(unique("haproxy"));
        std::fs::create_dir_all(&dir)?;
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(system))?;
        let log = std::fs::File::create(dir.join("haproxy.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &t.app.name, "haproxy", "-db", "-f"])
            .arg(&cfg)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Self { child, dir })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client with one kept connection that reconnects after errors.
struct Prober<'a> {
    t: &'a Topology,
    target: SocketAddr,
    conn: Option<Client>,
}

impl Prober<'_> {
    fn get(&mut self) -> Option<String> {
        if self.conn.is_none() {
            let target = self.target;
            self.conn = self.t.app.run(move || {
                let s = std::net::TcpStream::connect_timeout(&target, Duration::from_millis(100))
                    .ok()?;
                let mut c = Client::new(s);
                c.set_timeout(Duration::from_millis(100));
                Some(c)
            });
        }
        let r = self.conn.as_mut()?.get("region").ok().flatten();
        if r.is_none() {
            self.conn = None;
        }
        r
    }

    /// Polls (bounded) until `want` answers; returns elapsed and errors.
    fn until(&mut self, want: &str, within: Duration) -> anyhow::Result<(Duration, u32)> {
        let start = Instant::now();
        let mut errors = 0;
        loop {
            match self.get() {
                Some(r) if r == want => return Ok((start.elapsed(), errors)),
                // Still the old member: ask again on a new connection (a
                // kept session stays where it was opened).
                Some(_) => self.conn = None,
                None => errors += 1,
            }
            if start.elapsed() > within {
                bail!(
                    "{want} did not answer through {} within {within:?}",
                    self.target
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One system under test on a topology: redirector's daemon or HAProxy,
/// and the address its clients use. Dropping it stops the process.
struct UnderTest {
    daemon: Option<DaemonProc>,
    haproxy: Option<Haproxy>,
    target: SocketAddr,
}

impl UnderTest {
    /// Starts `system` with its config and waits (bounded) until east
    /// answers through it.
    fn start(t: &Topology, system: System) -> anyhow::Result<Self> {
        let me = match system.redirector_check() {
            Some(check) => {
                let d = DaemonProc::start(t, &redirector_config(check));
                d.wait_active("cache", "east", Duration::from_secs(10));
                Self {
                    daemon: Some(d),
                    haproxy: None,
                    target: vip(Family::V4),
                }
            }
            None => Self {
                daemon: None,
                haproxy: Some(Haproxy::start(t, system)?),
                target: SocketAddr::from(([127, 0, 0, 1], HAPROXY_PORT)),
            },
        };
        me.prober(t)
            .until("east", Duration::from_secs(15))
            .map_err(|e| me.explain(e))?;
        Ok(me)
    }

    fn prober<'a>(&self, t: &'a Topology) -> Prober<'a> {
        Prober {
            t,
            target: self.target,
            conn: None,
        }
    }

    /// Adds haproxy's own log to an error, if haproxy was involved.
    fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        match &self.haproxy {
            Some(h) => {
                e.context(std::fs::read_to_string(h.dir.join("haproxy.log")).unwrap_or_default())
            }
            None => e,
        }
    }

    /// After a healed fault: waits (bounded) until redirector sees east Up
    /// again, then returns to it (`failback = "manual"`). HAProxy fails
    /// back by itself; the next trial waits for east either way.
    fn return_to_east(&self) -> anyhow::Result<()> {
        let Some(d) = &self.daemon else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while d.status().services[0].members[0].health != redirector::decide::Health::Up {
            if Instant::now() > deadline {
                bail!("east did not come back up");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = d.cli(&["release", "cache"]);
        anyhow::ensure!(out.status.success(), "release failed");
        Ok(())
    }

    /// redirector's failover to west after `fault_unix_ms`, from its
    /// history: ms from the fault to the SERVICES write, and what
    /// completed east's failure ("checks" or "signals").
    fn map_write(&self, fault_unix_ms: u64) -> Option<(f64, String)> {
        // Earlier trials' failovers are seconds older; the slack covers
        // rounding to whole ms on both sides.
        let flip = self
            .daemon
            .as_ref()?
            .history()
            .into_iter()
            .filter(|r| r.to == "west" && r.map_written_ms + 5 >= fault_unix_ms)
            .min_by_key(|r| r.map_written_ms)?;
        let trigger = match (&flip.trigger, flip.signals.is_empty()) {
            (Some(t), _) => t.clone(),
            (None, true) => "checks".into(),
            (None, false) => "checks (with signals)".into(),
        };
        Some((flip.map_written_ms as f64 - fault_unix_ms as f64, trigger))
    }
}

/// What one failover trial measured.
struct Trial {
    took: Duration,
    errors: u32,
    /// redirector only: see [`UnderTest::map_write`].
    map_write: Option<(f64, String)>,
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One fault with a kept client connection on east, measured until west
/// answers; then healed and back on east.
fn trial(t: &mut Topology, sut: &UnderTest, fault: Fault) -> anyhow::Result<Trial> {
    sut.prober(t)
        .until("east", Duration::from_secs(15))
        .map_err(|e| sut.explain(e))?;
    // A live kept connection on east when the fault hits.
    let conn = {
        let mut p = sut.prober(t);
        p.get();
        p.conn.take()
    };
    let fault_unix_ms = unix_ms_now();
    fault.inject(t);
    let mut p = Prober {
        conn,
        ..sut.prober(t)
    };
    let (took, errors) = p
        .until("west", Duration::from_secs(30))
        .map_err(|e| sut.explain(e))?;
    drop(p);
    let map_write = sut.map_write(fault_unix_ms);
    fault.heal(t);
    sut.return_to_east()?;
    Ok(Trial {
        took,
        errors,
        map_write,
    })
}

/// `trials` failovers of `system` through `fault` on a fresh topology.
pub fn series(system: System, fault: Fault, trials: usize) -> anyhow::Result<Series> {
    let mut t = Topology::new(true);
    let sut = UnderTest::start(&t, system)?;
    let mut runs = Vec::new();
    for _ in 0..trials {
        runs.push(trial(&mut t, &sut, fault)?);
    }
    drop(sut);
    let times: Vec<f64> = runs.iter().map(|r| r.took.as_secs_f64() * 1e3).collect();
    let errors: Vec<u32> = runs.iter().map(|r| r.errors).collect();
    let sum = summary(&mut times.clone());
    let errs = summary(&mut errors.iter().map(|&e| f64::from(e)).collect::<Vec<_>>());
    let (map_write_ms, triggers) = runs.into_iter().filter_map(|r| r.map_write).unzip();
    Ok(Series {
        system,
        fault,
        median_ms: sum.median,
        p95_ms: sum.p95,
        max_ms: sum.max,
        trials_ms: times,
        errors,
        errors_median: errs.median,
        errors_p95: errs.p95,
        errors_max: errs.max,
        map_write_ms,
        triggers,
    })
}

pub fn run_all(trials: usize, quick: bool) -> anyhow::Result<Vec<Series>> {
    let mut out = Vec::new();
    for fault in Fault::ALL {
        for system in [
            System::Redirector,
            System::HaproxyTuned,
            System::HaproxyDefaults,
        ] {
            // HAProxy's defaults take ~10 s a trial: fewer trials keep the
            // whole run near ten minutes.
            let n = if system == System::HaproxyDefaults {
                if quick { 1 } else { 3 }
            } else {
                trials
            };
            println!("  {} / {}: {n} trials", system.name(), fault.name());
            out.push(series(system, fault, n)?);
        }
    }
    Ok(out)
}

pub fn table(all: &[Series], quick: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Fault to the first successful reply from the next member, as a client with one kept connection (GET every 5 ms, 100 ms limit, reconnect on error) sees it. Targets: killed member p95 <= 300 ms, hung or silent drop p95 <= 700 ms, and at least 5x faster than HAProxy with defaults and 1.5x faster than tuned HAProxy.\n"
    );
    let _ = writeln!(
        o,
        "| fault | system | trials | median ms | p95 ms | max ms | client errors (median) | verdict |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    for s in all {
        let mut errs = s.errors.clone();
        errs.sort();
        let verdict = if s.system != System::Redirector {
            "-".to_string()
        } else if quick {
            "not judged (--quick)".into()
        } else {
            let limit = if s.fault == Fault::Kill { 300.0 } else { 700.0 };
            let by = |sys| {
                all.iter()
                    .find(|x| x.system == sys && x.fault == s.fault)
                    .map_or(0.0, |x| x.median_ms / s.median_ms.max(0.001))
            };
            let (d, t) = (by(System::HaproxyDefaults), by(System::HaproxyTuned));
            let ok = s.p95_ms <= limit && d >= 5.0 && t >= 1.5;
            format!(
                "{} (p95 <= {limit:.0}; {d:.1}x vs defaults, {t:.1}x vs tuned)",
                if ok { "met" } else { "MISSED" }
            )
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} |",
            s.fault.name(),
            s.system.name(),
            s.trials_ms.len(),
            s.median_ms,
            s.p95_ms,
            s.max_ms,
            errs.get(errs.len() / 2).copied().unwrap_or(0),
            verdict
        );
    }
    o
}

/// Grouped horizontal bars (median, with a p95 whisker), log scale.
pub fn svg(all: &[Series]) -> String {
    let (w, row, left) = (900.0, 22.0, 330.0);
    let h = 40.0 + row * all.len() as f64 + 30.0;
    let max = all.iter().map(|s| s.p95_ms).fold(10.0_f64, f64::max);
    let x = |ms: f64| left + (w - left - 20.0) * (ms.max(1.0).log10() / max.log10());
    let mut o = svg::open(
        w,
        h,
        "Failover time, fault to first reply from the next member (median bar, p95 whisker; log scale, ms)",
    );
    for (i, s) in all.iter().enumerate() {
        let color = match s.system {
            System::Redirector => "#2a7",
            System::RedirectorChecksOnly => "#8cb",
            System::RedirectorMarkDown => "#175",
            System::HaproxyTuned => "#e93",
            System::HaproxyTunedObserve => "#b62",
            System::HaproxyDefaults => "#c44",
        };
        let label = format!("{} / {}", s.fault.name(), s.system.short_name());
        svg::BarRow {
            y: 34.0 + row * i as f64,
            label: &label,
            color,
            left,
            bar: x(s.median_ms),
            tick: None,
            whisker: Some(x(s.p95_ms)),
            value: format!("{:.0}", s.median_ms),
        }
        .write(&mut o);
    }
    svg::log_axis(
        &mut o,
        &[1.0, 10.0, 100.0, 1000.0, 10000.0],
        max,
        x,
        h - 8.0,
    );
    o += "</svg>\n";
    o
}

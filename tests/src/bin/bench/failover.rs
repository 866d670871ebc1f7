//! Failover time, from fault to the first successful reply from the next
//! member as a client sees it, for redirector (default check settings) and
//! for HAProxy co-located on the application host (TCP mode, `option
//! redis-check`, west as `backup`, `on-marked-down shutdown-sessions`), with
//! HAProxy's default check timings and with timings tuned to redirector's.
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
    const ALL: [Fault; 4] = [
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
    Redirector,
    HaproxyDefaults,
    HaproxyTuned,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Redirector => "redirector (defaults)",
            System::HaproxyDefaults => "HAProxy (defaults: inter 2s fall 3 rise 2)",
            System::HaproxyTuned => "HAProxy (inter 250ms fastinter 50ms fall 2 rise 3)",
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

pub const HAPROXY_PORT: u16 = 7000;

fn haproxy_config(tuned: bool) -> String {
    let params = if tuned {
        "check inter 250ms fastinter 50ms fall 2 rise 3"
    } else {
        "check"
    };
    let check_timeout = if tuned {
        "    timeout check 250ms\n"
    } else {
        ""
    };
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
    pub fn start(t: &Topology, tuned: bool) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(unique("haproxy"));
        std::fs::create_dir_all(&dir)?;
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(tuned))?;
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

/// Adds haproxy's own log to an error, if haproxy was involved.
fn explain(e: anyhow::Error, h: &Option<Haproxy>) -> anyhow::Error {
    match h {
        Some(h) => {
            e.context(std::fs::read_to_string(h.dir.join("haproxy.log")).unwrap_or_default())
        }
        None => e,
    }
}

fn series(system: System, fault: Fault, trials: usize) -> anyhow::Result<Series> {
    let mut t = Topology::new(true);
    let mut daemon = None;
    let mut haproxy = None;
    let target = match system {
        System::Redirector => {
            let d = DaemonProc::start(&t, REDIRECTOR_CONFIG);
            d.wait_active("cache", "east", Duration::from_secs(10));
            daemon = Some(d);
            vip(Family::V4)
        }
        System::HaproxyDefaults | System::HaproxyTuned => {
            haproxy = Some(Haproxy::start(&t, system == System::HaproxyTuned)?);
            SocketAddr::from(([127, 0, 0, 1], HAPROXY_PORT))
        }
    };
    let mut p = Prober {
        t: &t,
        target,
        conn: None,
    };
    p.until("east", Duration::from_secs(15))?;
    drop(p);
    let (mut times, mut errors) = (Vec::new(), Vec::new());
    for _ in 0..trials {
        let mut p = Prober {
            t: &t,
            target,
            conn: None,
        };
        p.until("east", Duration::from_secs(15))
            .map_err(|e| explain(e, &haproxy))?;
        drop(p);
        // A live kept connection on east when the fault hits.
        let conn = {
            let mut p = Prober {
                t: &t,
                target,
                conn: None,
            };
            p.get();
            p.conn.take()
        };
        fault.inject(&mut t);
        let mut p2 = Prober {
            t: &t,
            target,
            conn,
        };
        let (took, errs) = p2
            .until("west", Duration::from_secs(30))
            .map_err(|e| explain(e, &haproxy))?;
        drop(p2);
        times.push(took.as_secs_f64() * 1000.0);
        errors.push(errs);
        fault.heal(&mut t);
        if let Some(d) = &daemon {
            // Wait until east is Up again, then return to it.
            let deadline = Instant::now() + Duration::from_secs(15);
            while d.status().services[0].members[0].health != redirector::decide::Health::Up {
                if Instant::now() > deadline {
                    bail!("east did not come back up");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let out = d.cli(&["release", "cache"]);
            anyhow::ensure!(out.status.success(), "release failed");
        }
    }
    drop(haproxy);
    drop(daemon);
    let sum = summary(&mut times.clone());
    Ok(Series {
        system,
        fault,
        median_ms: sum.median,
        p95_ms: sum.p95,
        max_ms: sum.max,
        trials_ms: times,
        errors,
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
            System::HaproxyTuned => "#e93",
            System::HaproxyDefaults => "#c44",
        };
        let label = format!(
            "{} / {}",
            s.fault.name(),
            s.system.name().split(" (").next().unwrap_or("")
        );
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

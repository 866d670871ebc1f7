//! What one application sees through a failover, request by request:
//! redirector (default settings) and HAProxy (tuned checks) run side by side
//! on one topology, each with its own client, and one fault hits member
//! east under both at the same moment.
//!
//! Each client sends GET every 2 ms on one kept connection, with a 100 ms
//! limit on connecting and on the reply, and reconnects after any error;
//! send slots that pass while a request is blocked are skipped. Every
//! request's send time (relative to the fault), latency and outcome (reply
//! from east, from west, or error) is kept and drawn as a timeline.

use std::{
    fmt::Write as _,
    io,
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use redirector_tests::{
    daemon::DaemonProc,
    netns,
    resp::Client,
    topology::{Family, Topology, vip},
};

use super::{
    failover::{Fault, HAPROXY_PORT, Haproxy, REDIRECTOR_CONFIG, System},
    svg,
};

const EVERY: Duration = Duration::from_millis(2);
const TIMEOUT: Duration = Duration::from_millis(100);
const BEFORE: Duration = Duration::from_millis(300);
const AFTER: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
pub enum Reply {
    East,
    West,
    Error,
}

#[derive(serde::Serialize)]
pub struct Point {
    /// Send time, ms after the fault (negative: before it).
    pub t_ms: f64,
    pub latency_ms: f64,
    pub reply: Reply,
}

#[derive(serde::Serialize)]
pub struct Trace {
    pub system: System,
    pub points: Vec<Point>,
    /// Errors after the fault.
    pub errors: usize,
    /// When the first reply from west arrived, ms after the fault.
    pub first_west_ms: Option<f64>,
    /// Longest time between two successful replies, ms.
    pub longest_gap_ms: f64,
}

#[derive(serde::Serialize)]
pub struct Timeline {
    pub fault: Fault,
    pub every_ms: f64,
    pub timeout_ms: f64,
    pub traces: Vec<Trace>,
}

/// One request on the kept connection, connecting first if there is none;
/// drops the connection after an error.
fn request(conn: &mut Option<Client>, target: SocketAddr) -> Reply {
    let result = (|| -> io::Result<Option<String>> {
        let c = match conn {
            Some(c) => c,
            None => {
                let mut c = Client::new(TcpStream::connect_timeout(&target, TIMEOUT)?);
                c.set_timeout(TIMEOUT);
                conn.insert(c)
            }
        };
        c.get("region")
    })();
    match result.as_ref().map(|r| r.as_deref()) {
        Ok(Some("east")) => Reply::East,
        Ok(Some("west")) => Reply::West,
        _ => {
            *conn = None;
            Reply::Error
        }
    }
}

/// The client loop, on a thread of its own in the application namespace.
fn client(
    ns: String,
    target: SocketAddr,
    start: Instant,
    end: Instant,
) -> Vec<(Instant, Duration, Reply)> {
    netns::enter(&format!("/run/netns/{ns}"));
    let mut conn = None;
    let mut out = Vec::new();
    let mut next = start;
    while next < end {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let sent = Instant::now();
        let reply = request(&mut conn, target);
        out.push((sent, sent.elapsed(), reply));
        while next <= Instant::now() {
            next += EVERY;
        }
    }
    out
}

/// Waits (bounded) until `target` answers from east.
fn wait_for_east(t: &Topology, target: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while t.app.run(move || request(&mut None, target)) != Reply::East {
        if Instant::now() > deadline {
            bail!("east did not answer through {target} within 15 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn ms_after(at: Instant, t0: Instant) -> f64 {
    match at.checked_duration_since(t0) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(t0 - at).as_secs_f64() * 1e3,
    }
}

fn trace(system: System, raw: Vec<(Instant, Duration, Reply)>, t0: Instant) -> Trace {
    let points: Vec<Point> = raw
        .into_iter()
        .map(|(sent, took, reply)| Point {
            t_ms: ms_after(sent, t0),
            latency_ms: took.as_secs_f64() * 1e3,
            reply,
        })
        .collect();
    let done = |p: &Point| p.t_ms + p.latency_ms;
    let good: Vec<f64> = points
        .iter()
        .filter(|p| p.reply != Reply::Error)
        .map(done)
        .collect();
    Trace {
        system,
        errors: points
            .iter()
            .filter(|p| p.reply == Reply::Error && p.t_ms >= 0.0)
            .count(),
        first_west_ms: points.iter().find(|p| p.reply == Reply::West).map(done),
        longest_gap_ms: good.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max),
        points,
    }
}

fn one(fault: Fault) -> anyhow::Result<Timeline> {
    let mut t = Topology::new(true);
    let daemon = DaemonProc::start(&t, REDIRECTOR_CONFIG);
    daemon.wait_active("cache", "east", Duration::from_secs(10));
    let haproxy = Haproxy::start(&t, System::HaproxyTuned)?;
    let systems = [
        (System::Redirector, vip(Family::V4)),
        (
            System::HaproxyTuned,
            SocketAddr::from(([127, 0, 0, 1], HAPROXY_PORT)),
        ),
    ];
    for (_, target) in systems {
        wait_for_east(&t, target)?;
    }
    let start = Instant::now() + Duration::from_millis(50);
    let fault_at = start + BEFORE;
    let end = fault_at + AFTER;
    let clients: Vec<_> = systems
        .iter()
        .map(|&(system, target)| {
            let ns = t.app.name.clone();
            (
                system,
                std::thread::spawn(move || client(ns, target, start, end)),
            )
        })
        .collect();
    if let Some(wait) = fault_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let t0 = Instant::now();
    fault.inject(&mut t);
    let mut traces = Vec::new();
    for (system, handle) in clients {
        let raw = handle
            .join()
            .map_err(|_| anyhow!("the {} client thread panicked", system.name()))?;
        traces.push(trace(system, raw, t0));
    }
    drop(haproxy);
    drop(daemon);
    Ok(Timeline {
        fault,
        every_ms: EVERY.as_secs_f64() * 1e3,
        timeout_ms: TIMEOUT.as_secs_f64() * 1e3,
        traces,
    })
}

/// A killed member; a hung one too in a full run.
pub fn run(quick: bool) -> anyhow::Result<Vec<Timeline>> {
    let faults: &[Fault] = if quick {
        &[Fault::Kill]
    } else {
        &[Fault::Kill, Fault::Sigstop]
    };
    faults
        .iter()
        .map(|&f| one(f).with_context(|| format!("timeline through {}", f.name())))
        .collect()
}

pub fn table(all: &[Timeline]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "One fault hits member east under redirector (defaults) and HAProxy (tuned checks) at the same moment; each has its own client on the application host sending GET every {:.0} ms on one kept connection, {:.0} ms limit on connecting and on the reply, reconnecting after any error. One trial per fault, so which system recovers first depends on where each health checker was in its 250 ms interval when the fault hit (both check every 250 ms, then every 50 ms until fall 2); the failover-time table above has the statistics. The timeline shows every request: how each system fails, not how fast on average.\n",
        all.first().map_or(0.0, |t| t.every_ms),
        all.first().map_or(0.0, |t| t.timeout_ms),
    );
    let _ = writeln!(
        o,
        "| fault | system | first reply from west (ms after fault) | longest time without a reply (ms) | errors after the fault |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- |");
    for tl in all {
        for tr in &tl.traces {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.0} | {} |",
                tl.fault.name(),
                tr.system.name(),
                tr.first_west_ms
                    .map_or("none".into(), |v| format!("{v:.0}")),
                tr.longest_gap_ms,
                tr.errors
            );
        }
    }
    o
}

/// One panel per fault and system, on a shared time axis (ms after the
/// fault); latency on a log scale; dots coloured by outcome.
pub fn svg(all: &[Timeline]) -> String {
    let (w, left, right, panel_h, gap, top) = (900.0, 60.0, 20.0, 130.0, 44.0, 50.0);
    let panels: Vec<(&Timeline, &Trace)> = all
        .iter()
        .flat_map(|tl| tl.traces.iter().map(move |tr| (tl, tr)))
        .collect();
    let h = top + (panel_h + gap) * panels.len() as f64;
    let (t_min, t_max) = (-(BEFORE.as_secs_f64() * 1e3), AFTER.as_secs_f64() * 1e3);
    let x = |ms: f64| left + (w - left - right) * (ms - t_min) / (t_max - t_min);
    let (l_min, l_max) = (0.01_f64, 300.0_f64);
    let mut o = svg::open(
        w,
        h,
        "Every request through a failover: latency (log scale) by send time, ms after the fault",
    );
    o += "<text x=\"10\" y=\"38\"><tspan fill=\"#888\">● reply from east</tspan>   <tspan fill=\"#2a7\">● reply from west</tspan>   <tspan fill=\"#c22\">× error (drawn at the time it took)</tspan>   dashed: fault, first reply from west</text>\n";
    for (i, (tl, tr)) in panels.iter().enumerate() {
        let y0 = top + (panel_h + gap) * i as f64 + 20.0;
        let y = |ms: f64| {
            let f =
                (ms.clamp(l_min, l_max).log10() - l_min.log10()) / (l_max.log10() - l_min.log10());
            y0 + panel_h - panel_h * f
        };
        let _ = writeln!(
            o,
            "<text x=\"10\" y=\"{:.0}\" font-weight=\"bold\">{} / {}: first reply from west {}, {} errors</text>\n<rect x=\"{left}\" y=\"{y0:.0}\" width=\"{:.0}\" height=\"{panel_h}\" fill=\"none\" stroke=\"#ccc\"/>",
            y0 - 6.0,
            tl.fault.name(),
            tr.system.name(),
            tr.first_west_ms
                .map_or("never".into(), |v| format!("at {v:.0} ms")),
            tr.errors,
            w - left - right
        );
        for ms in [0.01, 0.1, 1.0, 10.0, 100.0] {
            let _ = writeln!(
                o,
                "<line x1=\"{left}\" x2=\"{:.0}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{:.0}\" y=\"{:.1}\" fill=\"#666\" text-anchor=\"end\">{ms} ms</text>",
                w - right,
                y(ms),
                y(ms),
                left - 4.0,
                y(ms) + 4.0
            );
        }
        let mut t = (t_min / 250.0).ceil() * 250.0;
        while t <= t_max {
            let _ = writeln!(
                o,
                "<text x=\"{:.1}\" y=\"{:.0}\" fill=\"#666\" text-anchor=\"middle\">{t:.0}</text>",
                x(t),
                y0 + panel_h + 14.0
            );
            t += 250.0;
        }
        let mut marks = vec![(0.0, "#000")];
        if let Some(v) = tr.first_west_ms {
            marks.push((v, "#2a7"));
        }
        for (ms, color) in marks {
            let _ = writeln!(
                o,
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y0:.0}\" y2=\"{:.0}\" stroke=\"{color}\" stroke-dasharray=\"4 3\"/>",
                x(ms),
                x(ms),
                y0 + panel_h
            );
        }
        // One path per outcome keeps the file small: a dot is a zero-length
        // segment with a round cap, an error a small cross.
        for (reply, color) in [
            (Reply::East, "#888"),
            (Reply::West, "#2a7"),
            (Reply::Error, "#c22"),
        ] {
            let mut d = String::new();
            for p in tr.points.iter().filter(|p| p.reply == reply) {
                let (px, py) = (x(p.t_ms), y(p.latency_ms));
                if reply == Reply::Error {
                    let _ = write!(d, "M{:.1} {:.1}l5 5m0 -5l-5 5", px - 2.5, py - 2.5);
                } else {
                    let _ = write!(d, "M{px:.1} {py:.1}h0");
                }
            }
            let width = if reply == Reply::Error { 1.2 } else { 3.0 };
            let _ = writeln!(
                o,
                "<path d=\"{d}\" stroke=\"{color}\" stroke-width=\"{width}\" stroke-linecap=\"round\" fill=\"none\"/>"
            );
        }
    }
    o += "</svg>\n";
    o
}

//! The fleet part's report: its tables with the targets judged,
//! and its chart (per-host timelines of one failover and one failback,
//! the three groups side by side).

use std::fmt::Write as _;

use super::{
    fleet::{BEFORE, Fleet, HOSTS, Kind, Mode, PARTITION_HOLD, QUORUM, Switch, Trace},
    fleet_writer::{EVERY, Reply, TIMEOUT},
    reactive::verdict,
    summary, svg,
};

/// The heading of the report's section, also where `BENCH_ONLY=fleet`
/// splices it into an existing report.
pub const HEADING: &str = "## Fleet mode (issue 13)";

/// Every repetition's Switch of `mode` for `kind`.
fn switches(f: &Fleet, kind: Kind, mode: Mode) -> Vec<&Switch> {
    let g = Mode::ALL.iter().position(|&m| m == mode).unwrap_or(0);
    f.reps
        .iter()
        .map(|r| match kind {
            Kind::Failover => &r.failover[g],
            Kind::Failback => &r.failback[g],
            Kind::Partition => &r.partition[g],
        })
        .collect()
}

fn values(s: &[&Switch], f: impl Fn(&Switch) -> Option<f64>) -> Vec<f64> {
    s.iter().filter_map(|s| f(s)).collect()
}

/// "p50 / p95" (and " / max") of `v`, or "-".
fn stat(v: &[f64], with_max: bool) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let s = summary(&mut v.to_vec());
    if with_max {
        format!("{:.0} / {:.0} / {:.0}", s.median, s.p95, s.max)
    } else {
        format!("{:.0} / {:.0}", s.median, s.p95)
    }
}

fn p95(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| summary(&mut v.to_vec()).p95)
}

/// Last map write minus the quorum-th host's own down decision.
fn over_detection(s: &Switch) -> Option<f64> {
    s.last_ms.zip(s.quorum_down_ms).map(|(l, d)| l - d)
}

fn moved(s: &[&Switch]) -> String {
    let all = s.iter().filter(|s| s.moved == HOSTS).count();
    format!("{all} of {}", s.len())
}

fn overlap_writes(s: &Switch) -> Option<f64> {
    s.overlap.map(|o| o.writes as f64)
}

fn overlap_window(s: &Switch) -> Option<f64> {
    s.overlap.map(|o| o.window_ms)
}

fn errors(s: &Switch) -> Option<f64> {
    Some(s.errors as f64)
}

pub fn table(f: &Fleet) -> String {
    let mut o = String::new();
    let n = f.reps.len();
    let _ = writeln!(
        o,
        "Command: `BENCH_ONLY=fleet cargo xtask bench{}` (this part alone, spliced into the report; it also runs in the full `cargo xtask bench`). {n} repetitions; setup {:.0} s, whole part {:.0} s.\n",
        if f.quick { " --quick" } else { "" },
        f.setup_s,
        f.took_s
    );
    let _ = writeln!(
        o,
        "**Method.** One topology (`tests/src/fleet_topology.rs`): a real 3-member etcd cluster, members east and west (real redis-server), and three groups of {HOSTS} application hosts, each host its own network namespace with its own daemon and its own writer. The groups run side by side, so one fault hits all three at the same instant: **fleet** (`fleet = true`, `barrier = \"none\"`, drain_timeout 1 s), **independent** (no `[fleet]`: each daemon decides alone, today's behaviour) and **fleet + barrier** (`barrier = \"ack\"`, `drain_timeout = \"0s\"`, a fleet of its own under another etcd prefix). Every daemon: the e2e tests' \"cache\" service (redis-ping every 250 ms, timeout 200 ms, fall 2, rise 3, failback_delay 2 s); fleets: lease_ttl 2 s, etcd timeout 500 ms, quorum majority ({QUORUM} of {HOSTS}). Each repetition: east's redis-server SIGKILLed (fault instant: just before the kill), started again (fault instant: once it answers), then the first host of each group cut from east on the router (both ways) for {:.0} s.\n",
        PARTITION_HOLD.as_secs_f64()
    );
    let _ = writeln!(
        o,
        "**Metrics.** Map writes are each host's `history` (`map_written_ms`), fault instants the same wall clock (all namespaces share it). *Last map write*: fault to the last host's SERVICES write of the move (for the barrier group: the serving write after the barrier). *Skew*: last minus first host's write of the same move. *Local detection*: the {QUORUM}rd host's own `marked_down_ms` (the quorum-th host to decide east down locally: the earliest moment a quorum of hosts saw it down); *over detection* is the last map write minus that, per repetition. *Writers*: every host sends, every {:.0} ms on one kept connection ({:.0} ms limit, reconnect after any error, from {:.0} ms before the fault), `EVAL` of `RPUSH w:<trial>:<host> <send time µs>` + `GET region` through the VIP. *Overlap* is read afterwards from what each member kept: per host, consecutive writes (by send time) kept by the same member form a run; an overlapping write is one kept by member A whose send time falls inside another host's run on member B; the overlap window is the total time during which runs of two hosts on different members intersect. A killed member keeps nothing, so failovers have no overlap figure (nothing can be written to a dead member). *Client errors*: failed writes of the group's {HOSTS} writers from the fault on. All figures are p50 / p95 (/ max) over the repetitions.\n",
        EVERY.as_secs_f64() * 1e3,
        TIMEOUT.as_secs_f64() * 1e3,
        BEFORE.as_secs_f64() * 1e3,
    );

    let _ = writeln!(o, "**{}**\n", Kind::Failover.name());
    let _ = writeln!(
        o,
        "| mode | all {HOSTS} hosts moved | fault to last map write, ms | skew, ms | local detection ({QUORUM}rd host marked down), ms | last map write over detection, ms | client errors |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- | --- |");
    for m in Mode::ALL {
        let s = switches(f, Kind::Failover, m);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} |",
            m.name(),
            moved(&s),
            stat(&values(&s, |s| s.last_ms), false),
            stat(&values(&s, |s| s.skew_ms), true),
            stat(&values(&s, |s| s.quorum_down_ms), false),
            stat(&values(&s, over_detection), true),
            stat(&values(&s, errors), false),
        );
    }
    let _ = writeln!(o, "\n**{}**\n", Kind::Failback.name());
    let _ = writeln!(
        o,
        "| mode | all {HOSTS} hosts moved | fault to last map write, ms | skew, ms | fault to first barrier write, ms | overlap, writes | overlap window, ms | client errors |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    for m in Mode::ALL {
        let s = switches(f, Kind::Failback, m);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            m.name(),
            moved(&s),
            stat(&values(&s, |s| s.last_ms), false),
            stat(&values(&s, |s| s.skew_ms), true),
            stat(&values(&s, |s| s.barrier_ms), false),
            stat(&values(&s, overlap_writes), true),
            stat(&values(&s, overlap_window), true),
            stat(&values(&s, errors), false),
        );
    }
    let _ = writeln!(o, "\n**{}**\n", Kind::Partition.name());
    let _ = writeln!(
        o,
        "| mode | flips, all repetitions | repetitions with a flip | overlap, writes | overlap window, ms | client errors |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- |");
    for m in Mode::ALL {
        let s = switches(f, Kind::Partition, m);
        let _ = writeln!(
            o,
            "| {} | {} | {} of {n} | {} | {} | {} |",
            m.name(),
            s.iter().map(|s| s.flips).sum::<usize>(),
            s.iter().filter(|s| s.flips > 0).count(),
            stat(&values(&s, overlap_writes), true),
            stat(&values(&s, overlap_window), true),
            stat(&values(&s, errors), false),
        );
    }
    let _ = writeln!(
        o,
        "\n**Reading.** Failover: the killed member breaks every kept connection at once, so each host decides within milliseconds on its own; a fleet adds the etcd round trips (the {QUORUM}rd host's view, the compare-and-swap, the watch) on top of that. Failback is decided by the checks (rise 3 at 250 ms, then failback_delay 2 s): independent hosts move when their own schedules say so, and their skew depends on the phase of those schedules, fixed here by when each daemon started (one after another); in general it can reach about one check interval. The failback overlap is counted with kept connections: after a host's map write its connections to west drain for drain_timeout (1 s outside the barrier group) and are then reset, so overlap follows the skew of those resets and is 0 writes whenever that skew is shorter than the {:.0} ms write period. That is chance, not a guarantee; only `barrier = \"ack\"` with `drain_timeout = \"0s\"` guarantees it, at the price of the window with no member (barrier write to serving write, plus the client's own {:.0} ms limit on the attempt that found no member). In the minority partition, the cut host of an independent group moves to west while the other three stay on east, for as long as the partition lasts; in a fleet it gets errors instead.",
        EVERY.as_secs_f64() * 1e3,
        TIMEOUT.as_secs_f64() * 1e3,
    );
    targets(f, &mut o);
    o
}

/// The targets, judged per fleet group.
fn targets(f: &Fleet, o: &mut String) {
    let _ = writeln!(o, "\nTargets (issue 13):\n");
    let _ = writeln!(o, "| mode | target | measured | verdict |");
    let _ = writeln!(o, "| --- | --- | --- | --- |");
    let q = f.quick;
    let row = |o: &mut String, m: Mode, target: &str, measured: String, met: bool| {
        let _ = writeln!(
            o,
            "| {} | {target} | {measured} | {} |",
            m.name(),
            verdict(met, q)
        );
    };
    for m in [Mode::Fleet, Mode::Barrier] {
        for kind in [Kind::Failover, Kind::Failback] {
            let s = switches(f, kind, m);
            let skew = p95(&values(&s, |s| s.skew_ms));
            let all = s.iter().all(|s| s.moved == HOSTS);
            row(
                o,
                m,
                &format!("{}: skew p95 <= 50 ms", kind.name()),
                format!("p95 {} ms ({} moved)", super::fleet::ms(skew), moved(&s)),
                all && skew.is_some_and(|v| v <= 50.0),
            );
        }
        let s = switches(f, Kind::Failover, m);
        let over = p95(&values(&s, over_detection));
        row(
            o,
            m,
            "failover: last map write <= local detection + 100 ms (p95)",
            format!("p95 {} ms over detection", super::fleet::ms(over)),
            over.is_some_and(|v| v <= 100.0),
        );
        let s = switches(f, Kind::Partition, m);
        let flips: usize = s.iter().map(|s| s.flips).sum();
        row(
            o,
            m,
            "minority partition: 0 flips",
            format!("{flips} flips in {} repetitions", s.len()),
            flips == 0,
        );
    }
    let s = switches(f, Kind::Failback, Mode::Barrier);
    let worst = s
        .iter()
        .filter_map(|s| s.overlap.map(|o| o.writes))
        .max()
        .unwrap_or(0);
    row(
        o,
        Mode::Barrier,
        "failback: overlap 0 writes",
        format!("at most {worst} writes in {} repetitions", s.len()),
        worst == 0 && s.iter().all(|s| s.overlap.is_some()),
    );
}

/// The chart's colour for a reply.
fn color(r: Reply) -> &'static str {
    match r {
        Reply::East => "#888",
        Reply::West => "#2a7",
        Reply::Error => "#c22",
    }
}

/// The time range of a trace's row: from before the first map write to
/// after the last (past the drain for a failback).
fn range(tr: &Trace) -> (f64, f64) {
    let writes = tr
        .hosts
        .iter()
        .flat_map(|h| h.map_writes.iter().map(|w| w.0));
    let (lo, hi) = writes.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return (-BEFORE.as_secs_f64() * 1e3, 1500.0);
    }
    match tr.kind {
        Kind::Failover => (-BEFORE.as_secs_f64() * 1e3, hi + 300.0),
        _ => (lo - 400.0, hi + 1400.0),
    }
}

/// Rows: one failover, one failback; columns: the three groups; in each
/// panel one lane per host, its writes drawn as stretches coloured by the
/// member that answered, its map writes as ticks.
pub fn svg(f: &Fleet) -> String {
    let (col_w, left, lane, gap_x, top) = (400.0, 40.0, 16.0, 20.0, 64.0);
    let panel_h = lane * HOSTS as f64;
    let row_h = panel_h + 70.0;
    let w = left + (col_w + gap_x) * Mode::ALL.len() as f64;
    let h = top + row_h * f.traces.len() as f64;
    let mut o = svg::open(
        w,
        h,
        "Per-host timelines: which member took each host's writes (ms after the fault)",
    );
    o += "<text x=\"10\" y=\"40\"><tspan fill=\"#888\">■ east</tspan>   <tspan fill=\"#2a7\">■ west</tspan>   <tspan fill=\"#c22\">■ error</tspan>   | map write   <tspan fill=\"#e80\">| barrier write (no member)</tspan>   dashed: fault</text>\n";
    for (r, tr) in f.traces.iter().enumerate() {
        let (t0, t1) = range(tr);
        let y0 = top + row_h * r as f64 + 20.0;
        for (c, mode) in Mode::ALL.iter().enumerate() {
            let x0 = left + (col_w + gap_x) * c as f64;
            let x = |ms: f64| x0 + col_w * (ms.clamp(t0, t1) - t0) / (t1 - t0);
            let _ = writeln!(
                o,
                "<text x=\"{x0:.0}\" y=\"{:.0}\" font-weight=\"bold\">{}: {}</text>\n<rect x=\"{x0:.0}\" y=\"{y0:.0}\" width=\"{col_w}\" height=\"{panel_h}\" fill=\"none\" stroke=\"#ccc\"/>",
                y0 - 6.0,
                tr.kind
                    .name()
                    .split(' ')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" "),
                mode.name()
            );
            if (t0..=t1).contains(&0.0) {
                let _ = writeln!(
                    o,
                    "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{y0:.0}\" y2=\"{1:.0}\" stroke=\"#000\" stroke-dasharray=\"4 3\"/>",
                    x(0.0),
                    y0 + panel_h
                );
            }
            let hosts = tr.hosts.iter().filter(|h| h.mode == *mode);
            for (l, host) in hosts.enumerate() {
                let ly = y0 + lane * l as f64 + lane / 2.0;
                if c == 0 {
                    let _ = writeln!(
                        o,
                        "<text x=\"{:.0}\" y=\"{:.0}\" fill=\"#666\" text-anchor=\"end\">{}</text>",
                        x0 - 4.0,
                        ly + 4.0,
                        l + 1
                    );
                }
                lanes(&mut o, host, ly, &x, (t0, t1));
                for (at, _, barrier) in &host.map_writes {
                    let stroke = if *barrier { "#e80" } else { "#000" };
                    let _ = writeln!(
                        o,
                        "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"{stroke}\" stroke-width=\"2\"/>",
                        x(*at),
                        ly - lane / 2.0 + 1.0,
                        ly + lane / 2.0 - 1.0
                    );
                }
            }
            let step = if t1 - t0 > 2000.0 { 500.0 } else { 250.0 };
            let mut t = (t0 / step).ceil() * step;
            while t <= t1 {
                let _ = writeln!(
                    o,
                    "<text x=\"{:.1}\" y=\"{:.0}\" fill=\"#666\" text-anchor=\"middle\">{t:.0}</text>",
                    x(t),
                    y0 + panel_h + 14.0
                );
                t += step;
            }
        }
    }
    o += "</svg>\n";
    o
}

/// One host's writes in its lane: each write from its send time to the
/// next one's (a write blocked until its limit fills that time), those in
/// a row with the same reply as one stretch.
fn lanes(
    o: &mut String,
    host: &super::fleet::HostTrace,
    y: f64,
    x: &impl Fn(f64) -> f64,
    (t0, t1): (f64, f64),
) {
    let period = EVERY.as_secs_f64() * 1e3;
    let ends = host
        .writes
        .iter()
        .skip(1)
        .map(|w| w.0)
        .chain(host.writes.last().map(|w| w.0 + period));
    let mut runs: Vec<(f64, f64, Reply)> = Vec::new();
    for (&(at, reply), end) in host.writes.iter().zip(ends) {
        if end < t0 || at > t1 {
            continue;
        }
        match runs.last_mut() {
            Some((_, e, r)) if *r == reply => *e = end,
            _ => runs.push((at, end, reply)),
        }
    }
    for (from, to, reply) in runs {
        let _ = writeln!(
            o,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"8\"/>",
            x(from),
            x(to).max(x(from) + 1.0),
            color(reply)
        );
    }
}

//! Failover with live client traffic, with and without reactive health
//! (issue 12): the four faults under redirector with scheduled checks only,
//! with the default signal policy and with `on_error = "mark-down"`, and
//! under tuned HAProxy without and with `observe layer4`, in one run, with
//! the failover part's trials; the table judges the targets.

use std::fmt::Write as _;

use super::{
    failover::{self, Fault, Series, System},
    summary,
};

/// The systems side by side, in table order.
pub const SYSTEMS: [System; 5] = [
    System::RedirectorChecksOnly,
    System::Redirector,
    System::RedirectorMarkDown,
    System::HaproxyTuned,
    System::HaproxyTunedObserve,
];

/// Every fault under every system, `trials` failovers each.
pub fn run(trials: usize) -> anyhow::Result<Vec<Series>> {
    let mut out = Vec::new();
    for fault in Fault::ALL {
        for system in SYSTEMS {
            println!("  {} / {}: {trials} trials", system.name(), fault.name());
            out.push(failover::series(system, fault, trials)?);
        }
    }
    Ok(out)
}

fn find(all: &[Series], system: System, fault: Fault) -> Option<&Series> {
    all.iter().find(|s| s.system == system && s.fault == fault)
}

/// "median / p95" of the map-write delays, or "-" for HAProxy.
fn map_write(s: &Series) -> String {
    if s.map_write_ms.is_empty() {
        return "-".into();
    }
    let m = summary(&mut s.map_write_ms.clone());
    format!("{:.0} / {:.0}", m.median, m.p95)
}

/// How many failovers each trigger completed, e.g. "signals 18, checks 2".
fn triggers(s: &Series) -> String {
    if s.triggers.is_empty() {
        return "-".into();
    }
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for t in &s.triggers {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "met" or "MISSED", noted as not judged in a quick run.
pub fn verdict(met: bool, quick: bool) -> String {
    let word = if met { "met" } else { "MISSED" };
    if quick {
        format!("not judged (--quick; {word} in this run)")
    } else {
        word.into()
    }
}

/// The targets for one redirector system, as rows of
/// `| target | measured | verdict |` prefixed with the system.
fn verdicts(all: &[Series], system: System, quick: bool, o: &mut String) {
    let name = system.name();
    if let Some(s) = find(all, system, Fault::Kill) {
        let _ = writeln!(
            o,
            "| {name} | member killed: p95 <= 25 ms | p95 {:.0} ms (map written {} ms, median / p95) | {} |",
            s.p95_ms,
            map_write(s),
            verdict(s.p95_ms <= 25.0, quick)
        );
        let _ = writeln!(
            o,
            "| {name} | member killed: <= 3 client errors per failover (median) | median {:.0}, p95 {:.0}, max {:.0} | {} |",
            s.errors_median,
            s.errors_p95,
            s.errors_max,
            verdict(s.errors_median <= 3.0, quick)
        );
    }
    for fault in [Fault::LinkDown, Fault::SilentDrop] {
        if let Some(s) = find(all, system, fault) {
            let _ = writeln!(
                o,
                "| {name} | {}: p95 <= 400 ms | p95 {:.0} ms (map written {} ms, median / p95; {}) | {} |",
                fault.name(),
                s.p95_ms,
                map_write(s),
                triggers(s),
                verdict(s.p95_ms <= 400.0, quick)
            );
        }
    }
    for fault in Fault::ALL {
        let (Some(s), Some(h)) = (
            find(all, system, fault),
            find(all, System::HaproxyTunedObserve, fault),
        ) else {
            continue;
        };
        let ratio = h.median_ms / s.median_ms.max(0.001);
        let _ = writeln!(
            o,
            "| {name} | {}: >= 2x faster than HAProxy with observe layer4 (ratio of medians) | {ratio:.1}x ({:.0} ms against {:.0} ms) | {} |",
            fault.name(),
            s.median_ms,
            h.median_ms,
            verdict(ratio >= 2.0, quick)
        );
    }
}

pub fn table(all: &[Series], quick: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "The four faults with live client traffic: one client with a kept connection sends GET every 5 ms (100 ms limit, reconnect after any error) from the moment of the fault until the next member answers; every error counts. redirector runs with scheduled checks only (`observe = \"off\"`), with its defaults (`observe = \"layer4\"`, `error_limit = 1`, `on_error = \"fail-check\"`) and with `on_error = \"mark-down\"`; HAProxy with tuned checks (`inter 250ms fastinter 50ms fall 2 rise 3`), without and with `observe layer4 error-limit 1 on-error mark-down`. \"Map written\" is redirector's SERVICES write of the failover, ms after the fault, from `redirector history`: detection, apart from the client's own recovery. \"Failure completed by\" is the history's trigger.\n"
    );
    let _ = writeln!(
        o,
        "| fault | system | trials | first good reply ms (median / p95 / max) | client errors per failover (median / p95 / max) | map written ms (median / p95) | failure completed by |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- | --- |");
    for s in all {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {} | {} |",
            s.fault.name(),
            s.system.name(),
            s.trials_ms.len(),
            s.median_ms,
            s.p95_ms,
            s.max_ms,
            s.errors_median,
            s.errors_p95,
            s.errors_max,
            map_write(s),
            triggers(s)
        );
    }
    let _ = writeln!(o, "\nTargets (issue 12):\n");
    let _ = writeln!(o, "| system | target | measured | verdict |");
    let _ = writeln!(o, "| --- | --- | --- | --- |");
    for system in [System::Redirector, System::RedirectorMarkDown] {
        verdicts(all, system, quick, &mut o);
    }
    o
}

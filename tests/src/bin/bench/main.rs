//! The benchmark harness behind `cargo xtask bench` (which installs what it
//! needs, builds the release daemon and runs this binary in release mode):
//! every measurement in one run, on this machine, in network namespaces. Writes `bench/results/<unix time>.json` and
//! `bench/REPORT.md` (the latest report is committed). `--quick` runs a
//! short version (CI), without targets being judged.

mod daemon_load;
mod failover;
mod fleet;
mod fleet_report;
mod fleet_writer;
mod loadgen;
mod packet;
mod reactive;
mod scale;
mod svg;
mod throughput;
mod timeline;

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;

#[derive(serde::Serialize)]
struct Results {
    unix_time: u64,
    quick: bool,
    machine: Machine,
    packet: Vec<packet::Row>,
    flips: scale::Flips,
    conntrack: scale::BigConntrack,
    daemon: daemon_load::DaemonLoad,
    failover: Vec<failover::Series>,
    /// Failover with live traffic, reactive health on and off (issue 12).
    reactive: Vec<failover::Series>,
    throughput: Vec<throughput::Cell>,
    loadgen: Vec<loadgen::Cell>,
    timeline: Vec<timeline::Timeline>,
    /// Fleet mode against independent hosts (issue 13).
    fleet: fleet::Fleet,
}

#[derive(serde::Serialize)]
struct Machine {
    cores: usize,
    kernel: String,
    cpu: String,
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    Machine {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        cpu,
    }
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().skip(1).any(|a| a == "--quick");
    // `cargo xtask bench` builds the release daemon beside this binary,
    // where `redirector_tests::daemon::binary` finds it.
    let started = std::time::Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench");
    // Quick runs write beside the committed full report, never over it.
    let tag = if quick { "-quick" } else { "" };
    if std::env::var("BENCH_ONLY").as_deref() == Ok("throughput") {
        let c = throughput::run(if quick { 2 } else { 5 }, quick)?;
        println!("{}", throughput::table(&c, quick));
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("loadgen") {
        let c = loadgen::run(if quick { 2 } else { 5 }, quick)?;
        println!("{}", loadgen::table(&c, quick));
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("timeline") {
        let tl = timeline::run(quick)?;
        println!("{}", timeline::table(&tl));
        let svg = root.join(format!("failover-timeline{tag}.svg"));
        std::fs::write(&svg, timeline::svg(&tl))
            .with_context(|| format!("writing {}", svg.display()))?;
        println!("bench: wrote {}", svg.display());
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("packet") {
        let rows = packet::measure_all(quick)?;
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("daemon") {
        let d = daemon_load::measure(1000, 10)?;
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("fleet") {
        return fleet_only(quick, &root, tag);
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("reactive") {
        return reactive_only(quick, &root, tag);
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("failover") {
        let f = failover::run_all(if quick { 3 } else { 20 }, quick)?;
        println!("{}", failover::table(&f, quick));
        return Ok(());
    }
    println!("bench: per-packet cost (BPF_PROG_TEST_RUN)");
    let packet = packet::measure_all(quick)?;
    println!("bench: flips with 1,000 services");
    let flips = scale::flips(1000, if quick { 3 } else { 11 })?;
    let entries = if quick { 100_000 } else { 1_000_000 };
    println!("bench: conntrack hit cost at {entries} entries");
    let conntrack = scale::big_conntrack(entries, if quick { 100_000 } else { 1_000_000 })?;
    println!("bench: daemon RSS and CPU with 1,000 services");
    let daemon = daemon_load::measure(1000, if quick { 3 } else { 10 })?;
    println!("bench: throughput and latency (redis-benchmark, three paths)");
    let throughput = throughput::run(if quick { 2 } else { 5 }, quick)?;
    println!("bench: latency at fixed rates and at saturation (our load generator, three paths)");
    let loadgen = loadgen::run(if quick { 2 } else { 5 }, quick)?;
    println!("bench: failover trials");
    let failover = failover::run_all(if quick { 3 } else { 20 }, quick)?;
    println!("bench: failover with live traffic, reactive health on and off");
    let reactive = reactive::run(if quick { 3 } else { 20 })?;
    println!("bench: a latency timeline through a failover");
    let timeline = timeline::run(quick)?;
    println!("bench: fleet mode against independent hosts");
    let fleet = fleet::run(fleet_reps(quick), quick)?;
    let results = Results {
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
        quick,
        machine: machine(),
        packet,
        flips,
        conntrack,
        daemon,
        failover,
        reactive,
        throughput,
        loadgen,
        timeline,
        fleet,
    };
    std::fs::create_dir_all(root.join("results"))?;
    let json = root.join(format!("results/{}{tag}.json", results.unix_time));
    std::fs::write(&json, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let report = report(&results, started.elapsed(), tag);
    let name = format!("REPORT{tag}.md");
    std::fs::write(root.join(&name), &report)?;
    let failover_svg = failover::svg(&results.failover);
    std::fs::write(root.join(format!("failover{tag}.svg")), failover_svg)?;
    std::fs::write(
        root.join(format!("failover-reactive{tag}.svg")),
        failover::svg(&results.reactive),
    )?;
    let throughput_svg = throughput::svg(&results.throughput);
    std::fs::write(root.join(format!("throughput{tag}.svg")), throughput_svg)?;
    std::fs::write(
        root.join(format!("latency{tag}.svg")),
        loadgen::svg(&results.loadgen),
    )?;
    let timeline_svg = timeline::svg(&results.timeline);
    std::fs::write(
        root.join(format!("failover-timeline{tag}.svg")),
        timeline_svg,
    )?;
    std::fs::write(
        root.join(format!("fleet-timeline{tag}.svg")),
        fleet_report::svg(&results.fleet),
    )?;
    println!("{report}");
    println!("bench: wrote {} and bench/{name}", json.display());
    Ok(())
}

/// `BENCH_ONLY=reactive`: the reactive-health part alone; prints its
/// table and writes `bench/results/<unix time>-reactive[-quick].json` and
/// its chart.
fn reactive_only(quick: bool, root: &Path, tag: &str) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct ReactiveResults {
        unix_time: u64,
        quick: bool,
        machine: Machine,
        reactive: Vec<failover::Series>,
    }
    let started = std::time::Instant::now();
    let reactive = reactive::run(if quick { 3 } else { 20 })?;
    println!("{}", reactive::table(&reactive, quick));
    println!("bench: took {:.0} s", started.elapsed().as_secs_f64());
    let svg = root.join(format!("failover-reactive{tag}.svg"));
    std::fs::write(&svg, failover::svg(&reactive))
        .with_context(|| format!("writing {}", svg.display()))?;
    let results = ReactiveResults {
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
        quick,
        machine: machine(),
        reactive,
    };
    std::fs::create_dir_all(root.join("results"))?;
    let json = root.join(format!("results/{}-reactive{tag}.json", results.unix_time));
    std::fs::write(&json, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    println!("bench: wrote {} and {}", json.display(), svg.display());
    Ok(())
}

/// Repetitions of the fleet part: a quick run keeps it under a minute.
fn fleet_reps(quick: bool) -> usize {
    if quick { 2 } else { 10 }
}

/// `BENCH_ONLY=fleet`: the fleet part alone; prints its tables, writes
/// `bench/results/<unix time>-fleet[-quick].json` and its chart, and
/// replaces the fleet section of `bench/REPORT[-quick].md` (the other
/// sections stay as the last full run wrote them).
fn fleet_only(quick: bool, root: &Path, tag: &str) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct FleetResults {
        unix_time: u64,
        machine: Machine,
        fleet: fleet::Fleet,
    }
    let fleet = fleet::run(fleet_reps(quick), quick)?;
    let section = fleet_section(&fleet, tag);
    println!("{section}");
    let svg = root.join(format!("fleet-timeline{tag}.svg"));
    std::fs::write(&svg, fleet_report::svg(&fleet))
        .with_context(|| format!("writing {}", svg.display()))?;
    let report = root.join(format!("REPORT{tag}.md"));
    let old = std::fs::read_to_string(&report)
        .unwrap_or_else(|_| "# redirector benchmark report\n\n".into());
    std::fs::write(&report, splice(&old, fleet_report::HEADING, &section))
        .with_context(|| format!("writing {}", report.display()))?;
    let results = FleetResults {
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
        machine: machine(),
        fleet,
    };
    std::fs::create_dir_all(root.join("results"))?;
    let json = root.join(format!("results/{}-fleet{tag}.json", results.unix_time));
    // Compact: every write of the plotted trials is in it (about 400 kB).
    std::fs::write(&json, serde_json::to_string(&results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    println!(
        "bench: wrote {}, {} and {}",
        json.display(),
        svg.display(),
        report.display()
    );
    Ok(())
}

/// The report's fleet section, heading included.
fn fleet_section(f: &fleet::Fleet, tag: &str) -> String {
    format!(
        "{}\n\n{}\n![per-host timelines, fleet and independent](fleet-timeline{tag}.svg)\n\n",
        fleet_report::HEADING,
        fleet_report::table(f)
    )
}

/// `report` with the section under `heading` (up to the next `## `
/// heading) replaced by `section`; inserted before "## Missed targets",
/// or at the end, when there is none.
fn splice(report: &str, heading: &str, section: &str) -> String {
    let next = |from: usize| {
        report[from..]
            .find("\n## ")
            .map_or(report.len(), |i| from + i + 1)
    };
    if let Some(at) = report.find(&format!("{heading}\n")) {
        let end = next(at + heading.len());
        return format!("{}{section}{}", &report[..at], &report[end..]);
    }
    match report.find("## Missed targets") {
        Some(at) => format!("{}{section}{}", &report[..at], &report[at..]),
        None => format!("{}\n{section}", report.trim_end()),
    }
}

/// Median, p95 and range of a set of samples (sorted in place).
pub struct Summary {
    pub median: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
}

pub fn summary(v: &mut [f64]) -> Summary {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[(((v.len() as f64 - 1.0) * p).round() as usize).min(v.len() - 1)];
    Summary {
        median: if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        },
        p95: at(0.95),
        min: v[0],
        max: v[v.len() - 1],
    }
}

/// The median over rounds of `f(a) / f(b)`, each round against the same
/// round: the paths of one round ran seconds apart, so noise from other work
/// on the machine cancels better than in a ratio of medians.
pub fn paired_ratio<S>(a: &[S], b: &[S], f: impl Fn(&S) -> f64) -> f64 {
    let mut r: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| f(a) / f(b).max(1e-9))
        .collect();
    if r.is_empty() {
        return 0.0;
    }
    summary(&mut r).median
}

fn verdict(met: bool, quick: bool) -> &'static str {
    match (quick, met) {
        (true, _) => "not judged (--quick)",
        (false, true) => "met",
        (false, false) => "MISSED",
    }
}

fn report(r: &Results, took: std::time::Duration, tag: &str) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let _ = writeln!(o, "# redirector benchmark report\n");
    let _ = writeln!(
        o,
        "Command: `cargo xtask bench{}` ({:.0} s). Machine: {} cores, {}, kernel {}. Shared and noisy: compare ratios within this run.\n",
        if r.quick { " --quick" } else { "" },
        took.as_secs_f64(),
        m.cores,
        m.cpu,
        m.kernel
    );
    let _ = writeln!(o, "## Throughput and latency\n");
    o += &throughput::table(&r.throughput, r.quick);
    let _ = writeln!(o, "\n![throughput](throughput{tag}.svg)\n");
    let _ = writeln!(o, "## Latency at fixed rates and at saturation\n");
    o += &loadgen::table(&r.loadgen, r.quick);
    let _ = writeln!(o, "\n![latency](latency{tag}.svg)\n");
    let _ = writeln!(o, "## Per-packet program cost\n");
    let p0 = r.packet.first();
    let _ = writeln!(
        o,
        "BPF_PROG_TEST_RUN, repeat {} per sample, {} rounds alternating all cases; median (min..max) ns per run, and our cost above an empty program of the same type. Hit paths map the VIP to itself so every repetition takes the same path; the FIB lookup ends at 'forwarding disabled', as on a host with forwarding off.\n",
        p0.map_or(0, |p| p.repeat),
        p0.map_or(0, |p| p.rounds)
    );
    let _ = writeln!(
        o,
        "| case | ns/run | empty program | above empty | target | verdict |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- |");
    for p in &r.packet {
        let above = p.median - p.baseline;
        let target = if p.name.contains("miss") {
            Some(15.0)
        } else if p.name.contains("hit") {
            Some(60.0)
        } else {
            None
        };
        let _ = writeln!(
            o,
            "| {} | {:.1} ({:.1}..{:.1}) | {:.1} | {:.1} | {} | {} |",
            p.name,
            p.median,
            p.min,
            p.max,
            p.baseline,
            above,
            target.map_or("-".into(), |t| format!("<= {t} ns")),
            target.map_or("-", |t| verdict(above <= t, r.quick))
        );
    }
    let c = &r.conntrack;
    let _ = writeln!(
        o,
        "\nConntrack hit with {} entries: {:.1} ns/run, against {:.1} ns/run with one entry (repeat {}).\n",
        c.entries, c.hit_full_ns, c.hit_small_ns, c.repeat
    );
    let f = &r.flips;
    let _ = writeln!(o, "## Map flips with {} services\n", f.services);
    let _ = writeln!(
        o,
        "One flip (one SERVICES update through the map facade): {:.1} µs median. All {} services, one after another: {:.2} ms median of {} rounds (target <= 50 ms: {}).\n",
        f.one_flip_us,
        f.services,
        f.all_flips_ms,
        f.rounds,
        verdict(f.all_flips_ms <= 50.0, r.quick)
    );
    let d = &r.daemon;
    let _ = writeln!(o, "## Daemon cost\n");
    let _ = writeln!(
        o,
        "{} services, two members each, redis-ping every 250 ms ({:.0} checks/s), then HAProxy checking the same {} endpoints with the same timings (`option redis-check`, `inter 250ms fall 2 rise 3`), in the same run, {:.0} s each.\n",
        d.services,
        d.checks_per_second,
        d.services * 2,
        d.seconds
    );
    let ratio = d.cpu_percent_of_one_core / d.haproxy_cpu_percent_of_one_core.max(0.01);
    let _ = writeln!(o, "| | redirector | HAProxy | ratio | target | verdict |");
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- |");
    let _ = writeln!(
        o,
        "| CPU, % of one core | {:.1} | {:.1} | {:.2}x | <= 0.5x HAProxy (stretch 0.33x) | {} |",
        d.cpu_percent_of_one_core,
        d.haproxy_cpu_percent_of_one_core,
        ratio,
        verdict(ratio <= 0.5, r.quick)
    );
    let _ = writeln!(
        o,
        "| RSS, MB | {:.1} | {:.1} | {:.2}x | <= 50 MB | {} |\n",
        d.rss_mb,
        d.haproxy_rss_mb,
        d.rss_mb / d.haproxy_rss_mb.max(0.01),
        verdict(d.rss_mb <= 50.0, r.quick)
    );
    let _ = writeln!(
        o,
        "Under a hostile local load over the same {:.0} s ({} requests: /metrics scraped and `status` asked in a loop, 100 half-open requests held on the metrics port), the daemon used {:.1}% of a core (serving those requests included) and {:.1} MB RSS.\n",
        d.seconds, d.hostile_requests, d.hostile_cpu_percent_of_one_core, d.hostile_rss_mb
    );
    let _ = writeln!(o, "## Failover time\n");
    o += &failover::table(&r.failover, r.quick);
    let _ = writeln!(o, "\n![failover times](failover{tag}.svg)\n");
    let _ = writeln!(o, "## Reactive health: failover with live traffic\n");
    o += &reactive::table(&r.reactive, r.quick);
    let _ = writeln!(
        o,
        "\n![failover times with live traffic](failover-reactive{tag}.svg)\n"
    );
    let _ = writeln!(o, "## Latency through a failover\n");
    o += &timeline::table(&r.timeline);
    let _ = writeln!(
        o,
        "\n![latency timeline through a failover](failover-timeline{tag}.svg)\n"
    );
    o += &fleet_section(&r.fleet, tag);
    let _ = writeln!(
        o,
        "## Missed targets\n\nWhat limits each missed target, with the profiles and ablations behind it: [ANALYSIS.md](ANALYSIS.md)."
    );
    o
}

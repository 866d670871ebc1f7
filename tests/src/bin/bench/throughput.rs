//! Throughput and latency through three paths from the same client host to
//! the same member: direct (the member's address), redirector (the VIP), and
//! HAProxy co-located on the client host (TCP mode, default checks). Measured
//! with redis-benchmark (50 clients, GET and SET, pipeline 1 and 16), the
//! paths alternating in rounds; CPU per request from whole-machine CPU time.

use std::{fmt::Write as _, process::Command, time::Duration};

use anyhow::{Context as _, bail};
use redirector_tests::{daemon::DaemonProc, topology::Topology};

use super::{
    failover::{Haproxy, REDIRECTOR_CONFIG, System},
    paired_ratio, summary, svg,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
pub enum Path {
    Direct,
    Redirector,
    Haproxy,
}

impl Path {
    pub const ALL: [Path; 3] = [Path::Direct, Path::Redirector, Path::Haproxy];

    pub fn target(self) -> (&'static str, u16) {
        match self {
            Path::Direct => ("198.18.1.10", 6379),
            Path::Redirector => ("198.18.0.100", 6379),
            Path::Haproxy => ("127.0.0.1", 7000),
        }
    }

    /// Its colour in every chart.
    pub fn color(self) -> &'static str {
        match self {
            Path::Direct => "#888",
            Path::Redirector => "#2a7",
            Path::Haproxy => "#e93",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Redirector => "redirector (VIP)",
            Path::Haproxy => "HAProxy",
        }
    }
}

#[derive(serde::Serialize, Clone)]
pub struct Sample {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Whole-machine CPU time per request, microseconds.
    pub cpu_us_per_req: f64,
}

#[derive(serde::Serialize)]
pub struct Cell {
    pub path: Path,
    pub test: String,
    pub pipeline: u32,
    pub samples: Vec<Sample>,
    pub rps_median: f64,
    pub rps_min: f64,
    pub rps_max: f64,
    pub p50_median_ms: f64,
    pub p99_median_ms: f64,
    pub cpu_us_median: f64,
}

/// Busy CPU time of the whole machine so far, in jiffies (1/100 s).
pub fn busy_jiffies() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy = all - idle - iowait
    cpu.iter().sum::<u64>() - cpu.get(3).copied().unwrap_or(0) - cpu.get(4).copied().unwrap_or(0)
}

/// One redis-benchmark run; returns per test (GET, SET) a sample.
fn bench(
    t: &Topology,
    path: Path,
    pipeline: u32,
    requests: u32,
) -> anyhow::Result<Vec<(String, Sample)>> {
    let (host, port) = path.target();
    let before = busy_jiffies();
    let out = Command::new("timeout")
        .args(["120", "ip", "netns", "exec", &t.app.name, "redis-benchmark"])
        .args(["-h", host, "-p", &port.to_string(), "-c", "50"])
        .args(["-n", &requests.to_string(), "-P", &pipeline.to_string()])
        .args(["-t", "get,set", "--csv"])
        .output()
        .context("run redis-benchmark")?;
    let cpu_s = (busy_jiffies() - before) as f64 / 100.0;
    if !out.status.success() {
        bail!(
            "redis-benchmark via {} failed: {}",
            path.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').map(|v| v.trim_matches('"')).collect();
        if f.len() < 7 {
            continue;
        }
        let num = |i: usize| f[i].parse::<f64>().unwrap_or(0.0);
        rows.push((
            f[0].to_string(),
            Sample {
                rps: num(1),
                p50_ms: num(4),
                p99_ms: num(6),
                // Both tests ran in this one process: split CPU evenly.
                cpu_us_per_req: cpu_s * 1e6 / (2.0 * requests as f64),
            },
        ));
    }
    if rows.is_empty() {
        bail!("no results from redis-benchmark via {}", path.name());
    }
    Ok(rows)
}

fn median(v: &mut [f64]) -> f64 {
    summary(v).median
}

pub fn run(rounds: usize, quick: bool) -> anyhow::Result<Vec<Cell>> {
    let t = Topology::new(true);
    let d = DaemonProc::start(&t, REDIRECTOR_CONFIG);
    d.wait_active("cache", "east", Duration::from_secs(10));
    // HAProxy with its default check timings here: under full load on two
    // cores, 250 ms check timeouts can expire and `shutdown-sessions` would
    // cut the benchmark's connections (seen in a run), which measures the
    // checks, not the proxy.
    let haproxy = Haproxy::start(&t, System::HaproxyDefaults)?;
    std::thread::sleep(Duration::from_secs(1));
    let mut cells: Vec<Cell> = Vec::new();
    for _ in 0..rounds {
        for pipeline in [1u32, 16] {
            let requests = match (quick, pipeline) {
                (true, 1) => 20_000,
                (true, _) => 100_000,
                (false, 1) => 100_000,
                (false, _) => 500_000,
            };
            for path in Path::ALL {
                // A run that breaks off (seen now and then through HAProxy:
                // "Server closed the connection") is retried, and said so.
                let mut attempt = 0;
                let rows = loop {
                    match bench(&t, path, pipeline, requests) {
                        Ok(r) => break r,
                        Err(e) if attempt < 2 => {
                            attempt += 1;
                            println!("  retrying {} P{pipeline}: {e}", path.name());
                        }
                        Err(e) => {
                            let log = std::fs::read_to_string(haproxy.dir.join("haproxy.log"));
                            return Err(e.context(log.unwrap_or_default()));
                        }
                    }
                };
                for (test, s) in rows {
                    match cells
                        .iter_mut()
                        .find(|c| c.path == path && c.test == test && c.pipeline == pipeline)
                    {
                        Some(c) => c.samples.push(s),
                        None => cells.push(Cell {
                            path,
                            test,
                            pipeline,
                            samples: vec![s],
                            rps_median: 0.0,
                            rps_min: 0.0,
                            rps_max: 0.0,
                            p50_median_ms: 0.0,
                            p99_median_ms: 0.0,
                            cpu_us_median: 0.0,
                        }),
                    }
                }
            }
        }
    }
    for c in &mut cells {
        let rps = summary(&mut c.samples.iter().map(|s| s.rps).collect::<Vec<_>>());
        (c.rps_median, c.rps_min, c.rps_max) = (rps.median, rps.min, rps.max);
        c.p50_median_ms = median(&mut c.samples.iter().map(|s| s.p50_ms).collect::<Vec<_>>());
        c.p99_median_ms = median(&mut c.samples.iter().map(|s| s.p99_ms).collect::<Vec<_>>());
        c.cpu_us_median = median(
            &mut c
                .samples
                .iter()
                .map(|s| s.cpu_us_per_req)
                .collect::<Vec<_>>(),
        );
    }
    Ok(cells)
}

pub fn table(cells: &[Cell], quick: bool) -> String {
    let mut o = String::new();
    let rounds = cells.first().map_or(0, |c| c.samples.len());
    let _ = writeln!(
        o,
        "redis-benchmark, 50 clients, from the application host to member east; {rounds} rounds, the three paths alternating within each round. Median requests/s (min..max), median p50/p99 latency, whole-machine CPU per request; ratios vs direct and HAProxy are medians of per-round ratios. Targets: VIP >= 0.97x direct throughput and p99 <= 1.05x direct; VIP >= 1.5x HAProxy throughput at pipeline 1.\n"
    );
    let _ = writeln!(
        o,
        "| test | pipeline | path | req/s | p50 ms | p99 ms | CPU µs/req | vs direct | verdict |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for c in cells {
        let direct = cells
            .iter()
            .find(|d| d.path == Path::Direct && d.test == c.test && d.pipeline == c.pipeline);
        let haproxy = cells
            .iter()
            .find(|d| d.path == Path::Haproxy && d.test == c.test && d.pipeline == c.pipeline);
        let ratio = direct.map_or(0.0, |d| paired_ratio(&c.samples, &d.samples, |s| s.rps));
        let verdict = if c.path != Path::Redirector {
            "-".to_string()
        } else if quick {
            "not judged (--quick)".into()
        } else {
            let p99 = direct.map_or(0.0, |d| paired_ratio(&c.samples, &d.samples, |s| s.p99_ms));
            let vs_h = haproxy.map_or(0.0, |h| paired_ratio(&c.samples, &h.samples, |s| s.rps));
            let mut ok = ratio >= 0.97 && p99 <= 1.05;
            if c.pipeline == 1 {
                ok &= vs_h >= 1.5;
            }
            format!(
                "{} (p99 {p99:.2}x direct, {vs_h:.2}x HAProxy)",
                if ok { "met" } else { "MISSED" }
            )
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.0} ({:.0}..{:.0}) | {:.3} | {:.3} | {:.1} | {:.2} | {} |",
            c.test,
            c.pipeline,
            c.path.name(),
            c.rps_median,
            c.rps_min,
            c.rps_max,
            c.p50_median_ms,
            c.p99_median_ms,
            c.cpu_us_median,
            ratio,
            verdict
        );
    }
    o
}

/// Throughput bars per test/pipeline for the three paths.
pub fn svg(cells: &[Cell]) -> String {
    let (w, row, left) = (900.0, 20.0, 260.0);
    let h = 40.0 + row * cells.len() as f64 + 10.0;
    let max = cells.iter().map(|c| c.rps_max).fold(1.0_f64, f64::max);
    let mut o = svg::open(w, h, "redis-benchmark requests/s (median), 50 clients");
    let mut sorted: Vec<&Cell> = cells.iter().collect();
    sorted.sort_by_key(|c| (c.test.clone(), c.pipeline, c.path as u8));
    for (i, c) in sorted.iter().enumerate() {
        svg::BarRow {
            y: 34.0 + row * i as f64,
            label: &format!("{} P{} {}", c.test, c.pipeline, c.path.name()),
            color: c.path.color(),
            left,
            bar: left + (w - left - 80.0) * c.rps_median / max,
            tick: None,
            whisker: None,
            value: format!("{:.0}", c.rps_median),
        }
        .write(&mut o);
    }
    o += "</svg>\n";
    o
}

//! The demo behind `cargo xtask demo` (which installs what it needs and
//! builds the daemon first): the product end to end on this machine, in network
//! namespaces: an application host, a router and two regions (east, west),
//! each running redis-server with `region` set to its name. The real daemon
//! runs `config/demo.toml`; a client talks to the VIP and prints who
//! answered. East is killed (failover) and restarted (failback).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use redirector_tests::{
    daemon::DaemonProc,
    resp::Client,
    topology::{Family, Topology, start_redis, vip},
};

const SERVICE: &str = "cache";

fn main() -> anyhow::Result<()> {
    let keep = std::env::args().skip(1).any(|a| a == "--keep");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config_path = root.join("config/demo.toml");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config = redirector::config::parse(&text, &config_path)?;
    let pin_path = config.datapath.pin_path.clone();
    // A previous `--keep` run may have left its pins.
    redirector::datapath::teardown(&pin_path)?;

    step("Building the topology: app host -> router -> east, west (redis-server in each)");
    let mut t = Topology::new(true);
    println!(
        "  namespaces: app {}, east {}, west {}",
        t.app.name, t.east.ns.name, t.west.ns.name
    );
    step("Starting `redirector run --config config/demo.toml` on the app host");
    let mut d = DaemonProc::start(&t, &text);
    d.wait_active(SERVICE, "east", Duration::from_secs(10));
    cli(&d, &["status"]);

    step("Client on the app host: GET region through the VIP 198.18.0.100:6379");
    for _ in 0..5 {
        print_reply(&t, None);
        std::thread::sleep(Duration::from_millis(200));
    }

    step("Killing redis-server in east (SIGKILL)");
    let killed = Instant::now();
    t.east.kill_redis();
    let took = poll_until(&t, "west", killed, Duration::from_secs(10))?;
    println!(
        "  => first reply from west {:.0} ms after the kill",
        took.as_secs_f64() * 1000.0
    );
    cli(&d, &["status"]);
    cli(&d, &["history"]);

    step("Restarting east: failback after failback_delay = 5s of continuous health");
    let restarted = Instant::now();
    start_redis(&mut t.east);
    let took = poll_until(&t, "east", restarted, Duration::from_secs(30))?;
    println!(
        "  => east answers again {:.1} s after its restart",
        took.as_secs_f64()
    );
    cli(&d, &["history"]);

    if keep {
        step("Leaving everything running (--keep)");
        let bin = redirector_tests::daemon::binary();
        println!(
            "  client:   ip netns exec {} redis-cli -h 198.18.0.100 get region",
            t.app.name
        );
        println!(
            "  status:   {} --socket {} status",
            bin.display(),
            d.socket.display()
        );
        println!(
            "  metrics:  ip netns exec {} curl -s 127.0.0.1:9477/metrics",
            t.app.name
        );
        println!(
            "  fault:    ip netns exec {} ip link set eth0 down",
            t.east.ns.name
        );
        println!("  daemon:   PID {} (log {})", d.pid(), d.log.display());
        println!(
            "  clean up: kill {}; {} teardown --config {}; ip netns del {} {} {} {}",
            d.pid(),
            bin.display(),
            config_path.display(),
            t.app.name,
            t.router.name,
            t.east.ns.name,
            t.west.ns.name
        );
        // Deliberately not dropped: dropping would remove them.
        std::mem::forget(d);
        std::mem::forget(t);
        return Ok(());
    }

    step("Tearing down");
    d.stop();
    drop(d);
    let removed = redirector::datapath::teardown(&pin_path)?;
    let _ = std::fs::remove_dir(
        config
            .admin
            .socket
            .parent()
            .unwrap_or(Path::new("/nonexistent")),
    );
    drop(t);
    println!(
        "  removed {} pins, the namespaces and the redis processes",
        removed.len()
    );
    Ok(())
}

fn step(what: &str) {
    println!("\n== {what}");
}

fn cli(d: &DaemonProc, args: &[&str]) {
    println!("$ redirector {}", args.join(" "));
    let out = d.cli(args);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

/// One GET through the VIP from the app host; prints who answered.
fn print_reply(t: &Topology, since: Option<Instant>) -> Option<String> {
    let started = Instant::now();
    let r = t.connect(vip(Family::V4)).and_then(|mut c: Client| {
        c.set_timeout(Duration::from_millis(300));
        c.get("region")
    });
    let at = since
        .map(|s| format!("t+{:>6.0} ms  ", s.elapsed().as_secs_f64() * 1000.0))
        .unwrap_or_default();
    match r {
        Ok(Some(region)) => {
            println!(
                "  {at}{region:<5} {:.2} ms",
                started.elapsed().as_secs_f64() * 1000.0
            );
            Some(region)
        }
        Ok(None) => {
            println!("  {at}(no region key)");
            None
        }
        Err(e) => {
            println!("  {at}error: {e}");
            None
        }
    }
}

/// Polls every 25 ms (printing changes only) until `want` answers.
fn poll_until(
    t: &Topology,
    want: &str,
    since: Instant,
    within: Duration,
) -> anyhow::Result<Duration> {
    let mut last_print = Instant::now() - Duration::from_secs(1);
    loop {
        let quiet = last_print.elapsed() < Duration::from_millis(500);
        let r = if quiet {
            t.connect(vip(Family::V4))
                .and_then(|mut c| {
                    c.set_timeout(Duration::from_millis(300));
                    c.get("region")
                })
                .ok()
                .flatten()
        } else {
            last_print = Instant::now();
            print_reply(t, Some(since))
        };
        if r.as_deref() == Some(want) {
            if quiet {
                print_reply(t, Some(since));
            }
            return Ok(since.elapsed());
        }
        if since.elapsed() > within {
            bail!("{want} did not answer within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

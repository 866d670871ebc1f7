//! The daemon's own cost: RSS and CPU while it checks 1,000 services every
//! 250 ms. Every member is a distinct endpoint: service i uses port
//! 10000+i on both member hosts, where nft redirects ports 10000-10999 to
//! the host's one redis-server (many Redis ports on a few hosts).
//!
//! HAProxy (Debian's) then health-checks the same 2,000 member endpoints
//! with the same timings (`option redis-check`, `inter 250ms fall 2 rise
//! 3`) in the same topology and is measured the same way, so the figure
//! that matters is the ratio of the two, from one run.

use std::time::{Duration, Instant};

use redirector_tests::{daemon::DaemonProc, topology::Topology};

#[derive(serde::Serialize)]
pub struct DaemonLoad {
    pub services: usize,
    pub checks_per_second: f64,
    pub rss_mb: f64,
    pub cpu_percent_of_one_core: f64,
    pub seconds: f64,
    /// HAProxy checking the same endpoints with the same timings.
    pub haproxy_rss_mb: f64,
    pub haproxy_cpu_percent_of_one_core: f64,
    /// The daemon again, while a hostile local load runs: /metrics scraped
    /// and `status` asked in a loop, and 100 half-open requests held on the
    /// metrics port (as in tests/src/tests/hostile.rs).
    pub hostile_rss_mb: f64,
    pub hostile_cpu_percent_of_one_core: f64,
    /// Requests the hostile load completed while measured.
    pub hostile_requests: u64,
}

/// Runs the hostile load against `d` until `stop`; returns requests done.
fn hostile_load(
    t: &Topology,
    d: &DaemonProc,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<u64>> {
    use std::{io::Write as _, net::TcpStream, sync::atomic::Ordering};
    let app = t.app.name.clone();
    let scraper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            redirector_tests::netns::enter(&format!("/run/netns/{app}"));
            let addr = METRICS.parse().expect("literal");
            let held: Vec<TcpStream> = (0..100)
                .filter_map(|_| {
                    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
                    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").ok()?;
                    Some(s)
                })
                .collect();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
                    let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
                }
                n += 1;
            }
            drop(held);
            n
        })
    };
    let socket = d.socket.clone();
    let status = std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let _ = std::process::Command::new(redirector_tests::daemon::binary())
                .arg("--socket")
                .arg(&socket)
                .arg("status")
                .output();
            n += 1;
        }
        n
    });
    vec![scraper, status]
}

const METRICS: &str = "127.0.0.1:9477";

/// One `listen` per service, its two members as servers (the second a
/// backup, as the failover comparison runs it), each on its own port.
fn haproxy_config(services: usize) -> String {
    let mut c = String::from(
        "global\n    maxconn 4096\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 60s\n    timeout server 60s\n    timeout check 250ms\n",
    );
    for i in 0..services {
        let port = 10000 + i;
        c += &format!(
            "listen s{i}\n    bind 127.0.0.1:{}\n    option redis-check\n    server east 198.18.1.10:{port} check inter 250ms fall 2 rise 3\n    server west 198.18.2.10:{port} check inter 250ms fall 2 rise 3 backup\n",
            20000 + i
        );
    }
    c
}

/// Peak RSS (MB) and CPU (% of one core) of `pid` over `seconds`.
fn sample(pid: u32, seconds: u64) -> (f64, f64, f64) {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc_sysconf(2) } as f64; // _SC_CLK_TCK
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    let mut rss = 0;
    for _ in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        rss = rss.max(rss_kb(pid));
    }
    let (elapsed, c1) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid));
    (
        rss as f64 / 1024.0,
        c1.saturating_sub(c0) as f64 / hz / elapsed * 100.0,
        elapsed,
    )
}

fn measure_haproxy(t: &Topology, services: usize, seconds: u64) -> anyhow::Result<(f64, f64)> {
    use anyhow::Context as _;
    let dir = std::env::temp_dir().join(redirector_tests::unique("haproxy-load"));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(services))?;
    let log = std::fs::File::create(dir.join("haproxy.log"))?;
    // `ip netns exec` execs haproxy in place, so the child's PID is its.
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &t.app.name, "haproxy", "-db", "-f"])
        .arg(&cfg)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting haproxy")?;
    std::thread::sleep(Duration::from_secs(2));
    let exited = child.try_wait()?;
    let result = match exited {
        Some(st) => Err(anyhow::anyhow!(
            "haproxy exited ({st}): {}",
            std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default()
        )),
        None => {
            let (rss, cpu, _) = sample(child.id(), seconds);
            Ok((rss, cpu))
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn config(services: usize) -> String {
    let mut c = String::from(
        "[datapath]\ninterfaces = [\"eth0\"]\npin_path = \"{pin_path}\"\n\n[admin]\nsocket = \"{socket}\"\nmetrics = \"127.0.0.1:9477\"\n",
    );
    for i in 0..services {
        c += &format!(
            "\n[[services]]\nname = \"s{i}\"\nvip = \"198.19.{}.{}:6379\"\n[services.check]\nkind = \"redis-ping\"\ninterval = \"250ms\"\ntimeout = \"250ms\"\n[[services.members]]\nname = \"east\"\naddr = \"198.18.1.10:{port}\"\n[[services.members]]\nname = \"west\"\naddr = \"198.18.2.10:{port}\"\n",
            i / 250,
            i % 250 + 1,
            port = 10000 + i
        );
    }
    c
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: utime is the 14th, stime the 15th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn measure(services: usize, seconds: u64) -> anyhow::Result<DaemonLoad> {
    let t = Topology::new(true);
    for ns in [&t.east.ns, &t.west.ns] {
        ns.cmd("nft add table ip rdtports");
        ns.cmd("nft add chain ip rdtports pre { type nat hook prerouting priority -100 ; }");
        ns.cmd("nft add rule ip rdtports pre tcp dport 10000-10999 redirect to :6379");
    }
    let mut d = DaemonProc::start(&t, &config(services));
    // Let every service settle before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let (rss_mb, cpu, elapsed) = sample(d.pid(), seconds);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = hostile_load(&t, &d, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let (hostile_rss_mb, hostile_cpu, _) = sample(d.pid(), seconds);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let hostile_requests = load.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    d.stop();
    let (haproxy_rss_mb, haproxy_cpu) = measure_haproxy(&t, services, seconds)?;
    Ok(DaemonLoad {
        services,
        checks_per_second: (services * 2) as f64 / 0.25,
        rss_mb,
        cpu_percent_of_one_core: cpu,
        seconds: elapsed,
        haproxy_rss_mb,
        haproxy_cpu_percent_of_one_core: haproxy_cpu,
        hostile_rss_mb,
        hostile_cpu_percent_of_one_core: hostile_cpu,
        hostile_requests,
    })
}

unsafe extern "C" {
    #[link_name = "sysconf"]
    fn libc_sysconf(name: i32) -> i64;
}

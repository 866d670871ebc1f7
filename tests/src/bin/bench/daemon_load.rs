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
}

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
        "[datapath]\ninterfaces = [\"eth0\"]\npin_path = \"{pin_path}\"\n\n[admin]\nsocket = \"{socket}\"\nmetrics = \"off\"\n",
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
    })
}

unsafe extern "C" {
    #[link_name = "sysconf"]
    fn libc_sysconf(name: i32) -> i64;
}

//! The daemon's own cost: RSS and CPU while it checks 1,000 services every
//! 250 ms. Every member is a distinct endpoint: service i uses port
//! 10000+i on both member hosts, where nft redirects ports 10000-10999 to
//! the host's one redis-server (many Redis ports on a few hosts).

use std::time::{Duration, Instant};

use redirector_tests::{daemon::DaemonProc, topology::Topology};

#[derive(serde::Serialize)]
pub struct DaemonLoad {
    pub services: usize,
    pub checks_per_second: f64,
    pub rss_mb: f64,
    pub cpu_percent_of_one_core: f64,
    pub seconds: f64,
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
    let d = DaemonProc::start(&t, &config(services));
    // Let every service settle before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let pid = d.pid();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc_sysconf(2) } as f64; // _SC_CLK_TCK
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    let mut rss = 0;
    for _ in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        rss = rss.max(rss_kb(pid));
    }
    let (elapsed, c1) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid));
    Ok(DaemonLoad {
        services,
        checks_per_second: (services * 2) as f64 / 0.25,
        rss_mb: rss as f64 / 1024.0,
        cpu_percent_of_one_core: (c1 - c0) as f64 / hz / elapsed * 100.0,
        seconds: elapsed,
    })
}

unsafe extern "C" {
    #[link_name = "sysconf"]
    fn libc_sysconf(name: i32) -> i64;
}

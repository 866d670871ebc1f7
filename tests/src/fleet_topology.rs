//! The fleet test topology (issue 13): several application hosts, each its
//! own namespace running its own daemon (own pin directory, own admin
//! socket), that share two members (east, west: real redis-server) and a
//! real 3-member etcd cluster, all behind one router.
//!
//! ```text
//!  h1 eth0 198.18.51.2 ─┐               ┌─ east eth0 198.18.41.10 (redis)
//!  h2 eth0 198.18.52.2 ─┤               ├─ west eth0 198.18.42.10 (redis)
//!  …                    ├── router ─────┤
//!  hN eth0 198.18.5N.2 ─┘  (faults)     └─ 198.18.30.254 ── etcd hub br0
//!  (2001:db8:5N::2)                          etcd 198.18.30.10 … .12
//! ```
//!
//! Each host reaches the VIP (198.18.0.100, on no link) through its default
//! route, as in [`crate::topology`]: its daemon's TC program, attached to
//! its own `eth0`, rewrites the packets.
//!
//! Faults are nftables drops on the router, per host, both ways. Not in the
//! host's namespace: the host's TC egress rewrites a VIP packet after the
//! host's netfilter hooks and its TC ingress rewrites the reply before
//! them, so a rule there sees the VIP and would let application traffic to
//! a "partitioned" member through. On the router the packets carry the
//! member's address, so checks and application traffic fail alike.
//!
//! Everything goes on drop, even after a panic: the daemons (SIGKILL by
//! PID) and their pins, redis (by PID), the namespaces with their veths,
//! and the etcd cluster with its tmpfs data.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use redirector::status::FleetStatus;

use crate::{
    daemon::DaemonProc,
    etcd::EtcdCluster,
    netns::NetNs,
    pins::PinDir,
    resp::Client,
    topology::{
        self, Family, Member, app_host, cache_config, member, start_redis, until_region_from,
        wait_reachable,
    },
    unique,
};

/// The most application hosts the address plan has room for.
const MAX_HOSTS: usize = 40;
/// The nftables table on the router holding the fault sets.
const FAULTS: &str = "rdt_faults";
/// The etcd members' subnet (the hub's bridge).
const ETCD_SUBNET: &str = "198.18.30.0/24";
/// Bound on a fleet-wide move: local detection (redis-ping every 250 ms,
/// fall 2), the engine's round trips and, after an etcd leader's death,
/// an election (1 s) on a loaded 2-core machine.
pub const FLEET_BOUND: Duration = Duration::from_secs(10);
/// `[fleet] detach_timeout` of [`FleetTopology::fleet_config`].
pub const DETACH_TIMEOUT_MS: u64 = 3000;
/// Bound on one host's own move (as in the single-host tests).
const HOST_BOUND: Duration = Duration::from_secs(5);

/// One application host: its fleet name (`h1` …), namespace, pins and
/// daemon (None until [`FleetTopology::start_daemons`]; a killed daemon
/// stays, to be restarted).
pub struct FleetHost {
    /// Field order is drop order: the daemon first, then the namespace,
    /// then the pins (as in [`topology::Topology`]).
    pub daemon: Option<DaemonProc>,
    pub ns: NetNs,
    pub pins: PinDir,
    /// The host's name in the fleet (`[fleet] host`).
    pub name: String,
    /// The router's side of the host's link.
    router_dev: String,
}

impl FleetHost {
    /// The running (or killed) daemon; panics if none was started.
    pub fn daemon(&self) -> &DaemonProc {
        self.daemon.as_ref().expect("daemon started")
    }

    /// A new connection from this host.
    pub fn connect(&self, addr: SocketAddr) -> std::io::Result<Client> {
        self.ns.run(move || Client::connect(addr))
    }

    /// The nftables set names holding what this host is cut off from.
    fn sets(&self) -> [String; 2] {
        [format!("{}_v4", self.name), format!("{}_v6", self.name)]
    }
}

pub struct FleetTopology {
    // Field order is drop order: the hosts (daemons, namespaces, pins),
    // the members (redis, namespaces), the router, then etcd.
    pub hosts: Vec<FleetHost>,
    pub east: Member,
    pub west: Member,
    pub router: NetNs,
    pub etcd: EtcdCluster,
    /// The etcd key prefix of this topology's fleet (`[fleet] prefix`).
    pub prefix: String,
}

impl FleetTopology {
    /// Builds the etcd cluster, the members with redis running, and `hosts`
    /// application hosts (no daemon yet); waits (bounded) until every host
    /// reaches both members and every etcd member.
    pub fn new(hosts: usize) -> Self {
        assert!((1..=MAX_HOSTS).contains(&hosts), "{hosts} hosts");
        let etcd = EtcdCluster::new();
        let router = topology::router();
        etcd.attach_router(&router, "to-etcd");
        let east = member("east", 41, &router);
        let west = member("west", 42, &router);
        let mut t = Self {
            hosts: Vec::new(),
            east,
            west,
            router,
            etcd,
            prefix: format!("/{}", unique("fleet")),
        };
        for i in 0..hosts {
            let name = format!("h{}", i + 1);
            let ns = NetNs::new(&unique(&name));
            let router_dev = format!("to-{name}");
            app_host(&ns, &t.router, &router_dev, 51 + i as u8);
            t.hosts.push(FleetHost {
                daemon: None,
                ns,
                pins: PinDir::new(&format!("fleet{name}")),
                name,
                router_dev,
            });
        }
        t.faults_table();
        start_redis(&mut t.east);
        start_redis(&mut t.west);
        for h in &t.hosts {
            wait_reachable(&h.ns, [&t.east, &t.west]);
            t.wait_etcd_reachable(h);
        }
        t
    }

    /// One set of cut-off addresses per host and family, and the rules
    /// that drop forwarded packets from the host to them and back.
    fn faults_table(&self) {
        let mut rules = format!(
            "table inet {FAULTS} {{\n chain forward {{\n  \
             type filter hook forward priority 0; policy accept;\n"
        );
        let mut sets = String::new();
        for h in &self.hosts {
            let [v4, v6] = h.sets();
            let dev = &h.router_dev;
            sets.push_str(&format!(
                " set {v4} {{ type ipv4_addr; flags interval; }}\n \
                 set {v6} {{ type ipv6_addr; flags interval; }}\n"
            ));
            rules.push_str(&format!(
                "  iifname \"{dev}\" ip daddr @{v4} drop\n  \
                 oifname \"{dev}\" ip saddr @{v4} drop\n  \
                 iifname \"{dev}\" ip6 daddr @{v6} drop\n  \
                 oifname \"{dev}\" ip6 saddr @{v6} drop\n"
            ));
        }
        // Sets before the chain that names them.
        let ruleset = rules.replacen(" chain forward", &format!("{sets} chain forward"), 1);
        nft_script(&self.router, &format!("{ruleset} }}\n}}\n"));
    }

    /// Waits (bounded, 10 s) until host `h` opens a TCP connection to
    /// every etcd member's client port.
    fn wait_etcd_reachable(&self, h: &FleetHost) {
        for ip in self.etcd.members.iter().map(|m| m.ip.clone()) {
            let addr: SocketAddr = format!("{ip}:2379").parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !h.ns.run(move || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
            }) {
                assert!(
                    Instant::now() < deadline,
                    "etcd {addr} unreachable from {}",
                    h.name
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The `[fleet]` table for host `i`: the etcd endpoints, this
    /// topology's prefix and the host's name, then `extra` (more keys).
    pub fn fleet_section(&self, i: usize, extra: &str) -> String {
        let endpoints = self
            .etcd
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "[fleet]\nendpoints = [{endpoints}]\nprefix = \"{}\"\nhost = \"{}\"\n{extra}\n",
            self.prefix, self.hosts[i].name
        )
    }

    /// The "cache" service of the other e2e tests
    /// ([`topology::cache_config`]: east preferred, redis-ping checks every
    /// 250 ms, fall 2) on this topology's member addresses, with
    /// `extra_service` (more keys of the service, e.g. `fleet = true`).
    pub fn service_config(&self, extra_service: &str) -> String {
        cache_config(extra_service, "kind = \"redis-ping\"")
            .replace("198.18.1.10:6379", &self.east.addr(Family::V4).to_string())
            .replace("198.18.2.10:6379", &self.west.addr(Family::V4).to_string())
    }

    /// Host `i`'s config: "cache" as a fleet service (failback_delay 2 s),
    /// leases of 2 s, majority quorum, `barrier` and `on_detach` as given,
    /// detach_timeout [`DETACH_TIMEOUT_MS`]. With `barrier = "ack"` the
    /// service's drain_timeout is 0 s (no overlap).
    pub fn fleet_config(&self, i: usize, on_detach: &str, barrier: &str) -> String {
        let fleet = format!(
            "lease_ttl = \"2s\"\ntimeout = \"500ms\"\nquorum = \"majority\"\n\
             barrier = \"{barrier}\"\non_detach = \"{on_detach}\"\n\
             detach_timeout = \"{DETACH_TIMEOUT_MS}ms\""
        );
        let mut service = self.service_config("fleet = true");
        if barrier == "ack" {
            service = service.replace("drain_timeout = \"1s\"", "drain_timeout = \"0s\"");
        }
        format!("{}\n{}", service, self.fleet_section(i, &fleet))
    }

    /// Starts a daemon on every host, host `i` on `config(i)` (TOML;
    /// `{socket}` and `{pin_path}` are filled in per host), each waited for
    /// until its admin socket answers.
    pub fn start_daemons(&mut self, config: impl Fn(&Self, usize) -> String) {
        for i in 0..self.hosts.len() {
            let text = config(self, i);
            let h = &mut self.hosts[i];
            assert!(h.daemon.is_none(), "{} already has a daemon", h.name);
            h.daemon = Some(DaemonProc::start_in(&h.ns, &h.pins, &text));
        }
    }

    /// Host `i`'s daemon.
    pub fn daemon(&self, i: usize) -> &DaemonProc {
        self.hosts[i].daemon()
    }

    /// SIGKILLs host `i`'s daemon, as a crash would: its pins (and so its
    /// data path) stay, its etcd lease runs out.
    pub fn kill_daemon(&mut self, i: usize) {
        self.hosts[i]
            .daemon
            .as_mut()
            .expect("daemon started")
            .kill();
    }

    /// Starts host `i`'s daemon again on the same config and pins; waits
    /// until its admin socket answers.
    pub fn restart_daemon(&mut self, i: usize) {
        self.hosts[i]
            .daemon
            .as_mut()
            .expect("daemon started")
            .spawn();
    }

    /// The member called `name` (east or west).
    pub fn member(&mut self, name: &str) -> &mut Member {
        match name {
            "east" => &mut self.east,
            "west" => &mut self.west,
            _ => panic!("no member {name}"),
        }
    }

    /// SIGKILLs member `name`'s redis-server.
    pub fn kill_redis(&mut self, name: &str) {
        self.member(name).kill_redis();
    }

    /// Starts member `name`'s redis-server again (waits until it answers).
    pub fn restart_redis(&mut self, name: &str) {
        start_redis(self.member(name));
    }

    /// Host `i` and member `name` no longer reach each other (both
    /// families, both ways): its checks and its application traffic to
    /// that member are dropped.
    pub fn partition(&mut self, i: usize, name: &str) {
        let m = self.member(name);
        let (v4, v6) = (m.v4.to_string(), m.v6.to_string());
        self.set_elements(i, "add", &v4, &v6);
    }

    /// Undoes [`partition`](Self::partition).
    pub fn heal(&mut self, i: usize, name: &str) {
        let m = self.member(name);
        let (v4, v6) = (m.v4.to_string(), m.v6.to_string());
        self.set_elements(i, "delete", &v4, &v6);
    }

    /// Host `i` no longer reaches any etcd member (and they not it); its
    /// members and the other hosts stay reachable.
    pub fn cut_from_etcd(&self, i: usize) {
        self.set_elements(i, "add", ETCD_SUBNET, "");
    }

    /// Undoes [`cut_from_etcd`](Self::cut_from_etcd).
    pub fn rejoin_etcd(&self, i: usize) {
        self.set_elements(i, "delete", ETCD_SUBNET, "");
    }

    /// `nft add|delete element` of `v4` (and `v6`, unless empty) in host
    /// `i`'s cut-off sets.
    fn set_elements(&self, i: usize, op: &str, v4: &str, v6: &str) {
        let [s4, s6] = self.hosts[i].sets();
        for (set, addr) in [(s4, v4), (s6, v6)] {
            if !addr.is_empty() {
                self.router
                    .exec(&["nft", op, "element", "inet", FAULTS, &set, "{", addr, "}"]);
            }
        }
    }

    /// Which member serves host `i` through the VIP, if any (see
    /// [`topology::region_via_vip`]).
    pub fn region(&self, i: usize) -> Option<String> {
        topology::region_via_vip(&self.hosts[i].ns)
    }
}

/// Waiting on the hosts' daemons: their fleet view, and every host on
/// east before a fault (so the fault makes a failover, not a cold start).
impl FleetTopology {
    /// Host `i`'s fleet view of "cache" (its first service).
    pub fn fleet(&self, i: usize) -> FleetStatus {
        self.daemon(i).status().services[0]
            .fleet
            .clone()
            .expect("cache is a fleet service")
    }

    /// Polls host `i`'s fleet view (every 50 ms, bounded by `within`)
    /// until `ok` holds; panics with the last view and the host's log.
    pub fn wait_fleet(
        &self,
        i: usize,
        what: &str,
        within: Duration,
        ok: impl Fn(&FleetStatus) -> bool,
    ) -> FleetStatus {
        let start = Instant::now();
        loop {
            let f = self.fleet(i);
            if ok(&f) {
                return f;
            }
            assert!(
                start.elapsed() < within,
                "{}: not {what} within {within:?}: {f:?}\n{}",
                self.hosts[i].name,
                self.daemon(i).log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every host's daemon serves from east, through the VIP
    /// too, and has confirmed east up.
    pub fn wait_all_on_east(&self) {
        for (i, h) in self.hosts.iter().enumerate() {
            self.daemon(i).wait_active("cache", "east", HOST_BOUND);
            until_region_from(&h.ns, "east", HOST_BOUND);
            self.daemon(i).wait_east_up();
        }
    }

    /// Waits until each of `hosts` (one fleet: the same prefix) is
    /// attached, follows and has applied the fleet's decision, east, and
    /// sees every one of `hosts` live and seeing east up.
    pub fn wait_settled_on_east(&self, hosts: impl IntoIterator<Item = usize> + Clone) {
        let n = hosts.clone().into_iter().count();
        for i in hosts {
            self.wait_fleet(i, "settled on east", FLEET_BOUND, |f| {
                f.attached
                    && f.following
                    && f.epoch > 0
                    && f.applied_epoch == f.epoch
                    && f.active.as_deref() == Some("east")
                    && f.hosts.len() == n
                    && f.hosts
                        .iter()
                        .all(|h| h.members.get("east").map(String::as_str) == Some("up"))
            });
        }
    }
}

/// Runs `nft -f -` in `ns` with `script` on its stdin; panics with nft's
/// error if it fails.
fn nft_script(ns: &NetNs, script: &str) {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nft (is nftables installed? run `cargo xtask setup`)");
    child
        .stdin
        .take()
        .expect("nft stdin")
        .write_all(script.as_bytes())
        .expect("write the nft script");
    let out = child.wait_with_output().expect("wait for nft");
    assert!(
        out.status.success(),
        "nft -f failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

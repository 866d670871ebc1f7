//! The end-to-end test topology: an application host and two members (east,
//! west) behind a router, each member running a real redis-server that
//! holds `region = <its name>`.
//!
//! ```text
//!  app eth0 198.18.10.2 ── router ── east eth0 198.18.1.10 (redis)
//!  2001:db8:10::2            │
//!                            └────── west eth0 198.18.2.10 (redis)
//! ```
//!
//! All links have MTU 1500 unless [`Topology::narrow_member_links`] lowers
//! the router's side toward the members.
//!
//! The VIP (198.18.0.100 / 2001:db8:100::100) is not on any link; the app
//! host reaches it through its default route, so the kernel resolves the
//! router's MAC and the packet reaches TC egress, where it is rewritten.
//! Everything is removed on drop: redis processes (by PID), namespaces (and
//! with them the veths), and the pin directory.
//!
//! Its pieces (router, member, application host link) also build
//! [`crate::fleet_topology`].

use std::{
    net::{IpAddr, SocketAddr},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    netns::{NetNs, veth},
    pins::PinDir,
    resp::Client,
    unique,
};

pub const REDIS_PORT: u16 = 6379;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

pub struct Member {
    pub name: &'static str,
    pub ns: NetNs,
    pub v4: IpAddr,
    pub v6: IpAddr,
    pub redis: Option<Child>,
    pub redis_args: Vec<String>,
}

impl Member {
    /// The `--requirepass` value among the redis arguments, if any.
    pub fn password(&self) -> Option<String> {
        let i = self.redis_args.iter().position(|a| a == "--requirepass")?;
        self.redis_args.get(i + 1).cloned()
    }

    /// Kills redis-server (SIGKILL) and reaps it.
    pub fn kill_redis(&mut self) {
        if let Some(mut c) = self.redis.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` to redis-server (e.g. SIGSTOP / SIGCONT).
    pub fn signal_redis(&self, sig: i32) {
        let pid = self.redis.as_ref().expect("redis running").id();
        // SAFETY: signalling a child we started and have not reaped.
        assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    }

    pub fn addr(&self, f: Family) -> SocketAddr {
        SocketAddr::new(if f == Family::V4 { self.v4 } else { self.v6 }, REDIS_PORT)
    }
}

pub struct Topology {
    // Field order is drop order: members' redis first (Member::drop), then
    // the namespaces, then the pins.
    pub east: Member,
    pub west: Member,
    pub app: NetNs,
    pub router: NetNs,
    pub pins: PinDir,
}

pub fn vip(f: Family) -> SocketAddr {
    match f {
        Family::V4 => "198.18.0.100:6379".parse().unwrap(),
        Family::V6 => "[2001:db8:100::100]:6379".parse().unwrap(),
    }
}

impl Topology {
    /// Builds the namespaces and starts both redis servers. `tx_offload`
    /// sets TX checksum offload on every veth end.
    pub fn new(tx_offload: bool) -> Self {
        Self::with_redis_args(tx_offload, &[])
    }

    /// Like `new`, with extra redis-server arguments for both members
    /// (e.g. `--requirepass`).
    pub fn with_redis_args(tx_offload: bool, redis_args: &[&str]) -> Self {
        let app = NetNs::new(&unique("app"));
        let router = router();
        let mut east = member("east", 1, &router);
        let mut west = member("west", 2, &router);
        for m in [&mut east, &mut west] {
            m.redis_args = redis_args.iter().map(|a| a.to_string()).collect();
        }
        app_host(&app, &router, "to-app", 10);
        let offload = if tx_offload { "on" } else { "off" };
        for (ns, dev) in [
            (&app, "eth0"),
            (&router, "to-app"),
            (&router, "to-east"),
            (&router, "to-west"),
            (&east.ns, "eth0"),
            (&west.ns, "eth0"),
        ] {
            ns.exec(&["ethtool", "-K", dev, "tx", offload]);
        }
        let mut t = Self {
            east,
            west,
            app,
            router,
            pins: PinDir::new("e2e"),
        };
        t.start_redis_all();
        wait_reachable(&t.app, [&t.east, &t.west]);
        t
    }

    fn start_redis_all(&mut self) {
        for m in [&mut self.east, &mut self.west] {
            start_redis(m);
        }
    }

    /// Narrows the router's links toward the members to `mtu` bytes while
    /// every host keeps 1500, like a VPN or overlay hop between regions:
    /// the router answers larger packets (Linux TCP sets DF) with
    /// "fragmentation needed" / "packet too big". Namespaces are fresh per
    /// topology, so no host knows the smaller path MTU beforehand.
    pub fn narrow_member_links(&self, mtu: u32) {
        for m in [&self.east, &self.west] {
            self.router
                .cmd(&format!("ip link set to-{} mtu {mtu}", m.name));
        }
    }

    /// Opens a connection from the application host.
    pub fn connect(&self, addr: SocketAddr) -> std::io::Result<Client> {
        self.app.run(move || Client::connect(addr))
    }
}

/// A namespace that forwards between its links (both families).
pub(crate) fn router() -> NetNs {
    let router = NetNs::new(&unique("rtr"));
    router.cmd("sysctl -qw net.ipv4.ip_forward=1");
    router.cmd("sysctl -qw net.ipv6.conf.all.forwarding=1");
    router
}

/// Links application host `app` (its `eth0`) to `router` (as
/// `router_dev`) on subnet `n`: the host is 198.18.n.2 / 2001:db8:n::2,
/// the router .1 / ::1 and the host's default route. The VIP is on no
/// link, so the host reaches it through that route and the packet goes
/// through TC egress, where the daemon rewrites it.
pub(crate) fn app_host(app: &NetNs, router: &NetNs, router_dev: &str, n: u8) {
    veth(app, "eth0", router, router_dev);
    host(
        app,
        "eth0",
        &format!("198.18.{n}.2/24"),
        &format!("2001:db8:{n}::2/64"),
    );
    app.cmd(&format!("ip route add default via 198.18.{n}.1"));
    app.cmd(&format!("ip -6 route add default via 2001:db8:{n}::1"));
    host(
        router,
        router_dev,
        &format!("198.18.{n}.1/24"),
        &format!("2001:db8:{n}::1/64"),
    );
}

/// Waits (bounded) until `from` reaches both members directly over both
/// families, so neighbour discovery is done before a test.
pub(crate) fn wait_reachable(from: &NetNs, members: [&Member; 2]) {
    let targets: Vec<SocketAddr> = members
        .iter()
        .flat_map(|m| [m.addr(Family::V4), m.addr(Family::V6)])
        .collect();
    let auth = members[0].password();
    for addr in targets {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !from.run({
            let auth = auth.clone();
            move || ping(addr, auth.as_deref())
        }) {
            assert!(
                Instant::now() < deadline,
                "{addr} unreachable from {}",
                from.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Addresses `dev` in `ns` and brings it up.
pub(crate) fn host(ns: &NetNs, dev: &str, v4: &str, v6: &str) {
    ns.cmd(&format!("ip addr add {v4} dev {dev}"));
    ns.cmd(&format!("ip -6 addr add {v6} dev {dev} nodad"));
    ns.cmd(&format!("ip link set {dev} up"));
}

/// Member `name` on subnet `n` behind `router`: 198.18.n.10 /
/// 2001:db8:n::10, its redis not started yet.
pub(crate) fn member(name: &'static str, n: u8, router: &NetNs) -> Member {
    let ns = NetNs::new(&unique(name));
    let rdev = format!("to-{name}");
    veth(&ns, "eth0", router, &rdev);
    let v4 = format!("198.18.{n}.10");
    let v6 = format!("2001:db8:{n}::10");
    host(&ns, "eth0", &format!("{v4}/24"), &format!("{v6}/64"));
    ns.cmd(&format!("ip route add default via 198.18.{n}.1"));
    ns.cmd(&format!("ip -6 route add default via 2001:db8:{n}::1"));
    host(
        router,
        &rdev,
        &format!("198.18.{n}.1/24"),
        &format!("2001:db8:{n}::1/64"),
    );
    Member {
        name,
        ns,
        v4: v4.parse().unwrap(),
        v6: v6.parse().unwrap(),
        redis: None,
        redis_args: Vec::new(),
    }
}

/// The "cache" service the end-to-end tests share (east preferred over
/// west, redis-ping-style checks every 250 ms, fall 2, rise 3,
/// failback_delay 2 s, drain_timeout 1 s) on this topology's addresses,
/// with `extra_service` (more keys of the service) and `check` (more keys
/// of its `[services.check]`). `{socket}` and `{pin_path}` are left for
/// [`crate::daemon::DaemonProc`] to fill in.
pub fn cache_config(extra_service: &str, check: &str) -> String {
    format!(
        r#"
[datapath]
interfaces = ["eth0"]
ingress = "auto"
pin_path = "{{pin_path}}"
conntrack_entries = 16384

[admin]
socket = "{{socket}}"
metrics = "127.0.0.1:9477"

[[services]]
name = "cache"
vip = "198.18.0.100:6379"
failback_delay = "2s"
drain_timeout = "1s"
{extra_service}

[services.check]
interval = "250ms"
timeout = "200ms"
fast_interval = "50ms"
rise = 3
fall = 2
{check}

[[services.members]]
name = "east"
addr = "198.18.1.10:6379"
priority = 1

[[services.members]]
name = "west"
addr = "198.18.2.10:6379"
priority = 2
"#
    )
}

/// Polls new connections through the VIP from the application host whose
/// namespace is `ns` (every 20 ms; panics after `within`) until `want`
/// answers; returns how long that took.
pub fn until_region_from(ns: &NetNs, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if region_via_vip(ns).as_deref() == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{want} did not answer through the VIP from {} within {within:?}",
            ns.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// GET region over a new connection from `ns` through the VIP (IPv4),
/// giving up after 300 ms (a hung member must not stall a polling loop):
/// which member serves that host, if any.
pub fn region_via_vip(ns: &NetNs) -> Option<String> {
    let mut c = ns.run(|| Client::connect(vip(Family::V4))).ok()?;
    c.set_timeout(Duration::from_millis(300));
    c.get("region").ok().flatten()
}

/// Whether redis at `addr` answers PING (after AUTH when a password is set).
pub(crate) fn ping(addr: SocketAddr, password: Option<&str>) -> bool {
    Client::connect(addr)
        .and_then(|mut c| {
            c.auth(password)?;
            c.command(&["PING"])
        })
        .is_ok()
}

/// Starts redis-server in the member's namespace and waits (bounded) until
/// it answers, then stores `region = <name>`.
pub fn start_redis(m: &mut Member) {
    let child = Command::new("ip")
        .args(["netns", "exec", &m.ns.name, "redis-server"])
        .args(["--bind", &m.v4.to_string(), &m.v6.to_string()])
        .args(["--port", &REDIS_PORT.to_string()])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .args(["--daemonize", "no", "--logfile", ""])
        .args(&m.redis_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server (is redis-server installed? run `cargo xtask setup`)");
    m.redis = Some(child);
    let addr = m.addr(Family::V4);
    let deadline = Instant::now() + Duration::from_secs(10);
    let auth = m.password();
    loop {
        let auth = auth.clone();
        if m.ns.run(move || ping(addr, auth.as_deref())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redis in {} did not start",
            m.ns.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let name = m.name;
    let auth = m.password();
    m.ns.run(move || {
        let mut c = Client::connect(addr).unwrap();
        c.auth(auth.as_deref()).unwrap();
        c.command(&["SET", "region", name]).unwrap();
    });
}

impl Drop for Member {
    fn drop(&mut self) {
        // `ip netns exec` execs redis-server, so this PID is redis itself.
        // SIGKILL also ends a SIGSTOPped process.
        self.kill_redis();
    }
}

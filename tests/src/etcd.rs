//! A real etcd cluster for the fleet tests: N members, each in its own
//! network namespace on one bridge, data on a tmpfs the harness mounts.
//! Members can be killed, stopped and restarted; on drop everything goes:
//! the processes (SIGKILL by PID), the tmpfs, the namespaces and veths.
//! With [`EtcdCluster::with_tls`] the members serve clients over https
//! and require a client certificate (peers still talk plain http).
//!
//! ```text
//!  hub: br0 198.18.30.1/24 (etcdctl runs here)
//!   ├── m0 ── member 0 eth0 198.18.30.10  (client :2379, peer :2380)
//!   ├── m1 ── member 1 eth0 198.18.30.11
//!   ├── m2 ── member 2 eth0 198.18.30.12
//!   └── rtr ── a router's 198.18.30.254 (optional: `attach_router`)
//! ```

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    netns::{NetNs, enter, require_root, sh, veth},
    unique,
};

/// Raft timing for the members: fast enough that a test sees an election
/// within about a second, slow enough for a loaded 2-core machine.
const HEARTBEAT_MS: &str = "100";
const ELECTION_MS: &str = "1000";
/// How long a started cluster (or member) may take to report healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(10);
/// How long a stopped member gets between SIGTERM and SIGKILL: the last
/// member left can ignore SIGTERM once its peers are gone.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// etcdctl's own bounds, so no etcdctl call can hang a test.
const DIAL_TIMEOUT: &str = "--dial-timeout=1s";
const COMMAND_TIMEOUT: &str = "--command-timeout=2s";

/// A router's address on the hub's bridge ([`EtcdCluster::attach_router`]).
pub const ROUTER_IP: &str = "198.18.30.254";

/// The address of member `i` on the hub's bridge.
pub fn member_ip(i: usize) -> String {
    format!("198.18.30.{}", 10 + i)
}

/// The files of a cluster serving clients over https: the members'
/// certificate (valid for their addresses, [`member_ip`]) and key, and
/// the CA that signed it and the client certificates the members accept;
/// etcdctl presents `client_cert`.
pub struct ClusterTls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// One etcd member: its namespace, address and process (None when down).
pub struct EtcdMember {
    pub ns: NetNs,
    pub ip: String,
    /// `https` with [`ClusterTls`], else `http`.
    scheme: &'static str,
    process: Option<Child>,
}

impl EtcdMember {
    /// The client URL etcdctl and the daemons use.
    pub fn endpoint(&self) -> String {
        format!("{}://{}:2379", self.scheme, self.ip)
    }

    fn peer_url(&self) -> String {
        format!("http://{}:2380", self.ip)
    }

    /// The PID of the running etcd, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }
}

/// A running etcd cluster; see the module header for its layout.
pub struct EtcdCluster {
    // Field order is drop order after Drop::drop has stopped the members:
    // the member namespaces (and their veths), then the hub.
    pub members: Vec<EtcdMember>,
    pub hub: NetNs,
    /// Unique name of this cluster: the cluster token and the data mount.
    pub name: String,
    /// The tmpfs mount holding one data directory per member.
    data: PathBuf,
    /// Serving clients over https (and etcdctl's files), if so.
    tls: Option<ClusterTls>,
}

impl EtcdCluster {
    /// A healthy 3-member cluster.
    pub fn new() -> Self {
        Self::with_members(3)
    }

    /// A healthy cluster of `n` members (at most 200); panics if it is not
    /// healthy within 10 s, with the members' logs.
    pub fn with_members(n: usize) -> Self {
        Self::start(n, None)
    }

    /// Like [`Self::with_members`], the members serving clients over
    /// https with `tls`'s certificate and requiring a client certificate
    /// signed by its CA (`--client-cert-auth`).
    pub fn with_tls(n: usize, tls: ClusterTls) -> Self {
        Self::start(n, Some(tls))
    }

    fn start(n: usize, tls: Option<ClusterTls>) -> Self {
        assert!((1..=200).contains(&n), "{n} etcd members");
        require_root("network namespaces, a tmpfs mount and etcd");
        assert!(
            Command::new("etcd").arg("--version").output().is_ok(),
            "etcd is not installed: run `cargo xtask setup`"
        );
        let name = unique("etcd");
        let hub = NetNs::new(&unique("etcdhub"));
        hub.cmd("ip link add br0 type bridge");
        hub.cmd("ip addr add 198.18.30.1/24 dev br0");
        hub.cmd("ip link set br0 up");
        let data = std::env::temp_dir().join(&name);
        // Built before the members so Drop unmounts it if anything below
        // panics; the members are pushed as they are made.
        let mut cluster = Self {
            members: Vec::new(),
            hub,
            name,
            data,
            tls,
        };
        std::fs::create_dir_all(&cluster.data).expect("create the etcd data mount point");
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=1g,mode=0700",
            "tmpfs",
            cluster.data.to_str().unwrap(),
        ]);
        for i in 0..n {
            let member = cluster.member_ns(i);
            cluster.members.push(member);
        }
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy();
        cluster
    }

    /// Creates member `i`'s namespace, linked to the hub's bridge.
    fn member_ns(&self, i: usize) -> EtcdMember {
        let ns = NetNs::new(&unique(&format!("etcd{i}")));
        let port = format!("m{i}");
        veth(&ns, "eth0", &self.hub, &port);
        self.hub.cmd(&format!("ip link set {port} master br0 up"));
        let ip = member_ip(i);
        ns.cmd(&format!("ip addr add {ip}/24 dev eth0"));
        ns.cmd("ip link set eth0 up");
        EtcdMember {
            ns,
            ip,
            scheme: if self.tls.is_some() { "https" } else { "http" },
            process: None,
        }
    }

    /// Links `router` to the hub's bridge (its side `dev`, address
    /// [`ROUTER_IP`]) and gives every member a default route through it,
    /// so hosts behind the router reach the members and get answers (the
    /// fleet topology's application hosts).
    pub fn attach_router(&self, router: &NetNs, dev: &str) {
        veth(router, dev, &self.hub, "rtr");
        self.hub.cmd("ip link set rtr master br0 up");
        router.cmd(&format!("ip addr add {ROUTER_IP}/24 dev {dev}"));
        router.cmd(&format!("ip link set {dev} up"));
        for m in &self.members {
            m.ns.cmd(&format!("ip route add default via {ROUTER_IP}"));
        }
    }

    /// Starts member `i`'s etcd (it must be down). `state` is etcd's
    /// `--initial-cluster-state`; a member with a data directory ignores it.
    fn spawn(&mut self, i: usize, state: &str) {
        assert!(self.members[i].process.is_none(), "etcd member {i} runs");
        let initial_cluster = self
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| format!("m{j}={}", m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let m = &self.members[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("open the etcd log");
        // nsenter execs etcd, so the child's PID is etcd itself.
        let mut etcd = Command::new("nsenter");
        etcd.arg(format!("--net=/run/netns/{}", m.ns.name))
            .arg("etcd");
        if let Some(tls) = &self.tls {
            etcd.args(["--cert-file", path(&tls.server_cert)])
                .args(["--key-file", path(&tls.server_key)])
                .args(["--trusted-ca-file", path(&tls.ca)])
                .arg("--client-cert-auth");
        }
        let child = etcd
            .args(["--name", &format!("m{i}")])
            .args([
                "--data-dir",
                self.data.join(format!("m{i}")).to_str().unwrap(),
            ])
            .args(["--listen-client-urls", &m.endpoint()])
            .args(["--advertise-client-urls", &m.endpoint()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", &self.name])
            .args(["--initial-cluster-state", state])
            .args(["--heartbeat-interval", HEARTBEAT_MS])
            .args(["--election-timeout", ELECTION_MS])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn nsenter etcd");
        self.members[i].process = Some(child);
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.data.join(format!("m{i}.log"))
    }

    /// The client URLs of all members, running or not, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::endpoint).collect()
    }

    /// The client URLs of the running members.
    pub fn running_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.process.is_some())
            .map(EtcdMember::endpoint)
            .collect()
    }

    /// Runs etcdctl (API v3) from the hub against `endpoints`; Err carries
    /// its stderr. Each call is bounded by etcdctl's dial and command
    /// timeouts.
    pub fn etcdctl(&self, endpoints: &[String], args: &[&str]) -> Result<String, String> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.hub.name))
            .arg("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args([DIAL_TIMEOUT, COMMAND_TIMEOUT])
            .args(self.tls.iter().flat_map(|t| {
                [
                    format!("--cacert={}", path(&t.ca)),
                    format!("--cert={}", path(&t.client_cert)),
                    format!("--key={}", path(&t.client_key)),
                ]
            }))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("spawn etcdctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Puts `key = value` through member `i`.
    pub fn put(&self, i: usize, key: &str, value: &str) -> Result<(), String> {
        self.etcdctl(&[self.members[i].endpoint()], &["put", key, value])
            .map(drop)
    }

    /// Reads `key` through member `i` (a linearizable read): None when it
    /// is absent.
    pub fn get(&self, i: usize, key: &str) -> Result<Option<String>, String> {
        let out = self.etcdctl(
            &[self.members[i].endpoint()],
            &["get", "--print-value-only", key],
        )?;
        Ok(out.strip_suffix('\n').map(String::from))
    }

    /// Waits (bounded, 10 s) until every running member reports healthy;
    /// panics with the members' logs if they do not.
    pub fn wait_healthy(&self) {
        self.poll("every running member healthy", || {
            self.etcdctl(&self.running_endpoints(), &["endpoint", "health"])
        });
    }

    /// The index of the leader every running member agrees on, waiting
    /// (bounded, 10 s) for an election; panics if none is agreed on.
    pub fn leader(&self) -> usize {
        self.poll("a leader every running member agrees on", || {
            self.agreed_leader()
        })
    }

    /// Calls `f` every 100 ms until it succeeds, for at most 10 s; then
    /// panics with its last error and the members' logs.
    fn poll<T>(&self, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            match f() {
                Ok(v) => return v,
                Err(e) if Instant::now() >= deadline => panic!(
                    "etcd cluster {}: no {what} within {HEALTHY_WITHIN:?}: {e}\n{}",
                    self.name,
                    self.logs()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The leader from `etcdctl endpoint status -w json` on the running
    /// members, if they all name the same running member.
    fn agreed_leader(&self) -> Result<usize, String> {
        let out = self.etcdctl(
            &self.running_endpoints(),
            &["endpoint", "status", "-w", "json"],
        )?;
        let statuses: Vec<serde_json::Value> =
            serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        let mut leader_id = None;
        let mut ids = Vec::new();
        for s in &statuses {
            let endpoint = s["Endpoint"].as_str().unwrap_or_default();
            let id = s["Status"]["header"]["member_id"].as_u64();
            let leader = s["Status"]["leader"].as_u64().filter(|&l| l != 0);
            let (Some(id), Some(leader)) = (id, leader) else {
                return Err(format!("{endpoint} knows no leader: {s}"));
            };
            if leader_id.is_some_and(|l| l != leader) {
                return Err(format!("members disagree on the leader: {out}"));
            }
            leader_id = Some(leader);
            ids.push((endpoint.to_string(), id));
        }
        let leader = leader_id.ok_or("no running member")?;
        let endpoint = ids
            .iter()
            .find(|(_, id)| *id == leader)
            .map(|(e, _)| e)
            .ok_or_else(|| format!("leader {leader:x} is not a running member"))?;
        self.members
            .iter()
            .position(|m| &m.endpoint() == endpoint)
            .ok_or_else(|| format!("{endpoint} is not a member"))
    }

    /// SIGKILLs member `i`'s etcd and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].process.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops member `i`'s etcd: SIGTERM, then SIGKILL after a grace.
    pub fn stop(&mut self, i: usize) {
        if let Some(c) = self.members[i].process.take() {
            stop_all(vec![c]);
        }
    }

    /// Starts member `i` again on its data directory and waits (bounded)
    /// until every running member is healthy.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i, "existing");
        self.wait_healthy();
    }

    /// Runs `f` with the cluster on a thread inside the hub namespace,
    /// where the members' client URLs are reachable (the test process's
    /// own namespace has no route to them): a client made there, a tokio
    /// runtime on that thread included, keeps its sockets in the hub. The
    /// cluster is dropped on that thread when `f` returns or panics.
    pub fn in_hub<T: Send + 'static>(
        self,
        f: impl FnOnce(&mut EtcdCluster) -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{}", self.hub.name);
        std::thread::spawn(move || {
            let mut cluster = self;
            enter(&path);
            f(&mut cluster)
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// The PIDs of the running members' etcd processes.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(EtcdMember::pid).collect()
    }

    /// The tail of every member's log, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.members.len())
            .map(|i| {
                let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- etcd m{i} ---\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Default for EtcdCluster {
    fn default() -> Self {
        Self::new()
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// SIGTERMs every process, waits up to the grace for all of them, then
/// SIGKILLs and reaps those left.
fn stop_all(mut children: Vec<Child>) {
    for c in &children {
        // SAFETY: signalling a child we started and have not reaped.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        if children.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        // SIGKILL: the data is thrown away with the tmpfs, and a gentle stop
        // costs the whole grace (the last members ignore SIGTERM).
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let data = self.data.to_string_lossy().into_owned();
        let _ = Command::new("umount").arg(&data).status();
        let _ = std::fs::remove_dir(&self.data);
        // The namespaces go with the fields, members first.
    }
}

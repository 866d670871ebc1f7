//! Runs the real `redirector` binary as a daemon inside an application
//! host's network namespace (setns before exec, keeping our mount namespace
//! so its bpffs pins are the ones the test sees), and its CLI. One daemon
//! per host: the fleet tests run several, each with its own namespace,
//! pin directory and admin socket.

use std::{
    fs::File,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{netns::NetNs, pins::PinDir, topology::Topology, unique};

/// The `redirector` binary beside the running executable (xtask) or one
/// directory up (a test binary in `deps/`).
/// `REDIRECTOR_BIN` overrides (the benchmark runs a release build).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("REDIRECTOR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    [dir.join("redirector"), dir.join("../redirector")]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no redirector binary near {}: run cargo build",
                dir.display()
            )
        })
}

pub struct DaemonProc {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    /// The config's pin path (its lock file is removed on drop).
    pub pin_path: PathBuf,
    netns: String,
    pub log: PathBuf,
    /// Start the daemon in a mount namespace of its own with /sys/fs/bpf
    /// unmounted, as `ip netns exec` leaves it.
    pub private_mounts: bool,
    /// Extra environment of the daemon process.
    pub env: Vec<(String, String)>,
}

impl DaemonProc {
    /// Writes `config` (TOML; `{socket}` and `{pin_path}` are filled in)
    /// and starts `redirector run` in the app namespace; waits (bounded)
    /// until its admin socket answers.
    pub fn start(t: &Topology, config: &str) -> Self {
        Self::start_in(&t.app, &t.pins, config)
    }

    /// [`start`](Self::start) in namespace `ns` with pins under `pins`:
    /// for topologies with more than one application host.
    pub fn start_in(ns: &NetNs, pins: &PinDir, config: &str) -> Self {
        Self::launch(ns, pins, config, false)
    }

    /// [`start`](Self::start) with the daemon's stderr on `stderr` instead
    /// of the log file (stdout stays on the log file).
    pub fn start_with_stderr(t: &Topology, config: &str, stderr: Stdio) -> Self {
        let mut d = Self::prepare(&t.app, &t.pins, config, false);
        d.spawn_with(stderr);
        d
    }

    /// Like [`start`](Self::start), but in a private mount namespace
    /// without the host's bpffs.
    pub fn start_private_mounts(t: &Topology, config: &str) -> Self {
        Self::launch(&t.app, &t.pins, config, true)
    }

    /// Like [`start`](Self::start), with `env` added to the daemon's
    /// environment.
    pub fn start_with_env(t: &Topology, config: &str, env: &[(&str, &str)]) -> Self {
        let mut d = Self::prepare(&t.app, &t.pins, config, false);
        d.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        d.spawn();
        d
    }

    fn launch(ns: &NetNs, pins: &PinDir, config: &str, private_mounts: bool) -> Self {
        let mut d = Self::prepare(ns, pins, config, private_mounts);
        d.spawn();
        d
    }

    /// Writes the config; starts nothing.
    fn prepare(ns: &NetNs, pins: &PinDir, config: &str, private_mounts: bool) -> Self {
        let dir = std::env::temp_dir().join(unique("daemon"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut d = Self {
            child: None,
            socket: dir.join("admin.sock"),
            config: dir.join("redirector.toml"),
            log: dir.join("daemon.log"),
            pin_path: pins.path.clone(),
            dir,
            netns: ns.name.clone(),
            private_mounts,
            env: Vec::new(),
        };
        d.write_config(config);
        d
    }

    fn write_config(&mut self, config: &str) {
        let d = self;
        let text = config
            .replace("{socket}", &d.socket.display().to_string())
            .replace("{pin_path}", &d.pin_path.display().to_string());
        std::fs::write(&d.config, &text).unwrap();
        // A config with a fixed socket path (the demo's) is talked to there.
        let parsed = redirector::config::parse(&text, &d.config).expect("valid config");
        d.socket = parsed.admin.socket;
        d.pin_path = parsed.datapath.pin_path;
    }

    fn log_file(&self) -> File {
        File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap()
    }

    /// Starts (again) the daemon process with the same config.
    pub fn spawn(&mut self) {
        let log = self.log_file();
        self.spawn_with(log.into());
    }

    /// `redirector run --config <config>` in the app namespace; the
    /// returned file is the namespace, to hold until the child is spawned.
    fn run_command(&self, config: &std::path::Path) -> (Command, File) {
        let ns = File::open(format!("/run/netns/{}", self.netns)).unwrap();
        let ns_fd = ns.as_raw_fd();
        let private = self.private_mounts;
        let mut cmd = Command::new(binary());
        cmd.args(["--socket"])
            .arg(&self.socket)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        // SAFETY: only async-signal-safe work between fork and exec: one
        // setns call on an fd that stays open (the caller holds `ns`).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if private {
                    // What `ip netns exec` does to /sys: a mount namespace
                    // of its own where the host's bpffs is not mounted.
                    let root = c"/";
                    let bpffs = c"/sys/fs/bpf";
                    if libc::unshare(libc::CLONE_NEWNS) != 0
                        || libc::mount(
                            std::ptr::null(),
                            root.as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        ) != 0
                        || libc::umount2(bpffs.as_ptr(), libc::MNT_DETACH) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        (cmd, ns)
    }

    /// Runs another daemon on `config` (beside this one) until it exits,
    /// bounded by 20 s: for daemons that must refuse to start.
    pub fn run_another(&self, config: &std::path::Path) -> Output {
        let (mut cmd, ns) = self.run_command(config);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn redirector");
        drop(ns);
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("reap");
                panic!(
                    "the second daemon kept running:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("reap")
    }

    fn spawn_with(&mut self, stderr: Stdio) {
        assert!(self.child.is_none(), "already running");
        let (mut cmd, ns) = self.run_command(&self.config);
        cmd.stdout(self.log_file()).stderr(stderr);
        self.child = Some(cmd.spawn().expect("spawn redirector"));
        drop(ns);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.cli(&["status"]).status.success() {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("redirector exited ({st}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True while the daemon process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redirector CLI")
    }

    /// `status --json`, parsed.
    pub fn status(&self) -> redirector::status::DaemonStatus {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    pub fn history(&self) -> Vec<redirector::status::FlipRecord> {
        let out = self.cli(&["history", "--json"]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).expect("history JSON")
    }

    /// Waits (bounded by `within`) until `service`'s active member is `want`.
    pub fn wait_active(&self, service: &str, want: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let s = self.status();
            let svc = s
                .services
                .iter()
                .find(|s| s.name == service)
                .expect("service");
            if svc.active.as_deref() == Some(want) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{service} still on {:?}, wanted {want} after {within:?}:\n{}",
                svc.active,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded, 5 s) until the first service's first member (east
    /// in the tests' configs) is confirmed Up. A fresh daemon serves from
    /// east at once, before its checks confirm it; a fault injected before
    /// that is a cold-start case (the move to west is `startup`, and east's
    /// first Up takes over without failback_delay), not a failover.
    pub fn wait_east_up(&self) {
        let start = Instant::now();
        while self.status().services[0].members[0].health != redirector::decide::Health::Up {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "east never confirmed up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        self.kill();
        // A killed daemon leaves its lock files (harmless, but litter in
        // /run/redirector/pins and beside a fixed socket path: the demo's).
        let _ = std::fs::remove_file(redirector::lock::pin_lock_path(&self.pin_path));
        let _ = std::fs::remove_file(redirector::lock::socket_lock_path(&self.socket));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

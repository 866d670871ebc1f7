//! Network namespaces that delete themselves, and running code inside one.

use std::{fs::File, os::fd::AsRawFd, process::Command};

/// A named network namespace (`ip netns add`), deleted on drop. Deleting it
/// also destroys the veths inside it.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// Creates the namespace; panics first, saying how to run the test,
    /// when not root (such tests are `#[ignore = "needs root: …"]` and get
    /// here only through `--include-ignored`).
    pub fn new(name: &str) -> Self {
        require_root("network namespaces");
        sh(&["ip", "netns", "add", name]);
        let ns = Self { name: name.into() };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        // No duplicate address detection on links made later, link-local
        // addresses included: a tentative address delays neighbour discovery.
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
        ns
    }

    /// Runs a command inside the namespace; panics with its output if it fails.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// `exec` of a command line split on whitespace (no quoting).
    pub fn cmd(&self, line: &str) -> String {
        self.exec(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// Runs `f` on a thread whose network namespace is this one. Sockets
    /// created there stay in this namespace wherever they are used later.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

/// Panics with how to run the test if this process is not root; `what`
/// names what the test needs root for.
pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root ({what}): run `cargo xtask test` or \
         `cargo test -- --include-ignored` as root"
    );
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: a valid namespace fd; setns only affects this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair: `a_dev` in `a`, its peer `b_dev` in `b` (both down, no
/// address).
pub fn veth(a: &NetNs, a_dev: &str, b: &NetNs, b_dev: &str) {
    a.exec(&[
        "ip", "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name,
    ]);
}

/// Runs a command and returns stdout; panics with stderr on failure.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespaces whose names carry the test prefix (leftover check).
pub fn leftover_namespaces() -> Vec<String> {
    let out = sh(&["ip", "netns", "list"]);
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(crate::PREFIX))
        .map(String::from)
        .collect()
}

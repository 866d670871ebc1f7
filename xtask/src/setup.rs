//! Installs what the build and the tests need, skipping what is there.
//! A bare machine has stale or empty apt lists, no rust-src for nightly and
//! no bpf-linker; CI starts from such a machine.

use std::process::Command;

use anyhow::{Context as _, bail};

/// Debian packages: LLVM 22 for bpf-linker, redis for the members,
/// iproute2/ethtool/nftables for the namespace tests, bpftool to inspect,
/// etcd (server and etcdctl) for the fleet tests' clusters. The etcd-server
/// package starts no service where systemd is not running (the tests start
/// their own members); where it is, [`etcd_service`] stops the one it starts.
pub const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "redis-server",
    "redis-tools",
    "iproute2",
    "ethtool",
    "nftables",
    "bpftool",
    "haproxy",
    "etcd-server",
    "etcd-client",
    // protoc and the well-known types, for the etcd-client crate's build
    "protobuf-compiler",
    "libprotobuf-dev",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> anyhow::Result<()> {
    apt()?;
    rust_src()?;
    bpf_linker()?;
    bpffs()?;
    println!("setup: done");
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        println!("setup: apt packages present");
        return Ok(());
    }
    println!("setup: installing {}", missing.join(" "));
    // Some configured third-party sources may be unreachable; their failure
    // is reported by apt as a warning and the install below decides.
    let _ = Command::new("apt-get").args(["update", "-q"]).status();
    let status = Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .status()
        .context("run apt-get")?;
    if !status.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    if missing.contains(&"etcd-server") {
        etcd_service();
    }
    Ok(())
}

/// Stops and disables the system etcd that installing etcd-server may have
/// started (systemd enables and starts `etcd.service`; without systemd the
/// postinst runs `/etc/init.d/etcd start` unless policy-rc.d denies it).
/// Only called right after this setup installed the package, so an etcd
/// someone installed on purpose is left alone.
fn etcd_service() {
    let quiet = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let stopped = if std::path::Path::new("/run/systemd/system").exists() {
        quiet("systemctl", &["disable", "--now", "etcd.service"])
    } else {
        let ran = quiet("/etc/init.d/etcd", &["status"]);
        let _ = quiet("update-rc.d", &["etcd", "disable"]);
        ran && quiet("/etc/init.d/etcd", &["stop"])
    };
    if stopped {
        println!("setup: stopped and disabled the system etcd service (the tests run their own)");
    }
}

fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn rust_src() -> anyhow::Result<()> {
    if !output("rustup", &["toolchain", "list"]).contains("nightly") {
        bail!(
            "the nightly toolchain is missing (rustup toolchain install nightly); the eBPF crate needs it"
        );
    }
    if output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .contains("rust-src")
    {
        println!("setup: nightly rust-src present");
        return Ok(());
    }
    println!("setup: adding rust-src to nightly");
    let ok = Command::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", "nightly"])
        .status()
        .context("run rustup")?
        .success();
    if !ok {
        bail!("rustup component add rust-src --toolchain nightly failed");
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    if output("bpf-linker", &["--version"]).contains(BPF_LINKER_VERSION) {
        println!("setup: bpf-linker {BPF_LINKER_VERSION} present");
        return Ok(());
    }
    println!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about 90 s)");
    let path = format!(
        "/usr/lib/llvm-22/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let ok = Command::new("cargo")
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .env("PATH", path)
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", "llvm-22", "--locked"])
        .status()
        .context("run cargo install")?
        .success();
    if !ok {
        bail!("cargo install bpf-linker {BPF_LINKER_VERSION} failed");
    }
    Ok(())
}

fn bpffs() -> anyhow::Result<()> {
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf "));
    if mounted {
        println!("setup: bpffs mounted");
        return Ok(());
    }
    println!("setup: mounting bpffs on /sys/fs/bpf");
    let ok = Command::new("mount")
        .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
        .status()
        .context("run mount")?
        .success();
    if !ok {
        bail!("mount -t bpf bpf /sys/fs/bpf failed");
    }
    Ok(())
}

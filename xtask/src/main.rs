//! Project chores: `setup` (install what a bare machine lacks), `test` (the
//! whole suite, with a one-line summary), `demo`, `bench` (measurements).
//!
//! xtask depends on no project crate, so it builds on a bare machine; every
//! task runs setup first and only then builds the project (whose build.rs
//! compiles the eBPF object with aya-build). The demo and the benchmark
//! harness are binaries of `redirector-tests`.

mod setup;
mod test;

use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "redirector project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install missing apt packages, the nightly rust-src component and
    /// bpf-linker, and mount bpffs. Idempotent; says what it did.
    Setup,
    /// Run setup, build, fmt and clippy checks, and every test (unit,
    /// kernel packet, namespace end to end; the root-only ones with
    /// `--include-ignored`); print "N passed, N failed" (and "N ignored"
    /// if any test was still skipped).
    Test {
        /// Extra arguments for `cargo test` test filtering (e.g. a test name).
        filter: Option<String>,
    },
    /// The product on an embedded topology: a client on an application host
    /// talks to a VIP; east is killed (failover), restarted (failback).
    Demo {
        /// Leave the topology and daemon running and print how to reach them.
        #[arg(long)]
        keep: bool,
    },
    /// Every measurement in one run (release build): throughput and latency
    /// against direct and HAProxy paths, per-packet cost, scale, daemon cost,
    /// failover times. Writes bench/REPORT.md and bench/results/.
    Bench {
        /// Fewer rounds and trials, no targets judged (CI).
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Test { filter } => test::run(filter.as_deref()),
        Task::Demo { keep } => {
            setup::run()?;
            build_and_run(false, "demo", keep.then_some("--keep"))
        }
        Task::Bench { quick } => {
            setup::run()?;
            build_and_run(true, "bench", quick.then_some("--quick"))
        }
    }
}

/// Builds the daemon and the harness binary `bin` of redirector-tests in one
/// cargo call (built apart, the two packages unify features differently and
/// rebuild each other's dependencies), then runs `bin`, which finds the
/// daemon beside itself.
fn build_and_run(release: bool, bin: &str, flag: Option<&str>) -> anyhow::Result<()> {
    let mut args = vec!["build", "--quiet"];
    if release {
        args.push("--release");
    }
    args.extend(["--package", "redirector", "--bin", "redirector"]);
    args.extend(["--package", "redirector-tests", "--bin", bin]);
    cargo(&args)?;
    let profile = if release { "release" } else { "debug" };
    let path = format!("{}/../target/{profile}/{bin}", env!("CARGO_MANIFEST_DIR"));
    let ok = Command::new(&path)
        .args(flag)
        .status()
        .with_context(|| format!("run {path}"))?
        .success();
    if !ok {
        bail!("{path} failed");
    }
    Ok(())
}

/// Runs cargo with `args`, failing if it fails.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let ok = Command::new("cargo")
        .args(args)
        .status()
        .context("run cargo")?
        .success();
    if !ok {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

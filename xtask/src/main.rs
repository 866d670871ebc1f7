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
    /// Run setup, build, and every test (unit, kernel packet, namespace
    /// end to end); print "N passed, N failed".
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
            // The demo finds the daemon binary beside its own.
            cargo(&[
                "build",
                "--quiet",
                "--package",
                "redirector",
                "--bin",
                "redirector",
                "--package",
                "redirector-tests",
                "--bin",
                "demo",
            ])?;
            run_built("debug/demo", keep.then_some("--keep"))
        }
        Task::Bench { quick } => {
            setup::run()?;
            // One build of both binaries: built apart, the two packages
            // unify features differently and rebuild each other's deps.
            cargo(&[
                "build",
                "--quiet",
                "--release",
                "--package",
                "redirector",
                "--bin",
                "redirector",
                "--package",
                "redirector-tests",
                "--bin",
                "bench",
            ])?;
            run_built("release/bench", quick.then_some("--quick"))
        }
    }
}

/// Runs a binary cargo built under target/, with an optional flag.
fn run_built(path: &str, flag: Option<&str>) -> anyhow::Result<()> {
    let bin = format!("{}/../target/{path}", env!("CARGO_MANIFEST_DIR"));
    let ok = Command::new(&bin)
        .args(flag)
        .status()
        .with_context(|| format!("run {bin}"))?
        .success();
    if !ok {
        bail!("{bin} failed");
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

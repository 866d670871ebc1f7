//! Project chores: `setup` (install what a bare machine lacks), `test` (the
//! whole suite, with a one-line summary), `demo`, `bench` (measurements). The eBPF object itself is built by
//! aya-build from `redirector/build.rs`, not here.

mod bench;
mod demo;
mod setup;
mod test;

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
    /// Measure: per-packet program cost via BPF_PROG_TEST_RUN (more
    /// figures come with the benchmark issue).
    Bench {
        /// Fewer repetitions, for CI.
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Test { filter } => test::run(filter.as_deref()),
        Task::Bench { quick } => bench::run(quick),
        Task::Demo { keep } => demo::run(keep),
    }
}

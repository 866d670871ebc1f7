//! The whole test suite in one command. Tests that need root are marked
//! `#[ignore = "needs root: …"]` so a plain `cargo test` passes as any user;
//! this runs them all, as root, with `--include-ignored`. Each cleans up
//! after itself, and this checks that nothing with the test prefix is left
//! in `ip netns` or /sys/fs/bpf afterwards. Clippy runs first; its verdict
//! is given after the test summary, so one run reports both.

use std::{
    io::{BufRead as _, BufReader},
    ops::AddAssign,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::cargo;

/// Prefix of every namespace and pin the tests create (tests/src/lib.rs).
const TEST_PREFIX: &str = "rdt";

pub fn run(filter: Option<&str>) -> anyhow::Result<()> {
    crate::setup::run()?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        bail!("the kernel and namespace tests need root");
    }
    // Default members only: the eBPF crate builds for the BPF target, via
    // aya-build, never for the host.
    cargo(&["build", "--all-targets"])?;
    cargo(&["fmt", "--all", "--check"]).context("code is not formatted: run `cargo fmt --all`")?;
    // Default members too (not --workspace): --workspace would check the
    // no_std kernel crate for the host target.
    let lints = cargo(&["clippy", "--all-targets", "--", "-D", "warnings"]);

    let args = test_args(filter);
    let (counts, ok) = run_counting("cargo", &args)?;

    let leftovers = leftovers();
    for l in &leftovers {
        eprintln!("left behind: {l}");
    }
    println!("{} passed, {} failed", counts.passed, counts.failed);
    if counts.ignored > 0 {
        // None should be: --include-ignored runs the root-only tests.
        println!("{} ignored", counts.ignored);
    }
    if !ok || counts.failed > 0 {
        bail!("tests failed");
    }
    if !leftovers.is_empty() {
        bail!("tests left {} namespaces or pins behind", leftovers.len());
    }
    lints.context("clippy found warnings: see its output above the tests")?;
    Ok(())
}

/// `cargo test` arguments: every test, the root-only ones included, keep
/// going after a failing test binary, and the optional name filter.
fn test_args(filter: Option<&str>) -> Vec<&str> {
    let mut args = vec!["test", "--no-fail-fast", "--", "--include-ignored"];
    args.extend(filter);
    args
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// How many tests one or more `test result:` lines counted.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

/// Runs the test command, echoing its output, and adds up the
/// `test result:` lines of every test binary.
fn run_counting(cmd: &str, args: &[&str]) -> anyhow::Result<(Counts, bool)> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {cmd}"))?;
    let mut counts = Counts::default();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(c) = parse_result(&line) {
            counts += c;
        }
    }
    let ok = child.wait()?.success();
    Ok((counts, ok))
}

/// "test result: ok. 12 passed; 0 failed; 1 ignored; ..." -> 12, 0, 1
fn parse_result(line: &str) -> Option<Counts> {
    let rest = line.strip_prefix("test result: ")?;
    let num = |word: &str| -> Option<u64> {
        rest.split(';')
            .find_map(|part| part.trim().strip_suffix(word).map(str::trim))
            .and_then(|n| n.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
    };
    Some(Counts {
        passed: num(" passed")?,
        failed: num(" failed")?,
        ignored: num(" ignored")?,
    })
}

fn leftovers() -> Vec<String> {
    let mut out = Vec::new();
    let ns = Command::new("ip").args(["netns", "list"]).output();
    if let Ok(o) = ns {
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some(name) = l
                .split_whitespace()
                .next()
                .filter(|n| n.starts_with(TEST_PREFIX))
            {
                out.push(format!("netns {name}"));
            }
        }
    }
    if let Ok(d) = std::fs::read_dir("/sys/fs/bpf") {
        for e in d.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEST_PREFIX) {
                out.push(format!("pin /sys/fs/bpf/{name}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Counts, parse_result, test_args};

    fn counts(passed: u64, failed: u64, ignored: u64) -> Option<Counts> {
        Some(Counts {
            passed,
            failed,
            ignored,
        })
    }

    #[test]
    fn parses_cargo_test_result_lines() {
        let l = "test result: ok. 12 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 8.09s";
        assert_eq!(parse_result(l), counts(12, 3, 0));
        let l = "test result: FAILED. 8 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(parse_result(l), counts(8, 2, 0));
        assert_eq!(parse_result("running 3 tests"), None);
    }

    #[test]
    fn counts_ignored_tests() {
        let l = "test result: ok. 6 passed; 0 failed; 68 ignored; 0 measured; 0 filtered out; finished in 0.61s";
        assert_eq!(parse_result(l), counts(6, 0, 68));
    }

    #[test]
    fn root_only_tests_are_included_and_the_filter_comes_after() {
        assert_eq!(
            test_args(None),
            ["test", "--no-fail-fast", "--", "--include-ignored"]
        );
        assert_eq!(
            test_args(Some("tests::packets")),
            [
                "test",
                "--no-fail-fast",
                "--",
                "--include-ignored",
                "tests::packets"
            ]
        );
    }

    #[test]
    fn counts_add_up_across_test_binaries() {
        let mut total = Counts::default();
        total += counts(158, 0, 0).unwrap();
        total += counts(74, 1, 2).unwrap();
        assert_eq!(total, counts(232, 1, 2).unwrap());
    }
}

//! The whole test suite in one command. Kernel and namespace tests need
//! root; each cleans up after itself, and this checks that nothing with the
//! test prefix is left in `ip netns` or /sys/fs/bpf afterwards.

use std::{
    io::{BufRead as _, BufReader},
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

    let mut args = vec!["test", "--no-fail-fast"];
    if let Some(f) = filter {
        args.extend(["--", f]);
    }
    let (passed, failed, ok) = run_counting("cargo", &args)?;

    let leftovers = leftovers();
    for l in &leftovers {
        eprintln!("left behind: {l}");
    }
    println!("{passed} passed, {failed} failed");
    if !ok || failed > 0 {
        bail!("tests failed");
    }
    if !leftovers.is_empty() {
        bail!("tests left {} namespaces or pins behind", leftovers.len());
    }
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Runs the test command, echoing its output, and adds up the
/// `test result:` lines of every test binary.
fn run_counting(cmd: &str, args: &[&str]) -> anyhow::Result<(u64, u64, bool)> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {cmd}"))?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = parse_result(&line) {
            passed += p;
            failed += f;
        }
    }
    let ok = child.wait()?.success();
    Ok((passed, failed, ok))
}

/// "test result: ok. 12 passed; 0 failed; ..." -> (12, 0)
fn parse_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let num = |word: &str| -> Option<u64> {
        rest.split(';')
            .find_map(|part| part.trim().strip_suffix(word).map(str::trim))
            .and_then(|n| n.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
    };
    Some((num(" passed")?, num(" failed")?))
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
    use super::parse_result;

    #[test]
    fn parses_cargo_test_result_lines() {
        let l = "test result: ok. 12 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 8.09s";
        assert_eq!(parse_result(l), Some((12, 3)));
        let l = "test result: FAILED. 8 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(parse_result(l), Some((8, 2)));
        assert_eq!(parse_result("running 3 tests"), None);
    }
}

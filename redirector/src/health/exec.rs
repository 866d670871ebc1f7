//! The `exec` check: an operator-supplied command decides.
//!
//! For anything the built-in checks cannot express. The command gets the
//! member's `{host}` and `{port}` substituted into its argv (no shell), runs
//! with stdin closed, and the member is healthy iff it exits 0 within the
//! timeout. It runs in its own process group so that on timeout the whole
//! group (helpers it started included) is killed and the child reaped.

use std::{
    future::Future, net::SocketAddr, pin::Pin, process::Stdio, time::Duration, time::Instant,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt},
    process::Command,
};

use super::{Checker, Failure, FailureKind, HealthError, Outcome};
use crate::error_chain::error_chain;

/// How much of the command's stderr ends up in the error text.
const STDERR_KEEP: usize = 200;

pub(crate) struct ExecChecker {
    argv: Vec<String>,
    timeout: Duration,
}

impl ExecChecker {
    pub(crate) fn new(argv: &[String], timeout: Duration) -> Result<Self, HealthError> {
        if argv.is_empty() || argv[0].is_empty() {
            return Err(HealthError::EmptyCommand);
        }
        Ok(ExecChecker {
            argv: argv.to_vec(),
            timeout,
        })
    }

    async fn run(&self, target: SocketAddr, host: &str) -> Result<(), Failure> {
        let port = target.port().to_string();
        let argv: Vec<String> = self
            .argv
            .iter()
            .map(|a| a.replace("{host}", host).replace("{port}", &port))
            .collect();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            Failure::new(
                FailureKind::Exec,
                format!("spawn {}: {}", argv[0], error_chain(&e)),
            )
        })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();

        let finished = tokio::time::timeout(self.timeout, async {
            // Drain both pipes while waiting so a chatty command never
            // blocks on a full pipe.
            let (status, _, err) =
                tokio::join!(child.wait(), drain(stdout, 0), drain(stderr, STDERR_KEEP));
            (status, err)
        })
        .await;

        match finished {
            Ok((Ok(status), stderr)) if status.success() => {
                let _ = stderr;
                Ok(())
            }
            Ok((Ok(status), stderr)) => {
                let text = String::from_utf8_lossy(&stderr);
                let text = text.trim();
                let what = match status.code() {
                    Some(code) => format!("exit status {code}"),
                    None => {
                        use std::os::unix::process::ExitStatusExt;
                        format!("killed by signal {}", status.signal().unwrap_or(0))
                    }
                };
                Err(if text.is_empty() {
                    Failure::new(FailureKind::Exec, what)
                } else {
                    Failure::new(FailureKind::Exec, format!("{what}: {text}"))
                })
            }
            Ok((Err(e), _)) => Err(Failure::new(
                FailureKind::Exec,
                format!("wait: {}", error_chain(&e)),
            )),
            Err(_) => {
                kill_group(&child);
                // Reap it (kill + wait) so no zombie is left behind.
                let _ = child.kill().await;
                Err(Failure::timeout(self.timeout))
            }
        }
    }
}

/// SIGKILLs the child's process group (the child leads it: `process_group(0)`).
fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) only sends a signal; it touches no memory of ours.
        // The child has not been reaped yet (we still own it un-waited), so
        // its PID, which is also its process group id, cannot have been
        // reused by an unrelated process group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// Reads `pipe` to its end, keeping at most `keep` bytes.
async fn drain<R: AsyncRead + Unpin>(pipe: Option<R>, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    kept
}

impl Checker for ExecChecker {
    fn check<'a>(
        &'a mut self,
        target: SocketAddr,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.run(target, host).await;
            Outcome::from_result(result, started)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::test_support::{TempDir, bounded, local};

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn exec_exit_zero_is_healthy() {
        bounded(async {
            let mut c = ExecChecker::new(&sh("exit 0"), Duration::from_secs(5)).expect("build");
            let o = c.check(local(6379), "127.0.0.1").await;
            assert!(o.healthy, "{o:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn exec_nonzero_exit_is_unhealthy_with_stderr_text() {
        bounded(async {
            let mut c = ExecChecker::new(
                &sh("echo noise; echo 'replica is lagging' >&2; exit 1"),
                Duration::from_secs(5),
            )
            .expect("build");
            let o = c.check(local(6379), "127.0.0.1").await;
            assert!(!o.healthy);
            assert_eq!(
                o.error.as_deref(),
                Some("exit status 1: replica is lagging")
            );
        })
        .await;
    }

    #[tokio::test]
    async fn exec_keeps_only_the_start_of_long_stderr() {
        bounded(async {
            let mut c = ExecChecker::new(
                &sh("head -c 100000 /dev/zero | tr '\\0' x >&2; exit 3"),
                Duration::from_secs(5),
            )
            .expect("build");
            let o = c.check(local(6379), "127.0.0.1").await;
            let err = o.error.expect("error");
            assert!(err.starts_with("exit status 3: xxx"), "{err}");
            assert!(err.len() <= STDERR_KEEP + "exit status 3: ".len());
        })
        .await;
    }

    #[tokio::test]
    async fn exec_timeout_kills_the_child() {
        bounded(async {
            let dir = TempDir::new();
            let pidfile = dir.path().join("pid");
            let script = format!("echo $$ > {}; exec sleep 5", pidfile.display());
            let mut c = ExecChecker::new(&sh(&script), Duration::from_millis(200)).expect("build");
            let started = Instant::now();
            let o = c.check(local(6379), "127.0.0.1").await;
            assert!(started.elapsed() < Duration::from_secs(2), "{o:?}");
            assert!(!o.healthy);
            assert_eq!(o.error.as_deref(), Some("timeout after 200ms"));
            let pid: u32 = std::fs::read_to_string(&pidfile)
                .expect("pid file")
                .trim()
                .parse()
                .expect("pid");
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "child {pid} still exists after the timeout"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn exec_timeout_kills_helpers_holding_the_pipes() {
        bounded(async {
            // The shell backgrounds a sleeper that inherits stdout/stderr.
            let mut c = ExecChecker::new(&sh("sleep 5 & sleep 5"), Duration::from_millis(200))
                .expect("build");
            let started = Instant::now();
            let o = c.check(local(6379), "127.0.0.1").await;
            assert!(started.elapsed() < Duration::from_secs(2));
            assert_eq!(o.error.as_deref(), Some("timeout after 200ms"));
        })
        .await;
    }

    #[tokio::test]
    async fn exec_substitutes_host_and_port() {
        bounded(async {
            let argv = vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                "test \"$0\" = db1.example:6380 && test \"$1\" = {host}".to_string(),
                "{host}:{port}".to_string(),
                "db1.example".to_string(),
            ];
            let mut c = ExecChecker::new(&argv, Duration::from_secs(5)).expect("build");
            let o = c.check(local(6380), "db1.example").await;
            assert!(o.healthy, "{o:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn exec_reports_a_missing_program() {
        bounded(async {
            let argv = vec!["/nonexistent/redirector-probe".to_string()];
            let mut c = ExecChecker::new(&argv, Duration::from_secs(5)).expect("build");
            let o = c.check(local(6380), "h").await;
            assert!(!o.healthy);
            assert!(
                o.error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("spawn /nonexistent/redirector-probe")),
                "{o:?}"
            );
        })
        .await;
    }

    #[test]
    fn exec_with_an_empty_command_is_rejected() {
        assert!(matches!(
            ExecChecker::new(&[], Duration::from_secs(1)),
            Err(HealthError::EmptyCommand)
        ));
    }
}

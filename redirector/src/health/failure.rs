//! Why a probe failed: a kind the code can branch on, and the text people see.
//!
//! Decisions (retry on a fresh connection, keep or drop a kept connection)
//! match on [`FailureKind`]; the text goes to status and history unchanged,
//! so nothing ever has to be parsed back out of it.

use std::{future::Future, time::Duration};

/// What went wrong in a failed probe, for the code that reacts to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The member's name could not be resolved to an address.
    Resolve,
    /// No TCP connection could be opened (refused, unreachable, ...).
    Connect,
    /// The TLS handshake failed or the server name is unusable.
    Tls,
    /// A connection that was open broke: a read or write failed, or the
    /// member closed it. A kept connection may just have gone stale.
    ConnectionLost,
    /// The probe did not finish within the configured timeout.
    Timeout,
    /// The member refused the credentials (AUTH error reply, HTTP 401).
    Auth,
    /// Redis answered with an error reply (LOADING, MASTERDOWN, BUSY,
    /// NOAUTH, ...); the connection itself is fine.
    Reply,
    /// Redis answered with something well-formed but not what the probe
    /// expects (not PONG, not the echoed token, not the value just set).
    WrongReply,
    /// The bytes received are not a RESP reply, or the reply is too large.
    Protocol,
    /// The cluster topology (CLUSTER SHARDS / SLOTS) could not be read or
    /// names no usable primary.
    Topology,
    /// The check's settings cannot work against this member, e.g. a
    /// `key_prefix` whose own hash tag pins every key to one slot.
    Config,
    /// One or more shards of a cluster failed their probe; the member's own
    /// connection answered.
    Shard,
    /// The availability REST call failed or answered with a status other
    /// than 200 (401 is [`FailureKind::Auth`]).
    Http,
    /// The exec command could not be run, or exited non-zero or by a signal.
    Exec,
}

/// Why a probe failed, before latency is attached.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub(crate) struct Failure {
    /// What went wrong, for decisions.
    pub kind: FailureKind,
    /// Short and for humans; never contains a secret. Shown as is.
    pub text: String,
    /// The member's own reason when it gave one (Redis error prefix, REST
    /// `error_code`).
    pub code: Option<String>,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, text: impl Into<String>) -> Self {
        Failure {
            kind,
            text: text.into(),
            code: None,
        }
    }

    pub(crate) fn with_code(
        kind: FailureKind,
        text: impl Into<String>,
        code: impl Into<String>,
    ) -> Self {
        Failure {
            kind,
            text: text.into(),
            code: Some(code.into()),
        }
    }

    /// A probe that ran out of `timeout`.
    pub(crate) fn timeout(timeout: Duration) -> Self {
        Failure::new(FailureKind::Timeout, timeout_text(timeout))
    }
}

/// The error text of a probe that ran out of time.
pub(crate) fn timeout_text(timeout: Duration) -> String {
    format!("timeout after {}", fmt_duration(timeout))
}

/// "250ms", "2s", "1.5s": short, for error texts.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        let secs = format!("{:.3}", d.as_secs_f64());
        format!("{}s", secs.trim_end_matches('0'))
    }
}

/// Runs `probe` under `timeout`, turning an overrun into a failure.
pub(crate) async fn within<F>(timeout: Duration, probe: F) -> Result<(), Failure>
where
    F: Future<Output = Result<(), Failure>>,
{
    match tokio::time::timeout(timeout, probe).await {
        Ok(r) => r,
        Err(_) => Err(Failure::timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_formatted_short() {
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn a_failure_displays_its_text_alone() {
        let f = Failure::with_code(FailureKind::Reply, "LOADING Redis is loading", "LOADING");
        assert_eq!(f.to_string(), "LOADING Redis is loading");
        assert_eq!(
            Failure::timeout(Duration::from_millis(250)).to_string(),
            "timeout after 250ms"
        );
    }
}

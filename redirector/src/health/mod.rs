//! Health checks: one probe of one database member, answering "may traffic
//! go there right now?".
//!
//! The daemon only moves the VIP between members; whether a member is fit to
//! serve is decided here. Each [`CheckKind`] has a [`Checker`] that the
//! scheduler calls once per interval per member. A checker owns whatever
//! state makes repeated probes cheap (a kept Redis connection, an HTTP
//! client) and enforces the configured timeout itself, so a probe always
//! finishes and always yields an [`Outcome`]. Secrets and CA files are read
//! once, in [`build`], so a bad reference fails a config (re)load instead of
//! every probe; their values never appear in an error or an outcome.

use std::{
    future::Future,
    io::BufReader,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::config::{Check, CheckKind, Secret, TlsOptions};

mod availability;
mod exec;
mod failure;
mod redis;
mod tcp;

pub use failure::FailureKind;
pub(crate) use failure::{Failure, timeout_text, within};

#[cfg(test)]
mod test_support;

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether traffic may go to the member.
    pub healthy: bool,
    /// Wall time of the probe, including connecting.
    pub latency: Duration,
    /// Why it failed, short and for humans; never contains a secret.
    pub error: Option<String>,
    /// Machine-readable reason when the member gave one: the REST
    /// `error_code` for availability, the error prefix (LOADING,
    /// MASTERDOWN, WRONGPASS, ...) for Redis.
    pub code: Option<String>,
    /// What went wrong, for code that reacts to it; `None` when healthy.
    pub kind: Option<FailureKind>,
}

/// One kind of probe, bound to its options and secrets.
pub trait Checker: Send {
    /// One probe of the member at `target` (already resolved); `host` is the
    /// member's configured host (TLS server name, exec substitution). Always
    /// finishes within the configured timeout.
    fn check<'a>(
        &'a mut self,
        target: SocketAddr,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

    /// Resolves when the member closes the connection this checker keeps
    /// between probes (process killed or restarted), so the next probe can
    /// start at once; never resolves for checkers that keep none. The
    /// checker forgets the dead connection.
    fn connection_lost(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::pending())
    }
}

/// Why a checker could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// A password file could not be read.
    #[error("cannot read secret file {}: {source}", path.display())]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A password file holds nothing but newlines.
    #[error("secret file {} is empty", path.display())]
    SecretFileEmpty { path: PathBuf },
    /// A password variable is unset or not UTF-8.
    #[error("environment variable {var} is not set or not valid UTF-8")]
    SecretEnv { var: String },
    /// A password variable is set but empty.
    #[error("environment variable {var} is empty")]
    SecretEnvEmpty { var: String },
    /// The CA file is unreadable, not PEM, or holds no usable certificate.
    #[error("bad CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    /// No CA file is configured and the system trust store is empty.
    #[error("no usable system root certificates: {0}")]
    SystemRoots(String),
    /// rustls refused the client configuration.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The availability check's HTTP client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
    /// An exec check without a program to run.
    #[error("exec check has an empty command")]
    EmptyCommand,
}

/// A service whose checkers cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("service {service}: {error}")]
pub struct PreflightError {
    pub service: String,
    pub error: HealthError,
}

/// Builds one checker per member of `service`, as `run` does: secrets, CA
/// files and commands are read now.
pub fn checkers(service: &crate::config::Service) -> Result<Vec<Box<dyn Checker>>, PreflightError> {
    service
        .members
        .iter()
        .map(|_| build(&service.check))
        .collect::<Result<_, _>>()
        .map_err(|error| PreflightError {
            service: service.name.clone(),
            error,
        })
}

/// What `run` checks beyond the config file itself: every service's
/// checkers can be built (secret files readable and not empty, variables
/// set, CA files valid). `validate` and every reload run it, so a config
/// they accept is one `run` starts.
pub fn preflight(config: &crate::config::Config) -> Result<(), PreflightError> {
    for s in &config.services {
        build(&s.check).map_err(|error| PreflightError {
            service: s.name.clone(),
            error,
        })?;
    }
    Ok(())
}

/// Builds the checker for `check`, reading its secrets and CA files now.
pub fn build(check: &Check) -> Result<Box<dyn Checker>, HealthError> {
    let timeout = check.timeout;
    Ok(match &check.kind {
        CheckKind::Tcp => Box::new(tcp::TcpChecker::new(timeout)),
        CheckKind::RedisPing(opts) => Box::new(redis::RedisChecker::new(
            redis::Probe::Ping,
            redis::RedisAuth::from_options(opts)?,
            timeout,
        )),
        CheckKind::RedisEcho(opts) => Box::new(redis::RedisChecker::new(
            redis::Probe::Echo,
            redis::RedisAuth::from_options(opts)?,
            timeout,
        )),
        CheckKind::RedisSetGet {
            redis: opts,
            cluster,
            key_prefix,
            ttl,
        } => Box::new(redis::SetGetChecker::new(
            redis::RedisAuth::from_options(opts)?,
            timeout,
            *cluster,
            key_prefix.clone(),
            *ttl,
        )),
        CheckKind::Availability(opts) => {
            Box::new(availability::AvailabilityChecker::new(opts, timeout)?)
        }
        CheckKind::Exec { command } => Box::new(exec::ExecChecker::new(command, timeout)?),
    })
}

impl Outcome {
    pub(crate) fn from_result(result: Result<(), Failure>, started: Instant) -> Outcome {
        let latency = started.elapsed();
        match result {
            Ok(()) => Outcome {
                healthy: true,
                latency,
                error: None,
                code: None,
                kind: None,
            },
            Err(f) => Outcome {
                healthy: false,
                latency,
                error: Some(f.text),
                code: f.code,
                kind: Some(f.kind),
            },
        }
    }
}

/// Reads a secret's value. Trailing newlines of a file are dropped (editors
/// add them); an empty value is an error rather than "no password".
pub(crate) fn read_secret(secret: &Secret) -> Result<String, HealthError> {
    match secret {
        Secret::File(path) => {
            let raw = std::fs::read_to_string(path).map_err(|source| HealthError::SecretFile {
                path: path.clone(),
                source,
            })?;
            let value = raw.trim_end_matches(['\r', '\n']).to_string();
            if value.is_empty() {
                return Err(HealthError::SecretFileEmpty { path: path.clone() });
            }
            Ok(value)
        }
        Secret::Env(var) => {
            let value =
                std::env::var(var).map_err(|_| HealthError::SecretEnv { var: var.clone() })?;
            if value.is_empty() {
                return Err(HealthError::SecretEnvEmpty { var: var.clone() });
            }
            Ok(value)
        }
    }
}

/// Installs the process-wide rustls provider (ring); installing twice is
/// harmless. The one place the daemon, the CLI and the TLS checks do it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The roots TLS checks trust: the CA file's certificates, or the system
/// store when there is none.
fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, HealthError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |reason: String| HealthError::CaFile {
                path: path.to_path_buf(),
                reason,
            };
            let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
            let certs = rustls_pemfile::certs(&mut BufReader::new(file))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(bad("no certificates in it".into()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("unusable certificate: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "none found".into());
                return Err(HealthError::SystemRoots(why));
            }
        }
    }
    Ok(roots)
}

/// A client TLS configuration verifying against `tls.ca_file` (or the
/// system roots), without client certificates.
pub(crate) fn tls_client_config(
    tls: &TlsOptions,
) -> Result<Arc<rustls::ClientConfig>, HealthError> {
    install_crypto_provider();
    let roots = root_store(tls.ca_file.as_deref())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| HealthError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::test_support::{TempDir, check_of};

    #[test]
    fn secret_file_is_read_without_trailing_newline() {
        let dir = TempDir::new();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").expect("write secret");
        assert_eq!(
            read_secret(&Secret::File(path)).expect("read secret"),
            "s3cret"
        );
    }

    #[test]
    fn unreadable_secret_file_is_named_in_the_error() {
        let dir = TempDir::new();
        let path = dir.path().join("missing-password");
        let err = read_secret(&Secret::File(path.clone())).expect_err("must fail");
        assert!(matches!(err, HealthError::SecretFile { .. }));
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn missing_secret_env_var_is_named_in_the_error() {
        let var = "REDIRECTOR_HEALTH_TEST_SURELY_UNSET_VARIABLE";
        let err = read_secret(&Secret::Env(var.into())).expect_err("must fail");
        assert!(err.to_string().contains(var), "{err}");
    }

    #[test]
    fn bad_ca_file_is_named_in_the_error() {
        let dir = TempDir::new();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "this is not a certificate\n").expect("write ca");
        let err = tls_client_config(&TlsOptions {
            ca_file: Some(path.clone()),
            server_name: None,
        })
        .expect_err("must fail");
        assert!(matches!(err, HealthError::CaFile { .. }));
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn building_a_redis_checker_with_an_unreadable_secret_fails_without_the_value() {
        let dir = TempDir::new();
        let path = dir.path().join("nope");
        let check = check_of(
            CheckKind::RedisPing(crate::config::RedisOptions {
                username: None,
                password: Some(Secret::File(path.clone())),
                tls: None,
            }),
            Duration::from_millis(200),
        );
        let err = build(&check).err().expect("must fail");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}

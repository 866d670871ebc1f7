//! Opening a Redis connection: TCP to the resolved target, TLS verified
//! against the configured name (or the member's host), then AUTH.
//!
//! The connection is built here rather than by the redis crate so the probe
//! reaches the address the daemon resolved even when the certificate names a
//! host. Credentials are read once, when the checker is built.

use std::net::SocketAddr;

use tokio_rustls::TlsConnector;

use super::resp::{self, Conn};
use crate::{
    config::RedisOptions,
    error_chain::error_chain,
    health::{Failure, FailureKind, HealthError, read_secret, tls_client_config},
};

/// Credentials and TLS setup shared by the Redis checks.
pub(crate) struct RedisAuth {
    username: Option<String>,
    password: Option<String>,
    tls: Option<TlsSetup>,
}

struct TlsSetup {
    connector: TlsConnector,
    /// Name to verify; the member's host when absent.
    server_name: Option<String>,
}

impl RedisAuth {
    pub(crate) fn from_options(opts: &RedisOptions) -> Result<RedisAuth, HealthError> {
        let password = opts.password.as_ref().map(read_secret).transpose()?;
        let tls = opts
            .tls
            .as_ref()
            .map(|tls| -> Result<TlsSetup, HealthError> {
                Ok(TlsSetup {
                    connector: TlsConnector::from(tls_client_config(tls)?),
                    server_name: tls.server_name.clone(),
                })
            })
            .transpose()?;
        Ok(RedisAuth {
            username: opts.username.clone(),
            password,
            tls,
        })
    }

    /// Whether connections use TLS (cluster nodes then report a `tls-port`).
    pub(super) fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connects (and authenticates) to `addr`; with TLS, the certificate
    /// must name `configured server_name` or else `host`.
    pub(super) async fn connect(&self, addr: SocketAddr, host: &str) -> Result<Conn, Failure> {
        let tcp = Conn::tcp(addr).await?;
        let stream: Box<dyn resp::Stream> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = tls.server_name.as_deref().unwrap_or(host);
                let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
                    .map_err(|_| {
                        Failure::new(
                            FailureKind::Tls,
                            format!("tls: invalid server name {name:?}"),
                        )
                    })?;
                let stream = tls.connector.connect(server_name, tcp).await.map_err(|e| {
                    Failure::new(FailureKind::Tls, format!("tls: {}", error_chain(&e)))
                })?;
                Box::new(stream)
            }
        };
        Conn::open(
            addr,
            stream,
            self.username.as_deref(),
            self.password.as_deref(),
        )
        .await
    }
}

/// The kept connection in `slot` if it goes to `target`, else a new one
/// (the old one, if any, is dropped; on failure the slot is left empty).
pub(super) async fn kept<'c>(
    slot: &'c mut Option<Conn>,
    auth: &RedisAuth,
    target: SocketAddr,
    host: &str,
) -> Result<&'c mut Conn, Failure> {
    let conn = match slot.take() {
        Some(c) if c.addr == target => c,
        stale => {
            drop(stale);
            auth.connect(target, host).await?
        }
    };
    Ok(slot.insert(conn))
}

//! The `availability` check: ask the Redis Enterprise cluster itself.
//!
//! The local REST endpoint
//! `GET /v1/local/bdbs/{uid}/endpoint/availability` answers whether the
//! database endpoint on that cluster can serve, including (with
//! `extend_check=lag`) whether Active-Active replication lag is within
//! tolerance: things a RESP probe cannot see. 200 means available; anything
//! else carries a JSON `error_code` (e.g. `bdb_unavailable`) that we pass on.
//!
//! The request goes to the member's resolved address on the REST port,
//! while TLS verifies the configured server name (or the member's host).

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    Checker, Failure, FailureKind, HealthError, Outcome, read_secret, tls_client_config, within,
};
use crate::{config::AvailabilityOptions, error_chain::error_chain};

/// The most of a response body we read (error JSON is small).
const BODY_LIMIT: usize = 16 * 1024;

pub(crate) struct AvailabilityChecker {
    port: u16,
    bdb_uid: u32,
    lag_tolerance_ms: u32,
    username: String,
    password: String,
    server_name: Option<String>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    /// Client for the last (name, target IP): it pins name -> address.
    client: Option<(String, IpAddr, reqwest::Client)>,
}

impl AvailabilityChecker {
    pub(crate) fn new(opts: &AvailabilityOptions, timeout: Duration) -> Result<Self, HealthError> {
        let password = read_secret(&opts.password)?;
        let tls = tls_client_config(&opts.tls)?;
        Ok(AvailabilityChecker {
            port: opts.port,
            bdb_uid: opts.bdb_uid,
            lag_tolerance_ms: opts.lag_tolerance_ms,
            username: opts.username.clone(),
            password,
            server_name: opts.tls.server_name.clone(),
            tls,
            timeout,
            client: None,
        })
    }

    fn client(&mut self, name: &str, ip: IpAddr) -> Result<reqwest::Client, Failure> {
        if let Some((n, i, c)) = &self.client
            && n == name
            && *i == ip
        {
            return Ok(c.clone());
        }
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls((*self.tls).clone())
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .pool_max_idle_per_host(1);
        if name.parse::<IpAddr>().is_err() {
            builder = builder.resolve(name, SocketAddr::new(ip, self.port));
        }
        let client = builder.build().map_err(|e| {
            Failure::new(
                FailureKind::Http,
                format!("http client: {}", error_chain(&e)),
            )
        })?;
        self.client = Some((name.to_string(), ip, client.clone()));
        Ok(client)
    }

    fn url(&self, name: &str) -> String {
        let host = match name.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => name.to_string(),
        };
        format!(
            "https://{host}:{}/v1/local/bdbs/{}/endpoint/availability?extend_check=lag&availability_lag_tolerance_ms={}",
            self.port, self.bdb_uid, self.lag_tolerance_ms
        )
    }

    async fn probe(&mut self, target: SocketAddr, host: &str) -> Result<(), Failure> {
        let name = self.server_name.clone().unwrap_or_else(|| host.to_string());
        let client = self.client(&name, target.ip())?;
        let url = self.url(&name);
        let mut resp = client
            .get(&url)
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .map_err(|e| {
                // Drop the client: a later probe may need a fresh connection.
                self.client = None;
                request_failure(&e)
            })?;
        let status = resp.status();
        if status == reqwest::StatusCode::OK {
            return Ok(());
        }
        let mut body = Vec::new();
        while body.len() < BODY_LIMIT {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        Err(status_failure(status, &body))
    }
}

/// A transport error, its text without the URL's query noise.
fn request_failure(e: &reqwest::Error) -> Failure {
    let (kind, what) = if e.is_timeout() {
        (FailureKind::Timeout, "timeout")
    } else if e.is_connect() {
        (FailureKind::Connect, "connect")
    } else {
        (FailureKind::Http, "request")
    };
    // The chain's first element repeats the URL; the sources say why.
    let text = match std::error::Error::source(e) {
        Some(source) => format!("{what}: {}", error_chain(source)),
        None => format!("{what}: {e}"),
    };
    Failure::new(kind, text)
}

/// A non-200 answer: status plus the REST `error_code` and description.
fn status_failure(status: reqwest::StatusCode, body: &[u8]) -> Failure {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let code = field("error_code");
    let description = field("description").map(|d| shorten(&d, 160));
    let (kind, mut error) = if status == reqwest::StatusCode::UNAUTHORIZED {
        (
            FailureKind::Auth,
            "authentication failed (HTTP 401)".to_string(),
        )
    } else {
        (FailureKind::Http, format!("HTTP {}", status.as_u16()))
    };
    if let Some(code) = &code {
        error.push(' ');
        error.push_str(code);
    }
    if let Some(d) = description {
        error.push_str(": ");
        error.push_str(&d);
    }
    Failure {
        kind,
        text: error,
        code,
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &s[..cut])
}

impl Checker for AvailabilityChecker {
    fn check<'a>(
        &'a mut self,
        target: SocketAddr,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        Box::pin(async move {
            let started = Instant::now();
            let timeout = self.timeout;
            let result = within(timeout, self.probe(target, host)).await;
            Outcome::from_result(result, started)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, TlsOptions};
    use crate::health::test_support::{TempDir, TestPki, bounded, local};
    use base64::Engine;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
        task::JoinHandle,
    };

    const USER: &str = "probe@example.com";
    const PASSWORD: &str = "rest-pass-1234";

    /// A REST API stand-in: HTTPS on 127.0.0.1, one request per connection.
    struct FakeRest {
        port: u16,
        task: JoinHandle<()>,
    }

    impl Drop for FakeRest {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn respond(request: &str) -> (u16, String) {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        let authorized = request.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("authorization") && v.trim() == expected
            })
        });
        if !authorized {
            return (
                401,
                r#"{"error_code":"unauthorized","description":"bad credentials"}"#.into(),
            );
        }
        let path = request
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("");
        let query_ok = path.ends_with("?extend_check=lag&availability_lag_tolerance_ms=100");
        if path.starts_with("/v1/local/bdbs/1/endpoint/availability") && query_ok {
            (200, "{}".into())
        } else if path.starts_with("/v1/local/bdbs/2/endpoint/availability") && query_ok {
            (
                503,
                r#"{"error_code":"bdb_unavailable","description":"Database is unavailable"}"#
                    .into(),
            )
        } else if path.starts_with("/v1/local/bdbs/3/endpoint/availability") {
            (500, "not json".into())
        } else if path.starts_with("/v1/local/bdbs/4/endpoint/availability") {
            // Never answers: exercises the timeout.
            (0, String::new())
        } else {
            (404, r#"{"error_code":"bdb_not_found"}"#.into())
        }
    }

    async fn fake_rest(pki: &TestPki) -> FakeRest {
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let (status, body) = respond(&String::from_utf8_lossy(&buf));
                    if status == 0 {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    let reason = match status {
                        200 => "OK",
                        401 => "Unauthorized",
                        503 => "Service Unavailable",
                        _ => "Error",
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(resp.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        FakeRest { port, task }
    }

    fn checker(
        pki: &TestPki,
        dir: &TempDir,
        port: u16,
        bdb_uid: u32,
        password: &str,
        server_name: Option<&str>,
        timeout: Duration,
    ) -> AvailabilityChecker {
        let path = dir.path().join(format!("rest-pw-{bdb_uid}-{password}"));
        std::fs::write(&path, password).expect("write password");
        AvailabilityChecker::new(
            &AvailabilityOptions {
                port,
                bdb_uid,
                lag_tolerance_ms: 100,
                username: USER.into(),
                password: Secret::File(path),
                tls: TlsOptions {
                    ca_file: Some(pki.ca_file.clone()),
                    server_name: server_name.map(str::to_string),
                },
            },
            timeout,
        )
        .expect("build checker")
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn availability_200_is_healthy() {
        bounded(async {
            let pki = TestPki::new();
            let dir = TempDir::new();
            let rest = fake_rest(&pki).await;
            let mut c = checker(&pki, &dir, rest.port, 1, PASSWORD, None, T);
            // The target's port is the database's; the REST port is used.
            let o = c.check(local(12000), "localhost").await;
            assert!(o.healthy, "{o:?}");
            let o = c.check(local(12000), "localhost").await;
            assert!(o.healthy, "{o:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn availability_uses_the_server_name_and_connects_to_the_target() {
        bounded(async {
            let pki = TestPki::new();
            let dir = TempDir::new();
            let rest = fake_rest(&pki).await;
            // The host does not resolve; the request still reaches the
            // target IP and the certificate is checked for "localhost".
            let mut c = checker(&pki, &dir, rest.port, 1, PASSWORD, Some("localhost"), T);
            let o = c.check(local(12000), "db-1.invalid").await;
            assert!(o.healthy, "{o:?}");
            // An IP literal host is verified against the IP SAN.
            let mut c = checker(&pki, &dir, rest.port, 1, PASSWORD, None, T);
            let o = c.check(local(12000), "127.0.0.1").await;
            assert!(o.healthy, "{o:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn availability_503_reports_bdb_unavailable() {
        bounded(async {
            let pki = TestPki::new();
            let dir = TempDir::new();
            let rest = fake_rest(&pki).await;
            let mut c = checker(&pki, &dir, rest.port, 2, PASSWORD, None, T);
            let o = c.check(local(12000), "localhost").await;
            assert!(!o.healthy);
            assert_eq!(o.code.as_deref(), Some("bdb_unavailable"));
            assert_eq!(o.kind, Some(FailureKind::Http));
            assert_eq!(
                o.error.as_deref(),
                Some("HTTP 503 bdb_unavailable: Database is unavailable")
            );
        })
        .await;
    }

    #[tokio::test]
    async fn availability_bad_credentials_are_an_authentication_failure() {
        bounded(async {
            let pki = TestPki::new();
            let dir = TempDir::new();
            let rest = fake_rest(&pki).await;
            let wrong = "not-the-pass-77";
            let mut c = checker(&pki, &dir, rest.port, 1, wrong, None, T);
            let o = c.check(local(12000), "localhost").await;
            assert!(!o.healthy);
            let err = o.error.clone().expect("error");
            assert!(err.starts_with("authentication failed"), "{err}");
            assert_eq!(o.kind, Some(FailureKind::Auth));
            assert!(!format!("{o:?}").contains(wrong));
        })
        .await;
    }

    #[tokio::test]
    async fn availability_non_json_error_keeps_the_status() {
        bounded(async {
            let pki = TestPki::new();
            let dir = TempDir::new();
            let rest = fake_rest(&pki).await;
            let mut c = checker(&pki, &dir, rest.port, 3, PASSWORD, None, T);
            let o = c.check(local(12000), "localhost").await;
            assert!(!o.healthy);
            assert_eq!(o.error.as_deref(), Some("HTTP 500"));
            assert_eq!(o.code, None);
        })
        .await;
    }

    #[tokio::test]
    async fn availability_times_out_on_a_silent_server() {
        bounded(async {
            let pki = TestPki::new();
            let dir = TempDir::new();
            let rest = fake_rest(&pki).await;
            let timeout = Duration::from_millis(300);
            let mut c = checker(&pki, &dir, rest.port, 4, PASSWORD, None, timeout);
            let started = Instant::now();
            let o = c.check(local(12000), "localhost").await;
            assert!(!o.healthy);
            assert!(started.elapsed() < Duration::from_secs(2));
            assert_eq!(o.kind, Some(FailureKind::Timeout), "{o:?}");
            let err = o.error.expect("error");
            assert!(err.contains("timeout"), "{err}");
        })
        .await;
    }

    #[tokio::test]
    async fn availability_rejects_an_untrusted_certificate() {
        bounded(async {
            let pki = TestPki::new();
            let other = TestPki::new();
            let dir = TempDir::new();
            let rest = fake_rest(&pki).await;
            // Trusting a different CA: verification must fail.
            let mut c = checker(&other, &dir, rest.port, 1, PASSWORD, None, T);
            let o = c.check(local(12000), "localhost").await;
            assert!(!o.healthy);
            let err = o.error.expect("error");
            assert!(err.to_lowercase().contains("certificate"), "{err}");
        })
        .await;
    }

    #[tokio::test]
    async fn availability_connection_refused_is_reported() {
        bounded(async {
            let pki = TestPki::new();
            let dir = TempDir::new();
            let port = crate::health::test_support::free_port();
            let mut c = checker(&pki, &dir, port, 1, PASSWORD, None, T);
            let o = c.check(local(12000), "localhost").await;
            assert!(!o.healthy);
            assert_eq!(o.kind, Some(FailureKind::Connect), "{o:?}");
            let err = o.error.expect("error");
            assert!(err.starts_with("connect: "), "{err}");
        })
        .await;
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_the_url() {
        let pki = TestPki::new();
        let dir = TempDir::new();
        let c = checker(&pki, &dir, 9443, 7, PASSWORD, None, T);
        assert_eq!(
            c.url("::1"),
            "https://[::1]:9443/v1/local/bdbs/7/endpoint/availability?extend_check=lag&availability_lag_tolerance_ms=100"
        );
    }
}

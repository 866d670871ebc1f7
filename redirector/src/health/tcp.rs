//! The `tcp` check: the member accepts a TCP connection.
//!
//! The cheapest signal, for members that are not Redis or when credentials
//! are not available. It only proves a listener, not a working database.

use std::{future::Future, net::SocketAddr, pin::Pin, time::Duration, time::Instant};

use tokio::net::TcpStream;

use super::{Checker, Failure, FailureKind, Outcome, within};
use crate::error_chain::error_chain;

pub(crate) struct TcpChecker {
    timeout: Duration,
}

impl TcpChecker {
    pub(crate) fn new(timeout: Duration) -> Self {
        TcpChecker { timeout }
    }
}

impl Checker for TcpChecker {
    fn check<'a>(
        &'a mut self,
        target: SocketAddr,
        _host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = within(self.timeout, async {
                TcpStream::connect(target).await.map(drop).map_err(|e| {
                    Failure::new(
                        FailureKind::Connect,
                        format!("connect: {}", error_chain(&e)),
                    )
                })
            })
            .await;
            Outcome::from_result(result, started)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::test_support::{bounded, free_port};

    #[tokio::test]
    async fn tcp_is_healthy_against_a_listening_socket() {
        bounded(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let mut checker = TcpChecker::new(Duration::from_millis(500));
            let outcome = checker.check(addr, "127.0.0.1").await;
            assert!(outcome.healthy, "{outcome:?}");
            assert_eq!(outcome.error, None);
        })
        .await;
    }

    #[tokio::test]
    async fn tcp_reports_connection_refused_on_a_closed_port() {
        bounded(async {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let mut checker = TcpChecker::new(Duration::from_millis(500));
            let outcome = checker.check(addr, "127.0.0.1").await;
            assert!(!outcome.healthy);
            let error = outcome.error.expect("error text");
            assert!(error.starts_with("connect: "), "{error}");
            assert!(error.to_lowercase().contains("refused"), "{error}");
        })
        .await;
    }

    #[tokio::test]
    async fn tcp_works_over_ipv6_loopback() {
        bounded(async {
            let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
                // No IPv6 loopback on this machine: nothing to check.
                return;
            };
            let addr = listener.local_addr().expect("addr");
            let mut checker = TcpChecker::new(Duration::from_millis(500));
            assert!(checker.check(addr, "::1").await.healthy);
        })
        .await;
    }
}

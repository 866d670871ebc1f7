//! `redis-ping` and `redis-echo`: one round trip on a kept connection.
//!
//! PING must come back PONG; ECHO must come back with the unique token it
//! sent, which also proves the reply belongs to this request.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    time::{Duration, Instant},
};

use ::redis::Value;

use super::{
    connection::{RedisAuth, kept},
    resp::Conn,
    token, wrong_reply,
};
use crate::health::{Checker, Failure, FailureKind, Outcome};

/// What `redis-ping` / `redis-echo` send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    Ping,
    Echo,
}

/// `redis-ping` and `redis-echo` on a kept connection.
pub(crate) struct RedisChecker {
    probe: Probe,
    auth: RedisAuth,
    timeout: Duration,
    /// Kept between probes; dropped after any failure.
    pub(super) conn: Option<Conn>,
    counter: u64,
}

/// Whether a failed probe deserves one more attempt on a fresh connection:
/// only when it ran on a `reused` kept connection and that connection broke
/// (stale after a server restart or an idle cut by a proxy). An answer from
/// the server, an error reply included, is the member's state, not the
/// connection's.
pub(super) fn retry_on_fresh_connection(reused: bool, failure: &Failure) -> bool {
    reused && failure.kind == FailureKind::ConnectionLost
}

impl RedisChecker {
    pub(crate) fn new(probe: Probe, auth: RedisAuth, timeout: Duration) -> Self {
        RedisChecker {
            probe,
            auth,
            timeout,
            conn: None,
            counter: 0,
        }
    }

    async fn round_trip(&mut self, target: SocketAddr, host: &str) -> Result<(), Failure> {
        let reused = self.conn.as_ref().is_some_and(|c| c.addr == target);
        let result = self.round_trip_once(target, host).await;
        match result {
            // One fresh attempt, within the same deadline.
            Err(f) if retry_on_fresh_connection(reused, &f) => {
                self.conn = None;
                self.round_trip_once(target, host).await
            }
            other => other,
        }
    }

    async fn round_trip_once(&mut self, target: SocketAddr, host: &str) -> Result<(), Failure> {
        let conn = kept(&mut self.conn, &self.auth, target, host).await?;
        match self.probe {
            Probe::Ping => match conn.query(&::redis::cmd("PING")).await? {
                Value::SimpleString(s) if s == "PONG" => Ok(()),
                other => Err(wrong_reply(&other)),
            },
            Probe::Echo => {
                self.counter += 1;
                let sent = format!("redirector-{}-{}", self.counter, token());
                let reply = conn.query(::redis::cmd("ECHO").arg(&sent)).await?;
                match &reply {
                    Value::BulkString(b) if b.as_slice() == sent.as_bytes() => Ok(()),
                    other => Err(wrong_reply(other)),
                }
            }
        }
    }
}

impl Checker for RedisChecker {
    fn check<'a>(
        &'a mut self,
        target: SocketAddr,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        Box::pin(async move {
            let started = Instant::now();
            let timeout = self.timeout;
            let result = match tokio::time::timeout(timeout, self.round_trip(target, host)).await {
                Ok(r) => r,
                Err(_) => Err(Failure::timeout(timeout)),
            };
            if result.is_err() {
                self.conn = None;
            }
            Outcome::from_result(result, started)
        })
    }

    fn connection_lost(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            match &mut self.conn {
                Some(c) => c.closed().await,
                None => std::future::pending::<()>().await,
            }
            self.conn = None;
        })
    }
}

//! The kept connection of the Redis checks: one request, one reply, read on
//! the probing task itself.
//!
//! Probes never pipeline, so the redis crate's multiplexed connection (a
//! driver task per connection, every command passed through channels) buys
//! nothing here and cost about half of the daemon's CPU at thousands of
//! members. The redis crate still encodes every command
//! (`Cmd::get_packed_command`) and parses every reply (`parse_redis_value`);
//! this module only moves bytes.

use std::net::SocketAddr;

use ::redis::{Cmd, ErrorKind, RedisError, Value};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::{
    error_chain::error_chain,
    health::{Failure, FailureKind},
};

/// Largest reply accepted (CLUSTER SHARDS of a big cluster is the largest
/// thing a probe asks for).
const MAX_REPLY: usize = 16 << 20;

/// A byte stream to a member: plain TCP or TLS.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connection to one member, authenticated if credentials were given.
pub(crate) struct Conn {
    pub(crate) addr: SocketAddr,
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Takes over `stream` to `addr` and authenticates with `AUTH` when a
    /// password is set. An error reply to AUTH is an authentication failure
    /// (code `AUTH`); the password never appears in it.
    pub(crate) async fn open(
        addr: SocketAddr,
        stream: Box<dyn Stream>,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Conn, Failure> {
        let mut conn = Conn {
            addr,
            stream,
            buf: Vec::with_capacity(64),
        };
        if let Some(password) = password {
            let mut auth = ::redis::cmd("AUTH");
            if let Some(user) = username {
                auth.arg(user);
            }
            auth.arg(password);
            if let Value::ServerError(e) = conn.round_trip(&auth).await? {
                let code = e.code().to_string();
                return Err(Failure::with_code(
                    FailureKind::Auth,
                    format!("authentication failed ({code}: wrong username or password)"),
                    "AUTH",
                ));
            }
        }
        Ok(conn)
    }

    /// Connects over plain TCP.
    pub(crate) async fn tcp(addr: SocketAddr) -> Result<TcpStream, Failure> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| {
            Failure::new(
                FailureKind::Connect,
                format!("connect: {}", error_chain(&e)),
            )
        })?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// Sends `cmd` and returns its reply; a Redis error reply is a failure
    /// whose code is the error's prefix (LOADING, MASTERDOWN, BUSY, ...).
    pub(crate) async fn query(&mut self, cmd: &Cmd) -> Result<Value, Failure> {
        match self.round_trip(cmd).await? {
            Value::ServerError(e) => Err(redis_failure(&RedisError::from(e))),
            v => Ok(v),
        }
    }

    async fn round_trip(&mut self, cmd: &Cmd) -> Result<Value, Failure> {
        self.stream
            .write_all(&cmd.get_packed_command())
            .await
            .map_err(lost)?;
        self.buf.clear();
        loop {
            if self.stream.read_buf(&mut self.buf).await.map_err(lost)? == 0 {
                return Err(Failure::new(
                    FailureKind::ConnectionLost,
                    "connection lost: closed by the member",
                ));
            }
            match ::redis::parse_redis_value(&self.buf) {
                Ok(v) => return Ok(v),
                // Not all of the reply is here yet.
                Err(e) if e.kind() == ErrorKind::IoError && self.buf.len() < MAX_REPLY => {}
                Err(e) => {
                    return Err(Failure::new(
                        FailureKind::Protocol,
                        format!("bad reply: {e}"),
                    ));
                }
            }
        }
    }

    /// Resolves when the member closes the connection, or sends something
    /// nobody asked for (either way the connection is no longer usable).
    /// Cancel-safe: nothing is lost if it is dropped unresolved.
    pub(crate) async fn closed(&mut self) {
        self.buf.clear();
        let _ = self.stream.read_buf(&mut self.buf).await;
    }
}

fn lost(e: std::io::Error) -> Failure {
    Failure::new(
        FailureKind::ConnectionLost,
        format!("connection lost: {}", error_chain(&e)),
    )
}

/// A failure from a Redis error reply: the prefix is the code.
pub(crate) fn redis_failure(err: &RedisError) -> Failure {
    match (err.code(), err.detail()) {
        (Some(code), Some(detail)) => {
            Failure::with_code(FailureKind::Reply, format!("{code} {detail}"), code)
        }
        (Some(code), None) => Failure::with_code(FailureKind::Reply, code.to_string(), code),
        (None, _) => Failure::new(FailureKind::Reply, err.to_string()),
    }
}

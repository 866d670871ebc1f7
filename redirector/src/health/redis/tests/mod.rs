//! Tests of the Redis checks, by concept like the code: slots and topology
//! parsing are pure; ping/echo and set/get run against fake servers and
//! real `redis-server` processes on loopback.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    connection::RedisAuth,
    ping::{Probe, RedisChecker},
    token,
};
use crate::{
    config::{RedisOptions, Secret},
    health::test_support::{TempDir, redis_cli},
};

mod ping;
mod resp;
mod setget;
mod slots;
mod tls;
mod topology;

const T: Duration = Duration::from_secs(2);

fn auth(username: Option<&str>, password: Option<&str>, dir: &TempDir) -> RedisAuth {
    let password = password.map(|pw| {
        let path = dir.path().join(format!("pw-{}", token()));
        std::fs::write(&path, format!("{pw}\n")).expect("write password");
        Secret::File(path)
    });
    RedisAuth::from_options(&RedisOptions {
        username: username.map(str::to_string),
        password,
        tls: None,
    })
    .expect("build auth")
}

fn ping(auth: RedisAuth, timeout: Duration) -> RedisChecker {
    RedisChecker::new(Probe::Ping, auth, timeout)
}

/// A fake Redis on 127.0.0.1 that answers every command with `reply`,
/// or never answers when `reply` is `None`. Stopped on drop.
struct FakeRedis {
    addr: SocketAddr,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a [`FakeRedis`] answers on each connection.
#[derive(Clone)]
struct Script {
    /// The n-th command on a connection gets the n-th reply, the last one
    /// repeating; no reply at all when empty.
    replies: Vec<&'static [u8]>,
    /// Close the connection after each reply.
    close_after_reply: bool,
}

/// Removes one complete RESP command from the front of `buf`, if any.
fn take_command(buf: &mut Vec<u8>) -> bool {
    fn line(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
        let end = buf[from..].windows(2).position(|w| w == b"\r\n")? + from;
        Some((&buf[from..end], end + 2))
    }
    let Some((first, mut at)) = line(buf, 0) else {
        return false;
    };
    if first.first() == Some(&b'*') {
        let Some(n) = std::str::from_utf8(&first[1..])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            return false;
        };
        for _ in 0..n {
            let Some((hdr, next)) = line(buf, at) else {
                return false;
            };
            let Some(len) = std::str::from_utf8(&hdr[1..])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            else {
                return false;
            };
            if buf.len() < next + len + 2 {
                return false;
            }
            at = next + len + 2;
        }
    }
    buf.drain(..at);
    true
}

async fn fake_redis(reply: Option<&'static [u8]>) -> FakeRedis {
    fake_redis_scripted(Script {
        replies: reply.into_iter().collect(),
        close_after_reply: false,
    })
    .await
}

async fn fake_redis_scripted(script: Script) -> FakeRedis {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            conns.spawn(serve(sock, script.clone()));
        }
    });
    FakeRedis {
        addr,
        accepted,
        task,
    }
}

/// One connection of a [`FakeRedis`].
async fn serve(mut sock: tokio::net::TcpStream, script: Script) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut answered = 0;
    while let Ok(n) = sock.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while take_command(&mut buf) {
            let Some(last) = script.replies.len().checked_sub(1) else {
                continue;
            };
            let reply = script.replies[answered.min(last)];
            answered += 1;
            if sock.write_all(reply).await.is_err() || script.close_after_reply {
                return;
            }
        }
    }
}

/// IDs of the server's clients whose last command was `cmd`.
async fn client_ids(port: u16, cmd: &str) -> Vec<String> {
    redis_cli(port, &["CLIENT", "LIST"])
        .await
        .lines()
        .filter(|l| l.split(' ').any(|f| f == format!("cmd={cmd}")))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_string)
        .collect()
}

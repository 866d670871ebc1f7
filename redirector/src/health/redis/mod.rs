//! The Redis checks: `redis-ping`, `redis-echo` and `redis-setget`.
//!
//! A TCP accept says little about a database that is loading, has lost its
//! master link or is blocked by a script; a RESP round trip does. The
//! connection is kept between probes (a health check should not cost a
//! handshake, let alone a TLS one, per interval) and dropped after any
//! failure so the next probe starts clean. `redis-setget` additionally
//! proves the write path, and with `cluster = true` it does so on every
//! shard of an OSS-cluster-API database, addressing each through a hash tag
//! that lands in one of the shard's slots.
//!
//! One file per concept: [`connection`] (TCP, TLS, AUTH), [`resp`] (the
//! wire), [`ping`] (PING/ECHO), [`setget`] (SET/GET, per shard in a
//! cluster), [`topology`] (CLUSTER SHARDS/SLOTS) and [`slots`] (hash slots).

use std::{
    hash::{BuildHasher, Hasher},
    sync::atomic::{AtomicU64, Ordering},
};

use ::redis::Value;

use crate::health::{Failure, FailureKind};

mod connection;
mod ping;
mod resp;
mod setget;
mod slots;
mod topology;

#[cfg(test)]
mod tests;

pub(crate) use connection::RedisAuth;
pub(crate) use ping::{Probe, RedisChecker};
pub(crate) use setget::SetGetChecker;

/// A random-enough token: std's per-instance SipHash keys, a counter and
/// the clock. Only used to make probe keys and values unique.
fn token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

/// A well-formed reply that is not the one expected, shortened for the
/// error text.
fn wrong_reply(v: &Value) -> Failure {
    let mut text = format!("{v:?}");
    if text.len() > 100 {
        let mut cut = 100;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    Failure::new(FailureKind::WrongReply, format!("wrong reply: {text}"))
}

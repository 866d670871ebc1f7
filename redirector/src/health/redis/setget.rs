//! `redis-setget`: SET with a TTL then GET, proving the write path.
//!
//! With `cluster = true` the probe runs on every shard of an
//! OSS-cluster-API database: the member tells the topology, and each shard's
//! primary is written through a key whose hash tag lands in one of its
//! slots. Connections to the member and to every primary are kept.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    time::{Duration, Instant},
};

use ::redis::Value;

use super::{
    connection::{RedisAuth, kept},
    resp::Conn,
    slots::shard_key,
    token,
    topology::{Shard, topology},
    wrong_reply,
};
use crate::health::{Checker, Failure, FailureKind, Outcome, timeout_text};

/// `redis-setget`: SET with a TTL then GET, on the member or on every shard.
pub(crate) struct SetGetChecker {
    auth: RedisAuth,
    timeout: Duration,
    cluster: bool,
    key_prefix: String,
    ttl: Duration,
    /// The member's own connection (topology queries, or the probe itself).
    pub(super) conn: Option<Conn>,
    /// Cluster mode: kept connections to shard primaries.
    pub(super) shards: HashMap<SocketAddr, Conn>,
    /// Shard being probed, to name it when the deadline hits.
    current: Option<String>,
}

/// Whether the member's own connection outlives a failed probe: in cluster
/// mode a failure on some shards says nothing against it; anything else
/// (timeout, lost connection, error reply, unreadable topology) does.
pub(super) fn keeps_member_connection(cluster: bool, failure: &Failure) -> bool {
    cluster && failure.kind == FailureKind::Shard
}

impl SetGetChecker {
    pub(crate) fn new(
        auth: RedisAuth,
        timeout: Duration,
        cluster: bool,
        key_prefix: String,
        ttl: Duration,
    ) -> Self {
        SetGetChecker {
            auth,
            timeout,
            cluster,
            key_prefix,
            ttl,
            conn: None,
            shards: HashMap::new(),
            current: None,
        }
    }

    async fn probe(&mut self, target: SocketAddr, host: &str) -> Result<(), Failure> {
        if !self.cluster {
            let key = format!("{}{}", self.key_prefix, token());
            let ttl = self.ttl;
            let conn = kept(&mut self.conn, &self.auth, target, host).await?;
            return set_get(conn, &key, ttl).await;
        }

        let conn = kept(&mut self.conn, &self.auth, target, host).await?;
        let shards = topology(conn, self.auth.uses_tls()).await?;
        if shards.is_empty() {
            return Err(Failure::new(
                FailureKind::Topology,
                "cluster: no shard owns any slot",
            ));
        }
        let mut wanted: Vec<SocketAddr> = Vec::new();
        let mut failures: Vec<Failure> = Vec::new();
        for shard in &shards {
            let name = shard.name();
            self.current = Some(name.clone());
            match self.probe_shard(shard, target, host).await {
                Ok(addr) => wanted.push(addr),
                Err((addr, f)) => {
                    if let Some(addr) = addr {
                        self.shards.remove(&addr);
                        wanted.push(addr);
                    }
                    failures.push(Failure {
                        kind: FailureKind::Shard,
                        text: format!("shard {name}: {}", f.text),
                        code: f.code,
                    });
                }
            }
        }
        self.current = None;
        // Forget connections to nodes that are no longer shard primaries.
        self.shards.retain(|addr, _| wanted.contains(addr));
        if failures.is_empty() {
            return Ok(());
        }
        let code = failures.iter().find_map(|f| f.code.clone());
        let text = failures
            .into_iter()
            .map(|f| f.text)
            .collect::<Vec<_>>()
            .join("; ");
        Err(Failure {
            kind: FailureKind::Shard,
            text,
            code,
        })
    }

    /// SET/GET on one shard's primary; returns the address it used.
    async fn probe_shard(
        &mut self,
        shard: &Shard,
        target: SocketAddr,
        host: &str,
    ) -> Result<SocketAddr, (Option<SocketAddr>, Failure)> {
        let key = shard_key(&self.key_prefix, &shard.ranges, &token()).ok_or_else(|| {
            (
                None,
                Failure::new(
                    FailureKind::Config,
                    "cannot address it: key_prefix contains a hash tag",
                ),
            )
        })?;
        let primary = shard.primary.as_ref().ok_or_else(|| {
            (
                None,
                Failure::new(FailureKind::Topology, "no primary in the topology"),
            )
        })?;
        let addr = primary.resolve(target).await.map_err(|f| (None, f))?;
        // The node's advertised name is what its certificate names; an empty
        // or unknown endpoint means "the node you asked", i.e. the member.
        let tls_host = primary
            .name
            .as_deref()
            .filter(|n| !n.is_empty() && *n != "?")
            .unwrap_or(host)
            .to_string();
        let ttl = self.ttl;
        let conn = match self.shards.entry(addr) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                self.auth
                    .connect(addr, &tls_host)
                    .await
                    .map_err(|f| (Some(addr), f))?,
            ),
        };
        set_get(conn, &key, ttl)
            .await
            .map(|()| addr)
            .map_err(|f| (Some(addr), f))
    }
}

/// SET a fresh value with a TTL of `ttl` under `key`, then GET it back.
async fn set_get(conn: &mut Conn, key: &str, ttl: Duration) -> Result<(), Failure> {
    let value = token();
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    match conn
        .query(
            ::redis::cmd("SET")
                .arg(key)
                .arg(&value)
                .arg("PX")
                .arg(ttl_ms),
        )
        .await?
    {
        Value::Okay => {}
        Value::SimpleString(s) if s == "OK" => {}
        other => return Err(wrong_reply(&other)),
    }
    match conn.query(::redis::cmd("GET").arg(key)).await? {
        Value::BulkString(b) if b == value.as_bytes() => Ok(()),
        Value::Nil => Err(Failure::new(
            FailureKind::WrongReply,
            "wrong reply: GET found no value right after SET",
        )),
        other => Err(wrong_reply(&other)),
    }
}

impl Checker for SetGetChecker {
    fn check<'a>(
        &'a mut self,
        target: SocketAddr,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        Box::pin(async move {
            let started = Instant::now();
            let timeout = self.timeout;
            let result = match tokio::time::timeout(timeout, self.probe(target, host)).await {
                Ok(r) => r,
                Err(_) => {
                    // Whatever was in flight is suspect: start over next time.
                    self.shards.clear();
                    let mut text = timeout_text(timeout);
                    if let Some(shard) = self.current.take() {
                        text.push_str(&format!(" (shard {shard})"));
                    }
                    Err(Failure::new(FailureKind::Timeout, text))
                }
            };
            if let Err(f) = &result
                && !keeps_member_connection(self.cluster, f)
            {
                self.conn = None;
            }
            Outcome::from_result(result, started)
        })
    }
}

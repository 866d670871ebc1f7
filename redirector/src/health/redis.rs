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
//! The connection is built here (TCP to the resolved target, TLS verified
//! against the configured name, see [`super::resp`]), so the probe reaches
//! the address the daemon resolved even when the certificate names a host.

use std::{
    collections::HashMap,
    future::Future,
    hash::{BuildHasher, Hasher},
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ::redis::Value;
use tokio_rustls::TlsConnector;

use super::{
    Checker, Failure, HealthError, Outcome, error_chain, read_secret,
    resp::{self, Conn},
    timeout_text, tls_client_config,
};
use crate::config::RedisOptions;

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

    /// Connects (and authenticates) to `addr`; with TLS, the certificate
    /// must name `configured server_name` or else `host`.
    async fn connect(&self, addr: SocketAddr, host: &str) -> Result<Conn, Failure> {
        let tcp = Conn::tcp(addr).await?;
        let stream: Box<dyn resp::Stream> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = tls.server_name.as_deref().unwrap_or(host);
                let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
                    .map_err(|_| Failure::new(format!("tls: invalid server name {name:?}")))?;
                let stream = tls
                    .connector
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| Failure::new(format!("tls: {}", error_chain(&e))))?;
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

/// The kept connection in `slot` if it goes to `target`, else a new one.
async fn kept<'c>(
    slot: &'c mut Option<Conn>,
    auth: &RedisAuth,
    target: SocketAddr,
    host: &str,
) -> Result<&'c mut Conn, Failure> {
    if !matches!(slot, Some(c) if c.addr == target) {
        *slot = None;
        let conn = auth.connect(target, host).await?;
        return Ok(slot.insert(conn));
    }
    slot.as_mut()
        .ok_or_else(|| Failure::new("internal: connection vanished"))
}

/// Whether the failure is about the connection rather than the server's
/// answer, so a kept connection may just have gone stale.
fn is_connection_failure(f: &Failure) -> bool {
    f.code.is_none() && (f.error.starts_with("connection lost") || f.error.starts_with("io: "))
}

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
    conn: Option<Conn>,
    counter: u64,
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
            // A kept connection can go stale (server restart, idle cut by a
            // proxy): one fresh attempt, within the same deadline.
            Err(f) if reused && is_connection_failure(&f) => {
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
    Failure::new(format!("wrong reply: {text}"))
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
                Err(_) => Err(Failure::new(timeout_text(timeout))),
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

/// `redis-setget`: SET with a TTL then GET, on the member or on every shard.
pub(crate) struct SetGetChecker {
    auth: RedisAuth,
    timeout: Duration,
    cluster: bool,
    key_prefix: String,
    ttl: Duration,
    /// The member's own connection (topology queries, or the probe itself).
    conn: Option<Conn>,
    /// Cluster mode: kept connections to shard primaries.
    shards: HashMap<SocketAddr, Conn>,
    /// Shard being probed, to name it when the deadline hits.
    current: Option<String>,
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
        let shards = topology(conn, self.auth.tls.is_some()).await?;
        if shards.is_empty() {
            return Err(Failure::new("cluster: no shard owns any slot"));
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
                        error: format!("shard {name}: {}", f.error),
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
        let error = failures
            .into_iter()
            .map(|f| f.error)
            .collect::<Vec<_>>()
            .join("; ");
        Err(Failure { error, code })
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
                Failure::new("cannot address it: key_prefix contains a hash tag"),
            )
        })?;
        let primary = shard
            .primary
            .as_ref()
            .ok_or_else(|| (None, Failure::new("no primary in the topology")))?;
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
                    let mut error = timeout_text(timeout);
                    if let Some(shard) = self.current.take() {
                        error.push_str(&format!(" (shard {shard})"));
                    }
                    Err(Failure::new(error))
                }
            };
            if let Err(f) = &result {
                // A shard failure says nothing against the member's own
                // connection; anything else does.
                if !self.cluster || !f.error.starts_with("shard ") {
                    self.conn = None;
                }
            }
            Outcome::from_result(result, started)
        })
    }
}

// ---------------------------------------------------------------------------
// Cluster topology and hash slots.

/// Number of hash slots in a Redis cluster.
pub(crate) const SLOTS: u16 = 16384;

/// CRC16/XMODEM (poly 0x1021, init 0), as Redis cluster uses for key slots.
pub(crate) fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`, honouring hash tags: if the key has a `{` followed
/// later by a `}` with something in between, only that part is hashed.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// For every slot, a short hash tag content that hashes to it.
fn tag_table() -> &'static [Option<String>] {
    static TABLE: OnceLock<Vec<Option<String>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: Vec<Option<String>> = vec![None; usize::from(SLOTS)];
        let mut missing = usize::from(SLOTS);
        // About 170k candidates fill all slots; the bound only guards
        // against an impossible non-termination.
        for n in 0u32..10_000_000 {
            if missing == 0 {
                break;
            }
            let tag = n.to_string();
            let slot = usize::from(crc16(tag.as_bytes()) % SLOTS);
            if table[slot].is_none() {
                table[slot] = Some(tag);
                missing -= 1;
            }
        }
        table
    })
}

/// A key `{prefix}{{tag}}:{suffix}` whose slot lies in `ranges`, or `None`
/// when that cannot be arranged (the prefix carries its own hash tag, or
/// the ranges are empty).
pub(crate) fn shard_key(prefix: &str, ranges: &[(u16, u16)], suffix: &str) -> Option<String> {
    let in_ranges = |slot: u16| ranges.iter().any(|&(a, b)| a <= slot && slot <= b);
    let table = tag_table();
    for &(start, end) in ranges {
        for slot in start..=end.min(SLOTS - 1) {
            if let Some(tag) = &table[usize::from(slot)] {
                let key = format!("{prefix}{{{tag}}}:{suffix}");
                return in_ranges(key_slot(key.as_bytes())).then_some(key);
            }
        }
    }
    None
}

/// One shard: the slots it owns and where to reach its primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shard {
    pub ranges: Vec<(u16, u16)>,
    pub primary: Option<Node>,
}

impl Shard {
    /// "127.0.0.1:7001 (slots 0-5460)": for error texts.
    fn name(&self) -> String {
        let slots = self
            .ranges
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        match &self.primary {
            Some(n) => format!("{}:{} (slots {slots})", n.display_host(), n.port),
            None => format!("(slots {slots})"),
        }
    }
}

/// A shard primary as the topology reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    /// IP address, if reported ("" or "?" count as unknown).
    pub ip: Option<String>,
    /// Preferred endpoint / hostname, if reported.
    pub name: Option<String>,
    pub port: u16,
}

impl Node {
    fn display_host(&self) -> &str {
        self.ip
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or("(member)")
    }

    /// The address to connect to. An unknown address means the node that
    /// answered, i.e. the member at `target`.
    async fn resolve(&self, target: SocketAddr) -> Result<SocketAddr, Failure> {
        for candidate in [self.ip.as_deref(), self.name.as_deref()]
            .into_iter()
            .flatten()
        {
            if let Ok(ip) = candidate.parse::<IpAddr>() {
                return Ok(SocketAddr::new(ip, self.port));
            }
        }
        match self.name.as_deref() {
            Some(name) => tokio::net::lookup_host((name, self.port))
                .await
                .map_err(|e| Failure::new(format!("resolve {name}: {e}")))?
                .next()
                .ok_or_else(|| Failure::new(format!("resolve {name}: no address"))),
            None => Ok(SocketAddr::new(target.ip(), self.port)),
        }
    }
}

/// The shards of the cluster `conn` belongs to: CLUSTER SHARDS, or CLUSTER
/// SLOTS on servers older than 7.0. Shards without slots are left out.
async fn topology(conn: &mut Conn, tls: bool) -> Result<Vec<Shard>, Failure> {
    let shards_err = match conn.query(::redis::cmd("CLUSTER").arg("SHARDS")).await {
        Ok(v) => match parse_cluster_shards(&v, tls) {
            Some(shards) => return Ok(shards),
            None => "unexpected reply".to_string(),
        },
        Err(f) => f.error,
    };
    match conn.query(::redis::cmd("CLUSTER").arg("SLOTS")).await {
        Ok(v) => parse_cluster_slots(&v).ok_or_else(|| {
            Failure::new(format!(
                "cluster: CLUSTER SHARDS: {shards_err}; CLUSTER SLOTS: unexpected reply"
            ))
        }),
        Err(f) => Err(Failure {
            error: format!(
                "cluster: CLUSTER SHARDS: {shards_err}; CLUSTER SLOTS: {}",
                f.error
            ),
            code: f.code,
        }),
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => as_text(other).and_then(|s| s.parse().ok()),
    }
}

fn as_port(v: &Value) -> Option<u16> {
    as_int(v)
        .and_then(|i| u16::try_from(i).ok())
        .filter(|&p| p != 0)
}

fn as_slot(v: &Value) -> Option<u16> {
    as_int(v)
        .and_then(|i| u16::try_from(i).ok())
        .filter(|&s| s < SLOTS)
}

fn as_items(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

/// Key/value pairs of a RESP3 map or a RESP2 flat array.
fn as_pairs(v: &Value) -> Option<Vec<(String, &Value)>> {
    match v {
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| as_text(k).map(|k| (k, v)))
            .collect(),
        Value::Array(items) if items.len() % 2 == 0 => items
            .chunks(2)
            .map(|kv| as_text(&kv[0]).map(|k| (k, &kv[1])))
            .collect(),
        _ => None,
    }
}

fn known(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty() && s != "?")
}

/// Parses a CLUSTER SHARDS reply (Redis 7.0+); with `tls`, a node's
/// `tls-port` is preferred over its `port`.
pub(crate) fn parse_cluster_shards(v: &Value, tls: bool) -> Option<Vec<Shard>> {
    let mut shards = Vec::new();
    for shard in as_items(v)? {
        let fields = as_pairs(shard)?;
        let mut ranges = Vec::new();
        let mut primary = None;
        for (key, value) in fields {
            match key.as_str() {
                "slots" => {
                    let bounds = as_items(value)?;
                    if bounds.len() % 2 != 0 {
                        return None;
                    }
                    for pair in bounds.chunks(2) {
                        ranges.push((as_slot(&pair[0])?, as_slot(&pair[1])?));
                    }
                }
                "nodes" => {
                    let mut fallback = None;
                    for node in as_items(value)? {
                        let node = as_pairs(node)?;
                        let field =
                            |name: &str| node.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
                        if field("role").and_then(as_text).as_deref() != Some("master") {
                            continue;
                        }
                        let plain = field("port").and_then(as_port);
                        let secure = field("tls-port").and_then(as_port);
                        let Some(port) = (if tls {
                            secure.or(plain)
                        } else {
                            plain.or(secure)
                        }) else {
                            continue;
                        };
                        let endpoint = known(field("endpoint").and_then(as_text));
                        let hostname = known(field("hostname").and_then(as_text));
                        let n = Node {
                            ip: known(field("ip").and_then(as_text)),
                            name: endpoint.or(hostname),
                            port,
                        };
                        let online = field("health").and_then(as_text).as_deref() == Some("online");
                        if online {
                            primary = Some(n);
                            break;
                        }
                        fallback.get_or_insert(n);
                    }
                    if primary.is_none() {
                        primary = fallback;
                    }
                }
                _ => {}
            }
        }
        if !ranges.is_empty() {
            ranges.sort_unstable();
            shards.push(Shard { ranges, primary });
        }
    }
    Some(shards)
}

/// Parses a CLUSTER SLOTS reply, grouping ranges by primary.
pub(crate) fn parse_cluster_slots(v: &Value) -> Option<Vec<Shard>> {
    let mut shards: Vec<Shard> = Vec::new();
    for entry in as_items(v)? {
        let items = as_items(entry)?;
        if items.len() < 3 {
            return None;
        }
        let range = (as_slot(&items[0])?, as_slot(&items[1])?);
        let node = as_items(&items[2])?;
        if node.len() < 2 {
            return None;
        }
        let host = known(as_text(&node[0]));
        let port = as_port(&node[1])?;
        // Redis 7 appends a metadata map (hostname, ip) after the node id.
        let meta = node.get(3).and_then(as_pairs);
        let meta_field = |name: &str| {
            meta.as_ref()
                .and_then(|m| m.iter().find(|(k, _)| k == name))
                .and_then(|(_, v)| known(as_text(v)))
        };
        let (ip, name) = match &host {
            Some(h) if h.parse::<IpAddr>().is_ok() => (Some(h.clone()), meta_field("hostname")),
            Some(h) => (meta_field("ip"), Some(h.clone())),
            None => (meta_field("ip"), meta_field("hostname")),
        };
        let primary = Node { ip, name, port };
        match shards
            .iter_mut()
            .find(|s| s.primary.as_ref() == Some(&primary))
        {
            Some(s) => s.ranges.push(range),
            None => shards.push(Shard {
                ranges: vec![range],
                primary: Some(primary),
            }),
        }
    }
    for s in &mut shards {
        s.ranges.sort_unstable();
    }
    Some(shards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, TlsOptions};
    use crate::health::test_support::{
        RedisServer, TempDir, TestPki, bounded, free_port, local, redis_cli,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for FakeRedis {
        fn drop(&mut self) {
            self.task.abort();
        }
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut sock, _)) = listener.accept().await {
                conns.spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = sock.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while take_command(&mut buf) {
                            if let Some(reply) = reply
                                && sock.write_all(reply).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeRedis { addr, task }
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

    // --- pure: slots, tags, topology parsing -------------------------------

    #[test]
    fn crc16_matches_the_xmodem_check_value() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn hash_tags_put_related_keys_in_the_same_slot() {
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        // Redis's documented edge cases: an empty tag hashes the whole key,
        // and only the first `{` counts.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        // Known slot from the Redis docs' examples.
        assert_eq!(key_slot(b"foo"), 12182);
    }

    #[test]
    fn every_slot_has_a_hash_tag() {
        let table = tag_table();
        assert_eq!(table.len(), usize::from(SLOTS));
        for (slot, tag) in table.iter().enumerate() {
            let tag = tag.as_ref().expect("tag for every slot");
            assert_eq!(usize::from(key_slot(tag.as_bytes())), slot);
        }
    }

    #[test]
    fn shard_keys_land_in_the_shards_slots() {
        for ranges in [
            vec![(0u16, 5460u16)],
            vec![(5461, 10922)],
            vec![(16383, 16383)],
            vec![(7, 7), (9000, 9001)],
        ] {
            let key = shard_key("redirector:probe:", &ranges, "abc").expect("key");
            assert!(key.starts_with("redirector:probe:{"), "{key}");
            assert!(key.ends_with("}:abc"), "{key}");
            let slot = key_slot(key.as_bytes());
            assert!(
                ranges.iter().any(|&(a, b)| a <= slot && slot <= b),
                "{key} -> {slot} not in {ranges:?}"
            );
        }
    }

    #[test]
    fn shard_key_refuses_a_prefix_with_its_own_hash_tag() {
        // "{fixed}" pins every key to one slot; only its own shard works.
        let fixed = key_slot(b"fixed");
        let other = (fixed + 1) % SLOTS;
        assert_eq!(shard_key("{fixed}:", &[(other, other)], "x"), None);
        assert!(shard_key("{fixed}:", &[(fixed, fixed)], "x").is_some());
        assert_eq!(shard_key("p", &[], "x"), None);
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn shards_node(ip: &str, endpoint: &str, port: i64, role: &str, health: &str) -> Value {
        Value::Array(vec![
            bulk("id"),
            bulk("e0c9f7a1"),
            bulk("port"),
            Value::Int(port),
            bulk("ip"),
            bulk(ip),
            bulk("endpoint"),
            bulk(endpoint),
            bulk("role"),
            bulk(role),
            bulk("replication-offset"),
            Value::Int(72156),
            bulk("health"),
            bulk(health),
        ])
    }

    #[test]
    fn cluster_shards_reply_yields_primaries_and_slot_ranges() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("slots"),
                Value::Array(vec![Value::Int(0), Value::Int(5460)]),
                bulk("nodes"),
                Value::Array(vec![
                    shards_node("10.0.0.2", "10.0.0.2", 7002, "replica", "online"),
                    shards_node("10.0.0.1", "db-a.example", 7001, "master", "online"),
                ]),
            ]),
            Value::Array(vec![
                bulk("slots"),
                Value::Array(vec![
                    Value::Int(10923),
                    Value::Int(16383),
                    Value::Int(5461),
                    Value::Int(10922),
                ]),
                bulk("nodes"),
                Value::Array(vec![
                    shards_node("10.0.0.4", "?", 7004, "master", "failed"),
                    shards_node("10.0.0.3", "", 7003, "master", "online"),
                ]),
            ]),
            // A shard without slots is not probed.
            Value::Array(vec![
                bulk("slots"),
                Value::Array(vec![]),
                bulk("nodes"),
                Value::Array(vec![shards_node(
                    "10.0.0.9", "10.0.0.9", 7009, "master", "online",
                )]),
            ]),
        ]);
        let shards = parse_cluster_shards(&reply, false).expect("parse");
        assert_eq!(
            shards,
            vec![
                Shard {
                    ranges: vec![(0, 5460)],
                    primary: Some(Node {
                        ip: Some("10.0.0.1".into()),
                        name: Some("db-a.example".into()),
                        port: 7001
                    }),
                },
                Shard {
                    ranges: vec![(5461, 10922), (10923, 16383)],
                    primary: Some(Node {
                        ip: Some("10.0.0.3".into()),
                        name: None,
                        port: 7003
                    }),
                },
            ]
        );
        assert_eq!(
            shards[1].name(),
            "10.0.0.3:7003 (slots 5461-10922,10923-16383)"
        );
    }

    #[test]
    fn cluster_shards_prefers_the_tls_port_with_tls() {
        let node = Value::Array(vec![
            bulk("port"),
            Value::Int(6379),
            bulk("tls-port"),
            Value::Int(6380),
            bulk("ip"),
            bulk("10.0.0.1"),
            bulk("role"),
            bulk("master"),
            bulk("health"),
            bulk("online"),
        ]);
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("slots"),
            Value::Array(vec![Value::Int(0), Value::Int(16383)]),
            bulk("nodes"),
            Value::Array(vec![node]),
        ])]);
        let port = |tls| {
            parse_cluster_shards(&reply, tls).expect("parse")[0]
                .primary
                .as_ref()
                .expect("primary")
                .port
        };
        assert_eq!(port(false), 6379);
        assert_eq!(port(true), 6380);
    }

    #[test]
    fn cluster_shards_accepts_resp3_maps() {
        let node = Value::Map(vec![
            (bulk("port"), Value::Int(7001)),
            (bulk("ip"), bulk("127.0.0.1")),
            (bulk("role"), bulk("master")),
            (bulk("health"), bulk("online")),
        ]);
        let reply = Value::Array(vec![Value::Map(vec![
            (
                bulk("slots"),
                Value::Array(vec![Value::Int(0), Value::Int(16383)]),
            ),
            (bulk("nodes"), Value::Array(vec![node])),
        ])]);
        let shards = parse_cluster_shards(&reply, false).expect("parse");
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].ranges, vec![(0, 16383)]);
    }

    #[test]
    fn cluster_slots_reply_is_grouped_by_primary() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                bulk(host),
                Value::Int(port),
                bulk("09dbe9720cda62f7865eabc5fd8857c5d2678366"),
                Value::Array(vec![bulk("hostname"), bulk("db-a.example")]),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7001),
                node("10.0.0.2", 7002),
            ]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(16383),
                node("10.0.0.1", 7001),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), node("", 7003)]),
        ]);
        let shards = parse_cluster_slots(&reply).expect("parse");
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0].ranges, vec![(0, 5460), (10923, 16383)]);
        assert_eq!(
            shards[0].primary,
            Some(Node {
                ip: Some("10.0.0.1".into()),
                name: Some("db-a.example".into()),
                port: 7001
            })
        );
        // An empty host means "the node you asked".
        assert_eq!(shards[1].primary.as_ref().expect("primary").ip, None);
    }

    #[test]
    fn garbage_topology_replies_are_rejected() {
        assert_eq!(parse_cluster_shards(&Value::Int(3), false), None);
        assert_eq!(parse_cluster_slots(&bulk("nope")), None);
        let bad_slot = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(99999),
            Value::Array(vec![bulk("10.0.0.1"), Value::Int(7001)]),
        ])]);
        assert_eq!(parse_cluster_slots(&bad_slot), None);
    }

    #[tokio::test]
    async fn unknown_node_address_resolves_to_the_member() {
        let node = Node {
            ip: None,
            name: None,
            port: 7003,
        };
        let target = local(7001);
        assert_eq!(node.resolve(target).await.expect("resolve"), local(7003));
    }

    // --- against fake servers ----------------------------------------------

    #[tokio::test]
    async fn redis_ping_reports_loading_as_unhealthy() {
        bounded(async {
            let fake =
                fake_redis(Some(b"-LOADING Redis is loading the dataset in memory\r\n")).await;
            let dir = TempDir::new();
            let mut c = ping(auth(None, None, &dir), T);
            let o = c.check(fake.addr, "127.0.0.1").await;
            assert!(!o.healthy);
            assert_eq!(o.code.as_deref(), Some("LOADING"));
            assert_eq!(
                o.error.as_deref(),
                Some("LOADING Redis is loading the dataset in memory")
            );
        })
        .await;
    }

    #[tokio::test]
    async fn redis_ping_reports_masterdown_and_busy_codes() {
        bounded(async {
            let dir = TempDir::new();
            for (reply, code) in [
                (
                    &b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n"[..],
                    "MASTERDOWN",
                ),
                (
                    &b"-BUSY Redis is busy running a script.\r\n"[..],
                    "BUSY",
                ),
            ] {
                let fake = fake_redis(Some(reply)).await;
                let mut c = ping(auth(None, None, &dir), T);
                let o = c.check(fake.addr, "127.0.0.1").await;
                assert!(!o.healthy);
                assert_eq!(o.code.as_deref(), Some(code), "{o:?}");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn redis_ping_rejects_a_reply_other_than_pong() {
        bounded(async {
            let fake = fake_redis(Some(b"+NOTPONG\r\n")).await;
            let dir = TempDir::new();
            let mut c = ping(auth(None, None, &dir), T);
            let o = c.check(fake.addr, "127.0.0.1").await;
            assert!(!o.healthy);
            let err = o.error.expect("error");
            assert!(err.starts_with("wrong reply"), "{err}");
            assert!(err.contains("NOTPONG"), "{err}");
        })
        .await;
    }

    #[tokio::test]
    async fn redis_echo_rejects_a_reply_other_than_its_token() {
        bounded(async {
            let fake = fake_redis(Some(b"$11\r\nredirector-\r\n")).await;
            let dir = TempDir::new();
            let mut c = RedisChecker::new(Probe::Echo, auth(None, None, &dir), T);
            let o = c.check(fake.addr, "127.0.0.1").await;
            assert!(!o.healthy);
            assert!(o.error.expect("error").starts_with("wrong reply"));
        })
        .await;
    }

    #[tokio::test]
    async fn redis_ping_times_out_on_a_server_that_never_answers() {
        bounded(async {
            let fake = fake_redis(None).await;
            let dir = TempDir::new();
            let mut c = ping(auth(None, None, &dir), Duration::from_millis(250));
            let started = Instant::now();
            let o = c.check(fake.addr, "127.0.0.1").await;
            let took = started.elapsed();
            assert!(!o.healthy);
            assert_eq!(o.error.as_deref(), Some("timeout after 250ms"));
            assert!(took >= Duration::from_millis(250), "{took:?}");
            assert!(took < Duration::from_millis(1000), "{took:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn redis_ping_reports_connection_refused() {
        bounded(async {
            let dir = TempDir::new();
            let mut c = ping(auth(None, None, &dir), T);
            let o = c.check(local(free_port()), "127.0.0.1").await;
            assert!(!o.healthy);
            let err = o.error.expect("error");
            assert!(err.starts_with("connect: "), "{err}");
        })
        .await;
    }

    // --- against real redis-server ------------------------------------------

    #[tokio::test]
    async fn redis_ping_and_echo_are_healthy_against_a_real_server() {
        bounded(async {
            let dir = TempDir::new();
            let server = RedisServer::start(free_port(), dir.path(), &[]).await;
            let addr = local(server.port);
            let mut p = ping(auth(None, None, &dir), T);
            let o = p.check(addr, "127.0.0.1").await;
            assert!(o.healthy, "{o:?}");
            assert!(o.latency < T);
            let mut e = RedisChecker::new(Probe::Echo, auth(None, None, &dir), T);
            for _ in 0..3 {
                let o = e.check(addr, "127.0.0.1").await;
                assert!(o.healthy, "{o:?}");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn redis_ping_reuses_its_connection_across_probes() {
        bounded(async {
            let dir = TempDir::new();
            let server = RedisServer::start(free_port(), dir.path(), &[]).await;
            let addr = local(server.port);
            let mut c = ping(auth(None, None, &dir), T);
            assert!(c.check(addr, "127.0.0.1").await.healthy);
            let first = client_ids(server.port, "ping").await;
            assert_eq!(first.len(), 1, "{first:?}");
            for _ in 0..3 {
                assert!(c.check(addr, "127.0.0.1").await.healthy);
            }
            assert_eq!(client_ids(server.port, "ping").await, first);
        })
        .await;
    }

    #[tokio::test]
    async fn redis_ping_reconnects_after_the_server_restarts() {
        bounded(async {
            let dir = TempDir::new();
            let port = free_port();
            let server = RedisServer::start(port, dir.path(), &[]).await;
            let addr = local(port);
            let mut c = ping(auth(None, None, &dir), T);
            assert!(c.check(addr, "127.0.0.1").await.healthy);

            server.proc.kill();
            let o = c.check(addr, "127.0.0.1").await;
            assert!(!o.healthy, "{o:?}");
            assert!(o.error.is_some());

            let _server = RedisServer::start(port, dir.path(), &[]).await;
            let o = c.check(addr, "127.0.0.1").await;
            assert!(o.healthy, "{o:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn redis_connection_lost_fires_when_the_server_goes_away_and_not_before() {
        bounded(async {
            let dir = TempDir::new();
            let port = free_port();
            let server = RedisServer::start(port, dir.path(), &[]).await;
            let addr = local(port);
            let mut c = ping(auth(None, None, &dir), T);
            // No kept connection yet: nothing to lose.
            let idle = tokio::time::timeout(Duration::from_millis(100), c.connection_lost()).await;
            assert!(idle.is_err(), "fired without a connection");
            assert!(c.check(addr, "127.0.0.1").await.healthy);
            let alive = tokio::time::timeout(Duration::from_millis(200), c.connection_lost()).await;
            assert!(alive.is_err(), "fired while the server was up");

            server.proc.kill();
            tokio::time::timeout(Duration::from_secs(5), c.connection_lost())
                .await
                .expect("connection_lost after the server was killed");
            // The dead connection is forgotten: the next probe connects anew
            // and finds nobody.
            assert!(c.conn.is_none());
            let o = c.check(addr, "127.0.0.1").await;
            assert!(!o.healthy, "{o:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn redis_wrong_password_is_an_authentication_failure_without_the_password() {
        bounded(async {
            let dir = TempDir::new();
            let server = RedisServer::start(
                free_port(),
                dir.path(),
                &["--requirepass", "right-horse-battery"],
            )
            .await;
            let addr = local(server.port);

            let wrong = "wrong-staple-9931";
            let mut c = ping(auth(None, Some(wrong), &dir), T);
            let o = c.check(addr, "127.0.0.1").await;
            assert!(!o.healthy);
            let err = o.error.clone().expect("error");
            assert!(err.contains("authentication failed"), "{err}");
            assert_eq!(o.code.as_deref(), Some("AUTH"));
            assert!(!format!("{o:?}").contains(wrong));

            let mut ok = ping(auth(None, Some("right-horse-battery"), &dir), T);
            let o = ok.check(addr, "127.0.0.1").await;
            assert!(o.healthy, "{o:?}");

            // No password at all: the server's NOAUTH comes through.
            let mut none = ping(auth(None, None, &dir), T);
            let o = none.check(addr, "127.0.0.1").await;
            assert!(!o.healthy);
            assert_eq!(o.code.as_deref(), Some("NOAUTH"), "{o:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn redis_acl_user_authenticates_and_wrong_password_is_reported() {
        bounded(async {
            let dir = TempDir::new();
            let server = RedisServer::start(
                free_port(),
                dir.path(),
                &["--user", "probe", "on", ">pw-4711", "~*", "+@all"],
            )
            .await;
            let addr = local(server.port);
            let mut c = ping(auth(Some("probe"), Some("pw-4711"), &dir), T);
            let o = c.check(addr, "127.0.0.1").await;
            assert!(o.healthy, "{o:?}");

            let mut bad = ping(auth(Some("probe"), Some("pw-9999"), &dir), T);
            let o = bad.check(addr, "127.0.0.1").await;
            assert!(!o.healthy);
            assert!(
                o.error
                    .as_deref()
                    .is_some_and(|e| e.contains("authentication failed")),
                "{o:?}"
            );
            assert!(!format!("{o:?}").contains("pw-9999"));
        })
        .await;
    }

    fn tls_auth(ca_file: Option<&std::path::Path>, server_name: Option<&str>) -> RedisAuth {
        RedisAuth::from_options(&RedisOptions {
            username: None,
            password: None,
            tls: Some(TlsOptions {
                ca_file: ca_file.map(|p| p.to_path_buf()),
                server_name: server_name.map(str::to_string),
            }),
        })
        .expect("build tls auth")
    }

    async fn tls_server(pki: &TestPki, dir: &TempDir) -> (RedisServer, u16) {
        let port = free_port();
        let server = RedisServer::start_listening(
            0,
            port,
            dir.path(),
            &[
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &pki.cert_file.display().to_string(),
                "--tls-key-file",
                &pki.key_file.display().to_string(),
                "--tls-ca-cert-file",
                &pki.ca_file.display().to_string(),
                "--tls-auth-clients",
                "no",
            ],
        )
        .await;
        (server, port)
    }

    #[tokio::test]
    async fn redis_ping_over_tls_is_healthy_with_the_ca_file() {
        bounded(async {
            let pki = TestPki::new();
            let dir = TempDir::new();
            let (_server, port) = tls_server(&pki, &dir).await;
            let addr = local(port);

            // Verified against the member's host (an IP SAN)...
            let mut c = ping(tls_auth(Some(&pki.ca_file), None), T);
            let o = c.check(addr, "127.0.0.1").await;
            assert!(o.healthy, "{o:?}");
            // ...or against the configured server name, still connecting to
            // the resolved target.
            let mut c = RedisChecker::new(
                Probe::Echo,
                tls_auth(Some(&pki.ca_file), Some("localhost")),
                T,
            );
            let o = c.check(addr, "db.invalid").await;
            assert!(o.healthy, "{o:?}");
            // A name the certificate does not carry fails verification.
            let mut c = ping(tls_auth(Some(&pki.ca_file), Some("db.example.com")), T);
            let o = c.check(addr, "127.0.0.1").await;
            assert!(!o.healthy);
            assert!(o.error.expect("error").starts_with("tls: "));
        })
        .await;
    }

    #[tokio::test]
    async fn redis_ping_over_tls_is_unhealthy_without_the_ca_file() {
        bounded(async {
            let pki = TestPki::new();
            let dir = TempDir::new();
            let (_server, port) = tls_server(&pki, &dir).await;
            let built = RedisAuth::from_options(&RedisOptions {
                username: None,
                password: None,
                tls: Some(TlsOptions {
                    ca_file: None,
                    server_name: None,
                }),
            });
            match built {
                // A machine without a system trust store cannot even build it.
                Err(e) => assert!(matches!(e, HealthError::SystemRoots(_)), "{e}"),
                Ok(auth) => {
                    let mut c = ping(auth, T);
                    let o = c.check(local(port), "127.0.0.1").await;
                    assert!(!o.healthy);
                    let err = o.error.expect("error");
                    assert!(err.starts_with("tls: "), "{err}");
                    assert!(err.to_lowercase().contains("certificate"), "{err}");
                }
            }
        })
        .await;
    }

    #[tokio::test]
    async fn redis_setget_is_healthy_and_its_key_expires() {
        bounded(async {
            let dir = TempDir::new();
            let server = RedisServer::start(free_port(), dir.path(), &[]).await;
            let addr = local(server.port);
            let mut c = SetGetChecker::new(
                auth(None, None, &dir),
                T,
                false,
                "redirector:probe:".into(),
                Duration::from_secs(30),
            );
            let o = c.check(addr, "127.0.0.1").await;
            assert!(o.healthy, "{o:?}");
            let keys = redis_cli(server.port, &["--scan", "--pattern", "redirector:probe:*"]).await;
            let keys: Vec<&str> = keys.lines().collect();
            assert_eq!(keys.len(), 1, "{keys:?}");
            let pttl: i64 = redis_cli(server.port, &["PTTL", keys[0]])
                .await
                .trim()
                .parse()
                .expect("pttl");
            assert!(pttl > 0 && pttl <= 30_000, "{pttl}");
        })
        .await;
    }

    #[tokio::test]
    async fn redis_setget_on_a_non_cluster_server_in_cluster_mode_is_unhealthy() {
        bounded(async {
            let dir = TempDir::new();
            let server = RedisServer::start(free_port(), dir.path(), &[]).await;
            let mut c = SetGetChecker::new(
                auth(None, None, &dir),
                T,
                true,
                "p:".into(),
                Duration::from_secs(5),
            );
            let o = c.check(local(server.port), "127.0.0.1").await;
            assert!(!o.healthy);
            let err = o.error.expect("error");
            assert!(
                err.contains("CLUSTER SHARDS") && err.contains("CLUSTER SLOTS"),
                "{err}"
            );
        })
        .await;
    }

    /// A free port `p` whose cluster bus port `p + 10000` is free too.
    fn free_cluster_port() -> u16 {
        loop {
            let p = free_port();
            if p < 55000 && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
                return p;
            }
        }
    }

    async fn set_calls(port: u16) -> u64 {
        redis_cli(port, &["INFO", "commandstats"])
            .await
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_set:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn redis_setget_in_cluster_mode_probes_every_shard() {
        bounded(async {
            let dir = TempDir::new();
            let mut servers = Vec::new();
            for _ in 0..3 {
                let port = free_cluster_port();
                let conf = format!("nodes-{port}.conf");
                servers.push(
                    RedisServer::start(
                        port,
                        dir.path(),
                        &[
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            &conf,
                            "--cluster-node-timeout",
                            "5000",
                        ],
                    )
                    .await,
                );
            }
            let nodes: Vec<String> = servers
                .iter()
                .map(|s| format!("127.0.0.1:{}", s.port))
                .collect();
            let mut args: Vec<&str> = vec!["--cluster", "create"];
            args.extend(nodes.iter().map(String::as_str));
            args.push("--cluster-yes");
            let created = redis_cli(servers[0].port, &args).await;
            assert!(created.contains("All 16384 slots covered"), "{created}");
            for s in &servers {
                while !redis_cli(s.port, &["CLUSTER", "INFO"])
                    .await
                    .contains("cluster_state:ok")
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }

            let mut c = SetGetChecker::new(
                auth(None, None, &dir),
                T,
                true,
                "redirector:probe:".into(),
                Duration::from_secs(30),
            );
            let member = local(servers[1].port);
            for round in 1..=2u64 {
                let o = c.check(member, "127.0.0.1").await;
                assert!(o.healthy, "{o:?}");
                for s in &servers {
                    assert_eq!(set_calls(s.port).await, round, "node {}", s.port);
                }
            }
            assert_eq!(c.shards.len(), 3);

            // One primary down: the probe fails and names that shard.
            let down = servers.pop().expect("three servers");
            let down_port = down.port;
            down.proc.kill();
            let o = c.check(member, "127.0.0.1").await;
            assert!(!o.healthy);
            let err = o.error.expect("error");
            assert!(
                err.contains(&format!("shard 127.0.0.1:{down_port} ")),
                "{err}"
            );
        })
        .await;
    }
}

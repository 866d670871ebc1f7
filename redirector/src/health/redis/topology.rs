//! The shards of an OSS-cluster-API database: CLUSTER SHARDS (Redis 7.0+)
//! or CLUSTER SLOTS, parsed into the slot ranges each shard owns and where
//! to reach its primary.
//!
//! The parsers are pure (RESP2 arrays and RESP3 maps alike); [`topology`]
//! asks the member and falls back from the newer command to the older one.

use std::net::{IpAddr, SocketAddr};

use ::redis::Value;

use super::{resp::Conn, slots::SLOTS};
use crate::health::{Failure, FailureKind};

/// One shard: the slots it owns and where to reach its primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shard {
    pub ranges: Vec<(u16, u16)>,
    pub primary: Option<Node>,
}

impl Shard {
    /// "127.0.0.1:7001 (slots 0-5460)": for error texts.
    pub(super) fn name(&self) -> String {
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
    pub(super) async fn resolve(&self, target: SocketAddr) -> Result<SocketAddr, Failure> {
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
                .map_err(|e| Failure::new(FailureKind::Resolve, format!("resolve {name}: {e}")))?
                .next()
                .ok_or_else(|| {
                    Failure::new(FailureKind::Resolve, format!("resolve {name}: no address"))
                }),
            None => Ok(SocketAddr::new(target.ip(), self.port)),
        }
    }
}

/// The shards of the cluster `conn` belongs to: CLUSTER SHARDS, or CLUSTER
/// SLOTS on servers older than 7.0. Shards without slots are left out.
pub(super) async fn topology(conn: &mut Conn, tls: bool) -> Result<Vec<Shard>, Failure> {
    let shards_err = match conn.query(::redis::cmd("CLUSTER").arg("SHARDS")).await {
        Ok(v) => match parse_cluster_shards(&v, tls) {
            Some(shards) => return Ok(shards),
            None => "unexpected reply".to_string(),
        },
        Err(f) => f.text,
    };
    match conn.query(::redis::cmd("CLUSTER").arg("SLOTS")).await {
        Ok(v) => parse_cluster_slots(&v).ok_or_else(|| {
            Failure::new(
                FailureKind::Topology,
                format!("cluster: CLUSTER SHARDS: {shards_err}; CLUSTER SLOTS: unexpected reply"),
            )
        }),
        Err(f) => Err(Failure {
            kind: FailureKind::Topology,
            text: format!(
                "cluster: CLUSTER SHARDS: {shards_err}; CLUSTER SLOTS: {}",
                f.text
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

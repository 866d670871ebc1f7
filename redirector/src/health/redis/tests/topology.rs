//! Parsing CLUSTER SHARDS / CLUSTER SLOTS replies, and where a node is.

use ::redis::Value;

use crate::health::{
    redis::topology::{Node, Shard, parse_cluster_shards, parse_cluster_slots},
    test_support::local,
};

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

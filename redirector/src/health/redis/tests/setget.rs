//! `redis-setget` on a single server and on every shard of a cluster.

use std::time::Duration;

use super::{T, auth};
use crate::health::{
    Checker, Failure, FailureKind,
    redis::{SetGetChecker, setget::keeps_member_connection},
    test_support::{RedisServer, TempDir, bounded, free_port, local, redis_cli},
};

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
        assert_eq!(o.kind, Some(FailureKind::Topology), "{o:?}");
        assert!(
            c.conn.is_none(),
            "a topology failure drops the member's connection"
        );
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
        assert_eq!(o.kind, Some(FailureKind::Shard), "{o:?}");
        // The member itself answered: its connection is kept.
        assert!(c.conn.is_some());
        let err = o.error.expect("error");
        assert!(
            err.contains(&format!("shard 127.0.0.1:{down_port} ")),
            "{err}"
        );
    })
    .await;
}

#[test]
fn only_a_shard_failure_in_cluster_mode_keeps_the_member_connection() {
    let shard = Failure::with_code(
        FailureKind::Shard,
        "shard 127.0.0.1:7001 (slots 0-5460): LOADING Redis is loading",
        "LOADING",
    );
    assert!(keeps_member_connection(true, &shard));
    assert!(!keeps_member_connection(false, &shard));
    // The kind decides, not the text: a timeout that names the shard it
    // was on, or any other failure worded like a shard's, drops it.
    for kind in [
        FailureKind::Timeout,
        FailureKind::ConnectionLost,
        FailureKind::Reply,
        FailureKind::Topology,
        FailureKind::Connect,
    ] {
        let f = Failure::new(kind, "shard 127.0.0.1:7001 (slots 0-5460): look-alike");
        assert!(!keeps_member_connection(true, &f), "{kind:?} kept it");
    }
}

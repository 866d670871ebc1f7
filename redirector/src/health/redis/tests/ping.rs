//! `redis-ping` / `redis-echo` against fake and real servers: replies,
//! error codes, timeouts, kept connections, authentication.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use super::{Script, T, auth, client_ids, fake_redis, fake_redis_scripted, ping};
use crate::health::{
    Checker, Failure, FailureKind,
    redis::{Probe, RedisChecker, ping::retry_on_fresh_connection},
    test_support::{RedisServer, TempDir, bounded, free_port, local},
};

#[tokio::test]
async fn redis_ping_reports_loading_as_unhealthy() {
    bounded(async {
        let fake = fake_redis(Some(b"-LOADING Redis is loading the dataset in memory\r\n")).await;
        let dir = TempDir::new();
        let mut c = ping(auth(None, None, &dir), T);
        let o = c.check(fake.addr, "127.0.0.1").await;
        assert!(!o.healthy);
        assert_eq!(o.code.as_deref(), Some("LOADING"));
        assert_eq!(o.kind, Some(FailureKind::Reply));
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
        assert_eq!(o.kind, Some(FailureKind::WrongReply), "{o:?}");
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
        assert_eq!(o.kind, Some(FailureKind::Timeout));
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
        assert_eq!(o.kind, Some(FailureKind::Connect), "{o:?}");
        let err = o.error.expect("error");
        assert!(err.starts_with("connect: "), "{err}");
    })
    .await;
}

// --- the reconnect decision ---------------------------------------------

#[test]
fn only_a_lost_kept_connection_is_retried_whatever_the_text_says() {
    let lost = Failure::new(
        FailureKind::ConnectionLost,
        "connection lost: closed by the member",
    );
    assert!(retry_on_fresh_connection(true, &lost));
    // A fresh connection that broke is the member's state, not staleness.
    assert!(!retry_on_fresh_connection(false, &lost));
    // The kind decides, not the text: a lost connection with any text is
    // retried, an error reply whose text looks like one is not.
    let quiet = Failure::new(FailureKind::ConnectionLost, "peer went away");
    assert!(retry_on_fresh_connection(true, &quiet));
    for kind in [
        FailureKind::Reply,
        FailureKind::Auth,
        FailureKind::Timeout,
        FailureKind::Protocol,
        FailureKind::WrongReply,
        FailureKind::Connect,
        FailureKind::Tls,
    ] {
        let f = Failure::with_code(kind, "connection lost: io: look-alike", "X");
        assert!(!retry_on_fresh_connection(true, &f), "{kind:?} retried");
    }
}

#[tokio::test]
async fn a_kept_connection_the_member_closed_is_replaced_within_the_same_probe() {
    bounded(async {
        // Every connection gets one PONG and is then closed by the server.
        let fake = fake_redis_scripted(Script {
            replies: vec![b"+PONG\r\n"],
            close_after_reply: true,
        })
        .await;
        let dir = TempDir::new();
        let mut c = ping(auth(None, None, &dir), T);
        assert!(c.check(fake.addr, "127.0.0.1").await.healthy);
        // The kept connection is dead by now: the probe finds it lost
        // (ConnectionLost) and succeeds on a second, fresh connection.
        let o = c.check(fake.addr, "127.0.0.1").await;
        assert!(o.healthy, "{o:?}");
        assert_eq!(fake.accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test]
async fn an_error_reply_on_a_kept_connection_is_not_retried() {
    bounded(async {
        // First command on a connection: PONG; every later one: LOADING.
        // A retry on a fresh connection would get PONG and hide LOADING.
        let fake = fake_redis_scripted(Script {
            replies: vec![
                b"+PONG\r\n",
                b"-LOADING Redis is loading the dataset in memory\r\n",
            ],
            close_after_reply: false,
        })
        .await;
        let dir = TempDir::new();
        let mut c = ping(auth(None, None, &dir), T);
        assert!(c.check(fake.addr, "127.0.0.1").await.healthy);
        let o = c.check(fake.addr, "127.0.0.1").await;
        assert!(!o.healthy, "{o:?}");
        assert_eq!(o.kind, Some(FailureKind::Reply));
        assert_eq!(o.code.as_deref(), Some("LOADING"));
        assert_eq!(fake.accepted.load(Ordering::SeqCst), 1);
        // Any failure drops the kept connection: the next probe starts clean.
        assert!(c.conn.is_none());
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
        assert_eq!(o.kind, Some(FailureKind::Auth));
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

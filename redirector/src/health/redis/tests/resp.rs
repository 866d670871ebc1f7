//! The RESP connection: split replies, error codes, garbage, a closed peer.

use ::redis::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use crate::health::{FailureKind, redis::resp::Conn};

async fn pair() -> (Conn, tokio::io::DuplexStream) {
    let (ours, theirs) = duplex(1024);
    let conn = Conn::open(
        "127.0.0.1:6379".parse().unwrap(),
        Box::new(ours),
        None,
        None,
    )
    .await
    .expect("open");
    (conn, theirs)
}

#[tokio::test]
async fn a_reply_split_across_reads_is_put_back_together() {
    let (mut conn, mut server) = pair().await;
    let query = tokio::spawn(async move {
        let v = conn.query(::redis::cmd("ECHO").arg("hello")).await;
        (conn, v)
    });
    let mut req = [0u8; 64];
    let n = server.read(&mut req).await.unwrap();
    assert_eq!(&req[..n], b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n");
    server.write_all(b"$5\r\nhe").await.unwrap();
    tokio::task::yield_now().await;
    server.write_all(b"llo\r\n").await.unwrap();
    let (_, v) = query.await.unwrap();
    assert_eq!(v.unwrap(), Value::BulkString(b"hello".to_vec()));
}

#[tokio::test]
async fn an_error_reply_keeps_its_prefix_as_the_code() {
    let (mut conn, mut server) = pair().await;
    server
        .write_all(b"-LOADING Redis is loading the dataset in memory\r\n")
        .await
        .unwrap();
    let f = conn.query(&::redis::cmd("PING")).await.unwrap_err();
    assert_eq!(f.code.as_deref(), Some("LOADING"));
    assert_eq!(f.kind, FailureKind::Reply);
}

#[tokio::test]
async fn garbage_is_a_bad_reply_not_a_hang() {
    let (mut conn, mut server) = pair().await;
    server.write_all(b"garbage\r\n").await.unwrap();
    let f = conn.query(&::redis::cmd("PING")).await.unwrap_err();
    assert_eq!(f.kind, FailureKind::Protocol);
    assert!(f.text.starts_with("bad reply"), "{f:?}");
}

#[tokio::test]
async fn a_closed_connection_is_reported_as_lost() {
    let (mut conn, server) = pair().await;
    drop(server);
    let f = conn.query(&::redis::cmd("PING")).await.unwrap_err();
    assert_eq!(f.kind, FailureKind::ConnectionLost);
    assert!(f.text.starts_with("connection lost"), "{f:?}");
    conn.closed().await;
}

//! Flow state end to end: the daemon on the namespace topology, real
//! redis-server members, real clients through the VIP.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use crate::{
    resp::Client,
    topology::{Family, Topology, vip},
};

use super::failover::{BOUND, default_config, started};

const TABLE: usize = 1024;
const SUBSCRIBERS: usize = 20;

/// Reads from `s` until `want` appears (bounded by the socket's timeout).
fn read_until(s: &mut TcpStream, want: &str) -> Result<String, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&got).contains(want) {
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&got))),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A signal to this test process (another test's child exiting)
            // interrupts a read with a timeout; it is not an answer.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&got))),
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// Idle Pub/Sub subscribers and an idle pooled connection through the VIP
/// survive 20 x `conntrack_entries` short connections (connect, PING,
/// close) through the same VIP: the finished flows leave the table as they
/// end, so the LRU never has to evict the idle ones. Before the flow
/// lifecycle, 0 of 20 subscribers got the message.
#[test]
#[ignore = "needs root: network namespaces and the daemon's BPF programs"]
fn idle_subscribers_and_pooled_connection_survive_churn_of_short_connections() {
    let t = Topology::new(true);
    let cfg = default_config().replace(
        "conntrack_entries = 16384",
        &format!("conntrack_entries = {TABLE}"),
    );
    let d = started(&t, &cfg);
    let v = vip(Family::V4);
    let mut subscribers: Vec<TcpStream> = (0..SUBSCRIBERS)
        .map(|_| {
            let mut s = t
                .app
                .run(move || TcpStream::connect_timeout(&v, Duration::from_secs(3)))
                .expect("subscriber connects");
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n")
                .unwrap();
            read_until(&mut s, "news").expect("subscribed");
            s
        })
        .collect();
    let mut pooled = t.connect(v).expect("pooled connection");
    pooled.set_timeout(Duration::from_secs(3));
    assert_eq!(pooled.get("region").unwrap().as_deref(), Some("east"));

    let churn = 20 * TABLE;
    let (done, took) = t.app.run(move || {
        let start = Instant::now();
        let mut done = 0;
        // Bounded in count and time.
        while done < churn && start.elapsed() < Duration::from_secs(120) {
            let mut c = Client::connect(v).expect("short connection");
            c.set_timeout(Duration::from_secs(3));
            assert_eq!(c.command(&["PING"]).unwrap().as_deref(), Some("PONG"));
            done += 1;
        }
        (done, start.elapsed())
    });
    eprintln!("{done} short connections through the VIP in {took:?}");
    assert_eq!(done, churn, "churn finished within its time bound");

    // Publish on the member itself, not through the VIP.
    let east = t.east.addr(Family::V4);
    let receivers = t.app.run(move || {
        let mut c = Client::connect(east).expect("direct connection to east");
        c.command(&["PUBLISH", "news", "hello"]).expect("publish")
    });
    assert_eq!(
        receivers.as_deref(),
        Some("20"),
        "east still has 20 subscribers"
    );
    let mut received = 0;
    for s in &mut subscribers {
        if read_until(s, "hello").is_ok() {
            received += 1;
        }
    }
    assert_eq!(
        received, SUBSCRIBERS,
        "every idle subscriber got the message"
    );
    assert_eq!(
        pooled.get("region").unwrap().as_deref(),
        Some("east"),
        "the idle pooled connection still answers"
    );

    // The table's pressure is visible: the sweep counts what is open.
    let start = Instant::now();
    let s = loop {
        let s = d.status();
        if s.flows.sweeps > 0 {
            break s;
        }
        assert!(start.elapsed() < BOUND * 3, "no flow sweep reported");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(s.flows.capacity, TABLE as u64);
    assert!(
        s.flows.open >= (SUBSCRIBERS + 1) as u64,
        "the open flows are counted: {:?}",
        s.flows
    );
    assert!(
        s.flows.peak < TABLE as u64,
        "never near full: {:?}",
        s.flows
    );
    let closed = s
        .counters
        .iter()
        .find(|(k, _)| k == "flows_closed")
        .map(|(_, v)| *v)
        .unwrap();
    assert!(
        closed >= churn as u64,
        "closed flows left the table: {closed}"
    );
}

/// A daemon whose mount namespace lacks the host's bpffs (what `ip netns
/// exec` gives it) mounts a private one, whose pins die with it: it must
/// say so at start, and the host indeed sees no pins.
#[test]
#[ignore = "needs root: network and mount namespaces and the daemon's BPF programs"]
fn daemon_warns_loudly_when_its_bpffs_is_private() {
    let t = Topology::new(true);
    let mut d = crate::daemon::DaemonProc::start_private_mounts(&t, &default_config());
    let log = d.log_text();
    assert!(
        log.contains("mounted a private bpffs") && log.contains("NOT outlive this process"),
        "no warning in:\n{log}"
    );
    assert!(
        !t.pins.path.join("maps").exists(),
        "the host sees no pins of a private bpffs"
    );
    d.stop();
}

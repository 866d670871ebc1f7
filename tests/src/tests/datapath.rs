//! End to end in network namespaces: real redis-server members, the data
//! path attached on the application host, and a client talking to the VIP.

use std::{
    io::ErrorKind,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use redirector::datapath::{Datapath, Hook, IngressMode, Options};
use redirector_common::{DOWN_UNHEALTHY, Stat};

use crate::{
    netns::leftover_namespaces,
    topology::{Family, Topology, vip},
};

pub(super) fn load(t: &Topology, ingress: IngressMode) -> Datapath {
    let opts = Options {
        interfaces: vec!["eth0".into()],
        ingress,
        pin_path: t.pins.path.clone(),
        conntrack_entries: 4096,
    };
    t.app
        .run(move || Datapath::load(&opts).expect("load the data path on the app host"))
}

fn region(t: &Topology, addr: SocketAddr) -> String {
    let mut c = t.connect(addr).expect("connect");
    c.get("region").expect("GET region").expect("region is set")
}

/// The whole data-path story on one topology:
/// 1. SET/GET through the VIP reaches east;
/// 2. after a flip, new connections reach west while the open one to east
///    keeps working (drain);
/// 3. after east is marked down, the open connection fails promptly (RST,
///    not a retransmission timeout) and a reconnect lands on west.
fn failover_story(family: Family, ingress: IngressMode, tx_offload: bool) {
    let t = Topology::new(tx_offload);
    let mut dp = load(&t, ingress);
    let want_hook = if ingress == IngressMode::Tc {
        Hook::TcIngress
    } else {
        // veth has native XDP, so both "xdp" and "auto" must pick it.
        Hook::XdpNative
    };
    let hooks: Vec<Hook> = dp.attachments.iter().map(|a| a.hook).collect();
    assert_eq!(hooks, [Hook::TcEgress, want_hook]);

    let (v, east, west) = (vip(family), t.east.addr(family), t.west.addr(family));
    dp.maps.set_active(v.into(), east.into()).unwrap();

    let mut open = t.connect(v).expect("connect to the VIP");
    assert_eq!(open.get("region").unwrap().as_deref(), Some("east"));
    open.command(&["SET", "written-through-vip", "yes"])
        .unwrap();
    assert_eq!(
        open.get("written-through-vip").unwrap().as_deref(),
        Some("yes")
    );
    // The client saw the VIP, not the member.
    let peer = t.app.run({
        move || {
            std::net::TcpStream::connect_timeout(&v, Duration::from_secs(3))
                .map(|s| s.peer_addr().unwrap())
        }
    });
    assert_eq!(peer.unwrap(), v);

    dp.maps.set_active(v.into(), west.into()).unwrap();
    assert_eq!(
        region(&t, v),
        "west",
        "a new connection goes to the new active member"
    );
    assert_eq!(
        open.get("region").unwrap().as_deref(),
        Some("east"),
        "the open connection drains on its member"
    );

    dp.maps.mark_down(east.into(), DOWN_UNHEALTHY).unwrap();
    let started = Instant::now();
    let err = open
        .get("region")
        .expect_err("a connection to a down member must fail");
    let took = started.elapsed();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
        ),
        "expected a reset, got {err} after {took:?}"
    );
    assert!(took < Duration::from_secs(3), "reset took {took:?}");
    assert_eq!(
        region(&t, v),
        "west",
        "a reconnect lands on the active member"
    );

    let stats = dp.maps.stats().unwrap();
    assert!(stats.get(Stat::Steered) >= 1, "{stats:?}");
    assert!(stats.get(Stat::ReverseTranslated) > 0, "{stats:?}");
    assert_eq!(stats.get(Stat::RewriteFailed), 0, "{stats:?}");
}

macro_rules! story {
    ($($name:ident: $family:expr, $ingress:expr, $offload:expr;)+) => {$(
        #[test]
        #[ignore = "needs root: network namespaces and attached BPF programs"]
        fn $name() {
            failover_story($family, $ingress, $offload);
        }
    )+};
}

story! {
    ipv4_tc_ingress_offload_on_serves_drains_and_fails_fast: Family::V4, IngressMode::Tc, true;
    ipv4_tc_ingress_offload_off_serves_drains_and_fails_fast: Family::V4, IngressMode::Tc, false;
    ipv4_xdp_ingress_offload_on_serves_drains_and_fails_fast: Family::V4, IngressMode::Xdp, true;
    ipv4_xdp_ingress_offload_off_serves_drains_and_fails_fast: Family::V4, IngressMode::Xdp, false;
    ipv6_tc_ingress_offload_on_serves_drains_and_fails_fast: Family::V6, IngressMode::Tc, true;
    ipv6_tc_ingress_offload_off_serves_drains_and_fails_fast: Family::V6, IngressMode::Tc, false;
    ipv6_xdp_ingress_offload_on_serves_drains_and_fails_fast: Family::V6, IngressMode::Xdp, true;
    ipv6_auto_ingress_offload_off_serves_drains_and_fails_fast: Family::V6, IngressMode::Auto, false;
}

#[test]
#[ignore = "needs root: network namespaces and attached BPF programs"]
fn traffic_follows_the_fib_next_hop_when_forwarding_is_enabled() {
    let t = Topology::new(false);
    t.app
        .exec(&["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"]);
    let mut dp = load(&t, IngressMode::Tc);
    let v = vip(Family::V4);
    dp.maps
        .set_active(v.into(), t.west.addr(Family::V4).into())
        .unwrap();
    assert_eq!(region(&t, v), "west");
    let stats = dp.maps.stats().unwrap();
    assert_eq!(stats.get(Stat::FibFallback), 0, "{stats:?}");
    assert!(stats.get(Stat::Translated) > 0);
}

#[test]
#[ignore = "needs root: network namespaces and attached BPF programs"]
fn restarted_loader_adopts_links_and_keeps_open_connections() {
    let t = Topology::new(true);
    let mut dp = load(&t, IngressMode::Auto);
    let v = vip(Family::V4);
    dp.maps
        .set_active(v.into(), t.east.addr(Family::V4).into())
        .unwrap();
    let mut open = t.connect(v).unwrap();
    assert_eq!(open.get("region").unwrap().as_deref(), Some("east"));
    drop(dp);
    // Between two loads nothing runs in userspace; traffic still flows.
    assert_eq!(open.get("region").unwrap().as_deref(), Some("east"));
    // As after an upgrade from a build without the port filters: they are
    // created empty and must be refilled from the services and flows.
    for m in [
        redirector_common::VIP_PORTS,
        redirector_common::MEMBER_PORTS,
    ] {
        std::fs::remove_file(t.pins.path.join("maps").join(m)).unwrap();
    }
    let dp = load(&t, IngressMode::Auto);
    assert!(
        dp.attachments.iter().all(|a| a.adopted),
        "{:?}",
        dp.attachments
    );
    assert_eq!(
        region(&t, v),
        "east",
        "new connections pass the refilled filters"
    );
    assert_eq!(open.get("region").unwrap().as_deref(), Some("east"));
    let open_flow = redirector_common::Endpoint::from(open.local_addr());
    assert!(
        dp.maps
            .flows()
            .unwrap()
            .iter()
            .any(|f| f.flow.client == open_flow),
        "conntrack was not reset: the open connection's flow is still there"
    );
    // Switching the ingress mode replaces the XDP link with a TC one.
    let dp = load(&t, IngressMode::Tc);
    let hooks: Vec<Hook> = dp.attachments.iter().map(|a| a.hook).collect();
    assert_eq!(hooks, [Hook::TcEgress, Hook::TcIngress]);
    let links = std::fs::read_dir(t.pins.path.join("links"))
        .unwrap()
        .count();
    assert_eq!(links, 2, "the old XDP link was unpinned");
    assert_eq!(open.get("region").unwrap().as_deref(), Some("east"));
}

#[test]
#[ignore = "needs root: network namespaces and BPF programs"]
fn load_names_a_missing_interface() {
    let t = Topology::new(true);
    let opts = Options {
        interfaces: vec!["nosuch0".into()],
        ingress: IngressMode::Auto,
        pin_path: t.pins.path.clone(),
        conntrack_entries: 1024,
    };
    let err = t
        .app
        .run(move || Datapath::load(&opts).err().expect("must fail"));
    assert!(err.to_string().contains("\"nosuch0\""), "{err}");
}

#[test]
#[ignore = "needs root: network namespaces and attached BPF programs"]
fn everything_is_removed_even_when_a_test_panics() {
    struct Seen {
        namespaces: Vec<String>,
        pin: std::path::PathBuf,
        pids: Vec<u32>,
    }
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let result = std::panic::catch_unwind(move || {
        let t = Topology::new(true);
        let _dp = load(&t, IngressMode::Xdp);
        *s.lock().unwrap() = Some(Seen {
            namespaces: vec![
                t.app.name.clone(),
                t.router.name.clone(),
                t.east.ns.name.clone(),
                t.west.ns.name.clone(),
            ],
            pin: t.pins.path.clone(),
            pids: [&t.east, &t.west]
                .iter()
                .map(|m| m.redis.as_ref().unwrap().id())
                .collect(),
        });
        panic!("deliberate failure inside a test body");
    });
    assert!(result.is_err());
    let seen = seen.lock().unwrap().take().expect("the body ran");
    assert!(!seen.pin.exists(), "pins left at {}", seen.pin.display());
    let left = leftover_namespaces();
    for ns in &seen.namespaces {
        assert!(!left.contains(ns), "namespace {ns} left behind");
    }
    for pid in seen.pids {
        // SAFETY: kill with signal 0 only checks whether the PID exists.
        let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
        assert!(!alive, "redis-server {pid} still running");
    }
}

//! Fleet mode (issue 13) against a real etcd cluster, real redis-server
//! members and one real daemon per application host. First the harness:
//! the etcd cluster alone, then the fleet topology with independent hosts
//! (no fleet mode: today's behaviour, the baseline fleet mode is measured
//! against).

use std::time::{Duration, Instant};

use super::failover::{BOUND, config, until_region_from, wait_east_up};
use crate::{
    etcd::EtcdCluster, fleet_topology::FleetTopology, netns::leftover_namespaces,
    pins::leftover_pins, topology::Family,
};

/// Command lines of live processes that mention `needle` (leftover check).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces and etcd"]
fn etcd_cluster_elects_replicates_survives_its_leader_and_cleans_up() {
    let started = Instant::now();
    let mut cluster = EtcdCluster::new();
    println!("3 members healthy after {:?}", started.elapsed());
    assert_eq!(cluster.endpoints().len(), 3);

    let leader = cluster.leader();
    let other = (leader + 1) % 3;
    cluster.put(leader, "rdt/key", "one").unwrap();
    assert_eq!(
        cluster.get(other, "rdt/key").unwrap().as_deref(),
        Some("one")
    );

    let killed_at = Instant::now();
    cluster.kill(leader);
    let new_leader = cluster.leader();
    println!(
        "new leader m{new_leader} {:?} after killing m{leader}",
        killed_at.elapsed()
    );
    assert_ne!(new_leader, leader, "the killed member still leads");
    let deadline = killed_at + Duration::from_secs(10);
    loop {
        match cluster.put(other, "rdt/key", "two") {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no put accepted within 10 s of killing leader m{leader}: {e}\n{}",
                cluster.logs()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "put accepted {:?} after killing the leader",
        killed_at.elapsed()
    );
    let third = 3 - leader - other;
    assert_eq!(
        cluster.get(third, "rdt/key").unwrap().as_deref(),
        Some("two")
    );

    // The killed member rejoins from its data and catches up; then a
    // member stopped gently (SIGTERM) still leaves a quorum of two.
    cluster.restart(leader);
    assert_eq!(
        cluster.get(leader, "rdt/key").unwrap().as_deref(),
        Some("two")
    );
    let stopped_at = Instant::now();
    cluster.stop(third);
    println!("m{third} stopped in {:?}", stopped_at.elapsed());
    assert!(cluster.members[third].pid().is_none());
    cluster.put(leader, "rdt/key", "three").unwrap();
    assert_eq!(
        cluster.get(other, "rdt/key").unwrap().as_deref(),
        Some("three")
    );

    let name = cluster.name.clone();
    let pids = cluster.pids();
    let mut namespaces: Vec<String> = cluster.members.iter().map(|m| m.ns.name.clone()).collect();
    namespaces.push(cluster.hub.name.clone());
    let dropped_at = Instant::now();
    drop(cluster);
    println!("dropped in {:?}", dropped_at.elapsed());
    assert_nothing_left(&pids, &namespaces, &[], &name);
    println!("whole test {:?}", started.elapsed());
}

/// After a drop: none of `pids` runs, no process mentions `etcd_name`,
/// none of `namespaces` or `pins` exists and the etcd tmpfs is unmounted.
fn assert_nothing_left(
    pids: &[u32],
    namespaces: &[String],
    pins: &[std::path::PathBuf],
    etcd_name: &str,
) {
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still runs"
        );
    }
    assert_eq!(processes_mentioning(etcd_name), Vec::<String>::new());
    let left: Vec<String> = leftover_namespaces()
        .into_iter()
        .filter(|n| namespaces.contains(n))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "namespaces left");
    let left: Vec<_> = leftover_pins()
        .into_iter()
        .filter(|p| pins.contains(p))
        .collect();
    assert_eq!(
        left,
        Vec::<std::path::PathBuf>::new(),
        "pin directories left"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(etcd_name),
        "the etcd tmpfs is still mounted"
    );
}

/// The "cache" service of the other e2e tests (east preferred, redis-ping
/// checks every 250 ms, fall 2), on the fleet topology's member addresses.
fn service_config(t: &FleetTopology, extra_service: &str) -> String {
    config(extra_service, "kind = \"redis-ping\"")
        .replace("198.18.1.10:6379", &t.east.addr(Family::V4).to_string())
        .replace("198.18.2.10:6379", &t.west.addr(Family::V4).to_string())
}

/// Waits until every host's daemon serves from east, through the VIP too,
/// and has confirmed east up (so a fault after this is a failover, not a
/// cold start).
fn wait_all_on_east(t: &FleetTopology) {
    for (i, h) in t.hosts.iter().enumerate() {
        t.daemon(i).wait_active("cache", "east", BOUND);
        until_region_from(&h.ns, "east", BOUND);
        wait_east_up(t.daemon(i));
    }
}

#[test]
#[ignore = "needs root: network namespaces, etcd and redis"]
fn independent_hosts_reach_the_vip_fail_over_each_alone_and_leave_nothing() {
    let started = Instant::now();
    let mut t = FleetTopology::new(4);
    t.start_daemons(|t, _| service_config(t, ""));
    wait_all_on_east(&t);
    println!("4 hosts serving through east after {:?}", started.elapsed());

    // Without fleet mode each host decides alone: the one host cut off
    // from east moves to west, the others stay on east.
    t.partition(0, "east");
    until_region_from(&t.hosts[0].ns, "west", 2 * BOUND);
    t.daemon(0).wait_active("cache", "west", BOUND);
    for i in 1..4 {
        assert_eq!(t.region(i).as_deref(), Some("east"), "host {i}");
        let h = t.daemon(i).history();
        assert!(h.iter().all(|f| f.to != "west"), "host {i} flipped: {h:?}");
    }
    let f = t.daemon(0).history().pop().expect("host 0 flipped");
    assert_eq!((f.from.as_deref(), f.to.as_str()), (Some("east"), "west"));
    assert_eq!(f.epoch, None, "a flip of its own has no fleet epoch");

    // East dies: every other host fails over on its own checks.
    t.kill_redis("east");
    for i in 1..4 {
        until_region_from(&t.hosts[i].ns, "west", BOUND);
        let f = t.daemon(i).history().pop().expect("a flip");
        assert_eq!((f.from.as_deref(), f.to.as_str()), (Some("east"), "west"));
    }

    let mut pids: Vec<u32> = t.hosts.iter().map(|h| h.daemon().pid()).collect();
    pids.extend(t.west.redis.as_ref().map(std::process::Child::id));
    pids.extend(t.etcd.pids());
    let mut namespaces: Vec<String> = t.hosts.iter().map(|h| h.ns.name.clone()).collect();
    namespaces.extend([&t.east.ns, &t.west.ns, &t.router, &t.etcd.hub].map(|n| n.name.clone()));
    namespaces.extend(t.etcd.members.iter().map(|m| m.ns.name.clone()));
    let pins: Vec<_> = t.hosts.iter().map(|h| h.pins.path.clone()).collect();
    assert!(pins.iter().all(|p| p.exists()), "daemons pinned their maps");
    let etcd_name = t.etcd.name.clone();
    drop(t);
    assert_nothing_left(&pids, &namespaces, &pins, &etcd_name);
    println!("whole test {:?}", started.elapsed());
}

//! Fleet mode (issue 13) against a real etcd cluster. For now the harness
//! itself: a 3-member cluster elects a leader, replicates a put, survives
//! its leader's death, takes the member back, and leaves nothing behind.

use std::time::{Duration, Instant};

use crate::{etcd::EtcdCluster, netns::leftover_namespaces};

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

    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "etcd {pid} still runs"
        );
    }
    assert_eq!(processes_mentioning(&name), Vec::<String>::new());
    let left: Vec<String> = leftover_namespaces()
        .into_iter()
        .filter(|n| namespaces.contains(n))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "namespaces left");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&name), "the etcd tmpfs is still mounted");
    println!("whole test {:?}", started.elapsed());
}

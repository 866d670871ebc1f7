//! Fleet mode (issue 13) against a real etcd cluster, real redis-server
//! members and one real daemon per application host. First the harness:
//! the etcd cluster alone, then the fleet topology with independent hosts
//! (no fleet mode: today's behaviour, the baseline fleet mode is measured
//! against); then fleet mode, four hosts, every fault of the issue.

use std::time::{Duration, Instant};

use redirector::{decide::Reason, status::unix_ms};

use super::failover::{BOUND, scrape_metrics_in, until_region_from};
use crate::{
    etcd::EtcdCluster,
    fleet_topology::{DETACH_TIMEOUT_MS, FLEET_BOUND, FleetTopology},
    netns::leftover_namespaces,
    pins::leftover_pins,
    topology::Family,
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

#[test]
#[ignore = "needs root: network namespaces, etcd and redis"]
fn independent_hosts_reach_the_vip_fail_over_each_alone_and_leave_nothing() {
    let started = Instant::now();
    let mut t = FleetTopology::new(4);
    t.start_daemons(|t, _| t.service_config(""));
    t.wait_all_on_east();
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

// ---- Fleet mode: one decision for every host, through etcd. ----

/// Application hosts in every fleet test.
const HOSTS: usize = 4;
/// How long "nothing moves" is watched: about three times a host's
/// detection time (fall 2 at 250 ms, checks timing out at 200 ms).
const NO_FLIP_FOR: Duration = Duration::from_secs(3);
/// A 4-host fleet serving through east: every host live in every host's
/// view, seeing east up, with the decision (east) applied.
fn fleet_started(on_detach: &str) -> FleetTopology {
    fleet_started_with(on_detach, "none")
}

fn fleet_started_with(on_detach: &str, barrier: &str) -> FleetTopology {
    let started = Instant::now();
    let mut t = FleetTopology::new(HOSTS);
    t.start_daemons(|t, i| t.fleet_config(i, on_detach, barrier));
    t.wait_all_on_east();
    t.wait_settled_on_east(0..HOSTS);
    println!(
        "fleet of {HOSTS} settled on east after {:?}",
        started.elapsed()
    );
    t
}

/// Waits until each host in `hosts` serves `want`, in its status and
/// through the VIP; checks they all got there by one record with the same
/// epoch, which is the fleet's decision and what each applied. Returns
/// that epoch.
fn moved_in_one_epoch(t: &FleetTopology, hosts: &[usize], want: &str) -> u64 {
    let start = Instant::now();
    for &i in hosts {
        t.daemon(i).wait_active("cache", want, FLEET_BOUND);
        until_region_from(&t.hosts[i].ns, want, BOUND);
    }
    let took = start.elapsed();
    let mut epochs = Vec::new();
    for &i in hosts {
        let history = t.daemon(i).history();
        let last = history
            .iter()
            .rev()
            .find(|f| f.to == want)
            .unwrap_or_else(|| panic!("host {i}: no flip to {want}: {history:?}"));
        let epoch = last
            .epoch
            .unwrap_or_else(|| panic!("host {i}: the flip to {want} has no epoch: {last:?}"));
        let records = history.iter().filter(|f| f.epoch == Some(epoch)).count();
        assert_eq!(
            records, 1,
            "host {i}: records of epoch {epoch}: {history:?}"
        );
        let f = t.fleet(i);
        assert_eq!(
            (f.epoch, f.applied_epoch, f.active.as_deref()),
            (epoch, epoch, Some(want)),
            "host {i}'s fleet view"
        );
        epochs.push(epoch);
    }
    println!("hosts {hosts:?} on {want} after {took:?}, epochs {epochs:?}");
    assert!(
        epochs.iter().all(|&e| e == epochs[0]),
        "the hosts moved in different epochs: {epochs:?}"
    );
    epochs[0]
}

/// Each host in `hosts` keeps serving `want` (its data path) and its fleet
/// view keeps naming `want` in epoch `epoch`, checked every 100 ms for
/// `for_`; and none of them records a flip to `not`.
fn stays(t: &FleetTopology, hosts: &[usize], want: &str, epoch: u64, not: &str, for_: Duration) {
    let end = Instant::now() + for_;
    while Instant::now() < end {
        for &i in hosts {
            let s = t.daemon(i).status();
            let svc = &s.services[0];
            let f = svc.fleet.as_ref().expect("fleet status");
            assert_eq!(
                (svc.active.as_deref(), f.active.as_deref(), f.epoch),
                (Some(want), Some(want), epoch),
                "host {i} moved: {f:?}"
            );
            let history = t.daemon(i).history();
            assert!(
                history.iter().all(|r| r.to != not),
                "host {i} flipped to {not}: {history:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Host `i`'s own published view of `member`, in its own status.
fn own_view(t: &FleetTopology, i: usize, member: &str) -> Option<String> {
    let f = t.fleet(i);
    f.hosts
        .iter()
        .find(|h| h.name == t.hosts[i].name)
        .and_then(|h| h.members.get(member).cloned())
}

#[test]
#[ignore = "needs root: network namespaces, etcd and redis"]
fn killed_member_moves_every_host_in_one_epoch_and_its_return_moves_them_back() {
    let mut t = fleet_started("static");
    let all: Vec<usize> = (0..HOSTS).collect();
    let before = t.fleet(0).epoch;

    t.kill_redis("east");
    let failover = moved_in_one_epoch(&t, &all, "west");
    assert!(failover > before, "epoch {failover} after {before}");
    for (i, h) in t.hosts.iter().enumerate() {
        let last = t.daemon(i).history().pop().expect("a flip");
        assert_eq!(last.reason, Reason::Failover, "host {i}: {last:?}");
        let metrics = scrape_metrics_in(&h.ns);
        for want in [
            format!("redirector_fleet_epoch{{service=\"cache\"}} {failover}"),
            "redirector_fleet_attached{service=\"cache\"} 1".to_string(),
        ] {
            assert!(
                metrics.lines().any(|l| l == want),
                "host {i}: no `{want}` in /metrics:\n{metrics}"
            );
        }
    }

    // East back: after failback_delay (2 s) every host returns, together.
    t.restart_redis("east");
    let failback = moved_in_one_epoch(&t, &all, "east");
    assert!(failback > failover, "epoch {failback} after {failover}");
    for i in 0..HOSTS {
        let last = t.daemon(i).history().pop().expect("a flip");
        assert_eq!(last.reason, Reason::Failback, "host {i}: {last:?}");
    }
}

/// A reload cannot move a host to another fleet (it is refused, and the
/// host stays attached); a reload that changes a fleet service restarts it,
/// and the restarted service adopts the fleet's decision without a flip
/// and keeps moving with the fleet.
#[test]
#[ignore = "needs root: network namespaces, etcd and redis"]
fn a_reload_keeps_the_fleet_and_a_restarted_fleet_service_rejoins_without_a_flip() {
    let mut t = fleet_started("static");
    let all: Vec<usize> = (0..HOSTS).collect();
    let d = t.daemon(0);
    let good = std::fs::read_to_string(&d.config).unwrap();
    assert!(good.contains("prefix = \"/"), "{good}");
    std::fs::write(
        &d.config,
        good.replace("prefix = \"/", "prefix = \"/other-"),
    )
    .unwrap();
    let out = d.cli(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a [fleet] change was applied");
    assert!(err.contains("[fleet] section cannot change"), "{err}");
    let epoch = t.fleet(0).epoch;
    assert!(t.fleet(0).attached);

    let flips = d.history().len();
    let changed = good.replace("failback_delay = \"2s\"", "failback_delay = \"3s\"");
    assert_ne!(changed, good);
    std::fs::write(&d.config, changed).unwrap();
    let out = d.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.wait_fleet(0, "rejoined", FLEET_BOUND, |f| {
        f.attached && f.following && f.epoch == epoch && f.applied_epoch == epoch
    });
    assert_eq!(t.region(0).as_deref(), Some("east"));
    assert_eq!(d.history().len(), flips, "{:?}", d.history());

    t.kill_redis("east");
    moved_in_one_epoch(&t, &all, "west");
}

/// Break-before-make: an operator's switchover (both members up) goes
/// through a barrier epoch in which no host serves, then every host
/// serves west in the next epoch; the release comes back the same way.
#[test]
#[ignore = "needs root: network namespaces, etcd and redis"]
fn a_barrier_switchover_stops_every_host_before_any_serves_the_new_member() {
    let t = fleet_started_with("static", "ack");
    let all: Vec<usize> = (0..HOSTS).collect();
    let out = t.daemon(2).cli(&["switchover", "cache", "west"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("for the whole fleet"), "{text}");
    for (to, back) in [("west", false), ("east", true)] {
        if back {
            let out = t.daemon(1).cli(&["release", "cache"]);
            assert!(out.status.success(), "{out:?}");
        }
        let epoch = moved_in_one_epoch(&t, &all, to);
        for i in 0..HOSTS {
            let h = t.daemon(i).history();
            let barrier = h
                .iter()
                .find(|r| r.epoch == Some(epoch - 1))
                .unwrap_or_else(|| panic!("host {i}: no barrier epoch before {epoch}: {h:?}"));
            assert_eq!(
                (barrier.phase.as_deref(), barrier.to.as_str()),
                (Some("barrier"), to),
                "host {i}: {h:?}"
            );
            let serving = h.iter().find(|r| r.epoch == Some(epoch)).unwrap();
            assert!(
                serving.map_written_ms >= barrier.map_written_ms,
                "host {i}: {h:?}"
            );
        }
        // No host served the new member before every host had stopped
        // serving the old one.
        let last_stop = all
            .iter()
            .map(|&i| {
                let h = t.daemon(i).history();
                h.iter()
                    .find(|r| r.epoch == Some(epoch - 1))
                    .unwrap()
                    .map_written_ms
            })
            .max()
            .unwrap();
        for i in 0..HOSTS {
            let h = t.daemon(i).history();
            let start = h
                .iter()
                .find(|r| r.epoch == Some(epoch))
                .unwrap()
                .map_written_ms;
            assert!(
                start >= last_stop,
                "host {i} served {to} at {start} before the last host stopped at {last_stop}"
            );
        }
    }
}

#[test]
#[ignore = "needs root: network namespaces, etcd and redis"]
fn minority_partition_flips_no_host_and_the_cut_host_gets_errors() {
    let mut t = fleet_started("static");
    let epoch = t.fleet(0).epoch;
    t.partition(0, "east");
    // Host h1 decides east down in its own view...
    let start = Instant::now();
    while own_view(&t, 0, "east").as_deref() != Some("down") {
        assert!(start.elapsed() < FLEET_BOUND, "h1 never saw east down");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...and the others see that, but one of four is no quorum.
    for i in 1..HOSTS {
        t.wait_fleet(i, "told h1 sees east down", BOUND, |f| {
            f.hosts.iter().any(|h| {
                h.name == "h1" && h.members.get("east").map(String::as_str) == Some("down")
            })
        });
    }
    let all: Vec<usize> = (0..HOSTS).collect();
    stays(&t, &all, "east", epoch, "west", NO_FLIP_FOR);
    // No concurrent access: the cut host gets errors, not west.
    assert_eq!(t.region(0), None, "h1 reached a member through the VIP");
    for i in 1..HOSTS {
        assert_eq!(t.region(i).as_deref(), Some("east"), "host {i}");
    }
    // Healed, h1 serves through east again without any flip.
    t.heal(0, "east");
    until_region_from(&t.hosts[0].ns, "east", FLEET_BOUND);
    assert_eq!(t.fleet(0).epoch, epoch);
}

#[test]
#[ignore = "needs root: network namespaces, etcd and redis"]
fn majority_partition_flips_every_host_including_one_that_still_reaches_the_member() {
    let mut t = fleet_started("static");
    for i in 0..3 {
        t.partition(i, "east");
    }
    let all: Vec<usize> = (0..HOSTS).collect();
    moved_in_one_epoch(&t, &all, "west");
    // h4 still reaches east directly, sees it up, and yet serves west.
    assert_eq!(own_view(&t, 3, "east").as_deref(), Some("up"));
    let east = t.east.addr(Family::V4);
    let direct = t.hosts[3].connect(east).and_then(|mut c| c.get("region"));
    assert_eq!(direct.expect("h4 reaches east").as_deref(), Some("east"));
}

#[test]
#[ignore = "needs root: network namespaces, etcd and redis"]
fn etcd_leader_killed_during_a_failover_still_moves_every_host_in_one_epoch() {
    let mut t = fleet_started("static");
    let leader = t.etcd.leader();
    // The leader dies as the hosts start detecting east's death (a check
    // every 250 ms, fall 2): the decision is proposed during the election.
    t.kill_redis("east");
    t.etcd.kill(leader);
    let leader_killed_ms = unix_ms(Instant::now());
    let all: Vec<usize> = (0..HOSTS).collect();
    moved_in_one_epoch(&t, &all, "west");
    for i in 0..HOSTS {
        let flips = t.daemon(i).history();
        let to_west: Vec<_> = flips.iter().filter(|f| f.to == "west").collect();
        assert_eq!(to_west.len(), 1, "host {i}: {flips:?}");
        assert!(
            to_west[0].map_written_ms >= leader_killed_ms,
            "host {i} applied the decision before the leader died: {flips:?}"
        );
    }
}

/// etcd loses its quorum: every host is cut off and keeps the last
/// decision, even with the active member dead (no host decides alone
/// under `on_detach = "static"`); once etcd has its quorum back, the fleet
/// fails over in one epoch.
#[test]
#[ignore = "needs root: network namespaces, etcd and redis"]
fn etcd_quorum_lost_keeps_every_host_static_until_it_is_back() {
    let mut t = fleet_started("static");
    let epoch = t.fleet(0).epoch;
    let leader = t.etcd.leader();
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    t.etcd.kill(leader);
    t.etcd.kill(others[0]);
    for i in 0..HOSTS {
        t.wait_fleet(i, "cut off", FLEET_BOUND, |f| {
            !f.attached && f.last_error.is_some()
        });
    }
    t.kill_redis("east");
    let all: Vec<usize> = (0..HOSTS).collect();
    stays(&t, &all, "east", epoch, "west", NO_FLIP_FOR);
    t.etcd.restart(leader);
    t.etcd.restart(others[0]);
    let failover = moved_in_one_epoch(&t, &all, "west");
    assert!(failover > epoch, "epoch {failover} after {epoch}");
}

/// Cuts host 0 from etcd and waits until it says so and the others no
/// longer count it (its lease ran out); returns when it detached (its
/// clock, Unix ms).
fn detach_host0(t: &FleetTopology) -> u64 {
    t.cut_from_etcd(0);
    let f = t.wait_fleet(0, "detached", FLEET_BOUND, |f| !f.attached);
    for i in 1..HOSTS {
        t.wait_fleet(i, "without h1", FLEET_BOUND, |f| {
            f.hosts.len() == HOSTS - 1 && f.hosts.iter().all(|h| h.name != "h1")
        });
    }
    f.detached_since_ms
        .expect("a detached host says since when")
}

#[test]
#[ignore = "needs root: network namespaces, etcd and redis"]
fn host_cut_from_etcd_keeps_the_last_decision_with_on_detach_static() {
    let mut t = fleet_started("static");
    let epoch = t.fleet(0).epoch;
    detach_host0(&t);
    t.kill_redis("east");
    let others: Vec<usize> = (1..HOSTS).collect();
    let failover = moved_in_one_epoch(&t, &others, "west");
    // h1 keeps the last decision it knows, past detach_timeout.
    stays(
        &t,
        &[0],
        "east",
        epoch,
        "west",
        Duration::from_millis(DETACH_TIMEOUT_MS + 1000),
    );
    let f = t.fleet(0);
    assert!(!f.attached && f.following, "{f:?}");
    // Back in touch, it adopts the fleet's decision.
    t.rejoin_etcd(0);
    t.daemon(0).wait_active("cache", "west", FLEET_BOUND);
    let f = t.wait_fleet(0, "attached again", FLEET_BOUND, |f| f.attached);
    assert_eq!((f.epoch, f.applied_epoch), (failover, failover));
}

#[test]
#[ignore = "needs root: network namespaces, etcd and redis"]
fn host_cut_from_etcd_fails_over_alone_after_detach_timeout_with_on_detach_local() {
    let mut t = fleet_started("local");
    let detached = detach_host0(&t);
    t.kill_redis("east");
    let others: Vec<usize> = (1..HOSTS).collect();
    moved_in_one_epoch(&t, &others, "west");
    // h1 decides alone, only once detach_timeout has passed.
    t.daemon(0).wait_active("cache", "west", FLEET_BOUND);
    until_region_from(&t.hosts[0].ns, "west", BOUND);
    let f = t.fleet(0);
    assert!(!f.attached && !f.following, "{f:?}");
    let flip = t.daemon(0).history().pop().expect("h1 flipped");
    assert_eq!(
        flip.epoch, None,
        "a local flip has no fleet epoch: {flip:?}"
    );
    assert!(
        flip.map_written_ms >= detached + DETACH_TIMEOUT_MS,
        "h1 flipped {} ms after detaching, before detach_timeout",
        flip.map_written_ms.saturating_sub(detached)
    );
}

#[test]
#[ignore = "needs root: network namespaces, etcd and redis"]
fn daemon_killed_while_the_fleet_decides_others_decide_and_its_restart_adopts() {
    let mut t = fleet_started("static");
    // h1's daemon dies as the hosts start detecting east's death (a check
    // every 250 ms, fall 2), before any of them can propose; its lease
    // and its stale view (east up) live on for lease_ttl.
    t.kill_redis("east");
    t.kill_daemon(0);
    let others: Vec<usize> = (1..HOSTS).collect();
    let epoch = moved_in_one_epoch(&t, &others, "west");
    let by = t.fleet(1).by;
    assert!(
        ["h2", "h3", "h4"].contains(&by.as_str()),
        "epoch {epoch} written by {by:?}"
    );
    // Its lease (2 s) runs out: the others no longer count it.
    for i in 1..HOSTS {
        t.wait_fleet(i, "without h1", FLEET_BOUND, |f| {
            f.hosts.len() == HOSTS - 1 && f.hosts.iter().all(|h| h.name != "h1")
        });
    }
    // Restarted, it adopts the decision made without it.
    t.restart_daemon(0);
    t.daemon(0).wait_active("cache", "west", FLEET_BOUND);
    until_region_from(&t.hosts[0].ns, "west", BOUND);
    let f = t.wait_fleet(0, "applied the decision", FLEET_BOUND, |f| {
        f.attached && f.applied_epoch == f.epoch
    });
    assert_eq!((f.epoch, f.active.as_deref()), (epoch, Some("west")));
    for i in 0..HOSTS {
        t.wait_fleet(i, "with h1 back", FLEET_BOUND, |f| f.hosts.len() == HOSTS);
    }
}

//! The agent against the in-memory engine: several hosts, each with its
//! own agent and engine handle, on tokio's paused clock (a "no change
//! within N s" is N s of virtual time, not a wait).

use std::time::Duration;

use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use super::*;
use crate::{
    decide::{
        Failback, Reason,
        fleet::{Barrier, FleetMember, FleetPolicy, Phase, Quorum},
    },
    fleet::{MemoryEngine, SeenRecord::*},
};

const EAST: usize = 0;
const WEST: usize = 1;

fn spec(host: &str, barrier: Barrier, local_after: Option<Duration>) -> AgentSpec {
    AgentSpec {
        service: "cache".into(),
        host: host.into(),
        members: vec![
            FleetMember {
                name: "east".into(),
                priority: 1,
            },
            FleetMember {
                name: "west".into(),
                priority: 2,
            },
        ],
        policy: FleetPolicy {
            quorum: Quorum::Majority,
            failback_delay: Duration::from_secs(5),
            failback: Failback::Auto,
            barrier,
        },
        lease_ttl: Duration::from_secs(3),
        retry: Duration::from_millis(500),
        local_after,
        barrier_timeout: Duration::from_secs(6),
    }
}

struct Host {
    engine: Arc<MemoryEngine>,
    view: watch::Sender<LocalView>,
    ops: mpsc::Sender<OpRequest>,
    events: mpsc::Receiver<FleetEvent>,
    status: Arc<Mutex<FleetStatus>>,
    metrics: Arc<Metrics>,
    task: JoinHandle<()>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Host {
    fn start(store: &MemoryEngine, spec: AgentSpec) -> Self {
        let engine = Arc::new(store.handle());
        let (view, local) = watch::channel(LocalView {
            seen: vec![Unknown, Unknown],
            applied_epoch: 0,
        });
        let (ops, ops_rx) = mpsc::channel(4);
        let (to_service, events) = mpsc::channel(64);
        let status = Arc::new(Mutex::new(FleetStatus::default()));
        let metrics = Metrics::new();
        let agent: Agent<MemoryEngine, FleetEvent> = Agent::new(
            spec,
            engine.clone(),
            AgentLinks {
                local,
                ops: ops_rx,
                to_service,
                status: status.clone(),
            },
            metrics.clone(),
        );
        Self {
            engine,
            view,
            ops,
            events,
            status,
            metrics,
            task: tokio::spawn(agent.run()),
        }
    }

    fn sees(&self, east: SeenRecord, west: SeenRecord) {
        self.view.send_modify(|v| v.seen = vec![east, west]);
    }

    fn ack(&self, epoch: u64) {
        self.view.send_modify(|v| v.applied_epoch = epoch);
    }

    /// The next decision the agent hands over, within `within` (virtual).
    async fn next_decision(&mut self, within: Duration) -> Option<Decision> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(FleetEvent::Decision(d))) => return Some(d),
                Ok(Some(FleetEvent::GoLocal)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Decisions until one with `active`, applying (acknowledging) each.
    async fn until_active(&mut self, active: usize) -> Decision {
        loop {
            let d = self
                .next_decision(Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("no decision with active {active}"));
            self.ack(d.epoch);
            if d.active == Some(active) && d.phase == Phase::Serving {
                return d;
            }
        }
    }

    fn status(&self) -> FleetStatus {
        self.status.lock().unwrap().clone()
    }

    fn ops_count(&self, op: &str, result: &str) -> u64 {
        self.metrics
            .fleet_ops
            .get_or_create(&FleetOpLabels {
                service: "cache".into(),
                op: op.into(),
                result: result.into(),
            })
            .get()
    }

    async fn op(&self, op: FleetOp) -> Result<Decision, FleetOpFailed> {
        let (reply, rx) = oneshot::channel();
        self.ops.send(OpRequest { op, reply }).await.unwrap();
        rx.await.unwrap()
    }
}

fn fleet(n: usize, barrier: Barrier) -> (MemoryEngine, Vec<Host>) {
    let store = MemoryEngine::new("/rdt");
    let hosts = (0..n)
        .map(|i| Host::start(&store, spec(&format!("h{i}"), barrier, None)))
        .collect();
    (store, hosts)
}

/// Every host sees both members up and serves east (epoch 1).
async fn serving_east(hosts: &mut [Host]) -> Decision {
    for h in hosts.iter() {
        h.sees(Up, Up);
    }
    let mut first = None;
    for h in hosts.iter_mut() {
        let d = h.until_active(EAST).await;
        assert_eq!(*first.get_or_insert(d.epoch), d.epoch);
    }
    Decision {
        epoch: first.unwrap(),
        ..Decision::initial()
    }
}

#[tokio::test(start_paused = true)]
async fn a_quorum_seeing_the_active_member_down_moves_every_host_in_one_epoch() {
    let (_store, mut hosts) = fleet(4, Barrier::None);
    let start = serving_east(&mut hosts).await;
    assert_eq!(start.epoch, 1);
    // Two of four: not a majority.
    hosts[0].sees(Down, Up);
    hosts[1].sees(Down, Up);
    for h in hosts.iter_mut() {
        assert_eq!(h.next_decision(Duration::from_secs(10)).await, None);
    }
    hosts[2].sees(Down, Up);
    let mut epochs = Vec::new();
    for h in hosts.iter_mut() {
        let d = h.until_active(WEST).await;
        assert_eq!(d.reason, Reason::Failover);
        epochs.push(d.epoch);
    }
    assert_eq!(epochs, vec![2; 4], "one epoch for every host");
    let won: u64 = hosts.iter().map(|h| h.ops_count("propose", "won")).sum();
    assert_eq!(won, 2, "one winner per epoch (1 and 2)");
    let st = hosts[3].status();
    assert_eq!((st.epoch, st.active.as_deref()), (2, Some("west")));
    assert_eq!(st.hosts.len(), 4);
    assert!(st.attached);
}

#[tokio::test(start_paused = true)]
async fn failback_waits_for_a_quorum_up_for_the_delay() {
    let (_store, mut hosts) = fleet(3, Barrier::None);
    serving_east(&mut hosts).await;
    for h in hosts.iter() {
        h.sees(Down, Up);
    }
    for h in hosts.iter_mut() {
        h.until_active(WEST).await;
    }
    let back = tokio::time::Instant::now();
    for h in hosts.iter() {
        h.sees(Up, Up);
    }
    let d = hosts[0].until_active(EAST).await;
    assert_eq!(d.reason, Reason::Failback);
    assert!(
        back.elapsed() >= Duration::from_secs(5),
        "{:?}",
        back.elapsed()
    );
    assert!(
        back.elapsed() < Duration::from_secs(7),
        "{:?}",
        back.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_barrier_serves_nothing_until_every_live_host_applied_it() {
    let (_store, mut hosts) = fleet(3, Barrier::Ack);
    serving_east(&mut hosts).await;
    for h in hosts.iter() {
        h.sees(Down, Up);
    }
    // East is fleet-down: no barrier for a failover.
    for h in hosts.iter_mut() {
        let d = h.until_active(WEST).await;
        assert_eq!(d.reason, Reason::Failover);
    }
    for h in hosts.iter() {
        h.sees(Up, Up);
    }
    // The failback goes through a barrier: every host gets it.
    let mut barrier = Vec::new();
    for h in hosts.iter_mut() {
        let d = h.next_decision(Duration::from_secs(30)).await.unwrap();
        assert_eq!((d.active, d.phase), (None, Phase::Barrier { to: EAST }));
        barrier.push(d.epoch);
    }
    // Two of three acknowledge: nothing serves yet.
    hosts[0].ack(barrier[0]);
    hosts[1].ack(barrier[1]);
    for h in hosts.iter_mut() {
        assert_eq!(h.next_decision(Duration::from_secs(2)).await, None);
    }
    hosts[2].ack(barrier[2]);
    for h in hosts.iter_mut() {
        let d = h.next_decision(Duration::from_secs(5)).await.unwrap();
        assert_eq!((d.active, d.phase), (Some(EAST), Phase::Serving));
        assert_eq!(d.epoch, barrier[0] + 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_barrier_a_live_host_never_acknowledges_goes_on_after_its_timeout() {
    let (_store, mut hosts) = fleet(3, Barrier::Ack);
    serving_east(&mut hosts).await;
    hosts[0]
        .ops
        .send(OpRequest {
            op: FleetOp::Switchover(WEST),
            reply: oneshot::channel().0,
        })
        .await
        .unwrap();
    let d = hosts[0]
        .next_decision(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(d.phase, Phase::Barrier { to: WEST });
    hosts[0].ack(d.epoch);
    hosts[1].ack(d.epoch);
    // Host 2 never does (its map write keeps failing, say).
    let waited = tokio::time::Instant::now();
    let next = hosts[0]
        .next_decision(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!((next.active, next.phase), (Some(WEST), Phase::Serving));
    assert!(
        waited.elapsed() >= Duration::from_secs(6),
        "{:?}",
        waited.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn an_operator_switchover_is_one_fleet_decision() {
    let (_store, mut hosts) = fleet(3, Barrier::None);
    serving_east(&mut hosts).await;
    let d = hosts[1].op(FleetOp::Switchover(WEST)).await.unwrap();
    assert_eq!(
        (d.active, d.pinned, d.reason),
        (Some(WEST), Some(WEST), Reason::Switchover)
    );
    for h in hosts.iter_mut() {
        assert_eq!(h.until_active(WEST).await.epoch, d.epoch);
    }
    // A member a quorum does not see up cannot be pinned.
    for h in hosts.iter() {
        h.sees(Down, Up);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = hosts[0].op(FleetOp::Switchover(EAST)).await.unwrap_err();
    assert!(
        matches!(e, FleetOpFailed::Rule(FleetOpError::NotUp(_))),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_host_cut_off_keeps_the_decision_and_the_others_stop_counting_it() {
    let (store, mut hosts) = fleet(3, Barrier::None);
    serving_east(&mut hosts).await;
    hosts[2].engine.set_reachable(false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!hosts[2].status().attached);
    assert!(hosts[2].status().last_error.is_some());
    // Its lease runs out (every lease, as a TTL would; the others renew
    // theirs with a new grant): the two others are the live fleet.
    for lease in store.leases() {
        store.expire(lease);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(hosts[0].status().hosts.len(), 2, "{:?}", hosts[0].status());
    hosts[0].sees(Down, Up);
    hosts[1].sees(Down, Up);
    for h in hosts[..2].iter_mut() {
        assert_eq!(h.until_active(WEST).await.epoch, 2, "2 of 2 live hosts");
    }
    let e = hosts[2].op(FleetOp::Release).await.unwrap_err();
    assert!(matches!(e, FleetOpFailed::Detached(_)), "{e}");
    // The cut host hands over nothing new; with on_detach static it never
    // goes local.
    assert_eq!(hosts[2].next_decision(Duration::from_secs(20)).await, None);
    hosts[2].engine.set_reachable(true);
    let d = hosts[2]
        .next_decision(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        d.active,
        Some(WEST),
        "the fleet's decision after reattaching"
    );
    assert!(hosts[2].status().attached);
    assert!(hosts[2].ops_count("grant", "failed") + hosts[2].ops_count("watch", "failed") > 0);
}

#[tokio::test(start_paused = true)]
async fn on_detach_local_hands_the_service_back_after_the_timeout() {
    let store = MemoryEngine::new("/rdt");
    let mut h = Host::start(
        &store,
        spec("h0", Barrier::None, Some(Duration::from_secs(3))),
    );
    h.sees(Up, Up);
    h.until_active(EAST).await;
    h.engine.set_reachable(false);
    let cut = tokio::time::Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), h.events.recv()).await {
            Ok(Some(FleetEvent::GoLocal)) => break,
            Ok(Some(FleetEvent::Decision(_))) => continue,
            other => panic!("no GoLocal: {other:?}"),
        }
    }
    assert!(
        cut.elapsed() >= Duration::from_secs(3),
        "{:?}",
        cut.elapsed()
    );
    h.engine.set_reachable(true);
    let d = h.next_decision(Duration::from_secs(5)).await.unwrap();
    assert_eq!(d.active, Some(EAST));
}

#[tokio::test(start_paused = true)]
async fn a_decision_naming_an_unknown_member_is_loud_and_never_overwritten() {
    let (store, mut hosts) = fleet(3, Barrier::None);
    serving_east(&mut hosts).await;
    store.put_raw(
        "/rdt/cache/decision",
        br#"{"epoch":9,"active":"north","barrier_to":null,"reason":"failover","pinned":null,"drained":[],"by":"hx","at_unix_ms":0}"#,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for h in hosts.iter() {
        h.sees(Down, Up);
    }
    for h in hosts.iter_mut() {
        assert_eq!(h.next_decision(Duration::from_secs(10)).await, None);
        assert!(h.status().last_error.unwrap().contains("north"));
        assert_eq!(h.ops_count("decode", "failed"), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn another_daemon_writing_under_this_host_name_is_loud() {
    let (store, mut hosts) = fleet(2, Barrier::None);
    serving_east(&mut hosts).await;
    store.put_raw(
        "/rdt/cache/hosts/h0",
        br#"{"members":{"east":"up","west":"up"},"applied_epoch":1,"at_unix_ms":0,"instance":7}"#,
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hosts[0].ops_count("host_name_conflict", "failed"), 1);
    let e = hosts[0].status().last_error.unwrap_or_default();
    assert!(
        e.contains("another daemon writes as fleet host \"h0\""),
        "{e}"
    );
    assert_eq!(hosts[1].ops_count("host_name_conflict", "failed"), 0);
}

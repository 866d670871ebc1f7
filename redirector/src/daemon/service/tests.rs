//! Service task tests: the map writer on an in-memory store, checkers
//! that answer as the test says.

use std::{
    future::Future,
    pin::Pin,
    sync::atomic::{AtomicBool, Ordering},
};

use prometheus_client::metrics::family::Family;

use super::*;
use crate::daemon::map_store::fake::{FakeMaps, Op};

const CONFIG: &str = r#"
[datapath]
interfaces = ["lo"]

[[services]]
name = "svc"
vip = "198.18.0.100:6379"
failback_delay = "0s"

[services.check]
kind = "tcp"
interval = "20ms"
fast_interval = "10ms"
timeout = "20ms"
rise = 2
fall = 2

[[services.members]]
name = "east"
addr = "198.18.1.10:6379"
priority = 1

[[services.members]]
name = "west"
addr = "198.18.2.10:6379"
priority = 2
"#;

/// Answers at once: unhealthy until `up` is set.
struct Switch(Arc<AtomicBool>);

impl health::Checker for Switch {
    fn check<'a>(
        &'a mut self,
        _: SocketAddr,
        _: &'a str,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        let healthy = self.0.load(Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Outcome {
                healthy,
                latency: Duration::from_millis(2),
                error: (!healthy).then(|| "refused".into()),
                code: None,
                kind: (!healthy).then_some(health::FailureKind::Connect),
            }
        })
    }
}

fn service_under_test(maps: &FakeMaps) -> (config::Service, Shared, Arc<Metrics>) {
    let cfg = config::parse(CONFIG, std::path::Path::new("test.toml"))
        .unwrap()
        .services
        .remove(0);
    let metrics = Metrics::new();
    let shared = Shared {
        writer: Writer::spawn(maps.clone(), metrics.map_errors.clone()).unwrap(),
        metrics: metrics.clone(),
        history: History::default(),
        tasks: Tasks::new(Family::default()),
        routes: Routes::default(),
        fleet: None,
    };
    (cfg, shared, metrics)
}

#[tokio::test]
async fn a_failed_map_write_is_made_again_at_the_next_check() {
    let maps = FakeMaps::default();
    let (cfg, shared, metrics) = service_under_test(&maps);
    let vip = Endpoint::from(cfg.vip);
    maps.fail(Op::SetActive, 1);
    let up = Arc::new(AtomicBool::new(true));
    let checkers: Vec<Box<dyn health::Checker>> =
        vec![Box::new(Switch(up.clone())), Box::new(Switch(up.clone()))];
    let _service = start(cfg, checkers, &shared).await;
    let east = Endpoint::from("198.18.1.10:6379".parse::<SocketAddr>().unwrap());
    for _ in 0..200 {
        if !maps.state().writes.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        maps.state().writes.first(),
        Some(&(vip, east)),
        "the failed write was never made again"
    );
    let failed = metrics
        .map_errors
        .get_or_create(&crate::metrics::MapOpLabels {
            op: "set_active".into(),
        })
        .get();
    assert_eq!(failed, 1);
}

#[tokio::test]
async fn an_unreadable_active_entry_is_not_overwritten_until_a_member_is_confirmed_up() {
    let cfg = config::parse(CONFIG, std::path::Path::new("test.toml"))
        .unwrap()
        .services
        .remove(0);
    let maps = FakeMaps::default();
    let metrics = Metrics::new();
    let shared = Shared {
        writer: Writer::spawn(maps.clone(), metrics.map_errors.clone()).unwrap(),
        metrics: metrics.clone(),
        history: History::default(),
        tasks: Tasks::new(Family::default()),
        routes: Routes::default(),
        fleet: None,
    };
    // A previous daemon failed over to west; the entry cannot be read
    // when this one starts.
    let vip = Endpoint::from(cfg.vip);
    let west = Endpoint::from("198.18.2.10:6379".parse::<SocketAddr>().unwrap());
    maps.state().services.insert(vip, west);
    maps.fail(Op::Active, 1);
    // Only east recovers: the first member confirmed Up is east.
    let up = Arc::new(AtomicBool::new(false));
    let west_up = Arc::new(AtomicBool::new(false));
    let checkers: Vec<Box<dyn health::Checker>> =
        vec![Box::new(Switch(up.clone())), Box::new(Switch(west_up))];
    let _service = start(cfg, checkers, &shared).await;

    // Both members fail their checks for a while: nothing is written.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        maps.state().writes,
        [],
        "the data path's member was overwritten blind"
    );
    assert_eq!(
        metrics
            .map_errors
            .get_or_create(&crate::metrics::MapOpLabels {
                op: "read_active".into()
            })
            .get(),
        1,
        "the read error is counted"
    );

    // The members answer: the preferred one, confirmed Up, is written.
    up.store(true, Ordering::SeqCst);
    let east = Endpoint::from("198.18.1.10:6379".parse::<SocketAddr>().unwrap());
    for _ in 0..200 {
        if !maps.state().writes.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(maps.state().writes.first(), Some(&(vip, east)));
}

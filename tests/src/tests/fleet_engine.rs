//! Fleet mode's etcd engine (`redirector::fleet::EtcdEngine`) against a
//! real 3-member etcd cluster: records round-trip, a lease that is not
//! renewed takes its host away (and the watch says so), one proposal per
//! revision wins, a watch starts where its snapshot ended, the leader's
//! death costs a bounded retry, and with no member reachable every call
//! fails within its timeout instead of hanging. Also against a member
//! serving https with client certificates and etcd users: the engine
//! works with the right CA, certificate and password, and each wrong one
//! fails its first call, by kind, within the timeout.
//!
//! Each test runs its client on a current-thread tokio runtime inside the
//! cluster's hub namespace (`EtcdCluster::in_hub`), where the members are
//! reachable.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    time::{Duration, Instant},
};

use redirector::{
    decide::Reason,
    fleet::{
        DecisionRecord, Engine, EngineError, EtcdEngine, EtcdOptions, EtcdTls, Event, HostRecord,
        SeenRecord, Watch,
    },
};

use crate::{
    etcd::{ClusterTls, EtcdCluster, member_ip},
    pki::Pki,
};

const SVC: &str = "cache";
/// Every engine call's bound.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A runtime on the calling thread: its tasks (the client's connections
/// included) stay in that thread's namespace.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn block_on<T>(f: impl Future<Output = T>) -> T {
    runtime().block_on(f)
}

/// How long `f` took, and whether it failed.
async fn timed<T>(
    f: impl Future<Output = Result<T, EngineError>>,
) -> (Duration, Result<(), EngineError>) {
    let started = Instant::now();
    let result = f.await.map(drop);
    (started.elapsed(), result)
}

async fn engine(endpoints: Vec<String>) -> EtcdEngine {
    EtcdEngine::connect(EtcdOptions {
        endpoints,
        prefix: "/rdt-fleet".into(),
        timeout: TIMEOUT,
        tls: None,
        auth: None,
    })
    .await
    .expect("connect")
}

fn host(seen: SeenRecord, applied_epoch: u64) -> HostRecord {
    HostRecord {
        members: BTreeMap::from([("east".into(), seen), ("west".into(), SeenRecord::Up)]),
        applied_epoch,
        at_unix_ms: 1,
        instance: 1,
    }
}

fn decision(epoch: u64, by: &str) -> DecisionRecord {
    DecisionRecord {
        epoch,
        active: Some("east".into()),
        barrier_to: None,
        reason: Reason::Failover,
        pinned: None,
        drained: BTreeSet::new(),
        by: by.into(),
        at_unix_ms: 2,
    }
}

/// The next batch of `w`, waiting at most `within`.
async fn next(w: &mut Watch, within: Duration) -> Option<Result<Vec<Event>, EngineError>> {
    tokio::time::timeout(within, w.recv())
        .await
        .unwrap_or_else(|_| panic!("no watch batch within {within:?}"))
}

#[test]
#[ignore = "needs root: network namespaces and etcd"]
fn etcd_engine_round_trips_host_records_and_the_decision() {
    EtcdCluster::new().in_hub(|cluster| {
        block_on(async {
            let e = engine(cluster.endpoints()).await;
            let lease = e.grant(Duration::from_secs(10)).await.unwrap();
            e.put_host(SVC, "app-1", &host(SeenRecord::Down, 3), lease)
                .await
                .unwrap();
            e.put_host("other", "app-1", &host(SeenRecord::Up, 9), lease)
                .await
                .unwrap();
            let rev = e
                .propose(SVC, None, &decision(1, "app-1"))
                .await
                .unwrap()
                .expect("the first proposal creates the key");

            let snap = e.snapshot(SVC).await.unwrap();
            assert_eq!(
                snap.hosts,
                BTreeMap::from([("app-1".to_string(), host(SeenRecord::Down, 3))]),
                "only this service's hosts"
            );
            assert_eq!(snap.decision, Some((decision(1, "app-1"), rev)));
            assert!(snap.revision >= rev, "the snapshot is read after the write");
            e.revoke(lease).await.unwrap();
            assert!(e.snapshot(SVC).await.unwrap().hosts.is_empty());
        });
    });
}

#[test]
#[ignore = "needs root: network namespaces and etcd"]
fn a_lease_kept_alive_keeps_its_host_and_an_expired_one_is_seen_gone() {
    EtcdCluster::new().in_hub(|cluster| {
        block_on(async {
            let e = engine(cluster.endpoints()).await;
            let ttl = Duration::from_secs(2);
            let lease = e.grant(ttl).await.unwrap();
            e.put_host(SVC, "app-1", &host(SeenRecord::Up, 1), lease)
                .await
                .unwrap();
            // Renewed for twice the TTL: still there.
            let until = Instant::now() + 2 * ttl;
            while Instant::now() < until {
                e.keep_alive(lease).await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let snap = e.snapshot(SVC).await.unwrap();
            assert!(snap.hosts.contains_key("app-1"), "kept alive, yet gone");

            // No more renewals: etcd expires it (TTL plus the leader's
            // expiry check) and the watch reports the host gone.
            let mut w = e.watch(SVC, snap.revision).await.unwrap();
            let stopped = Instant::now();
            let batch = next(&mut w, ttl + Duration::from_secs(8)).await;
            println!(
                "lease expired {:?} after the last renewal",
                stopped.elapsed()
            );
            assert_eq!(
                batch.expect("the watch is open").unwrap(),
                [Event::HostGone {
                    host: "app-1".into()
                }]
            );
            assert!(e.snapshot(SVC).await.unwrap().hosts.is_empty());
            assert!(matches!(
                e.keep_alive(lease).await,
                Err(EngineError::LeaseExpired(l)) if l == lease
            ));
            assert!(matches!(
                e.put_host(SVC, "app-1", &host(SeenRecord::Up, 1), lease)
                    .await,
                Err(EngineError::LeaseExpired(_))
            ));
        });
    });
}

#[test]
#[ignore = "needs root: network namespaces and etcd"]
fn concurrent_proposals_on_one_revision_exactly_one_wins() {
    EtcdCluster::new().in_hub(|cluster| {
        block_on(async {
            // Two hosts, each with its own connections.
            let a = engine(cluster.endpoints()).await;
            let b = engine(cluster.endpoints()).await;
            let mut expected = None;
            let mut wins = [0, 0];
            for epoch in 1..=20 {
                let (da, db) = (decision(epoch, "a"), decision(epoch, "b"));
                let (ra, rb) =
                    tokio::join!(a.propose(SVC, expected, &da), b.propose(SVC, expected, &db));
                let (ra, rb) = (ra.unwrap(), rb.unwrap());
                let written = match (ra, rb) {
                    (Some(rev), None) => {
                        wins[0] += 1;
                        (rev, "a")
                    }
                    (None, Some(rev)) => {
                        wins[1] += 1;
                        (rev, "b")
                    }
                    other => panic!("epoch {epoch}: not exactly one winner: {other:?}"),
                };
                let (stored, rev) = a.snapshot(SVC).await.unwrap().decision.unwrap();
                assert_eq!((rev, stored.by.as_str()), written, "epoch {epoch}");
                // Proposed again (as after a timeout), the winner's record
                // reads as written, the loser's as lost.
                let (winner, loser) = if written.1 == "a" {
                    (&da, &db)
                } else {
                    (&db, &da)
                };
                assert_eq!(a.propose(SVC, expected, winner).await.unwrap(), Some(rev));
                assert_eq!(b.propose(SVC, expected, loser).await.unwrap(), None);
                expected = Some(rev);
            }
            println!("wins a/b: {wins:?}");
            // A stale revision never wins.
            assert_eq!(
                a.propose(SVC, Some(expected.unwrap() - 1), &decision(99, "a"))
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(
                a.propose(SVC, None, &decision(99, "a")).await.unwrap(),
                None,
                "creating an existing decision"
            );
        });
    });
}

#[test]
#[ignore = "needs root: network namespaces and etcd"]
fn a_watch_from_a_snapshot_sees_later_writes_only() {
    EtcdCluster::new().in_hub(|cluster| {
        block_on(async {
            let e = engine(cluster.endpoints()).await;
            let lease = e.grant(Duration::from_secs(10)).await.unwrap();
            e.put_host(SVC, "early", &host(SeenRecord::Up, 1), lease)
                .await
                .unwrap();
            let snap = e.snapshot(SVC).await.unwrap();
            // Written after the snapshot but before the watch exists: the
            // watch starts from the snapshot's revision, so it sees it.
            e.put_host(SVC, "late", &host(SeenRecord::Down, 2), lease)
                .await
                .unwrap();
            let mut w = e.watch(SVC, snap.revision).await.unwrap();
            let rev = e
                .propose(SVC, None, &decision(1, "late"))
                .await
                .unwrap()
                .unwrap();
            // Batches follow etcd's responses: the catch-up may come in
            // one.
            let mut events = Vec::new();
            while events.len() < 2 {
                events.extend(next(&mut w, Duration::from_secs(5)).await.unwrap().unwrap());
            }
            assert_eq!(
                events,
                [
                    Event::Host {
                        host: "late".into(),
                        record: host(SeenRecord::Down, 2)
                    },
                    Event::Decision {
                        record: decision(1, "late"),
                        mod_revision: rev
                    }
                ]
            );
            assert!(
                tokio::time::timeout(Duration::from_millis(300), w.recv())
                    .await
                    .is_err(),
                "nothing else (the early host is not replayed)"
            );
        });
    });
}

#[test]
#[ignore = "needs root: network namespaces and etcd"]
fn a_proposal_after_the_leader_died_succeeds_within_a_bounded_retry() {
    EtcdCluster::new().in_hub(|cluster| {
        let rt = runtime();
        let e = rt.block_on(engine(cluster.endpoints()));
        let first = rt
            .block_on(e.propose(SVC, None, &decision(1, "a")))
            .unwrap()
            .unwrap();
        let leader = cluster.leader();
        let killed = Instant::now();
        cluster.kill(leader);
        let mut attempts = Vec::new();
        let second = rt.block_on(async {
            let deadline = killed + Duration::from_secs(15);
            loop {
                let started = Instant::now();
                match e.propose(SVC, Some(first), &decision(2, "a")).await {
                    Ok(won) => return won,
                    Err(err) => {
                        attempts.push(format!("{:?}: {err}", started.elapsed()));
                        assert!(
                            Instant::now() < deadline,
                            "no proposal accepted within 15 s of killing leader m{leader}: {attempts:#?}"
                        );
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        println!(
            "killed leader m{leader}; second proposal accepted {:?} later after {} failed attempts: {attempts:#?}",
            killed.elapsed(),
            attempts.len()
        );
        let second = second.expect("nobody else wrote: the CAS holds");
        assert!(second > first);
        let snap = rt.block_on(e.snapshot(SVC)).unwrap();
        assert_eq!(snap.decision, Some((decision(2, "a"), second)));
    });
}

#[test]
#[ignore = "needs root: network namespaces and etcd"]
fn with_no_member_reachable_every_call_fails_within_its_timeout() {
    EtcdCluster::new().in_hub(|cluster| {
        let rt = runtime();
        let e = rt.block_on(engine(cluster.endpoints()));
        let lease = rt.block_on(e.grant(Duration::from_secs(10))).unwrap();
        rt.block_on(e.keep_alive(lease)).unwrap();
        let mut w = rt.block_on(e.watch(SVC, 0)).unwrap();
        for i in 0..3 {
            cluster.kill(i);
        }
        // The open watch breaks: an error, then the end.
        let broke = Instant::now();
        let item = rt.block_on(next(&mut w, TIMEOUT + Duration::from_secs(12)));
        println!("watch broke after {:?}: {item:?}", broke.elapsed());
        assert!(
            matches!(item, None | Some(Err(EngineError::Unreachable { .. }))),
            "the watch reported {item:?}"
        );

        // Members killed (connections refused) and an address nobody
        // answers (connections time out): bounded either way.
        let dead = rt.block_on(engine(vec!["http://198.18.30.99:2379".into()]));
        for (what, e) in [("killed members", &e), ("no such host", &dead)] {
            let calls = rt.block_on(async {
                [
                    ("snapshot", timed(e.snapshot(SVC)).await),
                    ("grant", timed(e.grant(Duration::from_secs(5))).await),
                    ("keep_alive", timed(e.keep_alive(lease)).await),
                    (
                        "put_host",
                        timed(e.put_host(SVC, "a", &host(SeenRecord::Up, 0), lease)).await,
                    ),
                    (
                        "propose",
                        timed(e.propose(SVC, None, &decision(1, "a"))).await,
                    ),
                    ("watch", timed(e.watch(SVC, 0)).await),
                ]
            });
            for (op, (took, result)) in calls {
                println!("{what}: {op} failed in {took:?}: {result:?}");
                assert!(
                    matches!(
                        result,
                        Err(EngineError::Unreachable { .. } | EngineError::Timeout { .. })
                    ),
                    "{what}: {op} gave {result:?}"
                );
                assert!(
                    took < TIMEOUT + Duration::from_millis(500),
                    "{what}: {op} took {took:?}, beyond its {TIMEOUT:?} timeout"
                );
            }
        }
    });
}

/// etcd's users in the TLS test: the engine's, with readwrite on the
/// engine's prefix only, and root (needed to enable authentication).
const USER: &str = "redirector";
const PASSWORD: &str = "rdt-engine-secret";
const ROOT: &str = "root:rdt-root-secret";

/// Enables authentication on `cluster` (through etcdctl, over its TLS):
/// root, and [`USER`] with a role reading and writing the engine's prefix.
fn enable_auth(cluster: &EtcdCluster) {
    let endpoints = cluster.endpoints();
    let user = format!("{USER}:{PASSWORD}");
    for args in [
        &["user", "add", ROOT, "--interactive=false"][..],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "rdt-fleet"],
        &[
            "role",
            "grant-permission",
            "rdt-fleet",
            "--prefix=true",
            "readwrite",
            "/rdt-fleet/",
        ],
        &["user", "add", &user, "--interactive=false"],
        &["user", "grant-role", USER, "rdt-fleet"],
        &["auth", "enable"],
    ] {
        if let Err(e) = cluster.etcdctl(&endpoints, args) {
            panic!("etcdctl {args:?}: {e}");
        }
    }
    // Now etcdctl without a user is refused, with root it is served.
    assert!(
        cluster
            .etcdctl(&endpoints, &["get", "/rdt-fleet/x"])
            .is_err()
    );
    let root = format!("--user={ROOT}");
    cluster
        .etcdctl(&endpoints, &[&root, "get", "/rdt-fleet/x"])
        .expect("root reads once auth is on");
}

/// The error and its sources, one per line.
fn chain(e: &EngineError) -> String {
    std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A wrong client setting: what it is, the TLS files and user it
/// connects with, and whether the error is the one expected.
type WrongSetting<'a> = (
    &'a str,
    EtcdTls,
    Option<(&'a str, &'a str)>,
    fn(&EngineError) -> bool,
);

/// The TLS error among `e`'s sources (rustls's error travels inside an
/// `io::Error`, whose `source` skips it).
fn tls_error(e: &EngineError) -> Option<&rustls::Error> {
    std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source()).find_map(|e| {
        e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()?
                .get_ref()?
                .downcast_ref::<rustls::Error>()
        })
    })
}

#[test]
#[ignore = "needs root: network namespaces and etcd"]
fn etcd_engine_over_https_with_client_certificates_and_a_user() {
    let pki = Pki::new(&[member_ip(0)], "rdt-client");
    let cluster = EtcdCluster::with_tls(
        1,
        ClusterTls {
            ca: pki.ca.clone(),
            server_cert: pki.server_cert.clone(),
            server_key: pki.server_key.clone(),
            client_cert: pki.client_cert.clone(),
            client_key: pki.client_key.clone(),
        },
    );
    enable_auth(&cluster);
    let tls = EtcdTls {
        ca: pki.ca.clone(),
        cert: Some(pki.client_cert.clone()),
        key: Some(pki.client_key.clone()),
        domain: None,
    };
    let other_ca = pki.other_ca.clone();
    cluster.in_hub(move |cluster| {
        let endpoints = cluster.endpoints();
        assert!(endpoints[0].starts_with("https://"), "{endpoints:?}");
        let connect = |tls: EtcdTls, auth: Option<(&str, &str)>| {
            EtcdEngine::connect(EtcdOptions {
                endpoints: endpoints.clone(),
                prefix: "/rdt-fleet".into(),
                timeout: TIMEOUT,
                tls: Some(tls),
                auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            })
        };
        block_on(async {
            // Right CA, certificate, user and password: every call works.
            let e = connect(tls.clone(), Some((USER, PASSWORD)))
                .await
                .expect("connect");
            let lease = e.grant(Duration::from_secs(10)).await.unwrap();
            e.keep_alive(lease).await.unwrap();
            e.put_host(SVC, "app-1", &host(SeenRecord::Up, 1), lease)
                .await
                .unwrap();
            let snap = e.snapshot(SVC).await.unwrap();
            assert_eq!(
                snap.hosts,
                BTreeMap::from([("app-1".to_string(), host(SeenRecord::Up, 1))])
            );
            let mut w = e.watch(SVC, snap.revision).await.unwrap();
            let rev = e
                .propose(SVC, None, &decision(1, "app-1"))
                .await
                .unwrap()
                .expect("the first proposal creates the key");
            assert_eq!(
                next(&mut w, Duration::from_secs(5)).await.unwrap().unwrap(),
                [Event::Decision {
                    record: decision(1, "app-1"),
                    mod_revision: rev
                }]
            );
            e.revoke(lease).await.unwrap();
            assert_eq!(
                next(&mut w, Duration::from_secs(5)).await.unwrap().unwrap(),
                [Event::HostGone {
                    host: "app-1".into()
                }]
            );

            // Each wrong setting: the first call fails, within the timeout,
            // and says why by its kind.
            let wrong_ca = EtcdTls {
                ca: other_ca.clone(),
                ..tls.clone()
            };
            let no_cert = EtcdTls {
                cert: None,
                key: None,
                ..tls.clone()
            };
            let cases: [WrongSetting; 4] = [
                // The client refuses the member's certificate; retried
                // until the timeout (as any unreachable member), then the
                // last cause is reported.
                ("wrong CA", wrong_ca, Some((USER, PASSWORD)), |e| {
                    matches!(e, EngineError::Unreachable { .. })
                        && matches!(
                            tls_error(e),
                            Some(rustls::Error::InvalidCertificate(
                                rustls::CertificateError::UnknownIssuer
                            ))
                        )
                }),
                // etcd answers the authentication InvalidArgument.
                ("wrong password", tls.clone(), Some((USER, "wrong")), |e| {
                    matches!(e, EngineError::Denied { .. })
                }),
                // TLS 1.3: the member refuses the empty certificate after
                // the client's handshake ended, by an alert or by closing
                // the connection; either breaks the connection.
                (
                    "no client certificate",
                    no_cert,
                    Some((USER, PASSWORD)),
                    |e| matches!(e, EngineError::Unreachable { .. }),
                ),
                // The certificate's common name is no etcd user.
                ("no user", tls.clone(), None, |e| {
                    matches!(e, EngineError::Denied { .. })
                }),
            ];
            for (what, tls, auth, expected) in cases {
                let e = connect(tls, auth).await.expect("connect");
                let (took, result) = timed(e.snapshot(SVC)).await;
                let err = result.expect_err(what);
                println!(
                    "{what}: snapshot failed in {took:?}: {err:?}\n{}",
                    chain(&err)
                );
                assert!(expected(&err), "{what}: unexpected {err:?}");
                assert!(
                    took < TIMEOUT + Duration::from_millis(500),
                    "{what}: took {took:?}, beyond its {TIMEOUT:?} timeout"
                );
            }
        });
    });
    drop(pki);
}

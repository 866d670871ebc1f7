//! The coordination engine on etcd (v3 API, through `etcd-client`):
//! leases with keep-alive streams, a linearizable range read for the
//! snapshot, a prefix watch pumped into a channel, and the decision's
//! compare-and-swap as a transaction on its `mod_revision`.
//!
//! `connect` does not contact etcd: the client's channel connects on
//! first use, so a daemon starts while etcd is down and its calls fail
//! (`Unreachable`/`Timeout`) until etcd answers. With `auth`, the
//! authentication is also made on first use (and again when the token
//! expires). Every call is bounded by `timeout`; a call that timed out
//! may still have been applied (a `propose` especially): the caller learns
//! the outcome from the watch or the next snapshot. Requests carry
//! etcd's require-leader flag, so a member cut off from its leader
//! refuses them (and ends its watches) instead of serving stale data.

use std::{
    collections::HashMap,
    future::Future,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions, WatchResponse, WatchStream,
};
use tokio::sync::{Mutex, OnceCell, mpsc};
use tonic::Code;

use super::{
    engine::{
        Change, Engine, EngineError, Event, LeaseId, Revision, Snapshot, Watch, event_of,
        snapshot_of,
    },
    keys::Keys,
    wire::{DecisionRecord, HostRecord, encode},
};

/// Batches a watch may hold before its pump waits for the reader.
const WATCH_BUFFER: usize = 64;
/// HTTP/2 ping interval on the connections, so a dead connection (and the
/// watch on it) is noticed; etcd refuses pings more often than every 5 s
/// (`--grpc-keepalive-min-time`).
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Pause before trying a call again on another endpoint.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// TLS towards etcd: the CA that signed its certificate, and a client
/// certificate when etcd asks for one. Endpoints are then `https://`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM CA certificate(s) to verify the members with.
    pub ca: PathBuf,
    /// PEM client certificate (with `key`).
    pub cert: Option<PathBuf>,
    /// PEM key of the client certificate (with `cert`).
    pub key: Option<PathBuf>,
    /// The name to verify the members' certificates against, when it is
    /// not the endpoint's host.
    pub domain: Option<String>,
}

/// How to reach etcd (the daemon converts its config into this).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs (`http://10.0.0.1:2379`, `https://…` with `tls`).
    pub endpoints: Vec<String>,
    /// Key prefix, like `/redirector`.
    pub prefix: String,
    /// Bound of every call (and of connecting to a member).
    pub timeout: Duration,
    pub tls: Option<EtcdTls>,
    /// User and password, when etcd has authentication enabled.
    pub auth: Option<(String, String)>,
}

/// A lease's keep-alive stream, kept open between renewals.
type Keeper = (LeaseKeeper, LeaseKeepAliveStream);

/// The engine on an etcd cluster; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct EtcdEngine {
    client: Client,
    keys: Keys,
    timeout: Duration,
    auth: Option<(String, String)>,
    /// Set once the first authentication succeeded.
    authed: Arc<OnceCell<()>>,
    keepers: Arc<Mutex<HashMap<LeaseId, Keeper>>>,
}

impl EtcdEngine {
    /// A client for `opts.endpoints`; fails only on wrong options (an
    /// endpoint URL, an unreadable TLS file), never because etcd is down.
    pub async fn connect(opts: EtcdOptions) -> Result<Self, EngineError> {
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(opts.timeout)
            .with_keep_alive(PING_INTERVAL, opts.timeout)
            .with_require_leader(true);
        if let Some(tls) = &opts.tls {
            connect = connect.with_tls(tls_options(tls)?);
        }
        if opts.auth.is_some() {
            // The token is refreshed with the credentials set on first use.
            connect = connect.with_auto_token_refresh(true);
        }
        let timeout = opts.timeout;
        let client = tokio::time::timeout(timeout, Client::connect(&opts.endpoints, Some(connect)))
            .await
            .map_err(|_| EngineError::Timeout {
                op: "connect",
                after: timeout,
            })?
            .map_err(|e| match e {
                etcd_client::Error::InvalidArgs(_)
                | etcd_client::Error::InvalidUri(_)
                | etcd_client::Error::TransportError(_) => EngineError::Options {
                    what: format!("etcd endpoints {:?}", opts.endpoints),
                    source: e.into(),
                },
                e => error("connect", e),
            })?;
        Ok(Self {
            client,
            keys: Keys::new(&opts.prefix),
            timeout,
            auth: opts.auth,
            authed: Arc::new(OnceCell::new()),
            keepers: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Runs `call` with a client (authenticated first if need be), again
    /// while it fails `Unreachable` (the client spreads calls over the
    /// endpoints, a dead member among them), all within the timeout. If
    /// the timeout cuts a retry short, the call fails with the last
    /// `Unreachable` (its cause, like a certificate the CA did not sign,
    /// is what the operator needs), not with a bare `Timeout`.
    async fn call<T, F, Fut>(&self, op: &'static str, mut call: F) -> Result<T, EngineError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, EngineError>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut last = None;
        let work = async {
            loop {
                let result = match self.authenticate(op).await {
                    Ok(()) => call(self.client.clone()).await,
                    Err(e) => Err(e),
                };
                match result {
                    Err(e @ EngineError::Unreachable { .. })
                        if Instant::now() + RETRY_PAUSE < deadline =>
                    {
                        last = Some(e);
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    other => return other,
                }
            }
        };
        let done = tokio::time::timeout_at(deadline.into(), work).await;
        done.unwrap_or_else(|_| {
            Err(last.unwrap_or(EngineError::Timeout {
                op,
                after: self.timeout,
            }))
        })
    }

    /// Authenticates once, when the options have a user.
    async fn authenticate(&self, op: &'static str) -> Result<(), EngineError> {
        let Some((user, password)) = &self.auth else {
            return Ok(());
        };
        self.authed
            .get_or_try_init(|| async {
                let mut c = self.client.clone();
                c.update_user(Some((user.clone(), password.clone())))
                    .await
                    .map_err(|e| match error(op, e) {
                        // etcd answers wrong credentials with InvalidArgument.
                        EngineError::Failed { op, source } => EngineError::Denied { op, source },
                        other => other,
                    })
            })
            .await
            .map(drop)
    }

    /// Renews through `lease`'s open stream: `Some(alive)`, or `None` when
    /// the stream broke (then a new one is opened).
    async fn renew(keeper: &mut Keeper) -> Option<bool> {
        let (k, stream) = keeper;
        k.keep_alive().await.ok()?;
        let resp = stream.message().await.ok()??;
        Some(resp.ttl() > 0)
    }
}

/// The TLS options from the files `tls` names.
fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, EngineError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| EngineError::Options {
            what: format!("read {}", path.display()),
            source: e.into(),
        })
    };
    let mut opts = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            opts = opts.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => {
            return Err(EngineError::Options {
                what: "etcd TLS client certificate".into(),
                source: "give both the certificate and its key, or neither".into(),
            });
        }
    }
    if let Some(domain) = &tls.domain {
        opts = opts.domain_name(domain.clone());
    }
    Ok(opts)
}

/// The engine error for an etcd client error during `op`, by its kind.
fn error(op: &'static str, e: etcd_client::Error) -> EngineError {
    match e {
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                EngineError::Unreachable {
                    op,
                    source: status.into(),
                }
            }
            // The client's own transport failures (a connection broken
            // mid-stream) come as Unknown with the cause attached; etcd's
            // answers carry no source.
            Code::Unknown if std::error::Error::source(&status).is_some() => {
                EngineError::Unreachable {
                    op,
                    source: status.into(),
                }
            }
            Code::PermissionDenied | Code::Unauthenticated => EngineError::Denied {
                op,
                source: status.into(),
            },
            _ => EngineError::Failed {
                op,
                source: status.into(),
            },
        },
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            EngineError::Unreachable {
                op,
                source: e.into(),
            }
        }
        e => EngineError::Failed {
            op,
            source: e.into(),
        },
    }
}

/// Whether `e` says the lease does not exist (etcd's "requested lease not
/// found" is NotFound).
fn lease_not_found(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == Code::NotFound)
}

impl Engine for EtcdEngine {
    async fn grant(&self, ttl: Duration) -> Result<LeaseId, EngineError> {
        // etcd counts in whole seconds; round up, at least 1.
        let secs = i64::try_from(ttl.as_millis().div_ceil(1000).max(1)).unwrap_or(i64::MAX);
        self.call("grant", |mut c| async move {
            let resp = c
                .lease_grant(secs, None)
                .await
                .map_err(|e| error("grant", e))?;
            Ok(LeaseId(resp.id()))
        })
        .await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), EngineError> {
        self.call("keep_alive", |mut c| async move {
            // Taken out while in use: a renewal cut short by the timeout
            // drops it, and the next call opens a new stream.
            let open = self.keepers.lock().await.remove(&lease);
            if let Some(mut keeper) = open {
                match Self::renew(&mut keeper).await {
                    Some(true) => {
                        self.keepers.lock().await.insert(lease, keeper);
                        return Ok(());
                    }
                    Some(false) => return Err(EngineError::LeaseExpired(lease)),
                    None => {}
                }
            }
            // Opening the stream renews once and checks the TTL; its
            // LeaseKeepAliveError means "lease not found" (TTL 0).
            let keeper = c.lease_keep_alive(lease.0).await.map_err(|e| match e {
                etcd_client::Error::LeaseKeepAliveError(_) => EngineError::LeaseExpired(lease),
                e if lease_not_found(&e) => EngineError::LeaseExpired(lease),
                e => error("keep_alive", e),
            })?;
            self.keepers.lock().await.insert(lease, keeper);
            Ok(())
        })
        .await
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), EngineError> {
        self.keepers.lock().await.remove(&lease);
        self.call("revoke", |mut c| async move {
            match c.lease_revoke(lease.0).await {
                Ok(_) => Ok(()),
                Err(e) if lease_not_found(&e) => Ok(()),
                Err(e) => Err(error("revoke", e)),
            }
        })
        .await
    }

    async fn put_host(
        &self,
        service: &str,
        host: &str,
        record: &HostRecord,
        lease: LeaseId,
    ) -> Result<(), EngineError> {
        let (key, value) = (&self.keys.host(service, host), &encode(record));
        self.call("put_host", |mut c| async move {
            let opts = PutOptions::new().with_lease(lease.0);
            match c.put(key.clone(), value.clone(), Some(opts)).await {
                Ok(_) => Ok(()),
                Err(e) if lease_not_found(&e) => Err(EngineError::LeaseExpired(lease)),
                Err(e) => Err(error("put_host", e)),
            }
        })
        .await
    }

    async fn snapshot(&self, service: &str) -> Result<Snapshot, EngineError> {
        let prefix = &self.keys.service_prefix(service);
        self.call("snapshot", |mut c| async move {
            // Linearizable: GetOptions' default (not `with_serializable`).
            let resp = c
                .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
                .await
                .map_err(|e| error("snapshot", e))?;
            let revision = resp.header().map_or(0, |h| h.revision());
            let stored = resp.kvs().iter().filter_map(|kv| {
                Some(Change {
                    key: kv.key_str().ok()?,
                    put: Some((kv.value(), kv.mod_revision())),
                })
            });
            snapshot_of(&self.keys, service, revision, stored)
        })
        .await
    }

    async fn watch(&self, service: &str, after: Revision) -> Result<Watch, EngineError> {
        let prefix = &self.keys.service_prefix(service);
        let stream = self
            .call("watch", |mut c| async move {
                let opts = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(after + 1);
                let mut stream = c
                    .watch(prefix.clone(), Some(opts))
                    .await
                    .map_err(|e| error("watch", e))?;
                // The watch is established once etcd says it is created.
                match stream.message().await {
                    Ok(Some(resp)) if resp.created() && !resp.canceled() => Ok((stream, None)),
                    Ok(Some(resp)) => Ok((stream, Some(resp))),
                    Ok(None) => Err(stream_ended()),
                    Err(e) => Err(error("watch", e)),
                }
            })
            .await?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(pump(
            stream.0,
            stream.1,
            self.keys.clone(),
            service.to_string(),
            tx,
        ));
        Ok(rx)
    }

    async fn propose(
        &self,
        service: &str,
        expected: Option<Revision>,
        record: &DecisionRecord,
    ) -> Result<Option<Revision>, EngineError> {
        let (key, value) = (&self.keys.decision(service), &encode(record));
        self.call("propose", |mut c| async move {
            let unchanged = match expected {
                Some(rev) => Compare::mod_revision(key.clone(), CompareOp::Equal, rev),
                // A key that never existed (or was deleted) has create
                // revision 0.
                None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            };
            let txn = Txn::new()
                .when([unchanged])
                .and_then([TxnOp::put(key.clone(), value.clone(), None)])
                .or_else([TxnOp::get(key.clone(), None)]);
            let resp = c.txn(txn).await.map_err(|e| error("propose", e))?;
            if resp.succeeded() {
                // The transaction's revision is the key's new mod_revision.
                return match resp.header() {
                    Some(h) => Ok(Some(h.revision())),
                    None => Err(EngineError::Failed {
                        op: "propose",
                        source: "etcd answered the transaction without a header".into(),
                    }),
                };
            }
            // Our own record already there: an earlier attempt (one that
            // timed out, or failed after etcd applied it) was written.
            let current = resp.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(get) => get.kvs().first().cloned(),
                _ => None,
            });
            Ok(current
                .filter(|kv| kv.value() == value.as_slice())
                .map(|kv| kv.mod_revision()))
        })
        .await
    }
}

fn stream_ended() -> EngineError {
    EngineError::Unreachable {
        op: "watch",
        source: "etcd ended the watch stream".into(),
    }
}

/// Moves the watch's responses into `tx` until the watch breaks (then
/// sends why) or the receiver goes (then the stream is dropped, which
/// cancels the watch). `first` is a response read before the pump began.
async fn pump(
    mut stream: WatchStream,
    first: Option<WatchResponse>,
    keys: Keys,
    service: String,
    tx: mpsc::Sender<Result<Vec<Event>, EngineError>>,
) {
    let mut pending = first;
    loop {
        let resp = match pending.take() {
            Some(resp) => resp,
            None => {
                let next = tokio::select! {
                    () = tx.closed() => return,
                    next = stream.message() => next,
                };
                match next {
                    Ok(Some(resp)) => resp,
                    Ok(None) => {
                        let _ = tx.send(Err(stream_ended())).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(error("watch", e))).await;
                        return;
                    }
                }
            }
        };
        let batch = batch(&keys, &service, &resp);
        let last = batch.as_ref().is_err();
        if batch.as_ref().is_ok_and(Vec::is_empty) {
            continue;
        }
        if tx.send(batch).await.is_err() || last {
            return;
        }
    }
}

/// The events of one watch response, or why the watch ended.
fn batch(keys: &Keys, service: &str, resp: &WatchResponse) -> Result<Vec<Event>, EngineError> {
    if resp.compact_revision() > 0 {
        return Err(EngineError::Compacted {
            revision: resp.compact_revision(),
        });
    }
    if resp.canceled() {
        return Err(EngineError::Unreachable {
            op: "watch",
            source: format!("etcd canceled the watch: {}", resp.cancel_reason()).into(),
        });
    }
    let mut out = Vec::new();
    for event in resp.events() {
        let Some(kv) = event.kv() else { continue };
        // A key that is not UTF-8 is not one of ours.
        let Ok(key) = kv.key_str() else { continue };
        let put = match event.event_type() {
            EventType::Put => Some((kv.value(), kv.mod_revision())),
            EventType::Delete => None,
        };
        out.extend(event_of(keys, service, &Change { key, put })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn options(endpoints: &[&str]) -> EtcdOptions {
        EtcdOptions {
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            prefix: "/redirector".into(),
            timeout: Duration::from_millis(500),
            tls: None,
            auth: None,
        }
    }

    /// `err` says etcd could not be reached (refused, or not in time).
    fn assert_unreachable(err: EngineError) {
        assert!(
            matches!(
                err,
                EngineError::Unreachable { .. } | EngineError::Timeout { .. }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn connect_succeeds_while_etcd_is_down_and_calls_fail_within_the_timeout() {
        // Nothing listens on port 1: every connection is refused.
        let engine = EtcdEngine::connect(options(&["http://127.0.0.1:1"]))
            .await
            .expect("connect does not contact etcd");
        let started = Instant::now();
        assert_unreachable(engine.snapshot("cache").await.unwrap_err());
        assert_unreachable(engine.grant(Duration::from_secs(2)).await.unwrap_err());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "two calls took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn with_auth_connect_still_succeeds_while_etcd_is_down() {
        let mut opts = options(&["http://127.0.0.1:1"]);
        opts.auth = Some(("user".into(), "secret".into()));
        let engine = EtcdEngine::connect(opts).await.expect("no eager auth");
        assert_unreachable(engine.snapshot("cache").await.unwrap_err());
    }

    #[tokio::test]
    async fn a_retry_cut_by_the_timeout_reports_the_last_cause_not_a_bare_timeout() {
        // Each connection is held 700 ms, then closed: the first attempt
        // fails Unreachable at 0.7 s, the retry is still waiting at the
        // 1 s timeout.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    drop(conn);
                });
            }
        });
        let mut opts = options(&[&format!("http://127.0.0.1:{port}")]);
        opts.timeout = Duration::from_secs(1);
        let engine = EtcdEngine::connect(opts).await.unwrap();
        let started = Instant::now();
        let err = engine.snapshot("cache").await.unwrap_err();
        assert!(
            matches!(err, EngineError::Unreachable { .. }),
            "{err:?} after {:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < Duration::from_millis(1200));
    }

    #[tokio::test]
    async fn wrong_options_fail_connect() {
        let bad_url = EtcdEngine::connect(options(&["http://[::1"])).await;
        assert!(matches!(bad_url, Err(EngineError::Options { .. })));
        let none = EtcdEngine::connect(options(&[])).await;
        assert!(matches!(none, Err(EngineError::Options { .. })));
        let mut opts = options(&["https://127.0.0.1:1"]);
        opts.tls = Some(EtcdTls {
            ca: "/nonexistent/ca.pem".into(),
            cert: None,
            key: None,
            domain: None,
        });
        let missing_ca = EtcdEngine::connect(opts).await;
        assert!(
            matches!(&missing_ca, Err(EngineError::Options { what, .. }) if what.contains("ca.pem")),
            "{:?}",
            missing_ca.err()
        );
    }
}

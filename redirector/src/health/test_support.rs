//! Test fixtures for the health checks: temporary directories, real
//! `redis-server` processes killed by PID on drop, a throwaway PKI, and a
//! time bound for every test. Loopback only.

use std::{
    future::Future,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use crate::config::{Check, CheckKind};

/// Every test body runs under this bound; a hang fails instead of blocking.
pub(crate) async fn bounded<F: Future>(fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(60), fut).await {
        Ok(v) => v,
        Err(_) => panic!("test exceeded its 60s bound"),
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

pub(crate) fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub(crate) fn check_of(kind: CheckKind, timeout: Duration) -> Check {
    Check {
        kind,
        interval: Duration::from_secs(1),
        timeout,
        fast_interval: Duration::from_millis(200),
        rise: 1,
        fall: 1,
        observe: crate::config::Observe::default(),
    }
}

/// A directory removed (with its contents) on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "redirector-health-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (SIGKILL, by its PID) and reaped on drop.
pub(crate) struct ProcGuard(Child);

impl ProcGuard {
    /// Kills and reaps now.
    pub(crate) fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `redis-server` on 127.0.0.1, no persistence, working dir `dir`.
pub(crate) struct RedisServer {
    pub(crate) port: u16,
    pub(crate) proc: ProcGuard,
}

impl RedisServer {
    /// Starts one on `port` (plain TCP) with `extra` arguments and waits
    /// until it accepts connections.
    pub(crate) async fn start(port: u16, dir: &Path, extra: &[&str]) -> RedisServer {
        Self::start_listening(port, port, dir, extra).await
    }

    /// As [`start`](Self::start), but `port` may be 0 (e.g. TLS only) and
    /// readiness is waited for on `ready_port`.
    pub(crate) async fn start_listening(
        port: u16,
        ready_port: u16,
        dir: &Path,
        extra: &[&str],
    ) -> RedisServer {
        let log =
            std::fs::File::create(dir.join(format!("redis-{ready_port}.log"))).expect("create log");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--dir", &dir.display().to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        let proc = ProcGuard(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(local(ready_port))
                .await
                .is_ok()
            {
                return RedisServer { port, proc };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server on port {ready_port} did not come up");
    }
}

/// Runs `redis-cli -p port args...` and returns its stdout.
pub(crate) async fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A throwaway CA and a server certificate for localhost / 127.0.0.1 / ::1,
/// written as PEM files.
pub(crate) struct TestPki {
    /// Holds the files; removed on drop.
    _dir: TempDir,
    pub(crate) ca_file: PathBuf,
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl TestPki {
    pub(crate) fn new() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "redirector test CA");
        let ca_key = KeyPair::generate().expect("ca key");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");

        let mut params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");

        let dir = TempDir::new();
        let ca_file = dir.path().join("ca.pem");
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server.key");
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        std::fs::write(&ca_file, ca.pem()).expect("write ca");
        std::fs::write(&cert_file, &cert_pem).expect("write cert");
        std::fs::write(&key_file, &key_pem).expect("write key");
        TestPki {
            _dir: dir,
            ca_file,
            cert_file,
            key_file,
            cert_pem,
            key_pem,
        }
    }

    /// A rustls server config presenting the server certificate.
    pub(crate) fn server_config(&self) -> std::sync::Arc<rustls::ServerConfig> {
        crate::health::install_crypto_provider();
        let certs = rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("parse cert");
        let key = rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .expect("parse key")
            .expect("a key");
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        std::sync::Arc::new(config)
    }
}

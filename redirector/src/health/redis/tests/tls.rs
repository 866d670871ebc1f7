//! Redis checks over TLS: verification against the CA file and the
//! configured or the member's name.

use super::{T, ping};
use crate::{
    config::{RedisOptions, TlsOptions},
    health::{
        Checker, HealthError,
        redis::{Probe, RedisAuth, RedisChecker},
        test_support::{RedisServer, TempDir, TestPki, bounded, free_port, local},
    },
};

fn tls_auth(ca_file: Option<&std::path::Path>, server_name: Option<&str>) -> RedisAuth {
    RedisAuth::from_options(&RedisOptions {
        username: None,
        password: None,
        tls: Some(TlsOptions {
            ca_file: ca_file.map(|p| p.to_path_buf()),
            server_name: server_name.map(str::to_string),
        }),
    })
    .expect("build tls auth")
}

async fn tls_server(pki: &TestPki, dir: &TempDir) -> (RedisServer, u16) {
    let port = free_port();
    let server = RedisServer::start_listening(
        0,
        port,
        dir.path(),
        &[
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &pki.cert_file.display().to_string(),
            "--tls-key-file",
            &pki.key_file.display().to_string(),
            "--tls-ca-cert-file",
            &pki.ca_file.display().to_string(),
            "--tls-auth-clients",
            "no",
        ],
    )
    .await;
    (server, port)
}

#[tokio::test]
async fn redis_ping_over_tls_is_healthy_with_the_ca_file() {
    bounded(async {
        let pki = TestPki::new();
        let dir = TempDir::new();
        let (_server, port) = tls_server(&pki, &dir).await;
        let addr = local(port);

        // Verified against the member's host (an IP SAN)...
        let mut c = ping(tls_auth(Some(&pki.ca_file), None), T);
        let o = c.check(addr, "127.0.0.1").await;
        assert!(o.healthy, "{o:?}");
        // ...or against the configured server name, still connecting to
        // the resolved target.
        let mut c = RedisChecker::new(
            Probe::Echo,
            tls_auth(Some(&pki.ca_file), Some("localhost")),
            T,
        );
        let o = c.check(addr, "db.invalid").await;
        assert!(o.healthy, "{o:?}");
        // A name the certificate does not carry fails verification.
        let mut c = ping(tls_auth(Some(&pki.ca_file), Some("db.example.com")), T);
        let o = c.check(addr, "127.0.0.1").await;
        assert!(!o.healthy);
        assert!(o.error.expect("error").starts_with("tls: "));
    })
    .await;
}

#[tokio::test]
async fn redis_ping_over_tls_is_unhealthy_without_the_ca_file() {
    bounded(async {
        let pki = TestPki::new();
        let dir = TempDir::new();
        let (_server, port) = tls_server(&pki, &dir).await;
        let built = RedisAuth::from_options(&RedisOptions {
            username: None,
            password: None,
            tls: Some(TlsOptions {
                ca_file: None,
                server_name: None,
            }),
        });
        match built {
            // A machine without a system trust store cannot even build it.
            Err(e) => assert!(matches!(e, HealthError::SystemRoots(_)), "{e}"),
            Ok(auth) => {
                let mut c = ping(auth, T);
                let o = c.check(local(port), "127.0.0.1").await;
                assert!(!o.healthy);
                let err = o.error.expect("error");
                assert!(err.starts_with("tls: "), "{err}");
                assert!(err.to_lowercase().contains("certificate"), "{err}");
            }
        }
    })
    .await;
}

//! Valid files parse into the expected values and defaults; errors and
//! secrets display as documented; warnings name risky setups.

use super::*;

#[test]
fn full_config_parses_into_expected_values() {
    let c = ok(FULL);
    assert_eq!(
        c.datapath,
        DatapathSection {
            interfaces: vec!["eth0".into(), "eth1".into()],
            ingress: IngressMode::Tc,
            pin_path: PathBuf::from("/sys/fs/bpf/test"),
            conntrack_entries: 4096,
            flow_idle_timeout: Duration::from_secs(2 * 3600),
            flow_close_timeout: Duration::from_secs(5),
        }
    );
    assert_eq!(
        c.admin,
        AdminSection {
            socket: PathBuf::from("/tmp/redirector-admin.sock"),
            metrics: None,
        }
    );
    assert_eq!(c.services.len(), 4);

    let orders = &c.services[0];
    assert_eq!(orders.name, "orders-cache");
    assert_eq!(
        orders.vip,
        "198.18.0.100:6379".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(orders.failback, Failback::Manual);
    assert_eq!(orders.failback_delay, Duration::from_secs(90));
    assert_eq!(orders.on_failover, OnFailover::Keep);
    assert_eq!(orders.drain_timeout, Duration::ZERO);
    assert_eq!(
        orders.check,
        Check {
            kind: CheckKind::RedisSetGet {
                redis: RedisOptions {
                    username: Some("probe".into()),
                    password: Some(Secret::File("/etc/redirector/redis.pass".into())),
                    tls: Some(TlsOptions {
                        ca_file: Some("/etc/redirector/ca.pem".into()),
                        server_name: Some("redis.example".into()),
                    }),
                },
                cluster: true,
                key_prefix: "probe:".into(),
                ttl: Duration::from_secs(5),
            },
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(200),
            fast_interval: Duration::from_millis(100),
            rise: 5,
            fall: 1,
            observe: Observe {
                mode: ObserveMode::Layer7,
                error_limit: 3,
                on_error: OnError::SuddenDeath,
                keys_set: vec!["error_limit", "on_error"],
            },
        }
    );
    assert_eq!(
        orders.members,
        vec![
            Member {
                name: "us-east".into(),
                host: "198.18.1.10".into(),
                port: 6379,
                priority: 1,
            },
            Member {
                name: "us-west".into(),
                host: "Redis-West.example.com".into(),
                port: 6380,
                priority: 7,
            },
        ]
    );

    let sessions = &c.services[1];
    assert_eq!(
        sessions.vip,
        "[2001:db8::100]:6379".parse::<SocketAddr>().unwrap()
    );
    assert!(sessions.vip.is_ipv6());
    assert_eq!(sessions.failback, Failback::Auto);
    assert_eq!(sessions.failback_delay, Duration::from_secs(30));
    assert_eq!(sessions.on_failover, OnFailover::Reset);
    assert_eq!(sessions.drain_timeout, Duration::from_secs(10));
    assert_eq!(
        sessions.check.kind,
        CheckKind::Availability(AvailabilityOptions {
            port: 9443,
            bdb_uid: 3,
            lag_tolerance_ms: 100,
            username: "admin@example.com".into(),
            password: Secret::Env("RS_PASSWORD".into()),
            tls: TlsOptions {
                ca_file: None,
                server_name: Some("cluster.example".into()),
            },
        })
    );
    assert_eq!(sessions.check.interval, Duration::from_millis(250));
    assert_eq!(sessions.check.timeout, Duration::from_millis(250));
    assert_eq!(sessions.check.fast_interval, Duration::from_millis(50));
    assert_eq!((sessions.check.rise, sessions.check.fall), (3, 2));
    assert_eq!(sessions.members[0].host, "2001:db8::10");
    assert_eq!(sessions.members[0].port, 6379);
    assert_eq!(sessions.members[0].priority, 1);
    assert_eq!(sessions.members[1].host, "redis-b.example");
    assert_eq!(sessions.members[1].priority, 2);

    assert_eq!(
        c.services[2].check.kind,
        CheckKind::Exec {
            command: vec![
                "/usr/local/bin/check".into(),
                "{host}".into(),
                "{port}".into()
            ],
        }
    );
    assert_eq!(c.services[3].check.kind, CheckKind::Tcp);
    assert_eq!(c.services[3].check.kind.as_str(), "tcp");
}

#[test]
fn omitted_keys_take_their_defaults() {
    let c = ok(MINIMAL);
    assert_eq!(c.datapath.ingress, IngressMode::Auto);
    assert_eq!(c.datapath.pin_path, PathBuf::from("/sys/fs/bpf/redirector"));
    assert_eq!(c.datapath.conntrack_entries, 262_144);
    assert_eq!(c.admin.socket, PathBuf::from("/run/redirector/admin.sock"));
    assert_eq!(
        c.admin.metrics,
        Some("127.0.0.1:9477".parse::<SocketAddr>().unwrap())
    );
    let s = &c.services[0];
    assert_eq!(s.failback, Failback::Auto);
    assert_eq!(s.failback_delay, Duration::from_secs(30));
    assert_eq!(s.on_failover, OnFailover::Reset);
    assert_eq!(s.drain_timeout, Duration::from_secs(10));
    assert_eq!(
        s.check,
        Check {
            kind: CheckKind::RedisPing(RedisOptions {
                username: None,
                password: None,
                tls: None,
            }),
            interval: Duration::from_millis(250),
            timeout: Duration::from_millis(250),
            fast_interval: Duration::from_millis(50),
            rise: 3,
            fall: 2,
            observe: Observe {
                mode: ObserveMode::Layer4,
                error_limit: 1,
                on_error: OnError::FailCheck,
                keys_set: vec![],
            },
        }
    );
    assert_eq!(s.members[0].priority, 1);
}

#[test]
fn setget_defaults_apply() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\nkind = \"redis-setget\"\n\n[[services.members]]",
    );
    let c = ok(&text);
    assert_eq!(
        c.services[0].check.kind,
        CheckKind::RedisSetGet {
            redis: RedisOptions {
                username: None,
                password: None,
                tls: None,
            },
            cluster: false,
            key_prefix: "redirector:probe:".into(),
            ttl: Duration::from_secs(10),
        }
    );
}

#[test]
fn design_sketch_example_parses() {
    let c = ok(DESIGN_SKETCH);
    assert_eq!(c.services.len(), 1);
    let s = &c.services[0];
    assert_eq!(s.name, "orders-cache");
    assert_eq!(s.members.len(), 2);
    assert_eq!(s.members[1].priority, 2);
    assert_eq!(s.check.kind.as_str(), "redis-ping");
    assert!(warnings(&c).is_empty());
}

#[test]
fn error_display_is_file_line_column_field_message() {
    let text = MINIMAL.replace("198.18.0.100:6379", "nope");
    let e = reject(&text);
    assert_eq!(
        e.to_string(),
        "test.toml:6:7: services[0].vip: invalid address \"nope\": expected IP:port or [IPv6]:port"
    );
}

#[test]
fn column_counts_characters_not_bytes() {
    assert_eq!(line_col("a = \"é\"\nb", 0), (1, 1));
    assert_eq!(line_col("é = x", 3), (1, 3));
    assert_eq!(line_col("a\nbc", 3), (2, 2));
    assert_eq!(line_col("a", 100), (1, 2));
}

#[test]
fn secret_debug_shows_only_its_source() {
    let file = Secret::File(PathBuf::from("/etc/redirector/redis.pass"));
    let env = Secret::Env("REDIS_PASSWORD".into());
    assert_eq!(
        format!("{file:?}"),
        "Secret(file /etc/redirector/redis.pass)"
    );
    assert_eq!(format!("{env:?}"), "Secret(env REDIS_PASSWORD)");

    // A whole Config's Debug shows the variable's name, never a value.
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\npassword_env = \"REDIRECTOR_TEST_SECRET\"\n\n[[services.members]]",
    );
    let shown = format!("{:?}", ok(&text));
    assert!(
        shown.contains("Secret(env REDIRECTOR_TEST_SECRET)"),
        "{shown}"
    );
}

#[test]
fn member_behind_two_vips_is_warned_about() {
    let text = format!(
        "{MINIMAL}\n[[services]]\nname = \"other\"\nvip = \"198.18.0.101:6379\"\n\
         [[services.members]]\nname = \"a\"\naddr = \"198.18.1.10:6379\"\n\
         [[services.members]]\nname = \"b\"\naddr = \"198.18.1.11:6379\"\n"
    );
    let c = ok(&text);
    assert_eq!(
        warnings(&c),
        vec![
            "member 198.18.1.10:6379 is behind services orders-cache and other: two client \
             connections with the same source port can collide on one 4-tuple"
                .to_string()
        ]
    );
}

#[test]
fn ipv6_and_dns_members_behind_two_vips_are_warned_about() {
    let c = ok(FULL);
    assert!(warnings(&c).is_empty());
    let text = format!(
        "{FULL}\n[[services]]\nname = \"s6\"\nvip = \"[2001:db8::101]:6379\"\n\
         [[services.members]]\nname = \"a\"\naddr = \"[2001:db8:0::10]:6379\"\n\
         [[services.members]]\nname = \"b\"\naddr = \"REDIS-B.example:6379\"\n"
    );
    let w = warnings(&ok(&text));
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("member [2001:db8::10]:6379 is behind services sessions and s6"));
    assert!(w[1].starts_with("member redis-b.example:6379 is behind services sessions and s6"));
}

#[test]
fn load_reads_the_file_and_names_it_in_errors() {
    let dir = std::env::temp_dir().join(format!("redirector-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, MINIMAL).unwrap();
    assert_eq!(load(&good).unwrap(), ok(MINIMAL));

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, MINIMAL.replace("198.18.1.10:6379", "198.18.1.10")).unwrap();
    let e = load(&bad).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!("{}:10:", bad.display())),
        "{e}"
    );

    let missing = dir.join("missing.toml");
    let e = load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

//! `[fleet]` and the services' `fleet` key: defaults, accepted values,
//! every error with its line and field, the warnings, and the password
//! kept out of Debug.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

const ENDPOINTS: &str = r#"endpoints = ["http://198.18.30.2:2379", "http://198.18.30.3:2379"]"#;

/// MINIMAL with `fleet = true` on its service and a `[fleet]` section
/// holding `keys` (after the endpoints unless `keys` sets them).
fn fleet_with(keys: &str) -> String {
    let endpoints = if keys.contains("endpoints =") {
        ""
    } else {
        ENDPOINTS
    };
    format!(
        "{}\n[fleet]\n{endpoints}\n{keys}\n",
        with_line("fleet = true", true)
    )
}

/// The `[fleet]` of `text`, which must parse.
fn fleet_of(text: &str) -> Fleet {
    ok(text).fleet.expect("config has a [fleet] section")
}

/// A file under the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(content: &str) -> TempFile {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "redirector-config-fleet-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, content).expect("write temp file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `[fleet.auth]` with user "redirector" and the password file `file`.
fn auth_with(file: &str) -> String {
    format!("[fleet.auth]\nuser = \"redirector\"\npassword_file = \"{file}\"")
}

// Defaults and values.

#[test]
fn without_fleet_section_no_service_is_fleet() {
    let c = ok(MINIMAL);
    assert_eq!(c.fleet, None);
    assert!(!c.services[0].fleet);
}

#[test]
fn fleet_defaults_are_documented_values() {
    let c = ok(&fleet_with(""));
    assert!(c.services[0].fleet);
    let f = c.fleet.expect("fleet section");
    assert_eq!(
        f.endpoints,
        vec!["http://198.18.30.2:2379", "http://198.18.30.3:2379"]
    );
    assert_eq!(f.prefix, "/redirector");
    assert_eq!(f.lease_ttl, DEFAULT_LEASE_TTL);
    assert_eq!(f.lease_ttl, Duration::from_secs(3));
    assert_eq!(f.timeout, DEFAULT_FLEET_TIMEOUT);
    assert_eq!(f.timeout, Duration::from_secs(1));
    assert_eq!(f.quorum, FleetQuorum::Majority);
    assert_eq!(f.barrier, FleetBarrier::None);
    assert_eq!(f.on_detach, OnDetach::Static);
    assert_eq!(f.detach_timeout, DEFAULT_DETACH_TIMEOUT);
    assert_eq!(f.detach_timeout, Duration::from_secs(10));
    assert!(!f.detach_timeout_set);
    assert_eq!(f.tls, None);
    assert_eq!(f.auth, None);
}

#[test]
fn fleet_host_defaults_to_this_machines_hostname() {
    // /proc reads the same UTS namespace gethostname(2) does.
    let expected = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("read hostname");
    let f = fleet_of(&fleet_with(""));
    assert_eq!(f.host, expected.trim_end());
    assert!(!f.host.is_empty());
}

#[test]
fn fleet_service_defaults_to_false_and_can_be_set() {
    let text = format!(
        "{}\n[fleet]\n{ENDPOINTS}\n",
        with_line("fleet = false", true)
    );
    assert!(!ok(&text).services[0].fleet);
    let text = format!("{MINIMAL}\n[fleet]\n{ENDPOINTS}\n");
    assert!(!ok(&text).services[0].fleet);
}

#[test]
fn every_fleet_key_is_read() {
    let password = TempFile::new("s3cret\n");
    let text = fleet_with(&format!(
        r#"endpoints = ["https://etcd-1.example:2379", "https://[2001:db8::30]:2379"]
prefix = "/prod/redirector"
host = "app-1"
lease_ttl = "5s"
timeout = "1500ms"
quorum = 3
barrier = "ack"
on_detach = "local"
detach_timeout = "20s"

[fleet.tls]
ca = "/etc/redirector/etcd-ca.pem"
cert = "/etc/redirector/etcd-client.pem"
key = "/etc/redirector/etcd-client-key.pem"
domain = "etcd.example"

{}"#,
        auth_with(password.path())
    ));
    let f = fleet_of(&text);
    assert_eq!(
        f,
        Fleet {
            endpoints: vec![
                "https://etcd-1.example:2379".to_string(),
                "https://[2001:db8::30]:2379".to_string()
            ],
            prefix: "/prod/redirector".to_string(),
            host: "app-1".to_string(),
            lease_ttl: Duration::from_secs(5),
            timeout: Duration::from_millis(1500),
            quorum: FleetQuorum::Count(3),
            barrier: FleetBarrier::Ack,
            on_detach: OnDetach::Local,
            detach_timeout: Duration::from_secs(20),
            detach_timeout_set: true,
            tls: Some(FleetTls {
                ca: PathBuf::from("/etc/redirector/etcd-ca.pem"),
                cert: Some(PathBuf::from("/etc/redirector/etcd-client.pem")),
                key: Some(PathBuf::from("/etc/redirector/etcd-client-key.pem")),
                domain: Some("etcd.example".to_string()),
            }),
            auth: Some(FleetAuth {
                user: "redirector".to_string(),
                password: "s3cret".to_string(),
            }),
        }
    );
}

#[test]
fn tls_needs_only_its_ca() {
    let text = fleet_with(
        "endpoints = [\"https://etcd.example:2379\"]\n[fleet.tls]\nca = \"/etc/ca.pem\"",
    );
    assert_eq!(
        fleet_of(&text).tls,
        Some(FleetTls {
            ca: PathBuf::from("/etc/ca.pem"),
            cert: None,
            key: None,
            domain: None,
        })
    );
}

#[test]
fn quorum_majority_and_barrier_none_can_be_written() {
    let f = fleet_of(&fleet_with(
        "quorum = \"majority\"\nbarrier = \"none\"\non_detach = \"static\"",
    ));
    assert_eq!(
        (f.quorum, f.barrier, f.on_detach),
        (FleetQuorum::Majority, FleetBarrier::None, OnDetach::Static)
    );
}

#[test]
fn detach_timeout_default_follows_a_longer_lease_ttl() {
    let f = fleet_of(&fleet_with("lease_ttl = \"30s\""));
    assert_eq!(f.detach_timeout, Duration::from_secs(30));
    assert!(!f.detach_timeout_set);
}

#[test]
fn password_file_trailing_newlines_are_trimmed_and_inner_spaces_kept() {
    let password = TempFile::new(" pass word\r\n");
    let f = fleet_of(&fleet_with(&auth_with(password.path())));
    assert_eq!(f.auth.expect("auth").password, " pass word");
}

#[test]
fn debug_output_never_holds_the_password() {
    let password = TempFile::new("hunter2-very-secret\n");
    let c = ok(&fleet_with(&auth_with(password.path())));
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2-very-secret"), "{shown}");
    assert!(shown.contains("redirector"), "{shown}");
    let auth = format!("{:?}", c.fleet.expect("fleet").auth.expect("auth"));
    assert!(!auth.contains("hunter2"), "{auth}");
    assert!(auth.contains("user: \"redirector\""), "{auth}");
}

// Errors.

#[test]
fn fleet_service_without_fleet_section_names_the_service() {
    let text = with_line("fleet = true", true);
    rejected_at(
        &text,
        "fleet = true",
        "services[0].fleet",
        "service \"orders-cache\" has fleet = true but the file has no [fleet] section",
    );
}

#[test]
fn fleet_key_of_wrong_type_is_rejected() {
    let text = format!(
        "{}\n[fleet]\n{ENDPOINTS}\n",
        with_line("fleet = \"yes\"", true)
    );
    rejected_at(
        &text,
        "fleet = \"yes\"",
        "services[0].fleet",
        "invalid type",
    );
}

#[test]
fn missing_or_empty_endpoints_are_rejected() {
    let text = format!(
        "{}\n[fleet]\nprefix = \"/r\"\n",
        with_line("fleet = true", true)
    );
    rejected_at(
        &text,
        "[fleet]",
        "fleet.endpoints",
        "at least one etcd endpoint",
    );
    let text = fleet_with("endpoints = []");
    rejected_at(
        &text,
        "endpoints =",
        "fleet.endpoints",
        "at least one etcd endpoint",
    );
}

#[test]
fn malformed_endpoints_are_rejected_with_their_index() {
    for (bad, mentions) in [
        (
            "198.18.30.4:2379",
            "expected http://host:port or https://host:port",
        ),
        ("ftp://198.18.30.4:2379", "expected http://host:port"),
        ("HTTP://198.18.30.4:2379", "expected http://host:port"),
        ("http://198.18.30.4:2379/v3", "no path, query or user"),
        ("http://user@198.18.30.4:2379", "no path, query or user"),
        ("http://198.18.30.4", "has no port"),
        ("http://198.18.30.4:0", "port must be 1..65535"),
        ("http://198.18.30.4:99999", "invalid port"),
        ("http://2001:db8::30:2379", "has no port"),
        ("http://[2001:db8::30]", "has no port"),
        ("http://", "invalid endpoint"),
    ] {
        let text = fleet_with(&format!(
            "endpoints = [\"http://198.18.30.2:2379\",\n  \"{bad}\"]"
        ));
        rejected_at(&text, &format!("\"{bad}\""), "fleet.endpoints[1]", mentions);
    }
}

#[test]
fn duplicate_endpoint_is_rejected() {
    let text = fleet_with(
        "endpoints = [\"http://etcd.example:2379\",\n  \"http://198.18.30.3:2379\",\n  \"http://ETCD.example:2379\"]",
    );
    rejected_at(
        &text,
        "ETCD.example",
        "fleet.endpoints[2]",
        "duplicate endpoint \"http://ETCD.example:2379\" (also fleet.endpoints[0])",
    );
}

#[test]
fn mixed_schemes_are_rejected() {
    let text = fleet_with(
        "endpoints = [\"https://198.18.30.2:2379\",\n  \"http://198.18.30.3:2379\"]\n[fleet.tls]\nca = \"/ca.pem\"",
    );
    rejected_at(
        &text,
        "\"http://198.18.30.3",
        "fleet.endpoints[1]",
        "mixes http:// and https://",
    );
}

#[test]
fn invalid_prefixes_are_rejected() {
    for (bad, mentions) in [
        ("redirector", "must start with '/'"),
        ("", "must start with '/'"),
        ("/redirector/", "must not end with '/'"),
        ("/", "must not end with '/'"),
        ("/a//b", "empty segments"),
        ("/re dir", "printable ASCII"),
        ("/r\\u00e9", "printable ASCII"),
        ("/r\\tx", "printable ASCII"),
    ] {
        let text = fleet_with(&format!("prefix = \"{bad}\""));
        rejected_at(&text, "prefix =", "fleet.prefix", mentions);
    }
}

#[test]
fn invalid_hosts_are_rejected() {
    for (bad, mentions) in [
        ("", "must not be empty"),
        ("app/1", "without spaces or '/'"),
        ("app 1", "without spaces or '/'"),
        ("app\\n1", "printable ASCII"),
    ] {
        let text = fleet_with(&format!("host = \"{bad}\""));
        rejected_at(&text, "host =", "fleet.host", mentions);
    }
}

#[test]
fn lease_ttl_out_of_range_or_fractional_is_rejected() {
    for (bad, mentions) in [
        ("1s", "must be between 2s and 1h, got 1s"),
        ("0s", "must be greater than 0"),
        ("2h", "must be between 2s and 1h, got 2h"),
        ("2500ms", "whole number of seconds"),
        ("three", "invalid duration"),
    ] {
        let text = fleet_with(&format!("lease_ttl = \"{bad}\""));
        rejected_at(&text, "lease_ttl =", "fleet.lease_ttl", mentions);
    }
}

#[test]
fn timeout_must_be_positive_and_shorter_than_the_lease() {
    for (keys, mentions) in [
        (
            "timeout = \"3s\"",
            "must be less than fleet.lease_ttl (3s), got 3s",
        ),
        (
            "lease_ttl = \"2s\"\ntimeout = \"5s\"",
            "must be less than fleet.lease_ttl (2s), got 5s",
        ),
        ("timeout = \"0s\"", "must be greater than 0"),
        ("timeout = \"fast\"", "invalid duration"),
    ] {
        let text = fleet_with(keys);
        rejected_at(&text, "timeout =", "fleet.timeout", mentions);
    }
}

#[test]
fn invalid_quorums_are_rejected() {
    for bad in ["0", "-1", "\"most\"", "true", "2.5", "\"1\""] {
        let text = fleet_with(&format!("quorum = {bad}"));
        rejected_at(
            &text,
            "quorum =",
            "fleet.quorum",
            "expected \"majority\" or a number of hosts >= 1",
        );
    }
    let text = fleet_with("quorum = 5000000000");
    rejected_at(&text, "quorum =", "fleet.quorum", "too large");
}

#[test]
fn invalid_barrier_and_on_detach_are_rejected() {
    let text = fleet_with("barrier = \"acks\"");
    rejected_at(
        &text,
        "barrier =",
        "fleet.barrier",
        "expected \"none\" or \"ack\"",
    );
    let text = fleet_with("on_detach = \"fallback\"");
    rejected_at(
        &text,
        "on_detach =",
        "fleet.on_detach",
        "expected \"static\" or \"local\"",
    );
}

#[test]
fn detach_timeout_shorter_than_the_lease_or_over_a_day_is_rejected() {
    for (keys, mentions) in [
        (
            "lease_ttl = \"5s\"\non_detach = \"local\"\ndetach_timeout = \"4s\"",
            "must be at least fleet.lease_ttl (5s), got 4s",
        ),
        ("detach_timeout = \"2d\"", "must be at most 1day, got 2days"),
        ("detach_timeout = \"0s\"", "must be greater than 0"),
    ] {
        let text = fleet_with(keys);
        rejected_at(&text, "detach_timeout =", "fleet.detach_timeout", mentions);
    }
}

#[test]
fn https_endpoints_require_fleet_tls() {
    let text =
        fleet_with("endpoints = [\"http://198.18.30.2:2379\", \"https://198.18.30.3:2379\"]");
    // Mixed first, so the scheme rule speaks before the TLS one.
    rejected_at(&text, "endpoints =", "fleet.endpoints[1]", "mixes");
    let text = fleet_with("endpoints = [\n  \"https://198.18.30.2:2379\"]");
    rejected_at(
        &text,
        "https://198.18.30.2",
        "fleet.tls",
        "is required with https:// endpoints",
    );
}

#[test]
fn fleet_tls_with_http_endpoints_is_rejected() {
    let text = fleet_with("[fleet.tls]\nca = \"/ca.pem\"");
    rejected_at(
        &text,
        "[fleet.tls]",
        "fleet.tls",
        "only used with https:// endpoints",
    );
}

#[test]
fn fleet_tls_errors_name_their_key() {
    let https = "endpoints = [\"https://198.18.30.2:2379\"]\n[fleet.tls]\n";
    let text = fleet_with(&format!("{https}domain = \"etcd.example\""));
    rejected_at(&text, "[fleet.tls]", "fleet.tls.ca", "is required");
    for (keys, needle, field, mentions) in [
        ("ca = \"\"", "ca =", "fleet.tls.ca", "must not be empty"),
        (
            "ca = \"/ca.pem\"\ncert = \"/c.pem\"",
            "cert =",
            "fleet.tls.cert",
            "requires fleet.tls.key",
        ),
        (
            "ca = \"/ca.pem\"\nkey = \"/k.pem\"",
            "key =",
            "fleet.tls.key",
            "requires fleet.tls.cert",
        ),
        (
            "ca = \"/ca.pem\"\ncert = \"\"\nkey = \"/k.pem\"",
            "cert =",
            "fleet.tls.cert",
            "must not be empty",
        ),
        (
            "ca = \"/ca.pem\"\ndomain = \"\"",
            "domain =",
            "fleet.tls.domain",
            "must not be empty",
        ),
    ] {
        let text = fleet_with(&format!("{https}{keys}"));
        rejected_at(&text, needle, field, mentions);
    }
}

#[test]
fn fleet_auth_errors_name_their_key() {
    let text = fleet_with("[fleet.auth]\npassword_file = \"/p\"");
    rejected_at(&text, "[fleet.auth]", "fleet.auth.user", "is required");
    let text = fleet_with("[fleet.auth]\nuser = \"\"\npassword_file = \"/p\"");
    rejected_at(&text, "user =", "fleet.auth.user", "must not be empty");
    let text = fleet_with("[fleet.auth]\nuser = \"redirector\"");
    rejected_at(
        &text,
        "[fleet.auth]",
        "fleet.auth.password_file",
        "is required",
    );
    let text = fleet_with(&auth_with(""));
    rejected_at(
        &text,
        "password_file =",
        "fleet.auth.password_file",
        "must not be empty",
    );
}

#[test]
fn unreadable_or_empty_password_file_is_rejected_naming_the_file() {
    let missing = std::env::temp_dir().join(format!(
        "redirector-config-fleet-missing-{}",
        std::process::id()
    ));
    let missing = missing.to_str().expect("UTF-8 path");
    let text = fleet_with(&auth_with(missing));
    rejected_at(
        &text,
        "password_file =",
        "fleet.auth.password_file",
        &format!("cannot read {missing}"),
    );
    for content in ["", "\n", "\r\n"] {
        let empty = TempFile::new(content);
        let text = fleet_with(&auth_with(empty.path()));
        rejected_at(
            &text,
            "password_file =",
            "fleet.auth.password_file",
            &format!("{} is empty", empty.path()),
        );
    }
}

#[test]
fn unknown_fleet_keys_are_rejected_with_their_table() {
    for (keys, needle, field) in [
        ("endpoint = \"x\"", "endpoint =", "fleet.endpoint"),
        (
            "[fleet.tls]\nca = \"/ca.pem\"\ncafile = \"/x\"",
            "cafile =",
            "fleet.tls.cafile",
        ),
        (
            "[fleet.auth]\nuser = \"u\"\npassword = \"inline\"",
            "password =",
            "fleet.auth.password",
        ),
    ] {
        let text = fleet_with(keys);
        rejected_at(&text, needle, field, "unknown field");
    }
}

#[test]
fn fleet_and_local_service_on_one_vip_are_rejected() {
    // Both would write the same VIP's entry in the data path's map.
    let text = format!(
        "{}\n[[services]]\nname = \"local\"\nvip = \"198.18.0.100:6379\"\n\n\
         [[services.members]]\nname = \"m\"\naddr = \"198.18.1.11:6379\"\n\n[fleet]\n{ENDPOINTS}\n",
        with_line("fleet = true", true)
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "vip =", 1),
        "services[1].vip",
        "duplicate VIP 198.18.0.100:6379 (also services[0].vip)",
    );
}

// Warnings.

#[test]
fn default_fleet_has_no_warnings() {
    let w = warnings(&ok(&fleet_with("")));
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn fleet_section_that_no_service_uses_warns() {
    let text = format!("{MINIMAL}\n[fleet]\n{ENDPOINTS}\n");
    assert_eq!(
        warnings(&ok(&text)),
        vec![
            "[fleet] is set but no service has fleet = true: every service decides on this \
             host alone"
                .to_string()
        ]
    );
}

#[test]
fn ack_barrier_with_a_drain_timeout_warns_that_overlap_is_not_zero() {
    let w = warnings(&ok(&fleet_with("barrier = \"ack\"")));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(
            "service orders-cache: fleet.barrier = \"ack\" with drain_timeout = \"10s\""
        ),
        "{w:?}"
    );
    assert!(w[0].contains("bounded by drain_timeout, not zero"), "{w:?}");
    let text = fleet_with("barrier = \"ack\"")
        .replace("fleet = true", "fleet = true\ndrain_timeout = \"0s\"");
    let w = warnings(&ok(&text));
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn ack_barrier_ignores_services_outside_the_fleet() {
    let text = format!(
        "{}\n[[services]]\nname = \"local\"\nvip = \"198.18.0.101:6379\"\n\n\
         [[services.members]]\nname = \"m\"\naddr = \"198.18.1.11:6379\"\n\n\
         [fleet]\n{ENDPOINTS}\nbarrier = \"ack\"\n",
        with_line("fleet = true\ndrain_timeout = \"0s\"", true)
    );
    let w = warnings(&ok(&text));
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn quorum_of_one_warns_that_one_host_flips_the_fleet() {
    let w = warnings(&ok(&fleet_with("quorum = 1")));
    assert_eq!(
        w,
        vec![
            "fleet.quorum = 1: every host can flip the fleet alone; one host that loses its \
             path to a member moves every host off it"
                .to_string()
        ]
    );
    let w = warnings(&ok(&fleet_with("quorum = 2")));
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn detach_timeout_with_static_on_detach_warns_unused() {
    let w = warnings(&ok(&fleet_with("detach_timeout = \"30s\"")));
    assert_eq!(
        w,
        vec!["fleet.detach_timeout does nothing with fleet.on_detach = \"static\"".to_string()]
    );
    let w = warnings(&ok(&fleet_with(
        "on_detach = \"local\"\ndetach_timeout = \"30s\"",
    )));
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn auth_over_plain_http_warns_that_the_password_is_in_clear() {
    let password = TempFile::new("pw\n");
    let w = warnings(&ok(&fleet_with(&auth_with(password.path()))));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("fleet.auth over http:// endpoints"),
        "{w:?}"
    );
    let text = fleet_with(&format!(
        "endpoints = [\"https://198.18.30.2:2379\"]\n[fleet.tls]\nca = \"/ca.pem\"\n\n{}",
        auth_with(password.path())
    ));
    let w = warnings(&ok(&text));
    assert!(w.is_empty(), "{w:?}");
}

//! Tests of the config module: shared example files and helpers here,
//! the tests by area in the submodules.

mod checks;
mod datapath_admin;
mod fleet;
mod observe;
mod services;
mod syntax;
mod values;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{span::line_col, *};

const MINIMAL: &str = r#"[datapath]
interfaces = ["eth0"]

[[services]]
name = "orders-cache"
vip = "198.18.0.100:6379"

[[services.members]]
name = "us-east"
addr = "198.18.1.10:6379"
"#;

const FULL: &str = r#"# full example
[datapath]
interfaces = ["eth0", "eth1"]
ingress = "tc"
pin_path = "/sys/fs/bpf/test"
conntrack_entries = 4096
flow_idle_timeout = "2h"
flow_close_timeout = "5s"

[admin]
socket = "/tmp/redirector-admin.sock"
metrics = "off"

[[services]]
name = "orders-cache"
vip = "198.18.0.100:6379"
failback = "manual"
failback_delay = "1m 30s"
on_failover = "keep"
drain_timeout = "0s"

[services.check]
kind = "redis-setget"
interval = "500ms"
timeout = "200ms"
fast_interval = "100ms"
rise = 5
fall = 1
observe = "layer7"
error_limit = 3
on_error = "sudden-death"
username = "probe"
password_file = "/etc/redirector/redis.pass"
tls = true
ca_file = "/etc/redirector/ca.pem"
server_name = "redis.example"
cluster = true
key_prefix = "probe:"
ttl = "5s"

[[services.members]]
name = "us-east"
addr = "198.18.1.10:6379"

[[services.members]]
name = "us-west"
addr = "Redis-West.example.com:6380"
priority = 7

[[services]]
name = "sessions"
vip = "[2001:db8::100]:6379"

[services.check]
kind = "availability"
bdb_uid = 3
username = "admin@example.com"
password_env = "RS_PASSWORD"
server_name = "cluster.example"

[[services.members]]
name = "a"
addr = "[2001:db8::10]:6379"

[[services.members]]
name = "b"
addr = "redis-b.example:6379"

[[services]]
name = "queue"
vip = "198.18.0.101:6379"

[services.check]
kind = "exec"
command = ["/usr/local/bin/check", "{host}", "{port}"]

[[services.members]]
name = "one"
addr = "198.18.3.10:6379"

[[services]]
name = "plain"
vip = "198.18.0.102:6379"

[services.check]
kind = "tcp"

[[services.members]]
name = "one"
addr = "198.18.4.10:6379"
"#;

/// The sketch in DESIGN.md, verbatim.
const DESIGN_SKETCH: &str = r#"[datapath]
interfaces = ["eth0"]
ingress = "auto"
pin_path = "/sys/fs/bpf/redirector"
conntrack_entries = 262144

[admin]
socket = "/run/redirector/admin.sock"   # JSON API, root-only
metrics = "127.0.0.1:9477"              # Prometheus text format

[[services]]
name = "orders-cache"
vip = "198.18.0.100:6379"       # or "[2001:db8::100]:6379"
failback = "auto"               # "auto" | "manual"
failback_delay = "30s"          # preferred member must stay healthy this long
on_failover = "reset"           # flows on a failed member: "reset" | "keep"
drain_timeout = "10s"           # planned moves: open flows on the old member get this
                                # long, then are reset (pooled clients come back)

[services.check]
kind = "redis-ping"             # tcp | redis-ping | redis-echo | redis-setget | availability | exec
interval = "250ms"
timeout = "250ms"
rise = 3
fall = 2

[[services.members]]
name = "us-east"
addr = "198.18.1.10:6379"       # IP or DNS name (re-resolved periodically)
priority = 1

[[services.members]]
name = "us-west"
addr = "198.18.2.10:6379"
priority = 2
"#;

fn ok(text: &str) -> Config {
    match parse(text, Path::new("test.toml")) {
        Ok(c) => c,
        Err(e) => panic!("config should parse: {e}"),
    }
}

fn reject(text: &str) -> ConfigError {
    match parse(text, Path::new("test.toml")) {
        Ok(c) => panic!("config should be rejected: {c:?}"),
        Err(e) => e,
    }
}

/// 1-based line of the `nth` (0-based) line containing `needle`.
fn line_of(text: &str, needle: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in text"))
}

fn assert_error(e: &ConfigError, line: usize, field: &str, mentions: &str) {
    assert_eq!(e.line(), line, "line of {e}");
    assert_eq!(e.field(), field, "field of {e}");
    assert!(
        e.to_string().contains(mentions),
        "{e} should mention {mentions:?}"
    );
    assert!(e.to_string().starts_with("test.toml:"), "{e}");
}

/// MINIMAL with `line` added to the service (`service = true`) or to
/// its check table.
fn with_line(line: &str, service: bool) -> String {
    if service {
        MINIMAL.replace(
            "vip = \"198.18.0.100:6379\"",
            &format!("vip = \"198.18.0.100:6379\"\n{line}"),
        )
    } else {
        MINIMAL.replace(
            "[[services.members]]",
            &format!("[services.check]\n{line}\n\n[[services.members]]"),
        )
    }
}

/// `text` is rejected at the line holding `needle`, naming `field`.
fn rejected_at(text: &str, needle: &str, field: &str, mentions: &str) {
    assert_error(&reject(text), line_of(text, needle, 0), field, mentions);
}

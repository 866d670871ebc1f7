//! `[services.check]`: timing bounds, kinds and kind-specific keys.

use super::*;

#[test]
fn zero_rise_is_rejected() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\nrise = 0\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "rise = 0", 0),
        "services[0].check.rise",
        "at least 1",
    );
}

#[test]
fn zero_fall_is_rejected() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\nfall = 0\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "fall = 0", 0),
        "services[0].check.fall",
        "at least 1",
    );
}

#[test]
fn timeout_longer_than_interval_is_rejected_on_timeout() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\ninterval = \"100ms\"\ntimeout = \"1s\"\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "timeout =", 0),
        "services[0].check.timeout",
        "longer than interval",
    );
}

#[test]
fn fast_interval_longer_than_interval_is_rejected() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nfast_interval = \"1s\"\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "fast_interval =", 0),
        "services[0].check.fast_interval",
        "longer than interval",
    );
}

#[test]
fn zero_interval_and_bad_duration_are_rejected() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\ninterval = \"0s\"\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "interval =", 0),
        "services[0].check.interval",
        "greater than 0",
    );

    let text = MINIMAL.replace(
        "vip = \"198.18.0.100:6379\"",
        "vip = \"198.18.0.100:6379\"\nfailback_delay = \"soon\"",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "failback_delay", 0),
        "services[0].failback_delay",
        "invalid duration",
    );
}

/// One bounded key: values just inside and just outside its range.
struct Bound {
    key: &'static str,
    /// In the service table (else in its check table).
    service: bool,
    accepted: &'static [&'static str],
    rejected: &'static [&'static str],
    mentions: &'static str,
}

impl Bound {
    fn field(&self) -> String {
        match self.service {
            true => format!("services[0].{}", self.key),
            false => format!("services[0].check.{}", self.key),
        }
    }

    /// The config with `key = v`; a check key is tried with interval
    /// 1h and timeout and fast_interval 1ms, so only its bound can fail.
    fn text(&self, v: &str) -> String {
        let line = format!("{} = {v}", self.key);
        if self.service {
            return with_line(&line, true);
        }
        let mut lines: Vec<String> = match self.key {
            "interval" => vec!["timeout = \"1ms\"".into(), "fast_interval = \"1ms\"".into()],
            _ => [
                "interval = \"1h\"",
                "timeout = \"1ms\"",
                "fast_interval = \"1ms\"",
            ]
            .into_iter()
            .filter(|l| !l.starts_with(&format!("{} ", self.key)))
            .map(String::from)
            .collect(),
        };
        lines.push(line);
        with_line(&lines.join("\n"), false)
    }
}

/// Every duration and count is bounded: the value just inside each
/// bound parses, the one just outside is rejected at its line and field.
#[test]
fn durations_and_counts_are_bounded() {
    const CHECK: &[&str] = &["\"1ms\"", "\"1h\""];
    const COUNT: &[&str] = &["1", "100"];
    const DELAY: &[&str] = &["\"0s\"", "\"24h\""];
    let bound = |key, service, accepted, rejected, mentions| Bound {
        key,
        service,
        accepted,
        rejected,
        mentions,
    };
    let cases = [
        bound(
            "interval",
            false,
            CHECK,
            &["\"999us\"", "\"3601s\""],
            "between 1ms and 1h",
        ),
        bound(
            "timeout",
            false,
            CHECK,
            &["\"999us\"", "\"2h\""],
            "between 1ms and 1h",
        ),
        bound(
            "fast_interval",
            false,
            CHECK,
            &["\"500us\"", "\"2h\""],
            "between 1ms and 1h",
        ),
        bound("rise", false, COUNT, &["101", "4000000000"], "at most 100"),
        bound("fall", false, COUNT, &["101", "4000000000"], "at most 100"),
        bound(
            "failback_delay",
            true,
            DELAY,
            &["\"86401s\""],
            "between 0s and 1day",
        ),
        bound(
            "drain_timeout",
            true,
            DELAY,
            &["\"86401s\""],
            "between 0s and 1day",
        ),
    ];
    for b in &cases {
        for v in b.accepted {
            ok(&b.text(v));
        }
        for v in b.rejected {
            let needle = format!("{} = {v}", b.key);
            rejected_at(&b.text(v), &needle, &b.field(), b.mentions);
        }
    }
    // redis-setget's key time-to-live.
    let text = with_line("kind = \"redis-setget\"\nttl = \"2h\"", false);
    rejected_at(
        &text,
        "ttl =",
        "services[0].check.ttl",
        "between 1ms and 1h",
    );
}

/// The inputs that used to panic the probe task ("overflow when adding
/// duration to instant") or the service task on switchover.
#[test]
fn absurd_durations_that_used_to_panic_are_rejected() {
    for (key, service, mentions) in [
        ("interval", false, "between 1ms and 1h"),
        ("drain_timeout", true, "between 0s and 1day"),
        ("failback_delay", true, "between 0s and 1day"),
    ] {
        let text = with_line(&format!("{key} = \"500000000000y\""), service);
        let field = match service {
            true => format!("services[0].{key}"),
            false => format!("services[0].check.{key}"),
        };
        rejected_at(&text, &format!("{key} ="), &field, mentions);
    }
}

#[test]
fn unknown_check_kind_is_rejected() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\nkind = \"http\"\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "kind =", 0),
        "services[0].check.kind",
        "unknown check kind \"http\"",
    );
}

#[test]
fn key_for_another_kind_is_rejected() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\nkind = \"tcp\"\ncommand = [\"/bin/true\"]\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "command =", 0),
        "services[0].check.command",
        "only valid for kind exec",
    );

    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\nkind = \"redis-ping\"\nttl = \"1s\"\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "ttl =", 0),
        "services[0].check.ttl",
        "only valid for kind redis-setget",
    );
}

#[test]
fn tls_options_without_tls_are_rejected() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\nca_file = \"/ca.pem\"\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "ca_file", 0),
        "services[0].check.ca_file",
        "requires tls = true",
    );
}

#[test]
fn both_password_sources_are_rejected() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\npassword_file = \"/p\"\npassword_env = \"P\"\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "password_env", 0),
        "services[0].check.password_env",
        "at most one",
    );
}

#[test]
fn availability_requires_bdb_uid_and_credentials() {
    let check =
        "[services.check]\nkind = \"availability\"\nusername = \"u\"\npassword_env = \"P\"\n";
    let with = |body: &str| {
        MINIMAL.replace(
            "[[services.members]]",
            &format!("{body}\n[[services.members]]"),
        )
    };

    let text = with(check);
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "[services.check]", 0),
        "services[0].check.bdb_uid",
        "required",
    );

    let text = with(&check.replace("username = \"u\"\n", "bdb_uid = 1\n"));
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "[services.check]", 0),
        "services[0].check.username",
        "required for kind availability",
    );

    let text = with(&check.replace("password_env = \"P\"\n", "bdb_uid = 1\n"));
    let e = reject(&text);
    assert_eq!(e.field(), "services[0].check.password_file");

    let text = with(&format!(
        "{check}bdb_uid = 1\nport = 9444\nlag_tolerance_ms = 5\n"
    ));
    let CheckKind::Availability(a) = &ok(&text).services[0].check.kind else {
        panic!("expected availability");
    };
    assert_eq!((a.bdb_uid, a.port, a.lag_tolerance_ms), (1, 9444, 5));
}

#[test]
fn exec_requires_a_command() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\nkind = \"exec\"\ncommand = []\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "command =", 0),
        "services[0].check.command",
        "non-empty",
    );
}

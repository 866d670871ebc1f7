//! `[datapath]` and `[admin]`: bounds and formats of each key.

use super::*;

#[test]
fn an_admin_socket_path_longer_than_sun_path_is_rejected() {
    let path = |len: usize| format!("/{}", "s".repeat(len - 1));
    let with = |p: &str| {
        MINIMAL.replace(
            "[[services]]",
            &format!("[admin]\nsocket = \"{p}\"\n\n[[services]]"),
        )
    };
    ok(&with(&path(107)));
    let text = with(&path(108));
    rejected_at(&text, "socket =", "admin.socket", "at most 107");
}

#[test]
fn conntrack_entries_above_16mi_are_rejected() {
    let base = "interfaces = [\"eth0\"]";
    ok(&MINIMAL.replace(base, &format!("{base}\nconntrack_entries = 16777216")));
    let text = MINIMAL.replace(base, &format!("{base}\nconntrack_entries = 16777217"));
    let e = reject(&text);
    assert_error(&e, 3, "datapath.conntrack_entries", "at most 16777216");
}

#[test]
fn empty_interfaces_are_rejected() {
    let text = MINIMAL.replace("[\"eth0\"]", "[]");
    let e = reject(&text);
    assert_error(&e, 2, "datapath.interfaces", "at least one interface");

    let text = MINIMAL.replace("[datapath]\ninterfaces = [\"eth0\"]\n", "");
    let e = reject(&text);
    assert_eq!(e.field(), "datapath.interfaces");
}

#[test]
fn flow_timeouts_default_and_are_bounded() {
    let c = ok(MINIMAL);
    assert_eq!(c.datapath.flow_idle_timeout, DEFAULT_FLOW_IDLE_TIMEOUT);
    assert_eq!(c.datapath.flow_close_timeout, DEFAULT_FLOW_CLOSE_TIMEOUT);
    for (line, field, mentions) in [
        (
            "flow_idle_timeout = \"10s\"",
            "datapath.flow_idle_timeout",
            "between 1m and 7days",
        ),
        (
            "flow_idle_timeout = \"30days\"",
            "datapath.flow_idle_timeout",
            "got 30days",
        ),
        (
            "flow_close_timeout = \"0s\"",
            "datapath.flow_close_timeout",
            "greater than 0",
        ),
        (
            "flow_close_timeout = \"1h\"",
            "datapath.flow_close_timeout",
            "between 1s and 10m",
        ),
    ] {
        let text = MINIMAL.replace(
            "interfaces = [\"eth0\"]",
            &format!("interfaces = [\"eth0\"]\n{line}"),
        );
        assert_error(&reject(&text), 3, field, mentions);
    }
}

#[test]
fn small_conntrack_table_is_rejected() {
    let text = MINIMAL.replace(
        "interfaces = [\"eth0\"]",
        "interfaces = [\"eth0\"]\nconntrack_entries = 100",
    );
    let e = reject(&text);
    assert_error(&e, 3, "datapath.conntrack_entries", "at least 1024");
}

#[test]
fn bad_metrics_address_is_rejected_and_off_disables() {
    let text = format!("[admin]\nmetrics = \"localhost\"\n{MINIMAL}");
    let e = reject(&text);
    assert_error(&e, 2, "admin.metrics", "invalid address");

    let text = format!("[admin]\nmetrics = \"off\"\n{MINIMAL}");
    assert_eq!(ok(&text).admin.metrics, None);
}

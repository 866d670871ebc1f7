//! `[services.check]` observe, error_limit and on_error: defaults, accepted
//! values, errors that name the field, and the warnings.

use super::*;

#[test]
fn observe_defaults_are_layer4_limit_1_fail_check() {
    let c = ok(MINIMAL);
    let o = &c.services[0].check.observe;
    assert_eq!(
        (o.mode, o.error_limit, o.on_error),
        (ObserveMode::Layer4, 1, OnError::FailCheck)
    );
    assert!(o.keys_set.is_empty());
    assert_eq!(*o, Observe::default());
}

#[test]
fn every_observe_mode_and_action_is_accepted() {
    for (name, mode) in ObserveMode::NAMES {
        let c = ok(&with_line(&format!("observe = \"{name}\""), false));
        assert_eq!(c.services[0].check.observe.mode, mode);
    }
    for (name, action) in OnError::NAMES {
        let c = ok(&with_line(&format!("on_error = \"{name}\""), false));
        assert_eq!(c.services[0].check.observe.on_error, action);
        assert_eq!(c.services[0].check.observe.keys_set, vec!["on_error"]);
    }
    for n in [1, 10, 1000] {
        let c = ok(&with_line(&format!("error_limit = {n}"), false));
        assert_eq!(c.services[0].check.observe.error_limit, n);
    }
}

#[test]
fn invalid_observe_values_name_the_field() {
    let text = with_line("observe = \"layer3\"", false);
    rejected_at(
        &text,
        "observe =",
        "services[0].check.observe",
        "expected \"off\", \"layer4\" or \"layer7\"",
    );
    let text = with_line("on_error = \"markdown\"", false);
    rejected_at(
        &text,
        "on_error =",
        "services[0].check.on_error",
        "expected \"fastinter\", \"fail-check\", \"sudden-death\" or \"mark-down\"",
    );
    for bad in [0, 1001] {
        let text = with_line(&format!("error_limit = {bad}"), false);
        rejected_at(
            &text,
            "error_limit =",
            "services[0].check.error_limit",
            &format!("at least 1 and at most 1000, got {bad}"),
        );
    }
    let text = with_line("error_limit = -1", false);
    let e = reject(&text);
    assert_eq!(e.line(), line_of(&text, "error_limit =", 0), "{e}");
    assert_eq!(e.field(), "services[0].check.error_limit", "{e}");
}

#[test]
fn on_error_or_error_limit_without_observe_warns() {
    let text = with_line(
        "observe = \"off\"\non_error = \"mark-down\"\nerror_limit = 5",
        false,
    );
    assert_eq!(
        warnings(&ok(&text)),
        vec![
            "service orders-cache: check.error_limit and check.on_error do nothing with \
             check.observe = \"off\""
                .to_string()
        ]
    );
    let text = with_line("observe = \"off\"\nerror_limit = 5", false);
    assert_eq!(
        warnings(&ok(&text)),
        vec![
            "service orders-cache: check.error_limit does nothing with check.observe = \"off\""
                .to_string()
        ]
    );
    assert!(warnings(&ok(&with_line("observe = \"off\"", false))).is_empty());
}

#[test]
fn mark_down_warns_that_one_reset_fails_over() {
    let w = warnings(&ok(&with_line("on_error = \"mark-down\"", false)));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("service orders-cache: check.on_error = \"mark-down\""),
        "{w:?}"
    );
    assert!(w[0].contains("idle timeout"), "{w:?}");
    for other in ["fastinter", "fail-check", "sudden-death"] {
        let text = with_line(&format!("on_error = \"{other}\""), false);
        assert!(warnings(&ok(&text)).is_empty(), "{other}");
    }
}

//! Errors found by the TOML parser itself (unknown keys, wrong types,
//! bad syntax) still name their line and dotted field.

use super::*;

#[test]
fn unknown_key_is_rejected_with_its_line_and_table() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\nintervall = \"1s\"\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "intervall", 0),
        "services[0].check.intervall",
        "unknown field `intervall`",
    );
}

#[test]
fn unknown_key_in_second_member_names_its_index() {
    let text = format!("{MINIMAL}\n[[services.members]]\nname = \"b\"\naddres = \"x:1\"\n");
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "addres =", 0),
        "services[0].members[1].addres",
        "unknown field",
    );
}

#[test]
fn unknown_top_level_table_is_rejected() {
    let text = format!("{MINIMAL}\n[daemon]\nx = 1\n");
    let e = reject(&text);
    assert_eq!(e.line(), line_of(&text, "[daemon]", 0));
    assert_eq!(e.field(), "daemon");
    assert!(e.to_string().contains("unknown field `daemon`"), "{e}");
}

#[test]
fn wrong_value_type_is_rejected_with_its_line() {
    let text = MINIMAL.replace(
        "[[services.members]]",
        "[services.check]\nrise = \"three\"\n\n[[services.members]]",
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "rise =", 0),
        "services[0].check.rise",
        "invalid type",
    );
}

#[test]
fn toml_syntax_error_reports_its_line() {
    let text = MINIMAL.replace("name = \"us-east\"", "name = \"us-east");
    let e = reject(&text);
    assert_eq!(e.line(), line_of(&text, "name = \"us-east", 0));
    assert!(e.column() >= 1);
}

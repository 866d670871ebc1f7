//! `[[services]]` and their members: names, VIPs and member addresses.

use super::*;

#[test]
fn bad_vip_address_is_rejected_with_its_line() {
    let text = MINIMAL.replace("198.18.0.100:6379", "198.18.0.300:6379");
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "vip =", 0),
        "services[0].vip",
        "invalid address",
    );
    assert_eq!(e.column(), 7);
}

#[test]
fn vip_port_zero_is_rejected() {
    let text = MINIMAL.replace("198.18.0.100:6379", "198.18.0.100:0");
    let e = reject(&text);
    assert_error(&e, line_of(&text, "vip =", 0), "services[0].vip", "port");
}

#[test]
fn bad_member_address_is_rejected_with_its_line() {
    for bad in [
        "198.18.1.300:6379",
        "not a host:6379",
        "198.18.1.10:99999",
        "2001:db8::10:6379x",
    ] {
        let text = MINIMAL.replace("198.18.1.10:6379", bad);
        let e = reject(&text);
        assert_eq!(e.line(), line_of(&text, "addr =", 0), "{bad}: {e}");
        assert_eq!(e.field(), "services[0].members[0].addr", "{bad}: {e}");
        assert!(e.to_string().contains("invalid"), "{bad}: {e}");
    }
}

#[test]
fn member_without_port_is_rejected() {
    for bad in [
        "198.18.1.10",
        "redis.example",
        "[2001:db8::10]",
        "redis.example:",
    ] {
        let text = MINIMAL.replace("198.18.1.10:6379", bad);
        let e = reject(&text);
        assert_error(
            &e,
            line_of(&text, "addr =", 0),
            "services[0].members[0].addr",
            "has no port",
        );
    }
}

#[test]
fn member_port_zero_is_rejected() {
    let text = MINIMAL.replace("198.18.1.10:6379", "redis.example:0");
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "addr =", 0),
        "services[0].members[0].addr",
        "port must be 1..65535",
    );
}

#[test]
fn duplicate_service_name_is_rejected_with_its_line() {
    let text = format!(
        "{MINIMAL}\n[[services]]\nname = \"orders-cache\"\nvip = \"198.18.0.101:6379\"\n\
         [[services.members]]\nname = \"a\"\naddr = \"198.18.1.11:6379\"\n"
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "name = \"orders-cache\"", 1),
        "services[1].name",
        "duplicate service name",
    );
}

#[test]
fn duplicate_vip_is_rejected_with_its_line() {
    let text = format!(
        "{MINIMAL}\n[[services]]\nname = \"other\"\nvip = \"198.18.0.100:6379\"\n\
         [[services.members]]\nname = \"a\"\naddr = \"198.18.1.11:6379\"\n"
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "vip =", 1),
        "services[1].vip",
        "duplicate VIP 198.18.0.100:6379",
    );
}

#[test]
fn duplicate_member_name_within_a_service_is_rejected() {
    let text = format!(
        "{MINIMAL}\n[[services.members]]\nname = \"us-east\"\naddr = \"198.18.2.10:6379\"\n"
    );
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "name = \"us-east\"", 1),
        "services[0].members[1].name",
        "duplicate member name",
    );
}

#[test]
fn same_member_name_in_two_services_is_allowed() {
    let text = format!(
        "{MINIMAL}\n[[services]]\nname = \"other\"\nvip = \"198.18.0.101:6379\"\n\
         [[services.members]]\nname = \"us-east\"\naddr = \"198.18.1.11:6379\"\n"
    );
    assert_eq!(ok(&text).services[1].members[0].name, "us-east");
}

#[test]
fn invalid_service_name_is_rejected() {
    let text = MINIMAL.replace("name = \"orders-cache\"", "name = \"orders cache\"");
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "orders cache", 0),
        "services[0].name",
        "invalid name",
    );
}

#[test]
fn missing_service_name_is_rejected_at_its_table() {
    let text = MINIMAL.replace("name = \"orders-cache\"\n", "");
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "[[services]]", 0),
        "services[0].name",
        "is required",
    );
}

/// Configs that parse but cannot work: each is refused at its line.
#[test]
fn addresses_that_cannot_work_are_rejected() {
    let member = "addr = \"198.18.1.10:6379\"";
    let vip = "vip = \"198.18.0.100:6379\"";
    let f_member = "services[0].members[0].addr";
    let f_vip = "services[0].vip";
    // (replacement line, what the error mentions); an `addr` line
    // replaces the member's, a `vip` line the VIP's.
    for (to, mentions) in [
        ("addr = \"198.18.0.100:6379\"", "is the VIP itself"),
        ("addr = \"0.0.0.0:6379\"", "unspecified"),
        ("addr = \"224.0.0.1:6379\"", "multicast"),
        ("addr = \"255.255.255.255:6379\"", "broadcast"),
        ("vip = \"127.0.0.1:6379\"", "loopback"),
        ("vip = \"224.0.0.5:6379\"", "multicast"),
        ("vip = \"255.255.255.255:6379\"", "broadcast"),
    ] {
        let (from, field) = match to.starts_with("addr") {
            true => (member, f_member),
            false => (vip, f_vip),
        };
        let text = MINIMAL.replace(from, to);
        rejected_at(&text, to, field, mentions);
    }
    // IPv6: unspecified and multicast members, a loopback VIP.
    let v6 = MINIMAL
        .replace(vip, "vip = \"[2001:db8::100]:6379\"")
        .replace(member, "addr = \"[2001:db8::10]:6379\"");
    ok(&v6);
    for (from, to, field, mentions) in [
        (
            "addr = \"[2001:db8::10]:6379\"",
            "addr = \"[::]:6379\"",
            f_member,
            "unspecified",
        ),
        (
            "addr = \"[2001:db8::10]:6379\"",
            "addr = \"[ff02::1]:6379\"",
            f_member,
            "multicast",
        ),
        (
            "addr = \"[2001:db8::10]:6379\"",
            "addr = \"[2001:db8::100]:6379\"",
            f_member,
            "VIP itself",
        ),
        (
            "vip = \"[2001:db8::100]:6379\"",
            "vip = \"[::1]:6379\"",
            f_vip,
            "loopback",
        ),
    ] {
        let text = v6.replace(from, to);
        rejected_at(&text, to, field, mentions);
    }
    // Same IP as the VIP on another port is a different endpoint.
    ok(&MINIMAL.replace(member, "addr = \"198.18.0.100:6380\""));
}

#[test]
fn zero_services_is_rejected() {
    let e = reject("[datapath]\ninterfaces = [\"eth0\"]\n");
    assert_error(&e, 1, "services", "at least one [[services]]");

    let text = "# no services\nservices = []\n[datapath]\ninterfaces = [\"eth0\"]\n";
    let e = reject(text);
    assert_error(&e, 2, "services", "at least one [[services]]");
}

#[test]
fn zero_members_is_rejected() {
    let text = "[datapath]\ninterfaces = [\"eth0\"]\n\n[[services]]\nname = \"a\"\nvip = \"198.18.0.100:6379\"\n";
    let e = reject(text);
    assert_error(
        &e,
        4,
        "services[0].members",
        "at least one [[services.members]]",
    );
}

#[test]
fn v6_member_behind_v4_vip_is_rejected() {
    let text = MINIMAL.replace("198.18.1.10:6379", "[2001:db8::10]:6379");
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "addr =", 0),
        "services[0].members[0].addr",
        "address families differ",
    );
}

#[test]
fn v4_member_behind_v6_vip_is_rejected_but_dns_member_is_allowed() {
    let text = MINIMAL.replace("198.18.0.100:6379", "[2001:db8::100]:6379");
    let e = reject(&text);
    assert_error(
        &e,
        line_of(&text, "addr =", 0),
        "services[0].members[0].addr",
        "IPv4 member",
    );
    let text = text.replace("198.18.1.10:6379", "redis.example:6379");
    assert_eq!(ok(&text).services[0].members[0].host, "redis.example");
}

//! Address and name syntax: member addresses (IP literal or DNS name with
//! a port), DNS names, interface names, and the addresses no server can
//! answer at. Pure string checks, no resolution.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::defaults::MAX_INTERFACE_NAME;

/// A Linux interface name: 1 to 15 bytes, not "." or "..", no '/', ':'
/// or blanks.
pub(super) fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_INTERFACE_NAME
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// Why no server can be reached at `ip` (member or VIP), if so.
pub(super) fn unroutable(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address (0.0.0.0 or ::)")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
        Some("the broadcast address")
    } else {
        None
    }
}

/// Splits `host:port` (a member address, an etcd endpoint's authority)
/// into host (an IP literal without brackets, or a DNS name) and port.
pub(super) fn parse_host_port(addr: &str) -> Result<(String, u16), String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err("port must be 1..65535, got 0".to_string());
        }
        return Ok((sa.ip().to_string(), sa.port()));
    }
    if addr.parse::<IpAddr>().is_ok() {
        return Err(format!("{addr:?} has no port (expected host:port)"));
    }
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid address {addr:?}: missing ']'"))?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("invalid address {addr:?}: {inside:?} is not an IPv6 address"))?;
        if after.is_empty() {
            return Err(format!("{addr:?} has no port (expected [IPv6]:port)"));
        }
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("invalid address {addr:?}: expected ':' after ']'"))?;
        (ip.to_string(), port)
    } else {
        let Some((host, port)) = addr.rsplit_once(':') else {
            if valid_dns_name(addr) {
                return Err(format!("{addr:?} has no port (expected host:port)"));
            }
            return Err(format!("invalid address {addr:?}: expected host:port"));
        };
        if host.contains(':') {
            return Err(format!(
                "invalid address {addr:?}: IPv6 addresses must be written as [IPv6]:port"
            ));
        }
        if host.parse::<IpAddr>().is_err() && !valid_dns_name(host) {
            return Err(format!(
                "invalid address {addr:?}: {host:?} is neither an IP address nor a DNS name"
            ));
        }
        (host.to_string(), port)
    };
    if port.is_empty() {
        return Err(format!("{addr:?} has no port (expected host:port)"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port must be 1..65535, got 0".to_string()),
        Ok(port) => Ok((host, port)),
        Err(_) => Err(format!("invalid port {port:?}: expected 1..65535")),
    }
}

/// RFC 1123 host name; the last label must not be all digits, so a mistyped
/// IPv4 literal ("198.18.1.300") is not taken for a name.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let labels_ok = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    labels_ok
        && labels
            .last()
            .is_some_and(|l| !l.chars().all(|c| c.is_ascii_digit()))
}

//! Member names to addresses. A member's `addr` may be a DNS name; the probe
//! loops re-resolve it periodically and `redirector check` resolves it once.
//! One rule for both: IP literals as they are, names through the system
//! resolver within a bound, and only addresses of the VIP's family (the data
//! path cannot translate across families).

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

/// How long one lookup may take before the member counts as unresolved.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Resolves `host:port` (IP literal or DNS name) to the first address of
/// the VIP's family (`vip_v4`); `None` when nothing answered in time.
pub async fn resolve(host: &str, port: u16, vip_v4: bool) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    let addrs = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .ok()?
        .ok()?;
    addrs.into_iter().find(|a| a.is_ipv4() == vip_v4)
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[tokio::test]
    async fn ip_literals_resolve_to_themselves() {
        assert_eq!(
            resolve("198.18.1.10", 6379, true).await,
            Some("198.18.1.10:6379".parse().unwrap())
        );
        assert_eq!(
            resolve("2001:db8::10", 6379, false).await,
            Some("[2001:db8::10]:6379".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn names_resolve_only_to_the_vips_family() {
        // localhost resolves to 127.0.0.1 from /etc/hosts on every machine.
        let v4 = resolve("localhost", 6379, true).await;
        assert_eq!(v4, Some("127.0.0.1:6379".parse().unwrap()));
        if let Some(a) = resolve("localhost", 6379, false).await {
            assert!(a.is_ipv6(), "an IPv6 VIP got {a}");
        }
    }
}

//! Path MTU discovery through the VIP, end to end with a real redis-server.
//!
//! ```text
//!  app (1500) ── router ══ 1280 ══ east (1500, redis)
//! ```
//!
//! A 200 KB SET through the VIP sends full-sized segments; the router
//! answers them with "fragmentation needed" / "packet too big" that embed
//! the *member's* address. Only if the ingress program rewrites that to the
//! VIP does the client's kernel lower the path MTU and the SET complete;
//! otherwise the connection stalls, so the client is bounded by a timeout.
//! TX offload is on, so egress also sees TSO super-packets longer than
//! their linear part (the IP-length rule of `redirector_common::parse`).

use std::{
    io,
    time::{Duration, Instant},
};

use redirector::datapath::IngressMode;
use redirector_common::Stat;

use super::datapath::load;
use crate::{
    resp::Client,
    topology::{Family, Topology, vip},
};

const NARROW_MTU: u32 = 1280;
const VALUE_LEN: usize = 200 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

fn large_set_through_the_vip_over_a_narrow_hop(family: Family, ingress: IngressMode) {
    let t = Topology::new(true);
    t.narrow_member_links(NARROW_MTU);
    let mut dp = load(&t, ingress);
    let v = vip(family);
    dp.maps
        .set_active(v.into(), t.east.addr(family).into())
        .unwrap();

    let result = t.app.run(move || -> io::Result<_> {
        let started = Instant::now();
        let mut c = Client::connect(v)?;
        c.set_timeout(CLIENT_TIMEOUT);
        c.command(&["SET", "big", &"x".repeat(VALUE_LEN)])?;
        let len = c.command(&["STRLEN", "big"])?;
        Ok((len, started.elapsed()))
    });
    let (len, took) = result.unwrap_or_else(|e| {
        panic!(
            "{family:?}/{ingress:?}: a {VALUE_LEN}-byte SET through the VIP over a \
             {NARROW_MTU}-byte hop did not complete within {CLIENT_TIMEOUT:?} ({e}); \
             path MTU discovery through the VIP needs the router's ICMP errors \
             translated back to the VIP (see the icmp_reverse_translated stat)"
        )
    });
    assert_eq!(len, Some(VALUE_LEN.to_string()), "STRLEN after the SET");
    let stats = dp.maps.stats().unwrap();
    assert!(
        stats.get(Stat::IcmpReverseTranslated) >= 1,
        "the SET completed ({took:?}) without a translated ICMP error: was the hop narrow? {stats:?}"
    );
    // The client's kernel learned the smaller path MTU for the VIP itself.
    let route = match family {
        Family::V4 => t.app.exec(&["ip", "route", "get", &v.ip().to_string()]),
        Family::V6 => t
            .app
            .exec(&["ip", "-6", "route", "get", &v.ip().to_string()]),
    };
    assert!(
        route.contains(&format!("mtu {NARROW_MTU}")),
        "no path MTU cached for the VIP: {route}"
    );
}

macro_rules! pmtu {
    ($($name:ident: $family:expr, $ingress:expr;)+) => {$(
        #[test]
        #[ignore = "needs root: network namespaces and attached BPF programs"]
        fn $name() {
            large_set_through_the_vip_over_a_narrow_hop($family, $ingress);
        }
    )+};
}

pmtu! {
    ipv4_large_set_through_vip_over_1280_hop_succeeds_with_xdp_ingress: Family::V4, IngressMode::Xdp;
    ipv4_large_set_through_vip_over_1280_hop_succeeds_with_tc_ingress: Family::V4, IngressMode::Tc;
    ipv6_large_set_through_vip_over_1280_hop_succeeds_with_xdp_ingress: Family::V6, IngressMode::Xdp;
    ipv6_large_set_through_vip_over_1280_hop_succeeds_with_tc_ingress: Family::V6, IngressMode::Tc;
}

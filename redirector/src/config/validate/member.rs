//! `[[services.members]]`: each member's name, address and priority, and
//! the addresses that could never serve its service's VIP.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use toml::Spanned;

use super::Ctx;
use crate::config::{
    addr::{parse_host_port, unroutable},
    error::ConfigError,
    model::Member,
    raw::{RawMember, split},
};

impl Ctx<'_> {
    /// Member `j` of `service` (a field prefix such as `services[0]`) behind
    /// `vip`. `names` holds the names of the members before it.
    pub(super) fn member(
        &self,
        service: &str,
        j: usize,
        raw: Spanned<RawMember>,
        vip: &SocketAddr,
        names: &mut HashMap<String, usize>,
    ) -> Result<Member, ConfigError> {
        let p = format!("{service}.members[{j}]");
        let (table, raw) = split(raw);

        let field = format!("{p}.name");
        let (span, name) = self.required(raw.name, &table, &field)?;
        self.check_name(&span, &field, &name)?;
        if let Some(first) = names.insert(name.clone(), j) {
            return Err(self.err(
                &span,
                &field,
                format!("duplicate member name {name:?} (also {service}.members[{first}].name)"),
            ));
        }

        let field = format!("{p}.addr");
        let (span, addr) = self.required(raw.addr, &table, &field)?;
        let (host, port) = parse_host_port(&addr).map_err(|m| self.err(&span, &field, m))?;
        if let Ok(ip) = host.parse::<IpAddr>()
            && let Some(why) = unroutable(ip)
        {
            return Err(self.err(
                &span,
                &field,
                format!("member {addr} is {why}: no server can answer there"),
            ));
        }
        if host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port))
            == Some(*vip)
        {
            return Err(self.err(
                &span,
                &field,
                format!(
                    "member {addr} is the VIP itself: the VIP would be translated to \
                     itself and connections would hang"
                ),
            ));
        }
        if let Ok(ip) = host.parse::<IpAddr>()
            && ip.is_ipv4() != vip.is_ipv4()
        {
            let (family, vip_family) = if ip.is_ipv4() {
                ("IPv4", "IPv6")
            } else {
                ("IPv6", "IPv4")
            };
            return Err(self.err(
                &span,
                &field,
                format!(
                    "{family} member {addr} cannot serve {vip_family} VIP {vip}: \
                     address families differ"
                ),
            ));
        }

        let priority = match raw.priority.map(split) {
            Some((span, 0)) => {
                return Err(self.err(&span, &format!("{p}.priority"), "must be at least 1"));
            }
            Some((_, n)) => n,
            None => u32::try_from(j + 1).unwrap_or(u32::MAX),
        };

        Ok(Member {
            name,
            host,
            port,
            priority,
        })
    }
}

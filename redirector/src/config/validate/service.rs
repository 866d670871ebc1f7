//! `[[services]]`: name, VIP and failover policy of each service; its check
//! and members are validated in `check` and `member`.

use std::{collections::HashMap, net::SocketAddr, ops::Range};

use toml::Spanned;

use super::Ctx;
use crate::config::{
    addr::unroutable,
    defaults::{DEFAULT_DRAIN_TIMEOUT, DEFAULT_FAILBACK_DELAY, SERVICE_DELAY_RANGE},
    error::ConfigError,
    model::{Failback, OnFailover, Service},
    raw::{RawService, split},
};

impl Ctx<'_> {
    /// Service `i`; `has_fleet` says whether the file has a `[fleet]`
    /// section for `fleet = true`. `names` and `vips` hold those of the
    /// services before it (value: their index), so a duplicate names the
    /// first use.
    pub(super) fn service(
        &self,
        i: usize,
        raw: Spanned<RawService>,
        has_fleet: bool,
        names: &mut HashMap<String, usize>,
        vips: &mut HashMap<SocketAddr, usize>,
    ) -> Result<Service, ConfigError> {
        let p = format!("services[{i}]");
        let (table, raw) = split(raw);

        let field = format!("{p}.name");
        let (span, name) = self.required(raw.name, &table, &field)?;
        self.check_name(&span, &field, &name)?;
        if let Some(first) = names.insert(name.clone(), i) {
            return Err(self.err(
                &span,
                &field,
                format!("duplicate service name {name:?} (also services[{first}].name)"),
            ));
        }

        let field = format!("{p}.vip");
        let (span, text) = self.required(raw.vip, &table, &field)?;
        let vip = self.vip(&span, &field, &text)?;
        if let Some(first) = vips.insert(vip, i) {
            return Err(self.err(
                &span,
                &field,
                format!("duplicate VIP {vip} (also services[{first}].vip)"),
            ));
        }

        let failback = self.failback(raw.failback, &p)?;
        let on_failover = self.on_failover(raw.on_failover, &p)?;
        let (_, failback_delay) = self.bounded_duration(
            raw.failback_delay,
            DEFAULT_FAILBACK_DELAY,
            &format!("{p}.failback_delay"),
            SERVICE_DELAY_RANGE,
        )?;
        let (_, drain_timeout) = self.bounded_duration(
            raw.drain_timeout,
            DEFAULT_DRAIN_TIMEOUT,
            &format!("{p}.drain_timeout"),
            SERVICE_DELAY_RANGE,
        )?;

        let fleet = match raw.fleet.map(split) {
            Some((span, true)) if !has_fleet => {
                return Err(self.err(
                    &span,
                    &format!("{p}.fleet"),
                    format!(
                        "service {name:?} has fleet = true but the file has no [fleet] \
                         section: add one with the etcd endpoints"
                    ),
                ));
            }
            Some((_, fleet)) => fleet,
            None => false,
        };

        let check = self.check(&p, raw.check)?;

        let field = format!("{p}.members");
        let (span, list) = raw.members.map(split).unwrap_or((table, Vec::new()));
        if list.is_empty() {
            return Err(self.err(
                &span,
                &field,
                "at least one [[services.members]] table is required",
            ));
        }
        let mut member_names = HashMap::new();
        let members = list
            .into_iter()
            .enumerate()
            .map(|(j, m)| self.member(&p, j, m, &vip, &mut member_names))
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Service {
            name,
            vip,
            failback,
            failback_delay,
            on_failover,
            drain_timeout,
            fleet,
            check,
            members,
        })
    }

    /// A VIP: IP:port that traffic to it can be translated from (not
    /// unspecified, multicast, broadcast or loopback; port not 0).
    fn vip(&self, span: &Range<usize>, field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        let vip: SocketAddr = text.parse().map_err(|_| {
            self.err(
                span,
                field,
                format!("invalid address {text:?}: expected IP:port or [IPv6]:port"),
            )
        })?;
        if vip.port() == 0 {
            return Err(self.err(span, field, "port must be 1..65535, got 0"));
        }
        if vip.ip().is_unspecified() {
            return Err(self.err(span, field, "VIP must not be an unspecified address"));
        }
        if let Some(why) = unroutable(vip.ip()) {
            return Err(self.err(span, field, format!("VIP {vip} is {why}")));
        }
        if vip.ip().is_loopback() {
            return Err(self.err(
                span,
                field,
                format!(
                    "VIP {vip} is a loopback address: loopback traffic never leaves the \
                     host through the interfaces, so it is never translated"
                ),
            ));
        }
        Ok(vip)
    }

    /// `failback`: "auto" (the default) or "manual".
    fn failback(&self, raw: Option<Spanned<String>>, p: &str) -> Result<Failback, ConfigError> {
        match raw.map(split) {
            None => Ok(Failback::Auto),
            Some((_, s)) if s == "auto" => Ok(Failback::Auto),
            Some((_, s)) if s == "manual" => Ok(Failback::Manual),
            Some((span, s)) => Err(self.err(
                &span,
                &format!("{p}.failback"),
                format!("invalid value {s:?}: expected \"auto\" or \"manual\""),
            )),
        }
    }

    /// `on_failover`: "reset" (the default) or "keep".
    fn on_failover(
        &self,
        raw: Option<Spanned<String>>,
        p: &str,
    ) -> Result<OnFailover, ConfigError> {
        match raw.map(split) {
            None => Ok(OnFailover::Reset),
            Some((_, s)) if s == "reset" => Ok(OnFailover::Reset),
            Some((_, s)) if s == "keep" => Ok(OnFailover::Keep),
            Some((span, s)) => Err(self.err(
                &span,
                &format!("{p}.on_failover"),
                format!("invalid value {s:?}: expected \"reset\" or \"keep\""),
            )),
        }
    }
}

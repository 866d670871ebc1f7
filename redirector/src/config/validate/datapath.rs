//! `[datapath]`: where the programs attach and how big and how long-lived
//! the flow tables are.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::Ctx;
use crate::config::{
    addr::valid_interface_name,
    defaults::{
        DEFAULT_CONNTRACK_ENTRIES, DEFAULT_FLOW_CLOSE_TIMEOUT, DEFAULT_FLOW_IDLE_TIMEOUT,
        DEFAULT_PIN_PATH, FLOW_CLOSE_TIMEOUT_RANGE, FLOW_IDLE_TIMEOUT_RANGE, MAX_CONNTRACK_ENTRIES,
        MIN_CONNTRACK_ENTRIES,
    },
    error::ConfigError,
    model::{DatapathSection, IngressMode},
    raw::{RawDatapath, split},
};

impl Ctx<'_> {
    /// `[datapath]`: interfaces, ingress mode, pin path, flow table size
    /// and flow timeouts.
    pub(super) fn datapath(
        &self,
        raw: Option<Spanned<RawDatapath>>,
    ) -> Result<DatapathSection, ConfigError> {
        let (section, raw) = raw.map(split).unwrap_or((0..0, RawDatapath::default()));
        let (span, list) = raw.interfaces.map(split).unwrap_or((section, Vec::new()));
        if list.is_empty() {
            return Err(self.err(
                &span,
                "datapath.interfaces",
                "at least one interface is required (e.g. interfaces = [\"eth0\"])",
            ));
        }
        let mut interfaces: Vec<String> = Vec::with_capacity(list.len());
        for (i, name) in list.into_iter().enumerate() {
            let (span, name) = split(name);
            let field = format!("datapath.interfaces[{i}]");
            if !valid_interface_name(&name) {
                return Err(self.err(&span, &field, format!("invalid interface name {name:?}")));
            }
            if interfaces.contains(&name) {
                return Err(self.err(&span, &field, format!("interface {name} is listed twice")));
            }
            interfaces.push(name);
        }
        let pin_path = match raw.pin_path.map(split) {
            Some((span, p)) if !Path::new(&p).is_absolute() => {
                return Err(self.err(&span, "datapath.pin_path", "must be an absolute path"));
            }
            Some((_, p)) => PathBuf::from(p),
            None => PathBuf::from(DEFAULT_PIN_PATH),
        };
        let conntrack_entries = match raw.conntrack_entries.map(split) {
            Some((span, n)) if !(MIN_CONNTRACK_ENTRIES..=MAX_CONNTRACK_ENTRIES).contains(&n) => {
                return Err(self.err(
                    &span,
                    "datapath.conntrack_entries",
                    format!(
                        "must be at least {MIN_CONNTRACK_ENTRIES} and at most \
                         {MAX_CONNTRACK_ENTRIES} (16 Mi), got {n}"
                    ),
                ));
            }
            Some((_, n)) => n,
            None => DEFAULT_CONNTRACK_ENTRIES,
        };
        let (_, flow_idle_timeout) = self.bounded_duration(
            raw.flow_idle_timeout,
            DEFAULT_FLOW_IDLE_TIMEOUT,
            "datapath.flow_idle_timeout",
            FLOW_IDLE_TIMEOUT_RANGE,
        )?;
        let (_, flow_close_timeout) = self.bounded_duration(
            raw.flow_close_timeout,
            DEFAULT_FLOW_CLOSE_TIMEOUT,
            "datapath.flow_close_timeout",
            FLOW_CLOSE_TIMEOUT_RANGE,
        )?;
        Ok(DatapathSection {
            interfaces,
            ingress: raw.ingress.unwrap_or(IngressMode::Auto),
            pin_path,
            conntrack_entries,
            flow_idle_timeout,
            flow_close_timeout,
        })
    }
}

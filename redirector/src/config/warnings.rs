//! Non-fatal findings about a valid configuration: setups that work but
//! can bite, reported by `redirector validate` and logged at (re)load.

use std::collections::HashMap;

use super::model::{Config, FleetBarrier, FleetQuorum, ObserveMode, OnDetach, OnError};

/// Non-fatal findings about a valid configuration, one sentence each.
///
/// A member address listed behind two VIPs is allowed but risky: two client
/// connections that use the same source port towards the two VIPs are
/// translated onto the same 4-tuple. Reactive settings that do nothing
/// (`observe = "off"`) or that fail over on a single signal
/// (`on_error = "mark-down"`) are named too, and so are fleet settings
/// that are unused or weaker than they look.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut found = shared_members(config);
    found.extend(
        config
            .services
            .iter()
            .flat_map(|s| observe_warnings(&s.name, &s.check.observe)),
    );
    found.extend(fleet_warnings(config));
    found
}

/// `[fleet]` that no service uses, a barrier that cannot give zero
/// overlap, a quorum of one, an unused `detach_timeout`, and a password
/// sent in clear.
fn fleet_warnings(config: &Config) -> Vec<String> {
    let Some(fleet) = &config.fleet else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if !config.services.iter().any(|s| s.fleet) {
        found.push(
            "[fleet] is set but no service has fleet = true: every service decides on this \
             host alone"
                .to_string(),
        );
    }
    if fleet.barrier == FleetBarrier::Ack {
        for s in config
            .services
            .iter()
            .filter(|s| s.fleet && !s.drain_timeout.is_zero())
        {
            found.push(format!(
                "service {}: fleet.barrier = \"ack\" with drain_timeout = \"{}\": open flows \
                 keep using the old member during the drain, so the overlap between members \
                 is bounded by drain_timeout, not zero (drain_timeout = \"0s\" makes it zero)",
                s.name,
                humantime::format_duration(s.drain_timeout)
            ));
        }
    }
    if fleet.quorum == FleetQuorum::Count(1) {
        found.push(
            "fleet.quorum = 1: every host can flip the fleet alone; one host that loses its \
             path to a member moves every host off it"
                .to_string(),
        );
    }
    if fleet.detach_timeout_set && fleet.on_detach == OnDetach::Static {
        found.push(
            "fleet.detach_timeout does nothing with fleet.on_detach = \"static\"".to_string(),
        );
    }
    if fleet.auth.is_some() && fleet.tls.is_none() {
        found.push(
            "fleet.auth over http:// endpoints sends the etcd password in clear: use https:// \
             endpoints and [fleet.tls]"
                .to_string(),
        );
    }
    found
}

/// Reactive settings of service `name` that do nothing or that fail over on
/// one signal.
fn observe_warnings(name: &str, observe: &super::model::Observe) -> Vec<String> {
    let mut found = Vec::new();
    if observe.mode == ObserveMode::Off {
        if !observe.keys_set.is_empty() {
            let keys: Vec<String> = observe
                .keys_set
                .iter()
                .map(|k| format!("check.{k}"))
                .collect();
            let verb = if keys.len() == 1 { "does" } else { "do" };
            found.push(format!(
                "service {name}: {} {verb} nothing with check.observe = \"off\"",
                join_names(&keys.iter().map(String::as_str).collect::<Vec<_>>())
            ));
        }
    } else if observe.on_error == OnError::MarkDown {
        found.push(format!(
            "service {name}: check.on_error = \"mark-down\" marks a member down on signals \
             alone, without a probe; a reset after a server-side idle timeout (Redis \
             `timeout`) or a refused connection from a client-side limit would fail the \
             service over"
        ));
    }
    found
}

/// Member addresses behind two or more services.
fn shared_members(config: &Config) -> Vec<String> {
    // (normalized host, port) -> (display endpoint, services), in config order.
    let mut order: Vec<(String, u16)> = Vec::new();
    let mut behind: HashMap<(String, u16), (String, Vec<&str>)> = HashMap::new();
    for service in &config.services {
        for member in &service.members {
            let key = (member.host.to_ascii_lowercase(), member.port);
            let entry = behind.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (endpoint(&member.host, member.port), Vec::new())
            });
            if !entry.1.contains(&service.name.as_str()) {
                entry.1.push(&service.name);
            }
        }
    }
    order
        .iter()
        .filter_map(|key| behind.get(key))
        .filter(|(_, services)| services.len() >= 2)
        .map(|(endpoint, services)| {
            format!(
                "member {endpoint} is behind services {}: two client connections with the \
                 same source port can collide on one 4-tuple",
                join_names(services)
            )
        })
        .collect()
}

fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// "a and b", "a, b and c".
fn join_names(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_string(),
        None => String::new(),
    }
}

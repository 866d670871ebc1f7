//! Non-fatal findings about a valid configuration: setups that work but
//! can bite, reported by `redirector validate` and logged at (re)load.

use std::collections::HashMap;

use super::model::Config;

/// Non-fatal findings about a valid configuration, one sentence each.
///
/// A member address listed behind two VIPs is allowed but risky: two client
/// connections that use the same source port towards the two VIPs are
/// translated onto the same 4-tuple.
pub fn warnings(config: &Config) -> Vec<String> {
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

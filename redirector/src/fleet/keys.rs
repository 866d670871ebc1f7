//! Where fleet mode keeps its records in the engine's key space:
//!
//! ```text
//! {prefix}/{service}/hosts/{host}   a HostRecord, attached to the host's lease
//! {prefix}/{service}/decision       the DecisionRecord, no lease
//! ```
//!
//! Service and host names must not contain `/` (config validates them);
//! any other key under a service's prefix is not ours and is ignored, so a
//! later version may add keys.

/// The key layout under one prefix (like `/redirector`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    /// No trailing `/`.
    pub prefix: String,
}

/// What a key under a service's prefix holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    /// A host's record; the host's name.
    Host(&'a str),
    /// The service's decision.
    Decision,
    /// Not a key of ours.
    Other,
}

impl Keys {
    /// The layout under `prefix`; trailing slashes are dropped.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// Every key of `service` starts with this (it ends with `/`).
    pub fn service_prefix(&self, service: &str) -> String {
        format!("{}/{service}/", self.prefix)
    }

    /// Host `host`'s record for `service`.
    pub fn host(&self, service: &str, host: &str) -> String {
        format!("{}hosts/{host}", self.service_prefix(service))
    }

    /// The decision for `service`.
    pub fn decision(&self, service: &str) -> String {
        format!("{}decision", self.service_prefix(service))
    }

    /// What `key` holds for `service`.
    pub fn parse<'k>(&self, service: &str, key: &'k str) -> Key<'k> {
        let Some(rest) = key.strip_prefix(&self.service_prefix(service)) else {
            return Key::Other;
        };
        if rest == "decision" {
            return Key::Decision;
        }
        match rest.strip_prefix("hosts/") {
            Some(host) if !host.is_empty() && !host.contains('/') => Key::Host(host),
            _ => Key::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout_and_parse_back() {
        let keys = Keys::new("/redirector/");
        assert_eq!(keys.prefix, "/redirector");
        assert_eq!(keys.service_prefix("cache"), "/redirector/cache/");
        assert_eq!(keys.host("cache", "app-1"), "/redirector/cache/hosts/app-1");
        assert_eq!(keys.decision("cache"), "/redirector/cache/decision");
        assert_eq!(
            keys.parse("cache", &keys.host("cache", "app-1")),
            Key::Host("app-1")
        );
        assert_eq!(keys.parse("cache", &keys.decision("cache")), Key::Decision);
    }

    #[test]
    fn foreign_keys_are_not_ours() {
        let keys = Keys::new("/redirector");
        for key in [
            "/redirector/cache/hosts/",
            "/redirector/cache/hosts/a/b",
            "/redirector/cache/decisions",
            "/redirector/cache/other",
            "/redirector/cachex/decision",
            "/redirector/other/decision",
        ] {
            assert_eq!(keys.parse("cache", key), Key::Other, "{key}");
        }
    }
}

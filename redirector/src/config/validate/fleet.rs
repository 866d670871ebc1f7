//! `[fleet]`: the etcd cluster fleet services decide through, this host's
//! name in it, the lease and quorum that make a decision the fleet's, and
//! the TLS and credentials of the client. The password is the one value
//! read here rather than referenced: the etcd client needs it at connect
//! time, and a missing file should stop `validate`, not the first connect.

use std::{ops::Range, path::PathBuf, time::Duration};

use toml::Spanned;

use super::Ctx;
use crate::config::{
    addr::parse_host_port,
    defaults::{
        DEFAULT_DETACH_TIMEOUT, DEFAULT_FLEET_PREFIX, DEFAULT_FLEET_TIMEOUT, DEFAULT_LEASE_TTL,
        LEASE_TTL_RANGE, MAX_DETACH_TIMEOUT,
    },
    error::ConfigError,
    model::{Fleet, FleetAuth, FleetBarrier, FleetQuorum, FleetTls, OnDetach},
    raw::{At, RawFleet, RawFleetAuth, RawFleetTls, split},
};

/// The scheme of the endpoints, with where the first one says it.
struct Scheme {
    https: bool,
    span: Range<usize>,
}

impl Ctx<'_> {
    /// `[fleet]`, or `None` when the file has none.
    pub(super) fn fleet(
        &self,
        raw: Option<Spanned<RawFleet>>,
    ) -> Result<Option<Fleet>, ConfigError> {
        let Some((table, raw)) = raw.map(split) else {
            return Ok(None);
        };
        let (endpoints, scheme) = self.fleet_endpoints(raw.endpoints, &table)?;
        let prefix = self.fleet_prefix(raw.prefix)?;
        let host = self.fleet_host(raw.host, &table)?;

        let (span, lease_ttl) = self.bounded_duration(
            raw.lease_ttl,
            DEFAULT_LEASE_TTL,
            "fleet.lease_ttl",
            LEASE_TTL_RANGE,
        )?;
        if lease_ttl.subsec_nanos() != 0 {
            return Err(self.err(
                &span,
                "fleet.lease_ttl",
                format!(
                    "must be a whole number of seconds (etcd keeps lease TTLs in seconds), \
                     got {}",
                    humantime::format_duration(lease_ttl)
                ),
            ));
        }
        let (span, timeout) =
            self.duration(raw.timeout, DEFAULT_FLEET_TIMEOUT, "fleet.timeout", true)?;
        if timeout >= lease_ttl {
            return Err(self.err(
                &span,
                "fleet.timeout",
                format!(
                    "must be less than fleet.lease_ttl ({}), got {}: a request that outlasts \
                     the lease loses this host's place in the fleet",
                    humantime::format_duration(lease_ttl),
                    humantime::format_duration(timeout)
                ),
            ));
        }

        let quorum = self.fleet_quorum(raw.quorum)?;
        let barrier = self
            .choice(raw.barrier, "fleet.barrier", &FleetBarrier::NAMES)?
            .unwrap_or(FleetBarrier::None);
        let on_detach = self
            .choice(raw.on_detach, "fleet.on_detach", &OnDetach::NAMES)?
            .unwrap_or(OnDetach::Static);
        let detach_timeout_set = raw.detach_timeout.is_some();
        let detach_timeout = self.detach_timeout(raw.detach_timeout, lease_ttl)?;

        let tls = self.fleet_tls(raw.tls, &scheme)?;
        let auth = raw.auth.map(|a| self.fleet_auth(a)).transpose()?;
        Ok(Some(Fleet {
            endpoints,
            prefix,
            host,
            lease_ttl,
            timeout,
            quorum,
            barrier,
            on_detach,
            detach_timeout,
            detach_timeout_set,
            tls,
            auth,
        }))
    }

    /// `endpoints`: at least one `http://host:port` or `https://host:port`,
    /// no duplicates, all of one scheme.
    fn fleet_endpoints(
        &self,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
        table: &Range<usize>,
    ) -> Result<(Vec<String>, Scheme), ConfigError> {
        let (span, list) = raw.map(split).unwrap_or((table.clone(), Vec::new()));
        if list.is_empty() {
            return Err(self.err(
                &span,
                "fleet.endpoints",
                "at least one etcd endpoint is required \
                 (e.g. endpoints = [\"http://198.18.30.2:2379\"])",
            ));
        }
        let mut endpoints: Vec<String> = Vec::with_capacity(list.len());
        let mut scheme: Option<Scheme> = None;
        for (i, url) in list.into_iter().enumerate() {
            let (span, url) = split(url);
            let field = format!("fleet.endpoints[{i}]");
            let https = self.endpoint_is_https(&span, &field, &url)?;
            match &scheme {
                None => {
                    scheme = Some(Scheme {
                        https,
                        span: span.clone(),
                    });
                }
                Some(first) if first.https != https => {
                    return Err(self.err(
                        &span,
                        &field,
                        format!(
                            "{url:?} mixes http:// and https:// with fleet.endpoints[0]: \
                             use one scheme for every endpoint"
                        ),
                    ));
                }
                Some(_) => {}
            }
            if let Some(first) = endpoints.iter().position(|e| e.eq_ignore_ascii_case(&url)) {
                return Err(self.err(
                    &span,
                    &field,
                    format!("duplicate endpoint {url:?} (also fleet.endpoints[{first}])"),
                ));
            }
            endpoints.push(url);
        }
        let scheme = scheme.expect("the list is not empty");
        Ok((endpoints, scheme))
    }

    /// One endpoint URL: scheme, then `host:port` and nothing else.
    /// Returns whether it is `https://`.
    fn endpoint_is_https(
        &self,
        span: &Range<usize>,
        field: &str,
        url: &str,
    ) -> Result<bool, ConfigError> {
        let (https, authority) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(self.err(
                span,
                field,
                format!("invalid endpoint {url:?}: expected http://host:port or https://host:port"),
            ));
        };
        if authority.contains(['/', '?', '#', '@']) {
            return Err(self.err(
                span,
                field,
                format!(
                    "invalid endpoint {url:?}: expected only host:port after the scheme \
                     (no path, query or user)"
                ),
            ));
        }
        parse_host_port(authority)
            .map_err(|m| self.err(span, field, format!("invalid endpoint {url:?}: {m}")))?;
        Ok(https)
    }

    /// `prefix`: '/' then non-empty segments of printable ASCII, no
    /// trailing '/'.
    fn fleet_prefix(&self, raw: Option<Spanned<String>>) -> Result<String, ConfigError> {
        let Some((span, prefix)) = raw.map(split) else {
            return Ok(DEFAULT_FLEET_PREFIX.to_string());
        };
        let field = "fleet.prefix";
        let Some(rest) = prefix.strip_prefix('/') else {
            return Err(self.err(
                &span,
                field,
                format!("{prefix:?} must start with '/' (e.g. \"/redirector\")"),
            ));
        };
        if !prefix.chars().all(|c| c.is_ascii_graphic()) {
            return Err(self.err(
                &span,
                field,
                format!("{prefix:?} must be printable ASCII without spaces"),
            ));
        }
        if rest.split('/').any(str::is_empty) {
            return Err(self.err(
                &span,
                field,
                format!(
                    "{prefix:?} must not end with '/' or have empty segments ('//'): \
                     keys are written as <prefix>/<service>/..."
                ),
            ));
        }
        Ok(prefix)
    }

    /// `host`: as written, or this machine's hostname; non-empty, printable
    /// ASCII, no '/' (it is one key segment).
    fn fleet_host(
        &self,
        raw: Option<Spanned<String>>,
        table: &Range<usize>,
    ) -> Result<String, ConfigError> {
        let (span, host, what) = match raw.map(split) {
            Some((span, host)) => (span, host, "fleet.host"),
            None => {
                let host = hostname().map_err(|e| {
                    self.err(
                        table,
                        "fleet.host",
                        format!("cannot read this machine's hostname ({e}): set fleet.host"),
                    )
                })?;
                (table.clone(), host, "this machine's hostname")
            }
        };
        if host.is_empty() {
            return Err(self.err(&span, "fleet.host", format!("{what} must not be empty")));
        }
        if host.contains('/') || !host.chars().all(|c| c.is_ascii_graphic()) {
            return Err(self.err(
                &span,
                "fleet.host",
                format!(
                    "{what} {host:?} must be printable ASCII without spaces or '/' \
                     (it is one segment of an etcd key)"
                ),
            ));
        }
        Ok(host)
    }

    /// `quorum`: "majority" (the default) or a count of hosts, at least 1.
    fn fleet_quorum(&self, raw: Option<Spanned<toml::Value>>) -> Result<FleetQuorum, ConfigError> {
        let Some((span, value)) = raw.map(split) else {
            return Ok(FleetQuorum::Majority);
        };
        match value {
            toml::Value::String(s) if s == "majority" => Ok(FleetQuorum::Majority),
            toml::Value::Integer(n) if n >= 1 => u32::try_from(n)
                .map(FleetQuorum::Count)
                .map_err(|_| self.err(&span, "fleet.quorum", format!("{n} is too large"))),
            other => Err(self.err(
                &span,
                "fleet.quorum",
                format!("invalid value {other}: expected \"majority\" or a number of hosts >= 1"),
            )),
        }
    }

    /// `detach_timeout`: at least `lease_ttl`, at most a day. Omitted, it
    /// is 10 s, or `lease_ttl` when that is longer.
    fn detach_timeout(
        &self,
        raw: Option<Spanned<String>>,
        lease_ttl: Duration,
    ) -> Result<Duration, ConfigError> {
        let field = "fleet.detach_timeout";
        let default = DEFAULT_DETACH_TIMEOUT.max(lease_ttl);
        let (span, d) = self.duration(raw, default, field, true)?;
        if d < lease_ttl {
            return Err(self.err(
                &span,
                field,
                format!(
                    "must be at least fleet.lease_ttl ({}), got {}: a shorter wait would \
                     give up on etcd before this host's lease could expire",
                    humantime::format_duration(lease_ttl),
                    humantime::format_duration(d)
                ),
            ));
        }
        if d > MAX_DETACH_TIMEOUT {
            return Err(self.err(
                &span,
                field,
                format!(
                    "must be at most {}, got {}",
                    humantime::format_duration(MAX_DETACH_TIMEOUT),
                    humantime::format_duration(d)
                ),
            ));
        }
        Ok(d)
    }

    /// `[fleet.tls]`: required with https:// endpoints, refused with
    /// http:// ones.
    fn fleet_tls(
        &self,
        raw: Option<Spanned<RawFleetTls>>,
        scheme: &Scheme,
    ) -> Result<Option<FleetTls>, ConfigError> {
        let (table, raw) = match (raw.map(split), scheme.https) {
            (None, false) => return Ok(None),
            (None, true) => {
                return Err(self.err(
                    &scheme.span,
                    "fleet.tls",
                    "is required with https:// endpoints: add a [fleet.tls] table with ca",
                ));
            }
            (Some((table, _)), false) => {
                return Err(self.err(
                    &table,
                    "fleet.tls",
                    "is only used with https:// endpoints, and fleet.endpoints are http://",
                ));
            }
            (Some(t), true) => t,
        };
        let (span, ca) = self.required(raw.ca, &table, "fleet.tls.ca")?;
        let ca = self.path(&span, "fleet.tls.ca", ca)?;
        let cert = self.optional_path(raw.cert, "fleet.tls.cert")?;
        let key = self.optional_path(raw.key, "fleet.tls.key")?;
        match (&cert, &key) {
            (Some((span, _)), None) => {
                return Err(self.err(
                    span,
                    "fleet.tls.cert",
                    "requires fleet.tls.key (a client certificate needs its key)",
                ));
            }
            (None, Some((span, _))) => {
                return Err(self.err(
                    span,
                    "fleet.tls.key",
                    "requires fleet.tls.cert (a client key needs its certificate)",
                ));
            }
            _ => {}
        }
        let domain = match raw.domain.map(split) {
            Some((span, d)) if d.is_empty() => {
                return Err(self.err(&span, "fleet.tls.domain", "must not be empty"));
            }
            other => other.map(|(_, d)| d),
        };
        Ok(Some(FleetTls {
            ca,
            cert: cert.map(|(_, c)| c),
            key: key.map(|(_, k)| k),
            domain,
        }))
    }

    /// `[fleet.auth]`: user and the password read from `password_file`
    /// (trailing newline trimmed). Errors name the file, never its content.
    fn fleet_auth(&self, raw: Spanned<RawFleetAuth>) -> Result<FleetAuth, ConfigError> {
        let (table, raw) = split(raw);
        let (span, user) = self.required(raw.user, &table, "fleet.auth.user")?;
        if user.is_empty() {
            return Err(self.err(&span, "fleet.auth.user", "must not be empty"));
        }
        let field = "fleet.auth.password_file";
        let (span, file) = self.required(raw.password_file, &table, field)?;
        let path = self.path(&span, field, file)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| self.err(&span, field, format!("cannot read {}: {e}", path.display())))?;
        let password = text.trim_end_matches(['\r', '\n']).to_string();
        if password.is_empty() {
            return Err(self.err(
                &span,
                field,
                format!(
                    "{} is empty: it must hold the etcd password",
                    path.display()
                ),
            ));
        }
        Ok(FleetAuth { user, password })
    }

    /// A non-empty path.
    fn path(&self, span: &Range<usize>, field: &str, text: String) -> Result<PathBuf, ConfigError> {
        if text.is_empty() {
            return Err(self.err(span, field, "must not be empty"));
        }
        Ok(PathBuf::from(text))
    }

    /// A non-empty path, or `None` when absent.
    fn optional_path(
        &self,
        raw: Option<Spanned<String>>,
        field: &str,
    ) -> Result<Option<At<PathBuf>>, ConfigError> {
        raw.map(split)
            .map(|(span, text)| self.path(&span, field, text).map(|p| (span, p)))
            .transpose()
    }
}

/// This machine's hostname, as gethostname(2) reports it (the UTS
/// namespace's, so a pod gets its own).
fn hostname() -> std::io::Result<String> {
    // HOST_NAME_MAX is 64 on Linux; the rest is room for the NUL.
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole
    // call, and gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..len].to_vec())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

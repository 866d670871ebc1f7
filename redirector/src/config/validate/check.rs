//! `[services.check]`: the check kind, its timing (interval, timeout,
//! fast_interval) and its rise/fall counts, and the rule that a
//! kind-specific key is only accepted by the kinds that use it. Each kind's
//! own options are validated in `check_options`, the reactive policy
//! (observe, error_limit, on_error) in `observe`.

use std::{ops::Range, time::Duration};

use toml::Spanned;

use super::Ctx;
use crate::config::{
    defaults::{
        CHECK_DURATION_RANGE, DEFAULT_FALL, DEFAULT_FAST_INTERVAL, DEFAULT_INTERVAL, DEFAULT_RISE,
        DEFAULT_TIMEOUT,
    },
    error::ConfigError,
    model::{Check, CheckKind},
    raw::{At, RawCheck, split},
};

/// The kind when `check.kind` is omitted.
const DEFAULT_KIND: &str = "redis-ping";

/// Kinds (by name) that accept each group of kind-specific keys.
const REDIS: &[&str] = &["redis-ping", "redis-echo", "redis-setget"];
const CREDENTIALS: &[&str] = &["redis-ping", "redis-echo", "redis-setget", "availability"];
const SETGET: &[&str] = &["redis-setget"];
const AVAILABILITY: &[&str] = &["availability"];
const EXEC: &[&str] = &["exec"];

/// A kind-specific check key: its name, where it was set (if it was), and
/// the kinds (by name) that accept it.
type KeyKinds = (&'static str, Option<Range<usize>>, &'static [&'static str]);

/// The timing and counts of a check, whatever its kind.
struct Timing {
    interval: Duration,
    timeout: Duration,
    fast_interval: Duration,
    rise: u32,
    fall: u32,
}

impl Ctx<'_> {
    /// The check of `service` (a field prefix such as `services[0]`); an
    /// absent table is a redis-ping check with every default.
    pub(super) fn check(
        &self,
        service: &str,
        raw: Option<Spanned<RawCheck>>,
    ) -> Result<Check, ConfigError> {
        let p = format!("{service}.check");
        let (table, mut raw) = raw.map(split).unwrap_or((0..0, RawCheck::default()));

        let (kind_span, kind) = self.kind_name(raw.kind.take(), &p)?;
        let timing = self.timing(&mut raw, &p)?;
        let observe = self.observe(&mut raw, &p)?;
        self.reject_keys_of_other_kinds(&raw, kind, &p)?;
        let credentials = self.credentials(&mut raw, &p)?;
        let kind = match kind {
            "tcp" => CheckKind::Tcp,
            "redis-ping" => CheckKind::RedisPing(self.redis_options(&raw, &credentials, &p)?),
            "redis-echo" => CheckKind::RedisEcho(self.redis_options(&raw, &credentials, &p)?),
            "redis-setget" => self.setget(&mut raw, &credentials, &p)?,
            "availability" => self.availability(&mut raw, credentials, &table, &p)?,
            "exec" => self.exec(&mut raw, &table, &p)?,
            // `kind_name` only returns one of `CheckKind::NAMES`, each
            // matched above; should the two lists ever drift apart, the
            // file is rejected rather than the daemon panicking.
            other => return Err(self.unknown_kind(&kind_span, &p, other)),
        };

        Ok(Check {
            kind,
            interval: timing.interval,
            timeout: timing.timeout,
            fast_interval: timing.fast_interval,
            rise: timing.rise,
            fall: timing.fall,
            observe,
        })
    }

    /// `check.kind`: one of [`CheckKind::NAMES`], redis-ping when absent.
    fn kind_name(
        &self,
        raw: Option<Spanned<String>>,
        p: &str,
    ) -> Result<At<&'static str>, ConfigError> {
        let Some((span, name)) = raw.map(split) else {
            return Ok((0..0, DEFAULT_KIND));
        };
        match CheckKind::NAMES.into_iter().find(|known| *known == name) {
            Some(known) => Ok((span, known)),
            None => Err(self.unknown_kind(&span, p, &name)),
        }
    }

    fn unknown_kind(&self, span: &Range<usize>, p: &str, name: &str) -> ConfigError {
        self.err(
            span,
            &format!("{p}.kind"),
            format!(
                "unknown check kind {name:?}: expected one of {}",
                CheckKind::NAMES.join(", ")
            ),
        )
    }

    /// interval, timeout and fast_interval (neither longer than interval),
    /// rise and fall.
    fn timing(&self, raw: &mut RawCheck, p: &str) -> Result<Timing, ConfigError> {
        let f = |key: &str| format!("{p}.{key}");
        let (_, interval) = self.bounded_duration(
            raw.interval.take(),
            DEFAULT_INTERVAL,
            &f("interval"),
            CHECK_DURATION_RANGE,
        )?;
        let (span, timeout) = self.bounded_duration(
            raw.timeout.take(),
            DEFAULT_TIMEOUT,
            &f("timeout"),
            CHECK_DURATION_RANGE,
        )?;
        if timeout > interval {
            return Err(self.err(
                &span,
                &f("timeout"),
                format!(
                    "timeout {} is longer than interval {}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            ));
        }
        let (span, fast_interval) = self.bounded_duration(
            raw.fast_interval.take(),
            DEFAULT_FAST_INTERVAL,
            &f("fast_interval"),
            CHECK_DURATION_RANGE,
        )?;
        if fast_interval > interval {
            return Err(self.err(
                &span,
                &f("fast_interval"),
                format!(
                    "fast_interval {} is longer than interval {}",
                    humantime::format_duration(fast_interval),
                    humantime::format_duration(interval)
                ),
            ));
        }
        let rise = self.count(raw.rise.take(), DEFAULT_RISE, &f("rise"))?;
        let fall = self.count(raw.fall.take(), DEFAULT_FALL, &f("fall"))?;
        Ok(Timing {
            interval,
            timeout,
            fast_interval,
            rise,
            fall,
        })
    }

    /// A key that only other kinds accept is an error at that key, so a
    /// misplaced option never silently does nothing.
    fn reject_keys_of_other_kinds(
        &self,
        raw: &RawCheck,
        kind: &str,
        p: &str,
    ) -> Result<(), ConfigError> {
        let applicable: [KeyKinds; 13] = [
            (
                "username",
                raw.username.as_ref().map(Spanned::span),
                CREDENTIALS,
            ),
            (
                "password_file",
                raw.password_file.as_ref().map(Spanned::span),
                CREDENTIALS,
            ),
            (
                "password_env",
                raw.password_env.as_ref().map(Spanned::span),
                CREDENTIALS,
            ),
            ("tls", raw.tls.as_ref().map(Spanned::span), REDIS),
            (
                "ca_file",
                raw.ca_file.as_ref().map(Spanned::span),
                CREDENTIALS,
            ),
            (
                "server_name",
                raw.server_name.as_ref().map(Spanned::span),
                CREDENTIALS,
            ),
            ("cluster", raw.cluster.as_ref().map(Spanned::span), SETGET),
            (
                "key_prefix",
                raw.key_prefix.as_ref().map(Spanned::span),
                SETGET,
            ),
            ("ttl", raw.ttl.as_ref().map(Spanned::span), SETGET),
            (
                "bdb_uid",
                raw.bdb_uid.as_ref().map(Spanned::span),
                AVAILABILITY,
            ),
            ("port", raw.port.as_ref().map(Spanned::span), AVAILABILITY),
            (
                "lag_tolerance_ms",
                raw.lag_tolerance_ms.as_ref().map(Spanned::span),
                AVAILABILITY,
            ),
            ("command", raw.command.as_ref().map(Spanned::span), EXEC),
        ];
        for (key, span, kinds) in applicable {
            if let Some(span) = span
                && !kinds.contains(&kind)
            {
                return Err(self.err(
                    &span,
                    &format!("{p}.{key}"),
                    format!("only valid for {}", describe_kinds(kinds)),
                ));
            }
        }
        Ok(())
    }
}

/// "kind exec", "kinds redis-ping, redis-echo, redis-setget".
fn describe_kinds(kinds: &[&str]) -> String {
    if kinds.len() == 1 {
        format!("kind {}", kinds.join(""))
    } else {
        format!("kinds {}", kinds.join(", "))
    }
}

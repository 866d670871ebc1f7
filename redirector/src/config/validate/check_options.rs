//! The options of each check kind: the credentials and TLS settings the
//! Redis kinds and availability share, then one function per kind that
//! needs more (redis-setget, availability, exec). tcp has no options.

use std::{ops::Range, path::PathBuf};

use toml::Spanned;

use super::Ctx;
use crate::config::{
    defaults::{
        CHECK_DURATION_RANGE, DEFAULT_AVAILABILITY_PORT, DEFAULT_KEY_PREFIX,
        DEFAULT_LAG_TOLERANCE_MS, DEFAULT_SETGET_TTL,
    },
    error::ConfigError,
    model::{AvailabilityOptions, CheckKind, RedisOptions, Secret, TlsOptions},
    raw::{At, RawCheck, split},
};

/// username, password and the TLS names, each checked on its own; whether
/// a kind needs or allows them is decided by the kind.
pub(super) struct Credentials {
    username: Option<String>,
    password: Option<Secret>,
    ca_file: Option<At<PathBuf>>,
    server_name: Option<At<String>>,
}

impl Ctx<'_> {
    /// username, password_file or password_env, ca_file and server_name:
    /// none may be empty.
    pub(super) fn credentials(
        &self,
        raw: &mut RawCheck,
        p: &str,
    ) -> Result<Credentials, ConfigError> {
        let f = |key: &str| format!("{p}.{key}");
        let username = match raw.username.take().map(split) {
            Some((span, u)) if u.is_empty() => {
                return Err(self.err(&span, &f("username"), "must not be empty"));
            }
            other => other.map(|(_, u)| u),
        };
        let password = self.secret(raw.password_file.take(), raw.password_env.take(), p)?;
        let ca_file = match raw.ca_file.take().map(split) {
            Some((span, c)) if c.is_empty() => {
                return Err(self.err(&span, &f("ca_file"), "must not be empty"));
            }
            other => other.map(|(span, c)| (span, PathBuf::from(c))),
        };
        let server_name = match raw.server_name.take().map(split) {
            Some((span, s)) if s.is_empty() => {
                return Err(self.err(&span, &f("server_name"), "must not be empty"));
            }
            other => other,
        };
        Ok(Credentials {
            username,
            password,
            ca_file,
            server_name,
        })
    }

    /// The options of a Redis kind: ca_file and server_name require
    /// `tls = true`.
    pub(super) fn redis_options(
        &self,
        raw: &RawCheck,
        credentials: &Credentials,
        p: &str,
    ) -> Result<RedisOptions, ConfigError> {
        let Credentials {
            username,
            password,
            ca_file,
            server_name,
        } = credentials;
        let tls_on = raw.tls.as_ref().is_some_and(|t| *t.get_ref());
        let tls = if tls_on {
            Some(TlsOptions {
                ca_file: ca_file.clone().map(|(_, c)| c),
                server_name: server_name.clone().map(|(_, s)| s),
            })
        } else {
            if let Some((span, _)) = ca_file {
                return Err(self.err(span, &format!("{p}.ca_file"), "requires tls = true"));
            }
            if let Some((span, _)) = server_name {
                return Err(self.err(span, &format!("{p}.server_name"), "requires tls = true"));
            }
            None
        };
        Ok(RedisOptions {
            username: username.clone(),
            password: password.clone(),
            tls,
        })
    }

    /// redis-setget: ttl, key_prefix and cluster, then the Redis options.
    pub(super) fn setget(
        &self,
        raw: &mut RawCheck,
        credentials: &Credentials,
        p: &str,
    ) -> Result<CheckKind, ConfigError> {
        let (_, ttl) = self.bounded_duration(
            raw.ttl.take(),
            DEFAULT_SETGET_TTL,
            &format!("{p}.ttl"),
            CHECK_DURATION_RANGE,
        )?;
        let key_prefix = match raw.key_prefix.take().map(split) {
            Some((span, k)) if k.is_empty() => {
                return Err(self.err(&span, &format!("{p}.key_prefix"), "must not be empty"));
            }
            Some((_, k)) => k,
            None => DEFAULT_KEY_PREFIX.to_string(),
        };
        Ok(CheckKind::RedisSetGet {
            redis: self.redis_options(raw, credentials, p)?,
            cluster: raw.cluster.take().is_some_and(|c| c.into_inner()),
            key_prefix,
            ttl,
        })
    }

    /// availability: bdb_uid, username and a password are required; TLS is
    /// always on (the REST API is HTTPS).
    pub(super) fn availability(
        &self,
        raw: &mut RawCheck,
        credentials: Credentials,
        table: &Range<usize>,
        p: &str,
    ) -> Result<CheckKind, ConfigError> {
        let f = |key: &str| format!("{p}.{key}");
        let (_, bdb_uid) = self.required(raw.bdb_uid.take(), table, &f("bdb_uid"))?;
        let port = match raw.port.take().map(split) {
            Some((span, 0)) => {
                return Err(self.err(&span, &f("port"), "port must be 1..65535, got 0"));
            }
            Some((_, port)) => port,
            None => DEFAULT_AVAILABILITY_PORT,
        };
        let username = credentials
            .username
            .ok_or_else(|| self.err(table, &f("username"), "is required for kind availability"))?;
        let password = credentials.password.ok_or_else(|| {
            self.err(
                table,
                &f("password_file"),
                "password_file or password_env is required for kind availability",
            )
        })?;
        Ok(CheckKind::Availability(AvailabilityOptions {
            port,
            bdb_uid,
            lag_tolerance_ms: raw
                .lag_tolerance_ms
                .take()
                .map_or(DEFAULT_LAG_TOLERANCE_MS, Spanned::into_inner),
            username,
            password,
            tls: TlsOptions {
                ca_file: credentials.ca_file.map(|(_, c)| c),
                server_name: credentials.server_name.map(|(_, s)| s),
            },
        }))
    }

    /// exec: a command whose first element names the program.
    pub(super) fn exec(
        &self,
        raw: &mut RawCheck,
        table: &Range<usize>,
        p: &str,
    ) -> Result<CheckKind, ConfigError> {
        let field = format!("{p}.command");
        let (span, command) = raw
            .command
            .take()
            .map(split)
            .ok_or_else(|| self.err(table, &field, "is required for kind exec"))?;
        if command.first().is_none_or(|c| c.is_empty()) {
            return Err(self.err(
                &span,
                &field,
                "must be a non-empty argv whose first element is the program",
            ));
        }
        Ok(CheckKind::Exec { command })
    }

    /// password_file or password_env (at most one), or neither.
    fn secret(
        &self,
        file: Option<Spanned<String>>,
        env: Option<Spanned<String>>,
        p: &str,
    ) -> Result<Option<Secret>, ConfigError> {
        match (file.map(split), env.map(split)) {
            (Some(_), Some((span, _))) => Err(self.err(
                &span,
                &format!("{p}.password_env"),
                "at most one of password_file and password_env may be set",
            )),
            (Some((span, f)), None) => {
                if f.is_empty() {
                    Err(self.err(&span, &format!("{p}.password_file"), "must not be empty"))
                } else {
                    Ok(Some(Secret::File(PathBuf::from(f))))
                }
            }
            (None, Some((span, v))) => {
                if v.is_empty() || v.contains(['=', '\0']) {
                    Err(self.err(
                        &span,
                        &format!("{p}.password_env"),
                        format!("invalid environment variable name {v:?}"),
                    ))
                } else {
                    Ok(Some(Secret::Env(v)))
                }
            }
            (None, None) => Ok(None),
        }
    }
}

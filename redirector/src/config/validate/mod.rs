//! Validation: raw serde values in, the typed model out, one submodule per
//! section. The first error wins and names the file, line, column and
//! dotted field; the order of the checks is the order the errors are
//! reported in, so it is kept stable.

mod admin;
mod check;
mod check_options;
mod datapath;
mod fleet;
mod member;
mod observe;
mod service;

use std::{collections::HashMap, ops::Range, path::Path, time::Duration};

use toml::Spanned;

use super::{
    defaults::COUNT_RANGE,
    error::ConfigError,
    model::Config,
    raw::{At, RawConfig, split},
    span::{field_at, line_col},
};

/// The text being validated and the name of its file: what every error
/// needs to say where it is.
pub(super) struct Ctx<'a> {
    text: &'a str,
    file: String,
}

impl<'a> Ctx<'a> {
    /// Validation of `text`; `path` only names the file in errors.
    pub(super) fn new(text: &'a str, path: &Path) -> Self {
        Ctx {
            text,
            file: path.display().to_string(),
        }
    }

    /// An error at `span`, naming `field`.
    fn err(&self, span: &Range<usize>, field: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError::Invalid {
            file: self.file.clone(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The TOML parser's own error, placed and named like ours.
    pub(super) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let field = field_at(self.text, span.start);
        let message = e.message().trim().lines().collect::<Vec<_>>().join("; ");
        self.err(&span, &field, message)
    }

    /// A key that must be present; missing, the error points at `table`.
    fn required<T>(
        &self,
        value: Option<Spanned<T>>,
        table: &Range<usize>,
        field: &str,
    ) -> Result<At<T>, ConfigError> {
        value
            .map(split)
            .ok_or_else(|| self.err(table, field, "is required"))
    }

    /// The whole file: every section in order, first error wins.
    pub(super) fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let datapath = self.datapath(raw.datapath)?;
        let admin = self.admin(raw.admin.unwrap_or_default())?;
        let fleet = self.fleet(raw.fleet)?;
        let (span, list) = raw.services.map(split).unwrap_or((0..0, Vec::new()));
        if list.is_empty() {
            return Err(self.err(
                &span,
                "services",
                "at least one [[services]] table is required",
            ));
        }
        let mut names = HashMap::new();
        let mut vips = HashMap::new();
        let services = list
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.service(i, s, fleet.is_some(), &mut names, &mut vips))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Config {
            datapath,
            admin,
            fleet,
            services,
        })
    }

    /// A service or member name: non-empty, `A-Za-z0-9_.-` only.
    fn check_name(&self, span: &Range<usize>, field: &str, name: &str) -> Result<(), ConfigError> {
        if name.is_empty() {
            return Err(self.err(span, field, "must not be empty"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(self.err(
                span,
                field,
                format!("invalid name {name:?}: use only A-Z, a-z, 0-9, '_', '.', '-'"),
            ));
        }
        Ok(())
    }

    /// A humantime duration within `range` (inclusive), or `default`.
    fn bounded_duration(
        &self,
        value: Option<Spanned<String>>,
        default: Duration,
        field: &str,
        (min, max): (Duration, Duration),
    ) -> Result<At<Duration>, ConfigError> {
        let (span, d) = self.duration(value, default, field, !min.is_zero())?;
        if d < min || d > max {
            return Err(self.err(
                &span,
                field,
                format!(
                    "must be between {} and {}, got {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max),
                    humantime::format_duration(d)
                ),
            ));
        }
        Ok((span, d))
    }

    /// A humantime duration, or `default` when absent.
    fn duration(
        &self,
        value: Option<Spanned<String>>,
        default: Duration,
        field: &str,
        positive: bool,
    ) -> Result<At<Duration>, ConfigError> {
        let Some((span, text)) = value.map(split) else {
            return Ok((0..0, default));
        };
        let d = humantime::parse_duration(&text).map_err(|e| {
            self.err(
                &span,
                field,
                format!("invalid duration {text:?}: {e} (e.g. \"250ms\", \"30s\")"),
            )
        })?;
        if positive && d.is_zero() {
            return Err(self.err(&span, field, "must be greater than 0"));
        }
        Ok((span, d))
    }
    /// A count within [`COUNT_RANGE`], or `default`.
    fn count(
        &self,
        value: Option<Spanned<u32>>,
        default: u32,
        field: &str,
    ) -> Result<u32, ConfigError> {
        self.bounded_count(value, default, field, COUNT_RANGE)
    }

    /// A count within `range` (inclusive), or `default`.
    fn bounded_count(
        &self,
        value: Option<Spanned<u32>>,
        default: u32,
        field: &str,
        (min, max): (u32, u32),
    ) -> Result<u32, ConfigError> {
        match value.map(split) {
            None => Ok(default),
            Some((span, n)) if n < min || n > max => Err(self.err(
                &span,
                field,
                format!("must be at least {min} and at most {max}, got {n}"),
            )),
            Some((_, n)) => Ok(n),
        }
    }
}

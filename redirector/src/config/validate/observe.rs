//! `[services.check]` observe, error_limit and on_error: the reactive
//! health policy. Apart from the check's timing because they say what the
//! application's own traffic does to a member's health, not how to probe.

use toml::Spanned;

use super::Ctx;
use crate::config::{
    defaults::ERROR_LIMIT_RANGE,
    error::ConfigError,
    model::{Observe, ObserveMode, OnError},
    raw::{RawCheck, split},
};

impl Ctx<'_> {
    /// observe (default "layer4"), error_limit (1..=1000, default 1) and
    /// on_error (default "fail-check").
    pub(super) fn observe(&self, raw: &mut RawCheck, p: &str) -> Result<Observe, ConfigError> {
        let defaults = Observe::default();
        let mode = self
            .choice(
                raw.observe.take(),
                &format!("{p}.observe"),
                &ObserveMode::NAMES,
            )?
            .unwrap_or(defaults.mode);
        let mut keys_set = Vec::new();
        let error_limit = raw.error_limit.take();
        if error_limit.is_some() {
            keys_set.push("error_limit");
        }
        let error_limit = self.bounded_count(
            error_limit,
            defaults.error_limit,
            &format!("{p}.error_limit"),
            ERROR_LIMIT_RANGE,
        )?;
        let on_error = self.choice(
            raw.on_error.take(),
            &format!("{p}.on_error"),
            &OnError::NAMES,
        )?;
        if on_error.is_some() {
            keys_set.push("on_error");
        }
        Ok(Observe {
            mode,
            error_limit,
            on_error: on_error.unwrap_or(defaults.on_error),
            keys_set,
        })
    }

    /// One of `names` (as written, with its value), or `None` when absent.
    pub(super) fn choice<T: Copy>(
        &self,
        raw: Option<Spanned<String>>,
        field: &str,
        names: &[(&'static str, T)],
    ) -> Result<Option<T>, ConfigError> {
        let Some((span, text)) = raw.map(split) else {
            return Ok(None);
        };
        match names.iter().find(|(name, _)| *name == text) {
            Some((_, value)) => Ok(Some(*value)),
            None => Err(self.err(
                &span,
                field,
                format!("invalid value {text:?}: expected {}", one_of(names)),
            )),
        }
    }
}

/// `"a" or "b"`, `"a", "b" or "c"`.
fn one_of<T>(names: &[(&'static str, T)]) -> String {
    let quoted: Vec<String> = names.iter().map(|(n, _)| format!("{n:?}")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

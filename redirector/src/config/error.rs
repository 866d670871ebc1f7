//! Why a configuration was rejected: the one error type of this module,
//! with the file, line, column and dotted field of the offending value.

use std::path::PathBuf;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid configuration. `line` and `column` are
    /// 1-based and point at the offending value (or its table when the value
    /// is missing); `field` is a dotted path such as
    /// `services[1].members[0].addr`.
    #[error("{file}:{line}:{column}: {field}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
}

impl ConfigError {
    /// 1-based line of the offending value; 0 when the file was unreadable.
    pub fn line(&self) -> usize {
        match self {
            ConfigError::Read { .. } => 0,
            ConfigError::Invalid { line, .. } => *line,
        }
    }

    /// 1-based column of the offending value; 0 when the file was unreadable.
    pub fn column(&self) -> usize {
        match self {
            ConfigError::Read { .. } => 0,
            ConfigError::Invalid { column, .. } => *column,
        }
    }

    /// Dotted path of the offending field; empty when the file was unreadable.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::Read { .. } => "",
            ConfigError::Invalid { field, .. } => field,
        }
    }

    /// What is wrong, without the location.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Read { source, .. } => format!("cannot read config: {source}"),
            ConfigError::Invalid { message, .. } => message.clone(),
        }
    }
}

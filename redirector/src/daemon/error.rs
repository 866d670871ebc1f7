//! Why the daemon refused an operator command or a reload. The admin API
//! sends the text (with its causes) back to the CLI; nothing branches on it.

use std::path::PathBuf;

use crate::{
    config::ConfigError, datapath::DatapathError, decide::OpError, health::PreflightError,
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No service of that name runs.
    #[error("no service named {0:?}")]
    NoService(String),
    /// The service has no member of that name.
    #[error("service {service} has no member {member:?}")]
    NoMember { service: String, member: String },
    /// The decision state machine refused the command.
    #[error(transparent)]
    Refused(#[from] OpError),
    /// The service's task is being restarted by its supervisor.
    #[error("service {0} is not running")]
    NotRunning(String),
    /// The service's task ended before it answered.
    #[error("service {0} stopped")]
    Stopped(String),
    /// The new config file does not parse or validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A reload cannot move the pins.
    #[error(
        "datapath.pin_path cannot change on reload ({} -> {}); restart the daemon",
        from.display(),
        to.display()
    )]
    PinPathChanged { from: PathBuf, to: PathBuf },
    /// A reload cannot move the admin socket or the metrics endpoint.
    #[error("the [admin] section cannot change on reload; restart the daemon")]
    AdminChanged,
    /// A checker of the new config cannot be built (secret, CA file).
    #[error(transparent)]
    Checkers(#[from] PreflightError),
    /// A reload cannot change how the host joins the fleet.
    #[error("the [fleet] section cannot change on reload; restart the daemon")]
    FleetChanged,
    /// The fleet could not carry out an operator action.
    #[error("fleet service {service}: {source}")]
    Fleet {
        service: String,
        #[source]
        source: super::fleet_agent::FleetOpFailed,
    },
    /// The data path could not be loaded or attached with the new config.
    #[error("loading the data path")]
    Datapath(#[source] DatapathError),
}

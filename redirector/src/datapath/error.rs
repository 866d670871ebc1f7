//! Data-path errors. Each names the interface, map or path involved and,
//! where there is one, what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(
        "missing capability: {missing} (run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
    )]
    MissingCapability { missing: String },

    #[error("interface {name:?} does not exist in this network namespace")]
    NoSuchInterface { name: String },

    #[error(
        "{path} is not on a bpffs mount (mount one with `mount -t bpf bpf {}`)",
        path.parent().map(|p| p.display().to_string()).unwrap_or_default()
    )]
    NotBpffs { path: PathBuf },

    #[error("kernel {found} is too old: TCX attachment needs Linux 6.6 or newer")]
    KernelTooOld { found: String },

    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),

    #[error("program {program} failed to load (verifier or kernel rejected it): {source}")]
    Program {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },

    #[error("attaching {program} to {interface} ({hook}) failed: {source}")]
    Attach {
        program: &'static str,
        interface: String,
        hook: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },

    #[error(
        "native XDP is not supported on {interface} ({reason}); use ingress = \"auto\" or \"tc\""
    )]
    XdpUnsupported { interface: String, reason: String },

    #[error("pin {path}: {message}")]
    Pin { path: PathBuf, message: String },

    #[error(
        "pinned map {map} has an incompatible layout ({detail}); run `redirector teardown` to remove the old data path"
    )]
    IncompatibleMap { map: &'static str, detail: String },

    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },

    #[error("no data path is pinned at {path} (is `redirector run` running?)")]
    NotLoaded { path: PathBuf },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

//! redirector: kernel-level failover for Active-Active databases.
//!
//! Applications connect to a VIP; eBPF programs rewrite it to the member the
//! daemon chose. This library holds the loader and the typed map facade
//! (`datapath`); the daemon and CLI are built on it.

pub mod datapath;
pub mod config;
pub mod decide;

//! redirector: kernel-level failover for Active-Active databases.
//!
//! Applications connect to a VIP; eBPF programs rewrite it to the member the
//! daemon chose. The library holds every part of the daemon, one module per
//! responsibility: `config`, `health` (checkers), `decide` (the pure state
//! machine), `fleet` (the coordination engine for fleet mode), `datapath` (loader and map facade), `daemon` (tasks and the map
//! writer), `admin` (Unix-socket API), `lock` (one daemon per pin path), `logging`, `metrics`, `status` and `cli`.

pub mod admin;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod datapath;
pub mod decide;
pub mod error_chain;
pub mod fleet;
pub mod health;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod resolve;
pub mod status;

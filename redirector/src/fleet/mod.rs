//! Fleet mode's coordination layer: what the hosts of a fleet share
//! through an engine (etcd today), behind the `Engine` trait the daemon's
//! fleet agent uses. The decision rule itself is pure and lives in
//! `decide::fleet`; this module only stores, reads and watches.
//!
//! - `keys`: where records live (`{prefix}/{service}/hosts/{host}`,
//!   `{prefix}/{service}/decision`);
//! - `wire`: the records, as JSON, with members named;
//! - `engine`: the trait, its snapshot/event/error types;
//! - `etcd`: the trait on etcd; `memory`: in memory, for tests.

pub mod engine;
pub mod etcd;
pub mod keys;
pub mod memory;
pub mod wire;

pub use engine::{Engine, EngineError, Event, LeaseId, Revision, Snapshot, Watch};
pub use etcd::{EtcdEngine, EtcdOptions, EtcdTls};
pub use keys::{Key, Keys};
pub use memory::MemoryEngine;
pub use wire::{DecisionRecord, HostRecord, SeenRecord, WireError};

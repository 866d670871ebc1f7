//! The data path from userspace: load or adopt the kernel programs, attach
//! them to interfaces, pin everything under the pin path, and read/write the
//! maps through a typed facade. A single owner (the daemon's map writer) uses
//! [`Maps`]; everything persists in bpffs, so the daemon may exit or crash
//! and traffic keeps flowing on the last decision.

pub mod clock;
mod error;
mod flow_table;
mod loader;
mod maps;
mod pinned;
mod signal_events;
pub mod system;

pub use error::DatapathError;
pub use flow_table::{FlowTable, Lifetimes, Sweep, Verdict, verdict};
pub use loader::{
    Attachment, Datapath, EGRESS_PROGRAM, Hook, INGRESS_PROGRAM, IngressMode, Options, XDP_PROGRAM,
    load_programs, load_programs_with, pins_exist, teardown,
};
pub use maps::{FlowEntry, Maps, ServiceEntry, Stats};
pub use signal_events::SignalEvents;

//! Types and pure logic shared by the kernel programs and the daemon.
//!
//! Everything the two sides must agree on is defined once here: map names and
//! sizes, the `#[repr(C)]` key/value layouts (no implicit padding, addresses as
//! network-order bytes), the stats indices, and the packet logic that can be
//! tested on the host (checksums and header parsing).
#![no_std]

pub mod csum;
pub mod flow;
pub mod icmp;
pub mod maps;
pub mod parse;
pub mod schema;
pub mod signal;
pub mod stats;

pub use maps::*;
pub use schema::*;
pub use stats::Stat;

#[cfg(any(test, feature = "builder"))]
pub mod builder;

//! Test support for the kernel-facing tests: network namespaces, a
//! two-member topology with real redis-server processes, a real etcd
//! cluster and a topology of several application hosts (one daemon each)
//! for the fleet tests, throwaway certificates for the TLS tests, unique
//! bpffs pin directories, and a minimal RESP client. Every resource is
//! released on Drop, so a failing test leaves nothing behind.
//!
//! The tests themselves are in `src/tests/`. Those that need root say so
//! with `#[ignore = "needs root: …"]`, so a plain `cargo test` passes as
//! any user; `cargo xtask test` runs them all as root (`--include-ignored`).

pub mod daemon;
pub mod etcd;
pub mod fleet_topology;
pub mod netns;
pub mod pins;
pub mod pki;
pub mod resp;
pub mod testrun;
pub mod topology;

#[cfg(test)]
mod tests;

/// A name unique to this process and call, under the prefix every test
/// resource carries (`rdt`), so cleanup checks can find leftovers.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "rdt{}{}-{tag}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The prefix of every namespace and pin directory the tests create.
pub const PREFIX: &str = "rdt";

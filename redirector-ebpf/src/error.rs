//! Typed kernel-side errors. Each is counted in `STATS`; none is logged.

use redirector_common::Stat;

#[derive(Clone, Copy)]
pub enum Error {
    /// Shorter than its headers claim: passed untouched.
    Malformed,
    /// A CONNTRACK/REVERSE_NAT insert failed: passed untouched.
    MapUpdate,
    /// A store or checksum helper failed after the packet was modified.
    Rewrite,
}

impl Error {
    pub const fn stat(self) -> Stat {
        match self {
            Error::Malformed => Stat::Malformed,
            Error::MapUpdate => Stat::MapUpdateFailed,
            Error::Rewrite => Stat::RewriteFailed,
        }
    }

    /// Whether the packet may still be untouched. A half-rewritten packet
    /// would carry a wrong checksum or a wrong address, so it is dropped and
    /// TCP retransmits it.
    pub const fn packet_untouched(self) -> bool {
        !matches!(self, Error::Rewrite)
    }
}

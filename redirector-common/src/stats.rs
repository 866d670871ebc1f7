//! Indices of the per-CPU `STATS` counters, shared by kernel and daemon.

/// One counter in the per-CPU `STATS` array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Packets that were not ours and left untouched.
    Passed = 0,
    /// Egress packets rewritten from a VIP to a member.
    Translated = 1,
    /// Ingress replies rewritten from a member back to the VIP.
    ReverseTranslated = 2,
    /// Flows newly pinned to the active member (SYN or unknown flow).
    NewFlows = 3,
    /// Packets of a flow on a down member steered to the active member.
    Steered = 4,
    /// Truncated or malformed packets (passed untouched).
    Malformed = 5,
    /// A conntrack or reverse-NAT update failed (packet passed untouched).
    MapUpdateFailed = 6,
    /// A checksum or store helper failed.
    RewriteFailed = 7,
    /// The FIB gave no next hop for the member (no route, or forwarding off
    /// on the interface): the rewritten packet kept the VIP route's next hop.
    FibFallback = 8,
    /// Reply entries of old VIP flows removed because a direct connection
    /// to the member reused their 4-tuple.
    StaleRepliesRemoved = 9,
    /// Flows whose entries the data path removed after FINs from both
    /// sides and the last ACK.
    FlowsClosed = 10,
    /// Flows whose entries the data path removed on an RST.
    FlowsReset = 11,
    /// Egress packets (not SYN) of a VIP flow with no entry: its entry was
    /// evicted, or a late packet of a flow already over. Re-pinned.
    FlowMisses = 12,
    /// Replies whose lost reply entry was re-created: the member serves one
    /// VIP and the client has a socket connected to that VIP.
    RepliesRecovered = 13,
    /// Replies from a member endpoint behind several VIPs with no reply
    /// entry: which VIP it was is ambiguous, so they passed untranslated.
    RepliesAmbiguous = 14,
    /// Ingress ICMP/ICMPv6 errors about a translated flow whose embedded
    /// header was rewritten back to the VIP (path MTU discovery through the
    /// VIP depends on them).
    IcmpReverseTranslated = 15,
}

impl Stat {
    /// Number of counters; the size of the `STATS` array.
    pub const COUNT: u32 = 16;

    pub const ALL: [Stat; Self::COUNT as usize] = [
        Stat::Passed,
        Stat::Translated,
        Stat::ReverseTranslated,
        Stat::NewFlows,
        Stat::Steered,
        Stat::Malformed,
        Stat::MapUpdateFailed,
        Stat::RewriteFailed,
        Stat::FibFallback,
        Stat::StaleRepliesRemoved,
        Stat::FlowsClosed,
        Stat::FlowsReset,
        Stat::FlowMisses,
        Stat::RepliesRecovered,
        Stat::RepliesAmbiguous,
        Stat::IcmpReverseTranslated,
    ];

    /// Stable snake_case name, used in status output and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stat::Passed => "passed",
            Stat::Translated => "translated",
            Stat::ReverseTranslated => "reverse_translated",
            Stat::NewFlows => "new_flows",
            Stat::Steered => "steered",
            Stat::Malformed => "malformed",
            Stat::MapUpdateFailed => "map_update_failed",
            Stat::RewriteFailed => "rewrite_failed",
            Stat::FibFallback => "fib_fallback",
            Stat::StaleRepliesRemoved => "stale_replies_removed",
            Stat::FlowsClosed => "flows_closed",
            Stat::FlowsReset => "flows_reset",
            Stat::FlowMisses => "flow_misses",
            Stat::RepliesRecovered => "replies_recovered",
            Stat::RepliesAmbiguous => "replies_ambiguous",
            Stat::IcmpReverseTranslated => "icmp_reverse_translated",
        }
    }
}

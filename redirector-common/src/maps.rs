//! The key/value layouts both sides read and write (names and sizes of the
//! maps themselves are in `schema`).
//!
//! Every type is `#[repr(C)]`, `Copy` and free of implicit padding (checked by
//! `const` assertions). Addresses and ports are network-order byte arrays, so
//! endianness is never a guess on either side. IPv4 addresses use the first 4
//! bytes of `addr`; the other 12 are zero.

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;
pub const PROTO_TCP: u8 = 6;

/// One transport endpoint: address, port, family and protocol.
///
/// Aligned to 4 so the kernel side can build, copy and compare keys with
/// 32-bit operations instead of byte by byte.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// Network-order address; IPv4 uses bytes 0..4.
    pub addr: [u8; 16],
    /// Network-order port.
    pub port: [u8; 2],
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    /// IP protocol number (`PROTO_TCP`).
    pub proto: u8,
}
const _: () = assert!(core::mem::size_of::<Endpoint>() == 20);

impl Endpoint {
    #[inline(always)]
    pub const fn tcp_v4(addr: [u8; 4], port: [u8; 2]) -> Self {
        let mut a = [0u8; 16];
        a[0] = addr[0];
        a[1] = addr[1];
        a[2] = addr[2];
        a[3] = addr[3];
        Self {
            addr: a,
            port,
            family: FAMILY_V4,
            proto: PROTO_TCP,
        }
    }

    #[inline(always)]
    pub const fn tcp_v6(addr: [u8; 16], port: [u8; 2]) -> Self {
        Self {
            addr,
            port,
            family: FAMILY_V6,
            proto: PROTO_TCP,
        }
    }

    /// The port in host order.
    #[inline(always)]
    pub const fn port(&self) -> u16 {
        u16::from_be_bytes(self.port)
    }

    /// Field-wise equality without `memcmp` (the BPF target has none).
    #[inline(always)]
    pub fn same(&self, other: &Self) -> bool {
        let (a, b) = (self.words(), other.words());
        a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4]
    }

    #[inline(always)]
    fn words(&self) -> &[u32; 5] {
        // SAFETY: Endpoint is 20 bytes, 4-aligned, with no padding, so it
        // can be read as five u32 words.
        unsafe { &*(self as *const Self as *const [u32; 5]) }
    }

    /// The address as four native-endian words holding network-order bytes,
    /// the shape `bpf_csum_diff` and `bpf_fib_lookup` take.
    #[inline(always)]
    pub const fn addr_words(&self) -> [u32; 4] {
        addr_words(&self.addr)
    }

    /// The IPv4 address bytes (meaningful only when `family == FAMILY_V4`).
    #[inline(always)]
    pub const fn v4_addr(&self) -> [u8; 4] {
        [self.addr[0], self.addr[1], self.addr[2], self.addr[3]]
    }
}

/// 16 address bytes as four native-endian words holding network-order
/// bytes ([`Endpoint::addr_words`]; the packet parser reads header
/// addresses the same way).
#[inline(always)]
pub const fn addr_words(b: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}

/// `CONNTRACK` key: one client connection to one VIP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub client: Endpoint,
    pub vip: Endpoint,
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// `REVERSE_NAT` key: a reply from `member` to `client`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReverseKey {
    pub member: Endpoint,
    pub client: Endpoint,
}
const _: () = assert!(core::mem::size_of::<ReverseKey>() == 40);

/// The member a service or a flow is assigned to.
///
/// As a `SERVICES` value it is the active member; replacing it is the one
/// atomic update that flips a service. As a `CONNTRACK` value it is the member
/// the flow was pinned to and the service generation at that time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Assignment {
    pub member: Endpoint,
    /// Bumped by the daemon on every flip of the service.
    pub generation: u32,
    /// `FLOW_*` bits (flows only).
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<Assignment>() == 28);

/// The flow was moved off a down member onto the active one.
pub const FLOW_STEERED: u32 = 1;
/// The flow's entries were re-created from a reply after its reply entry
/// was lost (see `MEMBER_VIPS`).
pub const FLOW_RECOVERED: u32 = 2;

/// `CONNTRACK` value: the flow's member, the next hop the kernel last
/// found for it (so packets of an established flow skip the FIB lookup),
/// and how far the flow has closed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrackedFlow {
    pub assignment: Assignment,
    pub fib: FibCache,
    /// `flow::FIN_*` bits; 0 while open.
    pub state: u32,
    /// Low 32 bits of jiffies: the last egress packet of an open flow
    /// (refreshed at most every `SEEN_JIFFIES`), or when a flow started
    /// closing (both FINs seen). The daemon's sweep compares it with now.
    pub seen: u32,
}
const _: () = assert!(core::mem::size_of::<TrackedFlow>() == 64);

/// How stale `TrackedFlow::seen` may get before a packet refreshes it:
/// one write per flow every 64 jiffies at most (0.26 s at HZ=250), far
/// below any idle timeout, instead of a write per packet.
pub const SEEN_JIFFIES: u32 = 64;

/// `REVERSE_NAT` value: the VIP a reply must appear to come from, and the
/// flow's close state (the same bits as `TrackedFlow::state`), so the
/// reply path sees a flow's end without a second lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplyTarget {
    pub vip: Endpoint,
    /// `flow::FIN_*` bits; 0 while open.
    pub state: u32,
}
const _: () = assert!(core::mem::size_of::<ReplyTarget>() == 24);

/// `MEMBER_VIPS` value: the VIP a member endpoint serves, or, when
/// `vips > 1`, one of several (then a lost reply entry cannot be
/// recovered and the miss is counted). The key is the member `Endpoint`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberVip {
    pub vip: Endpoint,
    /// How many VIPs this member endpoint is behind.
    pub vips: u32,
}
const _: () = assert!(core::mem::size_of::<MemberVip>() == 24);

/// A `bpf_fib_lookup` result for one flow, written by the kernel only.
/// `action == FIB_NONE` means no result yet (a new or re-pinned flow).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FibCache {
    /// Low 32 bits of jiffies at the lookup; older than
    /// `FIB_CACHE_JIFFIES` means look again.
    pub stamp: u32,
    /// Interface the packet was on when looked up (the lookup's input).
    pub ifindex: u32,
    /// Interface the FIB chose.
    pub out_ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// `FIB_*`: what to do with the packet.
    pub action: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<FibCache>() == 28);

/// No cached result.
pub const FIB_NONE: u8 = 0;
/// Write the MACs and continue on this interface.
pub const FIB_SAME_IFACE: u8 = 1;
/// Write the MACs and redirect to `out_ifindex`.
pub const FIB_REDIRECT: u8 = 2;
/// No usable next hop: keep the VIP route's (counted as `FibFallback`).
pub const FIB_FALLBACK: u8 = 3;
/// How long a cached FIB result is used, in jiffies: 1 s at HZ=250 (Debian,
/// this machine), 0.25 s at HZ=1000, 2.5 s at HZ=100. Route and neighbour
/// changes reach established flows within this time.
pub const FIB_CACHE_JIFFIES: u32 = 250;

impl FibCache {
    pub const EMPTY: Self = Self {
        stamp: 0,
        ifindex: 0,
        out_ifindex: 0,
        smac: [0; 6],
        dmac: [0; 6],
        action: FIB_NONE,
        _pad: [0; 3],
    };

    /// Whether this result may be used for a packet on `ifindex` at `now`
    /// (jiffies, low 32 bits; the subtraction is wrap-safe).
    #[inline(always)]
    pub fn fresh(&self, ifindex: u32, now: u32) -> bool {
        self.action != FIB_NONE
            && self.ifindex == ifindex
            && now.wrapping_sub(self.stamp) < FIB_CACHE_JIFFIES
    }
}

/// The bit a VIP or member address sets in the `VIP_PORTS`/`MEMBER_PORTS`
/// value of its port: a 32-bit Bloom filter per port, so a packet to the
/// right port but another address skips the hash lookup 31 times in 32.
/// `words` is [`Endpoint::addr_words`] (IPv4 uses the first word only).
#[inline(always)]
pub const fn filter_bit(words: [u32; 4]) -> u32 {
    let mut h = words[0] ^ words[1] ^ words[2] ^ words[3];
    h ^= h >> 16;
    h ^= h >> 8;
    1 << (h & 31)
}

/// `DOWN_MEMBERS` value. The key is the member `Endpoint`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DownMark {
    /// Why the member is down (`DOWN_*`), for operators reading the map.
    pub reason: u32,
}
const _: () = assert!(core::mem::size_of::<DownMark>() == 4);

/// Health checks failed.
pub const DOWN_UNHEALTHY: u32 = 1;
/// A planned move's drain period ended.
pub const DOWN_DRAINED: u32 = 2;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], Copy, made only of integers and
    // byte arrays, and have no padding (see the size assertions above), so
    // every bit pattern is valid and none of their bytes is uninitialised.
    unsafe impl aya::Pod for super::Endpoint {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ReverseKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Assignment {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DownMark {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TrackedFlow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ReplyTarget {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::MemberVip {}
}

impl From<core::net::SocketAddr> for Endpoint {
    fn from(sa: core::net::SocketAddr) -> Self {
        match sa {
            core::net::SocketAddr::V4(a) => Self::tcp_v4(a.ip().octets(), a.port().to_be_bytes()),
            core::net::SocketAddr::V6(a) => Self::tcp_v6(a.ip().octets(), a.port().to_be_bytes()),
        }
    }
}

impl Endpoint {
    /// The endpoint as a socket address (for display and for userspace).
    pub fn socket_addr(&self) -> core::net::SocketAddr {
        use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
        let ip = if self.family == FAMILY_V4 {
            IpAddr::V4(Ipv4Addr::from(self.v4_addr()))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        };
        SocketAddr::new(ip, self.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addr_round_trips_for_both_families() {
        for s in ["198.18.0.100:6379", "[2001:db8::100]:6380"] {
            let sa: core::net::SocketAddr = s.parse().unwrap();
            let e = Endpoint::from(sa);
            assert_eq!(e.socket_addr(), sa);
            assert_eq!(e.proto, PROTO_TCP);
        }
        let v4 = Endpoint::from(
            "198.18.0.100:6379"
                .parse::<core::net::SocketAddr>()
                .unwrap(),
        );
        assert_eq!(v4.addr[4..], [0u8; 12]);
        assert_eq!(v4.port, [0x18, 0xeb]);
    }

    #[test]
    fn same_compares_every_field() {
        let a = Endpoint::tcp_v4([1, 2, 3, 4], [0, 80]);
        assert!(a.same(&a));
        let mut b = a;
        b.port = [0, 81];
        assert!(!a.same(&b));
        let mut c = a;
        c.addr[15] = 1;
        assert!(!a.same(&c));
        let mut d = a;
        d.family = FAMILY_V6;
        assert!(!a.same(&d));
    }
}

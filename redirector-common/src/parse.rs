//! Header layouts and the one parser both the kernel and the host tests run.
//!
//! [`parse_tcp`] is generic over [`Packet`], the bounds-checked accessor: the
//! kernel implements it over direct packet access (`data`/`data_end`), the host
//! over a byte slice. So the pass-through rules (not IP, not TCP, IPv4 options,
//! fragments, IPv6 extension headers, truncation) are written once and tested
//! on the host. The ICMP error parser in [`crate::icmp`] uses the same accessor.
//!
//! # Lengths
//!
//! A packet is translated only if its headers agree with each other and with
//! the packet: the IP length (IPv4 `tot_len`, IPv6 40 + `payload_len`) must
//! cover the whole TCP header, options included (data offset >= 5), and must
//! not claim more bytes than the packet has. Anything else is
//! [`Skip::Malformed`] (or [`Skip::Truncated`] when the fixed headers are
//! cut off) and passes untouched. The rules, and why:
//!
//! - The IP length may be *shorter* than the packet: Ethernet pads short
//!   frames to 60 bytes, and the padding is not part of the IP packet.
//! - "The packet" is [`Packet::packet_len`], not the directly readable bytes.
//!   In TC a GSO super-packet (egress, TSO) or a GRO one (ingress) has only
//!   its headers in the linear part (`data_end`); its IP length is right for
//!   the whole super-packet and is at most `skb->len`, so it is judged
//!   against `skb->len`. XDP frames and host slices are wholly readable.
//! - An IP length of 0 is how BIG TCP says "more than 65535" (IPv4 GSO/GRO
//!   sets `tot_len = 0`, `iph_set_totlen`; IPv6 BIG TCP without the
//!   hop-by-hop jumbo option has `payload_len = 0`). It is accepted only when
//!   the packet really is too long for the field, which only an skb can be;
//!   then the packet's own length stands in for it. (IPv6 BIG TCP *with* the
//!   jumbo hop-by-hop header is an extension header and passes, as before.)

use crate::maps::{Endpoint, addr_words};

pub const ETH_P_IP: [u8; 2] = 0x0800u16.to_be_bytes();
pub const ETH_P_IPV6: [u8; 2] = 0x86ddu16.to_be_bytes();
pub const IPPROTO_TCP: u8 = 6;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// Ethernet II header.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}
pub const ETH_LEN: usize = 14;
const _: () = assert!(core::mem::size_of::<EthHdr>() == ETH_LEN);

/// IPv4 header without options.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub proto: u8,
    pub check: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}
pub const IPV4_LEN: usize = 20;
const _: () = assert!(core::mem::size_of::<Ipv4Hdr>() == IPV4_LEN);
/// Offsets inside the IPv4 header.
pub const IPV4_CHECK_OFF: usize = 10;
pub const IPV4_SRC_OFF: usize = 12;
pub const IPV4_DST_OFF: usize = 16;

impl Ipv4Hdr {
    /// More-fragments set or a non-zero fragment offset.
    #[inline(always)]
    pub const fn is_fragment(&self) -> bool {
        (self.frag_off[0] & 0x3f) != 0 || self.frag_off[1] != 0
    }
}

/// IPv6 fixed header.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Hdr {
    pub version_class_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_hdr: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}
pub const IPV6_LEN: usize = 40;
const _: () = assert!(core::mem::size_of::<Ipv6Hdr>() == IPV6_LEN);
pub const IPV6_SRC_OFF: usize = 8;
pub const IPV6_DST_OFF: usize = 24;

/// TCP header without options.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcpHdr {
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    pub seq: [u8; 4],
    pub ack: [u8; 4],
    pub data_off: u8,
    pub flags: u8,
    pub window: [u8; 2],
    pub check: [u8; 2],
    pub urg_ptr: [u8; 2],
}
pub const TCP_LEN: usize = 20;
const _: () = assert!(core::mem::size_of::<TcpHdr>() == TCP_LEN);
pub const TCP_SRC_PORT_OFF: usize = 0;
pub const TCP_DST_PORT_OFF: usize = 2;
pub const TCP_CHECK_OFF: usize = 16;

impl TcpHdr {
    /// SYN without ACK: the first packet of a new connection.
    #[inline(always)]
    pub const fn is_syn(&self) -> bool {
        is_syn(self.flags)
    }
}

/// Whether TCP `flags` are SYN without ACK.
#[inline(always)]
pub const fn is_syn(flags: u8) -> bool {
    flags & (TCP_SYN | TCP_ACK) == TCP_SYN
}

/// Bounds-checked read access to a packet.
pub trait Packet {
    /// A reference to a `T` at byte `offset`, or `None` if it would run past
    /// the end of the packet. `T` must be a `#[repr(C)]` header type made of
    /// bytes (alignment 1), so any offset is properly aligned.
    fn ref_at<T>(&self, offset: usize) -> Option<&T>;

    /// The length of the whole packet from offset 0, including bytes
    /// [`ref_at`](Packet::ref_at) cannot reach (an skb's paged data): what
    /// IP length fields are judged against.
    fn packet_len(&self) -> usize;
}

impl Packet for [u8] {
    #[inline(always)]
    fn ref_at<T>(&self, offset: usize) -> Option<&T> {
        debug_assert!(core::mem::align_of::<T>() == 1);
        let end = offset.checked_add(core::mem::size_of::<T>())?;
        if end > self.len() {
            return None;
        }
        // SAFETY: the range [offset, end) is inside the slice, and T has
        // alignment 1 and no invalid bit patterns (plain byte fields).
        Some(unsafe { &*(self.as_ptr().add(offset) as *const T) })
    }

    #[inline(always)]
    fn packet_len(&self) -> usize {
        self.len()
    }
}

/// Why a packet is not one we translate. Every reason means "pass untouched".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Neither IPv4 nor IPv6 (ARP, VLAN-tagged, ...).
    NotIp,
    /// IP, but not TCP.
    NotTcp,
    /// IPv4 with options (IHL > 5).
    Ipv4Options,
    /// An IPv4 fragment.
    Fragment,
    /// IPv6 whose next header is an extension header we do not parse.
    Ipv6ExtHeader,
    /// Cut off before the end of the fixed headers it needs.
    Truncated,
    /// TCP, but the caller's port filter says it cannot be ours.
    Filtered,
    /// Headers that contradict the packet or themselves: an IP length that
    /// claims more bytes than the packet has or ends inside the TCP header,
    /// a TCP data offset below 5 or past the IP length (see the module doc).
    Malformed,
    /// ICMP, but not an error about a TCP packet that we translate (echo,
    /// other types, an embedded packet that is not plain TCP).
    NotIcmpError,
}

impl Skip {
    /// Whether the packet is broken rather than just not ours: counted as
    /// malformed instead of passed (it passes untouched either way).
    #[inline(always)]
    pub const fn is_malformed(self) -> bool {
        matches!(self, Skip::Truncated | Skip::Malformed)
    }
}

/// The parts of a TCP/IP packet the translator needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpPacket {
    /// Offset of the IP header (after Ethernet).
    pub l3_off: usize,
    /// Offset of the TCP header.
    pub l4_off: usize,
    pub src: Endpoint,
    pub dst: Endpoint,
    /// TCP flag byte (`TCP_*`).
    pub flags: u8,
    /// Offset of the TCP payload (after the options). `u16`s fit where
    /// the struct had padding: the kernel's stack does not grow.
    pub payload_off: u16,
    /// Payload bytes by the IP length (Ethernet padding not counted),
    /// saturated at `u16::MAX` (BIG TCP).
    pub payload_len: u16,
}

impl TcpPacket {
    /// A SYN without ACK: the first packet of a new connection.
    #[inline(always)]
    pub const fn is_syn(&self) -> bool {
        is_syn(self.flags)
    }

    #[inline(always)]
    pub const fn is_v4(&self) -> bool {
        self.src.family == crate::maps::FAMILY_V4
    }
}

/// Parses Ethernet + IPv4/IPv6 + TCP. Anything else is a [`Skip`].
#[inline(always)]
pub fn parse_tcp<P: Packet + ?Sized>(pkt: &P) -> Result<TcpPacket, Skip> {
    parse_tcp_filtered(pkt, |_, _| true)
}

/// The IP header of a TCP packet, as the port filter sees it.
#[derive(Clone, Copy)]
pub enum IpHdr<'a> {
    V4(&'a Ipv4Hdr),
    V6(&'a Ipv6Hdr),
}

impl IpHdr<'_> {
    /// The source address as [`Endpoint::addr_words`] would give it.
    #[inline(always)]
    pub fn src_words(&self) -> [u32; 4] {
        match self {
            IpHdr::V4(ip) => [u32::from_ne_bytes(ip.src), 0, 0, 0],
            IpHdr::V6(ip) => addr_words(&ip.src),
        }
    }

    /// The destination address as [`Endpoint::addr_words`] would give it.
    #[inline(always)]
    pub fn dst_words(&self) -> [u32; 4] {
        match self {
            IpHdr::V4(ip) => [u32::from_ne_bytes(ip.dst), 0, 0, 0],
            IpHdr::V6(ip) => addr_words(&ip.dst),
        }
    }
}

/// Like [`parse_tcp`], but asks `keep` about the TCP and IP headers (ports,
/// addresses) before copying any address, and returns [`Skip::Filtered`] if
/// it says no. The kernel uses this to make the common case, a packet that
/// is not ours, cheap.
#[inline(always)]
pub fn parse_tcp_filtered<P: Packet + ?Sized>(
    pkt: &P,
    keep: impl FnOnce(&TcpHdr, IpHdr) -> bool,
) -> Result<TcpPacket, Skip> {
    let eth: &EthHdr = pkt.ref_at(0).ok_or(Skip::Truncated)?;
    let l3_off = ETH_LEN;
    let v4 = if eth.ether_type == ETH_P_IP {
        let ip: &Ipv4Hdr = pkt.ref_at(l3_off).ok_or(Skip::Truncated)?;
        if ip.version_ihl >> 4 != 4 {
            return Err(Skip::NotIp);
        }
        if ip.proto != IPPROTO_TCP {
            return Err(Skip::NotTcp);
        }
        if ip.version_ihl & 0x0f != 5 {
            return Err(Skip::Ipv4Options);
        }
        if ip.is_fragment() {
            return Err(Skip::Fragment);
        }
        true
    } else if eth.ether_type == ETH_P_IPV6 {
        let ip: &Ipv6Hdr = pkt.ref_at(l3_off).ok_or(Skip::Truncated)?;
        if ip.version_class_flow[0] >> 4 != 6 {
            return Err(Skip::NotIp);
        }
        if ip.next_hdr != IPPROTO_TCP {
            return Err(if is_ipv6_ext_header(ip.next_hdr) {
                Skip::Ipv6ExtHeader
            } else {
                Skip::NotTcp
            });
        }
        false
    } else {
        return Err(Skip::NotIp);
    };
    let l4_off = l3_off + if v4 { IPV4_LEN } else { IPV6_LEN };
    let tcp: &TcpHdr = pkt.ref_at(l4_off).ok_or(Skip::Truncated)?;
    let ip = if v4 {
        IpHdr::V4(pkt.ref_at(l3_off).ok_or(Skip::Truncated)?)
    } else {
        IpHdr::V6(pkt.ref_at(l3_off).ok_or(Skip::Truncated)?)
    };
    if !keep(tcp, ip) {
        return Err(Skip::Filtered);
    }
    // Length checks after the filter: a packet that is not ours stays as
    // cheap as before. See the module doc for the rules.
    let ip_end = ip_end(pkt, l3_off, ip)?;
    let doff = (tcp.data_off >> 4) as usize;
    if doff < 5 || l4_off + doff * 4 > ip_end {
        return Err(Skip::Malformed);
    }
    // Endpoints are built in place (they are 4-aligned): no byte-array
    // temporaries on the BPF stack.
    let (src, dst) = match ip {
        IpHdr::V4(ip) => (
            Endpoint::tcp_v4(ip.src, tcp.src_port),
            Endpoint::tcp_v4(ip.dst, tcp.dst_port),
        ),
        IpHdr::V6(ip) => (
            Endpoint::tcp_v6(ip.src, tcp.src_port),
            Endpoint::tcp_v6(ip.dst, tcp.dst_port),
        ),
    };
    let payload_off = l4_off + doff * 4;
    let payload_len = ip_end - payload_off;
    Ok(TcpPacket {
        l3_off,
        l4_off,
        src,
        dst,
        flags: tcp.flags,
        payload_off: payload_off as u16,
        payload_len: if payload_len > u16::MAX as usize {
            u16::MAX
        } else {
            payload_len as u16
        },
    })
}

/// The offset where the IP packet whose header is `ip` (at `l3_off`) ends,
/// from its length field, or [`Skip::Malformed`] if that claims more than
/// the packet has (module doc: padding, GSO, BIG TCP).
#[inline(always)]
pub fn ip_end<P: Packet + ?Sized>(pkt: &P, l3_off: usize, ip: IpHdr) -> Result<usize, Skip> {
    let (field, fixed) = match ip {
        IpHdr::V4(h) => (u16::from_be_bytes(h.tot_len) as usize, 0),
        IpHdr::V6(h) => (u16::from_be_bytes(h.payload_len) as usize, IPV6_LEN),
    };
    let len = pkt.packet_len();
    if field == 0 {
        // BIG TCP: only a packet too long for the field may leave it 0.
        return if len > l3_off + fixed + 0xffff {
            Ok(len)
        } else {
            Err(Skip::Malformed)
        };
    }
    let end = l3_off + fixed + field;
    if end > len {
        return Err(Skip::Malformed);
    }
    Ok(end)
}

/// IPv6 extension headers (RFC 8200 and the IANA registry) that may precede
/// TCP. We do not walk them; such packets pass untouched.
#[inline(always)]
pub const fn is_ipv6_ext_header(next: u8) -> bool {
    matches!(
        next,
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
    )
}

//! Bounds-checked direct packet access for TC and XDP contexts.
//!
//! The shared parser (`redirector_common::parse::parse_tcp`) runs over the
//! [`Packet`] impls here; writes go through [`mut_at`]. Direct access is used
//! instead of `bpf_skb_load_bytes` because each helper call costs several ns.

use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};
use redirector_common::parse::Packet;

use crate::error::Error;

/// A TC context seen as a packet.
pub struct Skb<'a>(pub &'a TcContext);
/// An XDP context seen as a packet.
pub struct Frame<'a>(pub &'a XdpContext);

/// Packet bytes `[start, end)` as the verifier sees them.
pub trait Bounds {
    fn bounds(&self) -> (usize, usize);
}

impl Bounds for Skb<'_> {
    #[inline(always)]
    fn bounds(&self) -> (usize, usize) {
        (self.0.data(), self.0.data_end())
    }
}

impl Bounds for Frame<'_> {
    #[inline(always)]
    fn bounds(&self) -> (usize, usize) {
        (self.0.data(), self.0.data_end())
    }
}

#[inline(always)]
fn ptr_at<T, B: Bounds + ?Sized>(pkt: &B, offset: usize) -> Option<*mut T> {
    let (start, end) = pkt.bounds();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

macro_rules! impl_packet {
    ($t:ty, $len:expr) => {
        impl Packet for $t {
            #[inline(always)]
            fn ref_at<T>(&self, offset: usize) -> Option<&T> {
                // SAFETY: ptr_at checked that the T lies inside the packet;
                // the header types have alignment 1 and accept any bits.
                ptr_at::<T, Self>(self, offset).map(|p| unsafe { &*p })
            }

            #[inline(always)]
            fn packet_len(&self) -> usize {
                $len(self)
            }
        }
    };
}
// skb->len: the linear part and the paged data of a GSO/GRO super-packet,
// from the Ethernet header on (TC sees the MAC header pushed back).
impl_packet!(Skb<'_>, |s: &Skb| s.0.len() as usize);
// An XDP frame (no multi-buffer: our program does not set xdp.frags) is
// all in [data, data_end).
impl_packet!(Frame<'_>, |f: &Frame| {
    let (start, end) = f.bounds();
    end - start
});

/// A mutable `T` at `offset`. Fetch it again after any helper call that may
/// change the packet (the verifier invalidates older packet pointers).
#[inline(always)]
#[allow(clippy::mut_from_ref)]
pub fn mut_at<'a, T, B: Bounds>(pkt: &B, offset: usize) -> Result<&'a mut T, Error> {
    // SAFETY: as in `ref_at`; the program is the only writer of this packet
    // while it runs, and callers do not hold two overlapping references.
    ptr_at::<T, B>(pkt, offset)
        .map(|p| unsafe { &mut *p })
        .ok_or(Error::Malformed)
}

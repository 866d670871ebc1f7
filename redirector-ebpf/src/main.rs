//! Entry points of the kernel programs. Everything else lives in modules:
//! `parse` (bounds-checked packet access), `nat` (the three translation
//! paths), `conntrack` (flow pinning and steering), `csum` (header rewrites
//! and checksum fixes), `icmp` (ICMP errors about our flows), `fib` (next
//! hop after DNAT), `socket` (socket lookups), `signal` (what the traffic
//! says about a member), `maps`, `stats`.
#![no_std]
#![no_main]
// The atomic add of `signal::add`: core offers no 64-bit fetch_add on BPF.
#![allow(internal_features, reason = "core_intrinsics for the BPF atomic add")]
#![feature(core_intrinsics)]

mod conntrack;
mod csum;
mod error;
mod fib;
mod icmp;
mod maps;
mod nat;
mod parse;
mod signal;
mod socket;
mod stats;

use aya_ebpf::{
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

/// TC egress: DNAT of connections to a VIP onto the chosen member.
#[classifier]
pub fn redirector_egress(ctx: TcContext) -> i32 {
    match nat::egress(&ctx) {
        Ok(action) => action,
        Err(e) => stats::error_tc(e),
    }
}

/// TC ingress: replies from a member rewritten back to the VIP.
#[classifier]
pub fn redirector_ingress(ctx: TcContext) -> i32 {
    match nat::ingress_tc(&ctx) {
        Ok(action) => action,
        Err(e) => stats::error_tc(e),
    }
}

/// XDP ingress: the same reverse NAT as `redirector_ingress`, earlier and
/// without an skb.
#[xdp]
pub fn redirector_xdp(ctx: XdpContext) -> u32 {
    match nat::ingress_xdp(&ctx) {
        Ok(action) => action,
        Err(e) => stats::error_xdp(e),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

//! Whether this host holds a TCP socket for a connection, asked of the
//! kernel's socket tables (`bpf_sk_lookup_tcp`, Linux 4.20, commit
//! 6acc9b432e67). Used only off the hit path: before a reply whose reply
//! entry is lost is rewritten to a VIP, the client must really have a
//! socket connected to that VIP, or the reply belongs to a direct
//! connection to the member (the daemon's own health checks among them).

use core::{ffi::c_void, mem::size_of, mem::zeroed};

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_CURRENT_NETNS, BPF_TCP_LISTEN, bpf_sock_tuple},
    helpers::{bpf_sk_lookup_tcp, bpf_sk_release},
};
use redirector_common::{Endpoint, FAMILY_V4};

/// Whether a non-listening socket on `local` is connected to `remote`.
#[inline(always)]
pub fn connected<C: EbpfContext>(ctx: &C, remote: &Endpoint, local: &Endpoint) -> bool {
    // SAFETY: bpf_sock_tuple is plain data; all-zero is valid.
    let mut tuple: bpf_sock_tuple = unsafe { zeroed() };
    // The tuple is the packet's as it arrives: source = remote.
    let size = if remote.family == FAMILY_V4 {
        // SAFETY: writing a union field of plain integers.
        let t = unsafe { &mut tuple.__bindgen_anon_1.ipv4 };
        t.saddr = u32::from_ne_bytes(remote.v4_addr());
        t.daddr = u32::from_ne_bytes(local.v4_addr());
        t.sport = u16::from_ne_bytes(remote.port);
        t.dport = u16::from_ne_bytes(local.port);
        size_of::<u32>() * 2 + size_of::<u16>() * 2
    } else {
        // SAFETY: as above.
        let t = unsafe { &mut tuple.__bindgen_anon_1.ipv6 };
        t.saddr = remote.addr_words();
        t.daddr = local.addr_words();
        t.sport = u16::from_ne_bytes(remote.port);
        t.dport = u16::from_ne_bytes(local.port);
        size_of::<[u32; 4]>() * 2 + size_of::<u16>() * 2
    };
    // SAFETY: a valid context pointer and a tuple of the size given; the
    // returned socket is released below on the only path that holds it.
    let sk = unsafe {
        bpf_sk_lookup_tcp(
            ctx.as_ptr(),
            &mut tuple,
            size as u32,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: sk is a referenced, non-null socket from the lookup.
    let state = unsafe { (*sk).state };
    // SAFETY: releases the reference the lookup took.
    unsafe { bpf_sk_release(sk as *mut c_void) };
    // A listener on the client's port is no connection to the VIP.
    state != BPF_TCP_LISTEN as u32
}

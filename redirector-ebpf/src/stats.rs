//! Per-CPU counters: the only per-packet observability (no log calls).

use aya_ebpf::bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action};
use redirector_common::Stat;

use crate::{error::Error, maps::STATS};

#[inline(always)]
pub fn count(stat: Stat) {
    if let Some(c) = STATS.get_ptr_mut(stat as u32) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU,
        // which do not preempt each other, so the increment does not race.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
pub fn error_tc(e: Error) -> i32 {
    count(e.stat());
    if e.packet_untouched() {
        TC_ACT_OK as i32
    } else {
        TC_ACT_SHOT as i32
    }
}

#[inline(always)]
pub fn error_xdp(e: Error) -> u32 {
    count(e.stat());
    if e.packet_untouched() {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

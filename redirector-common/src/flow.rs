//! The lifecycle of a translated TCP flow, as far as the data path follows
//! it: open, closing (a FIN seen from one side or both), and over.
//!
//! The LRU maps are a safety valve, not the lifecycle: a flow that is over
//! leaves CONNTRACK and REVERSE_NAT as soon as the data path sees its end,
//! so churn of short connections never pushes out an open, idle one
//! (cilium/cilium#40336 is that failure). The end is an RST from either
//! side, or the last ACK after a FIN from both sides. A FIN retransmitted
//! after that finds no entry and passes untranslated; the peer is already
//! closed (TIME_WAIT or gone), so at worst it answers with an RST.
//! Entries whose end the data path never sees (the last ACK lost on the
//! wire, a peer that vanished) are removed by the daemon's sweep: closing
//! ones after `flow_close_timeout`, open ones after `flow_idle_timeout`.
//!
//! [`step`] is the whole rule, pure, so the host tests it; both kernel
//! directions call it with their own side's bit.

use crate::parse::{TCP_FIN, TCP_RST};

/// The client sent a FIN (seen on egress).
pub const FIN_FROM_CLIENT: u32 = 1;
/// The member sent a FIN (seen on ingress).
pub const FIN_FROM_MEMBER: u32 = 2;
/// Both sides sent a FIN: the next ACK without FIN ends the flow.
pub const FLOW_CLOSING: u32 = FIN_FROM_CLIENT | FIN_FROM_MEMBER;

/// Reply-entry mark (`ReplyTarget::state` only): pinned by a SYN, no reply
/// from the member yet. An RST now refuses the connection; the first other
/// reply clears it. Never in `TrackedFlow::state`.
pub const REPLY_OPENING: u32 = 4;
/// Reply-entry mark: pinned by steering or after a flow miss, so the
/// member may rightly not know the flow and an RST blames nobody (DESIGN:
/// steered flows get an RST from the active member on purpose).
pub const REPLY_REPINNED: u32 = 8;
/// Both marks: masked off before [`step`], which sees close bits only.
pub const REPLY_MARKS: u32 = REPLY_OPENING | REPLY_REPINNED;

/// The close state of a reply entry's `state`, without the marks: what
/// [`step`] and [`is_plain`] take.
#[inline(always)]
pub const fn unmarked(state: u32) -> u32 {
    state & !REPLY_MARKS
}

/// What a packet does to its flow's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing changes (the common case: data and ACKs of an open flow).
    Keep,
    /// The state becomes this; `FLOW_CLOSING` means both FINs are in.
    Set(u32),
    /// The flow is over: remove its entries after translating this packet.
    End(End),
}

/// Why a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// An RST from either side.
    Reset,
    /// The last ACK after FINs from both sides.
    Closed,
}

/// The next state of a flow in `state` after a packet with TCP `flags`
/// sent by the side whose FIN bit is `side` (`FIN_FROM_CLIENT` on egress,
/// `FIN_FROM_MEMBER` on ingress).
#[inline(always)]
pub const fn step(state: u32, flags: u8, side: u32) -> Step {
    if flags & TCP_RST != 0 {
        return Step::End(End::Reset);
    }
    if flags & TCP_FIN != 0 {
        let next = state | side;
        return if next == state {
            Step::Keep
        } else {
            Step::Set(next)
        };
    }
    if state == FLOW_CLOSING {
        return Step::End(End::Closed);
    }
    Step::Keep
}

/// Whether a packet with `flags` may take the fast path of an open flow
/// in `state` without calling [`step`]: no FIN or RST, and no FIN seen yet.
#[inline(always)]
pub const fn is_plain(state: u32, flags: u8) -> bool {
    state == 0 && flags & (TCP_FIN | TCP_RST) == 0
}

/// The state of an entry created for a packet of a flow the data path had
/// no entry for (not a SYN): a FIN or RST means the flow is ending, so the
/// entry starts closing and the sweep removes it if nothing ends it.
#[inline(always)]
pub const fn state_for_unknown_flow(flags: u8) -> u32 {
    if flags & (TCP_FIN | TCP_RST) != 0 {
        FLOW_CLOSING
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{TCP_ACK, TCP_PSH};

    const ACK: u8 = TCP_ACK;
    const FIN_ACK: u8 = TCP_FIN | TCP_ACK;

    /// Runs packets (side, flags) through `step` from an open flow and
    /// returns where it ended up.
    fn run(packets: &[(u32, u8)]) -> Result<u32, (usize, End)> {
        let mut state = 0;
        for (i, (side, flags)) in packets.iter().enumerate() {
            match step(state, *flags, *side) {
                Step::Keep => {}
                Step::Set(s) => state = s,
                Step::End(e) => return Err((i, e)),
            }
        }
        Ok(state)
    }

    const C: u32 = FIN_FROM_CLIENT;
    const M: u32 = FIN_FROM_MEMBER;

    #[test]
    fn data_and_acks_keep_an_open_flow_open() {
        assert_eq!(run(&[(C, ACK), (M, ACK | TCP_PSH), (C, ACK)]), Ok(0));
        assert!(is_plain(0, ACK | TCP_PSH));
    }

    #[test]
    fn client_closing_first_ends_at_the_clients_last_ack() {
        // client FIN, member ACK, member FIN, client ACK
        let close = [(C, FIN_ACK), (M, ACK), (M, FIN_ACK), (C, ACK)];
        assert_eq!(run(&close), Err((3, End::Closed)));
    }

    #[test]
    fn member_closing_first_ends_at_the_members_last_ack() {
        let close = [(M, FIN_ACK), (C, ACK), (C, FIN_ACK), (M, ACK)];
        assert_eq!(run(&close), Err((3, End::Closed)));
    }

    #[test]
    fn a_half_closed_flow_stays_while_the_other_side_sends() {
        let half = [
            (C, FIN_ACK),
            (M, ACK | TCP_PSH),
            (M, ACK | TCP_PSH),
            (C, ACK),
        ];
        assert_eq!(run(&half), Ok(C));
        assert!(!is_plain(C, ACK), "a closing flow takes the slow path");
    }

    #[test]
    fn a_retransmitted_fin_does_not_end_the_flow() {
        let close = [(C, FIN_ACK), (M, FIN_ACK), (C, FIN_ACK)];
        assert_eq!(run(&close), Ok(FLOW_CLOSING));
    }

    #[test]
    fn rst_from_either_side_ends_at_once() {
        assert_eq!(run(&[(C, ACK), (M, TCP_RST)]), Err((1, End::Reset)));
        assert_eq!(run(&[(C, TCP_RST | ACK)]), Err((0, End::Reset)));
        assert_eq!(run(&[(C, FIN_ACK), (C, TCP_RST)]), Err((1, End::Reset)));
    }

    #[test]
    fn reply_marks_never_reach_step_and_closing_still_ends() {
        for mark in [REPLY_OPENING, REPLY_REPINNED, REPLY_MARKS] {
            assert!(!is_plain(mark, ACK), "a marked entry takes the slow path");
            assert!(is_plain(unmarked(mark), ACK), "unmarked it is open");
            let closing = FLOW_CLOSING | mark;
            assert_eq!(step(unmarked(closing), ACK, M), Step::End(End::Closed));
            assert_eq!(
                step(unmarked(mark | C), FIN_ACK, M),
                Step::Set(FLOW_CLOSING)
            );
            assert_eq!(unmarked(closing) & REPLY_MARKS, 0);
        }
        // The marks never collide with the close bits.
        assert_eq!(REPLY_MARKS & FLOW_CLOSING, 0);
    }

    #[test]
    fn unknown_flows_ending_start_closing_others_open() {
        assert_eq!(state_for_unknown_flow(FIN_ACK), FLOW_CLOSING);
        assert_eq!(state_for_unknown_flow(TCP_RST), FLOW_CLOSING);
        assert_eq!(state_for_unknown_flow(ACK | TCP_PSH), 0);
    }
}

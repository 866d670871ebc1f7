//! The daemon's end of the `SIGNAL_EVENTS` ring: the kernel writes a
//! [`SignalEvent`] when a member's traffic says something (rate-limited per
//! member), and the fd becomes readable. Wrap [`SignalEvents`] in tokio's
//! `AsyncFd` and drain it with [`SignalEvents::next_event`] on each wake-up.

use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    path::Path,
};

use aya::maps::{MapData, RingBuf};
use redirector_common::{SIGNAL_EVENTS_MAP, signal::SignalEvent};

use super::{DatapathError, pinned::open_typed};

/// The signal event ring, opened from its pin.
///
/// ```ignore
/// let mut fd = tokio::io::unix::AsyncFd::new(SignalEvents::open(pin_path)?)?;
/// loop {
///     let mut guard = fd.readable_mut().await?;
///     while let Some(event) = guard.get_inner_mut().next_event() { /* ... */ }
///     guard.clear_ready();
/// }
/// ```
pub struct SignalEvents {
    ring: RingBuf<MapData>,
}

impl SignalEvents {
    /// Opens the ring pinned under `pin_path` (after a load or adoption).
    pub fn open(pin_path: &Path) -> Result<Self, DatapathError> {
        Ok(Self {
            ring: open_typed(pin_path, &SIGNAL_EVENTS_MAP)?,
        })
    }

    /// The next event, or `None` when the ring is empty. Records of
    /// another size (none are written) are skipped.
    pub fn next_event(&mut self) -> Option<SignalEvent> {
        loop {
            let item = self.ring.next()?;
            if let Some(event) = decode(&item) {
                return Some(event);
            }
        }
    }
}

/// A record's bytes as a [`SignalEvent`], if it has the size of one.
fn decode(bytes: &[u8]) -> Option<SignalEvent> {
    if bytes.len() != size_of::<SignalEvent>() {
        return None;
    }
    // SAFETY: exactly size_of::<SignalEvent>() bytes; SignalEvent is plain
    // integers with no padding (Pod), so any bytes are a valid value;
    // read_unaligned makes no alignment assumption.
    Some(unsafe { bytes.as_ptr().cast::<SignalEvent>().read_unaligned() })
}

impl AsFd for SignalEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

impl AsRawFd for SignalEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use redirector_common::{Endpoint, signal::SignalKind};

    use super::*;

    #[test]
    fn decode_reads_an_event_and_refuses_other_sizes() {
        let event = SignalEvent {
            member: Endpoint::tcp_v4([198, 18, 1, 10], 6379u16.to_be_bytes()),
            kind: SignalKind::Refused as u32,
            at_ns: 123_456_789,
            count: 7,
        };
        // SAFETY: SignalEvent is plain integers without padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&event as *const SignalEvent).cast::<u8>(),
                size_of::<SignalEvent>(),
            )
        };
        assert_eq!(decode(bytes), Some(event));
        assert_eq!(decode(&bytes[1..]), None);
    }
}

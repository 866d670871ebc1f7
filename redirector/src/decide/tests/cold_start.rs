//! Cold start: a fresh daemon holds the preferred member until the first
//! verdicts are in, moves only to a member confirmed Up, and a member's
//! first Up since start skips `failback_delay`.

use super::*;

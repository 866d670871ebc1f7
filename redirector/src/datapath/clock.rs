//! The data path's clock, read from userspace: flow entries carry the low
//! 32 bits of jiffies (`bpf_jiffies64`, inlined by the verifier, so the
//! per-packet cost is a load), and the sweep must compare them with now
//! and turn configured durations into jiffies.
//!
//! Now comes from `/proc/timer_list` ("jiffies: N", root only; the daemon
//! is root). HZ is not exposed to userspace (`_SC_CLK_TCK` is USER_HZ), so
//! it is measured: jiffies advanced over a measured monotonic interval,
//! rounded to the nearest HZ Linux can be built with.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use thiserror::Error;

/// Why the jiffies clock could not be read.
#[derive(Debug, Error)]
pub enum ClockError {
    /// `/proc/timer_list` could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// It had no `jiffies:` line.
    #[error("{path} has no \"jiffies:\" line")]
    NoJiffies { path: &'static str },
}

const TIMER_LIST: &str = "/proc/timer_list";

/// The HZ values Linux offers (`kernel/Kconfig.hz`).
const KNOWN_HZ: [u32; 5] = [100, 250, 300, 500, 1000];

/// The kernel's jiffies clock.
#[derive(Clone, Copy, Debug)]
pub struct Jiffies {
    hz: u32,
}

impl Jiffies {
    /// Measures HZ over `sample` (100 ms gives the right value for every
    /// known HZ with room for scheduling delays).
    pub fn calibrate(sample: Duration) -> Result<Self, ClockError> {
        let (j0, t0) = (now()?, Instant::now());
        std::thread::sleep(sample);
        let (j1, t1) = (now()?, Instant::now());
        Ok(Self {
            hz: nearest_hz(u64::from(j1.wrapping_sub(j0)), t1 - t0),
        })
    }

    pub fn hz(&self) -> u32 {
        self.hz
    }

    /// The low 32 bits of jiffies now.
    pub fn now(&self) -> Result<u32, ClockError> {
        now()
    }

    /// `d` in jiffies, saturating at `u32::MAX`.
    pub fn ticks(&self, d: Duration) -> u32 {
        let t = d.as_millis() * u128::from(self.hz) / 1000;
        u32::try_from(t).unwrap_or(u32::MAX)
    }

    /// `ticks` jiffies as a duration.
    pub fn duration(&self, ticks: u32) -> Duration {
        Duration::from_millis(u64::from(ticks) * 1000 / u64::from(self.hz))
    }
}

fn now() -> Result<u32, ClockError> {
    let text =
        std::fs::read_to_string(Path::new(TIMER_LIST)).map_err(|source| ClockError::Read {
            path: TIMER_LIST,
            source,
        })?;
    parse_jiffies(&text).ok_or(ClockError::NoJiffies { path: TIMER_LIST })
}

/// The first `jiffies: N` line of `/proc/timer_list`, low 32 bits.
pub fn parse_jiffies(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("jiffies:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|j| j as u32)
}

/// The known HZ closest to `ticks` per `elapsed`.
pub fn nearest_hz(ticks: u64, elapsed: Duration) -> u32 {
    let measured = ticks as f64 / elapsed.as_secs_f64().max(1e-3);
    KNOWN_HZ
        .into_iter()
        .min_by(|a, b| {
            let (da, db) = (*a as f64 - measured, *b as f64 - measured);
            da.abs().total_cmp(&db.abs())
        })
        .expect("non-empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_jiffies_line_not_last_jiffies() {
        let text = "Tick Device: mode:     1\n  .last_jiffies   : 4294967841\n\
                    jiffies: 4294968001\n  .next_jiffies   : 4294968100\n";
        assert_eq!(parse_jiffies(text), Some(4_294_968_001u64 as u32));
        assert_eq!(parse_jiffies("nothing here"), None);
        // Above 32 bits: the low half, as the data path stores it.
        assert_eq!(parse_jiffies("jiffies: 4294967396\n"), Some(100));
    }

    #[test]
    fn hz_rounds_to_a_value_linux_can_have() {
        let s = Duration::from_millis(100);
        assert_eq!(nearest_hz(25, s), 250);
        assert_eq!(nearest_hz(27, s), 250, "a late wakeup");
        assert_eq!(nearest_hz(10, s), 100);
        assert_eq!(nearest_hz(101, s), 1000);
        assert_eq!(nearest_hz(31, s), 300);
    }

    #[test]
    fn durations_convert_both_ways_and_saturate() {
        let j = Jiffies { hz: 250 };
        assert_eq!(j.ticks(Duration::from_secs(10)), 2500);
        assert_eq!(j.duration(2500), Duration::from_secs(10));
        assert_eq!(j.ticks(Duration::from_secs(u64::MAX / 2)), u32::MAX);
    }
}

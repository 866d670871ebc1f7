//! Redis cluster hash slots: which slot a key lands in, and a key that lands
//! in a given shard's slots.
//!
//! The cluster `redis-setget` probe writes to every shard; it addresses each
//! one through a hash tag chosen so the key's slot is one the shard owns.

use std::sync::OnceLock;

/// Number of hash slots in a Redis cluster.
pub(crate) const SLOTS: u16 = 16384;

/// CRC16/XMODEM (poly 0x1021, init 0), as Redis cluster uses for key slots.
pub(crate) fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`, honouring hash tags: if the key has a `{` followed
/// later by a `}` with something in between, only that part is hashed.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// For every slot, a short hash tag content that hashes to it.
pub(super) fn tag_table() -> &'static [Option<String>] {
    static TABLE: OnceLock<Vec<Option<String>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: Vec<Option<String>> = vec![None; usize::from(SLOTS)];
        let mut missing = usize::from(SLOTS);
        // About 170k candidates fill all slots; the bound only guards
        // against an impossible non-termination.
        for n in 0u32..10_000_000 {
            if missing == 0 {
                break;
            }
            let tag = n.to_string();
            let slot = usize::from(crc16(tag.as_bytes()) % SLOTS);
            if table[slot].is_none() {
                table[slot] = Some(tag);
                missing -= 1;
            }
        }
        table
    })
}

/// A key `{prefix}{{tag}}:{suffix}` whose slot lies in `ranges`, or `None`
/// when that cannot be arranged (the prefix carries its own hash tag, or
/// the ranges are empty).
pub(crate) fn shard_key(prefix: &str, ranges: &[(u16, u16)], suffix: &str) -> Option<String> {
    let in_ranges = |slot: u16| ranges.iter().any(|&(a, b)| a <= slot && slot <= b);
    let table = tag_table();
    for &(start, end) in ranges {
        for slot in start..=end.min(SLOTS - 1) {
            if let Some(tag) = &table[usize::from(slot)] {
                let key = format!("{prefix}{{{tag}}}:{suffix}");
                return in_ranges(key_slot(key.as_bytes())).then_some(key);
            }
        }
    }
    None
}

//! Hash slots and the keys that address a shard.

use crate::health::redis::slots::{SLOTS, crc16, key_slot, shard_key, tag_table};

#[test]
fn crc16_matches_the_xmodem_check_value() {
    assert_eq!(crc16(b"123456789"), 0x31C3);
    assert_eq!(crc16(b""), 0);
}

#[test]
fn hash_tags_put_related_keys_in_the_same_slot() {
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    assert_eq!(
        key_slot(b"{user1000}.following"),
        key_slot(b"{user1000}.followers")
    );
    // Redis's documented edge cases: an empty tag hashes the whole key,
    // and only the first `{` counts.
    assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
    assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    // Known slot from the Redis docs' examples.
    assert_eq!(key_slot(b"foo"), 12182);
}

#[test]
fn every_slot_has_a_hash_tag() {
    let table = tag_table();
    assert_eq!(table.len(), usize::from(SLOTS));
    for (slot, tag) in table.iter().enumerate() {
        let tag = tag.as_ref().expect("tag for every slot");
        assert_eq!(usize::from(key_slot(tag.as_bytes())), slot);
    }
}

#[test]
fn shard_keys_land_in_the_shards_slots() {
    for ranges in [
        vec![(0u16, 5460u16)],
        vec![(5461, 10922)],
        vec![(16383, 16383)],
        vec![(7, 7), (9000, 9001)],
    ] {
        let key = shard_key("redirector:probe:", &ranges, "abc").expect("key");
        assert!(key.starts_with("redirector:probe:{"), "{key}");
        assert!(key.ends_with("}:abc"), "{key}");
        let slot = key_slot(key.as_bytes());
        assert!(
            ranges.iter().any(|&(a, b)| a <= slot && slot <= b),
            "{key} -> {slot} not in {ranges:?}"
        );
    }
}

#[test]
fn shard_key_refuses_a_prefix_with_its_own_hash_tag() {
    // "{fixed}" pins every key to one slot; only its own shard works.
    let fixed = key_slot(b"fixed");
    let other = (fixed + 1) % SLOTS;
    assert_eq!(shard_key("{fixed}:", &[(other, other)], "x"), None);
    assert!(shard_key("{fixed}:", &[(fixed, fixed)], "x").is_some());
    assert_eq!(shard_key("p", &[], "x"), None);
}

//! Internet checksum arithmetic (RFC 1071) and incremental updates (RFC 1624).
//!
//! The XDP reverse path has no skb checksum helpers, so it rewrites header
//! fields and patches checksums with [`replace`]. The full computation
//! ([`checksum`], [`tcp_checksum`]) is the from-scratch reference the host
//! tests compare against, and what the packet tests use to validate output.

/// Folds a 32-bit one's-complement accumulator into 16 bits.
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Adds `data` as big-endian 16-bit words to `sum` (an odd last byte is
/// padded with zero, as RFC 1071 requires).
pub fn add_bytes(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        sum = fold_add(sum, u16::from_be_bytes([w[0], w[1]]) as u32);
    }
    if let [last] = chunks.remainder() {
        sum = fold_add(sum, (*last as u32) << 8);
    }
    sum
}

#[inline(always)]
const fn fold_add(sum: u32, v: u32) -> u32 {
    // Keep the accumulator below 2^17 so it can never overflow.
    let s = sum + v;
    (s & 0xffff) + (s >> 16)
}

/// The Internet checksum of `data`, ready to store (complemented).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(add_bytes(0, data))
}

/// The TCP checksum of `segment` (header with its checksum field included,
/// plus payload) under the pseudo-header for `src`/`dst` (4 or 16 bytes).
/// A segment whose stored checksum is right yields 0.
pub fn tcp_checksum(src: &[u8], dst: &[u8], segment: &[u8]) -> u16 {
    l4_checksum(crate::maps::PROTO_TCP, src, dst, segment)
}

/// The checksum of an upper-layer `segment` of protocol `proto` under the
/// IPv4/IPv6 pseudo-header for `src`/`dst`: TCP, or ICMPv6 (58).
pub fn l4_checksum(proto: u8, src: &[u8], dst: &[u8], segment: &[u8]) -> u16 {
    let mut sum = add_bytes(0, src);
    sum = add_bytes(sum, dst);
    sum = fold_add(sum, proto as u32);
    let len = segment.len() as u32;
    sum = fold_add(sum, len >> 16);
    sum = fold_add(sum, len & 0xffff);
    sum = add_bytes(sum, segment);
    !fold(sum)
}

/// RFC 1624 eqn. 3: the checksum `check` (as stored, big-endian) after the
/// covered bytes `old` are replaced by `new`: `HC' = ~(~HC + ~m + m')`.
///
/// `N` must be even and the field 16-bit aligned within the checksummed data,
/// which holds for every address and port in IPv4, IPv6 and TCP headers.
#[inline(always)]
pub fn replace<const N: usize>(check: [u8; 2], old: &[u8; N], new: &[u8; N]) -> [u8; 2] {
    let mut sum = !u16::from_be_bytes(check) as u32;
    let mut i = 0;
    while i + 1 < N {
        let m = u16::from_be_bytes([old[i], old[i + 1]]);
        let m2 = u16::from_be_bytes([new[i], new[i + 1]]);
        sum += (!m) as u32 + m2 as u32;
        i += 2;
    }
    (!fold(sum)).to_be_bytes()
}

/// The 32-bit one's-complement difference of replacing the words `old` by
/// `new` (as loaded from memory, native order): the `diff` that
/// `bpf_l4_csum_replace` takes with size 0, and what `bpf_csum_diff` returns
/// for the same buffers, without a helper call.
#[inline(always)]
pub const fn diff_words<const N: usize>(old: &[u32; N], new: &[u32; N]) -> u32 {
    let mut sum: u64 = 0;
    let mut i = 0;
    while i < N {
        sum += (!old[i]) as u64 + new[i] as u64;
        i += 1;
    }
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum as u32
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A small deterministic generator so the tests need no crates.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u8 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 56) as u8
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next()).collect()
        }
    }

    /// Straightforward RFC 1071 reference: sum 16-bit words in a u64, fold.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u64 = 0;
        for (i, b) in data.iter().enumerate() {
            sum += if i % 2 == 0 {
                (*b as u64) << 8
            } else {
                *b as u64
            };
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn checksum_matches_reference_for_odd_and_even_lengths() {
        let mut rng = Lcg(1);
        for len in 0..300 {
            let data = rng.bytes(len);
            assert_eq!(checksum(&data), reference(&data), "len {len}");
        }
    }

    #[test]
    fn checksum_handles_carries_from_all_ones_data() {
        for len in [1, 2, 3, 64, 65, 1501, 65535] {
            let data = std::vec![0xffu8; len];
            assert_eq!(checksum(&data), reference(&data), "len {len}");
        }
    }

    #[test]
    fn rfc1071_example_sum() {
        // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add_bytes(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn stored_checksum_verifies_to_zero() {
        let mut rng = Lcg(7);
        for len in [20usize, 21, 40, 41, 1000] {
            let mut data = rng.bytes(len);
            data[10] = 0;
            data[11] = 0;
            let c = checksum(&data);
            data[10..12].copy_from_slice(&c.to_be_bytes());
            assert_eq!(checksum(&data), 0, "len {len}");
        }
    }

    /// Replace `N` bytes at `off` and check the incremental checksum against
    /// a full recomputation.
    fn check_replace<const N: usize>(rng: &mut Lcg, len: usize, off: usize) {
        let mut data = rng.bytes(len);
        data[0] = 0;
        data[1] = 0;
        let c = checksum(&data);
        data[0..2].copy_from_slice(&c.to_be_bytes());
        let old: [u8; N] = data[off..off + N].try_into().unwrap();
        let new: [u8; N] = rng.bytes(N).try_into().unwrap();
        data[off..off + N].copy_from_slice(&new);
        let inc = replace([data[0], data[1]], &old, &new);
        data[0..2].copy_from_slice(&inc);
        // Valid after the update ...
        assert_eq!(checksum(&data), 0, "len {len} off {off}");
        // ... and equal to a fresh computation, up to the two encodings of zero.
        data[0] = 0;
        data[1] = 0;
        let full = checksum(&data).to_be_bytes();
        let norm = |c: [u8; 2]| if c == [0xff, 0xff] { [0, 0] } else { c };
        assert_eq!(norm(inc), norm(full), "len {len} off {off}");
    }

    #[test]
    fn incremental_replace_matches_full_recomputation() {
        let mut rng = Lcg(42);
        for round in 0..2000 {
            let len = 40 + (round % 61) * 2 + (round % 2); // odd lengths too
            check_replace::<2>(&mut rng, len, 2 + 2 * (round % 8));
            check_replace::<4>(&mut rng, len, 4 + 2 * (round % 8));
            check_replace::<16>(&mut rng, len, 2 + 2 * (round % 10));
        }
    }

    #[test]
    fn incremental_replace_handles_carry_edge_values() {
        // Checksums and fields at the one's-complement extremes.
        for check in [[0u8, 0], [0xff, 0xff], [0x80, 0], [0, 1]] {
            for (old, new) in [
                ([0u8, 0], [0xff, 0xff]),
                ([0xff, 0xff], [0, 0]),
                ([0x12, 0x34], [0x12, 0x34]),
            ] {
                let out = replace(check, &old, &new);
                // Reference: ~(~HC + ~m + m') computed in u64.
                let mut s = (!u16::from_be_bytes(check)) as u64
                    + (!u16::from_be_bytes(old)) as u64
                    + u16::from_be_bytes(new) as u64;
                while s > 0xffff {
                    s = (s & 0xffff) + (s >> 16);
                }
                assert_eq!(u16::from_be_bytes(out), !(s as u16));
            }
        }
    }

    /// The kernel's `inet_proto_csum_replace_by_diff` for a packet that is
    /// not CHECKSUM_PARTIAL: `*sum = csum_fold(csum_add(diff, ~csum_unfold(*sum)))`.
    fn kernel_apply_diff(stored: [u8; 2], diff: u32) -> [u8; 2] {
        let unfolded = !(u16::from_ne_bytes(stored) as u32);
        let (s, carry) = diff.overflowing_add(unfolded);
        let s = s.wrapping_add(carry as u32);
        (!fold(s)).to_ne_bytes()
    }

    fn words<const N: usize>(b: &[u8]) -> [u32; N] {
        core::array::from_fn(|i| u32::from_ne_bytes(b[4 * i..4 * i + 4].try_into().unwrap()))
    }

    #[test]
    fn word_diff_applied_like_the_kernel_matches_replace() {
        let mut rng = Lcg(9);
        for _ in 0..5000 {
            let check = [rng.next(), rng.next()];
            let old = rng.bytes(16);
            let new = rng.bytes(16);
            let (o, n): ([u8; 16], [u8; 16]) =
                (old[..].try_into().unwrap(), new[..].try_into().unwrap());
            let a = kernel_apply_diff(check, diff_words::<4>(&words(&old), &words(&new)));
            let b = replace(check, &o, &n);
            let norm = |c: [u8; 2]| if c == [0xff, 0xff] { [0, 0] } else { c };
            assert_eq!(norm(a), norm(b));
            let (o4, n4): ([u8; 4], [u8; 4]) =
                (old[..4].try_into().unwrap(), new[..4].try_into().unwrap());
            let a = kernel_apply_diff(check, diff_words::<1>(&words(&old), &words(&new)));
            assert_eq!(norm(a), norm(replace(check, &o4, &n4)));
        }
    }

    #[test]
    fn tcp_checksum_of_known_segment() {
        // SYN 198.18.0.2:40000 -> 198.18.1.10:6379: a stored checksum verifies.
        let src = [198, 18, 0, 2];
        let dst = [198, 18, 1, 10];
        let mut seg = std::vec![0u8; 20];
        seg[0..2].copy_from_slice(&40000u16.to_be_bytes());
        seg[2..4].copy_from_slice(&6379u16.to_be_bytes());
        seg[12] = 5 << 4;
        seg[13] = 0x02;
        let c = tcp_checksum(&src, &dst, &seg);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        assert_eq!(tcp_checksum(&src, &dst, &seg), 0);
        // The pseudo-header matters: a different destination invalidates it.
        assert_ne!(tcp_checksum(&src, &[198, 18, 2, 10], &seg), 0);
    }
}

//! Which partition of the topic an order's records go to: the Java client's default partitioner.
//!
//! CartService computes the partition of an `orderId` itself and produces to it explicitly, so
//! the partition it *routes* a request by (the one whose owner may write that order) and the one
//! the record *lands* in can never disagree, whatever partitioner a client configuration names.
//! The function is the one Kafka's Java producer applies to a keyed record (`murmur2` of the
//! key bytes, sign bit cleared, modulo the partition count; librdkafka's `murmur2_random`), so a
//! Java or Kafka Streams application keyed by order ID co-partitions with this topic.

/// Kafka's `Utils.murmur2`: MurmurHash2, 32 bits, seed `0x9747b28c`, little-endian words.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    // Java mixes the length in as an int; keys are bounded far below 2^31 bytes.
    let mut h: u32 = SEED ^ (length as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a record keyed `key` in a topic of `partitions` partitions, as Kafka's Java
/// producer chooses it (`toPositive(murmur2(key)) % partitions`).
///
/// `partitions` ≤ 0 is a caller bug (a topic has at least one partition); it is treated as one.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let positive = murmur2(key.as_bytes()) & 0x7fff_ffff;
    positive % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Kafka's own `UtilsTest.testMurmur2` asserts for its Java implementation.
    #[test]
    fn murmur2_matches_kafkas_java_implementation() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn partitions_are_in_range_and_stable() {
        for partitions in 1..=12 {
            for i in 0..500 {
                let key = format!("ORDER-{i}");
                let p = partition_for(&key, partitions);
                assert!((0..partitions).contains(&p));
                assert_eq!(p, partition_for(&key, partitions));
            }
        }
        // A key whose hash is negative in Java still lands in range (the sign bit is cleared,
        // not `abs`, which would differ for i32::MIN).
        assert!(murmur2(b"21") < 0);
        assert_eq!(
            partition_for("21", 3),
            ((-973_932_308_i32) & 0x7fff_ffff) % 3
        );
    }
}

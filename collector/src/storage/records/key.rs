//! Record keys: the record's time as 8 big-endian bytes, sign bit
//! flipped so that the bytes sort as the times do, then 8 bytes of a
//! stable hash of where the record came from (host, stream, batch seq,
//! place in the batch). An id is a key in hex.

/// A record's key.
pub(super) type Key = [u8; 16];

pub(super) fn time_prefix(time_ms: i64) -> [u8; 8] {
    ((time_ms as u64) ^ (1 << 63)).to_be_bytes()
}

pub(super) fn key_time(key: &[u8]) -> Option<i64> {
    let prefix: [u8; 8] = key.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(prefix) ^ (1 << 63)) as i64)
}

pub(super) fn key(time_ms: i64, host: &str, stream_id: u64, seq: u64, index: usize) -> Key {
    // FNV-1a: stable across builds and restarts, which the idempotence
    // needs; only records of the same millisecond can collide.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(host.as_bytes());
    eat(&[0]);
    eat(&stream_id.to_be_bytes());
    eat(&seq.to_be_bytes());
    eat(&(index as u64).to_be_bytes());
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&time_prefix(time_ms));
    k[8..].copy_from_slice(&h.to_be_bytes());
    k
}

pub(super) fn key_hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key an id names; none unless it is 32 hex digits.
pub(super) fn parse_id(id: &str) -> Option<Key> {
    if id.len() != 32 || !id.is_ascii() {
        return None;
    }
    let mut k = [0u8; 16];
    for (i, byte) in k.iter_mut().enumerate() {
        *byte = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_including_before_1970() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        let keys: Vec<Key> = times.iter().map(|t| key(*t, "h", 1, 1, 0)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for (t, k) in times.iter().zip(&keys) {
            assert_eq!(key_time(k), Some(*t));
        }
        let k = key(5, "db", 1, 2, 3);
        assert_eq!(parse_id(&key_hex(&k)), Some(k));
        assert_eq!(parse_id("xyz"), None);
        assert_eq!(parse_id(&"g".repeat(32)), None);
        assert_ne!(key(5, "db", 1, 2, 3), key(5, "db", 1, 2, 4));
        assert_ne!(key(5, "db", 1, 2, 3), key(5, "web", 1, 2, 3));
    }
}

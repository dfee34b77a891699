//! Gorilla-compressed chunks of one series' samples, as Prometheus keeps
//! them: timestamps as delta-of-delta, values as XOR against the previous
//! value (Pelkonen et al., "Gorilla", VLDB 2015).
//!
//! Layout: a 2-byte sample count, the first timestamp (zig-zag varint) and
//! value (8 bytes), then for each later sample a bit stream:
//! - timestamp: the second as a zig-zag varint delta; from the third on,
//!   delta-of-delta `0` (same delta), `10`+14 bits, `110`+17 bits,
//!   `1110`+20 bits, or `1111`+64 bits;
//! - value: `0` (same as before), `10`+meaningful bits in the previous
//!   window, or `11`+5 bits leading zeros+6 bits length+the bits.
//!
//! Arithmetic on timestamps wraps, so any sequence of i64 times round-trips,
//! however large or negative its steps; values round-trip bit for bit (NaN
//! payloads, stale markers, -0.0, infinities). Ordering is the caller's
//! business: the head rejects out-of-order samples before they get here.

/// Samples per chunk before the head cuts a new one (Prometheus' figure).
pub const TARGET_SAMPLES: u16 = 120;

/// Why a chunk could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk truncated at bit {0}")]
    Truncated(usize),
    #[error("chunk header invalid")]
    Header,
}

/// Appends samples to a growing chunk.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    bits: BitWriter,
    count: u16,
    last_t: i64,
    last_delta: i64,
    last_v: u64,
    leading: u8,
    trailing: u8,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkWriter {
    pub fn new() -> Self {
        let mut bits = BitWriter::default();
        bits.bytes.extend_from_slice(&[0, 0]);
        ChunkWriter {
            bits,
            count: 0,
            last_t: 0,
            last_delta: 0,
            last_v: 0,
            leading: u8::MAX,
            trailing: 0,
        }
    }

    /// Samples in the chunk.
    pub fn len(&self) -> u16 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The newest timestamp, if any sample was appended.
    pub fn last_timestamp(&self) -> Option<i64> {
        (self.count > 0).then_some(self.last_t)
    }

    /// Appends a sample. Returns false when the chunk is full (u16 samples).
    pub fn append(&mut self, t: i64, v: f64) -> bool {
        if self.count == u16::MAX {
            return false;
        }
        let v = v.to_bits();
        match self.count {
            0 => {
                self.bits.varint(zigzag(t));
                self.bits.bytes.extend_from_slice(&v.to_be_bytes());
            }
            1 => {
                let delta = t.wrapping_sub(self.last_t);
                self.bits.varint(zigzag(delta));
                self.write_value(v);
                self.last_delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.last_t);
                let dod = delta.wrapping_sub(self.last_delta);
                self.write_dod(dod);
                self.write_value(v);
                self.last_delta = delta;
            }
        }
        self.last_t = t;
        self.last_v = v;
        self.count += 1;
        self.bits.bytes[..2].copy_from_slice(&self.count.to_be_bytes());
        true
    }

    fn write_dod(&mut self, dod: i64) {
        let b = &mut self.bits;
        // Two's complement in n bits: the reader sign-extends.
        let fits = |n: u32| {
            let half = 1i64 << (n - 1);
            (-half..half).contains(&dod)
        };
        if dod == 0 {
            b.bit(false);
        } else if fits(14) {
            b.bits(0b10, 2);
            b.bits(dod as u64 & ((1 << 14) - 1), 14);
        } else if fits(17) {
            b.bits(0b110, 3);
            b.bits(dod as u64 & ((1 << 17) - 1), 17);
        } else if fits(20) {
            b.bits(0b1110, 4);
            b.bits(dod as u64 & ((1 << 20) - 1), 20);
        } else {
            b.bits(0b1111, 4);
            b.bits(dod as u64, 64);
        }
    }

    fn write_value(&mut self, v: u64) {
        let xor = v ^ self.last_v;
        if xor == 0 {
            self.bits.bit(false);
            return;
        }
        self.bits.bit(true);
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != u8::MAX && leading >= self.leading && trailing >= self.trailing {
            self.bits.bit(false);
            let width = 64 - self.leading - self.trailing;
            self.bits.bits(xor >> self.trailing, width);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            let width = 64 - leading - trailing;
            self.bits.bit(true);
            self.bits.bits(u64::from(leading), 5);
            // A width of 64 is written as 0: six bits hold 0..=63.
            self.bits.bits(u64::from(width & 63), 6);
            self.bits.bits(xor >> trailing, width);
        }
    }

    /// The encoded chunk.
    pub fn bytes(&self) -> &[u8] {
        &self.bits.bytes
    }
}

/// Reads a chunk's samples in order.
pub struct ChunkReader<'a> {
    bits: BitReader<'a>,
    remaining: u16,
    read: u16,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> ChunkReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self, ChunkError> {
        let count = bytes
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(ChunkError::Header)?;
        Ok(ChunkReader {
            bits: BitReader { bytes, pos: 16 },
            remaining: count,
            read: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
        })
    }

    fn next_sample(&mut self) -> Result<(i64, f64), ChunkError> {
        match self.read {
            0 => {
                self.t = unzigzag(self.bits.varint()?);
                self.v = self.bits.bits(64)?;
            }
            1 => {
                self.delta = unzigzag(self.bits.varint()?);
                self.t = self.t.wrapping_add(self.delta);
                self.read_value()?;
            }
            _ => {
                let dod = self.read_dod()?;
                self.delta = self.delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.delta);
                self.read_value()?;
            }
        }
        self.read += 1;
        Ok((self.t, f64::from_bits(self.v)))
    }

    fn read_dod(&mut self) -> Result<i64, ChunkError> {
        let mut prefix = 0;
        while prefix < 4 && self.bits.bit()? {
            prefix += 1;
        }
        let width = match prefix {
            0 => return Ok(0),
            1 => 14,
            2 => 17,
            3 => 20,
            _ => return Ok(self.bits.bits(64)? as i64),
        };
        let raw = self.bits.bits(width)?;
        // Sign-extend from `width` bits.
        let shift = 64 - u32::from(width);
        Ok(((raw << shift) as i64) >> shift)
    }

    fn read_value(&mut self) -> Result<(), ChunkError> {
        if !self.bits.bit()? {
            return Ok(());
        }
        if self.bits.bit()? {
            self.leading = self.bits.bits(5)? as u8;
            let mut width = self.bits.bits(6)? as u8;
            if width == 0 {
                width = 64;
            }
            self.trailing = 64u8.saturating_sub(self.leading).saturating_sub(width);
        }
        let width = 64u8
            .saturating_sub(self.leading)
            .saturating_sub(self.trailing);
        let bits = self.bits.bits(width)?;
        self.v ^= bits.checked_shl(u32::from(self.trailing)).unwrap_or(0);
        Ok(())
    }
}

impl Iterator for ChunkReader<'_> {
    type Item = Result<(i64, f64), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let sample = self.next_sample();
        if sample.is_err() {
            self.remaining = 0;
        }
        Some(sample)
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = start a new byte).
    used: u8,
}

impl BitWriter {
    fn bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.bytes.push(0);
        }
        if bit {
            if let Some(last) = self.bytes.last_mut() {
                *last |= 0x80 >> self.used;
            }
        }
        self.used = (self.used + 1) % 8;
    }

    /// The low `width` bits of `value`, most significant first, filling
    /// the current byte and then whole bytes at a time.
    fn bits(&mut self, value: u64, width: u8) {
        let mut left = width;
        while left > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let room = 8 - self.used;
            let take = room.min(left);
            let chunk = ((value >> (left - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (room - take);
            }
            self.used = (self.used + take) % 8;
            left -= take;
        }
    }

    /// A LEB128 varint, bit-aligned like everything else in the stream.
    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            let more = v != 0;
            self.bits(u64::from(byte | if more { 0x80 } else { 0 }), 8);
            if !more {
                return;
            }
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Result<bool, ChunkError> {
        let byte = *self
            .bytes
            .get(self.pos / 8)
            .ok_or(ChunkError::Truncated(self.pos))?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Ok(bit)
    }

    /// `width` bits, most significant first, a byte's worth at a time.
    fn bits(&mut self, width: u8) -> Result<u64, ChunkError> {
        let mut v = 0u64;
        let mut left = width;
        while left > 0 {
            let byte = *self
                .bytes
                .get(self.pos / 8)
                .ok_or(ChunkError::Truncated(self.pos))?;
            let used = (self.pos % 8) as u8;
            let room = 8 - used;
            let take = room.min(left);
            let chunk = (byte >> (room - take)) & (((1u16 << take) - 1) as u8);
            v = (v << take) | u64::from(chunk);
            self.pos += usize::from(take);
            left -= take;
        }
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, ChunkError> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.bits(8)? as u8;
            v |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ChunkError::Truncated(self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Prometheus' stale marker: a NaN with this exact payload.
    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    fn round_trip(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
        let mut w = ChunkWriter::new();
        for (t, v) in samples {
            assert!(w.append(*t, *v));
        }
        ChunkReader::new(w.bytes())
            .unwrap()
            .map(|s| s.map(|(t, v)| (t, v.to_bits())).unwrap())
            .collect()
    }

    fn bits(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
        samples.iter().map(|(t, v)| (*t, v.to_bits())).collect()
    }

    #[test]
    fn special_values_and_one_sample_chunks_round_trip() {
        let samples = [
            (1_700_000_000_000, 1.0),
            (1_700_000_010_000, f64::NAN),
            (1_700_000_020_000, f64::from_bits(STALE_NAN)),
            (1_700_000_030_000, -0.0),
            (1_700_000_040_000, 0.0),
            (1_700_000_050_000, f64::INFINITY),
            (1_700_000_060_000, f64::NEG_INFINITY),
            (1_700_000_060_001, f64::MIN_POSITIVE),
            (i64::MAX, f64::MAX),
            (i64::MIN, f64::MIN),
        ];
        assert_eq!(round_trip(&samples), bits(&samples));
        assert_eq!(round_trip(&samples[..1]), bits(&samples[..1]));
        assert!(round_trip(&[]).is_empty());
    }

    #[test]
    fn delta_of_delta_bucket_edges_round_trip() {
        for edge in [13, 16, 19] {
            let half = 1i64 << edge;
            for dod in [half - 1, half, half + 1, -half, -half - 1, -half + 1] {
                // Deltas 1000 then 1000 + dod: one delta-of-delta of `dod`.
                let samples = [(0, 1.0), (1000, 2.0), (2000 + dod, 3.0)];
                assert_eq!(round_trip(&samples), bits(&samples), "dod {dod}");
            }
        }
    }

    #[test]
    fn regular_samples_compress_well() {
        let mut w = ChunkWriter::new();
        for i in 0..120 {
            w.append(1_700_000_000_000 + i * 10_000, 42.0 + (i % 3) as f64);
        }
        // 16 bytes each uncompressed; Gorilla does far better on steady data.
        assert!(w.bytes().len() < 120 * 3, "{} bytes", w.bytes().len());
    }

    #[test]
    fn truncated_chunks_are_errors_not_panics() {
        let mut w = ChunkWriter::new();
        for i in 0..10 {
            w.append(i * 1000, i as f64 * 1.5);
        }
        let bytes = w.bytes();
        for cut in 0..bytes.len() {
            if let Ok(reader) = ChunkReader::new(&bytes[..cut]) {
                let results: Vec<_> = reader.collect();
                assert!(results.iter().any(|r| r.is_err()) || results.len() < 10);
            }
        }
    }

    proptest! {
        #[test]
        fn any_samples_round_trip_bit_exactly(
            samples in proptest::collection::vec((any::<i64>(), any::<u64>()), 0..300)
        ) {
            let samples: Vec<(i64, f64)> =
                samples.into_iter().map(|(t, v)| (t, f64::from_bits(v))).collect();
            prop_assert_eq!(round_trip(&samples), bits(&samples));
        }

        #[test]
        fn realistic_series_round_trip(
            start in -1_000_000_000_000i64..4_000_000_000_000,
            steps in proptest::collection::vec((0i64..100_000, -1e6f64..1e6), 1..200)
        ) {
            let mut t = start;
            let samples: Vec<(i64, f64)> = steps
                .into_iter()
                .map(|(dt, v)| { t += dt; (t, v) })
                .collect();
            prop_assert_eq!(round_trip(&samples), bits(&samples));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(reader) = ChunkReader::new(&bytes) {
                for _ in reader {}
            }
        }
    }
}

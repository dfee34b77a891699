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
//! A closed chunk whose values are all short decimals (integers, CPU
//! seconds in hundredths, load averages to two places) is re-encoded when
//! that is smaller ([`recode_decimal`]): the values become integers times
//! 10^-e, stored as delta-of-delta like the timestamps (`0`, `10`+8 bits,
//! `110`+16, `1110`+32, `1111`+64), after the first as a zig-zag varint
//! and a one-byte `e`. Its count has the top bit set. Only values whose
//! decimal form divides back to the very same bits qualify, so the samples
//! still round-trip bit for bit; the open chunk in the head is always
//! Gorilla.
//!
//! Arithmetic on timestamps wraps, so any sequence of i64 times round-trips,
//! however large or negative its steps; values round-trip bit for bit (NaN
//! payloads, stale markers, -0.0, infinities). Ordering is the caller's
//! business: the head rejects out-of-order samples before they get here.

/// Samples per chunk before the head cuts a new one (Prometheus' figure).
pub const TARGET_SAMPLES: u16 = 120;

/// Most samples in one chunk: the count's top bit marks decimal chunks.
const MAX_SAMPLES: u16 = 0x7fff;
const DECIMAL_FLAG: u16 = 0x8000;
/// Most decimal places a decimal chunk keeps.
const MAX_EXPONENT: usize = 6;
const POW10: [f64; MAX_EXPONENT + 1] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6];
/// Integers beyond this are not exact in an f64.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

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

    /// Appends a sample. Returns false when the chunk is full.
    pub fn append(&mut self, t: i64, v: f64) -> bool {
        if self.count >= MAX_SAMPLES {
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

    fn write_timestamp(&mut self, t: i64) {
        match self.count {
            0 => self.bits.varint(zigzag(t)),
            1 => {
                let delta = t.wrapping_sub(self.last_t);
                self.bits.varint(zigzag(delta));
                self.last_delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.last_t);
                let dod = delta.wrapping_sub(self.last_delta);
                self.write_dod(dod);
                self.last_delta = delta;
            }
        }
        self.last_t = t;
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
    /// Decimal chunks: the exponent, the last integer and its delta.
    decimal: Option<(usize, i64, i64)>,
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
        let mut bits = BitReader { bytes, pos: 16 };
        let decimal = if count & DECIMAL_FLAG != 0 {
            // The exponent follows the first timestamp: peek past it.
            let mut peek = BitReader { bytes, pos: 16 };
            peek.varint()?;
            let e = peek.bits(8)? as usize;
            if e > MAX_EXPONENT {
                return Err(ChunkError::Header);
            }
            Some((e, 0, 0))
        } else {
            None
        };
        bits.pos = 16;
        Ok(ChunkReader {
            bits,
            decimal,
            remaining: count & !DECIMAL_FLAG,
            read: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
        })
    }

    fn next_sample(&mut self) -> Result<(i64, f64), ChunkError> {
        if let Some(state) = self.decimal {
            return self.next_decimal(state);
        }
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

    fn next_decimal(
        &mut self,
        (e, last, delta): (usize, i64, i64),
    ) -> Result<(i64, f64), ChunkError> {
        let m = match self.read {
            0 => {
                self.t = unzigzag(self.bits.varint()?);
                self.bits.bits(8)?;
                let m = unzigzag(self.bits.varint()?);
                self.decimal = Some((e, m, 0));
                m
            }
            1 => {
                self.delta = unzigzag(self.bits.varint()?);
                self.t = self.t.wrapping_add(self.delta);
                let d = read_int_bucket(&mut self.bits)?;
                let m = last.wrapping_add(d);
                self.decimal = Some((e, m, d));
                m
            }
            _ => {
                let dod = self.read_dod()?;
                self.delta = self.delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.delta);
                let d = delta.wrapping_add(read_int_bucket(&mut self.bits)?);
                let m = last.wrapping_add(d);
                self.decimal = Some((e, m, d));
                m
            }
        };
        self.read += 1;
        Ok((self.t, m as f64 / POW10[e]))
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

/// Integer buckets of decimal chunks: `0`, `10`+8, `110`+16, `1110`+32,
/// `1111`+64 bits, two's complement.
fn write_int_bucket(bits: &mut BitWriter, v: i64) {
    let fits = |n: u32| {
        let half = 1i64 << (n - 1);
        (-half..half).contains(&v)
    };
    if v == 0 {
        bits.bit(false);
    } else if fits(8) {
        bits.bits(0b10, 2);
        bits.bits(v as u64 & 0xff, 8);
    } else if fits(16) {
        bits.bits(0b110, 3);
        bits.bits(v as u64 & 0xffff, 16);
    } else if fits(32) {
        bits.bits(0b1110, 4);
        bits.bits(v as u64 & 0xffff_ffff, 32);
    } else {
        bits.bits(0b1111, 4);
        bits.bits(v as u64, 64);
    }
}

fn read_int_bucket(bits: &mut BitReader<'_>) -> Result<i64, ChunkError> {
    let mut prefix = 0;
    while prefix < 4 && bits.bit()? {
        prefix += 1;
    }
    let width: u8 = match prefix {
        0 => return Ok(0),
        1 => 8,
        2 => 16,
        3 => 32,
        _ => return Ok(bits.bits(64)? as i64),
    };
    let raw = bits.bits(width)?;
    let shift = 64 - u32::from(width);
    Ok(((raw << shift) as i64) >> shift)
}

/// `v` as an integer times 10^-e for the smallest e that gives back the
/// very same bits, if any does.
fn decimal_exponent(v: f64) -> Option<usize> {
    if !v.is_finite() || (v == 0.0 && v.is_sign_negative()) {
        return None;
    }
    (0..=MAX_EXPONENT).find(|&e| as_decimal(v, e).is_some())
}

fn as_decimal(v: f64, e: usize) -> Option<i64> {
    let m = (v * POW10[e]).round();
    (m.abs() <= MAX_EXACT && (m / POW10[e]).to_bits() == v.to_bits()).then_some(m as i64)
}

/// The chunk re-encoded as a decimal chunk, if its values allow it and
/// the result is smaller.
pub fn recode_decimal(chunk: &[u8]) -> Option<Vec<u8>> {
    let samples: Vec<(i64, f64)> = ChunkReader::new(chunk)
        .ok()?
        .collect::<Result<_, _>>()
        .ok()?;
    if samples.is_empty() {
        return None;
    }
    let mut e = 0;
    for (_, v) in &samples {
        e = e.max(decimal_exponent(*v)?);
    }
    let ints: Vec<i64> = samples
        .iter()
        .map(|(_, v)| as_decimal(*v, e))
        .collect::<Option<_>>()?;
    let mut w = ChunkWriter::new();
    let (mut last, mut delta) = (0i64, 0i64);
    for (i, ((t, _), m)) in samples.iter().zip(&ints).enumerate() {
        w.write_timestamp(*t);
        match i {
            0 => {
                w.bits.bits(e as u64, 8);
                w.bits.varint(zigzag(*m));
            }
            1 => {
                delta = m.wrapping_sub(last);
                write_int_bucket(&mut w.bits, delta);
            }
            _ => {
                let d = m.wrapping_sub(last);
                write_int_bucket(&mut w.bits, d.wrapping_sub(delta));
                delta = d;
            }
        }
        last = *m;
        w.count += 1;
    }
    let count = w.count | DECIMAL_FLAG;
    w.bits.bytes[..2].copy_from_slice(&count.to_be_bytes());
    (w.bits.bytes.len() < chunk.len()).then_some(w.bits.bytes)
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

    /// `width` bits, most significant first: from one 8-byte load where the
    /// chunk has 8 bytes left, else a byte's worth at a time.
    fn bits(&mut self, width: u8) -> Result<u64, ChunkError> {
        let (byte, shift) = (self.pos / 8, self.pos % 8);
        if width > 0 && usize::from(width) + shift <= 64 {
            if let Some(window) = self.bytes.get(byte..byte + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(window);
                let v = (u64::from_be_bytes(word) << shift) >> (64 - u32::from(width));
                self.pos += usize::from(width);
                return Ok(v);
            }
        }
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

    fn decimal_round_trip(samples: &[(i64, f64)]) -> Option<Vec<(i64, u64)>> {
        let mut w = ChunkWriter::new();
        for (t, v) in samples {
            w.append(*t, *v);
        }
        let recoded = recode_decimal(w.bytes())?;
        Some(
            ChunkReader::new(&recoded)
                .unwrap()
                .map(|s| s.map(|(t, v)| (t, v.to_bits())).unwrap())
                .collect(),
        )
    }

    #[test]
    fn short_decimals_recode_smaller_and_exactly() {
        // CPU seconds in hundredths, as /proc/stat gives them.
        let mut ticks = 1_073_741_823i64;
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| {
                ticks += 990 + (i * 7) % 13;
                (1_800_000_000_000 + i * 10_000, ticks as f64 / 100.0)
            })
            .collect();
        let mut w = ChunkWriter::new();
        for (t, v) in &samples {
            w.append(*t, *v);
        }
        let recoded = recode_decimal(w.bytes()).expect("decimal chunk");
        assert!(
            recoded.len() * 2 < w.bytes().len(),
            "{} vs {}",
            recoded.len(),
            w.bytes().len()
        );
        assert_eq!(decimal_round_trip(&samples).unwrap(), bits(&samples));
        // Values that are not short decimals stay Gorilla.
        assert!(decimal_round_trip(&[(0, 0.1 + 0.2), (1, 1.0)]).is_none());
        assert!(decimal_round_trip(&[(0, -0.0), (1, 1.0)]).is_none());
        assert!(decimal_round_trip(&[(0, f64::NAN), (1, 1.0)]).is_none());
    }

    proptest! {
        #[test]
        fn decimal_chunks_round_trip_bit_exactly(
            start in any::<i64>(),
            steps in proptest::collection::vec((any::<i64>(), -1_000_000_000i64..1_000_000_000, 0usize..=6), 1..200)
        ) {
            let mut t = start;
            let samples: Vec<(i64, f64)> = steps
                .into_iter()
                .map(|(dt, m, e)| { t = t.wrapping_add(dt); (t, m as f64 / POW10[e]) })
                .collect();
            if let Some(got) = decimal_round_trip(&samples) {
                prop_assert_eq!(got, bits(&samples));
            }
        }

        #[test]
        fn any_values_recode_exactly_or_not_at_all(
            samples in proptest::collection::vec((any::<i64>(), any::<u64>()), 1..100)
        ) {
            let samples: Vec<(i64, f64)> =
                samples.into_iter().map(|(t, v)| (t, f64::from_bits(v))).collect();
            if let Some(got) = decimal_round_trip(&samples) {
                prop_assert_eq!(got, bits(&samples));
            }
        }

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

//! The head: each series' open chunk and newest sample, in memory. A chunk
//! is cut (handed back to be persisted) at about 120 samples or when it
//! would span more than two hours. Samples older than or equal to the
//! series' newest are refused here, so a chunk is never corrupted by them.
//! A closed chunk is handed back re-encoded as decimals when that is
//! smaller ([`recode_decimal`]).

use super::chunk::{recode_decimal, ChunkReader, ChunkWriter, TARGET_SAMPLES};
use super::index::SeriesId;

/// Longest time one chunk spans (ms).
pub const MAX_CHUNK_SPAN_MS: i64 = 2 * 3600 * 1000;

/// Why a sample was not appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Older than the series' newest sample.
    OutOfOrder,
    /// Same time as the series' newest sample.
    Duplicate,
}

impl Rejection {
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::OutOfOrder => "out_of_order",
            Rejection::Duplicate => "duplicate",
        }
    }
}

/// A chunk the head has closed: to be persisted under (series, max time).
#[derive(Debug, Clone)]
pub struct ClosedChunk {
    pub series: SeriesId,
    pub min_t: i64,
    pub max_t: i64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct HeadSeries {
    chunk: ChunkWriter,
    min_t: i64,
    last: Option<(i64, f64)>,
}

/// See the module comment.
#[derive(Debug, Default)]
pub struct Head {
    /// Indexed by series id: ids are dense, handed out from 1.
    series: Vec<HeadSeries>,
}

impl Head {
    /// Appends a sample; returns a chunk the append closed, if any.
    pub fn append(
        &mut self,
        id: SeriesId,
        t: i64,
        v: f64,
    ) -> Result<Option<ClosedChunk>, Rejection> {
        let s = self.slot(id);
        if let Some((last_t, _)) = s.last {
            if t < last_t {
                return Err(Rejection::OutOfOrder);
            }
            if t == last_t {
                return Err(Rejection::Duplicate);
            }
        }
        let mut closed = None;
        if !s.chunk.is_empty()
            && (s.chunk.len() >= TARGET_SAMPLES || t.saturating_sub(s.min_t) > MAX_CHUNK_SPAN_MS)
        {
            closed = take(id, s);
        }
        if s.chunk.is_empty() {
            s.min_t = t;
        }
        s.chunk.append(t, v);
        s.last = Some((t, v));
        Ok(closed)
    }

    /// Sets a series' newest sample without a chunk: at start, from the
    /// newest persisted chunk, so samples already there are refused.
    pub fn seed(&mut self, id: SeriesId, t: i64, v: f64) {
        let s = self.slot(id);
        if s.last.is_none_or(|(last, _)| last < t) {
            s.last = Some((t, v));
        }
    }

    fn slot(&mut self, id: SeriesId) -> &mut HeadSeries {
        let at = id as usize;
        if at >= self.series.len() {
            self.series.resize_with(at + 1, HeadSeries::default);
        }
        &mut self.series[at]
    }

    /// The newest sample of a series.
    pub fn last(&self, id: SeriesId) -> Option<(i64, f64)> {
        self.series.get(id as usize).and_then(|s| s.last)
    }

    /// Samples of the series' open chunk within [mint, maxt].
    pub fn samples(&self, id: SeriesId, mint: i64, maxt: i64) -> Vec<(i64, f64)> {
        let Some(s) = self.series.get(id as usize) else {
            return Vec::new();
        };
        let Ok(reader) = ChunkReader::new(s.chunk.bytes()) else {
            return Vec::new();
        };
        reader
            .filter_map(Result::ok)
            .filter(|(t, _)| (mint..=maxt).contains(t))
            .collect()
    }

    /// Oldest time still only in the head (not in a closed chunk), across
    /// every series: the write-ahead log is needed from there on.
    pub fn min_open_time(&self) -> Option<i64> {
        self.series
            .iter()
            .filter(|s| !s.chunk.is_empty())
            .map(|s| s.min_t)
            .min()
    }

    /// Closes every open chunk whose newest sample is older than `before`
    /// (series that went quiet), so the log behind them can go.
    pub fn close_idle(&mut self, before: i64) -> Vec<ClosedChunk> {
        self.series
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| s.last.is_some_and(|(t, _)| t < before) && !s.chunk.is_empty())
            .filter_map(|(id, s)| take(id as SeriesId, s))
            .collect()
    }
}

fn take(id: SeriesId, s: &mut HeadSeries) -> Option<ClosedChunk> {
    let max_t = s.chunk.last_timestamp()?;
    let chunk = std::mem::take(&mut s.chunk);
    Some(ClosedChunk {
        series: id,
        min_t: s.min_t,
        max_t,
        bytes: recode_decimal(chunk.bytes()).unwrap_or_else(|| chunk.bytes().to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_and_duplicate_samples_are_refused() {
        let mut head = Head::default();
        head.append(1, 1000, 1.0).unwrap();
        assert_eq!(head.append(1, 999, 2.0).unwrap_err(), Rejection::OutOfOrder);
        assert_eq!(head.append(1, 1000, 2.0).unwrap_err(), Rejection::Duplicate);
        assert_eq!(head.last(1), Some((1000, 1.0)));
        assert_eq!(head.samples(1, 0, i64::MAX), [(1000, 1.0)]);
    }

    #[test]
    fn chunks_are_cut_at_120_samples_or_two_hours() {
        let mut head = Head::default();
        let mut closed = Vec::new();
        for i in 0..121 {
            closed.extend(head.append(1, i * 10_000, i as f64).unwrap());
        }
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].min_t, closed[0].max_t), (0, 119 * 10_000));
        let chunk: Vec<_> = ChunkReader::new(&closed[0].bytes).unwrap().collect();
        assert_eq!(chunk.len(), 120);
        let cut = head.append(2, 0, 1.0).unwrap();
        assert!(cut.is_none());
        let cut = head.append(2, MAX_CHUNK_SPAN_MS + 1, 1.0).unwrap();
        assert!(cut.is_some(), "a chunk never spans more than two hours");
        assert_eq!(head.min_open_time(), Some(1_200_000));
    }

    #[test]
    fn idle_series_are_closed() {
        let mut head = Head::default();
        head.append(1, 1000, 1.0).unwrap();
        head.append(2, 50_000, 1.0).unwrap();
        let closed = head.close_idle(10_000);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].series, 1);
        assert_eq!(head.min_open_time(), Some(50_000));
        assert_eq!(head.last(1), Some((1000, 1.0)), "the newest sample is kept");
        assert!(head.append(1, 500, 1.0).is_err());
    }
}

//! Frames on the wire: a 4-byte big-endian length, then a bincode payload.
//!
//! The length is checked against the configured maximum before a byte of the
//! payload is allocated, and bincode decodes with a size limit no larger than
//! the payload itself (rounded up to a tier), so a hostile length inside the
//! payload cannot make it allocate more than the frame could hold.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::PROTOCOL_VERSION;

/// Default largest payload accepted: 8 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// The largest maximum a config may set.
pub const MAX_FRAME_BYTES_LIMIT: usize = 64 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed by peer in the middle of a frame")]
    Truncated,
    #[error("frame of {len} bytes is over the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame of 0 bytes")]
    Empty,
    #[error("cannot decode frame payload ({len} bytes): {reason}")]
    Decode { len: usize, reason: String },
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// A short label for metrics (`reason` label values are bounded).
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::Truncated => "truncated",
            FrameError::TooLarge { .. } => "too_large",
            FrameError::Empty => "empty",
            FrameError::Decode { .. } => "decode",
            FrameError::Encode(_) => "encode",
            FrameError::Io(_) => "io",
        }
    }
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a message as a complete frame (length prefix included).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0u8; 4];
    bincode::serde::encode_into_std_write(msg, &mut frame, config())
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = u32::try_from(frame.len() - 4)
        .map_err(|_| FrameError::Encode(format!("payload of {} bytes", frame.len() - 4)))?;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    Ok(frame)
}

/// Decodes one payload (without its length prefix). Trailing bytes are an
/// error: a frame carries exactly one message.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let result = match payload.len() {
        0..=65_536 => decode_limited::<T, 65_536>(payload),
        65_537..=1_048_576 => decode_limited::<T, 1_048_576>(payload),
        1_048_577..=8_388_608 => decode_limited::<T, 8_388_608>(payload),
        _ => decode_limited::<T, MAX_FRAME_BYTES_LIMIT>(payload),
    };
    let (msg, used) = result.map_err(|e| FrameError::Decode {
        len: payload.len(),
        reason: e.to_string(),
    })?;
    if used != payload.len() {
        return Err(FrameError::Decode {
            len: payload.len(),
            reason: format!("{} trailing bytes after the message", payload.len() - used),
        });
    }
    Ok(msg)
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(
    payload: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(payload, config().with_limit::<LIMIT>())
}

/// Reads the protocol version from a payload that should hold a `Hello`,
/// even when the rest of it is laid out by another version of the protocol.
/// Returns `None` when the payload is not a `Hello` at all.
pub fn peek_hello_version(payload: &[u8]) -> Option<u16> {
    let cfg = config().with_limit::<64>();
    let ((variant, version), _): ((u32, u16), usize) =
        bincode::serde::decode_from_slice(payload, cfg).ok()?;
    (variant == 0).then_some(version)
}

/// Says whether a peer's protocol version is one this build speaks.
pub fn version_supported(version: u16) -> bool {
    version == PROTOCOL_VERSION
}

/// Reads one frame's payload into `buf`. Returns `Ok(false)` on a clean end of
/// stream before the first byte of a frame.
pub async fn read_payload<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut prefix[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    buf.clear();
    buf.resize(len, 0);
    reader.read_exact(buf).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(true)
}

/// Reads and decodes one message. `Ok(None)` is a clean end of stream.
pub async fn read_message<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<Option<T>, FrameError> {
    if !read_payload(reader, max, buf).await? {
        return Ok(None);
    }
    decode_payload(buf).map(Some)
}

/// Encodes and writes one message, then flushes. Returns the bytes written.
pub async fn write_message<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    msg: &T,
) -> Result<usize, FrameError> {
    let frame = encode_frame(msg)?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(frame.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, SampleSet};
    use crate::protocol::{AgentMessage, Batch, CollectorMessage, Entry, Hello};
    use proptest::prelude::*;

    fn hello(version: u16) -> AgentMessage {
        AgentMessage::Hello(Hello {
            protocol_version: version,
            agent_version: "0.1.0".into(),
            hostname: "db".into(),
            os: "Debian 12".into(),
            kernel: "6.1".into(),
            boot_time: 1_700_000_000,
            labels: vec![("env".into(), "prod".into())],
            stream_id: 42,
        })
    }

    #[test]
    fn hello_round_trips_and_its_version_can_be_peeked() {
        let frame = encode_frame(&hello(7)).unwrap();
        let payload = &frame[4..];
        assert_eq!(peek_hello_version(payload), Some(7));
        let back: AgentMessage = decode_payload(payload).unwrap();
        assert_eq!(back, hello(7));
    }

    #[test]
    fn peek_refuses_messages_that_are_not_hello() {
        let frame = encode_frame(&AgentMessage::Heartbeat).unwrap();
        assert_eq!(peek_hello_version(&frame[4..]), None);
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut frame = encode_frame(&AgentMessage::Heartbeat).unwrap();
        frame.push(0);
        let err = decode_payload::<AgentMessage>(&frame[4..]).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn string_length_beyond_payload_is_refused_without_allocating_it() {
        // Bye { reason } with a claimed string length of 2^32.
        let payload = [3u8, 252, 0, 0, 0, 1];
        let err = decode_payload::<AgentMessage>(&payload).unwrap_err();
        assert_eq!(err.reason(), "decode");
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_reading_the_payload() {
        let bytes = (1u32 << 30).to_be_bytes();
        let mut reader = &bytes[..];
        let mut buf = Vec::new();
        let err = read_payload(&mut reader, DEFAULT_MAX_FRAME_BYTES, &mut buf)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
        assert_eq!(buf.capacity(), 0);
    }

    #[tokio::test]
    async fn messages_stream_through_write_and_read() {
        let mut family = Family::gauge("node_load1", "1m load average.");
        family.push(&[], 0.5);
        let batch = AgentMessage::Batch(Batch {
            seq: 9,
            entries: vec![Entry::Samples(SampleSet {
                timestamp_ms: 1,
                families: vec![family],
            })],
        });
        let mut wire = Vec::new();
        write_message(&mut wire, &batch).await.unwrap();
        write_message(&mut wire, &CollectorMessage::Ack { seq: 9 })
            .await
            .unwrap();
        let mut reader = &wire[..];
        let mut buf = Vec::new();
        let a: Option<AgentMessage> = read_message(&mut reader, 1024, &mut buf).await.unwrap();
        assert_eq!(a, Some(batch));
        let b: Option<CollectorMessage> = read_message(&mut reader, 1024, &mut buf).await.unwrap();
        assert_eq!(b, Some(CollectorMessage::Ack { seq: 9 }));
        let end: Option<AgentMessage> = read_message(&mut reader, 1024, &mut buf).await.unwrap();
        assert_eq!(end, None);
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_payload::<AgentMessage>(&bytes);
            let _ = decode_payload::<CollectorMessage>(&bytes);
            let _ = peek_hello_version(&bytes);
        }

        #[test]
        fn batches_round_trip(seq in any::<u64>(), ts in any::<i64>(),
                              values in proptest::collection::vec(any::<f64>(), 0..32)) {
            let mut family = Family::counter("x_total", "");
            for (i, v) in values.iter().enumerate() {
                family.push(&[("i", &i.to_string())], *v);
            }
            let msg = AgentMessage::Batch(Batch { seq, entries: vec![Entry::Samples(SampleSet {
                timestamp_ms: ts, families: vec![family] })] });
            let frame = encode_frame(&msg).unwrap();
            let back: AgentMessage = decode_payload(&frame[4..]).unwrap();
            // Compare encodings: NaN != NaN, but the bits must survive.
            prop_assert_eq!(encode_frame(&back).unwrap(), frame);
        }
    }
}

//! The agent ⇄ collector wire: a stream of length-prefixed frames read as a
//! peer would send them, each payload decoded as every message type either
//! side accepts, and what decodes re-encoded, decoded again and rendered
//! (an inspection's report) as the collector would.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use patrol_shared::codec::{self, FrameError};
use patrol_shared::protocol::{AgentMessage, CollectorMessage, Entry};

/// Small enough that a frame claiming more is refused, as a collector
/// configured with a low maximum refuses it.
const MAX_FRAME: usize = 64 * 1024;

/// Runs a future that never waits: reading from a slice is always ready.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("reading from a slice never waits"),
    }
}

fn agent_message(payload: &[u8]) {
    let _ = codec::peek_hello_version(payload);
    let Ok(msg) = codec::decode_payload::<AgentMessage>(payload) else {
        return;
    };
    let frame = codec::encode_frame(&msg).expect("a decoded message encodes");
    let again: AgentMessage = codec::decode_payload(&frame[4..]).expect("re-encoding decodes");
    // NaN != NaN: compare the encodings, not the values.
    assert_eq!(codec::encode_frame(&again).unwrap(), frame);
    if let AgentMessage::Batch(batch) = &msg {
        for entry in &batch.entries {
            match entry {
                Entry::Inspection(i) => {
                    let _ = i.to_text();
                    let _ = i.to_json();
                    let _ = patrol_shared::inspection::score(&i.results);
                    let _ = patrol_shared::model::rfc3339(i.time_ms);
                }
                Entry::Samples(s) => {
                    let _ = patrol_shared::model::rfc3339(s.timestamp_ms);
                }
                Entry::Event(e) => {
                    let _ = patrol_shared::model::rfc3339(e.timestamp_ms);
                }
            }
        }
    }
}

fn collector_message(payload: &[u8]) {
    let Ok(msg) = codec::decode_payload::<CollectorMessage>(payload) else {
        return;
    };
    let frame = codec::encode_frame(&msg).expect("a decoded message encodes");
    let again: CollectorMessage = codec::decode_payload(&frame[4..]).expect("re-encoding decodes");
    assert_eq!(again, msg);
}

fuzz_target!(|data: &[u8]| {
    // The whole input as one payload, as the decoders see it.
    agent_message(data);
    collector_message(data);
    let _ = codec::decode_payload::<Entry>(data);
    // The input as a stream of frames, as the reader sees it.
    let mut reader = data;
    let mut buf = Vec::new();
    loop {
        match ready(codec::read_payload(&mut reader, MAX_FRAME, &mut buf)) {
            Ok(true) => {
                assert!(buf.len() <= MAX_FRAME);
                agent_message(&buf);
                collector_message(&buf);
            }
            Ok(false) => break,
            Err(FrameError::TooLarge { len, max }) => {
                assert!(len > max);
                break;
            }
            Err(_) => break,
        }
    }
});

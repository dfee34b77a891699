//! The messages of the agent → collector protocol (DESIGN.md, "Wire protocol").
//!
//! The agent opens with [`Hello`]; the collector answers [`Welcome`] or
//! [`CollectorMessage::Bye`] with a reason. Then the agent streams numbered
//! [`Batch`]es and the collector acknowledges each once it is stored. Either
//! side may send a heartbeat when it has nothing else to say, and `Bye` before
//! it closes. Variants are only ever appended, never reordered: the variant
//! index is part of the encoding, and `Hello` must stay first so that a peer
//! of any version can read the protocol version it carries.

use serde::{Deserialize, Serialize};

use crate::inspection::Inspection;
use crate::model::{AgentEvent, Label, SampleSet};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// What the agent says to the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentMessage {
    Hello(Hello),
    Batch(Batch),
    Heartbeat,
    Bye { reason: String },
}

/// What the collector says to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CollectorMessage {
    Welcome(Welcome),
    Ack { seq: u64 },
    Heartbeat,
    Bye { reason: String },
}

/// The agent introduces itself. Nothing here is trusted for identity: the
/// collector names the host after the client certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Must stay the first field: see the module comment.
    pub protocol_version: u16,
    pub agent_version: String,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    /// Seconds since the Unix epoch.
    pub boot_time: i64,
    /// Static labels from the agent's config, added to every series.
    pub labels: Vec<Label>,
    /// Names the agent's stream of batch numbers: batch seqs are unique within
    /// one stream, so the collector remembers the highest seq per stream.
    pub stream_id: u64,
}

/// The collector accepts the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol_version: u16,
    /// Milliseconds since the Unix epoch, for the agent to notice clock skew.
    pub server_time_ms: i64,
    /// The host name the collector files this agent's data under.
    pub host: String,
    /// The highest seq of this stream the collector has already applied.
    pub last_applied_seq: u64,
}

/// A numbered group of entries; acknowledged as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub seq: u64,
    pub entries: Vec<Entry>,
}

/// One thing in a batch. Later kinds are appended here, never inserted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    Samples(SampleSet),
    /// Something that happened on the agent; file-integrity changes and
    /// service checks changing state come this way too.
    Event(AgentEvent),
    /// One security-baseline inspection, whole.
    Inspection(Inspection),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspection::Summary;

    fn inspection() -> Inspection {
        Inspection {
            host: "db".into(),
            root: "/".into(),
            time_ms: 1_748_736_000_000,
            agent_version: "0.1.0".into(),
            score: None,
            summary: Summary::default(),
            results: Vec::new(),
        }
    }

    #[test]
    fn entry_variants_keep_their_positions() {
        // bincode writes the variant index first: an older collector reads
        // samples and events exactly as before.
        let index = |e: Entry| crate::codec::encode_frame(&e).unwrap()[4];
        let samples = SampleSet {
            timestamp_ms: 0,
            families: Vec::new(),
        };
        let event = AgentEvent {
            timestamp_ms: 0,
            kind: "file_integrity".into(),
            message: "/etc/passwd modified".into(),
        };
        assert_eq!(index(Entry::Samples(samples)), 0);
        assert_eq!(index(Entry::Event(event)), 1);
        assert_eq!(index(Entry::Inspection(inspection())), 2);
    }

    #[test]
    fn a_batch_with_an_inspection_round_trips() {
        let msg = AgentMessage::Batch(Batch {
            seq: 7,
            entries: vec![Entry::Inspection(inspection())],
        });
        let frame = crate::codec::encode_frame(&msg).unwrap();
        let back: AgentMessage = crate::codec::decode_payload(&frame[4..]).unwrap();
        assert_eq!(back, msg);
    }
}

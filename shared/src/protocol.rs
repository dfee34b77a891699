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

/// One thing in a batch. Later kinds (check results, inspection reports,
/// file-integrity events) are appended here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    Samples(SampleSet),
    Event(AgentEvent),
}

//! The records agents send besides samples: every security-baseline
//! inspection (the contract's daily 巡检, kept as proof that it was done)
//! and every file-integrity event, each in its own sled tree of the
//! store's database (`inspections`, `fim_events`).
//!
//! A key is the record's time (the agent's clock: when the inspection ran,
//! when the change was seen) as 8 big-endian bytes, sign bit flipped so
//! that the bytes sort as the times do, then 8 bytes that tell apart records
//! of the same millisecond. Those 8 bytes are a hash of where the record
//! came from (host, stream, batch seq, place in the batch), not a counter:
//! a batch written here and then not acked (the store failed before the
//! samples were durable) comes again with the same seq, and its records
//! land on the same keys instead of being kept twice. An inspection's id is
//! its key in hex.
//!
//! Writes are flushed before [`Records::put`] returns, so a batch's records
//! are durable before the batch is acked; retention deletes by key range.

use patrol_shared::inspection::{Inspection, Summary};
use patrol_shared::model::AgentEvent;
use serde::{Deserialize, Serialize};

use self::key::{key, key_hex, key_time, parse_id, time_prefix};
use super::StoreError;

mod key;

/// The agent event kind that file-integrity changes are sent as.
pub const FIM_EVENT_KIND: &str = "file_integrity";

/// What one batch carries besides samples, to be kept as records.
#[derive(Debug, Clone, Default)]
pub struct BatchRecords {
    /// The host as the certificate names it; it replaces whatever host the
    /// agent wrote into its inspections.
    pub host: String,
    pub stream_id: u64,
    pub seq: u64,
    pub inspections: Vec<Inspection>,
    /// Agent events of kind [`FIM_EVENT_KIND`].
    pub fim_events: Vec<AgentEvent>,
}

impl BatchRecords {
    pub fn is_empty(&self) -> bool {
        self.inspections.is_empty() && self.fim_events.is_empty()
    }
}

/// Which records to list, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordQuery {
    pub host: Option<String>,
    /// Records whose time is at or after this (Unix ms).
    pub since_ms: i64,
    pub limit: usize,
}

impl Default for RecordQuery {
    fn default() -> Self {
        RecordQuery {
            host: None,
            since_ms: i64::MIN,
            limit: 100,
        }
    }
}

/// An inspection as the list shows it: everything but the results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectionSummary {
    pub id: String,
    pub host: String,
    /// When the inspection ran, RFC 3339.
    pub time: String,
    pub time_ms: i64,
    /// When the collector stored it (Unix ms).
    pub received_ms: i64,
    pub root: String,
    pub agent_version: String,
    pub score: Option<f64>,
    pub summary: Summary,
    pub checks: usize,
}

/// One inspection, whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectionRecord {
    pub id: String,
    pub time: String,
    pub received_ms: i64,
    #[serde(flatten)]
    pub inspection: Inspection,
}

/// One file-integrity event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FimEvent {
    pub id: String,
    pub host: String,
    /// When the agent saw the change, RFC 3339.
    pub time: String,
    pub time_ms: i64,
    pub received_ms: i64,
    /// The file, as the message names it; none for the line that sums up
    /// the rest of a large burst.
    pub path: Option<String>,
    /// `created`, `deleted`, `modified`, `summary` (the sum-up line) or
    /// `other`.
    pub change: &'static str,
    /// The agent's text: the change with hashes, modes and owners before
    /// and after.
    pub message: String,
}

/// An inspection as the tree keeps it. `host` and `received_ms` come first
/// so that a listing can read them alone (bincode reads fields in order).
#[derive(Serialize, Deserialize)]
struct InspectionRow {
    host: String,
    received_ms: i64,
    inspection: Inspection,
}

#[derive(Deserialize)]
struct RowHead {
    host: String,
}

#[derive(Serialize, Deserialize)]
struct FimRow {
    host: String,
    received_ms: i64,
    time_ms: i64,
    message: String,
}

/// The file and the kind of change a file-integrity message names; the
/// messages are written by the agent (`agent/src/fim/state.rs`,
/// `Change::describe`) as `PATH created: …`, `PATH deleted (was …)`,
/// `PATH modified: …`, and `and N more file changes …` for the rest of a
/// large burst.
pub fn parse_fim_message(message: &str) -> (Option<&str>, &'static str) {
    let markers = [
        (" modified: ", "modified"),
        (" created: ", "created"),
        (" deleted (was ", "deleted"),
    ];
    // The earliest marker ends the path: a detail (a link target) may
    // contain anything, a path rarely contains these words.
    let found = markers
        .iter()
        .filter_map(|(m, kind)| message.find(m).map(|at| (at, *kind)))
        .min_by_key(|(at, _)| *at);
    match found {
        Some((at, kind)) if at > 0 => (Some(&message[..at]), kind),
        _ if message.starts_with("and ") && message.contains(" more file changes") => {
            (None, "summary")
        }
        _ => (None, "other"),
    }
}

fn sled_err(what: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |e| StoreError::Unavailable(format!("{what}: {e}"))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map_err(|e| StoreError::Unavailable(format!("encode record: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| StoreError::Unavailable(format!("corrupt {what} record: {e}")))
}

/// The two trees; see the module comment.
pub(crate) struct Records {
    db: sled::Db,
    inspections: sled::Tree,
    fim_events: sled::Tree,
}

impl Records {
    /// Opens (or creates) the trees in the store's database.
    pub(crate) fn open(db: &sled::Db) -> Result<Records, StoreError> {
        Ok(Records {
            db: db.clone(),
            inspections: db
                .open_tree("inspections")
                .map_err(sled_err("open tree inspections"))?,
            fim_events: db
                .open_tree("fim_events")
                .map_err(sled_err("open tree fim_events"))?,
        })
    }

    /// Keeps a batch's records, durably, at `received_ms`; returns how many.
    pub(crate) fn put(&self, batch: BatchRecords, received_ms: i64) -> Result<usize, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let (host, stream, seq) = (&batch.host, batch.stream_id, batch.seq);
        let mut inspections = sled::Batch::default();
        let mut index = 0;
        let mut count = 0;
        for mut inspection in batch.inspections {
            inspection.host.clone_from(host);
            let k = key(inspection.time_ms, host, stream, seq, index);
            let row = InspectionRow {
                host: host.clone(),
                received_ms,
                inspection,
            };
            inspections.insert(&k, encode(&row)?);
            index += 1;
            count += 1;
        }
        let mut events = sled::Batch::default();
        for event in batch.fim_events {
            let k = key(event.timestamp_ms, host, stream, seq, index);
            let row = FimRow {
                host: host.clone(),
                received_ms,
                time_ms: event.timestamp_ms,
                message: event.message,
            };
            events.insert(&k, encode(&row)?);
            index += 1;
            count += 1;
        }
        self.inspections
            .apply_batch(inspections)
            .map_err(sled_err("write inspections"))?;
        self.fim_events
            .apply_batch(events)
            .map_err(sled_err("write fim_events"))?;
        self.db.flush().map_err(sled_err("flush records"))?;
        Ok(count)
    }

    /// Inspections matching `q`, newest first, without their results.
    pub(crate) fn inspections(
        &self,
        q: &RecordQuery,
    ) -> Result<Vec<InspectionSummary>, StoreError> {
        let mut out = Vec::new();
        let from = time_prefix(q.since_ms);
        for item in self.inspections.range(from..).rev() {
            if out.len() >= q.limit {
                break;
            }
            let (k, v) = item.map_err(sled_err("read inspections"))?;
            let head: RowHead = decode(&v, "inspection")?;
            if q.host.as_ref().is_some_and(|h| *h != head.host) {
                continue;
            }
            let row: InspectionRow = decode(&v, "inspection")?;
            let i = row.inspection;
            out.push(InspectionSummary {
                id: key_hex(&k),
                host: row.host,
                time: patrol_shared::model::rfc3339(i.time_ms),
                time_ms: i.time_ms,
                received_ms: row.received_ms,
                root: i.root,
                agent_version: i.agent_version,
                score: i.score,
                summary: i.summary,
                checks: i.results.len(),
            });
        }
        Ok(out)
    }

    /// One inspection by id; none when the id names none.
    pub(crate) fn inspection(&self, id: &str) -> Result<Option<InspectionRecord>, StoreError> {
        let Some(k) = parse_id(id) else {
            return Ok(None);
        };
        let Some(v) = self
            .inspections
            .get(k)
            .map_err(sled_err("read inspections"))?
        else {
            return Ok(None);
        };
        let row: InspectionRow = decode(&v, "inspection")?;
        Ok(Some(InspectionRecord {
            id: key_hex(&k),
            time: patrol_shared::model::rfc3339(row.inspection.time_ms),
            received_ms: row.received_ms,
            inspection: row.inspection,
        }))
    }

    /// File-integrity events matching `q`, newest first.
    pub(crate) fn fim_events(&self, q: &RecordQuery) -> Result<Vec<FimEvent>, StoreError> {
        let mut out = Vec::new();
        let from = time_prefix(q.since_ms);
        for item in self.fim_events.range(from..).rev() {
            if out.len() >= q.limit {
                break;
            }
            let (k, v) = item.map_err(sled_err("read fim_events"))?;
            let row: FimRow = decode(&v, "file-integrity event")?;
            if q.host.as_ref().is_some_and(|h| *h != row.host) {
                continue;
            }
            let (path, change) = parse_fim_message(&row.message);
            out.push(FimEvent {
                id: key_hex(&k),
                path: path.map(str::to_owned),
                change,
                host: row.host,
                time: patrol_shared::model::rfc3339(row.time_ms),
                time_ms: row.time_ms,
                received_ms: row.received_ms,
                message: row.message,
            });
        }
        Ok(out)
    }

    /// Deletes records whose time is before `cutoff_ms`; returns how many.
    pub(crate) fn delete_before(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let end = time_prefix(cutoff_ms);
        let mut deleted = 0;
        for tree in [&self.inspections, &self.fim_events] {
            let mut batch = sled::Batch::default();
            for item in tree.range(..end) {
                let (k, _) = item.map_err(sled_err("read records"))?;
                debug_assert!(key_time(&k).is_some_and(|t| t < cutoff_ms));
                batch.remove(k);
                deleted += 1;
            }
            tree.apply_batch(batch)
                .map_err(sled_err("delete old records"))?;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_shared::inspection::{Category, CheckResult, Evidence, Severity, Verdict};

    fn inspection(time_ms: i64) -> Inspection {
        Inspection {
            host: "claimed-by-agent".into(),
            root: "/".into(),
            time_ms,
            agent_version: "0.1.0".into(),
            score: Some(60.0),
            summary: Summary {
                pass: 1,
                fail: 1,
                not_applicable: 0,
                error: 0,
            },
            results: vec![CheckResult {
                id: "SSH-001".into(),
                title: "Root cannot log in".into(),
                category: Category::Ssh,
                severity: Severity::High,
                verdict: Verdict::Fail,
                evidence: vec![Evidence::at(
                    "/etc/ssh/sshd_config",
                    3,
                    "PermitRootLogin yes",
                )],
                reason: None,
                remediation: "Set PermitRootLogin no.".into(),
            }],
        }
    }

    fn event(time_ms: i64, message: &str) -> AgentEvent {
        AgentEvent {
            timestamp_ms: time_ms,
            kind: FIM_EVENT_KIND.into(),
            message: message.into(),
        }
    }

    fn open(dir: &std::path::Path) -> (sled::Db, Records) {
        let db = sled::Config::new().path(dir).open().unwrap();
        let records = Records::open(&db).unwrap();
        (db, records)
    }

    fn batch(host: &str, seq: u64, inspections: &[i64], events: &[(i64, &str)]) -> BatchRecords {
        BatchRecords {
            host: host.into(),
            stream_id: 7,
            seq,
            inspections: inspections.iter().map(|t| inspection(*t)).collect(),
            fim_events: events.iter().map(|(t, m)| event(*t, m)).collect(),
        }
    }

    #[test]
    fn inspections_and_events_list_newest_first_by_host_and_since() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, records) = open(dir.path());
        let n = records
            .put(
                batch(
                    "db",
                    1,
                    &[1000, 3000],
                    &[(2000, "/etc/hosts modified: mode 0644 → 0666")],
                ),
                5000,
            )
            .unwrap();
        assert_eq!(n, 3);
        records
            .put(
                batch(
                    "web",
                    1,
                    &[2000],
                    &[(4000, "/etc/passwd deleted (was file)")],
                ),
                5000,
            )
            .unwrap();

        let all = records.inspections(&RecordQuery::default()).unwrap();
        let times: Vec<(i64, &str)> = all.iter().map(|i| (i.time_ms, i.host.as_str())).collect();
        assert_eq!(times, [(3000, "db"), (2000, "web"), (1000, "db")]);
        assert_eq!(all[0].checks, 1);
        assert_eq!(all[0].received_ms, 5000);
        assert_eq!(all[0].time, "1970-01-01T00:00:03Z");
        assert_eq!(
            patrol_shared::model::rfc3339(1_795_615_387_412),
            "2026-11-25T14:03:07.412Z"
        );

        let db_since = RecordQuery {
            host: Some("db".into()),
            since_ms: 1500,
            limit: 10,
        };
        let found = records.inspections(&db_since).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].time_ms, 3000);
        let one = RecordQuery {
            limit: 1,
            ..RecordQuery::default()
        };
        assert_eq!(records.inspections(&one).unwrap().len(), 1);

        let whole = records.inspection(&found[0].id).unwrap().unwrap();
        assert_eq!(
            whole.inspection.host, "db",
            "the certificate's name, not the agent's"
        );
        assert_eq!(whole.inspection.results.len(), 1);
        assert_eq!(records.inspection(&"0".repeat(32)).unwrap(), None);
        assert_eq!(records.inspection("nonsense").unwrap(), None);

        let events = records.fim_events(&RecordQuery::default()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].path.as_deref(), Some("/etc/passwd"));
        assert_eq!(events[0].change, "deleted");
        assert_eq!(events[1].host, "db");
        assert_eq!(events[1].change, "modified");
        let web = RecordQuery {
            host: Some("web".into()),
            ..RecordQuery::default()
        };
        assert_eq!(records.fim_events(&web).unwrap().len(), 1);
    }

    #[test]
    fn a_batch_written_again_keeps_one_copy_of_each_record() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, records) = open(dir.path());
        let b = batch("db", 4, &[1000], &[(1000, "/etc/hosts created: file")]);
        records.put(b.clone(), 1).unwrap();
        records.put(b, 2).unwrap();
        assert_eq!(
            records.inspections(&RecordQuery::default()).unwrap().len(),
            1
        );
        assert_eq!(
            records.fim_events(&RecordQuery::default()).unwrap().len(),
            1
        );
        // The same content in another batch is another record.
        records
            .put(
                batch("db", 5, &[1000], &[(1000, "/etc/hosts created: file")]),
                3,
            )
            .unwrap();
        assert_eq!(
            records.inspections(&RecordQuery::default()).unwrap().len(),
            2
        );
    }

    #[test]
    fn records_survive_reopening_and_retention_deletes_only_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, records) = open(dir.path());
            records
                .put(
                    batch(
                        "db",
                        1,
                        &[1000, 9000],
                        &[(1000, "/a created: x"), (9000, "/b created: x")],
                    ),
                    10_000,
                )
                .unwrap();
        }
        let (_db, records) = open(dir.path());
        assert_eq!(
            records.inspections(&RecordQuery::default()).unwrap().len(),
            2
        );
        assert_eq!(records.delete_before(5000).unwrap(), 2);
        let left = records.inspections(&RecordQuery::default()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].time_ms, 9000);
        let events = records.fim_events(&RecordQuery::default()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].path.as_deref(), Some("/b"));
        assert_eq!(records.delete_before(5000).unwrap(), 0);
    }

    #[test]
    fn fim_messages_name_their_path_and_change() {
        assert_eq!(
            parse_fim_message("/etc/passwd modified: content sha256 a → b"),
            (Some("/etc/passwd"), "modified")
        );
        assert_eq!(
            parse_fim_message("/etc/cron.d/job created: symlink, → /tmp/x modified: y, mode 0777"),
            (Some("/etc/cron.d/job"), "created")
        );
        assert_eq!(
            parse_fim_message("/etc/my file deleted (was file, sha256 c)"),
            (Some("/etc/my file"), "deleted")
        );
        assert_eq!(
            parse_fim_message("and 12 more file changes in the same burst (see x)"),
            (None, "summary")
        );
        assert_eq!(parse_fim_message("something else"), (None, "other"));
        assert_eq!(parse_fim_message(" modified: x"), (None, "other"));
    }
}

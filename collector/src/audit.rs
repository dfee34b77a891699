//! The audit log: every change made through the HTTP API — who (the
//! token's name and role), what (method, path, the request body), when,
//! from where (the peer address) and how it ended (the status) — kept in
//! the store, never rewritten, and read by admins at
//! `GET /api/patrol/v1/audit`. Refused attempts by a known token are kept
//! too; requests without a valid token are not (anyone could fill the log).
//!
//! Entries live in the store's state tree under `audit/` with keys that
//! sort by time (`audit/<ms, 16 digits>-<sequence>`), so the newest are read
//! from the end without scanning the rest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::storage::{Store, StoreError};

const PREFIX: &str = "audit/";
/// Request bodies longer than this are kept as their size only.
const MAX_BODY: usize = 16 * 1024;

/// One change, as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Unix ms.
    pub at: i64,
    /// The token's name.
    pub actor: String,
    pub role: String,
    /// The peer's address (`ip:port`).
    pub from: String,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub status: u16,
    /// The request body: JSON as sent, else text, else `{"bytes": n}`.
    pub request: Json,
}

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub actor: Option<String>,
    pub limit: usize,
}

/// See the module comment.
pub struct AuditLog {
    store: Arc<dyn Store>,
    sequence: AtomicU64,
}

impl AuditLog {
    pub fn new(store: Arc<dyn Store>) -> AuditLog {
        AuditLog {
            store,
            sequence: AtomicU64::new(0),
        }
    }

    /// The body as the log keeps it.
    pub fn request_summary(body: &[u8]) -> Json {
        if body.is_empty() {
            return Json::Null;
        }
        if body.len() > MAX_BODY {
            return serde_json::json!({ "bytes": body.len() });
        }
        serde_json::from_slice(body).unwrap_or_else(|_| match std::str::from_utf8(body) {
            Ok(text) => Json::String(text.to_owned()),
            Err(_) => serde_json::json!({ "bytes": body.len() }),
        })
    }

    /// Keeps an entry; durable on return.
    pub fn write(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        let key = format!("{PREFIX}{:016}-{n:06}", entry.at.max(0));
        let bytes = serde_json::to_vec(entry)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode an audit entry: {e}")))?;
        self.store.put_state(&key, Some(&bytes))
    }

    /// Entries matching `q`, newest first. Unreadable entries are skipped
    /// and reported (the rest stay readable).
    pub fn read(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        let mut before = q
            .until
            .map(|u| format!("{PREFIX}{:016}", u.saturating_add(1).max(0)));
        const PAGE: usize = 512;
        loop {
            let page = self.store.state_newest(PREFIX, before.as_deref(), PAGE)?;
            let full = page.len() == PAGE;
            for (key, bytes) in page {
                before = Some(key.clone());
                let entry: AuditEntry = match serde_json::from_slice(&bytes) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(key, error = %e, "unreadable audit entry skipped");
                        continue;
                    }
                };
                if q.since.is_some_and(|s| entry.at < s) {
                    return Ok(out);
                }
                if q.actor.as_ref().is_some_and(|a| *a != entry.actor) {
                    continue;
                }
                out.push(entry);
                if out.len() >= q.limit {
                    return Ok(out);
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: i64, actor: &str) -> AuditEntry {
        AuditEntry {
            at,
            actor: actor.into(),
            role: "admin".into(),
            from: "127.0.0.1:5000".into(),
            method: "POST".into(),
            path: "/api/patrol/v1/tickets".into(),
            status: 200,
            request: AuditLog::request_summary(br#"{"kind":"fault"}"#),
        }
    }

    #[test]
    fn entries_read_back_newest_first_with_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::storage::disk::DiskStore::open(dir.path()).unwrap());
        let log = AuditLog::new(store);
        for i in 0..1200 {
            log.write(&entry(1_000 + i, if i % 2 == 0 { "anna" } else { "ben" }))
                .unwrap();
        }
        let all = log
            .read(&AuditQuery {
                limit: 5000,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(all.len(), 1200);
        assert_eq!((all[0].at, all[1199].at), (2_199, 1_000));
        assert_eq!(all[0].request["kind"], "fault");
        let ben = log
            .read(&AuditQuery {
                since: Some(1_100),
                until: Some(1_109),
                actor: Some("ben".into()),
                limit: 100,
            })
            .unwrap();
        let times: Vec<i64> = ben.iter().map(|e| e.at).collect();
        assert_eq!(times, [1_109, 1_107, 1_105, 1_103, 1_101]);
        let two = log
            .read(&AuditQuery {
                limit: 2,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(two.len(), 2);
    }

    #[test]
    fn bodies_are_kept_as_json_text_or_size() {
        assert_eq!(AuditLog::request_summary(b"")["bytes"], Json::Null);
        assert_eq!(AuditLog::request_summary(b"plain"), "plain");
        assert_eq!(AuditLog::request_summary(&[0xff, 0xfe])["bytes"], 2);
        assert_eq!(
            AuditLog::request_summary(&vec![b' '; MAX_BODY + 1])["bytes"],
            MAX_BODY + 1
        );
    }
}

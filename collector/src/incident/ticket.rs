//! Tickets: the unit of work with a deadline. A ticket is opened by a person
//! (a fault, a consultation, a request) or by a firing alert, and walks
//! open → acknowledged → in progress → resolved → closed, with reopening.
//! Every change is an [`Event`] on its timeline, which is kept forever: it is
//! the audit trail, and SLA clocks and escalation read their state from it,
//! so a ticket restored from the store carries everything they need.
//!
//! A transition that is not allowed is a [`TicketError`] naming the ticket,
//! the action, the state it was in and why, for the API to show as it is.

use serde::{Deserialize, Serialize};

/// What a ticket is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketKind {
    Fault,
    Consultation,
    Request,
}

/// How urgent a ticket is; alerts map their `severity` label onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Critical,
    High,
    Medium,
    Low,
}

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    Open,
    Acknowledged,
    InProgress,
    Resolved,
    Closed,
    /// Open again after it was resolved or closed.
    Reopened,
}

impl TicketState {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::Open => "open",
            TicketState::Acknowledged => "acknowledged",
            TicketState::InProgress => "in_progress",
            TicketState::Resolved => "resolved",
            TicketState::Closed => "closed",
            TicketState::Reopened => "reopened",
        }
    }

    /// Nobody has taken it up yet (since it was opened or reopened).
    pub fn is_unacknowledged(self) -> bool {
        matches!(self, TicketState::Open | TicketState::Reopened)
    }

    /// Still work to do.
    pub fn is_active(self) -> bool {
        !matches!(self, TicketState::Resolved | TicketState::Closed)
    }
}

/// The alert a ticket was opened for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRef {
    /// Prometheus' label-set fingerprint.
    pub fingerprint: u64,
    pub alertname: String,
}

/// The customer's verdict when the ticket is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    /// 1 (poor) to 5 (excellent).
    pub score: u8,
    #[serde(default)]
    pub comment: String,
}

/// One step on a ticket's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unix ms.
    pub at: i64,
    /// A person's name, or "patrol" for what the system did.
    pub actor: String,
    pub what: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    Opened,
    AlertFired {
        fingerprint: u64,
    },
    AlertRecovered {
        fingerprint: u64,
    },
    Acknowledged,
    Started,
    Assigned {
        to: String,
    },
    /// `answer`: written by someone other than the reporter, so it counts
    /// as the first response.
    Commented {
        text: String,
        answer: bool,
    },
    OnSiteRequested,
    OnSiteArrived,
    WaitingForCustomer {
        reason: String,
    },
    CustomerReplied,
    Resolved {
        solution: Option<String>,
    },
    Closed {
        solution: String,
        rating: Option<Rating>,
    },
    Reopened {
        reason: String,
    },
    SlaWarning {
        clock: super::sla::ClockKind,
        percent: u32,
    },
    SlaBreached {
        clock: super::sla::ClockKind,
    },
    Escalated(super::escalation::Step),
}

/// What a person asks of a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Acknowledge,
    Start,
    Assign {
        to: String,
    },
    Comment {
        text: String,
    },
    RequestOnSite,
    ArriveOnSite,
    WaitForCustomer {
        reason: String,
    },
    CustomerReplied,
    Resolve {
        solution: Option<String>,
    },
    Close {
        solution: Option<String>,
        rating: Option<Rating>,
    },
    Reopen {
        reason: String,
    },
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledge",
            Action::Start => "start",
            Action::Assign { .. } => "assign",
            Action::Comment { .. } => "comment",
            Action::RequestOnSite => "request on-site attendance",
            Action::ArriveOnSite => "record on-site arrival",
            Action::WaitForCustomer { .. } => "wait for the customer",
            Action::CustomerReplied => "record the customer's reply",
            Action::Resolve { .. } => "resolve",
            Action::Close { .. } => "close",
            Action::Reopen { .. } => "reopen",
        }
    }
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket {ticket}: cannot {action} while it is {state}: {why}")]
    NotAllowed {
        ticket: u64,
        action: &'static str,
        state: &'static str,
        why: &'static str,
    },
    #[error("ticket {ticket}: cannot {action}: {why}")]
    Invalid {
        ticket: u64,
        action: &'static str,
        why: String,
    },
    #[error("no ticket {0}")]
    NotFound(u64),
}

/// What a person fills in to open a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTicket {
    pub kind: TicketKind,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub host: Option<String>,
    pub priority: Priority,
    pub reporter: String,
    #[serde(default)]
    pub contact: String,
}

/// A ticket and its whole history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: u64,
    pub kind: TicketKind,
    pub title: String,
    pub description: String,
    pub host: Option<String>,
    pub priority: Priority,
    pub reporter: String,
    pub contact: String,
    pub alert: Option<AlertRef>,
    pub state: TicketState,
    pub assignee: Option<String>,
    pub created_at: i64,
    /// The solution recorded when it was resolved or closed.
    pub solution: Option<String>,
    pub rating: Option<Rating>,
    /// Whether the alert it was opened for is firing now.
    pub alert_firing: bool,
    /// When it was last resolved or closed, for the reopen window.
    pub finished_at: Option<i64>,
    /// Waiting for the customer: SLA clocks are paused.
    pub waiting: bool,
    pub on_site_requested: bool,
    pub timeline: Vec<Event>,
}

impl Ticket {
    pub fn open(id: u64, new: NewTicket, now: i64) -> Ticket {
        let mut ticket = Ticket {
            id,
            kind: new.kind,
            title: new.title,
            description: new.description,
            host: new.host,
            priority: new.priority,
            reporter: new.reporter.clone(),
            contact: new.contact,
            alert: None,
            state: TicketState::Open,
            assignee: None,
            created_at: now,
            solution: None,
            rating: None,
            alert_firing: false,
            finished_at: None,
            waiting: false,
            on_site_requested: false,
            timeline: Vec::new(),
        };
        ticket.record(now, &new.reporter, EventKind::Opened);
        ticket
    }

    /// Appends an event to the timeline.
    pub fn record(&mut self, at: i64, actor: &str, what: EventKind) {
        self.timeline.push(Event {
            at,
            actor: actor.to_string(),
            what,
        });
    }

    /// When the current episode began: the last opening or reopening.
    pub fn episode_start(&self) -> i64 {
        self.timeline
            .iter()
            .rev()
            .find(|e| matches!(e.what, EventKind::Opened | EventKind::Reopened { .. }))
            .map_or(self.created_at, |e| e.at)
    }

    /// Applies a person's action; on success one or more events are on the
    /// timeline.
    pub fn apply(&mut self, action: Action, actor: &str, now: i64) -> Result<(), TicketError> {
        use TicketState::*;
        let name = action.name();
        let refuse = |state: TicketState, why: &'static str| TicketError::NotAllowed {
            ticket: self.id,
            action: name,
            state: state.as_str(),
            why,
        };
        let state = self.state;
        if state == Closed && !matches!(action, Action::Comment { .. } | Action::Reopen { .. }) {
            return Err(refuse(
                state,
                "a closed ticket only takes comments or a reopen",
            ));
        }
        let event = match action {
            Action::Acknowledge => {
                if !state.is_unacknowledged() {
                    return Err(refuse(state, "it has been acknowledged already"));
                }
                self.state = Acknowledged;
                EventKind::Acknowledged
            }
            Action::Start => {
                if !matches!(state, Open | Reopened | Acknowledged) {
                    return Err(refuse(
                        state,
                        "work can start only on an open or acknowledged ticket",
                    ));
                }
                self.state = InProgress;
                EventKind::Started
            }
            Action::Assign { to } => {
                if state == Resolved {
                    return Err(refuse(state, "reopen it before assigning it"));
                }
                self.assignee = Some(to.clone());
                EventKind::Assigned { to }
            }
            Action::Comment { text } => {
                if text.trim().is_empty() {
                    return Err(self.invalid(name, "the comment is empty"));
                }
                let answer = actor != self.reporter;
                EventKind::Commented { text, answer }
            }
            Action::RequestOnSite => {
                if !state.is_active() || self.on_site_requested {
                    return Err(refuse(
                        state,
                        "on-site attendance is asked once, on an unresolved ticket",
                    ));
                }
                self.on_site_requested = true;
                EventKind::OnSiteRequested
            }
            Action::ArriveOnSite => {
                if !self.on_site_requested || self.arrived() {
                    return Err(refuse(
                        state,
                        "arrival is recorded once, after on-site attendance was requested",
                    ));
                }
                EventKind::OnSiteArrived
            }
            Action::WaitForCustomer { reason } => {
                if !state.is_active() || self.waiting {
                    return Err(refuse(
                        state,
                        "only an unresolved ticket that is not waiting already can wait",
                    ));
                }
                self.waiting = true;
                EventKind::WaitingForCustomer { reason }
            }
            Action::CustomerReplied => {
                if !self.waiting {
                    return Err(refuse(state, "the ticket is not waiting for the customer"));
                }
                self.waiting = false;
                EventKind::CustomerReplied
            }
            Action::Resolve { solution } => {
                if !state.is_active() {
                    return Err(refuse(state, "it is resolved already"));
                }
                let solution = solution.filter(|s| !s.trim().is_empty());
                if solution.is_some() {
                    self.solution.clone_from(&solution);
                }
                self.state = Resolved;
                self.waiting = false;
                self.finished_at = Some(now);
                EventKind::Resolved { solution }
            }
            Action::Close { solution, rating } => return self.close(solution, rating, actor, now),
            Action::Reopen { reason } => {
                if state.is_active() {
                    return Err(refuse(
                        state,
                        "only a resolved or closed ticket can be reopened",
                    ));
                }
                self.reopen(reason, actor, now);
                return Ok(());
            }
        };
        self.record(now, actor, event);
        Ok(())
    }

    fn invalid(&self, action: &'static str, why: impl Into<String>) -> TicketError {
        TicketError::Invalid {
            ticket: self.id,
            action,
            why: why.into(),
        }
    }

    fn arrived(&self) -> bool {
        self.timeline
            .iter()
            .any(|e| e.what == EventKind::OnSiteArrived)
    }

    fn close(
        &mut self,
        solution: Option<String>,
        rating: Option<Rating>,
        actor: &str,
        now: i64,
    ) -> Result<(), TicketError> {
        if self.state != TicketState::Resolved {
            return Err(TicketError::NotAllowed {
                ticket: self.id,
                action: "close",
                state: self.state.as_str(),
                why: "resolve it first",
            });
        }
        let solution = solution
            .filter(|s| !s.trim().is_empty())
            .or_else(|| self.solution.clone())
            .ok_or_else(|| {
                self.invalid(
                    "close",
                    "a solution text is required (none was recorded when it was resolved)",
                )
            })?;
        if let Some(r) = &rating {
            if !(1..=5).contains(&r.score) {
                return Err(self.invalid(
                    "close",
                    format!("rating {} is out of range (expected 1 to 5)", r.score),
                ));
            }
        }
        self.state = TicketState::Closed;
        self.solution = Some(solution.clone());
        self.rating.clone_from(&rating);
        self.finished_at = Some(now);
        self.record(now, actor, EventKind::Closed { solution, rating });
        Ok(())
    }

    /// Back to work: by a person, or by its alert firing again.
    pub(crate) fn reopen(&mut self, reason: String, actor: &str, now: i64) {
        self.state = TicketState::Reopened;
        self.finished_at = None;
        self.on_site_requested = false;
        self.record(now, actor, EventKind::Reopened { reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn consultation() -> NewTicket {
        NewTicket {
            kind: TicketKind::Consultation,
            title: "How do I rotate the agent certificate?".into(),
            description: String::new(),
            host: Some("db1".into()),
            priority: Priority::Medium,
            reporter: "customer".into(),
            contact: "+86 10 0000 0000".into(),
        }
    }

    #[test]
    fn life_cycle_is_on_the_timeline() {
        let mut t = Ticket::open(1, consultation(), 0);
        t.apply(Action::Acknowledge, "li", 10).unwrap();
        t.apply(Action::Start, "li", 20).unwrap();
        t.apply(Action::Assign { to: "wang".into() }, "li", 30)
            .unwrap();
        t.apply(
            Action::Resolve {
                solution: Some("patrol pki renew".into()),
            },
            "wang",
            40,
        )
        .unwrap();
        t.apply(
            Action::Close {
                solution: None,
                rating: Some(Rating {
                    score: 5,
                    comment: "quick".into(),
                }),
            },
            "customer",
            50,
        )
        .unwrap();
        assert_eq!(t.state, TicketState::Closed);
        assert_eq!(t.solution.as_deref(), Some("patrol pki renew"));
        let kinds: Vec<_> = t
            .timeline
            .iter()
            .map(|e| (e.at, e.actor.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (0, "customer"),
                (10, "li"),
                (20, "li"),
                (30, "li"),
                (40, "wang"),
                (50, "customer")
            ]
        );
    }

    #[test]
    fn refused_transitions_say_which_and_why() {
        let mut t = Ticket::open(7, consultation(), 0);
        let err = t
            .apply(
                Action::Close {
                    solution: Some("x".into()),
                    rating: None,
                },
                "li",
                1,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ticket 7: cannot close while it is open: resolve it first"
        );
        t.apply(Action::Resolve { solution: None }, "li", 2)
            .unwrap();
        let err = t
            .apply(
                Action::Close {
                    solution: None,
                    rating: None,
                },
                "li",
                3,
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("a solution text is required"),
            "{err}"
        );
        let err = t
            .apply(
                Action::Close {
                    solution: Some("restarted".into()),
                    rating: Some(Rating {
                        score: 6,
                        comment: String::new(),
                    }),
                },
                "li",
                3,
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("rating 6 is out of range"),
            "{err}"
        );
        let err = t.apply(Action::Acknowledge, "li", 4).unwrap_err();
        assert!(err.to_string().contains("while it is resolved"), "{err}");
        // Nothing refused reached the timeline.
        assert_eq!(t.timeline.len(), 2);
    }

    #[test]
    fn closed_ticket_reopens_and_takes_comments() {
        let mut t = Ticket::open(1, consultation(), 0);
        t.apply(
            Action::Resolve {
                solution: Some("done".into()),
            },
            "li",
            1,
        )
        .unwrap();
        t.apply(
            Action::Close {
                solution: None,
                rating: None,
            },
            "li",
            2,
        )
        .unwrap();
        assert!(t.apply(Action::Start, "li", 3).is_err());
        t.apply(
            Action::Comment {
                text: "still broken".into(),
            },
            "customer",
            4,
        )
        .unwrap();
        t.apply(
            Action::Reopen {
                reason: "still broken".into(),
            },
            "customer",
            5,
        )
        .unwrap();
        assert_eq!(t.state, TicketState::Reopened);
        assert_eq!(t.episode_start(), 5);
        t.apply(Action::Acknowledge, "li", 6).unwrap();
    }

    #[test]
    fn comment_by_staff_is_an_answer() {
        let mut t = Ticket::open(1, consultation(), 0);
        t.apply(
            Action::Comment {
                text: "more detail".into(),
            },
            "customer",
            1,
        )
        .unwrap();
        t.apply(
            Action::Comment {
                text: "try this".into(),
            },
            "li",
            2,
        )
        .unwrap();
        let answers: Vec<bool> = t
            .timeline
            .iter()
            .filter_map(|e| match &e.what {
                EventKind::Commented { answer, .. } => Some(*answer),
                _ => None,
            })
            .collect();
        assert_eq!(answers, [false, true]);
    }
}

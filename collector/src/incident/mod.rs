//! Incidents: every fault becomes a ticket with a deadline, someone on duty
//! answers it, and the person in charge hears of it before the deadline
//! passes. This is the stage after alerts and before notifications.
//!
//! - [`ticket`]: a ticket's life cycle and its timeline, kept forever;
//! - [`calendar`]: 24×7 or business hours with holidays, in a time zone;
//! - [`sla`]: response, solution and on-site clocks, replayed from the timeline;
//! - [`oncall`]: rotations, layers, overrides and holiday rosters;
//! - [`escalation`]: the steps due for an unacknowledged ticket;
//! - [`desk`]: all tickets, the alert → ticket mapping and the periodic tick;
//! - [`notice`]: which ticket events go to which receivers, and their message;
//! - [`service`]: the desk in the running collector, kept in the store.
//!
//! Everything but [`service`] is pure: time is a parameter (Unix ms),
//! nothing does I/O, and all state is serde, for the store to keep.

pub mod calendar;
pub mod desk;
pub mod escalation;
pub mod notice;
pub mod oncall;
pub mod service;
pub mod sla;
pub mod ticket;

//! Patrol's agent.

pub mod host;

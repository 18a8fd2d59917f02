//! Getting accepted notifications to their integrations.
//!
//! The webhook handler turns a notification into jobs (one per receiver integration) and
//! commits them to the durable [`crate::store`] through the [`Queue`]; it answers only once
//! they are stored. Workers claim due jobs, render and send them, and reschedule what
//! [`DeliveryError::is_retryable`] says may succeed later; what gives up becomes a dead letter
//! and, once, goes to the integration's fallback receiver. Upstream requests pass a token
//! bucket per credential ([`ratelimit`]); a backlog too long for the rate is merged into one
//! digest ([`coalesce`]). What goes on the wire is [`crate::channels`]'s business.

pub mod coalesce;
mod digest;
pub mod fanout;
pub mod health;
mod queue;
pub mod steps;
mod worker;

pub use crate::channels::error::{self, DeliveryError, Reason};
pub use crate::channels::{options, ratelimit};
pub use queue::Queue;
pub use worker::{RetryPolicy, Workers};

//! The delivery engine: from stored notifications to their integrations, naming no channel.
//!
//! - [`fanout`]: a notification for a receiver → one delivery per integration, bound to the
//!   integration's identity; the one function for the webhook, fallbacks and re-binding.
//! - [`Queue`]: the durable store plus a wake-up; the webhook answers once it is committed.
//! - `worker`: claims due deliveries, resolves each one's identity in the configuration in
//!   force, runs the [`steps`] it was handed, sends, and acts on what the failure says happens
//!   next ([`crate::channels::error::Next`]): back off per the [`retry`] schedule, wait until a
//!   known time, or give up (a dead letter, once a fallback receiver).
//! - [`coalesce`]: a backlog too long for its rate limit becomes one digest.
//! - [`health`]: upstream health probes behind `integration_up`.
//! - [`send_test`], [`dead_letter_items`]: what the command line and the console's API both
//!   offer (a test send, the dead letters as people read them), kept here, below both.
//!
//! What goes on the wire, and what an upstream's answer means, is [`crate::channels`]'s.

pub mod coalesce;
mod deadletters;
mod digest;
pub mod fanout;
pub mod health;
pub mod history;
mod queue;
pub mod retry;
mod send_test;
pub mod steps;
mod worker;

pub use crate::channels::error::{self, DeliveryError, Reason};
pub use crate::channels::{options, ratelimit};
pub use deadletters::{DeadLetterItem, dead_letter_items};
pub use queue::{Queue, replay_dead_letters};
pub use retry::RetryPolicy;
pub use send_test::{send_test, test_notification};
pub use worker::{LARGE_ALERTS, Workers};

//! Getting accepted notifications to their integrations.
//!
//! The webhook handler turns a notification into [`Job`]s (one per receiver integration) and
//! hands them to the [`Queue`]; it answers as soon as the queue took them. Workers take jobs,
//! render and send them, and retry what [`DeliveryError::is_retryable`] says may succeed later.
//! This module owns ordering, retries and metrics of deliveries; what goes on the wire is
//! [`crate::channels`]'s business.

pub mod error;
mod queue;
mod worker;

pub use error::{DeliveryError, Reason};
pub use queue::{Job, Queue, QueueFull};
pub use worker::{RetryPolicy, Workers};

//! On-call: Alertmanager-style time intervals ([`timeinterval`]) and schedules with their
//! overrides ([`schedule`]): who is on call when. Pure types and computation, no I/O; the
//! configuration's checks live in `config::oncall`, stored overrides in `store::oncall`.

pub mod schedule;
pub mod timeinterval;

//! WxPusher's delivery-status query: `GET {api}/api/send/query/status?sendRecordId=` for the
//! record a send created for one uid (its `sendRecordId` in the send answer).
//!
//! Owns the request and the reading of its answer into a [`Verdict`]; the on-call engine
//! decides when to ask and what a verdict does to an incident. A status says at most that
//! WxPusher handed the message on (WxPusher's own note: the user may still refuse it): it is
//! never a read receipt and never an acknowledgement.
//!
//! The answer is a generic `Result` (`code`, `msg`, `data`, `success`); the one value seen in
//! the field is `{"code":1000,"msg":"等待发送","data":1}`, and the table of the integers in
//! `data` is not published. So the words decide, conservatively, and the integer is only kept
//! for the timeline:
//!
//! | answer | verdict |
//! |---|---|
//! | `code` ≠ 1000 (a record past its 7 days, any business error) | [`Verdict::Unknown`] |
//! | `msg` says failure: `失败`, `拒`, `fail`, `reject`, `block`, `undeliver` | [`Verdict::Failed`] |
//! | `msg` says handed on: `成功`, `已发送`, `已送达`, `success` | [`Verdict::Delivered`] |
//! | `data` = 1, or `msg` says waiting: `等待`, `发送中`, `wait`, `pending` | [`Verdict::Waiting`] |
//! | anything else (the generic `处理成功` of every call included) | [`Verdict::Unknown`] |
//!
//! Only [`Verdict::Failed`] moves an escalation (a page wrongly read as failed would wake the
//! next person early; one wrongly read as anything else waits for `escalate_after`, as
//! without the query).

use serde::Deserialize;
use serde_json::Value;

use super::{SERVICE, WxPusher};
use crate::channels::Env;
use crate::channels::error::DeliveryError;
use crate::channels::http;
use crate::channels::options::RateLimit;

/// The query's path under `api_url`.
pub const QUERY_PATH: &str = "/api/send/query/status";

/// What a status answer means for the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not delivered: a failed page.
    Failed,
    /// Handed on by WxPusher: delivered, never read or acknowledged.
    Delivered,
    /// Not yet sent on.
    Waiting,
    /// Nothing to conclude (an unknown value, a record no longer kept, a business error).
    Unknown,
}

impl Verdict {
    /// Whether asking again can tell more.
    pub fn is_final(self) -> bool {
        matches!(self, Verdict::Failed | Verdict::Delivered)
    }
}

/// One status answer, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub verdict: Verdict,
    /// The answer's `code`.
    pub code: i64,
    /// The integer in `data`, when there is one.
    pub data: Option<i64>,
    /// WxPusher's words (`msg`), scrubbed and bounded: for the timeline.
    pub text: String,
}

#[derive(Debug, Deserialize)]
struct Answer {
    code: i64,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    data: Value,
}

/// Reads an answer's `code`, `msg` and `data` into a [`Verdict`] (the table above).
pub fn verdict(code: i64, msg: &str, data: Option<i64>) -> Verdict {
    if code != 1000 {
        return Verdict::Unknown;
    }
    // "处理成功" is WxPusher's word for any call that went through, not a delivery.
    let lower = msg.to_lowercase().replace("处理成功", "");
    let says = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if says(&["失败", "拒", "fail", "reject", "block", "undeliver"]) {
        Verdict::Failed
    } else if says(&["成功", "已发送", "已送达", "success"]) {
        Verdict::Delivered
    } else if data == Some(1) || says(&["等待", "发送中", "wait", "pending"]) {
        Verdict::Waiting
    } else {
        Verdict::Unknown
    }
}

/// The most status queries per second to one app: WxPusher allows about 2 calls a second per
/// app, sends included (the query shares the sends' bucket).
const QUERY_RATE: RateLimit = super::config::WXPUSHER_RATE;

impl WxPusher {
    /// Asks WxPusher what became of one send record; within the app's rate limit (never
    /// faster than [`QUERY_RATE`], whatever `rate_limit` says).
    pub async fn query_status(
        &self,
        env: &Env<'_>,
        send_record_id: i64,
    ) -> Result<Status, DeliveryError> {
        let limit = match self.rate_limit {
            Some(r) if r.rate > 0.0 && r.rate <= QUERY_RATE.rate => r,
            _ => QUERY_RATE,
        };
        env.limits.acquire(&self.rate_key(), limit).await;
        let url = format!("{}{QUERY_PATH}", self.api_url.trim_end_matches('/'));
        let request = env
            .client
            .get(url)
            .query(&[("sendRecordId", send_record_id)]);
        let a: Answer = http::send(SERVICE, request)
            .await?
            .success_json(SERVICE, |s| env.scrubber.scrub(s))?;
        let data = a.data.as_i64();
        let text = crate::text::truncate(&env.scrubber.scrub(&a.msg), 100);
        Ok(Status {
            verdict: verdict(a.code, &a.msg, data),
            code: a.code,
            data,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_words_of_failure_are_a_failed_page() {
        // The one value seen in the field.
        assert_eq!(verdict(1000, "等待发送", Some(1)), Verdict::Waiting);
        assert_eq!(verdict(1000, "发送失败", Some(3)), Verdict::Failed);
        assert_eq!(verdict(1000, "用户拒收", None), Verdict::Failed);
        assert_eq!(verdict(1000, "Send FAILED", Some(7)), Verdict::Failed);
        assert_eq!(verdict(1000, "发送成功", Some(2)), Verdict::Delivered);
        assert_eq!(verdict(1000, "已发送到微信", None), Verdict::Delivered);
        assert_eq!(verdict(1000, "undelivered", None), Verdict::Failed);
        // An integer alone says nothing but "waiting" for the observed 1.
        assert_eq!(verdict(1000, "", Some(2)), Verdict::Unknown);
        // The generic "processed" of every call is no delivery.
        assert_eq!(verdict(1000, "处理成功", Some(9)), Verdict::Unknown);
        // A business error (a record past its 7 days) concludes nothing, whatever its words.
        assert_eq!(verdict(1001, "消息不存在", None), Verdict::Unknown);
        assert_eq!(verdict(1001, "发送失败", None), Verdict::Unknown);
        assert!(Verdict::Failed.is_final() && Verdict::Delivered.is_final());
        assert!(!Verdict::Waiting.is_final() && !Verdict::Unknown.is_final());
    }
}

//! Voice calls as an on-call contact: Aliyun's IvrCall (a prompt, then "press 1") and Tencent
//! Cloud's SendTtsVoice, signed as the vendors document ([`sign`]), no SDK.
//!
//! Owns: the config entry ([`config`]), the requests and their business codes (HTTP 200 with
//! an error code is a failure), the per-number limits (Aliyun allows one call a minute, five
//! an hour and twenty a day to one number, failed calls included: counted in the store before
//! dialling, so across replicas), and the call reports ([`inbound`]). A refused or failed call
//! is never retried here: the escalation moves on. Numbers are E.164 in the configuration;
//! Aliyun gets them without `+86`. Secrets and full numbers never appear in logs or errors.

pub mod config;
pub mod contact;
pub mod inbound;
pub mod oncall;
pub mod sign;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::channels::Env;
use crate::channels::error::DeliveryError;
use crate::channels::http;
use crate::secret::Secret;
use crate::store::{Store, StoreError};
use crate::text;
pub use config::VoiceConfig;
use config::{aliyun_number, mask};

pub const SERVICE: &str = "voice";
pub const KIND: &str = "voice";
/// The key that acknowledges.
pub const ACK_KEY: &str = "1";
/// Aliyun's `OutId`: 1–15 bytes.
pub const OUT_ID_MAX_BYTES: usize = 15;
/// Aliyun's `TtsParam` JSON: under 250 characters in all.
pub const TTS_PARAMS_MAX_CHARS: usize = 249;
pub const ALIYUN_VERSION: &str = "2017-05-25";
pub const TENCENT_VERSION: &str = "2020-09-02";

/// The template of the spoken preview, and its length.
pub const SUMMARY_TEMPLATE: &str = "wecom.summary";
pub const SUMMARY_CHARS: usize = 20;

/// Aliyun's per-number limits: (window name, seconds, calls allowed).
pub const ALIYUN_LIMITS: [(&str, i64, i64); 3] =
    [("minute", 60, 1), ("hour", 3600, 5), ("day", 86400, 20)];

/// The voice providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Aliyun,
    Tencent,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aliyun => "aliyun",
            Provider::Tencent => "tencent",
        }
    }
}

/// Why a call was not placed.
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    /// Our count in the store says the number's limit for this window is spent: not dialled.
    #[error("voice: {number} already called the most allowed this {window}; not dialled")]
    Limited {
        number: String,
        window: &'static str,
        until: DateTime<Utc>,
    },
    /// The vendor answered with an error code (whatever the HTTP status).
    #[error("voice ({provider}): {code}: {message}")]
    Refused {
        provider: &'static str,
        code: String,
        message: String,
        /// Only `isp.SYSTEM_ERROR`/`isp.GATEWAY_ERROR` (and Tencent's `InternalError`) are
        /// worth one more try; the caller decides, a loop never.
        retry_once: bool,
    },
    #[error("voice: {0}")]
    Number(String),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error("voice: store: {0}")]
    Store(#[from] StoreError),
}

impl VoiceError {
    /// A bounded label for `oncall_pages_total{result}`.
    pub fn result_label(&self) -> &'static str {
        match self {
            VoiceError::Limited { .. } => "limited",
            VoiceError::Refused { code, .. } if code == "isv.BUSINESS_LIMIT_CONTROL" => "limited",
            VoiceError::Refused { code, .. } if code.starts_with("LimitExceeded") => "limited",
            _ => "failed",
        }
    }
}

impl VoiceError {
    /// As a delivery error: never retried (a failed call moves the escalation on instead).
    pub fn into_delivery(self) -> DeliveryError {
        match self {
            VoiceError::Delivery(e) => e,
            e => {
                let reason = match e.result_label() {
                    "limited" => crate::channels::error::Reason::RateLimited,
                    _ => crate::channels::error::Reason::Upstream,
                };
                DeliveryError::Upstream {
                    service: SERVICE,
                    code: 0,
                    message: e.to_string(),
                    reason,
                    retryable: false,
                    recipients: Vec::new(),
                }
            }
        }
    }
}

/// A call placed: the vendor's id (what its reports name) and ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub provider: Provider,
    pub call_id: String,
    pub out_id: String,
}

/// What a call says: the 20-character preview and the incident's reference.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// E.164 (`+8613800000000`).
    pub number: &'a str,
    pub summary: &'a str,
    pub reference: &'a str,
    /// Echoed in Aliyun's reports (`out_id`) and Tencent's `SessionContext`; cut to 15 bytes.
    pub out_id: &'a str,
}

/// A voice channel built from a checked [`VoiceConfig`].
#[derive(Debug, Clone)]
pub struct Voice {
    pub config: VoiceConfig,
}

/// The TTS variables: the preview (no links: Aliyun refuses them) and the reference, within
/// Aliyun's 250 characters.
fn tts_params(summary: &str, reference: &str) -> (String, String) {
    let summary = text::one_line(summary)
        .split_whitespace()
        .filter(|w| !w.contains("://"))
        .collect::<Vec<_>>()
        .join(" ");
    (text::truncate(&summary, 20), text::truncate(reference, 20))
}

impl Voice {
    pub fn new(config: VoiceConfig) -> Voice {
        Voice { config }
    }

    fn secret(&self) -> &str {
        match self.config.provider {
            Provider::Aliyun => self.config.access_key_secret.as_ref(),
            Provider::Tencent => self.config.secret_key.as_ref(),
        }
        .map(Secret::expose)
        .unwrap_or_default()
    }

    fn host(&self) -> String {
        let e = self.config.endpoint();
        e.split_once("://")
            .map_or(e, |(_, rest)| rest)
            .trim_end_matches('/')
            .to_string()
    }

    /// Counts the call against each of the number's windows (Aliyun), refusing it when one is
    /// spent. Fixed windows in the store: one count per window, across replicas.
    pub async fn take_limits(
        &self,
        store: &Store,
        number: &str,
        now: DateTime<Utc>,
    ) -> Result<(), VoiceError> {
        if self.config.provider != Provider::Aliyun {
            return Ok(());
        }
        let secs = now.timestamp();
        // Shortest window first: a refusal by a longer one wastes at most a shorter count,
        // which expires sooner.
        for (window, len, limit) in ALIYUN_LIMITS {
            let start = secs - secs.rem_euclid(len);
            let until = DateTime::from_timestamp(start + len, 0).unwrap_or(now);
            let key = format!("voice:aliyun:{number}:{window}:{start}");
            let taken = store
                .take_counters(vec![key], 1, Some(limit), until)
                .await?;
            if taken.first() != Some(&true) {
                return Err(VoiceError::Limited {
                    number: mask(number),
                    window,
                    until,
                });
            }
        }
        Ok(())
    }

    /// Places a call, after counting it against the number's limits in `store`.
    pub async fn place(
        &self,
        env: &Env<'_>,
        store: &Store,
        call: &Call<'_>,
    ) -> Result<Placed, VoiceError> {
        if self.config.provider == Provider::Aliyun {
            aliyun_number(call.number).map_err(VoiceError::Number)?;
        }
        self.take_limits(store, call.number, env.now).await?;
        let placed = match self.config.provider {
            Provider::Aliyun => self.aliyun(env, call).await,
            Provider::Tencent => self.tencent(env, call).await,
        };
        match &placed {
            Ok(p) => {
                tracing::info!(provider = self.config.provider.as_str(), number = %mask(call.number), call_id = %p.call_id, "voice call placed")
            }
            Err(e) => {
                tracing::warn!(provider = self.config.provider.as_str(), number = %mask(call.number), error = %e, "voice call not placed")
            }
        }
        placed
    }

    /// What makes two voice integrations the same ([`crate::channels::Integration::identity`]).
    pub(crate) fn identity(&self, parts: &mut Vec<String>) {
        let c = &self.config;
        parts.push(c.provider.as_str().to_string());
        parts.push(c.endpoint().to_string());
        parts.extend(c.access_key_id.iter().chain(&c.secret_id).cloned());
        parts.push(format!("number={}", c.number));
    }

    /// The call a page makes: the number, the 20-character preview (the `wecom.summary`
    /// line) and the reference (the incident's, else the notification's).
    fn call_of(
        &self,
        env: &Env<'_>,
        n: &crate::webhook::Notification,
    ) -> Result<(String, String), DeliveryError> {
        let ctx = env.context_with_preview(n, n, SUMMARY_TEMPLATE, SUMMARY_CHARS)?;
        let summary = ctx["preview"].as_str().unwrap_or_default().to_string();
        let reference = n
            .incident
            .as_ref()
            .map(|i| i.reference.clone())
            .or_else(|| n.reference.clone())
            .unwrap_or_default();
        Ok((summary, reference))
    }

    /// The request a page becomes, for `render` (signature headers left out: they depend on
    /// the moment of sending).
    pub fn prepare(
        &self,
        env: &Env<'_>,
        n: &crate::webhook::Notification,
    ) -> Vec<crate::channels::Outbound> {
        let Ok((summary, reference)) = self.call_of(env, n) else {
            return Vec::new();
        };
        let (summary, reference) = tts_params(&summary, &reference);
        vec![crate::channels::Outbound {
            method: "POST",
            url: self.config.endpoint().to_string(),
            body: serde_json::Value::String(format!(
                "call {}: {summary} ({reference}), press {ACK_KEY} to acknowledge",
                mask(&self.config.number)
            )),
        }]
    }

    /// Places the call a page makes (counted against the number's limits first).
    pub async fn page(
        &self,
        env: &Env<'_>,
        store: &Store,
        n: &crate::webhook::Notification,
    ) -> Result<Placed, VoiceError> {
        let (summary, reference) = self.call_of(env, n)?;
        let out_id = n
            .incident
            .as_ref()
            .map_or(reference.clone(), |i| format!("i{}s{}", i.id, i.step));
        self.place(
            env,
            store,
            &Call {
                number: &self.config.number,
                summary: &summary,
                reference: &reference,
                out_id: &out_id,
            },
        )
        .await
    }

    /// A page outside the on-call engine's own send (which records the call id): one call,
    /// never retried.
    pub async fn send(
        &self,
        env: &Env<'_>,
        n: &crate::webhook::Notification,
    ) -> Result<(), DeliveryError> {
        if n.incident.as_ref().is_some_and(|i| i.update.is_some()) {
            // Status updates go to the written contacts only.
            return Ok(());
        }
        let Some(store) = env.store else {
            return Err(
                VoiceError::Number("a call needs the store (per-number limits)".into())
                    .into_delivery(),
            );
        };
        self.page(env, store, n)
            .await
            .map(|_| ())
            .map_err(VoiceError::into_delivery)
    }

    fn out_id(call: &Call<'_>) -> String {
        text::byte_prefix(call.out_id, OUT_ID_MAX_BYTES).to_string()
    }

    /// The IvrCall query parameters (everything but the signature headers).
    pub fn aliyun_query(&self, call: &Call<'_>) -> Result<Vec<(String, String)>, VoiceError> {
        let c = &self.config;
        let (summary, reference) = tts_params(call.summary, call.reference);
        let params = json!({"summary": summary, "ref": reference}).to_string();
        let params = text::truncate(&params, TTS_PARAMS_MAX_CHARS);
        let q = [
            (
                "CalledShowNumber",
                c.called_show_number.clone().unwrap_or_default(),
            ),
            (
                "CalledNumber",
                aliyun_number(call.number).map_err(VoiceError::Number)?,
            ),
            ("StartCode", c.start_code.clone().unwrap_or_default()),
            ("StartTtsParams", params.clone()),
            ("MenuKeyMap.1.Key", ACK_KEY.to_string()),
            ("MenuKeyMap.1.Code", c.ack_code.clone().unwrap_or_default()),
            ("MenuKeyMap.1.TtsParams", params),
            ("PlayTimes", "2".to_string()),
            ("Timeout", "5000".to_string()),
            ("OutId", Self::out_id(call)),
        ];
        Ok(q.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// The signed IvrCall request's headers (with `Authorization`).
    pub fn aliyun_headers(
        &self,
        query: &[(String, String)],
        now: DateTime<Utc>,
        nonce: &str,
    ) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = [
            ("host", self.host()),
            ("x-acs-action", "IvrCall".to_string()),
            ("x-acs-version", ALIYUN_VERSION.to_string()),
            ("x-acs-date", now.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            ("x-acs-signature-nonce", nonce.to_string()),
            ("x-acs-content-sha256", sign::sha256_hex(b"")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let (_, auth) = sign::acs3(
            &sign::AcsRequest {
                method: "POST",
                query,
                headers: &headers,
                body: b"",
            },
            self.config.access_key_id.as_deref().unwrap_or_default(),
            self.secret(),
        );
        headers.push(("authorization".to_string(), auth));
        headers
    }

    async fn aliyun(&self, env: &Env<'_>, call: &Call<'_>) -> Result<Placed, VoiceError> {
        let query = self.aliyun_query(call)?;
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let headers = self.aliyun_headers(&query, env.now, &nonce);
        let url = format!(
            "{}/?{}",
            self.config.endpoint().trim_end_matches('/'),
            sign::acs_canonical_query(&query)
        );
        let mut request = env.client.post(url);
        for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
            request = request.header(k.as_str(), v.as_str());
        }
        let answer = http::send(SERVICE, request).await?;
        let clean = |s: &str| self.scrub(env, s);
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Code", default)]
            code: String,
            #[serde(rename = "Message", default)]
            message: String,
            #[serde(rename = "CallId", default)]
            call_id: String,
        }
        // Business errors come with HTTP 200 or 400: the code decides, whatever the status.
        let a: Answer = match answer.json(SERVICE, clean) {
            Ok(a) => a,
            Err(e) if answer.is_success() => return Err(e.into()),
            Err(_) => return Err(answer.http_error(SERVICE, clean).into()),
        };
        if a.code != "OK" || a.call_id.is_empty() {
            let retry_once = matches!(a.code.as_str(), "isp.SYSTEM_ERROR" | "isp.GATEWAY_ERROR");
            return Err(VoiceError::Refused {
                provider: "aliyun",
                code: text::truncate(&clean(&a.code), 64),
                message: text::truncate(&clean(&a.message), 200),
                retry_once,
            });
        }
        Ok(Placed {
            provider: Provider::Aliyun,
            call_id: a.call_id,
            out_id: Self::out_id(call),
        })
    }

    /// The SendTtsVoice body.
    pub fn tencent_body(&self, call: &Call<'_>) -> String {
        let c = &self.config;
        let (summary, reference) = tts_params(call.summary, call.reference);
        json!({
            "TemplateId": c.template_id.clone().unwrap_or_default(),
            "TemplateParamSet": [summary, reference],
            "CalledNumber": call.number,
            "VoiceSdkAppid": c.sdk_app_id.clone().unwrap_or_default(),
            "PlayTimes": 2,
            "SessionContext": Self::out_id(call),
        })
        .to_string()
    }

    /// The signed SendTtsVoice headers (with `Authorization`).
    pub fn tencent_headers(&self, body: &str, timestamp: i64) -> Vec<(String, String)> {
        let host = self.host();
        let content_type = "application/json; charset=utf-8";
        let (_, auth) = sign::tc3(
            &sign::Tc3Request {
                service: "vms",
                headers: &[
                    ("content-type", content_type),
                    ("host", &host),
                    ("x-tc-action", "sendttsvoice"),
                ],
                payload: body.as_bytes(),
                timestamp,
            },
            self.config.secret_id.as_deref().unwrap_or_default(),
            self.secret(),
        );
        vec![
            ("content-type".into(), content_type.into()),
            ("x-tc-action".into(), "SendTtsVoice".into()),
            ("x-tc-version".into(), TENCENT_VERSION.into()),
            ("x-tc-timestamp".into(), timestamp.to_string()),
            ("x-tc-region".into(), self.config.region().into()),
            ("authorization".into(), auth),
        ]
    }

    async fn tencent(&self, env: &Env<'_>, call: &Call<'_>) -> Result<Placed, VoiceError> {
        let body = self.tencent_body(call);
        let headers = self.tencent_headers(&body, env.now.timestamp());
        let mut request = env
            .client
            .post(format!("{}/", self.config.endpoint().trim_end_matches('/')))
            .body(body);
        for (k, v) in &headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let clean = |s: &str| self.scrub(env, s);
        #[derive(Deserialize)]
        struct Error {
            #[serde(rename = "Code", default)]
            code: String,
            #[serde(rename = "Message", default)]
            message: String,
        }
        #[derive(Deserialize)]
        struct SendStatus {
            #[serde(rename = "CallId", default)]
            call_id: String,
        }
        #[derive(Deserialize)]
        struct Response {
            #[serde(rename = "Error")]
            error: Option<Error>,
            #[serde(rename = "SendStatus")]
            send_status: Option<SendStatus>,
        }
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Response")]
            response: Response,
        }
        let a: Answer = http::send(SERVICE, request)
            .await?
            .success_json(SERVICE, clean)?;
        if let Some(e) = a.response.error {
            let retry_once = e.code.starts_with("InternalError");
            return Err(VoiceError::Refused {
                provider: "tencent",
                code: text::truncate(&clean(&e.code), 64),
                message: text::truncate(&clean(&e.message), 200),
                retry_once,
            });
        }
        match a.response.send_status {
            Some(s) if !s.call_id.is_empty() => Ok(Placed {
                provider: Provider::Tencent,
                call_id: s.call_id,
                out_id: Self::out_id(call),
            }),
            _ => Err(DeliveryError::BadResponse {
                service: SERVICE,
                message: "no SendStatus.CallId in the answer".into(),
            }
            .into()),
        }
    }

    fn scrub(&self, env: &Env<'_>, s: &str) -> String {
        let mut s = env.scrubber.scrub(s);
        for secret in self.config.secrets() {
            if !secret.is_empty() {
                s = s.replace(secret.expose(), "<secret>");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliyun() -> Voice {
        Voice::new(
            yaml_serde::from_str(
                "{provider: aliyun, access_key_id: LTAIid, access_key_secret: aksecretvalue, called_show_number: '057100000000', start_code: TTS_123, ack_code: TTS_124, callback_secret: x, endpoint: 'http://127.0.0.1:9/'}",
            )
            .unwrap(),
        )
    }

    #[test]
    fn the_ivrcall_request_has_the_national_number_and_press_1() {
        let v = aliyun();
        let call = Call {
            number: "+8613800000000",
            summary: "[P1] 订单库磁盘 95% https://x.example/y 已持续很久很久很久很久",
            reference: "K7Q2",
            out_id: "K7Q2-1-zhangsan-long",
        };
        let q = v.aliyun_query(&call).unwrap();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CalledNumber"), Some("13800000000"));
        assert_eq!(get("CalledShowNumber"), Some("057100000000"));
        assert_eq!(get("StartCode"), Some("TTS_123"));
        assert_eq!(get("MenuKeyMap.1.Key"), Some("1"));
        assert_eq!(get("MenuKeyMap.1.Code"), Some("TTS_124"));
        assert_eq!(get("OutId"), Some("K7Q2-1-zhangsan"));
        assert_eq!(
            get("StartTtsParams"),
            Some(r#"{"ref":"K7Q2","summary":"[P1] 订单库磁盘 95% 已持续很…"}"#)
        );
        let headers = v.aliyun_headers(
            &q,
            DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            "n1",
        );
        let auth = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        assert!(auth.starts_with("ACS3-HMAC-SHA256 Credential=LTAIid,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature="));
        assert!(!auth.contains("aksecretvalue"));
        assert!(headers.contains(&("x-acs-date".into(), "2023-11-14T22:13:20Z".into())));
        assert!(headers.contains(&("host".into(), "127.0.0.1:9".into())));
    }

    #[test]
    fn a_number_outside_the_mainland_is_refused_for_aliyun() {
        let v = aliyun();
        let call = Call {
            number: "+14155550100",
            summary: "s",
            reference: "r",
            out_id: "o",
        };
        assert!(matches!(v.aliyun_query(&call), Err(VoiceError::Number(_))));
    }

    #[tokio::test]
    async fn per_number_limits_are_counted_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 100).unwrap();
        let v = aliyun();
        // A day ahead of the clock: the store expires counters by the wall clock.
        let ahead = Utc::now().timestamp() + 2 * 86400;
        let t0 = DateTime::from_timestamp(ahead - ahead % 86400, 0).unwrap();
        let n = "+8613800000000";
        v.take_limits(&store, n, t0).await.unwrap();
        // Second in the same minute: refused by the minute window.
        let e = v.take_limits(&store, n, t0).await.unwrap_err();
        assert!(
            matches!(
                e,
                VoiceError::Limited {
                    window: "minute",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.result_label(), "limited");
        assert!(!e.to_string().contains("13800000000"), "{e}");
        // Another number is not affected.
        v.take_limits(&store, "+8613900000000", t0).await.unwrap();
        // One a minute for four more minutes: five in the hour, then the hour refuses.
        for m in 1..5 {
            v.take_limits(&store, n, t0 + chrono::Duration::minutes(m))
                .await
                .unwrap();
        }
        let e = v
            .take_limits(&store, n, t0 + chrono::Duration::minutes(5))
            .await
            .unwrap_err();
        assert!(
            matches!(e, VoiceError::Limited { window: "hour", .. }),
            "{e}"
        );
        // Five in each of three more hours: the day's twenty, then the day refuses.
        for h in 1..4 {
            for m in 0..5 {
                v.take_limits(
                    &store,
                    n,
                    t0 + chrono::Duration::hours(h) + chrono::Duration::minutes(m),
                )
                .await
                .unwrap();
            }
        }
        let e = v
            .take_limits(&store, n, t0 + chrono::Duration::hours(5))
            .await
            .unwrap_err();
        assert!(
            matches!(e, VoiceError::Limited { window: "day", .. }),
            "{e}"
        );
    }

    #[test]
    fn the_tencent_request_is_e164_and_signed_over_action() {
        let v = Voice::new(
            yaml_serde::from_str(
                "{provider: tencent, secret_id: AKIDx, secret_key: tcsecretvalue, sdk_app_id: '1400006666', template_id: '4356', callback_secret: x}",
            )
            .unwrap(),
        );
        let call = Call {
            number: "+8613788888888",
            summary: "磁盘告警",
            reference: "K7Q2",
            out_id: "K7Q2-1",
        };
        assert_eq!(
            v.tencent_body(&call),
            r#"{"CalledNumber":"+8613788888888","PlayTimes":2,"SessionContext":"K7Q2-1","TemplateId":"4356","TemplateParamSet":["磁盘告警","K7Q2"],"VoiceSdkAppid":"1400006666"}"#
        );
        let h = v.tencent_headers(&v.tencent_body(&call), 1551113065);
        let auth = &h.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(auth.starts_with("TC3-HMAC-SHA256 Credential=AKIDx/2019-02-25/vms/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature="), "{auth}");
        assert!(h.contains(&("x-tc-region".into(), "ap-guangzhou".into())));
        assert_eq!(v.host(), "vms.tencentcloudapi.com");
    }
}

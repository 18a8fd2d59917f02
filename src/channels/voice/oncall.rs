//! Voice calls' on-call side: the report endpoint (`POST /callback/voice/{provider}/{secret}`,
//! parsed by [`super::inbound`]), the keys it checks, how a call is found again ([`marker`]),
//! and pages to a person's `contacts.voice` ([`Pager`]): one call, its ids kept with the
//! incident so that the reports (keypress, not answered) find it. A call not placed (the
//! number's limit spent, the vendor refusing) is a failed page at once: counted as `limited`
//! or `failed`, and the next step now if every page of the step has failed.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use super::config::VoiceConfig;
use super::{Provider, Voice};
use crate::channels::callbacks::{CallbackState, deliver, not_found, read_body};
use crate::channels::error::DeliveryError;
use crate::channels::reach::{Desk, Pager};
use crate::channels::{Contacts, Env, Integration, Progress};
use crate::secret::Secret;
use crate::webhook::Notification;

/// Aliyun batches reports into one array.
const REPORT_LIMIT: usize = 256 * 1024;

/// How long a report may wait for the engine before it is answered (the vendors' limit is
/// 700 ms, the network's share included).
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether `contacts` name the number `number` (E.164).
pub fn among(contacts: &Contacts, number: &str) -> bool {
    contacts.voice.as_ref().is_some_and(|c| c.number == number)
}

/// A call, by the provider's call id (`CallId`), and the `out_id` we gave (Aliyun).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRef {
    pub provider: Provider,
    pub call_id: String,
    pub out_id: Option<String>,
}

impl CallRef {
    /// The marker of the `sent` entry recording the call, and its contact kind.
    pub fn marker(&self) -> (String, &'static str) {
        (format!("call_id={}", self.call_id), super::KIND)
    }
}

/// The provider and the reports' path secret of `entry`, unless `slot` has keys already.
pub fn keys(entry: &VoiceConfig, slot: &mut Option<(Provider, Secret)>) {
    if slot.is_some() {
        return;
    }
    if let Some(secret) = &entry.callback_secret {
        *slot = Some((entry.provider, secret.clone()));
    }
}

/// `POST /callback/voice/{provider}/{secret}`.
pub fn routes(router: Router<CallbackState>) -> Router<CallbackState> {
    router.route(
        "/callback/voice/{provider}/{secret}",
        axum::routing::post(report),
    )
}

async fn report(
    State(app): State<CallbackState>,
    Path((provider, secret)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((configured, expected)) = app.endpoints.keys().voice.clone() else {
        return not_found();
    };
    let provider = match provider.as_str() {
        "aliyun" => Provider::Aliyun,
        "tencent" => Provider::Tencent,
        _ => return not_found(),
    };
    let same: bool = secret.as_bytes().ct_eq(expected.expose().as_bytes()).into();
    if provider != configured || !same {
        info!(
            provider = provider.as_str(),
            "voice report with a wrong path refused"
        );
        return not_found();
    }
    let body = match read_body(&headers, body, REPORT_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let events = match super::inbound::parse(provider, &body) {
        Ok(e) => e,
        Err(e) => {
            let text = crate::webhook::escape_controls(&crate::text::one_line(&e.to_string()));
            return (StatusCode::BAD_REQUEST, format!("{text}\n")).into_response();
        }
    };
    let ok = || {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            super::inbound::ok_answer(provider),
        )
            .into_response()
    };
    // The vendors want an answer within 700 ms. The report's ids are taken in the store
    // first (a re-send is ignored from then on); an engine slower than the bound goes on
    // with the event after the answer.
    let work = tokio::spawn(async move { deliver(&app, events).await });
    match tokio::time::timeout(ANSWER_WITHIN, work).await {
        Ok(Ok(Ok(_))) => ok(),
        Ok(Ok(Err(r))) => r,
        Ok(Err(e)) => {
            warn!(error = %e, "voice report handling stopped");
            (StatusCode::SERVICE_UNAVAILABLE, "voice report not taken\n").into_response()
        }
        Err(_) => {
            info!(
                provider = provider.as_str(),
                "voice report answered before the engine finished with it"
            );
            ok()
        }
    }
}

impl Pager for Voice {
    fn send_oncall<'a>(
        &'a self,
        desk: &'a dyn Desk,
        _: &'a Integration,
        env: &'a Env<'a>,
        n: &'a Notification,
        _: &'a mut Progress,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(call(self, desk, env, n))
    }
}

/// A page as one call (see the module's documentation).
async fn call(
    line: &Voice,
    desk: &dyn Desk,
    env: &Env<'_>,
    n: &Notification,
) -> Result<(), DeliveryError> {
    let step = n.incident.as_ref().map_or(0, |c| c.step);
    let placed = match line.page(env, desk.store(), n).await {
        Ok(p) => p,
        Err(e) => {
            let label = e.result_label();
            let detail = format!("step {step}: not placed ({label}): {e}");
            let recorded = desk
                .outcome(super::KIND, Some(label), env.now, detail)
                .await;
            if let Err(e) = recorded {
                warn!(incident = desk.incident(), error = %e, "a call not placed is not recorded with the incident");
            }
            return Err(e.into_delivery());
        }
    };
    let detail = format!(
        "step {step}: call_id={} out_id={}",
        placed.call_id, placed.out_id
    );
    let lost = "its reports will be ignored";
    desk.sent(super::KIND, detail, lost).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::callbacks::routes;
    use crate::channels::reach::{
        CallbackKeys, Endpoints, EventSink, OncallEvent, PageRef, SinkError,
    };
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use tower::ServiceExt;

    /// Takes events and never finishes with them: an engine stuck on a slow store.
    struct Stuck(tokio::sync::mpsc::UnboundedSender<OncallEvent>);

    impl EventSink for Stuck {
        fn accept(
            &self,
            event: OncallEvent,
        ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
            let _ = self.0.send(event);
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_voice_report_is_answered_while_the_engine_is_still_busy_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path(), 100).unwrap();
        let endpoints = Arc::new(Endpoints::default());
        endpoints.set_keys(CallbackKeys {
            voice: Some((Provider::Aliyun, Secret::new("s3cret"))),
            ..CallbackKeys::default()
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        endpoints.connect(Arc::new(Stuck(tx)));
        let app: Router = routes(CallbackState { endpoints, store });
        let report = serde_json::json!([{"call_id": "c-1", "out_id": "x", "status_code": "200010",
            "status_msg": "", "callee": "13800000001", "caller": "057100000000",
            "start_time": "2026-12-07 00:00:00", "end_time": "2026-12-07 00:00:30",
            "duration": "30", "toll_type": "LOCAL", "hangup_direction": "1", "dtmf": "1"}]);
        let request = axum::http::Request::post("/callback/voice/aliyun/s3cret")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(report.to_string()))
            .unwrap();
        // Without the bound the answer never comes: the sink never finishes.
        let answer = tokio::time::timeout(std::time::Duration::from_secs(60), app.oneshot(request))
            .await
            .expect("answered while the engine is busy")
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let taken = rx.recv().await.expect("the engine got the report");
        assert!(
            matches!(taken.page(), PageRef::Voice(CallRef { call_id, .. }) if call_id == "c-1")
        );
    }
}

//! Limits on the way in: how long a connection may stay silent or idle, how long a request
//! body may take, and how many body bytes all requests together may hold in memory.
//!
//! Every request body is wrapped in a [`GuardedBody`] before any handler sees it, so the
//! limits hold for every endpoint, including the ones that buffer with axum's extractors.
//! Nothing here reads a body by itself: a handler that refuses a request from its head alone
//! (see [`super::auth::check_head`]) never polls it, so hyper never sends `100 Continue`.
//! This module must not know about endpoints, payloads or credentials.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// Seconds a client is told to wait when the in-flight budget is spent.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// Why reading a request body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body not complete within {0:?} (web.body_read_timeout)")]
    TimedOut(Duration),
    #[error("too many request bodies in flight (web.max_inflight_body_bytes), retry later")]
    Overloaded,
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("cannot read body: {0}")]
    Read(#[from] hyper::Error),
}

impl BodyError {
    /// The answer a request gets when its body stopped for this reason.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The [`BodyError`] somewhere in an error's chain of sources (axum and
    /// `http_body_util::Limited` wrap it).
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(b) = e.downcast_ref::<BodyError>() {
                return Some(b);
            }
            cur = e.source();
        }
        None
    }
}

/// A refusal the server imposes on a request whatever its handler answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    TimedOut,
    Overloaded,
    TooLarge,
}

/// The budget of body bytes in memory, shared by every connection and stream.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    /// The budget's size: a declared length is reserved up to this much.
    total: usize,
    /// How long a body may take, from its request head.
    timeout: Duration,
}

impl BodyBudget {
    pub fn new(max_inflight_bytes: usize, timeout: Duration) -> BodyBudget {
        let total = max_inflight_bytes.min(Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
            timeout,
        }
    }

    /// Wraps one request's body; the returned [`Ledger`] keeps what it took until the answer
    /// is ready (the handler holds the bytes until then).
    /// No body is longer than `max_body` (`web.max_body_bytes`), whatever the endpoint.
    pub fn guard(&self, body: Incoming, max_body: usize) -> (GuardedBody, Arc<Ledger>) {
        let ledger = Arc::new(Ledger::default());
        let body = GuardedBody {
            inner: body,
            budget: self.clone(),
            ledger: ledger.clone(),
            max_body,
            deadline: Instant::now() + self.timeout,
            sleep: None,
            started: false,
            counted: 0,
        };
        (body, ledger)
    }
}

/// What one request's body took from the budget, and why it was stopped, if it was.
#[derive(Default)]
pub struct Ledger {
    state: Mutex<LedgerState>,
}

#[derive(Default)]
struct LedgerState {
    /// Permits (bytes) held; released when the ledger goes, after the answer.
    held: Option<OwnedSemaphorePermit>,
    refusal: Option<Refusal>,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn held(&self) -> usize {
        self.lock().held.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Takes `n` more bytes from the budget, without waiting.
    fn take(&self, budget: &BodyBudget, n: usize) -> Result<(), BodyError> {
        if n == 0 {
            return Ok(());
        }
        let n32 = u32::try_from(n).map_err(|_| BodyError::Overloaded)?;
        let permit = budget
            .bytes
            .clone()
            .try_acquire_many_owned(n32)
            .map_err(|_| BodyError::Overloaded)?;
        let mut s = self.lock();
        match &mut s.held {
            Some(held) => held.merge(permit),
            None => s.held = Some(permit),
        }
        Ok(())
    }

    fn refuse(&self, r: Refusal) {
        self.lock().refusal.get_or_insert(r);
    }

    /// The answer, corrected when the body was stopped by a limit: a handler that mapped
    /// the read error to something generic still answers 408 or 503 (with `Retry-After`).
    pub fn correct(&self, response: Response) -> Response {
        let refusal = self.lock().refusal;
        match refusal {
            None => response,
            Some(Refusal::TimedOut) if response.status() == StatusCode::REQUEST_TIMEOUT => response,
            Some(Refusal::TimedOut) => (
                StatusCode::REQUEST_TIMEOUT,
                "request body not complete in time\n",
            )
                .into_response(),
            Some(Refusal::TooLarge) if response.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                response
            }
            Some(Refusal::TooLarge) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response()
            }
            Some(Refusal::Overloaded) => {
                let mut response = if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                    response
                } else {
                    overloaded()
                };
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
                response
            }
        }
    }
}

fn overloaded() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "too many request bodies in flight, retry later\n",
    )
        .into_response()
}

/// A request body under the whole-body deadline and the in-flight budget. Bytes are counted
/// as they are read; a declared `Content-Length` is taken from the budget up front, at the
/// first read, so a request that cannot fit is refused before its body is sent.
pub struct GuardedBody {
    inner: Incoming,
    budget: BodyBudget,
    ledger: Arc<Ledger>,
    max_body: usize,
    deadline: Instant,
    /// Made at the first read that has to wait: most bodies never need a timer.
    sleep: Option<Pin<Box<Sleep>>>,
    started: bool,
    /// Body bytes read so far.
    counted: usize,
}

impl GuardedBody {
    fn fail(&mut self, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match e {
            BodyError::TimedOut(_) => self.ledger.refuse(Refusal::TimedOut),
            BodyError::Overloaded => self.ledger.refuse(Refusal::Overloaded),
            BodyError::TooLarge(_) => self.ledger.refuse(Refusal::TooLarge),
            BodyError::Read(_) => {}
        }
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if !this.started {
            this.started = true;
            // Reserved before the first read, so nothing is asked of the client (no
            // `100 Continue`) when it cannot fit.
            if let Some(declared) = this.inner.size_hint().exact() {
                let want = usize::try_from(declared).unwrap_or(usize::MAX);
                if want > this.max_body {
                    return this.fail(BodyError::TooLarge(this.max_body));
                }
                // Over the whole budget (only after a reload raised `max_body_bytes`): what
                // is read past the reservation is counted as it comes.
                let want = want.min(this.budget.total);
                if let Err(e) = this.ledger.take(&this.budget, want) {
                    return this.fail(e);
                }
            }
        }
        // The deadline is looked at only when the client makes the handler wait: what has
        // already arrived is never thrown away for a handler that was slow to read it.
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.counted = this.counted.saturating_add(data.len());
                    if this.counted > this.max_body {
                        return this.fail(BodyError::TooLarge(this.max_body));
                    }
                    let more = this.counted.saturating_sub(this.ledger.held());
                    if let Err(e) = this.ledger.take(&this.budget, more) {
                        return this.fail(e);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(BodyError::Read(e)),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => this.fail(BodyError::TimedOut(this.budget.timeout)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a connection is doing: requests in progress, and whether it ever had one.
#[derive(Debug, Default, Clone, Copy)]
pub struct Activity {
    active: usize,
    served: bool,
}

/// The connection's side of [`Activity`]: its service reports each request through it.
#[derive(Clone)]
pub struct ActivityTracker(Arc<watch::Sender<Activity>>);

/// Held while a request is in progress; the connection counts as idle once all are dropped.
pub struct InProgress(Arc<watch::Sender<Activity>>);

impl ActivityTracker {
    pub fn new() -> (ActivityTracker, watch::Receiver<Activity>) {
        let (tx, rx) = watch::channel(Activity::default());
        (ActivityTracker(Arc::new(tx)), rx)
    }

    /// A request head arrived.
    pub fn begin(&self) -> InProgress {
        self.0.send_modify(|a| {
            a.active += 1;
            a.served = true;
        });
        InProgress(self.0.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0
            .send_modify(|a| a.active = a.active.saturating_sub(1));
    }
}

/// Whether a connection became idle having served requests or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// No complete request head within the first timeout of accept.
    NeverServed,
    /// No request in progress for the idle timeout.
    AfterRequests,
}

/// Completes once the connection has had no request in progress for `first` (before its
/// first request head, counted from accept) or `idle` (after it served requests).
pub async fn idle(mut rx: watch::Receiver<Activity>, first: Duration, idle: Duration) -> Idle {
    loop {
        let now = *rx.borrow_and_update();
        if now.active > 0 {
            if rx.changed().await.is_err() {
                // The connection's service is gone, and with it the connection.
                return Idle::AfterRequests;
            }
            continue;
        }
        let wait = if now.served { idle } else { first };
        tokio::select! {
            () = tokio::time::sleep(wait) => {
                return if now.served { Idle::AfterRequests } else { Idle::NeverServed };
            }
            changed = rx.changed() => if changed.is_err() {
                return Idle::AfterRequests;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_accept_then_from_the_last_request() {
        let (tracker, rx) = ActivityTracker::new();
        let accepted = Instant::now();
        assert_eq!(idle(rx.clone(), FIRST, IDLE).await, Idle::NeverServed);
        assert_eq!(accepted.elapsed(), FIRST);

        // A request in progress keeps the connection, however long it takes.
        let request = tracker.begin();
        let watch = idle(rx.clone(), FIRST, IDLE);
        tokio::pin!(watch);
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), watch.as_mut())
                .await
                .is_err()
        );
        let finished = Instant::now();
        drop(request);
        assert_eq!(watch.await, Idle::AfterRequests);
        assert_eq!(finished.elapsed(), IDLE);
    }

    #[test]
    fn a_stopped_body_corrects_the_answer() {
        let ledger = Ledger::default();
        let ok = || (StatusCode::BAD_REQUEST, "cannot read body\n").into_response();
        assert_eq!(ledger.correct(ok()).status(), StatusCode::BAD_REQUEST);
        ledger.refuse(Refusal::Overloaded);
        let r = ledger.correct(ok());
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        let ledger = Ledger::default();
        ledger.refuse(Refusal::TimedOut);
        assert_eq!(ledger.correct(ok()).status(), StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn the_budget_is_given_back_with_the_ledger() {
        let budget = BodyBudget::new(100, Duration::from_secs(1));
        let a = Ledger::default();
        a.take(&budget, 60).unwrap();
        let b = Ledger::default();
        assert!(matches!(b.take(&budget, 50), Err(BodyError::Overloaded)));
        b.take(&budget, 40).unwrap();
        assert_eq!(budget.bytes.available_permits(), 0);
        drop(a);
        assert_eq!(budget.bytes.available_permits(), 60);
    }
}

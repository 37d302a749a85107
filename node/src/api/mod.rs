//! The client API: the gateway of DESIGN.md step 2. Two faces over one
//! pipeline —
//!
//! - [`tcp`]: the binary client protocol (`client::api` frames), the Rust
//!   client's transport: pipelined, with pushed events;
//! - [`http`]: JSON for people with curl, plus `/metrics` and `/healthz`.
//!
//! Both check a request's shape and cluster id, verify its signature in
//! batches off the async workers ([`Verifier`]), then hand it to the event
//! loop through [`ReplicaHandle`]. Every refusal is a typed [`ApiError`]
//! and is counted by reason.
//!
//! **API boundary:** nothing here touches consensus state; the gateway
//! only filters and forwards. A request that passes here is still
//! re-validated by every replica (Aardvark: signatures first).
//!
//! [`byzantine`] is test-only: a context built with
//! [`ApiContext::new_lying`] falsifies what it sends to clients, so tests
//! can show against real replicas that the client catches it.

pub mod byzantine;
pub mod http;
pub mod tcp;

use crate::config::{Limits, Timeouts};
use crate::replica::{ReplicaHandle, SubmitOutcome};
use crate::telemetry::{ApiMetrics, RequestKind};
use byzantine::Liar;
use client::api::{ApiError, Reply};
use primitives::request::verify_many;
use primitives::{ClusterId, Digest, Request, RequestError, RequestLimits};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

/// Everything both servers share.
#[derive(Debug)]
pub struct ApiContext {
    /// The event loop.
    pub handle: ReplicaHandle,
    /// The cluster every request must name.
    pub cluster: ClusterId,
    /// The request bounds.
    pub request_limits: RequestLimits,
    /// The API bounds.
    pub limits: Limits,
    /// The API's timeouts (shutdown grace).
    pub timeouts: Timeouts,
    /// Counters.
    pub metrics: ApiMetrics,
    /// The signature checker.
    pub verifier: Verifier,
    /// Test only: set by [`ApiContext::new_lying`], `None` otherwise.
    liar: Option<Liar>,
    serving: AtomicBool,
    shutdown: watch::Sender<bool>,
}

impl ApiContext {
    /// A context for `handle`. Spawns the verifier task: call inside a
    /// tokio runtime.
    pub fn new(
        handle: ReplicaHandle,
        cluster: ClusterId,
        limits: Limits,
        timeouts: Timeouts,
        metrics: ApiMetrics,
    ) -> Arc<ApiContext> {
        ApiContext::build(handle, cluster, limits, timeouts, metrics, None)
    }

    /// **Test only**: like [`ApiContext::new`], but every certified reply
    /// and pushed event is falsified by `liar` on its way to the client.
    pub fn new_lying(
        handle: ReplicaHandle,
        cluster: ClusterId,
        limits: Limits,
        timeouts: Timeouts,
        metrics: ApiMetrics,
        liar: Liar,
    ) -> Arc<ApiContext> {
        tracing::warn!(
            "BYZANTINE GATEWAY: this replica LIES to its clients (mode {}); for tests only, never in production",
            liar.mode()
        );
        ApiContext::build(handle, cluster, limits, timeouts, metrics, Some(liar))
    }

    fn build(
        handle: ReplicaHandle,
        cluster: ClusterId,
        limits: Limits,
        timeouts: Timeouts,
        metrics: ApiMetrics,
        liar: Option<Liar>,
    ) -> Arc<ApiContext> {
        let request_limits = limits.request();
        let verifier = Verifier::spawn(
            cluster,
            request_limits,
            limits.verify_queue_max,
            limits.verify_batch_max,
            metrics.clone(),
        );
        let (shutdown, _) = watch::channel(false);
        Arc::new(ApiContext {
            handle,
            cluster,
            request_limits,
            limits,
            timeouts,
            metrics,
            verifier,
            liar,
            serving: AtomicBool::new(true),
            shutdown,
        })
    }

    /// How this gateway lies to clients, if it was built to (test only).
    pub fn byzantine(&self) -> Option<byzantine::Mode> {
        self.liar.as_ref().map(Liar::mode)
    }

    /// `reply` as it goes out to a client: as is, unless lying.
    pub(crate) fn outgoing_reply(&self, reply: Reply) -> Reply {
        byzantine::outgoing_reply(self.liar.as_ref(), reply)
    }

    /// Whether the servers still take requests.
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// Stops taking connections and requests; the servers wind down.
    pub fn shut_down(&self) {
        self.serving.store(false, Ordering::Release);
        self.shutdown.send_replace(true);
    }

    /// Resolves once [`ApiContext::shut_down`] was called.
    pub async fn stopped(&self) {
        let mut rx = self.shutdown.subscribe();
        // The sender lives in self, so wait_for only fails if self is gone.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    /// Counts `error` and passes it on.
    pub fn reject(&self, error: ApiError) -> ApiError {
        self.metrics.rejected(&error);
        error
    }

    /// The gateway's pipeline for one signed request: shape and cluster,
    /// signature, then ordering. Rejections are counted.
    pub async fn submit(&self, request: Request) -> Result<SubmitOutcome, ApiError> {
        self.metrics.request(RequestKind::Submit);
        let result = self.submit_inner(request).await;
        if let Err(e) = &result {
            self.metrics.rejected(e);
        }
        result
    }

    /// Checks `request` (shape, cluster, signature) without ordering it;
    /// gives it back when it is valid.
    pub async fn check(&self, request: Request) -> Result<Request, ApiError> {
        if !self.serving() {
            return Err(ApiError::Unavailable("shutting down".into()));
        }
        // The cheap checks first, so a malformed flood costs no signature
        // checks.
        request
            .check_shape(self.cluster, &self.request_limits)
            .map_err(request_error)?;
        self.verifier.verify(request).await
    }

    async fn submit_inner(&self, request: Request) -> Result<SubmitOutcome, ApiError> {
        let request = self.check(request).await?;
        self.handle.submit(request).await
    }
}

/// One open client connection in the `qlock_api_connections` gauge, for
/// as long as it lives (however the connection ends).
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<ApiContext>);

impl OpenConnection {
    pub(crate) fn new(ctx: Arc<ApiContext>) -> OpenConnection {
        ctx.metrics.connections.inc();
        OpenConnection(ctx)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics.connections.dec();
    }
}

/// The typed API error of a request refused by `primitives`.
pub fn request_error(error: RequestError) -> ApiError {
    match error {
        RequestError::Codec(e) => ApiError::Malformed(e.to_string()),
        RequestError::WrongCluster { .. } => ApiError::WrongCluster,
        RequestError::NoOps => ApiError::Malformed("request has no ops".into()),
        e @ (RequestError::TooManyOps { .. } | RequestError::OpTooLarge { .. }) => {
            ApiError::Oversized(e.to_string())
        }
        RequestError::Signature(_) => ApiError::BadSignature,
    }
}

type VerifyJob = (
    Request,
    oneshot::Sender<(Request, Result<Digest, RequestError>)>,
);

/// Checks request signatures in batches on the blocking pool: one task
/// drains the queue into batches of up to `verify_batch_max`, each checked
/// with one batch verification (≈ 2–3× cheaper per signature than one by
/// one), at most one batch per core at a time.
#[derive(Clone, Debug)]
pub struct Verifier {
    jobs: mpsc::Sender<VerifyJob>,
}

impl Verifier {
    /// Starts the batching task.
    pub fn spawn(
        cluster: ClusterId,
        limits: RequestLimits,
        queue_max: usize,
        batch_max: usize,
        metrics: ApiMetrics,
    ) -> Verifier {
        assert!(queue_max >= 1 && batch_max >= 1, "checked by Limits::check");
        let (jobs, rx) = mpsc::channel(queue_max);
        tokio::spawn(verify_loop(rx, cluster, limits, batch_max, metrics));
        Verifier { jobs }
    }

    /// Full validation of `request`, given back when valid; `Overloaded`
    /// when the queue is full.
    pub async fn verify(&self, request: Request) -> Result<Request, ApiError> {
        let (answer, rx) = oneshot::channel();
        self.jobs.try_send((request, answer)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                ApiError::Overloaded("signature verification queue full".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                ApiError::Unavailable("verifier stopped".into())
            }
        })?;
        let (request, verdict) = rx
            .await
            .map_err(|_| ApiError::Unavailable("verifier stopped".into()))?;
        verdict.map_err(request_error)?;
        Ok(request)
    }
}

async fn verify_loop(
    mut rx: mpsc::Receiver<VerifyJob>,
    cluster: ClusterId,
    limits: RequestLimits,
    batch_max: usize,
    metrics: ApiMetrics,
) {
    let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
    let permits = Arc::new(Semaphore::new(parallel));
    let mut batch = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut batch, batch_max).await > 0 {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let jobs = std::mem::replace(&mut batch, Vec::with_capacity(batch_max));
        metrics.verify_batches.inc();
        metrics.verified.inc_by(jobs.len() as u64);
        tokio::task::spawn_blocking(move || {
            let (requests, answers): (Vec<Request>, Vec<_>) = jobs.into_iter().unzip();
            let verdicts = verify_many(&requests, cluster, &limits);
            assert_eq!(verdicts.len(), answers.len(), "one verdict per request");
            for ((request, verdict), answer) in requests.into_iter().zip(verdicts).zip(answers) {
                // The asker may have gone (connection closed): nothing to do.
                let _ = answer.send((request, verdict));
            }
            drop(permit);
        });
    }
}

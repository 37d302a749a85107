//! The HTTP face (axum): the JSON API for people with curl, `/metrics`
//! and `/healthz`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | `200 ok` while serving, `503` when shutting down |
//! | `GET /metrics` | the registry in OpenMetrics text |
//! | `GET /v1/status` | `StatusReport` as JSON |
//! | `POST /v1/submit` | body: a `Request` as JSON; `{"status":"replied","reply":…}` or `{"status":"accepted","request":…}` |
//! | `GET /v1/pulses?from=P&count=C` | certified headers, at most `PULSES_PER_QUERY_MAX` |
//! | `GET /v1/proof/{request_hex}/{op_index}` | a `ReceiptPulseProof` |
//!
//! Errors are `{"error": kind, "message": text}` with
//! `ApiError::http_status()`. Bodies are bounded by
//! `limits.http_body_bytes_max`, connections by `limits.connections_max`.

use super::{ApiContext, OpenConnection};
use crate::replica::SubmitOutcome;
use crate::telemetry::{encode_registry, reject_reason, RequestKind, METRICS_CONTENT_TYPE};
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use client::api::{ApiError, Reply, PULSES_PER_QUERY_MAX};
use primitives::{Digest, PulseNumber, Request};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// A running HTTP server.
#[derive(Debug)]
pub struct HttpServer {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// Ends after [`ApiContext::shut_down`] once the connections closed
    /// (or the shutdown grace ran out).
    pub task: JoinHandle<()>,
}

#[derive(Clone)]
struct AppState {
    ctx: Arc<ApiContext>,
    registry: Arc<Registry>,
}

/// The JSON body of every error.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// The kind (the `reason` label of `qlock_api_rejected_total`).
    pub error: String,
    /// What happened, for people.
    pub message: String,
}

/// The JSON answer to a submit.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SubmitAnswer {
    /// Executed and certified.
    Replied {
        /// The certified reply.
        reply: Reply,
    },
    /// All-`async`: accepted for ordering, not certified.
    Accepted {
        /// The request digest.
        request: Digest,
    },
}

/// An [`ApiError`] as an HTTP response.
struct HttpError(ApiError);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: reject_reason(&self.0).to_string(),
            message: self.0.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

/// The router, for [`serve`] and for tests that drive it directly.
fn router(ctx: Arc<ApiContext>, registry: Arc<Registry>) -> Router {
    let body_max = ctx.limits.http_body_bytes_max;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/submit", post(submit))
        .route("/v1/pulses", get(pulses))
        .route("/v1/proof/{request}/{op_index}", get(proof))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_max))
        .with_state(AppState { ctx, registry })
}

/// Binds `addr` and serves HTTP until `ctx` shuts down.
pub async fn serve(
    addr: SocketAddr,
    ctx: Arc<ApiContext>,
    registry: Arc<Registry>,
) -> std::io::Result<HttpServer> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    tracing::info!(%local_addr, "HTTP API listening");
    let capped = CappedListener {
        inner: listener,
        slots: Arc::new(Semaphore::new(ctx.limits.connections_max)),
        ctx: ctx.clone(),
    };
    let app = router(ctx.clone(), registry);
    let task = tokio::spawn(async move {
        let stop = ctx.clone();
        let server =
            axum::serve(capped, app).with_graceful_shutdown(async move { stop.stopped().await });
        // Idle keep-alive connections are closed by the graceful shutdown;
        // a client that keeps one busy past the grace is cut off.
        let grace = ctx.timeouts.shutdown();
        let deadline = async {
            ctx.stopped().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "HTTP server failed");
                }
            }
            () = deadline => tracing::warn!("HTTP connections cut at the shutdown deadline"),
        }
    });
    Ok(HttpServer { local_addr, task })
}

async fn healthz(State(s): State<AppState>) -> Response {
    if s.ctx.serving() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let text = encode_registry(&s.registry);
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
}

async fn status(State(s): State<AppState>) -> Response {
    s.ctx.metrics.request(RequestKind::Status);
    match s.ctx.handle.status().await {
        Ok(report) => Json(report).into_response(),
        Err(e) => HttpError(s.ctx.reject(e)).into_response(),
    }
}

async fn submit(State(s): State<AppState>, body: Body) -> Response {
    let ctx = &s.ctx;
    let limit = ctx.limits.http_body_bytes_max;
    // Read under the bound ourselves, so an oversized body gets the typed
    // error body rather than axum's plain text.
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            ctx.metrics.request(RequestKind::Malformed);
            let e = ApiError::Oversized(format!("body over {limit} bytes (or cut off)"));
            return HttpError(ctx.reject(e)).into_response();
        }
    };
    let request: Request = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => {
            ctx.metrics.request(RequestKind::Malformed);
            let e = ApiError::Malformed(format!("body is not a JSON request: {e}"));
            return HttpError(ctx.reject(e)).into_response();
        }
    };
    match ctx.submit(request).await {
        Ok(SubmitOutcome::Replied(reply)) => Json(SubmitAnswer::Replied {
            reply: ctx.outgoing_reply(reply),
        })
        .into_response(),
        Ok(SubmitOutcome::Accepted(request)) => {
            Json(SubmitAnswer::Accepted { request }).into_response()
        }
        // Already counted by ApiContext::submit.
        Err(e) => HttpError(e).into_response(),
    }
}

/// `?from=P&count=C`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PulsesQuery {
    from: u64,
    count: Option<u32>,
}

async fn pulses(
    State(s): State<AppState>,
    query: Result<Query<PulsesQuery>, QueryRejection>,
) -> Response {
    let ctx = &s.ctx;
    ctx.metrics.request(RequestKind::Pulses);
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            let e = ApiError::Malformed(format!("query: {}", e.body_text()));
            return HttpError(ctx.reject(e)).into_response();
        }
    };
    let count = query
        .count
        .unwrap_or(PULSES_PER_QUERY_MAX)
        .min(PULSES_PER_QUERY_MAX);
    match ctx.handle.pulses(PulseNumber(query.from), count).await {
        Ok(pulses) => Json(pulses).into_response(),
        Err(e) => HttpError(ctx.reject(e)).into_response(),
    }
}

async fn proof(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let ctx = &s.ctx;
    ctx.metrics.request(RequestKind::ReceiptProof);
    let parsed = path
        .map_err(|e| ApiError::Malformed(e.body_text()))
        .and_then(|Path((request, op_index))| {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(&request, &mut digest)
                .map_err(|_| ApiError::Malformed("request digest is not 64 hex digits".into()))?;
            let op_index: u32 = op_index
                .parse()
                .map_err(|_| ApiError::Malformed("op index is not a u32".into()))?;
            Ok((Digest(digest), op_index))
        });
    let (request, op_index) = match parsed {
        Ok(p) => p,
        Err(e) => return HttpError(ctx.reject(e)).into_response(),
    };
    match ctx.handle.receipt_proof(request, op_index).await {
        Ok(proof) => Json(proof).into_response(),
        Err(e) => HttpError(ctx.reject(e)).into_response(),
    }
}

async fn not_found() -> Response {
    HttpError(ApiError::NotFound).into_response()
}

// ---------------------------------------------------------------------------
// Connection cap

/// A listener that holds at most `connections_max` connections open;
/// beyond that it answers 503 and closes (counted).
struct CappedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    ctx: Arc<ApiContext>,
}

/// A connection holding one slot of [`CappedListener`].
struct CappedStream {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    _open: OpenConnection,
}

/// The whole answer to a connection over the limit.
fn refused_response() -> String {
    let body = r#"{"error":"overloaded","message":"connection limit reached"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

impl axum::serve::Listener for CappedListener {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CappedStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => match self.slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let _ = stream.set_nodelay(true);
                        let open = OpenConnection::new(self.ctx.clone());
                        return (
                            CappedStream {
                                stream,
                                _slot: slot,
                                _open: open,
                            },
                            addr,
                        );
                    }
                    Err(_) => {
                        self.ctx.metrics.connections_refused.inc();
                        self.ctx
                            .reject(ApiError::Overloaded("connection limit reached".into()));
                        let _ = stream.try_write(refused_response().as_bytes());
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for CappedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

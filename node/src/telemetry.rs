//! Logs and metrics: the `tracing` subscriber (human by default, JSON with
//! `--log-json`, filtered by `RUST_LOG`), the process-wide prometheus
//! [`Registry`], and the client API's own counters.
//!
//! The registry has no prefix; each layer registers under its own
//! (`qlock_api_*` here, `qlock_net_*` and the runtime's elsewhere), so the
//! exposition reads like one system.

use client::api::ApiError;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

/// The content type of [`encode_registry`]'s output.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Starts logging to stderr. `RUST_LOG` filters (default `info`). Fails
/// only if a subscriber is already installed.
pub fn init_logging(json: bool) -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| e.to_string())
}

/// The registry every layer registers into.
pub fn new_registry() -> Registry {
    Registry::default()
}

/// The OpenMetrics text of `registry`.
pub fn encode_registry(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; a failure would be a bug in a
    // metric's encoder.
    encode(&mut out, registry).expect("metrics encode into a String");
    out
}

type KindLabel = [(&'static str, &'static str); 1];

/// What a client asked for (the `kind` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A signed request to order.
    Submit,
    /// The replica's status.
    Status,
    /// Pulse headers.
    Pulses,
    /// A receipt's pulse proof.
    ReceiptProof,
    /// A frame that did not decode.
    Malformed,
}

impl RequestKind {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            RequestKind::Submit => "submit",
            RequestKind::Status => "status",
            RequestKind::Pulses => "pulses",
            RequestKind::ReceiptProof => "receipt_proof",
            RequestKind::Malformed => "malformed",
        }
    }
}

/// The `reason` label of a rejection.
pub fn reject_reason(error: &ApiError) -> &'static str {
    match error {
        ApiError::Malformed(_) => "malformed",
        ApiError::Oversized(_) => "oversized",
        ApiError::BadSignature => "bad_signature",
        ApiError::WrongCluster => "wrong_cluster",
        ApiError::Stale => "stale",
        ApiError::Overloaded(_) => "overloaded",
        ApiError::Timeout => "timeout",
        ApiError::NotFound => "not_found",
        ApiError::Unavailable(_) => "unavailable",
    }
}

/// The client API's counters (shared handles: clone freely).
#[derive(Clone, Debug, Default)]
pub struct ApiMetrics {
    requests: Family<KindLabel, Counter>,
    rejected: Family<KindLabel, Counter>,
    /// Open client connections (TCP and HTTP).
    pub connections: Gauge,
    /// Connections refused at `limits.connections_max`.
    pub connections_refused: Counter,
    /// Event subscriptions refused at
    /// `limits.subscriptions_per_connection_max`.
    pub subscriptions_refused: Counter,
    /// Signature batches verified.
    pub verify_batches: Counter,
    /// Requests whose signature was checked.
    pub verified: Counter,
}

impl ApiMetrics {
    /// Registers every metric as `qlock_api_*`.
    pub fn register(&self, registry: &mut Registry) {
        let api = registry.sub_registry_with_prefix("qlock_api");
        api.register(
            "requests",
            "Client requests received, by kind",
            self.requests.clone(),
        );
        api.register(
            "rejected",
            "Client requests refused, by reason",
            self.rejected.clone(),
        );
        api.register(
            "connections",
            "Open client connections",
            self.connections.clone(),
        );
        api.register(
            "connections_refused",
            "Client connections refused at the connection limit",
            self.connections_refused.clone(),
        );
        api.register(
            "subscriptions_refused",
            "Event subscriptions refused at the per-connection limit",
            self.subscriptions_refused.clone(),
        );
        api.register(
            "verify_batches",
            "Batches of client request signatures verified",
            self.verify_batches.clone(),
        );
        api.register(
            "verified",
            "Client request signatures verified",
            self.verified.clone(),
        );
    }

    /// Counts one request of `kind`.
    pub fn request(&self, kind: RequestKind) {
        self.requests.get_or_create(&[("kind", kind.label())]).inc();
    }

    /// Counts one rejection.
    pub fn rejected(&self, error: &ApiError) {
        self.rejected
            .get_or_create(&[("reason", reject_reason(error))])
            .inc();
    }

    /// Rejections counted for `reason` so far.
    pub fn rejected_count(&self, reason: &'static str) -> u64 {
        self.rejected.get_or_create(&[("reason", reason)]).get()
    }

    /// Requests of `kind` counted so far.
    pub fn request_count(&self, kind: RequestKind) -> u64 {
        self.requests.get_or_create(&[("kind", kind.label())]).get()
    }
}

//! The client's errors. Each message says what to do about it.

use crate::api::ApiError;
use crate::verify::VerifyReplyError;
use primitives::ReplicaId;
use qlock::OpError;
use std::fmt;

/// What went wrong with one replica during one call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// The TCP connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection broke (or the replica sent bytes that are not a
    /// frame) before the answer came.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// No answer within the request timeout.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The replica refused the frame.
    #[error("refused: {0}")]
    Rejected(ApiError),
    /// The answer did not verify: the replica is faulty or lying.
    #[error("answer does not verify: {0}")]
    Unverifiable(VerifyReplyError),
}

/// One failed attempt: which replica, what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaFailure {
    /// The replica tried.
    pub replica: ReplicaId,
    /// What went wrong.
    pub error: ReplicaError,
}

impl fmt::Display for ReplicaFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replica {}: {}", self.replica.0, self.error)
    }
}

/// A list of failures, printed one per replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failures(pub Vec<ReplicaFailure>);

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No replica gave a verifiable answer within the attempts allowed.
    #[error("no replica gave a verifiable answer ({failures}); check that the cluster is running and that the cluster file matches it, then retry — a retried submit is not executed twice")]
    Unavailable {
        /// Every attempt, in order.
        failures: Failures,
    },
    /// At least f + 1 replicas (so at least one correct one) refused the
    /// request for the same reason.
    #[error("the cluster refused the request: {error}; {}", advice(error))]
    Rejected {
        /// Why.
        error: ApiError,
    },
    /// The op was executed and refused by the state machine (certified).
    #[error("operation refused: {0}")]
    Op(#[from] OpError),
    /// An argument is outside what the client or the cluster accepts.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The certified result has the wrong shape for the op (a bug in the
    /// replicas or a version mismatch between client and cluster).
    #[error("unexpected result for {op}: {got}; client and cluster versions may differ")]
    UnexpectedResult {
        /// The op.
        op: &'static str,
        /// What came back.
        got: String,
    },
    /// The session's lease ran out (or was lost) on the client's clock.
    #[error("session lease lost; create a new session and acquire again")]
    LeaseLost,
    /// The client was shut down.
    #[error("client closed")]
    Closed,
    /// The cluster file is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The key file is unusable.
    #[error("{0} (create one with `qlock keygen --out FILE`)")]
    Key(#[from] primitives::keys::KeyFileError),
}

fn advice(error: &ApiError) -> &'static str {
    match error {
        ApiError::BadSignature => "the key file or the client build is broken",
        ApiError::WrongCluster => "the cluster file does not describe this cluster",
        ApiError::Stale => {
            "another process may be using this key, or the clock went back: use one key per process"
        }
        ApiError::Malformed(_) | ApiError::Oversized(_) => {
            "send fewer or smaller ops, or upgrade the client to the cluster's version"
        }
        ApiError::NotFound => "it is not (or no longer) stored",
        ApiError::Overloaded(_) | ApiError::Timeout | ApiError::Unavailable(_) => "retry later",
    }
}

impl ClientError {
    /// The CLI exit code: 1 an op refused by the cluster, 2 usage or
    /// configuration, 3 cluster unreachable or unverifiable.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Op(_) | ClientError::LeaseLost => 1,
            ClientError::Rejected { error } => match error {
                ApiError::NotFound => 1,
                ApiError::Overloaded(_) | ApiError::Timeout | ApiError::Unavailable(_) => 3,
                _ => 2,
            },
            ClientError::InvalidArgument(_) | ClientError::Config(_) | ClientError::Key(_) => 2,
            ClientError::Unavailable { .. }
            | ClientError::UnexpectedResult { .. }
            | ClientError::Closed => 3,
        }
    }

    /// A short machine-readable kind, for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Unavailable { .. } => "unavailable",
            ClientError::Rejected { .. } => "rejected",
            ClientError::Op(_) => "op_refused",
            ClientError::InvalidArgument(_) => "invalid_argument",
            ClientError::UnexpectedResult { .. } => "unexpected_result",
            ClientError::LeaseLost => "lease_lost",
            ClientError::Closed => "closed",
            ClientError::Config(_) => "config",
            ClientError::Key(_) => "key",
        }
    }
}

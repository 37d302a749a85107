//! Just enough HTTP/1.0 to read a replica's `/healthz`, `/v1/status` and
//! `/metrics`, and to pick values out of the Prometheus text. The harness
//! talks only to its own replicas on loopback, so a tiny bounded client
//! beats another dependency.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response read (a replica's metrics are a few tens of kB).
pub const RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connect, write or read failed.
    #[error("{addr}: {source}")]
    Io {
        /// The server.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No complete answer within the bound.
    #[error("{addr}: no answer within {millis} ms")]
    Timeout {
        /// The server.
        addr: SocketAddr,
        /// The bound.
        millis: u128,
    },
    /// The answer is not an HTTP response, or too large.
    #[error("{addr}: bad response: {reason}")]
    BadResponse {
        /// The server.
        addr: SocketAddr,
        /// What is wrong with it.
        reason: String,
    },
}

/// A response: status code and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// `GET path` from `addr`, bounded by `timeout` overall. HTTP/1.0 with
/// `Connection: close`, so the body ends at EOF (never chunked).
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    match tokio::time::timeout(timeout, get_unbounded(addr, path)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout {
            addr,
            millis: timeout.as_millis(),
        }),
    }
}

async fn get_unbounded(addr: SocketAddr, path: &str) -> Result<Response, HttpError> {
    let io = |source| HttpError::Io { addr, source };
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut bytes = Vec::new();
    let mut limited = stream.take(RESPONSE_BYTES_MAX as u64 + 1);
    limited.read_to_end(&mut bytes).await.map_err(io)?;
    let bad = |reason: String| HttpError::BadResponse { addr, reason };
    if bytes.len() > RESPONSE_BYTES_MAX {
        return Err(bad(format!("over {RESPONSE_BYTES_MAX} bytes")));
    }
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no end of headers".into()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad(format!("status line {:?}", head.lines().next())))?;
    Ok(Response {
        status,
        body: body.to_string(),
    })
}

/// The value of the sample `name` (exactly: no labels) in Prometheus or
/// OpenMetrics text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    samples(text, name)
        .find(|(labels, _)| labels.is_empty())
        .map(|(_, v)| v)
}

/// The sum of every sample of `name` whatever its labels (a counter
/// family's total).
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = false;
    let sum = samples(text, name)
        .inspect(|_| found = true)
        .map(|(_, v)| v)
        .sum();
    found.then_some(sum)
}

/// `(labels, value)` of every sample named exactly `name`.
fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(inner) => inner.split_once('}')?,
            None => ("", rest),
        };
        // `name_total` must not match `name`: a sample's name ends at a
        // label set or a space.
        let value = rest.strip_prefix(' ')?.split_whitespace().next()?;
        Some((labels, value.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE qlock_view gauge\n\
        qlock_view 3\n\
        qlock_view_changes_total 2\n\
        qlock_rejected_inputs_total{reason=\"a\"} 4\n\
        qlock_rejected_inputs_total{reason=\"b\"} 5\n\
        # EOF\n";

    #[test]
    fn a_metric_is_found_by_its_exact_name() {
        assert_eq!(metric(TEXT, "qlock_view"), Some(3.0));
        assert_eq!(metric(TEXT, "qlock_view_changes_total"), Some(2.0));
        assert_eq!(metric(TEXT, "qlock_missing"), None);
    }

    #[test]
    fn a_labelled_family_sums_over_its_labels() {
        assert_eq!(metric_sum(TEXT, "qlock_rejected_inputs_total"), Some(9.0));
        assert_eq!(metric(TEXT, "qlock_rejected_inputs_total"), None);
        assert_eq!(metric_sum(TEXT, "qlock_nothing"), None);
    }
}

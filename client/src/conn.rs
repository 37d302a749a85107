//! One TCP connection to one replica's gateway: a writer task, a reader
//! task, and a table of calls waiting for their answer by frame id. Many
//! calls share the connection at once (pipelining); pushed events go to
//! the client's event handler.

use crate::api::{decode_frame, encode_frame, ClientFrame, Event, ServerFrame};
use crate::error::ReplicaError;
use primitives::ReplicaId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Frames queued for one connection's writer at most.
pub(crate) const OUTBOUND_FRAMES_MAX: usize = 1024;

/// Calls waiting on one connection at most (a replica gateway's own
/// default is 256 per connection).
pub(crate) const PENDING_CALLS_MAX: usize = 512;

/// Where pushed events go.
pub(crate) type EventSink = Arc<dyn Fn(ReplicaId, Event) + Send + Sync>;

type Pending = Arc<Mutex<BTreeMap<u64, oneshot::Sender<ServerFrame>>>>;

/// A live connection. Dropping the last handle stops its tasks.
pub(crate) struct Connection {
    replica: ReplicaId,
    outbound: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    closed: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Connects within `timeout`.
    pub(crate) async fn open(
        replica: ReplicaId,
        addr: SocketAddr,
        timeout: Duration,
        events: EventSink,
    ) -> Result<Connection, ReplicaError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ReplicaError::Connect(format!("{addr}: no answer within {timeout:?}")))?
            .map_err(|e| ReplicaError::Connect(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (mut read_half, mut write_half) = stream.into_split();
        let (outbound, mut rx) = mpsc::channel::<Vec<u8>>(OUTBOUND_FRAMES_MAX);
        let pending: Pending = Arc::new(Mutex::new(BTreeMap::new()));
        let closed = Arc::new(AtomicBool::new(false));
        {
            let closed = closed.clone();
            tokio::spawn(async move {
                while let Some(bytes) = rx.recv().await {
                    if write_half.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                closed.store(true, Ordering::Release);
            });
        }
        let reader = {
            let pending = pending.clone();
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
                'read: loop {
                    match read_half.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    loop {
                        match decode_frame::<ServerFrame>(&mut buf) {
                            Ok(Some(frame)) => dispatch(replica, frame, &pending, &events),
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(replica = replica.0, "bad frame from replica: {e}");
                                break 'read;
                            }
                        }
                    }
                }
                closed.store(true, Ordering::Release);
                // Dropping the senders wakes every waiting call.
                pending.lock().expect("pending lock").clear();
            })
        };
        Ok(Connection {
            replica,
            outbound,
            pending,
            closed,
            reader,
        })
    }

    /// Whether the connection is known to be broken.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.outbound.is_closed()
    }

    /// Sends `frame` (whose id is `id`) and waits for the answer with that
    /// id. The caller bounds the wait.
    pub(crate) async fn call(
        &self,
        id: u64,
        frame: &ClientFrame,
    ) -> Result<ServerFrame, ReplicaError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("pending lock");
            if pending.len() >= PENDING_CALLS_MAX {
                return Err(ReplicaError::Rejected(crate::api::ApiError::Overloaded(
                    format!("{PENDING_CALLS_MAX} calls already waiting on this connection"),
                )));
            }
            assert!(pending.insert(id, tx).is_none(), "frame id reused");
        }
        let _guard = Unregister {
            pending: &self.pending,
            id,
        };
        if self.is_closed() {
            return Err(ReplicaError::ConnectionLost("closed".into()));
        }
        let mut bytes = Vec::new();
        encode_frame(frame, &mut bytes);
        self.outbound
            .send(bytes)
            .await
            .map_err(|_| ReplicaError::ConnectionLost("writer stopped".into()))?;
        rx.await.map_err(|_| {
            ReplicaError::ConnectionLost(format!(
                "replica {} closed the connection",
                self.replica.0
            ))
        })
    }
}

/// Removes a call's slot however the call ends (answer, timeout, drop).
struct Unregister<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&self.id);
        }
    }
}

fn dispatch(replica: ReplicaId, frame: ServerFrame, pending: &Pending, events: &EventSink) {
    let id = match &frame {
        ServerFrame::Event(event) => {
            events(replica, event.clone());
            return;
        }
        ServerFrame::Replied { id, .. }
        | ServerFrame::Accepted { id, .. }
        | ServerFrame::Rejected { id, .. }
        | ServerFrame::Status { id, .. }
        | ServerFrame::Pulses { id, .. }
        | ServerFrame::ReceiptProof { id, .. } => *id,
    };
    let slot = pending.lock().expect("pending lock").remove(&id);
    match slot {
        Some(tx) => {
            let _ = tx.send(frame);
        }
        None => tracing::debug!(replica = replica.0, id, "answer to no waiting call"),
    }
}

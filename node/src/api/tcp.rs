//! The binary client protocol server: length-prefixed `client::api`
//! frames over TCP, pipelined, with events pushed for every client key that
//! submitted a valid signed request on the connection.
//!
//! Bounds: `limits.connections_max` connections (more are refused with an
//! `Overloaded` frame and counted); a read buffer that never holds more
//! than one partial frame (≤ `CLIENT_FRAME_BYTES_MAX`) plus one read;
//! `limits.in_flight_per_connection_max` frames being answered per
//! connection (past it the connection is not read: TCP back-pressure);
//! `limits.outbound_frames_per_connection_max` answers queued for the
//! writer; `limits.subscriptions_per_connection_max` client keys.
//!
//! A frame whose length prefix is over `CLIENT_FRAME_BYTES_MAX` cannot be
//! skipped safely, so it is answered `Oversized` and the connection
//! closed. A frame within that bound but longer than any valid request,
//! or one that does not decode, is answered and skipped: the connection
//! keeps serving.

use super::{byzantine, ApiContext, OpenConnection};
use crate::replica::SubmitOutcome;
use crate::telemetry::RequestKind;
use client::api::{
    decode_frame, encode_frame, ApiError, ClientFrame, FrameError, ServerFrame,
    CLIENT_FRAME_BYTES_MAX, PULSES_PER_QUERY_MAX,
};
use primitives::ClientId;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

/// Bytes a frame adds around a request (variant tag, id, length prefix):
/// a frame longer than `request_bytes_max` plus this is refused unread.
pub const FRAME_OVERHEAD_BYTES_MAX: usize = 64;

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Answers coalesced into one socket write, at most (bytes).
const WRITE_COALESCE_BYTES_MAX: usize = 256 * 1024;

/// A running TCP server.
#[derive(Debug)]
pub struct TcpServer {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// Ends after [`ApiContext::shut_down`] once every connection closed
    /// (or the shutdown grace ran out).
    pub task: JoinHandle<()>,
}

/// Binds `addr` and serves the client protocol until `ctx` shuts down.
pub async fn serve(addr: SocketAddr, ctx: Arc<ApiContext>) -> std::io::Result<TcpServer> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    tracing::info!(%local_addr, "client protocol listening");
    let task = tokio::spawn(accept_loop(listener, ctx));
    Ok(TcpServer { local_addr, task })
}

async fn accept_loop(listener: TcpListener, ctx: Arc<ApiContext>) {
    let slots = Arc::new(Semaphore::new(ctx.limits.connections_max));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = ctx.stopped() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        connections.spawn(connection(stream, ctx.clone(), slot));
                    }
                    Err(_) => refuse(&stream, &ctx, peer),
                },
                Err(e) => {
                    // Out of descriptors or the like: back off briefly
                    // rather than spin.
                    tracing::warn!(error = %e, "client accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(ctx.timeouts.shutdown(), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "closing client connections at the shutdown deadline"
        );
        connections.shutdown().await;
    }
}

/// Tells a connection over the limit why, without waiting on it (a
/// best-effort non-blocking write), and closes it.
fn refuse(stream: &TcpStream, ctx: &ApiContext, peer: SocketAddr) {
    ctx.metrics.connections_refused.inc();
    let error = ctx.reject(ApiError::Overloaded("connection limit reached".into()));
    tracing::debug!(%peer, "client connection refused at the limit");
    let mut bytes = Vec::new();
    encode_frame(&ServerFrame::Rejected { id: 0, error }, &mut bytes);
    let _ = stream.try_write(&bytes);
}

/// Per-connection event subscriptions.
#[derive(Debug, Default)]
struct Subscriptions {
    clients: BTreeSet<ClientId>,
    forwarders: Vec<AbortHandle>,
}

struct Connection {
    ctx: Arc<ApiContext>,
    out: mpsc::Sender<ServerFrame>,
    subscriptions: Mutex<Subscriptions>,
}

async fn connection(stream: TcpStream, ctx: Arc<ApiContext>, _slot: OwnedSemaphorePermit) {
    let _open = OpenConnection::new(ctx.clone());
    // Small frames, answered at once: Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (out, out_rx) = mpsc::channel(ctx.limits.outbound_frames_per_connection_max);
    let writer = tokio::spawn(write_loop(writer, out_rx));
    let conn = Arc::new(Connection {
        ctx: ctx.clone(),
        out,
        subscriptions: Mutex::new(Subscriptions::default()),
    });
    let in_flight_max = ctx.limits.in_flight_per_connection_max;
    let in_flight = Arc::new(Semaphore::new(in_flight_max));
    read_loop(reader, &conn, &in_flight).await;
    // Answer what was asked before the client stopped sending (a client
    // may half-close after pipelining); the event loop bounds every wait.
    let all = u32::try_from(in_flight_max).unwrap_or(u32::MAX);
    let _ = in_flight.acquire_many(all).await;
    let forwarders = std::mem::take(
        &mut conn
            .subscriptions
            .lock()
            .expect("subscriptions lock")
            .forwarders,
    );
    for forwarder in forwarders {
        forwarder.abort();
    }
    drop(conn);
    let _ = writer.await;
}

/// What the front of the read buffer holds.
enum Next {
    /// Not a whole frame yet.
    More,
    /// A frame to answer.
    Frame(ClientFrame),
    /// A frame that was skipped; answer this.
    Refused(ApiError),
    /// A length prefix over the hard bound: answer and close.
    Fatal(ApiError),
}

fn next_frame(buf: &mut Vec<u8>, frame_bytes_max: usize) -> Next {
    if buf.len() < 4 {
        return Next::More;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > frame_bytes_max && len <= CLIENT_FRAME_BYTES_MAX {
        // Longer than any valid request, yet safely skippable.
        if buf.len() < 4 + len {
            return Next::More;
        }
        buf.drain(..4 + len);
        return Next::Refused(ApiError::Oversized(format!(
            "frame of {len} bytes, the limit is {frame_bytes_max}"
        )));
    }
    match decode_frame::<ClientFrame>(buf) {
        Ok(None) => Next::More,
        Ok(Some(frame)) => Next::Frame(frame),
        Err(FrameError::Oversized(len)) => Next::Fatal(ApiError::Oversized(format!(
            "frame of {len} bytes, the limit is {CLIENT_FRAME_BYTES_MAX}"
        ))),
        Err(FrameError::Codec(e)) => Next::Refused(ApiError::Malformed(e.to_string())),
    }
}

async fn read_loop(mut reader: OwnedReadHalf, conn: &Arc<Connection>, in_flight: &Arc<Semaphore>) {
    let ctx = &conn.ctx;
    let frame_bytes_max = (ctx.request_limits.request_bytes_max + FRAME_OVERHEAD_BYTES_MAX)
        .min(CLIENT_FRAME_BYTES_MAX);
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    loop {
        loop {
            match next_frame(&mut buf, frame_bytes_max) {
                Next::More => break,
                Next::Frame(frame) => {
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        return;
                    };
                    let conn = conn.clone();
                    tokio::spawn(async move {
                        let answer = answer(&conn, frame).await;
                        // The writer is gone only if the socket failed.
                        let _ = conn.out.send(answer).await;
                        drop(permit);
                    });
                }
                Next::Refused(error) => {
                    ctx.metrics.request(RequestKind::Malformed);
                    let error = ctx.reject(error);
                    if conn
                        .out
                        .send(ServerFrame::Rejected { id: 0, error })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Next::Fatal(error) => {
                    ctx.metrics.request(RequestKind::Malformed);
                    let error = ctx.reject(error);
                    let _ = conn.out.send(ServerFrame::Rejected { id: 0, error }).await;
                    return;
                }
            }
        }
        // A connection that carried a large frame should not keep its
        // buffer once idle.
        if buf.is_empty() && buf.capacity() > 4 * READ_CHUNK_BYTES {
            buf = Vec::with_capacity(READ_CHUNK_BYTES);
        }
        buf.reserve(READ_CHUNK_BYTES);
        tokio::select! {
            () = ctx.stopped() => return,
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

async fn write_loop(mut writer: OwnedWriteHalf, mut frames: mpsc::Receiver<ServerFrame>) {
    let mut buf = Vec::new();
    while let Some(frame) = frames.recv().await {
        buf.clear();
        encode_frame(&frame, &mut buf);
        // Coalesce whatever else is ready into the same write.
        while buf.len() < WRITE_COALESCE_BYTES_MAX {
            match frames.try_recv() {
                Ok(frame) => encode_frame(&frame, &mut buf),
                Err(_) => break,
            }
        }
        if writer.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

async fn answer(conn: &Arc<Connection>, frame: ClientFrame) -> ServerFrame {
    let ctx = &conn.ctx;
    match frame {
        ClientFrame::Submit { id, request } => {
            ctx.metrics.request(RequestKind::Submit);
            match submit(conn, *request).await {
                Ok(SubmitOutcome::Replied(reply)) => ServerFrame::Replied {
                    id,
                    reply: ctx.outgoing_reply(reply),
                },
                Ok(SubmitOutcome::Accepted(request)) => ServerFrame::Accepted { id, request },
                Err(error) => ServerFrame::Rejected {
                    id,
                    error: ctx.reject(error),
                },
            }
        }
        ClientFrame::Status { id } => {
            ctx.metrics.request(RequestKind::Status);
            match ctx.handle.status().await {
                Ok(status) => ServerFrame::Status { id, status },
                Err(error) => ServerFrame::Rejected {
                    id,
                    error: ctx.reject(error),
                },
            }
        }
        ClientFrame::Pulses { id, from, count } => {
            ctx.metrics.request(RequestKind::Pulses);
            match ctx
                .handle
                .pulses(from, count.min(PULSES_PER_QUERY_MAX))
                .await
            {
                Ok(pulses) => ServerFrame::Pulses { id, pulses },
                Err(error) => ServerFrame::Rejected {
                    id,
                    error: ctx.reject(error),
                },
            }
        }
        ClientFrame::ReceiptProof {
            id,
            request,
            op_index,
        } => {
            ctx.metrics.request(RequestKind::ReceiptProof);
            match ctx.handle.receipt_proof(request, op_index).await {
                Ok(proof) => ServerFrame::ReceiptProof {
                    id,
                    proof: Box::new(proof),
                },
                Err(error) => ServerFrame::Rejected {
                    id,
                    error: ctx.reject(error),
                },
            }
        }
    }
}

async fn submit(
    conn: &Arc<Connection>,
    request: primitives::Request,
) -> Result<SubmitOutcome, ApiError> {
    let request = conn.ctx.check(request).await?;
    // Subscribe before ordering, so no event of this request is missed.
    subscribe(conn, request.body.client);
    conn.ctx.handle.submit(request).await
}

/// Starts pushing `client`'s events to this connection, once per key.
fn subscribe(conn: &Arc<Connection>, client: ClientId) {
    let ctx = &conn.ctx;
    let mut subs = conn.subscriptions.lock().expect("subscriptions lock");
    if subs.clients.contains(&client) {
        return;
    }
    if subs.clients.len() >= ctx.limits.subscriptions_per_connection_max {
        ctx.metrics.subscriptions_refused.inc();
        return;
    }
    // On Overloaded the next valid request retries; the submit itself
    // reports the overload.
    let Ok(mut events) = ctx.handle.subscribe(client) else {
        return;
    };
    subs.clients.insert(client);
    let out = conn.out.clone();
    // The liar alone, not the context: a forwarder can outlive its
    // connection (it ends when the replica drops the subscription).
    let liar = ctx.liar.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let event = byzantine::outgoing_event(liar.as_ref(), event);
            if out.send(ServerFrame::Event(event)).await.is_err() {
                return;
            }
        }
    });
    subs.forwarders.push(forwarder.abort_handle());
}

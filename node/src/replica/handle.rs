//! The replica runtime's front door: what the client API (TCP and HTTP)
//! may ask of the event loop. Commands travel on one bounded channel; the
//! loop answers each on its own oneshot, so a slow client never blocks it.

use client::api::{ApiError, Event, Reply, StatusReport};
use lockchain::{PulseCertificate, ReceiptPulseProof};
use primitives::{ClientId, Digest, PulseNumber, Request};
use tokio::sync::{mpsc, oneshot};

/// Commands queued for the event loop at most (client traffic beyond this
/// is refused with [`ApiError::Overloaded`], never buffered).
pub const COMMANDS_MAX: usize = 4096;

/// Events buffered per subscriber before the slowest are dropped (counted).
pub const EVENTS_PER_SUBSCRIBER_MAX: usize = 1024;

/// How a submit ended well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Executed and certified (f + 1 signatures, 2f + 1 for `sync`).
    Replied(Reply),
    /// Every op is an `async` queue submit: accepted for ordering, not
    /// certified.
    Accepted(Digest),
}

/// One unit of work for the event loop.
#[derive(Debug)]
pub enum Command {
    /// Order a request whose shape and signature the gateway checked.
    Submit {
        /// The request.
        request: Box<Request>,
        /// Where the outcome goes.
        answer: oneshot::Sender<Result<SubmitOutcome, ApiError>>,
    },
    /// The replica's view of the cluster.
    Status {
        /// Where the report goes.
        answer: oneshot::Sender<StatusReport>,
    },
    /// Push this client's events to `events` until it is closed.
    Subscribe {
        /// The client.
        client: ClientId,
        /// The subscriber's channel (bounded by [`EVENTS_PER_SUBSCRIBER_MAX`]).
        events: mpsc::Sender<Event>,
    },
    /// Certified pulse headers.
    Pulses {
        /// The first pulse.
        from: PulseNumber,
        /// How many (the loop caps it).
        count: u32,
        /// Where they go.
        answer: oneshot::Sender<Vec<PulseCertificate>>,
    },
    /// A receipt's proof up to a certified pulse.
    ReceiptProof {
        /// The request.
        request: Digest,
        /// The op.
        op_index: u32,
        /// Where it goes.
        answer: oneshot::Sender<Result<ReceiptPulseProof, ApiError>>,
    },
}

/// A cloneable handle on a running replica's event loop.
#[derive(Clone, Debug)]
pub struct ReplicaHandle {
    commands: mpsc::Sender<Command>,
}

impl ReplicaHandle {
    /// A handle and the receiving end the event loop drains.
    pub fn channel() -> (ReplicaHandle, mpsc::Receiver<Command>) {
        let (commands, rx) = mpsc::channel(COMMANDS_MAX);
        (ReplicaHandle { commands }, rx)
    }

    fn enqueue(&self, command: Command) -> Result<(), ApiError> {
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                ApiError::Overloaded("replica command queue full".into())
            }
            mpsc::error::TrySendError::Closed(_) => ApiError::Unavailable("replica stopped".into()),
        })
    }

    /// Orders `request` and waits for its outcome (the event loop bounds
    /// the wait and answers [`ApiError::Timeout`]).
    pub async fn submit(&self, request: Request) -> Result<SubmitOutcome, ApiError> {
        let (answer, rx) = oneshot::channel();
        self.enqueue(Command::Submit {
            request: Box::new(request),
            answer,
        })?;
        rx.await
            .map_err(|_| ApiError::Unavailable("replica stopped".into()))?
    }

    /// The replica's status.
    pub async fn status(&self) -> Result<StatusReport, ApiError> {
        let (answer, rx) = oneshot::channel();
        self.enqueue(Command::Status { answer })?;
        rx.await
            .map_err(|_| ApiError::Unavailable("replica stopped".into()))
    }

    /// Subscribes to `client`'s events.
    pub fn subscribe(&self, client: ClientId) -> Result<mpsc::Receiver<Event>, ApiError> {
        let (events, rx) = mpsc::channel(EVENTS_PER_SUBSCRIBER_MAX);
        self.enqueue(Command::Subscribe { client, events })?;
        Ok(rx)
    }

    /// Certified pulse headers `from..from + count`.
    pub async fn pulses(
        &self,
        from: PulseNumber,
        count: u32,
    ) -> Result<Vec<PulseCertificate>, ApiError> {
        let (answer, rx) = oneshot::channel();
        self.enqueue(Command::Pulses {
            from,
            count,
            answer,
        })?;
        rx.await
            .map_err(|_| ApiError::Unavailable("replica stopped".into()))
    }

    /// The proof of op `op_index` of `request` up to a certified pulse.
    pub async fn receipt_proof(
        &self,
        request: Digest,
        op_index: u32,
    ) -> Result<ReceiptPulseProof, ApiError> {
        let (answer, rx) = oneshot::channel();
        self.enqueue(Command::ReceiptProof {
            request,
            op_index,
            answer,
        })?;
        rx.await
            .map_err(|_| ApiError::Unavailable("replica stopped".into()))?
    }
}

//! An in-process fake cluster for the client's tests: one real `qlock`
//! state machine, batches of one request each, receipts trees, batch
//! certificates and pulse certificates signed with real replica keys — and
//! gateways (tokio TCP servers on 127.0.0.1 speaking the client frames)
//! that answer honestly or lie in one chosen way.
#![allow(dead_code, missing_docs)]

use client::api::{
    decode_frame, encode_frame, ApiError, ClientFrame, Event, Reply, ServerFrame, StatusReport,
};
use client::{ClusterConfig, ReplicaEndpoint};
use lockchain::{
    BatchCertificate, PulseBatches, PulseCertificate, ReceiptBatchProof, ReceiptPulseProof,
    ReceiptTree,
};
use primitives::{
    ClientId, ClusterId, Digest, HlcTimestamp, KeyPair, Membership, PulseNumber, Receipt,
    ReplicaId, Request, RequestLimits, SeqNum, ViewNumber,
};
use qlock::{ClientEvent, Durability, Op, StateMachine};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Batches per pulse.
pub const PULSE_BATCHES: u64 = 4;

/// How a gateway answers submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Honest,
    /// Changes the result bytes after signing.
    ForgeResult,
    /// Corrupts the receipt's Merkle path.
    WrongPath,
    /// Sends one signature where f + 1 are needed.
    TooFewSignatures,
    /// Sends one replica's signature f + 1 times.
    DuplicateSigners,
    /// Signs a statement naming another cluster id.
    OtherCluster,
    /// Answers with the certified reply of another request.
    OtherRequest,
    /// Never answers.
    Silent,
}

struct Batch {
    receipts: Vec<Receipt>,
    tree: ReceiptTree,
}

struct State {
    machine: StateMachine,
    last_seq: u64,
    last_time: HlcTimestamp,
    batches: BTreeMap<u64, Batch>,
    pulses: Vec<PulseCertificate>,
    /// The last honest reply, for `OtherRequest`.
    last_reply: Option<Reply>,
    /// Connections and the client keys that submitted on them.
    subscribers: Vec<(BTreeSet<ClientId>, mpsc::Sender<ServerFrame>)>,
}

pub struct FakeCluster {
    pub keys: Vec<KeyPair>,
    pub membership: Membership,
    pub cluster: ClusterId,
    state: Mutex<State>,
    /// Requests executed (replays of a seen number included).
    pub executed: AtomicU64,
}

fn wall_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

impl FakeCluster {
    /// A cluster of `n` replicas with deterministic keys.
    pub fn new(n: usize) -> Arc<FakeCluster> {
        let keys: Vec<KeyPair> = (0..n)
            .map(|i| KeyPair::from_seed(&[i as u8 + 101; 32]))
            .collect();
        let membership =
            Membership::new("fake", keys.iter().map(KeyPair::public).collect()).unwrap();
        let cluster = membership.cluster_id();
        let cluster = Arc::new(FakeCluster {
            keys,
            cluster,
            membership,
            state: Mutex::new(State {
                machine: StateMachine::new(qlock::Config::default()),
                last_seq: 0,
                last_time: HlcTimestamp::from_micros(0),
                batches: BTreeMap::new(),
                pulses: Vec::new(),
                last_reply: None,
                subscribers: Vec::new(),
            }),
            executed: AtomicU64::new(0),
        });
        // Heartbeats: run due deadlines (wait timeouts) like a primary.
        let weak = Arc::downgrade(&cluster);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let Some(c) = weak.upgrade() else { return };
                let due = {
                    let s = c.state.lock().unwrap();
                    s.machine
                        .next_deadline()
                        .is_some_and(|d| d.wall <= wall_micros())
                };
                if due {
                    c.execute(None);
                }
            }
        });
        cluster
    }

    /// The client's cluster config, with replica `i` at `addrs[i]`.
    pub fn config(&self, addrs: &[SocketAddr]) -> ClusterConfig {
        let replicas = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| ReplicaEndpoint {
                id: ReplicaId(i as u16),
                key: self.keys[i].public(),
                client: *a,
            })
            .collect();
        ClusterConfig::new(self.membership.clone(), replicas)
    }

    /// The `cluster.toml` text for `addrs`.
    pub fn cluster_toml(&self, addrs: &[SocketAddr]) -> String {
        let mut out = String::from("[cluster]\nname = \"fake\"\n");
        for (i, a) in addrs.iter().enumerate() {
            out.push_str(&format!(
                "[[cluster.replicas]]\nid = {i}\npublic_key = \"{}\"\np2p = \"/ip4/127.0.0.1/tcp/1\"\nclient = \"{a}\"\n",
                self.keys[i].public().to_hex()
            ));
        }
        out
    }

    /// Executes one batch (one request, or a heartbeat), certifies it,
    /// pushes wait events, cuts a pulse every [`PULSE_BATCHES`]. Returns
    /// the seq and the batch's receipts.
    fn execute(&self, request: Option<&Request>) -> (SeqNum, Vec<Receipt>) {
        let mut s = self.state.lock().unwrap();
        s.last_seq += 1;
        let seq = SeqNum(s.last_seq);
        let now = HlcTimestamp::from_micros(wall_micros());
        let time = if now > s.last_time {
            now
        } else {
            s.last_time.next_tick()
        };
        s.last_time = time;
        let requests: Vec<Request> = request.into_iter().cloned().collect();
        let outcome = s.machine.execute_batch(seq, time, &requests);
        if request.is_some() {
            self.executed.fetch_add(1, Ordering::Relaxed);
        }
        let tree = ReceiptTree::new(&outcome.receipts);
        let certificate = self.certificate(seq, tree.root(), self.membership.n());
        // Events for waiters granted or ended in this batch.
        for event in &outcome.events {
            let (client, request, op_index) = match event {
                ClientEvent::Granted {
                    client,
                    request,
                    op_index,
                    ..
                }
                | ClientEvent::WaitEnded {
                    client,
                    request,
                    op_index,
                    ..
                } => (*client, *request, *op_index),
                _ => continue,
            };
            let Some(j) = outcome
                .receipts
                .iter()
                .position(|r| r.request == request && r.op_index == op_index)
            else {
                continue;
            };
            let proof = ReceiptBatchProof {
                receipt: outcome.receipts[j].clone(),
                receipt_path: tree.proof(j as u64).unwrap(),
                certificate: certificate.clone(),
            };
            for (keys, tx) in &s.subscribers {
                if keys.contains(&client) {
                    let _ = tx.try_send(ServerFrame::Event(Event::WaitOutcome(Box::new(
                        proof.clone(),
                    ))));
                }
            }
        }
        let receipts = outcome.receipts.clone();
        s.batches.insert(
            seq.0,
            Batch {
                receipts: outcome.receipts,
                tree,
            },
        );
        if seq.0.is_multiple_of(PULSE_BATCHES) {
            let first = seq.0 + 1 - PULSE_BATCHES;
            let roots: Vec<Digest> = (first..=seq.0).map(|q| s.batches[&q].tree.root()).collect();
            let batches = PulseBatches::new(SeqNum(first), &roots);
            let previous = s
                .pulses
                .last()
                .map(|p| p.header.digest())
                .unwrap_or(Digest::ZERO);
            let header = batches.header(
                self.cluster,
                PulseNumber(s.pulses.len() as u64 + 1),
                s.machine.state_digest(),
                previous,
                time,
            );
            let mut pulse = PulseCertificate::new(header);
            for i in 0..self.membership.quorum() {
                let sig = self.keys[i].sign(
                    primitives::Domain::Checkpoint,
                    &primitives::codec::encode(&header.checkpoint_statement()),
                );
                pulse
                    .add(&self.membership, ReplicaId(i as u16), sig)
                    .unwrap();
            }
            s.pulses.push(pulse);
        }
        (seq, receipts)
    }

    /// A certificate signed by replicas `0..signers`.
    fn certificate(&self, seq: SeqNum, root: Digest, signers: usize) -> BatchCertificate {
        let mut c = BatchCertificate::new(self.cluster, seq, root);
        for i in 0..signers {
            let sig = c.statement.sign(&self.keys[i]);
            c.add(&self.membership, ReplicaId(i as u16), sig).unwrap();
        }
        c
    }

    /// Executes `request` and builds the honest certified reply.
    fn honest_reply(&self, request: &Request) -> Reply {
        let digest = request.digest();
        let (seq, _) = self.execute(Some(request));
        let s = self.state.lock().unwrap();
        let batch = &s.batches[&seq.0];
        let certificate = self.certificate(seq, batch.tree.root(), self.membership.n());
        let proofs = (0..request.body.ops.len() as u32)
            .map(|i| {
                let j = batch
                    .receipts
                    .iter()
                    .rposition(|r| r.request == digest && r.op_index == i)
                    .expect("a receipt per op");
                ReceiptBatchProof {
                    receipt: batch.receipts[j].clone(),
                    receipt_path: batch.tree.proof(j as u64).unwrap(),
                    certificate: certificate.clone(),
                }
            })
            .collect();
        Reply {
            request: digest,
            seq,
            proofs,
        }
    }

    fn receipt_proof(&self, request: Digest, op_index: u32) -> Option<ReceiptPulseProof> {
        let s = self.state.lock().unwrap();
        for pulse in &s.pulses {
            let h = pulse.header;
            for q in h.first_seq.0..=h.last_seq.0 {
                let batch = &s.batches[&q];
                if let Some(j) = batch
                    .receipts
                    .iter()
                    .rposition(|r| r.request == request && r.op_index == op_index)
                {
                    let roots: Vec<Digest> = (h.first_seq.0..=h.last_seq.0)
                        .map(|q| s.batches[&q].tree.root())
                        .collect();
                    let batches = PulseBatches::new(h.first_seq, &roots);
                    return Some(ReceiptPulseProof {
                        receipt: batch.receipts[j].clone(),
                        receipt_path: batch.tree.proof(j as u64).unwrap(),
                        receipts_root: batch.tree.root(),
                        batch_path: batches.proof(SeqNum(q)).unwrap(),
                        pulse: pulse.clone(),
                    });
                }
            }
        }
        None
    }

    /// Runs heartbeat batches until `count` pulses exist.
    pub fn pulse_until(&self, count: usize) {
        while self.state.lock().unwrap().pulses.len() < count {
            self.execute(None);
        }
    }

    pub fn pulse_count(&self) -> usize {
        self.state.lock().unwrap().pulses.len()
    }
}

/// A running fake gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub submits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A closed 127.0.0.1 port: connects fail at once.
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

impl Gateway {
    pub async fn start(cluster: Arc<FakeCluster>, replica: u16, mode: Mode) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let submits = Arc::new(AtomicU64::new(0));
        let counter = submits.clone();
        let task = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                let cluster = cluster.clone();
                let counter = counter.clone();
                conns.push(tokio::spawn(serve(cluster, replica, mode, stream, counter)));
            }
        });
        Gateway {
            addr,
            submits,
            task,
        }
    }
}

async fn serve(
    cluster: Arc<FakeCluster>,
    replica: u16,
    mode: Mode,
    stream: tokio::net::TcpStream,
    counter: Arc<AtomicU64>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ServerFrame>(1024);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let mut bytes = Vec::new();
            encode_frame(&frame, &mut bytes);
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let slot = {
        let mut s = cluster.state.lock().unwrap();
        s.subscribers.push((BTreeSet::new(), tx.clone()));
        s.subscribers.len() - 1
    };
    let mut buf = Vec::new();
    'conn: loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        while let Some(frame) = decode_frame::<ClientFrame>(&mut buf).unwrap() {
            let answer = match frame {
                ClientFrame::Submit { id, request } => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    if request
                        .verify(cluster.cluster, &RequestLimits::default())
                        .is_err()
                    {
                        Some(ServerFrame::Rejected {
                            id,
                            error: ApiError::BadSignature,
                        })
                    } else {
                        cluster.state.lock().unwrap().subscribers[slot]
                            .0
                            .insert(request.body.client);
                        submit(&cluster, mode, id, &request)
                    }
                }
                ClientFrame::Status { id } => Some(ServerFrame::Status {
                    id,
                    status: StatusReport {
                        replica: ReplicaId(replica),
                        view: ViewNumber(0),
                        primary: ReplicaId(0),
                        last_executed: SeqNum(cluster.state.lock().unwrap().last_seq),
                        stable_checkpoint: SeqNum(0),
                        state_transfers: 0,
                        peers: vec![],
                    },
                }),
                ClientFrame::Pulses { id, from, count } => {
                    let s = cluster.state.lock().unwrap();
                    let pulses = s
                        .pulses
                        .iter()
                        .filter(|p| p.header.pulse >= from)
                        .take(count as usize)
                        .cloned()
                        .collect();
                    Some(ServerFrame::Pulses { id, pulses })
                }
                ClientFrame::ReceiptProof {
                    id,
                    request,
                    op_index,
                } => Some(match cluster.receipt_proof(request, op_index) {
                    Some(proof) => ServerFrame::ReceiptProof {
                        id,
                        proof: Box::new(proof),
                    },
                    None => ServerFrame::Rejected {
                        id,
                        error: ApiError::NotFound,
                    },
                }),
            };
            if let Some(answer) = answer {
                if tx.send(answer).await.is_err() {
                    break 'conn;
                }
            }
        }
    }
    writer.abort();
}

fn submit(cluster: &FakeCluster, mode: Mode, id: u64, request: &Request) -> Option<ServerFrame> {
    if mode == Mode::Silent {
        return None;
    }
    let ops: Vec<Op> = request
        .body
        .ops
        .iter()
        .map(|b| Op::decode(&b.0).unwrap())
        .collect();
    let all_async = ops.iter().all(|op| {
        matches!(
            op,
            Op::Submit {
                durability: Durability::Async,
                ..
            }
        )
    });
    let previous = cluster.state.lock().unwrap().last_reply.clone();
    let mut reply = cluster.honest_reply(request);
    if mode == Mode::Honest {
        cluster.state.lock().unwrap().last_reply = Some(reply.clone());
    }
    if all_async && mode == Mode::Honest {
        return Some(ServerFrame::Accepted {
            id,
            request: reply.request,
        });
    }
    let f1 = cluster.membership.weak_quorum();
    match mode {
        Mode::Honest | Mode::Silent => {}
        Mode::ForgeResult => {
            let forged = qlock::encode_outcome(&Ok(qlock::OpResult::Granted {
                token: qlock::FencingToken {
                    seq: SeqNum(999_999),
                    index: 0,
                },
            }));
            reply.proofs[0].receipt.result = forged;
        }
        Mode::WrongPath => {
            let p = &mut reply.proofs[0].receipt_path;
            if p.path.is_empty() {
                // A one-leaf tree has no path: claim a bigger tree.
                p.size = 2;
                p.path.push(Digest([7; 32]));
            } else {
                p.path[0] = Digest([7; 32]);
            }
        }
        Mode::TooFewSignatures => {
            for p in &mut reply.proofs {
                p.certificate.signatures.truncate(f1 - 1);
            }
        }
        Mode::DuplicateSigners => {
            for p in &mut reply.proofs {
                let one = p.certificate.signatures[0];
                p.certificate.signatures = vec![one; f1];
            }
        }
        Mode::OtherCluster => {
            let other = ClusterId(Digest([9; 32]));
            for p in &mut reply.proofs {
                let mut c = BatchCertificate::new(
                    other,
                    p.certificate.statement.seq,
                    p.certificate.statement.receipts_root,
                );
                for (i, key) in cluster.keys.iter().enumerate() {
                    c.signatures.push(lockchain::ReplicaSignature {
                        replica: ReplicaId(i as u16),
                        signature: c.statement.sign(key),
                    });
                }
                p.certificate = c;
            }
        }
        Mode::OtherRequest => {
            // Another request's certified proofs under this request's name.
            let digest = reply.request;
            reply = previous.expect("an earlier honest reply to replay");
            reply.request = digest;
        }
    }
    Some(ServerFrame::Replied { id, reply })
}

//! The client API at its boundary: real TCP and HTTP servers on 127.0.0.1,
//! driven by real signed requests, in front of a test task that plays the
//! event loop's side of `ReplicaHandle`. What is tested is this layer:
//! framing, validation, error mapping, limits, metrics.

use client::api::{
    decode_frame, encode_frame, ApiError, ClientFrame, Event, Reply, ServerFrame, StatusReport,
    CLIENT_FRAME_BYTES_MAX,
};
use lockchain::merkle::ReceiptTree;
use lockchain::{BatchCertificate, ReceiptBatchProof};
use node::api::http::{ErrorBody, SubmitAnswer};
use node::api::{self, ApiContext};
use node::config::{Limits, Timeouts};
use node::replica::{Command, ReplicaHandle, SubmitOutcome};
use node::telemetry::{self, ApiMetrics};
use primitives::{
    Bytes, ClientId, ClusterId, Digest, HlcTimestamp, KeyPair, Membership, Receipt, ReplicaId,
    Request, RequestBody, RequestNumber, SeqNum, ViewNumber,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const TEST_TIMEOUT: Duration = Duration::from_secs(30);

fn cluster() -> ClusterId {
    let keys = (0..4u8)
        .map(|i| KeyPair::from_seed(&[100 + i; 32]).public())
        .collect();
    Membership::new("api-test", keys).unwrap().cluster_id()
}

fn client_key(seed: u8) -> KeyPair {
    KeyPair::from_seed(&[seed; 32])
}

fn request(key: &KeyPair, cluster: ClusterId, number: u64, op: &[u8]) -> Request {
    RequestBody {
        cluster,
        client: key.public(),
        number: RequestNumber(number),
        atomic: false,
        ops: vec![Bytes(op.to_vec())],
    }
    .sign(key)
}

fn event_for(cluster: ClusterId, request: Digest) -> Event {
    let receipt = Receipt {
        request,
        op_index: 0,
        seq: SeqNum(9),
        time: HlcTimestamp::from_micros(1),
        result: Bytes(b"granted".to_vec()),
    };
    let tree = ReceiptTree::new(std::slice::from_ref(&receipt));
    Event::WaitOutcome(Box::new(ReceiptBatchProof {
        receipt_path: tree.proof(0).unwrap(),
        certificate: BatchCertificate::new(cluster, SeqNum(9), tree.root()),
        receipt,
    }))
}

/// Plays the event loop: op `async` is accepted, op `event` is replied to
/// and then pushes an event to the submitter's subscription, anything else
/// is replied to at seq 7. Records every request that reached it.
fn fake_replica(
    mut commands: mpsc::Receiver<Command>,
    cluster: ClusterId,
    seen: mpsc::UnboundedSender<Request>,
) {
    tokio::spawn(async move {
        let mut subscribers: BTreeMap<ClientId, mpsc::Sender<Event>> = BTreeMap::new();
        while let Some(command) = commands.recv().await {
            match command {
                Command::Submit { request, answer } => {
                    let digest = request.digest();
                    let op = request.body.ops[0].0.clone();
                    let client = request.body.client;
                    let _ = seen.send(*request);
                    if op == b"async" {
                        let _ = answer.send(Ok(SubmitOutcome::Accepted(digest)));
                        continue;
                    }
                    let _ = answer.send(Ok(SubmitOutcome::Replied(Reply {
                        request: digest,
                        seq: SeqNum(7),
                        proofs: Vec::new(),
                    })));
                    if op == b"event" {
                        if let Some(events) = subscribers.get(&client) {
                            let _ = events.send(event_for(cluster, digest)).await;
                        }
                    }
                }
                Command::Status { answer } => {
                    let _ = answer.send(StatusReport {
                        replica: ReplicaId(0),
                        view: ViewNumber(3),
                        primary: ReplicaId(3),
                        last_executed: SeqNum(41),
                        stable_checkpoint: SeqNum(32),
                        state_transfers: 1,
                        peers: Vec::new(),
                    });
                }
                Command::Subscribe { client, events } => {
                    subscribers.insert(client, events);
                }
                Command::Pulses { answer, .. } => {
                    let _ = answer.send(Vec::new());
                }
                Command::ReceiptProof { answer, .. } => {
                    let _ = answer.send(Err(ApiError::NotFound));
                }
            }
        }
    });
}

struct Servers {
    ctx: Arc<ApiContext>,
    tcp: SocketAddr,
    http: SocketAddr,
    tcp_task: tokio::task::JoinHandle<()>,
    http_task: tokio::task::JoinHandle<()>,
    seen: mpsc::UnboundedReceiver<Request>,
}

async fn start(limits: Limits) -> Servers {
    let (handle, commands) = ReplicaHandle::channel();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    fake_replica(commands, cluster(), seen_tx);
    let metrics = ApiMetrics::default();
    let mut registry = telemetry::new_registry();
    metrics.register(&mut registry);
    let timeouts = Timeouts {
        shutdown_ms: 2_000,
        ..Timeouts::default()
    };
    let ctx = ApiContext::new(handle, cluster(), limits, timeouts, metrics);
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let tcp = api::tcp::serve(local, ctx.clone()).await.unwrap();
    let http = api::http::serve(local, ctx.clone(), Arc::new(registry))
        .await
        .unwrap();
    Servers {
        ctx,
        tcp: tcp.local_addr,
        http: http.local_addr,
        tcp_task: tcp.task,
        http_task: http.task,
        seen,
    }
}

/// A binary-protocol client connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, frame: &ClientFrame) {
        let mut bytes = Vec::new();
        encode_frame(frame, &mut bytes);
        self.stream.write_all(&bytes).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame, or `None` once the server closed the connection.
    async fn recv(&mut self) -> Option<ServerFrame> {
        loop {
            if let Some(frame) = decode_frame::<ServerFrame>(&mut self.buf).unwrap() {
                return Some(frame);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn status_ok(&mut self, id: u64) {
        self.send(&ClientFrame::Status { id }).await;
        match self.recv().await {
            Some(ServerFrame::Status { id: got, status }) => {
                assert_eq!(got, id);
                assert_eq!(status.view, ViewNumber(3));
            }
            other => panic!("expected a status, got {other:?}"),
        }
    }
}

fn rejected(frame: Option<ServerFrame>) -> (u64, ApiError) {
    match frame {
        Some(ServerFrame::Rejected { id, error }) => (id, error),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test ran over its time bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_submit_round_trips_over_tcp_and_pipelines() {
    bounded(async {
        let mut s = start(Limits::default()).await;
        let key = client_key(1);
        let mut conn = Conn::open(s.tcp).await;
        let req = request(&key, cluster(), 1, b"lock");
        let digest = req.digest();
        conn.send(&ClientFrame::Submit {
            id: 5,
            request: Box::new(req.clone()),
        })
        .await;
        match conn.recv().await {
            Some(ServerFrame::Replied { id, reply }) => {
                assert_eq!(id, 5);
                assert_eq!(reply.request, digest);
                assert_eq!(reply.seq, SeqNum(7));
            }
            other => panic!("expected a reply, got {other:?}"),
        }
        assert_eq!(
            s.seen.recv().await.unwrap(),
            req,
            "the loop got the request as sent"
        );

        // Many frames in one write; every one answered, matched by id.
        let mut bytes = Vec::new();
        for i in 0..200u64 {
            let op: &[u8] = if i % 2 == 0 { b"lock" } else { b"async" };
            encode_frame(
                &ClientFrame::Submit {
                    id: 1000 + i,
                    request: Box::new(request(&key, cluster(), 10 + i, op)),
                },
                &mut bytes,
            );
        }
        conn.send_raw(&bytes).await;
        let mut replied = 0;
        let mut accepted = 0;
        let mut ids = std::collections::BTreeSet::new();
        for _ in 0..200 {
            match conn.recv().await {
                Some(ServerFrame::Replied { id, .. }) => {
                    assert_eq!((id - 1000) % 2, 0);
                    replied += 1;
                    ids.insert(id);
                }
                Some(ServerFrame::Accepted { id, request }) => {
                    assert_eq!((id - 1000) % 2, 1);
                    assert_eq!(
                        request,
                        self::request(&key, cluster(), 10 + id - 1000, b"async").digest()
                    );
                    accepted += 1;
                    ids.insert(id);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((replied, accepted, ids.len()), (100, 100, 200));
        let metrics = &s.ctx.metrics;
        assert_eq!(metrics.request_count(telemetry::RequestKind::Submit), 201);
        assert!(metrics.verified.get() >= 201);
        // Batching happened: fewer batches than signatures.
        assert!(
            metrics.verify_batches.get() < metrics.verified.get(),
            "{} batches for {} signatures",
            metrics.verify_batches.get(),
            metrics.verified.get()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_pushed_to_the_connection_that_submitted() {
    bounded(async {
        let s = start(Limits::default()).await;
        let key = client_key(2);
        let mut conn = Conn::open(s.tcp).await;
        let req = request(&key, cluster(), 1, b"event");
        let digest = req.digest();
        conn.send(&ClientFrame::Submit {
            id: 1,
            request: Box::new(req),
        })
        .await;
        let mut got_reply = false;
        let mut got_event = false;
        for _ in 0..2 {
            match conn.recv().await {
                Some(ServerFrame::Replied { id: 1, .. }) => got_reply = true,
                Some(ServerFrame::Event(Event::WaitOutcome(proof))) => {
                    assert_eq!(proof.receipt.request, digest);
                    got_event = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(got_reply && got_event);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_typed_rejections_and_the_server_keeps_serving() {
    bounded(async {
        let limits = Limits {
            request_bytes_max: 8 * 1024,
            ops_max: 4,
            op_bytes_max: 1024,
            ..Limits::default()
        };
        let mut s = start(limits).await;
        let key = client_key(3);
        let mut conn = Conn::open(s.tcp).await;

        // Malformed: a valid length prefix around garbage.
        conn.send_raw(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).await;
        let (id, error) = rejected(conn.recv().await);
        assert_eq!(id, 0);
        assert!(matches!(error, ApiError::Malformed(_)), "{error:?}");

        // Bad signature: one bit of the signature flipped.
        let mut bad = request(&key, cluster(), 1, b"lock");
        bad.signature.0[5] ^= 1;
        conn.send(&ClientFrame::Submit {
            id: 11,
            request: Box::new(bad),
        })
        .await;
        assert_eq!(rejected(conn.recv().await), (11, ApiError::BadSignature));

        // Signed by someone else than the named client.
        let mut forged = request(&key, cluster(), 1, b"lock");
        forged.body.client = client_key(4).public();
        conn.send(&ClientFrame::Submit {
            id: 12,
            request: Box::new(forged),
        })
        .await;
        assert_eq!(rejected(conn.recv().await), (12, ApiError::BadSignature));

        // Wrong cluster, properly signed.
        let other = Membership::new("other", vec![client_key(9).public()])
            .unwrap()
            .cluster_id();
        conn.send(&ClientFrame::Submit {
            id: 13,
            request: Box::new(request(&key, other, 1, b"lock")),
        })
        .await;
        assert_eq!(rejected(conn.recv().await), (13, ApiError::WrongCluster));

        // Too many ops; an op too large; no ops.
        let mut many = RequestBody {
            cluster: cluster(),
            client: key.public(),
            number: RequestNumber(2),
            atomic: false,
            ops: vec![Bytes(b"x".to_vec()); 5],
        };
        conn.send(&ClientFrame::Submit {
            id: 14,
            request: Box::new(many.clone().sign(&key)),
        })
        .await;
        assert!(matches!(
            rejected(conn.recv().await),
            (14, ApiError::Oversized(_))
        ));
        many.ops = vec![Bytes(vec![0; 2000])];
        conn.send(&ClientFrame::Submit {
            id: 15,
            request: Box::new(many.clone().sign(&key)),
        })
        .await;
        assert!(matches!(
            rejected(conn.recv().await),
            (15, ApiError::Oversized(_))
        ));
        many.ops = Vec::new();
        conn.send(&ClientFrame::Submit {
            id: 16,
            request: Box::new(many.sign(&key)),
        })
        .await;
        assert!(matches!(
            rejected(conn.recv().await),
            (16, ApiError::Malformed(_))
        ));

        // A frame longer than any valid request (but under the hard frame
        // bound) is skipped whole; the connection keeps serving.
        let mut big = 20_000u32.to_be_bytes().to_vec();
        big.extend(std::iter::repeat_n(7u8, 20_000));
        conn.send_raw(&big).await;
        assert!(matches!(
            rejected(conn.recv().await),
            (0, ApiError::Oversized(_))
        ));
        conn.status_ok(20).await;

        // None of the bad requests reached the event loop.
        assert!(s.seen.try_recv().is_err());

        // A length prefix over the hard bound: rejected, then closed.
        conn.send_raw(&((CLIENT_FRAME_BYTES_MAX + 1) as u32).to_be_bytes())
            .await;
        assert!(matches!(
            rejected(conn.recv().await),
            (0, ApiError::Oversized(_))
        ));
        assert!(conn.recv().await.is_none(), "the connection is closed");

        // The next connection is served.
        let mut next = Conn::open(s.tcp).await;
        next.send(&ClientFrame::Submit {
            id: 30,
            request: Box::new(request(&key, cluster(), 3, b"lock")),
        })
        .await;
        assert!(matches!(
            next.recv().await,
            Some(ServerFrame::Replied { id: 30, .. })
        ));

        let m = &s.ctx.metrics;
        assert_eq!(m.rejected_count("malformed"), 2);
        assert_eq!(m.rejected_count("bad_signature"), 2);
        assert_eq!(m.rejected_count("wrong_cluster"), 1);
        assert_eq!(m.rejected_count("oversized"), 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_and_counted() {
    bounded(async {
        let limits = Limits {
            connections_max: 2,
            ..Limits::default()
        };
        let s = start(limits).await;
        let mut a = Conn::open(s.tcp).await;
        let mut b = Conn::open(s.tcp).await;
        a.status_ok(1).await;
        b.status_ok(2).await;
        let mut c = Conn::open(s.tcp).await;
        assert!(matches!(
            rejected(c.recv().await),
            (0, ApiError::Overloaded(_))
        ));
        assert!(c.recv().await.is_none());
        assert_eq!(s.ctx.metrics.connections_refused.get(), 1);
        assert_eq!(s.ctx.metrics.connections.get(), 2);
        drop(a);
        // The slot frees once the server sees the close.
        loop {
            let mut d = Conn::open(s.tcp).await;
            d.send(&ClientFrame::Status { id: 4 }).await;
            match d.recv().await {
                Some(ServerFrame::Status { id: 4, .. }) => break,
                Some(ServerFrame::Rejected { .. }) | None => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        b.status_ok(5).await;
    })
    .await;
}

/// A minimal HTTP/1.1 exchange: (status, content type, body).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading the whole body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

fn error_kind(body: &str) -> String {
    serde_json::from_str::<ErrorBody>(body)
        .unwrap_or_else(|e| panic!("not a typed error body ({e}): {body}"))
        .error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_answer_json_and_typed_errors() {
    bounded(async {
        let limits = Limits {
            http_body_bytes_max: 16 * 1024,
            ..Limits::default()
        };
        let s = start(limits).await;
        let (status, _, body) = http(s.http, "GET", "/healthz", b"").await;
        assert_eq!((status, body.as_str()), (200, "ok"));

        let (status, ctype, body) = http(s.http, "GET", "/v1/status", b"").await;
        assert_eq!(status, 200);
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let report: StatusReport = serde_json::from_str(&body).unwrap();
        assert_eq!(report.last_executed, SeqNum(41));

        let key = client_key(5);
        let req = request(&key, cluster(), 1, b"lock");
        let json = serde_json::to_vec(&req).unwrap();
        let (status, _, body) = http(s.http, "POST", "/v1/submit", &json).await;
        assert_eq!(status, 200, "{body}");
        match serde_json::from_str::<SubmitAnswer>(&body).unwrap() {
            SubmitAnswer::Replied { reply } => assert_eq!(reply.request, req.digest()),
            other => panic!("{other:?}"),
        }
        let async_req = request(&key, cluster(), 2, b"async");
        let json = serde_json::to_vec(&async_req).unwrap();
        let (status, _, body) = http(s.http, "POST", "/v1/submit", &json).await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<SubmitAnswer>(&body).unwrap(),
            SubmitAnswer::Accepted {
                request: async_req.digest()
            }
        );

        let (status, _, body) = http(s.http, "POST", "/v1/submit", b"{\"body\": 3").await;
        assert_eq!(status, 400);
        assert_eq!(error_kind(&body), "malformed");

        let mut bad = request(&key, cluster(), 3, b"lock");
        bad.signature.0[0] ^= 0x80;
        let (status, _, body) = http(
            s.http,
            "POST",
            "/v1/submit",
            &serde_json::to_vec(&bad).unwrap(),
        )
        .await;
        assert_eq!((status, error_kind(&body).as_str()), (403, "bad_signature"));

        let (status, _, body) = http(s.http, "POST", "/v1/submit", &vec![b' '; 40_000]).await;
        assert_eq!((status, error_kind(&body).as_str()), (413, "oversized"));

        let (status, _, body) = http(s.http, "GET", "/v1/pulses?from=x", b"").await;
        assert_eq!((status, error_kind(&body).as_str()), (400, "malformed"));
        let (status, _, body) = http(s.http, "GET", "/v1/pulses?from=3&count=9999", b"").await;
        assert_eq!((status, body.as_str()), (200, "[]"));

        let (status, _, body) = http(s.http, "GET", "/v1/proof/zz/1", b"").await;
        assert_eq!((status, error_kind(&body).as_str()), (400, "malformed"));
        let path = format!("/v1/proof/{}/0", req.digest().to_hex());
        let (status, _, body) = http(s.http, "GET", &path, b"").await;
        assert_eq!((status, error_kind(&body).as_str()), (404, "not_found"));

        let (status, _, body) = http(s.http, "GET", "/nowhere", b"").await;
        assert_eq!((status, error_kind(&body).as_str()), (404, "not_found"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_and_the_counters_move() {
    bounded(async {
        let s = start(Limits::default()).await;
        let mut conn = Conn::open(s.tcp).await;
        conn.status_ok(1).await;
        conn.send_raw(&[0, 0, 0, 1, 0xff]).await;
        rejected(conn.recv().await);
        let (status, ctype, text) = http(s.http, "GET", "/metrics", b"").await;
        assert_eq!(status, 200);
        assert!(ctype.contains("openmetrics-text"), "{ctype}");
        check_exposition(&text);
        assert!(
            text.contains("qlock_api_requests_total{kind=\"status\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("qlock_api_rejected_total{reason=\"malformed\"} 1"),
            "{text}"
        );
        // The TCP connection and this HTTP one.
        assert!(text.contains("qlock_api_connections 2"), "{text}");
    })
    .await;
}

/// Every sample line is `name{labels} value` (or `name value`), its family
/// has a `# TYPE`, and the text ends with `# EOF`.
fn check_exposition(text: &str) {
    let mut families: Vec<String> = Vec::new();
    let mut samples = 0;
    assert_eq!(text.lines().last(), Some("# EOF"));
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            families.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment line {line:?}");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("value is not a number: {line:?}"));
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                assert!(labels.ends_with('}'), "unclosed labels: {line:?}");
                for pair in labels
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|p| !p.is_empty())
                {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("label {pair:?}"));
                    assert!(
                        !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                        "{line:?}"
                    );
                }
                name
            }
            None => series,
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name {name:?}"
        );
        let family = families.iter().any(|f| {
            name == f
                || ["_total", "_bucket", "_count", "_sum", "_created", "_info"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(f))
        });
        assert!(family, "sample {name:?} has no # TYPE line");
        samples += 1;
    }
    assert!(samples > 0, "no samples at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_both_servers() {
    bounded(async {
        let s = start(Limits::default()).await;
        let mut conn = Conn::open(s.tcp).await;
        conn.status_ok(1).await;
        s.ctx.shut_down();
        // An open connection is closed; the servers end.
        assert!(conn.recv().await.is_none());
        s.tcp_task.await.unwrap();
        s.http_task.await.unwrap();
        assert!(TcpStream::connect(s.tcp).await.is_err());
        assert!(TcpStream::connect(s.http).await.is_err());
        // A submit through the context is refused as unavailable.
        let req = request(&client_key(6), cluster(), 1, b"lock");
        assert!(matches!(
            s.ctx.submit(req).await,
            Err(ApiError::Unavailable(_))
        ));
    })
    .await;
}

//! The `qlock` CLI against a real local cluster (issue 11's round trip):
//! keygen, sessions, locks, queues, status, the lockchain and a receipt's
//! proof, each with `--json`, parsed here — and the exit codes of a
//! refused op.

use e2e::{bounded, eventually, TestCluster, WorkloadKind, RECOVERY};
use serde_json::Value;
use std::time::Duration;

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field:?} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_qlock_command_round_trips_against_a_real_cluster() {
    bounded(Duration::from_secs(180), "test", async {
        let cluster = TestCluster::start(4).await;
        let cfile = cluster.cluster_file();
        let key = cluster.dir().join("cli.key");
        let key_arg = key.to_str().expect("a UTF-8 path").to_string();
        let q = |args: &[&str]| cluster.qlock(&cfile, &key, args);

        let (code, out) = q(&["keygen", "--out", &key_arg]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(text(&out, "public_key").len(), 64, "{out}");
        let (code, out) = q(&["keygen", "--out", &key_arg]);
        assert_ne!(code, 0, "keygen must refuse to overwrite a key: {out}");
        assert_eq!(out["ok"], false, "{out}");

        let (code, out) = q(&["session", "create", "--ttl-ms", "600000"]);
        assert_eq!(code, 0, "{out}");
        let session = text(&out, "session").to_string();
        let (code, out) = q(&["session", "status", "--session", &session]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["locks"], 0, "{out}");

        let (code, out) = q(&["lock", "acquire", "--session", &session, "cli-lock"]);
        assert_eq!(code, 0, "{out}");
        let token = out["token"]["u64"].as_u64().expect("a token");
        // Another session of the same key is refused the held lock: exit 1.
        let (_, other) = q(&["session", "create", "--ttl-ms", "600000"]);
        let other = text(&other, "session").to_string();
        let (code, out) = q(&["lock", "acquire", "--session", &other, "cli-lock"]);
        assert_eq!(code, 1, "a held lock must be refused: {out}");
        assert_eq!(out["ok"], false, "{out}");
        assert_eq!(out["error"], "op_refused", "{out}");
        let (code, out) = q(&["lock", "check", "cli-lock"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["holders"][0]["session"], session.as_str(), "{out}");
        assert_eq!(out["holders"][0]["token"]["u64"], token, "{out}");
        let (code, out) = q(&["lock", "release", "--session", &session, "cli-lock"]);
        assert_eq!(code, 0, "{out}");
        let (_, out) = q(&["lock", "check", "cli-lock"]);
        assert_eq!(out["holders"], Value::Array(vec![]), "released: {out}");
        // The next grant's token is larger (fencing).
        let (code, out) = q(&["lock", "acquire", "--session", &other, "cli-lock"]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out["token"]["u64"].as_u64().expect("a token") > token,
            "{out}"
        );

        let (code, out) = q(&["queue", "submit", "cli-jobs", "hello", "--priority", "high"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["certified"], true, "a sync submit is certified: {out}");
        let message = text(&out, "message").to_string();
        let (code, out) = q(&["queue", "peek", "cli-jobs"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["message"], message.as_str(), "{out}");
        let (code, out) = q(&["queue", "claim", "--session", &session, "cli-jobs"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["message"], message.as_str(), "{out}");
        assert_eq!(out["payload"], "hello", "{out}");
        assert_eq!(out["delivery"], 1, "{out}");
        let ack = [
            "queue",
            "ack",
            "--session",
            &session,
            "--message",
            &message,
            "--delivery",
            "1",
        ];
        let (code, out) = q(&ack);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["done"], "acked", "{out}");
        let (code, out) = q(&ack);
        assert_eq!(code, 1, "a second ack must be refused: {out}");
        let (code, out) = q(&["queue", "depth", "cli-jobs"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["ready_total"], 0, "{out}");
        assert_eq!(out["claimed"], 0, "{out}");

        let (code, out) = q(&["status"]);
        assert_eq!(code, 0, "{out}");
        let replicas = out["replicas"].as_array().expect("replicas");
        assert_eq!(replicas.len(), 4, "{out}");
        assert!(replicas.iter().all(|r| r["ok"] == true), "{out}");

        // A proof needs a certified pulse after the submit: load the
        // cluster until one covers it.
        let run = cluster.start_workload(WorkloadKind::Locks, 4, Duration::from_secs(60));
        let proof = eventually(RECOVERY, "a pulse covering the submit", || async {
            let (code, out) = q(&["proof", &message]);
            if code == 0 {
                Ok(out)
            } else {
                Err(out.to_string())
            }
        })
        .await;
        run.stop();
        run.finish(cluster.n()).await;
        assert_eq!(proof["verified"], true, "{proof}");
        let (request, op_index) = message.split_once(':').expect("REQUEST:OP");
        assert_eq!(proof["request"], request, "{proof}");
        assert_eq!(proof["op_index"].to_string(), op_index, "{proof}");
        assert!(proof["pulse"].as_u64().unwrap_or(0) >= 1, "{proof}");
        assert!(
            proof["signers"].as_u64().unwrap_or(0) >= 3,
            "2f + 1 signers: {proof}"
        );
        assert!(
            proof["outcome"].to_string().contains("Submitted"),
            "{proof}"
        );

        let (code, out) = q(&["lockchain", "verify"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["verified"], true, "{out}");
        let count = out["count"].as_u64().unwrap_or(0);
        assert!(
            count >= proof["pulse"].as_u64().unwrap_or(u64::MAX),
            "{out}"
        );
        let (code, out) = q(&["lockchain", "show", "--from", "1", "--to", "1"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["pulses"][0]["pulse"], 1, "{out}");
    })
    .await
}

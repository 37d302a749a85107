//! `simulator cluster`, the README's first command, as a newcomer runs it
//! (here with the test profile's binaries): it starts real replicas,
//! applies the faults it is given, prints its summary as JSON, writes the
//! history file, checks it and exits 0.

use e2e::{binary, bounded};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_harness_runs_a_workload_with_faults_and_checks_its_history() {
    bounded(Duration::from_secs(180), "simulator cluster", async {
        let dir = std::env::temp_dir().join(format!("qlock-harness-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let history = dir.join("history.jsonl");
        let mut command = Command::new(binary("simulator"));
        command.args([
            "cluster",
            "--nodes",
            "4",
            "--workload",
            "mixed",
            "--duration",
            "8s",
            "--kill",
            "3@2s",
            "--restart",
            "3@5s",
            "--json",
            "--history",
        ]);
        command.arg(&history);
        let output = tokio::task::block_in_place(|| command.output()).expect("run simulator");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "simulator cluster failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
        let summary: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("no JSON summary ({e}): {stdout}\n{stderr}"));
        assert!(
            summary["committed_ops"].as_u64().unwrap_or(0) > 0,
            "{summary}"
        );
        assert!(
            summary["committed_ops_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
            "{summary}"
        );
        for p in ["p50", "p90", "p99", "p99.9"] {
            assert!(
                summary["latency_ms"][p].as_f64().is_some(),
                "no {p}: {summary}"
            );
        }
        assert_eq!(summary["history_check"]["passed"], true, "{summary}");
        let faults = summary["faults"].as_array().expect("faults");
        assert_eq!(faults.len(), 2, "{summary}");
        assert!(
            faults[0]["what"]
                .as_str()
                .unwrap_or("")
                .contains("kill -9 replica 3"),
            "{summary}"
        );
        assert!(
            faults[1]["what"]
                .as_str()
                .unwrap_or("")
                .contains("restarted replica 3"),
            "{summary}"
        );
        assert!(
            summary["replica_states"]
                .as_array()
                .expect("states")
                .iter()
                .all(|s| s == "running"),
            "{summary}"
        );
        let text = std::fs::read_to_string(&history).expect("history file");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(
            lines.len() as u64,
            summary["history_ops"].as_u64().unwrap_or(0)
        );
        for key in ["client", "op", "args", "invoke_ns", "complete_ns", "result"] {
            assert!(
                lines.iter().all(|l| l.get(key).is_some()),
                "a line without {key}"
            );
        }
        let granted = lines
            .iter()
            .filter(|l| l["op"] == "acquire" && l["result"]["granted"] == true)
            .count();
        assert!(granted > 0, "no granted acquire in the history");
        assert!(
            lines
                .iter()
                .filter(|l| l["op"] == "acquire" && l["result"]["granted"] == true)
                .all(|l| l["result"]["token"].as_u64().is_some()),
            "a grant without its token"
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

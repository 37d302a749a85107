//! Store behaviour on the real RocksDB, one temporary directory per test.

use super::*;
use crate::StorageLimits;
use primitives::{Domain, ViewNumber};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), StorageConfig::default()).unwrap()
}

fn digest(label: &[u8]) -> Digest {
    Digest::of(Domain::Test, label)
}

fn manifest(seq: u64, chunk_count: u32) -> SnapshotManifest {
    SnapshotManifest {
        seq: SeqNum(seq),
        chunk_count,
        state_digest: digest(&seq.to_le_bytes()),
        meta: b"meta".to_vec(),
    }
}

/// Commits the log entry, a payload and a snapshot at `seq`.
fn commit_seq_with_snapshot(store: &Store, seq: u64) {
    let mut set = WriteSet::new();
    set.put_log(SeqNum(seq), b"batch", b"cert")
        .put_payload(digest(&seq.to_le_bytes()), SeqNum(seq), b"payload")
        .put_snapshot_chunk(SeqNum(seq), 0, b"chunk")
        .put_snapshot_manifest(&manifest(seq, 1));
    store.commit(set).unwrap();
}

#[test]
fn every_kind_of_record_round_trips_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut set = WriteSet::new();
    set.put_safety(SafetyKey::View, b"view 3".to_vec())
        .put_safety(SafetyKey::Prepared(SeqNum(7)), b"prepared".to_vec())
        .put_log(SeqNum(7), b"batch 7", b"cert 7")
        .put_payload(digest(b"p"), SeqNum(7), b"payload")
        .put_snapshot_chunk(SeqNum(4), 0, b"c0")
        .put_snapshot_chunk(SeqNum(4), 1, b"c1")
        .put_snapshot_manifest(&manifest(4, 2))
        .put_root(PulseNumber(1), b"root 1")
        .put_receipts(PulseNumber(1), SeqNum(4), b"tree");
    let committed = store.commit(set).unwrap();
    assert_eq!(committed.writes, 9);
    drop(store);

    let store = open(&dir);
    assert_eq!(
        store.safety(SafetyKey::View).unwrap(),
        Some(b"view 3".to_vec())
    );
    let entry = store.log(SeqNum(7)).unwrap().unwrap();
    assert_eq!(
        (&entry.batch[..], &entry.certificate[..]),
        (&b"batch 7"[..], &b"cert 7"[..])
    );
    assert_eq!(store.log(SeqNum(8)).unwrap(), None);
    assert_eq!(
        store.payload(&digest(b"p")).unwrap(),
        Some(b"payload".to_vec())
    );
    assert_eq!(store.latest_snapshot(None).unwrap(), Some(manifest(4, 2)));
    assert_eq!(
        store.root(PulseNumber(1)).unwrap(),
        Some(b"root 1".to_vec())
    );
    assert_eq!(
        store.receipts(PulseNumber(1), SeqNum(4)).unwrap(),
        Some(b"tree".to_vec())
    );

    let recovered = store.recover().unwrap();
    let snapshot = recovered.snapshot.unwrap();
    assert_eq!(snapshot.chunks, vec![b"c0".to_vec(), b"c1".to_vec()]);
    assert_eq!(
        recovered.log.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![SeqNum(7)]
    );
    assert_eq!(recovered.safety.len(), 2);
}

#[test]
fn roots_answers_an_inclusive_range_in_pulse_order_and_refuses_huge_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut set = WriteSet::new();
    for pulse in [1u64, 2, 3, 5, 10, 11] {
        set.put_root(PulseNumber(pulse), format!("root {pulse}").as_bytes());
    }
    store.commit(set).unwrap();
    let pulses = |from, to| -> Vec<u64> {
        let roots = store.roots(PulseNumber(from), PulseNumber(to)).unwrap();
        roots.into_iter().map(|(p, _)| p.0).collect()
    };
    assert_eq!(pulses(2, 10), vec![2, 3, 5, 10]);
    assert_eq!(pulses(4, 4), Vec::<u64>::new());
    assert_eq!(pulses(9, 2), Vec::<u64>::new());
    assert_eq!(
        store.roots(PulseNumber(5), PulseNumber(5)).unwrap()[0].1,
        b"root 5"
    );
    assert_eq!(store.latest_root().unwrap().unwrap().0, PulseNumber(11));
    assert!(matches!(
        store.roots(PulseNumber(0), PulseNumber(u64::MAX)),
        Err(StorageError::Limit { .. })
    ));
}

#[test]
fn gc_cuts_at_the_newest_snapshot_below_the_stable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for seq in 1..=20u64 {
        if seq.is_multiple_of(8) {
            commit_seq_with_snapshot(&store, seq);
        } else {
            let mut set = WriteSet::new();
            set.put_log(SeqNum(seq), b"batch", b"cert")
                .put_payload(digest(&seq.to_le_bytes()), SeqNum(seq), b"payload")
                .put_safety(SafetyKey::Accepted(SeqNum(seq)), b"pp".to_vec());
            store.commit(set).unwrap();
        }
    }
    // Stable at 18, but the newest snapshot at or below it is 16.
    let report = store
        .gc(StableCheckpoint {
            seq: SeqNum(18),
            pulse: PulseNumber(2),
        })
        .unwrap();
    assert_eq!(report.snapshot_seq, Some(SeqNum(16)));
    assert_eq!(report.payloads_deleted, 16);
    assert_eq!(store.log(SeqNum(16)).unwrap(), None);
    assert!(store.log(SeqNum(17)).unwrap().is_some());
    assert_eq!(store.payload(&digest(&16u64.to_le_bytes())).unwrap(), None);
    assert!(store
        .payload(&digest(&17u64.to_le_bytes()))
        .unwrap()
        .is_some());
    assert_eq!(store.safety(SafetyKey::Accepted(SeqNum(18))).unwrap(), None);
    assert!(store
        .safety(SafetyKey::Accepted(SeqNum(19)))
        .unwrap()
        .is_some());
    assert_eq!(store.latest_snapshot(Some(SeqNum(15))).unwrap(), None);
    assert_eq!(store.snapshot_chunk(SeqNum(8), 0).unwrap(), None);

    let recovered = store.recover().unwrap();
    assert_eq!(recovered.snapshot.unwrap().manifest.seq, SeqNum(16));
    let seqs: Vec<u64> = recovered.log.iter().map(|(s, _)| s.0).collect();
    assert_eq!(seqs, vec![17, 18, 19, 20]);
    assert_eq!(recovered.stable.unwrap().seq, SeqNum(18));
}

#[test]
fn gc_without_a_snapshot_keeps_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut set = WriteSet::new();
    set.put_log(SeqNum(1), b"b", b"c");
    store.commit(set).unwrap();
    let stable = StableCheckpoint {
        seq: SeqNum(1),
        pulse: PulseNumber(1),
    };
    assert_eq!(store.gc(stable).unwrap().snapshot_seq, None);
    assert!(store.log(SeqNum(1)).unwrap().is_some());
}

#[test]
fn a_payload_referenced_again_later_survives_gc_of_the_earlier_reference() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let shared = digest(b"shared");
    let mut set = WriteSet::new();
    set.put_payload(shared, SeqNum(3), b"payload");
    store.commit(set).unwrap();
    let mut set = WriteSet::new();
    set.put_payload(shared, SeqNum(12), b"payload");
    store.commit(set).unwrap();
    // A re-proposal at a lower seq must not lower the kept reference.
    let mut set = WriteSet::new();
    set.put_payload(shared, SeqNum(5), b"payload");
    store.commit(set).unwrap();
    commit_seq_with_snapshot(&store, 8);
    let stable = |seq| StableCheckpoint {
        seq: SeqNum(seq),
        pulse: PulseNumber(seq / 8),
    };
    store.gc(stable(8)).unwrap();
    assert!(store.payload(&shared).unwrap().is_some());
    commit_seq_with_snapshot(&store, 16);
    store.gc(stable(16)).unwrap();
    assert_eq!(store.payload(&shared).unwrap(), None);
}

#[test]
fn receipts_are_kept_for_the_retention_window_and_roots_forever() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        receipts_retention_pulses: Some(2),
        ..StorageConfig::default()
    };
    let store = Store::open(dir.path(), config).unwrap();
    let mut set = WriteSet::new();
    for pulse in 1..=5 {
        set.put_root(PulseNumber(pulse), b"header+qc").put_receipts(
            PulseNumber(pulse),
            SeqNum(pulse * 8),
            b"tree",
        );
    }
    store.commit(set).unwrap();
    let stable = StableCheckpoint {
        seq: SeqNum(40),
        pulse: PulseNumber(5),
    };
    assert_eq!(
        store.gc(stable).unwrap().receipts_below,
        Some(PulseNumber(4))
    );
    let kept: Vec<bool> = (1..=5)
        .map(|p| {
            store
                .receipts(PulseNumber(p), SeqNum(p * 8))
                .unwrap()
                .is_some()
        })
        .collect();
    assert_eq!(kept, vec![false, false, false, true, true]);
    assert_eq!(
        store.roots(PulseNumber(1), PulseNumber(5)).unwrap().len(),
        5
    );
}

#[test]
fn default_retention_keeps_every_receipt_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut set = WriteSet::new();
    set.put_receipts(PulseNumber(1), SeqNum(8), b"tree");
    store.commit(set).unwrap();
    let stable = StableCheckpoint {
        seq: SeqNum(800),
        pulse: PulseNumber(100),
    };
    assert_eq!(store.gc(stable).unwrap().receipts_below, None);
    assert!(store.receipts(PulseNumber(1), SeqNum(8)).unwrap().is_some());
}

#[test]
fn view_changes_below_a_view_are_deleted_and_later_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut set = WriteSet::new();
    for view in 1..=4 {
        set.put_safety(SafetyKey::ViewChange(ViewNumber(view)), b"vc".to_vec())
            .put_safety(SafetyKey::NewView(ViewNumber(view)), b"nv".to_vec());
    }
    store.commit(set).unwrap();
    let mut set = WriteSet::new();
    set.delete_view_changes_below(ViewNumber(3))
        .delete_safety(SafetyKey::NewView(ViewNumber(4)));
    store.commit(set).unwrap();
    let keys: Vec<SafetyKey> = store
        .recover()
        .unwrap()
        .safety
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let expected = [
        SafetyKey::ViewChange(ViewNumber(3)),
        SafetyKey::ViewChange(ViewNumber(4)),
        SafetyKey::NewView(ViewNumber(3)),
    ];
    assert_eq!(keys, expected);
}

#[test]
fn a_failed_write_poisons_the_store_for_every_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.fail_next_write.store(true, Ordering::SeqCst);
    let mut set = WriteSet::new();
    set.put_log(SeqNum(1), b"b", b"c");
    assert!(matches!(
        store.commit(set.clone()),
        Err(StorageError::Io(_))
    ));
    assert!(store.is_poisoned());
    assert_eq!(store.commit(set), Err(StorageError::Poisoned));
    let stable = StableCheckpoint {
        seq: SeqNum(1),
        pulse: PulseNumber(1),
    };
    assert_eq!(store.gc(stable), Err(StorageError::Poisoned));
    // Reads still work (for diagnosis), and nothing was written.
    assert_eq!(store.log(SeqNum(1)).unwrap(), None);
}

#[test]
fn oversized_write_sets_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        limits: StorageLimits {
            record_bytes_max: 100,
            write_set_records_max: 3,
            ..StorageLimits::default()
        },
        ..StorageConfig::default()
    };
    let store = Store::open(dir.path(), config).unwrap();
    let mut big = WriteSet::new();
    big.put_payload(digest(b"x"), SeqNum(1), &[0u8; 101]);
    assert!(matches!(store.commit(big), Err(StorageError::Limit { .. })));
    let mut many = WriteSet::new();
    for seq in 1..=4 {
        many.put_log(SeqNum(seq), b"b", b"c");
    }
    assert!(matches!(
        store.commit(many),
        Err(StorageError::Limit { .. })
    ));
    assert_eq!(store.log(SeqNum(1)).unwrap(), None);
    assert!(!store.is_poisoned());
}

#[test]
fn a_manifest_without_its_chunks_is_a_typed_error_at_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut set = WriteSet::new();
    set.put_snapshot_chunk(SeqNum(8), 0, b"c0")
        .put_snapshot_manifest(&manifest(8, 2));
    store.commit(set).unwrap();
    assert_eq!(
        store.recover(),
        Err(StorageError::SnapshotChunkMissing { seq: 8, index: 1 })
    );
}

#[test]
fn commit_reports_a_sync_latency() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut set = WriteSet::new();
    set.put_log(SeqNum(1), b"b", b"c");
    let committed = store.commit(set).unwrap();
    assert!(committed.sync_latency > Duration::ZERO);
    assert_eq!((committed.writes, committed.bytes), (1, 8 + 4 + 2));
}

mod model {
    //! The store against a simple model: random write sets of log, safety
    //! and root records, with reopens in between, read back exactly as a
    //! `BTreeMap` per column family says.

    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Log(u8, Vec<u8>),
        Safety(u8, Vec<u8>),
        DeleteSafety(u8),
        Root(u8, Vec<u8>),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        let bytes = || prop::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            (0..16u8, bytes()).prop_map(|(s, b)| Op::Log(s, b)),
            (0..16u8, bytes()).prop_map(|(s, b)| Op::Safety(s, b)),
            (0..16u8).prop_map(Op::DeleteSafety),
            (0..16u8, bytes()).prop_map(|(p, b)| Op::Root(p, b)),
            Just(Op::Reopen),
        ]
    }

    #[derive(Default)]
    struct Model {
        log: BTreeMap<u8, Vec<u8>>,
        safety: BTreeMap<u8, Vec<u8>>,
        roots: BTreeMap<u8, Vec<u8>>,
    }

    fn apply(set: &mut WriteSet, model: &mut Model, op: &Op) {
        match op.clone() {
            Op::Log(s, b) => {
                set.put_log(SeqNum(s.into()), &b, b"cert");
                model.log.insert(s, b);
            }
            Op::Safety(s, b) => {
                set.put_safety(SafetyKey::Prepared(SeqNum(s.into())), b.clone());
                model.safety.insert(s, b);
            }
            Op::DeleteSafety(s) => {
                set.delete_safety(SafetyKey::Prepared(SeqNum(s.into())));
                model.safety.remove(&s);
            }
            Op::Root(p, b) => {
                set.put_root(PulseNumber(p.into()), &b);
                model.roots.insert(p, b);
            }
            Op::Reopen => {}
        }
    }

    fn check(store: &Store, model: &Model) {
        let recovered = store.recover().unwrap();
        let log: BTreeMap<u8, Vec<u8>> = recovered
            .log
            .into_iter()
            .map(|(s, e)| (s.0 as u8, e.batch))
            .collect();
        assert_eq!(log, model.log);
        let safety: BTreeMap<u8, Vec<u8>> = recovered
            .safety
            .into_iter()
            .map(|(k, v)| match k {
                SafetyKey::Prepared(s) => (s.0 as u8, v),
                other => panic!("unexpected key {other:?}"),
            })
            .collect();
        assert_eq!(safety, model.safety);
        let roots: BTreeMap<u8, Vec<u8>> = store
            .roots(PulseNumber(0), PulseNumber(15))
            .unwrap()
            .into_iter()
            .map(|(p, b)| (p.0 as u8, b))
            .collect();
        assert_eq!(roots, model.roots);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn reads_match_the_model_across_reopens(
            sets in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..8)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut store = open(&dir);
            let mut model = Model::default();
            for ops in &sets {
                let mut set = WriteSet::new();
                for op in ops {
                    if let Op::Reopen = op {
                        store.commit(std::mem::take(&mut set)).unwrap();
                        drop(store);
                        store = open(&dir);
                    }
                    apply(&mut set, &mut model, op);
                }
                store.commit(set).unwrap();
                check(&store, &model);
            }
        }
    }
}

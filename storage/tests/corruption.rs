//! Corruption (issue 8): bytes flipped in a record on disk are detected and
//! reported as a typed error; the record is never returned.
//!
//! The first tests are deterministic: they rewrite one stored value with a
//! flipped byte through RocksDB directly, below our checksum. The last two
//! flip a byte inside RocksDB's own files (an SST, the WAL), where RocksDB's
//! block and record checksums must catch it.

use primitives::{Digest, Domain, PulseNumber, SeqNum};
use std::path::{Path, PathBuf};
use storage::keys::{self, ColumnFamily};
use storage::{CorruptReason, SafetyKey, StorageConfig, StorageError, Store, WriteSet};

fn open(dir: &Path) -> Result<Store, StorageError> {
    Store::open(dir, StorageConfig::default())
}

fn raw_db(dir: &Path) -> rocksdb::DB {
    let names = ColumnFamily::ALL.map(ColumnFamily::name);
    rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, names).unwrap()
}

/// Flips one bit of the stored value at `key` in `cf`, at `offset` bytes
/// from the end (so it lands in the body, past the envelope).
fn flip_stored_value(dir: &Path, cf: ColumnFamily, key: &[u8], offset: usize) {
    let db = raw_db(dir);
    let handle = db.cf_handle(cf.name()).unwrap();
    let mut value = db.get_cf(handle, key).unwrap().expect("record to corrupt");
    let at = value.len() - offset;
    value[at] ^= 0x10;
    db.put_cf(handle, key, value).unwrap();
}

fn is_corrupt(result: &StorageError, cf: ColumnFamily) -> bool {
    matches!(result, StorageError::Corrupt { column_family, reason: CorruptReason::Checksum, .. } if *column_family == cf)
}

fn seed_store(dir: &Path) {
    let store = open(dir).unwrap();
    let mut set = WriteSet::new();
    for seq in 1..=3 {
        set.put_log(
            SeqNum(seq),
            format!("batch {seq}").as_bytes(),
            b"certificate",
        );
    }
    set.put_safety(SafetyKey::View, b"view".to_vec())
        .put_payload(Digest::of(Domain::Test, b"p"), SeqNum(1), b"payload")
        .put_root(PulseNumber(1), b"header and qc");
    store.commit(set).unwrap();
}

#[test]
fn a_flipped_log_entry_is_a_typed_error_and_left_out_of_recovery() {
    let dir = tempfile::tempdir().unwrap();
    seed_store(dir.path());
    flip_stored_value(dir.path(), ColumnFamily::Log, &keys::log_key(SeqNum(2)), 3);
    let store = open(dir.path()).unwrap();
    let error = store.log(SeqNum(2)).unwrap_err();
    assert!(is_corrupt(&error, ColumnFamily::Log), "{error:?}");
    assert!(store.log(SeqNum(1)).unwrap().is_some());
    let recovered = store.recover().unwrap();
    assert_eq!(recovered.corrupt_log, vec![SeqNum(2)]);
    let seqs: Vec<SeqNum> = recovered.log.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, vec![SeqNum(1), SeqNum(3)]);
}

#[test]
fn a_flipped_safety_record_fails_recovery() {
    let dir = tempfile::tempdir().unwrap();
    seed_store(dir.path());
    flip_stored_value(
        dir.path(),
        ColumnFamily::Safety,
        &SafetyKey::View.encode(),
        1,
    );
    let store = open(dir.path()).unwrap();
    assert!(is_corrupt(
        &store.safety(SafetyKey::View).unwrap_err(),
        ColumnFamily::Safety
    ));
    assert!(is_corrupt(
        &store.recover().unwrap_err(),
        ColumnFamily::Safety
    ));
}

#[test]
fn flipped_payloads_and_roots_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    seed_store(dir.path());
    let digest = Digest::of(Domain::Test, b"p");
    flip_stored_value(
        dir.path(),
        ColumnFamily::Payloads,
        &keys::payload_key(&digest),
        2,
    );
    flip_stored_value(
        dir.path(),
        ColumnFamily::Lockchain,
        &keys::root_key(PulseNumber(1)),
        4,
    );
    let store = open(dir.path()).unwrap();
    assert!(is_corrupt(
        &store.payload(&digest).unwrap_err(),
        ColumnFamily::Payloads
    ));
    assert!(is_corrupt(
        &store.root(PulseNumber(1)).unwrap_err(),
        ColumnFamily::Lockchain
    ));
    let range = store.roots(PulseNumber(0), PulseNumber(9)).unwrap_err();
    assert!(is_corrupt(&range, ColumnFamily::Lockchain));
}

/// A distinctive batch that is easy to find in RocksDB's files.
fn marker_batch() -> Vec<u8> {
    b"QLOCK-MARKER-"
        .iter()
        .copied()
        .cycle()
        .take(4096)
        .collect()
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

/// Flips a byte in the middle of the first occurrence of the marker in any
/// file with `extension`; returns whether it found one.
fn flip_marker_in_files(dir: &Path, extension: &str) -> bool {
    let marker = marker_batch();
    for path in files_with_extension(dir, extension) {
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(64).position(|w| w == &marker[..64]) {
            bytes[at + 32] ^= 0x01;
            std::fs::write(&path, bytes).unwrap();
            return true;
        }
    }
    false
}

#[test]
fn a_flipped_byte_in_an_sst_file_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let mut set = WriteSet::new();
    set.put_log(SeqNum(1), &marker_batch(), b"certificate");
    store.commit(set).unwrap();
    drop(store);
    let db = raw_db(dir.path());
    db.flush_cf(db.cf_handle(ColumnFamily::Log.name()).unwrap())
        .unwrap();
    drop(db);
    assert!(
        flip_marker_in_files(dir.path(), "sst"),
        "marker not found in any SST"
    );
    let read = open(dir.path()).and_then(|store| store.log(SeqNum(1)));
    assert!(
        matches!(read, Err(StorageError::RocksCorruption(_))),
        "expected RocksDB corruption, got {read:?}"
    );
}

#[test]
fn a_flipped_byte_inside_the_wal_is_refused_at_open_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    // The marked record is followed by more acknowledged records, so
    // silently stopping the replay at it would lose acknowledged writes.
    for seq in 1..=3 {
        let mut set = WriteSet::new();
        let batch = if seq == 1 {
            marker_batch()
        } else {
            b"later".to_vec()
        };
        set.put_log(SeqNum(seq), &batch, b"certificate");
        store.commit(set).unwrap();
    }
    drop(store);
    assert!(
        flip_marker_in_files(dir.path(), "log"),
        "marker not found in the WAL"
    );
    let opened = open(dir.path());
    assert!(
        matches!(opened, Err(StorageError::RocksCorruption(_))),
        "expected RocksDB corruption at open, got {:?}",
        opened.map(|store| store.log(SeqNum(3)))
    );
}

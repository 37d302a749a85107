//! The key layout of every column family. Integers are big-endian so that
//! RocksDB's byte order is numeric order and range queries and range
//! deletes work on them.

use primitives::{Digest, PulseNumber, SeqNum, ViewNumber};

/// The column families of a replica's database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ColumnFamily {
    /// Consensus safety state, by [`SafetyKey`].
    Safety,
    /// Committed batches with their commit certificates, by seq.
    Log,
    /// Request payloads, by digest.
    Payloads,
    /// `(seq, digest)`: which seq last referenced a payload, so garbage
    /// collection finds payloads below the stable checkpoint without a scan.
    PayloadRefs,
    /// Snapshot manifests and chunks, by `(seq, index)`.
    Snapshots,
    /// Lockchain pulse entries (header + quorum certificate), by
    /// `root:{pulse:020}`.
    Lockchain,
    /// Receipt trees, by `(pulse, seq)`.
    Receipts,
    /// The store's own bookkeeping (the stable checkpoint).
    Meta,
}

impl ColumnFamily {
    /// Every column family.
    pub const ALL: [ColumnFamily; 8] = [
        ColumnFamily::Safety,
        ColumnFamily::Log,
        ColumnFamily::Payloads,
        ColumnFamily::PayloadRefs,
        ColumnFamily::Snapshots,
        ColumnFamily::Lockchain,
        ColumnFamily::Receipts,
        ColumnFamily::Meta,
    ];

    /// The RocksDB name; also hashed into every record's checksum, so a
    /// record copied into another family does not verify.
    pub const fn name(self) -> &'static str {
        match self {
            ColumnFamily::Safety => "safety",
            ColumnFamily::Log => "log",
            ColumnFamily::Payloads => "payloads",
            ColumnFamily::PayloadRefs => "payload_refs",
            ColumnFamily::Snapshots => "snapshots",
            ColumnFamily::Lockchain => "lockchain",
            ColumnFamily::Receipts => "receipts",
            ColumnFamily::Meta => "meta",
        }
    }
}

/// Where a piece of consensus safety state lives: what a replica must not
/// forget across a restart (DESIGN.md step 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SafetyKey {
    /// The current view and the replica's view-change status.
    View,
    /// The PRE-PREPARE accepted for a seq (persisted before PREPARE).
    Accepted(SeqNum),
    /// The prepared certificate for a seq (persisted before COMMIT).
    Prepared(SeqNum),
    /// This replica's own VIEW-CHANGE for a view (persisted before sending).
    ViewChange(ViewNumber),
    /// This replica's own NEW-VIEW for a view, when it was the primary.
    NewView(ViewNumber),
}

const TAG_VIEW: u8 = 0;
const TAG_ACCEPTED: u8 = 1;
const TAG_PREPARED: u8 = 2;
const TAG_VIEW_CHANGE: u8 = 3;
const TAG_NEW_VIEW: u8 = 4;

impl SafetyKey {
    /// The key bytes: a tag, then the number big-endian.
    pub fn encode(self) -> Vec<u8> {
        let (tag, number) = match self {
            SafetyKey::View => return vec![TAG_VIEW],
            SafetyKey::Accepted(seq) => (TAG_ACCEPTED, seq.0),
            SafetyKey::Prepared(seq) => (TAG_PREPARED, seq.0),
            SafetyKey::ViewChange(view) => (TAG_VIEW_CHANGE, view.0),
            SafetyKey::NewView(view) => (TAG_NEW_VIEW, view.0),
        };
        tagged(tag, number)
    }

    /// Parses key bytes; `None` if they are not a safety key.
    pub fn decode(bytes: &[u8]) -> Option<SafetyKey> {
        let (&tag, rest) = bytes.split_first()?;
        if tag == TAG_VIEW {
            return rest.is_empty().then_some(SafetyKey::View);
        }
        let number = u64::from_be_bytes(rest.try_into().ok()?);
        match tag {
            TAG_ACCEPTED => Some(SafetyKey::Accepted(SeqNum(number))),
            TAG_PREPARED => Some(SafetyKey::Prepared(SeqNum(number))),
            TAG_VIEW_CHANGE => Some(SafetyKey::ViewChange(ViewNumber(number))),
            TAG_NEW_VIEW => Some(SafetyKey::NewView(ViewNumber(number))),
            _ => None,
        }
    }

    /// `[start, end)` covering the per-seq safety records with seq ≤ `seq`,
    /// one range per tag.
    pub(crate) fn seq_ranges_through(seq: SeqNum) -> [(Vec<u8>, Vec<u8>); 2] {
        [TAG_ACCEPTED, TAG_PREPARED].map(|tag| (tagged(tag, 0), tagged_end(tag, seq.0)))
    }

    /// `[start, end)` covering the per-view safety records with view <
    /// `view`, one range per tag.
    pub(crate) fn view_ranges_below(view: ViewNumber) -> [(Vec<u8>, Vec<u8>); 2] {
        [TAG_VIEW_CHANGE, TAG_NEW_VIEW].map(|tag| (tagged(tag, 0), tagged(tag, view.0)))
    }
}

fn tagged(tag: u8, number: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(tag);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

/// The exclusive end of the range of `tag` keys with number ≤ `number`.
fn tagged_end(tag: u8, number: u64) -> Vec<u8> {
    match number.checked_add(1) {
        Some(next) => tagged(tag, next),
        None => vec![tag + 1],
    }
}

/// The log key of a seq.
pub fn log_key(seq: SeqNum) -> [u8; 8] {
    seq.0.to_be_bytes()
}

/// The exclusive end of the log keys with seq ≤ `seq`.
pub(crate) fn seq_end(seq: SeqNum) -> Vec<u8> {
    match seq.0.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xFF; 9],
    }
}

/// Parses a big-endian u64 key.
pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// The payload key of a digest.
pub fn payload_key(digest: &Digest) -> [u8; 32] {
    digest.0
}

/// The payload-reference key: `seq ‖ digest`.
pub fn payload_ref_key(seq: SeqNum, digest: &Digest) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..8].copy_from_slice(&seq.0.to_be_bytes());
    key[8..].copy_from_slice(&digest.0);
    key
}

/// Parses a payload-reference key.
pub(crate) fn decode_payload_ref_key(bytes: &[u8]) -> Option<(SeqNum, Digest)> {
    if bytes.len() != 40 {
        return None;
    }
    let seq = decode_u64(&bytes[..8])?;
    Some((SeqNum(seq), Digest(bytes[8..].try_into().ok()?)))
}

const SNAPSHOT_MANIFEST: u8 = 0;
const SNAPSHOT_CHUNK: u8 = 1;

/// The key of a snapshot's manifest: `0 ‖ seq`. Manifests sort before all
/// chunks, so the newest manifest is one seek away.
pub fn snapshot_manifest_key(seq: SeqNum) -> Vec<u8> {
    tagged(SNAPSHOT_MANIFEST, seq.0)
}

/// The key of a snapshot chunk: `1 ‖ seq ‖ index`.
pub fn snapshot_chunk_key(seq: SeqNum, index: u32) -> Vec<u8> {
    let mut key = tagged(SNAPSHOT_CHUNK, seq.0);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// `[start, end)` of every manifest and every chunk of snapshots with seq
/// below `seq`.
pub(crate) fn snapshot_ranges_below(seq: SeqNum) -> [(Vec<u8>, Vec<u8>); 2] {
    [SNAPSHOT_MANIFEST, SNAPSHOT_CHUNK].map(|tag| (tagged(tag, 0), tagged(tag, seq.0)))
}

/// The first key after every manifest key.
pub(crate) fn snapshot_manifests_end() -> Vec<u8> {
    vec![SNAPSHOT_CHUNK]
}

/// The seq of a manifest key; `None` for any other key.
pub(crate) fn decode_snapshot_manifest_key(bytes: &[u8]) -> Option<SeqNum> {
    match bytes.split_first()? {
        (&SNAPSHOT_MANIFEST, rest) => decode_u64(rest).map(SeqNum),
        _ => None,
    }
}

/// The lockchain key of a pulse: `root:{pulse:020}` (ASCII, zero-padded,
/// so byte order is pulse order).
pub fn root_key(pulse: PulseNumber) -> Vec<u8> {
    format!("root:{:020}", pulse.0).into_bytes()
}

/// Parses a lockchain root key.
pub(crate) fn decode_root_key(bytes: &[u8]) -> Option<PulseNumber> {
    let digits = std::str::from_utf8(bytes.strip_prefix(b"root:")?).ok()?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(PulseNumber)
}

/// The receipts key: `pulse ‖ seq`.
pub fn receipts_key(pulse: PulseNumber, seq: SeqNum) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&pulse.0.to_be_bytes());
    key[8..].copy_from_slice(&seq.0.to_be_bytes());
    key
}

/// The meta key of the stable checkpoint.
pub(crate) const META_STABLE: &[u8] = b"stable";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn safety_key() -> impl Strategy<Value = SafetyKey> {
        prop_oneof![
            Just(SafetyKey::View),
            any::<u64>().prop_map(|n| SafetyKey::Accepted(SeqNum(n))),
            any::<u64>().prop_map(|n| SafetyKey::Prepared(SeqNum(n))),
            any::<u64>().prop_map(|n| SafetyKey::ViewChange(ViewNumber(n))),
            any::<u64>().prop_map(|n| SafetyKey::NewView(ViewNumber(n))),
        ]
    }

    proptest! {
        #[test]
        fn safety_keys_round_trip_and_order_like_their_numbers(a in safety_key(), b in safety_key()) {
            prop_assert_eq!(SafetyKey::decode(&a.encode()), Some(a));
            prop_assert_eq!(a.cmp(&b), a.encode().cmp(&b.encode()));
        }

        #[test]
        fn root_keys_round_trip_and_order_like_pulses(a in any::<u64>(), b in any::<u64>()) {
            let (ka, kb) = (root_key(PulseNumber(a)), root_key(PulseNumber(b)));
            prop_assert_eq!(decode_root_key(&ka), Some(PulseNumber(a)));
            prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
        }

        #[test]
        fn seq_ranges_cover_exactly_the_seqs_through(n in any::<u64>(), s in any::<u64>()) {
            let [(start, end), _] = SafetyKey::seq_ranges_through(SeqNum(s));
            let key = SafetyKey::Accepted(SeqNum(n)).encode();
            prop_assert_eq!(start <= key && key < end, n <= s);
        }
    }

    #[test]
    fn root_key_has_the_documented_shape() {
        assert_eq!(
            root_key(PulseNumber(42)),
            b"root:00000000000000000042".to_vec()
        );
        assert_eq!(decode_root_key(b"root:42"), None);
    }
}

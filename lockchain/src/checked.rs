//! A bounded memory of signatures already found valid, shared by the
//! clients of one process.
//!
//! Every reply to a request of one batch carries the same batch statement
//! and, since ed25519 signatures are deterministic, the same signature of
//! each replica over it. A process with many clients (a gateway, a load
//! generator) would otherwise check the same f + 1 signatures once per
//! reply; with this it checks each replica's signature on a batch once.
//! Only successful checks are remembered, keyed by a hash (in
//! [`Domain::CheckedSignature`]) of (domain, key, signature, message), so
//! a hit means exactly that signature by that key over those bytes was
//! verified before.

use primitives::digest::Hasher;
use primitives::{Digest, Domain, PublicKey, Signature};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

/// A memory of `CHECKED_SIGNATURES_MAX` entries: at ≈ 100 bytes each,
/// ≈ 400 KiB, enough for the replies of a few hundred batches in flight.
pub const CHECKED_SIGNATURES_MAX: usize = 4096;

/// What one remembered check is keyed by.
type CheckKey = Digest;

/// Signatures checked before, oldest forgotten first past `max`.
pub struct CheckedSignatures {
    max: usize,
    inner: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    keys: BTreeSet<CheckKey>,
    /// Insertion order, for forgetting the oldest.
    order: VecDeque<CheckKey>,
}

impl std::fmt::Debug for CheckedSignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedSignatures")
            .field("max", &self.max)
            .field("len", &self.len())
            .finish()
    }
}

impl Default for CheckedSignatures {
    fn default() -> Self {
        CheckedSignatures::new(CHECKED_SIGNATURES_MAX)
    }
}

impl CheckedSignatures {
    /// An empty memory of at most `max` (at least 1) checks.
    pub fn new(max: usize) -> CheckedSignatures {
        CheckedSignatures {
            max: max.max(1),
            inner: Mutex::new(Remembered::default()),
        }
    }

    /// Checks remembered now.
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key of one check: every field length-prefixed, so no two
    /// different checks share an input.
    pub(crate) fn key(
        key: &PublicKey,
        domain: Domain,
        message: &[u8],
        signature: &Signature,
    ) -> CheckKey {
        let mut hasher = Hasher::new(Domain::CheckedSignature);
        for field in [
            domain.context().as_bytes(),
            key.as_bytes().as_slice(),
            signature.0.as_slice(),
            message,
        ] {
            hasher.update(&(field.len() as u64).to_le_bytes());
            hasher.update(field);
        }
        hasher.finalize()
    }

    pub(crate) fn contains(&self, key: &CheckKey) -> bool {
        self.lock().keys.contains(key)
    }

    /// Remembers checks that succeeded.
    pub(crate) fn insert_all(&self, keys: impl IntoIterator<Item = CheckKey>) {
        let mut inner = self.lock();
        for key in keys {
            if inner.keys.insert(key) {
                inner.order.push_back(key);
            }
            while inner.order.len() > self.max {
                let oldest = inner.order.pop_front().expect("order is not empty");
                inner.keys.remove(&oldest);
            }
        }
        assert_eq!(inner.keys.len(), inner.order.len());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        // The sets stay consistent at every step, so a panic elsewhere
        // while holding the lock leaves nothing half-done.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

//! The envelope every value is stored in:
//! `format (1 byte) ‖ checksum (32 bytes) ‖ body`, where the checksum is
//! blake3 in [`Domain::StorageRecord`] over the column family name, the key
//! and the body (each length-prefixed). A flipped bit anywhere, a value
//! moved to another key, or a value moved to another column family fails
//! the check.

use crate::error::{CorruptReason, StorageError};
use crate::keys::ColumnFamily;
use primitives::digest::Hasher;
use primitives::{Digest, Domain};

/// The envelope format this code writes and reads.
pub const FORMAT: u8 = 1;
/// Bytes the envelope adds to a body.
pub const OVERHEAD: usize = 1 + 32;

fn checksum(cf: ColumnFamily, key: &[u8], body: &[u8]) -> Digest {
    let mut hasher = Hasher::new(Domain::StorageRecord);
    let name = cf.name().as_bytes();
    hasher
        .update(&(name.len() as u64).to_le_bytes())
        .update(name);
    hasher.update(&(key.len() as u64).to_le_bytes()).update(key);
    hasher
        .update(&(body.len() as u64).to_le_bytes())
        .update(body);
    hasher.finalize()
}

/// Wraps `body` for storage at `key` in `cf`.
pub fn seal(cf: ColumnFamily, key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(OVERHEAD + body.len());
    value.push(FORMAT);
    value.extend_from_slice(checksum(cf, key, body).as_bytes());
    value.extend_from_slice(body);
    value
}

/// Checks a stored value and returns its body, or the typed error saying
/// why it must not be used.
pub fn open<'v>(cf: ColumnFamily, key: &[u8], value: &'v [u8]) -> Result<&'v [u8], StorageError> {
    let corrupt = |reason| corrupt(cf, key, reason);
    if value.len() < OVERHEAD || value[0] != FORMAT {
        return Err(corrupt(CorruptReason::Envelope));
    }
    let (stored, body) = value[1..].split_at(32);
    if stored != checksum(cf, key, body).as_bytes() {
        return Err(corrupt(CorruptReason::Checksum));
    }
    Ok(body)
}

/// The error for a corrupt record at `key` in `cf`.
pub fn corrupt(cf: ColumnFamily, key: &[u8], reason: CorruptReason) -> StorageError {
    StorageError::Corrupt {
        column_family: cf,
        key: hex::encode(key),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sealed_values_open_to_their_body(key in prop::collection::vec(any::<u8>(), 0..40),
                                            body in prop::collection::vec(any::<u8>(), 0..200)) {
            let value = seal(ColumnFamily::Log, &key, &body);
            prop_assert_eq!(open(ColumnFamily::Log, &key, &value).unwrap(), &body[..]);
        }

        #[test]
        fn any_flipped_bit_is_detected(body in prop::collection::vec(any::<u8>(), 0..200),
                                       bit in any::<prop::sample::Index>()) {
            let mut value = seal(ColumnFamily::Log, b"k", &body);
            let bit = bit.index(value.len() * 8);
            value[bit / 8] ^= 1 << (bit % 8);
            let detected = matches!(open(ColumnFamily::Log, b"k", &value), Err(StorageError::Corrupt { .. }));
            prop_assert!(detected);
        }
    }

    #[test]
    fn a_value_under_another_key_or_family_is_detected() {
        let value = seal(ColumnFamily::Log, b"k1", b"body");
        assert!(open(ColumnFamily::Log, b"k2", &value).is_err());
        assert!(open(ColumnFamily::Payloads, b"k1", &value).is_err());
        assert!(open(ColumnFamily::Log, b"k1", &value[..10]).is_err());
    }
}

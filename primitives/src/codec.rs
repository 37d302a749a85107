//! The one wire encoding: bincode 2 over serde, one fixed configuration.
//!
//! Every decode takes a byte limit from the caller (the message type's own
//! bound); the configuration also caps any single allocation a length prefix
//! can ask for at [`FRAME_BYTES_MAX`], so a hostile length never allocates
//! more than the input could justify. Input with bytes left over after the
//! value is refused: a message has exactly one encoding.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The largest frame anything in QLOCK sends or accepts (a state-transfer
/// chunk or a full batch of payloads fits under it).
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<FRAME_BYTES_MAX>,
>;

const CONFIG: Config = bincode::config::standard()
    .with_little_endian()
    .with_variable_int_encoding()
    .with_limit::<FRAME_BYTES_MAX>();

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input is longer than the caller's bound for this message type.
    #[error("input of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// The input length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The bytes are not an encoding of the expected type.
    #[error("malformed input: {0}")]
    Malformed(String),
    /// A value decoded, but bytes were left over.
    #[error("{extra} trailing bytes after the value")]
    TrailingBytes {
        /// How many bytes were left.
        extra: usize,
    },
}

/// Encodes `value`. Encoding a serde-derived value into memory cannot fail;
/// a failure is a bug in a hand-written `Serialize`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENCODE_CAPACITY_INITIAL);
    encode_into(value, &mut out);
    out
}

/// Bytes reserved before encoding: most values QLOCK encodes (table
/// entries, votes, ops) fit, so they are written without the four or five
/// reallocations growing from empty takes (bincode's serde encoder does
/// not size its output first).
const ENCODE_CAPACITY_INITIAL: usize = 128;

/// Encodes `value`, appending to `out` (a reused buffer encodes without
/// allocating).
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    bincode::serde::encode_into_writer(value, Append(out), CONFIG)
        .expect("encoding into memory cannot fail")
}

/// A bincode writer appending to a vector.
struct Append<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for Append<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Decodes exactly one `T` from `bytes`, which may be at most `max_len` long.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max_len: usize) -> Result<T, CodecError> {
    if bytes.len() > max_len.min(FRAME_BYTES_MAX) {
        return Err(CodecError::Oversized {
            len: bytes.len(),
            max: max_len.min(FRAME_BYTES_MAX),
        });
    }
    let (value, read) = bincode::serde::decode_from_slice(bytes, CONFIG)
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes {
            extra: bytes.len() - read,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Empty,
        Scalar(u64, i32, bool),
        Named {
            text: String,
            bytes: Vec<u8>,
            digest: Digest,
        },
        Nested(Vec<Option<(u16, String)>>),
    }

    fn shape() -> impl Strategy<Value = Shape> {
        prop_oneof![
            Just(Shape::Empty),
            (any::<u64>(), any::<i32>(), any::<bool>())
                .prop_map(|(a, b, c)| Shape::Scalar(a, b, c)),
            (
                ".{0,40}",
                prop::collection::vec(any::<u8>(), 0..100),
                any::<[u8; 32]>()
            )
                .prop_map(|(text, bytes, d)| Shape::Named {
                    text,
                    bytes,
                    digest: Digest(d)
                }),
            prop::collection::vec(prop::option::of((any::<u16>(), ".{0,8}")), 0..10)
                .prop_map(Shape::Nested),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(value in shape()) {
            let bytes = encode(&value);
            prop_assert_eq!(decode::<Shape>(&bytes, 1 << 20).unwrap(), value);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Shape>(&bytes, 1 << 20);
            let _ = decode::<Vec<Shape>>(&bytes, 1 << 20);
            let _ = decode::<crate::request::Request>(&bytes, 1 << 20);
        }

        #[test]
        fn trailing_garbage_is_refused(value in shape(), extra in prop::collection::vec(any::<u8>(), 1..8)) {
            let mut bytes = encode(&value);
            bytes.extend_from_slice(&extra);
            prop_assert_eq!(
                decode::<Shape>(&bytes, 1 << 20),
                Err(CodecError::TrailingBytes { extra: extra.len() })
            );
        }
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let bytes = encode(&vec![7u8; 100]);
        assert!(matches!(
            decode::<Vec<u8>>(&bytes, 50),
            Err(CodecError::Oversized { .. })
        ));
    }

    #[test]
    fn hostile_length_prefix_does_not_allocate() {
        // A varint length of 2^60 elements followed by nothing.
        let bytes = [0xFD, 0, 0, 0, 0, 0, 0, 0, 0x10];
        assert!(matches!(
            decode::<Vec<u64>>(&bytes, 1 << 20),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_input_is_malformed() {
        let bytes = encode(&Shape::Scalar(u64::MAX, -1, true));
        assert!(matches!(
            decode::<Shape>(&bytes[..bytes.len() - 1], 1 << 20),
            Err(CodecError::Malformed(_))
        ));
    }
}

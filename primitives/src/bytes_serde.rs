//! Serde for fixed-size byte arrays: hex in human-readable formats (JSON,
//! TOML), raw bytes in the binary wire codec.

use serde::de::{Error as _, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

pub(crate) fn serialize<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&hex::encode(bytes))
    } else {
        serializer.serialize_bytes(bytes)
    }
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    struct ArrayVisitor<const N: usize>;

    impl<const N: usize> Visitor<'_> for ArrayVisitor<N> {
        type Value = [u8; N];

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{N} bytes, or {} hex digits", 2 * N)
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let mut out = [0u8; N];
            hex::decode_to_slice(v, &mut out).map_err(|_| E::invalid_length(v.len(), &self))?;
            Ok(out)
        }
    }

    if deserializer.is_human_readable() {
        deserializer.deserialize_str(ArrayVisitor::<N>)
    } else {
        deserializer
            .deserialize_bytes(ArrayVisitor::<N>)
            .map_err(D::Error::custom)
    }
}

/// Serde for variable-length byte strings: hex in human-readable formats,
/// one length-prefixed run of bytes in the wire codec (not a sequence of
/// one-byte integers).
pub(crate) mod vec {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        struct VecVisitor;

        impl Visitor<'_> for VecVisitor {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes, or hex digits")
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(v.to_vec())
            }

            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(v)
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                hex::decode(v).map_err(|_| E::custom("not hex"))
            }
        }

        if deserializer.is_human_readable() {
            deserializer.deserialize_str(VecVisitor)
        } else {
            deserializer.deserialize_byte_buf(VecVisitor)
        }
    }
}

/// A byte string that serializes as [`vec`] does.
#[derive(
    Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Bytes(#[serde(with = "vec")] pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= 16 {
            write!(f, "Bytes({})", hex::encode(&self.0))
        } else {
            write!(
                f,
                "Bytes({}… {} bytes)",
                hex::encode(&self.0[..8]),
                self.0.len()
            )
        }
    }
}

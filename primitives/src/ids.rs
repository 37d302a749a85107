//! Identifiers, named as in the PBFT paper where it names them.

use crate::digest::Digest;
use crate::keys::PublicKey;
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! counter_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The next value. Panics on overflow: 2^64 of anything is a bug.
            #[must_use]
            pub fn next(self) -> Self {
                Self(self.0.checked_add(1).expect(concat!(stringify!($name), " overflow")))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                Self(v)
            }
        }
    };
}

counter_newtype!(
    /// A replica's index in the cluster configuration, `0..n`.
    ReplicaId(u16),
    "r"
);
counter_newtype!(
    /// A PBFT view; the primary of view `v` is replica `v mod n`.
    ViewNumber(u64),
    "v"
);
counter_newtype!(
    /// A PBFT sequence number: the position of a batch in the total order.
    SeqNum(u64),
    "s"
);
counter_newtype!(
    /// A lockchain pulse: every `K` sequence numbers, one checkpoint.
    PulseNumber(u64),
    "p"
);
counter_newtype!(
    /// A client's request number, checked against its sliding window.
    RequestNumber(u64),
    "#"
);

impl ReplicaId {
    /// The index into per-replica arrays.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A client is its ed25519 public key: nothing else names it.
pub type ClientId = PublicKey;

/// The digest of the cluster configuration: every signed message and
/// request names it, so nothing signed for one cluster counts in another.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClusterId(pub Digest);

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterId({})", &self.0.to_hex()[..8])
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_order_and_advance() {
        assert!(SeqNum(1) < SeqNum(2));
        assert_eq!(SeqNum(1).next(), SeqNum(2));
        assert_eq!(format!("{:?}", ViewNumber(3)), "v3");
    }

    #[test]
    #[should_panic(expected = "SeqNum overflow")]
    fn counter_overflow_is_a_bug() {
        let _ = SeqNum(u64::MAX).next();
    }
}

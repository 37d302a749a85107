//! The wire messages between gossip peers and their size checks.

use crate::config::Config;
use primitives::{codec, Bytes, CodecError, Digest};
use serde::{Deserialize, Serialize};

/// Hops a message has travelled: 1 at the broadcaster's direct peers.
pub type Hop = u16;

/// One gossip message between two replicas. Payload ids are never sent
/// with the payload: the receiver computes them
/// ([`crate::Validator::message_id`]), so a peer cannot attach a valid id
/// to forged bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Eager push of a payload along the tree (also the answer to GRAFT).
    Gossip {
        /// Hops travelled including this one.
        hop: Hop,
        /// The application payload.
        payload: Bytes,
    },
    /// Lazy push: "I have these ids" (with the hop at which each reached
    /// the sender).
    IHave {
        /// The announced ids, at most [`Config::ihave_batch_max`].
        ids: Vec<(Digest, Hop)>,
    },
    /// "Send me this id and make our link eager" (tree repair).
    Graft {
        /// The id the sender misses.
        id: Digest,
    },
    /// "I received a duplicate from you: make our link lazy".
    Prune,
    /// Fetch-by-digest: "send me this payload", without changing the tree.
    FetchRequest {
        /// The id asked for.
        id: Digest,
    },
    /// The answer to a [`Message::FetchRequest`].
    FetchReply {
        /// The payload whose id was asked for.
        payload: Bytes,
    },
}

/// Why a peer's message was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The frame does not decode.
    #[error("undecodable gossip frame: {0}")]
    Codec(#[from] CodecError),
    /// A payload larger than [`Config::payload_bytes_max`].
    #[error("payload of {len} bytes exceeds {max}")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// An IHAVE with more ids than [`Config::ihave_batch_max`].
    #[error("IHAVE of {len} ids exceeds {max}")]
    IHaveTooLarge {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// Bytes of framing around a payload or an IHAVE entry (enum tag, varint
/// lengths): a generous upper bound.
const OVERHEAD_BYTES: usize = 16;

impl Message {
    /// Checks the bounds of [`Config`] on a decoded message.
    pub fn check(&self, config: &Config) -> Result<(), MessageError> {
        match self {
            Message::Gossip { payload, .. } | Message::FetchReply { payload } => {
                if payload.0.len() > config.payload_bytes_max {
                    return Err(MessageError::PayloadTooLarge {
                        len: payload.0.len(),
                        max: config.payload_bytes_max,
                    });
                }
            }
            Message::IHave { ids } => {
                if ids.len() > config.ihave_batch_max {
                    return Err(MessageError::IHaveTooLarge {
                        len: ids.len(),
                        max: config.ihave_batch_max,
                    });
                }
            }
            Message::Graft { .. } | Message::Prune | Message::FetchRequest { .. } => {}
        }
        Ok(())
    }

    /// The largest encoding a message may have under `config`.
    pub fn encoded_len_max(config: &Config) -> usize {
        let ihave = config.ihave_batch_max * (32 + 3 + OVERHEAD_BYTES);
        config.payload_bytes_max.max(ihave) + OVERHEAD_BYTES
    }

    /// Encodes with the shared codec.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes one frame and checks its bounds.
    pub fn decode(bytes: &[u8], config: &Config) -> Result<Message, MessageError> {
        let message: Message = codec::decode(bytes, Self::encoded_len_max(config))?;
        message.check(config)?;
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message() -> impl Strategy<Value = Message> {
        let digest = any::<[u8; 32]>().prop_map(Digest);
        prop_oneof![
            (any::<u16>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(hop, p)| {
                Message::Gossip {
                    hop,
                    payload: Bytes(p),
                }
            }),
            prop::collection::vec((digest.clone(), any::<u16>()), 0..20)
                .prop_map(|ids| Message::IHave { ids }),
            digest.clone().prop_map(|id| Message::Graft { id }),
            Just(Message::Prune),
            digest.prop_map(|id| Message::FetchRequest { id }),
            prop::collection::vec(any::<u8>(), 0..64)
                .prop_map(|p| Message::FetchReply { payload: Bytes(p) }),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(m in message()) {
            let config = Config::default();
            prop_assert_eq!(Message::decode(&m.encode(), &config).unwrap(), m);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = Message::decode(&bytes, &Config::default());
        }
    }

    #[test]
    fn bounds_are_enforced_on_decode() {
        let config = Config {
            payload_bytes_max: 8,
            ihave_batch_max: 2,
            ..Config::default()
        };
        let big = Message::Gossip {
            hop: 1,
            payload: Bytes(vec![0; 9]),
        };
        assert!(matches!(
            Message::decode(&big.encode(), &config),
            Err(MessageError::PayloadTooLarge { len: 9, max: 8 })
        ));
        let long = Message::IHave {
            ids: vec![(Digest::ZERO, 1); 3],
        };
        assert!(matches!(
            Message::decode(&long.encode(), &config),
            Err(MessageError::IHaveTooLarge { len: 3, max: 2 })
        ));
    }
}

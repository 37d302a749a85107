//! The validation hook for gossiped client requests, shared by the replica
//! (`node`) and the simulator so both admit exactly the same payloads.
//!
//! A payload is admitted only if it decodes within the cluster's request
//! limits, names this cluster and carries a valid client signature
//! (Aardvark: signatures first). Its gossip id is the request digest, so
//! dissemination and consensus speak of the same ids.
//!
//! The id is computed from the bytes without decoding (duplicate copies,
//! the common case, cost one hash), and a request that passed the hook is
//! kept until the caller takes it at delivery, so each payload is decoded
//! and its key decompressed once per replica.
//!
//! Payloads announced by [`Validator::prepare`] are checked together (one
//! batch verification, about half the cost per signature); `validate` then
//! admits exactly those bytes without a second check. A batch with a bad
//! signature falls back to one check each, so a liar can at most make a
//! batch cost what checking its payloads one by one costs, plus the batch.

use crate::plumtree::{Invalid, Validator};
use primitives::{ClusterId, Digest, Domain, Request, RequestLimits};
use std::collections::BTreeMap;

/// Verified requests kept for the caller to take at delivery. The caller
/// takes each one right after the `handle` call that delivered it, so this
/// only bounds a caller that does not.
pub const VERIFIED_MAX: usize = 1024;

/// Payloads one [`Validator::prepare`] call checks at most (the rest are
/// checked one by one when validated).
pub const PREPARED_MAX: usize = 256;

/// Checks gossiped requests.
#[derive(Clone, Debug)]
pub struct RequestValidator {
    cluster: ClusterId,
    limits: RequestLimits,
    verified: BTreeMap<Digest, Request>,
    /// Requests checked by the last `prepare`, by id, with the exact
    /// payload bytes checked (the id leaves the signature out).
    prepared: BTreeMap<Digest, (Vec<u8>, Request)>,
}

impl RequestValidator {
    /// A validator for `cluster`'s requests within `limits`.
    pub fn new(cluster: ClusterId, limits: RequestLimits) -> Self {
        RequestValidator {
            cluster,
            limits,
            verified: BTreeMap::new(),
            prepared: BTreeMap::new(),
        }
    }

    /// Decodes and fully verifies a payload.
    fn check(&self, payload: &[u8]) -> Result<(Digest, Request), Invalid> {
        let request = Request::decode(payload, &self.limits).map_err(|e| Invalid(e.to_string()))?;
        let digest = request
            .verify(self.cluster, &self.limits)
            .map_err(|e| Invalid(e.to_string()))?;
        Ok((digest, request))
    }

    /// The decoded request of a payload this hook admitted under `digest`,
    /// once. `None` if it was taken already or evicted (the caller then
    /// decodes the delivered payload itself).
    pub fn take_verified(&mut self, digest: &Digest) -> Option<Request> {
        self.verified.remove(digest)
    }
}

impl Validator for RequestValidator {
    fn message_id(&self, payload: &[u8]) -> Digest {
        // A payload that cannot be a request keeps the default id; the hook
        // refuses it anyway.
        Request::digest_of_encoded(payload)
            .unwrap_or_else(|| Digest::of(Domain::GossipMessage, payload))
    }

    fn validate(&mut self, id: &Digest, payload: &[u8]) -> Result<(), Invalid> {
        let prepared = self
            .prepared
            .remove(id)
            .filter(|(bytes, _)| bytes.as_slice() == payload);
        // Refusals are counted by the core (`Stats::invalid`).
        let (digest, request) = match prepared {
            Some((_, request)) => (*id, request),
            None => self.check(payload)?,
        };
        // Also refuses a non-canonical encoding, whose prefix hash is not
        // the digest of what it decodes to.
        if digest != *id {
            return Err(Invalid("id is not the request digest".into()));
        }
        if self.verified.len() >= VERIFIED_MAX {
            self.verified.pop_first();
        }
        self.verified.insert(digest, request);
        Ok(())
    }

    fn prepare(&mut self, payloads: &[(Digest, &[u8])]) {
        // Hints of an earlier pass that were never validated are dropped.
        self.prepared.clear();
        let mut decoded = Vec::new();
        let mut requests = Vec::new();
        for (id, payload) in payloads.iter().take(PREPARED_MAX) {
            let Ok(request) = Request::decode(payload, &self.limits) else {
                continue;
            };
            decoded.push((*id, payload.to_vec()));
            requests.push(request);
        }
        if requests.len() < 2 {
            // Nothing to share: `validate` checks it as it comes.
            return;
        }
        let verdicts = primitives::request::verify_many(&requests, self.cluster, &self.limits);
        for (((id, bytes), request), verdict) in decoded.into_iter().zip(requests).zip(verdicts) {
            // A non-canonical encoding's id is not its digest: refused by
            // `validate`'s own check.
            if verdict.is_ok_and(|digest| digest == id) {
                self.prepared.insert(id, (bytes, request));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use primitives::{codec, Bytes, KeyPair, RequestBody, RequestNumber};

    fn signed(number: u64) -> (ClusterId, Request) {
        let key = KeyPair::from_seed(&[5; 32]);
        let cluster = ClusterId(Digest([1; 32]));
        let request = RequestBody {
            cluster,
            client: key.public(),
            number: RequestNumber(number),
            atomic: false,
            ops: vec![Bytes(vec![1, 2, 3])],
        }
        .sign(&key);
        (cluster, request)
    }

    #[test]
    fn admits_a_signed_request_under_its_digest_and_hands_it_over_once() {
        let (cluster, request) = signed(1);
        let mut v = RequestValidator::new(cluster, RequestLimits::default());
        let bytes = codec::encode(&request);
        let id = v.message_id(&bytes);
        assert_eq!(id, request.digest());
        v.validate(&id, &bytes).unwrap();
        assert_eq!(v.take_verified(&id), Some(request));
        assert_eq!(v.take_verified(&id), None);
    }

    #[test]
    fn prepared_payloads_get_the_verdicts_of_one_by_one_checks() {
        let (cluster, first) = signed(10);
        let (_, second) = signed(11);
        let (_, third) = signed(12);
        let mut forged = third.clone();
        forged.signature.0[5] ^= 1;
        let genuine_bytes: Vec<Vec<u8>> = [&first, &second, &third]
            .iter()
            .map(|r| codec::encode(*r))
            .collect();
        let forged_bytes = codec::encode(&forged);
        let mut v = RequestValidator::new(cluster, RequestLimits::default());
        let ids: Vec<Digest> = genuine_bytes.iter().map(|b| v.message_id(b)).collect();
        // The forged copy of the third is in the batch, its genuine copy
        // is not: the batch fails and falls back to checks one by one.
        v.prepare(&[
            (ids[0], &genuine_bytes[0]),
            (ids[1], &genuine_bytes[1]),
            (ids[2], &forged_bytes),
            (Digest([4; 32]), b"junk"),
        ]);
        assert_eq!(v.prepared.len(), 2, "the two genuine ones passed");
        assert!(v.validate(&ids[2], &forged_bytes).is_err());
        assert!(v.validate(&ids[0], &genuine_bytes[0]).is_ok());
        assert_eq!(v.take_verified(&ids[0]), Some(first));
        // The prepared hint is for those bytes only: another encoding
        // under the same id (here: the forged one) is checked in full.
        let mut v2 = RequestValidator::new(cluster, RequestLimits::default());
        v2.prepare(&[(ids[1], &genuine_bytes[1]), (ids[2], &genuine_bytes[2])]);
        assert_eq!(v2.prepared.len(), 2);
        assert!(v2.validate(&ids[2], &forged_bytes).is_err());
        assert!(v2.validate(&ids[2], &genuine_bytes[2]).is_ok());
        assert!(v2.validate(&ids[1], &genuine_bytes[1]).is_ok());
        assert_eq!(v2.take_verified(&ids[1]), Some(second));
        assert_eq!(v2.take_verified(&ids[2]), Some(third));
    }

    #[test]
    fn refuses_a_bad_signature_another_cluster_and_a_wrong_id() {
        let (cluster, request) = signed(2);
        let mut v = RequestValidator::new(cluster, RequestLimits::default());
        let mut forged = request.clone();
        forged.signature.0[0] ^= 1;
        let bytes = codec::encode(&forged);
        let id = v.message_id(&bytes);
        assert_eq!(id, request.digest(), "the id leaves the signature out");
        assert!(v.validate(&id, &bytes).is_err());
        assert_eq!(v.take_verified(&id), None);

        let mut other = RequestValidator::new(ClusterId(Digest([2; 32])), RequestLimits::default());
        let bytes = codec::encode(&request);
        assert!(other.validate(&request.digest(), &bytes).is_err());
        assert!(v.validate(&Digest([9; 32]), &bytes).is_err());
        assert_eq!(v.take_verified(&Digest([9; 32])), None);
    }
}

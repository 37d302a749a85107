//! The gossip `Validator`: a disseminated payload is a signed client
//! request, admitted only if it decodes within the limits, names our
//! cluster and carries a valid signature (Aardvark: signatures first). Its
//! gossip id is the request digest, so dissemination and consensus speak of
//! the same ids.

use gossip::{Invalid, Validator};
use primitives::{ClusterId, Digest, Domain, Request, RequestLimits};

/// Checks gossiped requests.
#[derive(Clone, Debug)]
pub struct RequestValidator {
    cluster: ClusterId,
    limits: RequestLimits,
    /// Payloads refused (read by the loop for its metrics).
    pub refused: u64,
}

impl RequestValidator {
    /// A validator for `cluster`'s requests within `limits`.
    pub fn new(cluster: ClusterId, limits: RequestLimits) -> Self {
        RequestValidator {
            cluster,
            limits,
            refused: 0,
        }
    }

    /// Decodes and fully verifies a gossiped request.
    pub fn check(&self, payload: &[u8]) -> Result<(Digest, Request), Invalid> {
        let request = Request::decode(payload, &self.limits).map_err(|e| Invalid(e.to_string()))?;
        let digest = request
            .verify(self.cluster, &self.limits)
            .map_err(|e| Invalid(e.to_string()))?;
        Ok((digest, request))
    }
}

impl Validator for RequestValidator {
    fn message_id(&self, payload: &[u8]) -> Digest {
        // A payload that does not decode keeps the default id; it is
        // refused by `validate` anyway.
        match Request::decode(payload, &self.limits) {
            Ok(request) => request.digest(),
            Err(_) => Digest::of(Domain::GossipMessage, payload),
        }
    }

    fn validate(&mut self, id: &Digest, payload: &[u8]) -> Result<(), Invalid> {
        let verdict = self.check(payload).and_then(|(digest, _)| {
            if digest == *id {
                Ok(())
            } else {
                Err(Invalid("id is not the request digest".into()))
            }
        });
        if verdict.is_err() {
            self.refused += 1;
        }
        verdict
    }
}

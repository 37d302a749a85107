//! ed25519 keys, domain-separated signing and the key file format.
//!
//! Every signature QLOCK makes is over `Digest::of(domain, message)`: the
//! blake3 `derive_key` digest of the message in its [`Domain`]. Two domains
//! never produce the same signed bytes, so a signature can only verify as
//! the type of message it was made for.
//!
//! # Key file format
//!
//! A secret key file is UTF-8 text of exactly two lines:
//!
//! ```text
//! qlock-ed25519-secret-key-v1
//! <64 lower-case hex digits: the 32-byte ed25519 seed>
//! ```
//!
//! It is created with mode 0600 and never overwritten. The public key is
//! derived from the seed.
//!
//! # Verification rules
//!
//! Signatures are made by ed25519-dalek (RFC 8032) and checked here by the
//! ZIP-215 rules (<https://zips.z.cash/zip-0215>, as ed25519-zebra, the
//! reference the tests compare with): `S` must be canonical, `R` any
//! encoding of a curve point, and the cofactored equation
//! `[8][S]B = [8]R + [8][k]A` must hold, `k = SHA-512(R ‖ A ‖ M)` over the
//! encodings as given. What matters for a BFT
//! system is that every replica reaches the same verdict on the same
//! bytes, and that a batch check agrees with the single check: RFC 8032
//! leaves the equation open, and dalek's `verify_batch` (cofactorless,
//! randomised) could pass a signature with a small-order part that
//! `verify_strict` refuses, so a Byzantine signer could have one replica
//! accept what another refuses. Under ZIP-215 both checks agree on every
//! input. Every honestly made signature verifies under every rule.

use crate::digest::{Digest, Domain};
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signer, SigningKey};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha512};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

/// An ed25519 public key. Always a valid, non-weak curve point: decoding
/// rejects anything else, so holders of a `PublicKey` never re-check. Holds
/// the decompressed point, so a check does not decompress it again.
#[derive(Clone, Copy)]
pub struct PublicKey {
    /// The encoding as received (ZIP-215 hashes it as given).
    bytes: [u8; 32],
    /// The decoded point `A`.
    point: EdwardsPoint,
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "crate::bytes_serde")] pub [u8; 64]);

/// Why a signature or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature does not verify for this key, domain and message.
    #[error("signature does not verify")]
    Invalid,
    /// The bytes are not a valid public key (off-curve or of small order).
    #[error("invalid public key")]
    InvalidKey,
    /// A batch's slices have different lengths.
    #[error("batch verification inputs of different lengths")]
    BatchShape,
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or creating the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not in the documented format.
    #[error("key file {path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

const KEY_FILE_HEADER: &str = "qlock-ed25519-secret-key-v1";

/// Sets of the per-thread cache of decompressed public keys (two keys a
/// set): `key_cache_max` = 2 × this.
const KEY_CACHE_SETS: usize = 1024;

/// Decompressed keys, per thread. Decoding a request decompresses its
/// client's key, an ed25519 point decompression (≈ 11 µs, as much as a
/// batched signature check); a replica sees the same clients' keys again
/// and again, and the replicas' own keys in every vote. Only keys that
/// passed [`PublicKey::decompress`] are kept, under their full compressed
/// bytes, so a hit is exactly the result a miss would compute: the cache
/// changes speed, never an outcome. Each set keeps its two most recently
/// used keys; keys chosen to collide (a Byzantine client) cost misses only.
struct KeyCache {
    /// `2 × KEY_CACHE_SETS` slots, way 0 of a set the most recently used;
    /// allocated on first use.
    slots: Vec<Option<PublicKey>>,
}

impl KeyCache {
    fn set_of(bytes: &[u8; 32]) -> usize {
        // Compressed points of honest keys are uniform; a chosen collision
        // only evicts.
        let low = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        (low % KEY_CACHE_SETS as u64) as usize
    }

    fn get_or_decompress(&mut self, bytes: &[u8; 32]) -> Result<PublicKey, SignatureError> {
        if self.slots.is_empty() {
            self.slots = vec![None; 2 * KEY_CACHE_SETS];
        }
        let set = 2 * Self::set_of(bytes);
        let hit = |slot: &Option<PublicKey>| slot.is_some_and(|k| &k.bytes == bytes);
        if hit(&self.slots[set]) {
            return Ok(self.slots[set].expect("hit"));
        }
        if hit(&self.slots[set + 1]) {
            self.slots.swap(set, set + 1);
            return Ok(self.slots[set].expect("hit"));
        }
        let key = PublicKey::decompress(bytes)?;
        self.slots[set + 1] = self.slots[set];
        self.slots[set] = Some(key);
        Ok(key)
    }
}

thread_local! {
    static KEY_CACHE: std::cell::RefCell<KeyCache> =
        const { std::cell::RefCell::new(KeyCache { slots: Vec::new() }) };
}

impl PublicKey {
    /// Parses 32 bytes, refusing off-curve and small-order points. Keys
    /// seen recently on this thread come from a bounded cache instead of
    /// being decompressed again.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, SignatureError> {
        KEY_CACHE.with(|cache| cache.borrow_mut().get_or_decompress(bytes))
    }

    /// The uncached parse: point decompression and the small-order check
    /// (ZIP-215 itself would take a small-order key; no member or client
    /// may have one).
    fn decompress(bytes: &[u8; 32]) -> Result<PublicKey, SignatureError> {
        let point = CompressedEdwardsY(*bytes)
            .decompress()
            .ok_or(SignatureError::InvalidKey)?;
        if point.is_small_order() {
            return Err(SignatureError::InvalidKey);
        }
        Ok(PublicKey {
            bytes: *bytes,
            point,
        })
    }

    /// The compressed point.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Lower-case hex of the compressed point.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// Checks `signature` over `message` in `domain` (ZIP-215 rules, see
    /// the module docs: the same verdict as [`verify_many`] gives).
    pub fn verify(
        &self,
        domain: Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let parsed = Parsed::of(self, &Digest::of(domain, message), signature)
            .ok_or(SignatureError::Invalid)?;
        // [8]R = [8]([S]B − [k]A)
        let expected =
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&parsed.k, &-self.point, &parsed.s);
        if (parsed.r - expected).mul_by_cofactor().is_identity() {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}

/// A signature's parts by the ZIP-215 rules, with its challenge `k`.
struct Parsed {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

impl Parsed {
    /// `None` when `S` is not canonical or `R` is not a curve point.
    fn of(key: &PublicKey, signed: &Digest, signature: &Signature) -> Option<Parsed> {
        let (r_bytes, s_bytes) = signature.0.split_at(32);
        let r_bytes: [u8; 32] = r_bytes.try_into().expect("32 bytes");
        let s_bytes: [u8; 32] = s_bytes.try_into().expect("32 bytes");
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
        let r = CompressedEdwardsY(r_bytes).decompress()?;
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(r_bytes)
                .chain_update(key.bytes)
                .chain_update(signed.as_bytes()),
        );
        Some(Parsed { r, s, k })
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for PublicKey {}

impl std::hash::Hash for PublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", &self.to_hex()[..8])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::bytes_serde::serialize(self.as_bytes(), s)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: [u8; 32] = crate::bytes_serde::deserialize(d)?;
        PublicKey::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", &hex::encode(self.0)[..8])
    }
}

/// An ed25519 key pair. The secret half zeroes itself on drop.
#[derive(Clone)]
pub struct KeyPair(SigningKey);

impl KeyPair {
    /// A fresh key pair from `rng` (the node passes the OS RNG; tests and the
    /// simulator pass a seeded `rand_chacha` RNG).
    pub fn generate(rng: &mut impl CryptoRngCore) -> KeyPair {
        KeyPair(SigningKey::generate(rng))
    }

    /// The key pair of a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> KeyPair {
        KeyPair(SigningKey::from_bytes(seed))
    }

    /// The 32-byte secret seed (for deriving the same identity elsewhere,
    /// e.g. the replica's libp2p key). Handle with care: it is the secret.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey::from_bytes(self.0.verifying_key().as_bytes())
            .expect("the key of a signing key is a valid, non-weak point")
    }

    /// Signs `message` in `domain`.
    pub fn sign(&self, domain: Domain, message: &[u8]) -> Signature {
        let signed = Digest::of(domain, message);
        Signature(self.0.sign(signed.as_bytes()).to_bytes())
    }

    /// Writes the key in the documented format to a new file with mode 0600.
    /// Refuses to overwrite an existing file.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        let text = format!("{KEY_FILE_HEADER}\n{}\n", hex::encode(self.0.to_bytes()));
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads a key written by [`KeyPair::save`].
    pub fn load(path: &Path) -> Result<KeyPair, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let format = |reason| KeyFileError::Format {
            path: path.display().to_string(),
            reason,
        };
        let mut lines = text.lines();
        if lines.next() != Some(KEY_FILE_HEADER) {
            return Err(format("first line is not qlock-ed25519-secret-key-v1"));
        }
        let seed_hex = lines.next().ok_or_else(|| format("missing key line"))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(seed_hex.trim(), &mut seed)
            .map_err(|_| format("key line is not 64 hex digits"))?;
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(format("unexpected text after the key line"));
        }
        Ok(KeyPair::from_seed(&seed))
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "KeyPair({:?})", self.public())
    }
}

/// Verifies many signatures at once (≈ 2× cheaper per signature than one
/// by one, more when signers repeat: their `A` terms are coalesced). On
/// failure it tells which items are bad by checking each one, so the caller
/// can drop exactly those. Under ZIP-215 the batch check passes exactly
/// when every single check would (up to a 2^-128 chance), so the verdicts
/// never depend on which other signatures shared the batch.
///
/// The batch's random 128-bit coefficients `z_i` come from a ChaCha20 RNG
/// seeded with a blake3 hash of every item (as dalek derives them from a
/// transcript): fixed only once the signatures are, and no OS randomness
/// in the sans-IO cores that call this.
///
/// Returns one `Ok`/`Err` per item.
pub fn verify_many(
    items: &[(PublicKey, Domain, &[u8], Signature)],
) -> Vec<Result<(), SignatureError>> {
    if items.is_empty() {
        return Vec::new();
    }
    if batch_holds(items) {
        return vec![Ok(()); items.len()];
    }
    items
        .iter()
        .map(|(key, domain, msg, sig)| key.verify(*domain, msg, sig))
        .collect()
}

/// `[8](−(Σ z_i S_i) B + Σ z_i R_i + Σ_A (Σ_{i by A} z_i k_i) A) = 0`.
fn batch_holds(items: &[(PublicKey, Domain, &[u8], Signature)]) -> bool {
    let mut transcript = blake3::Hasher::new_derive_key("qlock ed25519 batch verification v1");
    let mut parsed = Vec::with_capacity(items.len());
    for (key, domain, msg, sig) in items {
        let signed = Digest::of(*domain, msg);
        transcript.update(&key.bytes);
        transcript.update(&sig.0);
        transcript.update(signed.as_bytes());
        let Some(p) = Parsed::of(key, &signed, sig) else {
            return false;
        };
        parsed.push((key, p));
    }
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(*transcript.finalize().as_bytes());
    let mut b_coeff = Scalar::ZERO;
    let mut r_terms = Vec::with_capacity(parsed.len());
    let mut a_terms: BTreeMap<[u8; 32], (Scalar, EdwardsPoint)> = BTreeMap::new();
    for (key, p) in parsed {
        let z = Scalar::from(u128::from(rng.next_u64()) | (u128::from(rng.next_u64()) << 64));
        b_coeff -= z * p.s;
        r_terms.push((z, p.r));
        let a = a_terms
            .entry(key.bytes)
            .or_insert((Scalar::ZERO, key.point));
        a.0 += z * p.k;
    }
    let scalars = std::iter::once(b_coeff)
        .chain(r_terms.iter().map(|(z, _)| *z))
        .chain(a_terms.values().map(|(c, _)| *c));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(r_terms.iter().map(|(_, r)| *r))
        .chain(a_terms.values().map(|(_, a)| *a));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn keypair(seed: u64) -> KeyPair {
        KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(seed))
    }

    #[test]
    fn signature_verifies_in_its_own_domain_only() {
        let key = keypair(1);
        let sig = key.sign(Domain::Prepare, b"view 1 seq 7");
        assert_eq!(
            key.public().verify(Domain::Prepare, b"view 1 seq 7", &sig),
            Ok(())
        );
        for other in Domain::ALL.iter().filter(|d| **d != Domain::Prepare) {
            assert_eq!(
                key.public().verify(*other, b"view 1 seq 7", &sig),
                Err(SignatureError::Invalid),
                "a PREPARE signature passed as {other:?}"
            );
        }
    }

    #[test]
    fn signature_fails_for_other_message_or_key() {
        let key = keypair(1);
        let sig = key.sign(Domain::Commit, b"a");
        assert!(key.public().verify(Domain::Commit, b"b", &sig).is_err());
        assert!(keypair(2)
            .public()
            .verify(Domain::Commit, b"a", &sig)
            .is_err());
    }

    #[test]
    fn cached_keys_decode_as_uncached_ones_beyond_the_cache_size() {
        // More keys than slots, twice over: every decode, hit or miss,
        // returns the key of exactly those bytes.
        let publics: Vec<[u8; 32]> = (0..3 * KEY_CACHE_SETS as u64)
            .map(|seed| *keypair(seed).public().as_bytes())
            .collect();
        for _ in 0..2 {
            for bytes in &publics {
                assert_eq!(PublicKey::from_bytes(bytes).unwrap().as_bytes(), bytes);
            }
        }
        // Three keys in one set: the third evicts, the evicted one decodes
        // again.
        let mut by_set = std::collections::BTreeMap::<usize, Vec<[u8; 32]>>::new();
        for bytes in &publics {
            by_set
                .entry(KeyCache::set_of(bytes))
                .or_default()
                .push(*bytes);
        }
        let same_set = by_set
            .into_values()
            .find(|keys| keys.len() >= 3)
            .expect("3,072 keys in 1,024 sets: some set holds three");
        for bytes in same_set.iter().chain(&same_set) {
            assert_eq!(PublicKey::from_bytes(bytes).unwrap().as_bytes(), bytes);
        }
    }

    proptest::proptest! {
        #[test]
        fn the_cache_agrees_with_decompression(bytes: [u8; 32], seed: u64) {
            let valid = *keypair(seed).public().as_bytes();
            for b in [bytes, valid, bytes, valid] {
                let cached = PublicKey::from_bytes(&b).map(|k| *k.as_bytes());
                let direct = PublicKey::decompress(&b).map(|k| *k.as_bytes());
                proptest::prop_assert_eq!(cached, direct);
            }
        }
    }

    #[test]
    fn a_refused_key_stays_refused_and_is_not_cached() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for _ in 0..3 {
            assert_eq!(
                PublicKey::from_bytes(&identity),
                Err(SignatureError::InvalidKey)
            );
        }
        let set = 2 * KeyCache::set_of(&identity);
        KEY_CACHE.with(|c| {
            let c = c.borrow();
            assert!(c.slots[set..set + 2]
                .iter()
                .all(|s| s.is_none_or(|k| k.as_bytes() != &identity)));
        });
    }

    #[test]
    fn weak_public_keys_are_refused() {
        // The identity point is of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey::from_bytes(&identity),
            Err(SignatureError::InvalidKey)
        );
    }

    /// Each key's signature over the message beside it, as `verify_many`
    /// items.
    fn signed_items<'m>(
        keys: &[KeyPair],
        msgs: &'m [Vec<u8>],
        domain: Domain,
    ) -> Vec<(PublicKey, Domain, &'m [u8], Signature)> {
        keys.iter()
            .zip(msgs)
            .map(|(k, m)| (k.public(), domain, &m[..], k.sign(domain, m)))
            .collect()
    }

    #[test]
    fn batch_verification_points_at_the_bad_item() {
        let keys: Vec<KeyPair> = (0..5).map(keypair).collect();
        let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
        let mut items = signed_items(&keys, &msgs, Domain::Request);
        assert!(verify_many(&items).iter().all(Result::is_ok));
        items[3].3 .0[0] ^= 1;
        let verdicts = verify_many(&items);
        assert_eq!(verdicts.iter().filter(|v| v.is_err()).count(), 1);
        assert!(verdicts[3].is_err());
    }

    /// A signature made with the secret scalar but a nonce point with a
    /// small-order part, `R = [r]B + T`: the cofactored equation holds,
    /// the cofactorless one does not. A Byzantine signer can make these.
    fn signature_with_torsion(
        seed: u8,
        torsion: usize,
        domain: Domain,
        message: &[u8],
    ) -> (PublicKey, Signature) {
        use curve25519_dalek::{constants, EdwardsPoint, Scalar};
        use sha2::{Digest as _, Sha512};
        let wide = |hash: &[u8]| {
            let mut bytes = [0u8; 64];
            bytes.copy_from_slice(hash);
            Scalar::from_bytes_mod_order_wide(&bytes)
        };
        let a = wide(&Sha512::digest([seed, 1]));
        let public = PublicKey::from_bytes(EdwardsPoint::mul_base(&a).compress().as_bytes())
            .expect("a prime-order point");
        let r = wide(&Sha512::digest([seed, 2]));
        let big_r = (EdwardsPoint::mul_base(&r) + constants::EIGHT_TORSION[torsion]).compress();
        let signed = Digest::of(domain, message);
        let k = wide(
            &Sha512::new()
                .chain_update(big_r.as_bytes())
                .chain_update(public.as_bytes())
                .chain_update(signed.as_bytes())
                .finalize(),
        );
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(big_r.as_bytes());
        bytes[32..].copy_from_slice((r + k * a).as_bytes());
        (public, Signature(bytes))
    }

    /// The verdict of ed25519-zebra, the ZIP-215 reference.
    fn reference_verdict(key: &PublicKey, domain: Domain, message: &[u8], sig: &Signature) -> bool {
        let vk = ed25519_zebra::VerificationKey::try_from(*key.as_bytes()).expect("a curve point");
        let sig = ed25519_zebra::Signature::from_bytes(&sig.0);
        vk.verify(&sig, Digest::of(domain, message).as_bytes())
            .is_ok()
    }

    proptest::proptest! {
        /// Single and batch verdicts equal the reference's on honest
        /// signatures, signatures with any small-order part in `R`, and
        /// either of those with one bit flipped anywhere.
        #[test]
        fn verdicts_match_the_zip215_reference(
            seed in 0u8..200,
            size in 1usize..6,
            torsion in proptest::option::of(0usize..8),
            flip in proptest::option::of((0usize..6, 0usize..512)),
        ) {
            let messages: Vec<Vec<u8>> = (0..size).map(|i| vec![seed, i as u8]).collect();
            let mut items: Vec<(PublicKey, Domain, &[u8], Signature)> = messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let k = keypair(u64::from(seed) * 8 + i as u64 % 3);
                    (k.public(), Domain::Commit, &m[..], k.sign(Domain::Commit, m))
                })
                .collect();
            if let Some(t) = torsion {
                let (public, sig) = signature_with_torsion(seed, t, Domain::Commit, &messages[0]);
                items[0] = (public, Domain::Commit, &messages[0][..], sig);
            }
            if let Some((item, bit)) = flip {
                let item = item % size;
                items[item].3 .0[bit / 8] ^= 1 << (bit % 8);
            }
            let singles: Vec<bool> = items
                .iter()
                .map(|(k, d, m, s)| k.verify(*d, m, s).is_ok())
                .collect();
            let reference: Vec<bool> = items
                .iter()
                .map(|(k, d, m, s)| reference_verdict(k, *d, m, s))
                .collect();
            proptest::prop_assert_eq!(&singles, &reference);
            let batched: Vec<bool> = verify_many(&items).iter().map(Result::is_ok).collect();
            proptest::prop_assert_eq!(&batched, &singles);
        }
    }

    #[test]
    fn a_signature_with_a_torsion_part_gets_one_verdict_alone_and_in_any_batch() {
        let message = b"view 3 seq 9";
        let (public, crafted) = signature_with_torsion(1, 1, Domain::Commit, message);
        // RFC 8032's cofactorless check (dalek's verify_strict) refuses it,
        // and dalek's cofactorless batch could pass it: the split verdict
        // ZIP-215 exists to rule out.
        let dalek = ed25519_dalek::VerifyingKey::from_bytes(public.as_bytes()).unwrap();
        let signed = Digest::of(Domain::Commit, message);
        let dalek_sig = ed25519_dalek::Signature::from_bytes(&crafted.0);
        assert!(dalek.verify_strict(signed.as_bytes(), &dalek_sig).is_err());

        assert_eq!(public.verify(Domain::Commit, message, &crafted), Ok(()));
        let keys: Vec<KeyPair> = (0..6).map(keypair).collect();
        let msgs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 12]).collect();
        for company in 0..keys.len() {
            let mut items = signed_items(&keys[..company], &msgs, Domain::Commit);
            items.insert(company / 2, (public, Domain::Commit, &message[..], crafted));
            assert!(
                verify_many(&items).iter().all(Result::is_ok),
                "batch of {} disagrees with the single check",
                items.len()
            );
        }
        // The same signature over other bytes is refused alone and batched.
        assert!(public.verify(Domain::Commit, b"other", &crafted).is_err());
        let k = &keys[0];
        let items = [
            (
                k.public(),
                Domain::Commit,
                &b"x"[..],
                k.sign(Domain::Commit, b"x"),
            ),
            (public, Domain::Commit, &b"other"[..], crafted),
        ];
        let verdicts = verify_many(&items);
        assert!(verdicts[0].is_ok() && verdicts[1].is_err());
    }

    #[test]
    fn a_non_canonical_s_is_refused_alone_and_batched() {
        let key = keypair(4);
        let mut sig = key.sign(Domain::Prepare, b"m");
        // S + l is the same residue but not the canonical encoding.
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (s_byte, l_byte) in sig.0[32..].iter_mut().zip(l) {
            let sum = u16::from(*s_byte) + u16::from(l_byte) + carry;
            *s_byte = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "S + l < 2^254");
        assert!(key.public().verify(Domain::Prepare, b"m", &sig).is_err());
        let other = keypair(5);
        let items = [
            (
                other.public(),
                Domain::Prepare,
                &b"n"[..],
                other.sign(Domain::Prepare, b"n"),
            ),
            (key.public(), Domain::Prepare, &b"m"[..], sig),
        ];
        let verdicts = verify_many(&items);
        assert!(verdicts[0].is_ok() && verdicts[1].is_err());
    }

    #[test]
    fn key_file_round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.key");
        let key = keypair(9);
        key.save(&path).unwrap();
        assert_eq!(KeyPair::load(&path).unwrap().public(), key.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            key.save(&path).is_err(),
            "an existing key file must not be overwritten"
        );
    }

    #[test]
    fn malformed_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "qlock-ed25519-secret-key-v1\nnothex\n").unwrap();
        assert!(matches!(
            KeyPair::load(&path),
            Err(KeyFileError::Format { .. })
        ));
        std::fs::write(&path, "something else\n").unwrap();
        assert!(matches!(
            KeyPair::load(&path),
            Err(KeyFileError::Format { .. })
        ));
    }

    #[test]
    fn public_key_serde_round_trips_as_hex_and_bytes() {
        let pk = keypair(3).public();
        let bytes = crate::codec::encode(&pk);
        assert_eq!(crate::codec::decode::<PublicKey>(&bytes, 64).unwrap(), pk);
    }
}

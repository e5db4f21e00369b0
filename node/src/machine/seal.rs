//! Signing history entries: every entry an office applies is signed by its replicas with the
//! office's Ed25519 key (made by `federation init`, `secrets/<office>/office.key`). Ed25519 is
//! deterministic, so every replica writes the same bytes; the case engine never holds the key.

use liandong_domain::{EntrySigner, OfficeCode};
use ring::signature::Ed25519KeyPair;

/// An office's signing key.
pub struct OfficeSigner {
    office: OfficeCode,
    key: Ed25519KeyPair,
}

impl OfficeSigner {
    pub fn new(office: OfficeCode, key: Ed25519KeyPair) -> OfficeSigner {
        OfficeSigner { office, key }
    }

    /// The public half, as `verify` looks it up.
    pub fn public_key(&self) -> Vec<u8> {
        crate::secrets::public_key(&self.key)
    }
}

impl EntrySigner for OfficeSigner {
    fn office(&self) -> &OfficeCode {
        &self.office
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).as_ref().to_vec()
    }
}

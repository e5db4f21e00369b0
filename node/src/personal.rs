//! Personal data sealed at rest, field by field, at the boundary of an office.
//!
//! A petitioner's name, ID number, phone and address never reach an office's Raft log or RocksDB in
//! clear: the host that proposes them seals each field first, and the state machine and the
//! case engine keep the sealed bytes as they are ([`liandong_domain::Personal`]).
//!
//! - **Filing** (`api/cases.rs`): the API computes the petitioner key from the clear ID number
//!   and seals the fields, then proposes the sealed registration with its key.
//! - **Receiving** a handoff or an escalation (`federation/service.rs`): personal data crosses the
//!   wire in clear (mutual TLS), is checked clear by the link protocol, and is sealed under the
//!   receiving office's key before the batch is proposed.
//! - **Sending** (`federation/pump.rs`): the outbox holds the sender's sealed bytes; the pump opens
//!   them when it builds the wire message.
//! - **Reading** (`case show`, a write's reply): the API opens the case for the officer it
//!   already allowed to read it.
//!
//! **The seal.** XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) under the office's data key
//! (`secrets/<office>/data.key`), with a random 24-byte nonce chosen before proposing, so every
//! replica stores the same bytes. A sealed value is
//! `[0x01 mark][version 1][key id, 4 bytes][nonce, 24 bytes][ciphertext and 16-byte tag]`; the key
//! id (the first four bytes of SHA-256 over the key) names the key it was sealed under, so keys
//! can be rotated later. The associated data binds the value to its office, its petitioner (the
//! petitioner key, which the case keeps in clear and its history records) and its field: a sealed
//! value moved to another office, another petitioner's case or another field does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use liandong_domain::group::{Group, Member};
use liandong_domain::message::{Body, CaseDocument, Envelope};
use liandong_domain::{Case, OfficeCode, Personal, Registration, Sealed, SEALED_MARK};
use sha2::{Digest, Sha256};

use crate::secrets::DATA_KEY_BYTES;

/// The version of the sealed form this build writes and reads.
pub const SEAL_VERSION: u8 = 1;
/// Bytes of an XChaCha20 nonce.
pub const NONCE_BYTES: usize = 24;
/// Bytes before the ciphertext: mark, version, key id, nonce.
pub const HEADER_BYTES: usize = 2 + 4 + NONCE_BYTES;

/// Which personal field a value is: part of what the seal binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    IdNumber,
    Phone,
    /// A group petition's document type (of its representative; a member's is labelled with the
    /// member, see [`member_label`]).
    IdType,
    Nationality,
    /// The petitioner's address (a case's [`liandong_domain::PetitionerExtra`]).
    Address,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::IdNumber => "id_number",
            Field::Phone => "phone",
            Field::IdType => "id_type",
            Field::Nationality => "nationality",
            Field::Address => "address",
        }
    }
}

/// The field a seal binds for `field` of a group's member `index` (0-based): `member.3.name`,
/// so that members' values cannot be swapped unnoticed.
pub fn member_label(index: usize, field: Field) -> String {
    format!("member.{index}.{}", field.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("{field}: sealed in format {version}; this build reads format {SEAL_VERSION}")]
    Version { field: &'static str, version: u8 },
    #[error("{field}: sealed under key {sealed:08x}; office {office} has key {current:08x}")]
    UnknownKey {
        field: &'static str,
        office: OfficeCode,
        sealed: u32,
        current: u32,
    },
    #[error("{field}: does not open under office {office}'s key (altered, or moved from another office, petitioner or field)")]
    Open {
        field: &'static str,
        office: OfficeCode,
    },
    #[error("{field}: arrived sealed; personal data crosses between offices in clear")]
    ArrivedSealed { field: &'static str },
    #[error("{0}")]
    Case(String),
}

/// The hosts' side of one office's personal data: its data key, and the federation's
/// petitioner-key secret (the key of a filing is computed before its fields are sealed).
pub struct OfficeSeal {
    office: OfficeCode,
    key_id: u32,
    cipher: XChaCha20Poly1305,
    petitioner_secret: Vec<u8>,
    /// Derives the nonces of values sealed where they lie ([`OfficeSeal::reseal_case`]).
    nonce_key: ring::hmac::Key,
}

impl std::fmt::Debug for OfficeSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OfficeSeal({}, key {:08x})", self.office, self.key_id)
    }
}

/// The id of a data key: the first four bytes of its SHA-256.
pub fn key_id(key: &[u8; DATA_KEY_BYTES]) -> u32 {
    let digest = Sha256::digest(key);
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn associated_data(office: &OfficeCode, petitioner_key: &str, field: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(64 + petitioner_key.len());
    ad.extend_from_slice(b"liandong personal v1\0");
    ad.extend_from_slice(office.as_str().as_bytes());
    ad.push(0);
    ad.extend_from_slice(petitioner_key.as_bytes());
    ad.push(0);
    ad.extend_from_slice(field.as_bytes());
    ad
}

impl OfficeSeal {
    pub fn new(
        office: OfficeCode,
        data_key: &[u8; DATA_KEY_BYTES],
        petitioner_secret: Vec<u8>,
    ) -> OfficeSeal {
        OfficeSeal {
            key_id: key_id(data_key),
            cipher: XChaCha20Poly1305::new(data_key.into()),
            nonce_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, data_key),
            office,
            petitioner_secret,
        }
    }

    pub fn office(&self) -> &OfficeCode {
        &self.office
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Whether `given` is the verification code of `case_id` ([`status_code`]).
    pub fn status_code_matches(&self, case_id: &str, given: &str) -> bool {
        status_code_matches(&self.petitioner_secret, case_id, given)
    }

    /// The petitioner's verification code of `case_id` ([`status_code`]).
    pub fn status_code(&self, case_id: &str) -> String {
        status_code(&self.petitioner_secret, case_id)
    }

    /// `clear` sealed for `field` of `petitioner_key`'s case at this office.
    pub fn seal(&self, petitioner_key: &str, field: Field, clear: &str) -> Sealed {
        self.seal_labelled(petitioner_key, field.as_str(), clear)
    }

    /// [`OfficeSeal::seal`] for a field named by its label (a group member's, [`member_label`]).
    fn seal_labelled(&self, petitioner_key: &str, field: &str, clear: &str) -> Sealed {
        // Clear values are bounded (64 characters at most), so their seal is too.
        self.seal_with_nonce(petitioner_key, field, clear, rand::random())
            .expect("a bounded clear value seals within the sealed bound")
    }

    /// The nonce a value stored in clear by an earlier build is sealed with where it lies
    /// ([`OfficeSeal::reseal_case`]): every replica seals it on its own, so the nonce is derived
    /// (an HMAC under the data key of the case, the field and the clear value) for all of them
    /// to write the same bytes. Distinct values or fields never share a nonce.
    fn derived_nonce(&self, case_id: &str, label: &str, clear: &str) -> [u8; NONCE_BYTES] {
        let mut message = b"liandong reseal v1\0".to_vec();
        for part in [case_id, label, clear] {
            message.extend_from_slice(&(part.len() as u64).to_be_bytes());
            message.extend_from_slice(part.as_bytes());
        }
        let tag = ring::hmac::sign(&self.nonce_key, &message);
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&tag.as_ref()[..NONCE_BYTES]);
        nonce
    }

    /// `clear` sealed with `nonce`; None when it is too long to seal.
    fn seal_with_nonce(
        &self,
        petitioner_key: &str,
        field: &str,
        clear: &str,
        nonce: [u8; NONCE_BYTES],
    ) -> Option<Sealed> {
        let ad = associated_data(&self.office, petitioner_key, field);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: clear.as_bytes(),
                    aad: &ad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message under 256 GiB");
        let mut bytes = Vec::with_capacity(HEADER_BYTES + ciphertext.len());
        bytes.push(SEALED_MARK);
        bytes.push(SEAL_VERSION);
        bytes.extend_from_slice(&self.key_id.to_be_bytes());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        Sealed::from_bytes(bytes).ok()
    }

    /// Seals, where it lies, one clear value of `case_id`'s petitioner an earlier build stored
    /// outside the case (an SMS notice's phone), as [`OfficeSeal::reseal_case`] does; whether it
    /// sealed it (an empty or too long value stays as it is).
    pub fn reseal_value(
        &self,
        case_id: &str,
        petitioner_key: &str,
        field: Field,
        value: &mut Personal,
    ) -> bool {
        let Personal::Clear(text) = value else {
            return false;
        };
        if text.is_empty() {
            return false;
        }
        let nonce = self.derived_nonce(case_id, field.as_str(), text);
        match self.seal_with_nonce(petitioner_key, field.as_str(), text, nonce) {
            Some(sealed) => {
                *value = Personal::Sealed(sealed);
                true
            }
            None => false,
        }
    }

    /// Seals, where it lies, every personal field of `case` an earlier build stored in clear
    /// (a sealed one stays as it is), with derived nonces ([`OfficeSeal::derived_nonce`]):
    /// replicas that do it on their own write the same bytes. Returns how many fields it sealed;
    /// a value too long to seal stays clear (returned apart, by its field).
    pub fn reseal_case(&self, case: &mut Case) -> (usize, Vec<String>) {
        let key = case.petitioner_key.clone();
        let id = case.id.to_string();
        let mut sealed = 0;
        let mut left = Vec::new();
        let mut one = |label: &str, value: &mut Personal| {
            if let Personal::Clear(text) = value {
                let nonce = self.derived_nonce(&id, label, text);
                match self.seal_with_nonce(&key, label, text, nonce) {
                    Some(seal) => {
                        *value = Personal::Sealed(seal);
                        sealed += 1;
                    }
                    None => left.push(label.to_string()),
                }
            }
        };
        if let Some(petitioner) = &mut case.petitioner {
            one(Field::Name.as_str(), &mut petitioner.name);
            one(Field::IdNumber.as_str(), &mut petitioner.id_number);
            if let Some(phone) = &mut petitioner.phone {
                one(Field::Phone.as_str(), phone);
            }
        }
        if let Some(address) = case.address_mut() {
            one(Field::Address.as_str(), address);
        }
        if let Some(group) = &mut case.group {
            one(Field::IdType.as_str(), &mut group.id_type);
            if let Some(nationality) = &mut group.nationality {
                one(Field::Nationality.as_str(), nationality);
            }
            for (index, member) in group.members.iter_mut().enumerate() {
                for (field, value) in member_fields(member) {
                    one(&member_label(index, field), value);
                }
            }
        }
        (sealed, left)
    }

    /// The clear text of `sealed`, which must be `field` of `petitioner_key`'s case sealed here.
    pub fn open(
        &self,
        petitioner_key: &str,
        field: Field,
        sealed: &Sealed,
    ) -> Result<String, SealError> {
        self.open_labelled(petitioner_key, field.as_str(), field.as_str(), sealed)
    }

    /// [`OfficeSeal::open`] for a field named by its label; `name` names it in errors.
    fn open_labelled(
        &self,
        petitioner_key: &str,
        label: &str,
        name: &'static str,
        sealed: &Sealed,
    ) -> Result<String, SealError> {
        let bytes = sealed.bytes();
        let open_error = || SealError::Open {
            field: name,
            office: self.office.clone(),
        };
        if bytes.len() < HEADER_BYTES {
            return Err(open_error());
        }
        if bytes[1] != SEAL_VERSION {
            return Err(SealError::Version {
                field: name,
                version: bytes[1],
            });
        }
        let sealed_key = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        if sealed_key != self.key_id {
            return Err(SealError::UnknownKey {
                field: name,
                office: self.office.clone(),
                sealed: sealed_key,
                current: self.key_id,
            });
        }
        let ad = associated_data(&self.office, petitioner_key, label);
        let clear = self
            .cipher
            .decrypt(
                XNonce::from_slice(&bytes[6..HEADER_BYTES]),
                Payload {
                    msg: &bytes[HEADER_BYTES..],
                    aad: &ad,
                },
            )
            .map_err(|_| open_error())?;
        String::from_utf8(clear).map_err(|_| open_error())
    }

    /// A clear value sealed; a sealed one as it is (`ArrivedSealed` when `refuse_sealed`).
    fn seal_value(
        &self,
        petitioner_key: &str,
        field: Field,
        value: &mut Personal,
        refuse_sealed: bool,
    ) -> Result<(), SealError> {
        self.seal_value_as(petitioner_key, field.as_str(), field, value, refuse_sealed)
    }

    /// [`OfficeSeal::seal_value`] under `label` (a member's field, [`member_label`]).
    fn seal_value_as(
        &self,
        petitioner_key: &str,
        label: &str,
        field: Field,
        value: &mut Personal,
        refuse_sealed: bool,
    ) -> Result<(), SealError> {
        match value {
            Personal::Clear(text) => {
                *value = Personal::Sealed(self.seal_labelled(petitioner_key, label, text));
                Ok(())
            }
            Personal::Sealed(_) if refuse_sealed => Err(SealError::ArrivedSealed {
                field: field.as_str(),
            }),
            Personal::Sealed(_) => Ok(()),
        }
    }

    fn open_value(
        &self,
        petitioner_key: &str,
        field: Field,
        value: &mut Personal,
    ) -> Result<(), SealError> {
        self.open_value_as(petitioner_key, field.as_str(), field, value)
    }

    fn open_value_as(
        &self,
        petitioner_key: &str,
        label: &str,
        field: Field,
        value: &mut Personal,
    ) -> Result<(), SealError> {
        if let Personal::Sealed(sealed) = value {
            *value = Personal::Clear(self.open_labelled(
                petitioner_key,
                label,
                field.as_str(),
                sealed,
            )?);
        }
        Ok(())
    }

    /// Every personal field of a group sealed (`refuse_sealed`: a sealed one is refused, as
    /// personal data arrives clear).
    fn seal_group(
        &self,
        petitioner_key: &str,
        group: &mut Group,
        refuse_sealed: bool,
    ) -> Result<(), SealError> {
        self.seal_value(
            petitioner_key,
            Field::IdType,
            &mut group.id_type,
            refuse_sealed,
        )?;
        if let Some(nationality) = &mut group.nationality {
            self.seal_value(
                petitioner_key,
                Field::Nationality,
                nationality,
                refuse_sealed,
            )?;
        }
        for (index, member) in group.members.iter_mut().enumerate() {
            for (field, value) in member_fields(member) {
                let label = member_label(index, field);
                self.seal_value_as(petitioner_key, &label, field, value, refuse_sealed)?;
            }
        }
        Ok(())
    }

    /// Every sealed field of a group opened.
    fn open_group(&self, petitioner_key: &str, group: &mut Group) -> Result<(), SealError> {
        self.open_value(petitioner_key, Field::IdType, &mut group.id_type)?;
        if let Some(nationality) = &mut group.nationality {
            self.open_value(petitioner_key, Field::Nationality, nationality)?;
        }
        for (index, member) in group.members.iter_mut().enumerate() {
            for (field, value) in member_fields(member) {
                let label = member_label(index, field);
                self.open_value_as(petitioner_key, &label, field, value)?;
            }
        }
        Ok(())
    }

    /// The petitioner key of a group filing (from its representative's clear document: type
    /// and number), and the registration and the group with every personal field sealed: what
    /// a group filing proposes ([`crate::raft::types::Operation::FileGroup`]).
    pub fn seal_group_filing(
        &self,
        registration: &mut Registration,
        group: &mut Group,
    ) -> Result<String, SealError> {
        let (Some(id_number), Some(id_type)) =
            (registration.petitioner_id.clear(), group.id_type.clear())
        else {
            return Err(SealError::ArrivedSealed { field: "id_number" });
        };
        let id_type: liandong_domain::IdType = id_type
            .parse()
            .map_err(|e: liandong_domain::DomainError| SealError::Case(e.to_string()))?;
        let normalised = liandong_domain::normalise_id_number(id_number);
        let key = liandong_domain::document_key(&self.petitioner_secret, id_type, &normalised);
        registration.petitioner_id = Personal::Clear(normalised);
        self.seal_value(&key, Field::IdNumber, &mut registration.petitioner_id, true)?;
        self.seal_value(&key, Field::Name, &mut registration.name, true)?;
        if let Some(phone) = &mut registration.phone {
            self.seal_value(&key, Field::Phone, phone, true)?;
        }
        if let Some(address) = &mut registration.address {
            self.seal_value(&key, Field::Address, address, true)?;
        }
        self.seal_group(&key, group, true)?;
        Ok(key)
    }

    /// The petitioner key of a registration (from its clear ID number), and the registration
    /// with its personal fields sealed: what a filing proposes.
    pub fn seal_registration(&self, registration: &mut Registration) -> Result<String, SealError> {
        let Some(id_number) = registration.petitioner_id.clear() else {
            return Err(SealError::ArrivedSealed { field: "id_number" });
        };
        let normalised = liandong_domain::normalise_id_number(id_number);
        let key = liandong_domain::petitioner_key(&self.petitioner_secret, &normalised);
        registration.petitioner_id = Personal::Clear(normalised);
        self.seal_value(&key, Field::IdNumber, &mut registration.petitioner_id, true)?;
        self.seal_value(&key, Field::Name, &mut registration.name, true)?;
        if let Some(phone) = &mut registration.phone {
            self.seal_value(&key, Field::Phone, phone, true)?;
        }
        if let Some(address) = &mut registration.address {
            self.seal_value(&key, Field::Address, address, true)?;
        }
        Ok(key)
    }

    /// `case` with its petitioner's clear fields sealed here (a case received from another
    /// office): `ArrivedSealed` if any came sealed.
    pub fn seal_case(&self, case: &mut Case) -> Result<(), SealError> {
        let key = case.petitioner_key.clone();
        if let Some(petitioner) = &mut case.petitioner {
            self.seal_value(&key, Field::Name, &mut petitioner.name, true)?;
            self.seal_value(&key, Field::IdNumber, &mut petitioner.id_number, true)?;
            if let Some(phone) = &mut petitioner.phone {
                self.seal_value(&key, Field::Phone, phone, true)?;
            }
        }
        if let Some(address) = case.address_mut() {
            self.seal_value(&key, Field::Address, address, true)?;
        }
        if let Some(group) = &mut case.group {
            self.seal_group(&key, group, true)?;
        }
        Ok(())
    }

    /// `case` with its petitioner opened (clear fields, from older builds, stay as they are).
    pub fn open_case(&self, case: &mut Case) -> Result<(), SealError> {
        let key = case.petitioner_key.clone();
        if let Some(petitioner) = &mut case.petitioner {
            self.open_value(&key, Field::Name, &mut petitioner.name)?;
            self.open_value(&key, Field::IdNumber, &mut petitioner.id_number)?;
            if let Some(phone) = &mut petitioner.phone {
                self.open_value(&key, Field::Phone, phone)?;
            }
        }
        if let Some(address) = case.address_mut() {
            self.open_value(&key, Field::Address, address)?;
        }
        if let Some(group) = &mut case.group {
            self.open_group(&key, group)?;
        }
        Ok(())
    }

    /// An encoded case document with its petitioner opened, for a caller allowed to read it.
    pub fn open_document(&self, bytes: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut case = Case::from_bytes(bytes).map_err(|e| SealError::Case(e.to_string()))?;
        if !has_sealed(&case) {
            return Ok(bytes.to_vec());
        }
        self.open_case(&mut case)?;
        Ok(case.to_bytes())
    }

    /// `envelope` as it goes on the wire: a carried case's petitioner opened.
    pub fn open_envelope(&self, envelope: &mut Envelope) -> Result<(), SealError> {
        self.rewrite_carried(envelope, |case| self.open_case(case))
    }

    /// `envelope` as it goes into this office's log: a carried case's petitioner sealed here.
    pub fn seal_envelope(&self, envelope: &mut Envelope) -> Result<(), SealError> {
        self.rewrite_carried(envelope, |case| self.seal_case(case))
    }

    fn rewrite_carried(
        &self,
        envelope: &mut Envelope,
        change: impl FnOnce(&mut Case) -> Result<(), SealError>,
    ) -> Result<(), SealError> {
        let document = match &mut envelope.body {
            Body::Handoff { case } | Body::Escalation { case, .. } => case,
            _ => return Ok(()),
        };
        let mut case = document
            .case()
            .map_err(|e| SealError::Case(e.to_string()))?;
        if case.petitioner.is_none() {
            return Ok(());
        }
        change(&mut case)?;
        *document = CaseDocument::of(&case);
        Ok(())
    }
}

/// Digits of a petitioner's verification code.
pub const STATUS_CODE_DIGITS: usize = 8;

/// The verification code a petitioner is given with a case, to read its status and evaluate
/// its reply on the public surface: [`STATUS_CODE_DIGITS`] decimal digits of an HMAC-SHA256 of
/// the case id under the federation's petitioner-key secret. Every host of every office can
/// check it without a read (so a wrong code and an unknown case are refused alike, at the same
/// cost), and it follows the case through transfers and assignments unchanged.
pub fn status_code(petitioner_secret: &[u8], case_id: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, petitioner_secret);
    let mut message = b"liandong status code v1\0".to_vec();
    message.extend_from_slice(case_id.as_bytes());
    let tag = ring::hmac::sign(&key, &message);
    let mut first = [0u8; 8];
    first.copy_from_slice(&tag.as_ref()[..8]);
    let number = u64::from_be_bytes(first) % 10u64.pow(STATUS_CODE_DIGITS as u32);
    format!("{number:0width$}", width = STATUS_CODE_DIGITS)
}

/// Whether `given` is `case_id`'s verification code (compared in constant time).
pub fn status_code_matches(petitioner_secret: &[u8], case_id: &str, given: &str) -> bool {
    let expected = status_code(petitioner_secret, case_id);
    let given = given.trim().as_bytes();
    given.len() == expected.len()
        && expected
            .bytes()
            .zip(given)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

/// Whether any of `case`'s personal fields is sealed.
pub fn has_sealed(case: &Case) -> bool {
    case.petitioner.as_ref().is_some_and(|p| {
        p.name.is_sealed()
            || p.id_number.is_sealed()
            || p.phone.as_ref().is_some_and(Personal::is_sealed)
    }) || case.address().is_some_and(Personal::is_sealed)
        || case.group.as_ref().is_some_and(group_has_sealed)
}

fn group_has_sealed(group: &Group) -> bool {
    group.id_type.is_sealed()
        || group.nationality.as_ref().is_some_and(Personal::is_sealed)
        || group.members.iter().any(|member| {
            [&member.id_type, &member.id_number, &member.name]
                .into_iter()
                .chain(member.phone.as_ref())
                .chain(member.nationality.as_ref())
                .any(Personal::is_sealed)
        })
}

/// A member's personal fields, each with the field it is.
fn member_fields(member: &mut Member) -> Vec<(Field, &mut Personal)> {
    let mut fields = vec![
        (Field::IdType, &mut member.id_type),
        (Field::IdNumber, &mut member.id_number),
        (Field::Name, &mut member.name),
    ];
    if let Some(phone) = &mut member.phone {
        fields.push((Field::Phone, phone));
    }
    if let Some(nationality) = &mut member.nationality {
        fields.push((Field::Nationality, nationality));
    }
    fields
}

/// Where a carried case's petitioner arrived sealed: personal data crosses in clear, and this
/// office could not open another office's seal.
pub fn check_arrived_clear(envelope: &Envelope) -> Result<(), SealError> {
    if let Body::Handoff { case } | Body::Escalation { case, .. } = &envelope.body {
        let case = case.case().map_err(|e| SealError::Case(e.to_string()))?;
        if has_sealed(&case) {
            return Err(SealError::ArrivedSealed {
                field: "petitioner",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! Checks on what people type: every text field has a named limit, the resident ID number its
//! GB 11643 checksum. Bad input is refused with a typed error and never echoed when it is personal.

use sha2::{Digest, Sha256};

use crate::calendar::Date;
use crate::error::DomainError;
use crate::model::IdType;

/// Petitioner's name.
pub const NAME_CHARS_MAX: usize = 64;
/// Matter category, e.g. "land", "labour", "housing".
pub const CATEGORY_CHARS_MAX: usize = 64;
/// The petition's summary as registered.
pub const SUMMARY_CHARS_MAX: usize = 4000;
/// An officer's or leader's name (first-contact officer, handler, grade leader).
pub const OFFICER_CHARS_MAX: usize = 64;
/// A department named in a grade's four fixed points.
pub const DEPARTMENT_CHARS_MAX: usize = 128;
/// A reason (extension, return, refusal).
pub const REASON_CHARS_MAX: usize = 1000;
/// A reply's text, a grade's plan, a supervision order or its answer.
pub const TEXT_CHARS_MAX: usize = 4000;
/// Bytes of a petitioner's address at most (UTF-8: a Chinese character takes three, so about
/// 85 of them; a full mainland address takes well under 60).
pub const ADDRESS_BYTES_MAX: usize = 256;
/// Digits in a phone number (leading '+' not counted).
pub const PHONE_DIGITS_MIN: usize = 5;
pub const PHONE_DIGITS_MAX: usize = 20;
/// Characters of a PRC resident ID number.
pub const ID_NUMBER_LEN: usize = 18;
/// Earliest birth year a resident ID number may carry.
pub const ID_BIRTH_YEAR_MIN: u16 = 1850;

/// One line of text (names, codes of practice): 1..=max characters, not blank, no control
/// characters, no characters that change how text around them is shown ([`is_display_spoofing`]).
pub fn line(field: &'static str, value: &str, max: usize) -> Result<(), DomainError> {
    text_with(field, value, max, |c| c.is_control())?;
    no_display_spoofing(field, value)
}

/// A petitioner's address: one line ([`line`]: not blank, no control or display-spoofing
/// characters) of at most [`ADDRESS_BYTES_MAX`] bytes. Never echoed: it is personal data.
pub fn address(value: &str) -> Result<(), DomainError> {
    if value.len() > ADDRESS_BYTES_MAX {
        return Err(DomainError::FieldInvalid {
            field: "address",
            reason: "longer than 256 bytes (UTF-8: a Chinese character takes 3)",
        });
    }
    line("address", value, ADDRESS_BYTES_MAX)
}

/// Free text (summaries, replies): 1..=max characters, not blank; newlines and tabs allowed, other
/// control characters not.
pub fn text(field: &'static str, value: &str, max: usize) -> Result<(), DomainError> {
    text_with(field, value, max, |c| {
        c.is_control() && !matches!(c, '\n' | '\r' | '\t')
    })
}

/// Characters that make a line show other than it reads: the bidirectional embeddings,
/// overrides and isolates (U+202A..U+202E, U+2066..U+2069, U+200E, U+200F, U+061C) that can
/// make "张三" show as someone else's name or hide a suffix, and the invisible ones (zero-width
/// space, non-joiner and joiner, word joiner, the byte-order mark, the soft hyphen) that make two
/// names that look alike differ.
pub fn is_display_spoofing(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200B}'..='\u{200F}'
            | '\u{061C}'
            | '\u{2060}'
            | '\u{FEFF}'
            | '\u{00AD}'
    )
}

fn no_display_spoofing(field: &'static str, value: &str) -> Result<(), DomainError> {
    if value.chars().any(is_display_spoofing) {
        return Err(DomainError::FieldInvalid {
            field,
            reason: "contains bidirectional-override or invisible (zero-width) characters",
        });
    }
    Ok(())
}

fn text_with(
    field: &'static str,
    value: &str,
    max: usize,
    forbidden: impl Fn(char) -> bool,
) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::FieldEmpty { field });
    }
    if value.chars().nth(max).is_some() {
        return Err(DomainError::FieldTooLong { field, max });
    }
    if value.chars().any(forbidden) {
        return Err(DomainError::FieldInvalid {
            field,
            reason: "contains control characters",
        });
    }
    Ok(())
}

/// At most `max` characters of `value` (for bookkeeping text that must never be refused).
pub(crate) fn truncate(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}

/// Weights of the first 17 digits in the GB 11643-1999 checksum.
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character for each remainder mod 11.
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// The ID number as it is stored and keyed: trimmed, a lowercase check 'x' made uppercase.
pub fn normalise_id_number(id_number: &str) -> String {
    id_number.trim().to_ascii_uppercase()
}

/// A PRC resident ID number: 17 digits and a check digit or 'X' (GB 11643 checksum), with a real
/// birth date (YYYYMMDD at positions 7–14). Lowercase 'x' is accepted.
pub fn id_number(value: &str) -> Result<(), DomainError> {
    let fail = |reason| DomainError::InvalidIdNumber { reason };
    let normal = normalise_id_number(value);
    let bytes = normal.as_bytes();
    if bytes.len() != ID_NUMBER_LEN {
        return Err(fail("expected 18 characters"));
    }
    let (body, check) = bytes.split_at(17);
    if !body.iter().all(u8::is_ascii_digit) {
        return Err(fail("the first 17 characters must be digits"));
    }
    if !(check[0].is_ascii_digit() || check[0] == b'X') {
        return Err(fail("the last character must be a digit or X"));
    }
    // All 17 are ASCII digits here, so these slices fall on character boundaries.
    let part = |range: std::ops::Range<usize>| normal.get(range).unwrap_or("");
    let birth_date = format!("{}-{}-{}", part(6..10), part(10..12), part(12..14));
    match birth_date.parse::<Date>() {
        Ok(date) if date.year >= ID_BIRTH_YEAR_MIN => {}
        _ => return Err(fail("the birth date (digits 7 to 14) is not a real date")),
    }
    let sum: u32 = body
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    // The remainder is below 11, so the index is in range.
    if ID_CHECK.get(usize::try_from(sum % 11).unwrap_or(0)) != Some(&check[0]) {
        return Err(fail("the check digit does not match (GB 11643)"));
    }
    Ok(())
}

/// Characters of a passport number at most (ICAO 9303 allows 9 in the machine-readable zone;
/// national numbers printed elsewhere run longer).
pub const PASSPORT_CHARS_MAX: usize = 20;
/// Characters of a passport number at least.
pub const PASSPORT_CHARS_MIN: usize = 5;

/// A document number of `id_type`, normalised as [`normalise_id_number`] does (trimmed,
/// uppercase):
///
/// - `resident`: [`id_number`] (GB 11643);
/// - `passport`: 5 to 20 letters (A–Z) and digits;
/// - `hk-macao` (港澳居民来往内地通行证): H or M, then 8 digits (the 10-digit numbers of older
///   permits are accepted too);
/// - `taiwan` (台澎金马居民来往大陆通行证): 8 digits (or the 10 of older permits);
/// - `foreign-permanent` (外国人永久居留身份证): the 18-character card of 2017 on (starts with 9,
///   GB 11643 checksum and birth date), or the older 15-character one (3 letters, 12 digits).
///
/// The number itself is never echoed in the error.
pub fn document(id_type: IdType, value: &str) -> Result<(), DomainError> {
    let fail = |reason| DomainError::InvalidDocument {
        id_type: id_type.as_str(),
        reason,
    };
    let normal = normalise_id_number(value);
    let bytes = normal.as_bytes();
    let digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
    match id_type {
        IdType::Resident => id_number(value),
        IdType::Passport => {
            if !(PASSPORT_CHARS_MIN..=PASSPORT_CHARS_MAX).contains(&bytes.len()) {
                return Err(fail("expected 5 to 20 letters and digits"));
            }
            if !bytes.iter().all(u8::is_ascii_alphanumeric) {
                return Err(fail("only letters A-Z and digits"));
            }
            Ok(())
        }
        IdType::HkMacao => match bytes.split_first() {
            Some((b'H' | b'M', rest)) if matches!(rest.len(), 8 | 10) && digits(rest) => Ok(()),
            _ => Err(fail("expected H or M then 8 digits (10 on older permits)")),
        },
        IdType::Taiwan => {
            if matches!(bytes.len(), 8 | 10) && digits(bytes) {
                Ok(())
            } else {
                Err(fail("expected 8 digits (10 on older permits)"))
            }
        }
        IdType::ForeignPermanent => match bytes.len() {
            18 if bytes[0] == b'9' => id_number(value)
                .map_err(|_| fail("the 18-character card fails its GB 11643 checksum or date")),
            18 => Err(fail("an 18-character card starts with 9")),
            15 if bytes[..3].iter().all(u8::is_ascii_uppercase) && digits(&bytes[3..]) => Ok(()),
            _ => Err(fail(
                "expected 18 characters (from 2017) or 3 letters and 12 digits (older cards)",
            )),
        },
    }
}

/// An ISO 3166-1 alpha-3 country code (e.g. USA, GBR, JPN): three letters A–Z.
pub fn nationality(value: &str) -> Result<(), DomainError> {
    let value = value.trim();
    if value.len() == 3 && value.bytes().all(|byte| byte.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(DomainError::FieldInvalid {
            field: "nationality",
            reason: "expected an ISO 3166 alpha-3 country code, three letters (e.g. USA)",
        })
    }
}

/// The petitioner key of a document: a resident ID's is [`petitioner_key`] of its number (as
/// before document types existed); any other document's is the HMAC of its type and number
/// (`passport:E12345678`), so that two documents of different types never share a key.
pub fn document_key(secret: &[u8], id_type: IdType, number: &str) -> String {
    match id_type {
        IdType::Resident => petitioner_key(secret, number),
        other => {
            let message = format!("{}:{}", other.as_str(), normalise_id_number(number));
            hex::encode(hmac_sha256(secret, message.as_bytes()))
        }
    }
}

/// Digits with an optional leading '+', 5..=20 digits.
pub fn phone(value: &str) -> Result<(), DomainError> {
    let digits = value.strip_prefix('+').unwrap_or(value);
    let well_formed = (PHONE_DIGITS_MIN..=PHONE_DIGITS_MAX).contains(&digits.len())
        && digits.bytes().all(|byte| byte.is_ascii_digit());
    if well_formed {
        Ok(())
    } else {
        Err(DomainError::InvalidPhone)
    }
}

/// A petitioner key as [`petitioner_key`] makes it: 64 lowercase hex characters.
pub fn petitioner_key_format(value: &str) -> Result<(), DomainError> {
    let well_formed = value.len() == 64
        && value
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
    if well_formed {
        Ok(())
    } else {
        Err(DomainError::InvalidPetitionerKey)
    }
}

/// SHA-256's block size, which HMAC pads its key to.
const SHA256_BLOCK_LEN: usize = 64;

/// The petitioner key: hex HMAC-SHA256 of the normalised ID number under the federation secret.
/// It finds repeat petitions across offices without moving the ID number itself.
///
/// HMAC (RFC 2104) is written out over `sha2` so that no path can fail or panic: it takes a key of
/// any length. The unit test checks it against the RFC 4231 vectors and the `hmac` crate.
pub fn petitioner_key(secret: &[u8], petitioner_id: &str) -> String {
    hex::encode(hmac_sha256(
        secret,
        normalise_id_number(petitioner_id).as_bytes(),
    ))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; SHA256_BLOCK_LEN];
    if key.len() > SHA256_BLOCK_LEN {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    #[test]
    fn hmac_matches_rfc_4231_and_the_hmac_crate() {
        // RFC 4231 test case 2.
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        for key_len in [0usize, 1, 20, 63, 64, 65, 131] {
            let key = vec![0xaa; key_len];
            let mut reference = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
            reference.update(b"Test Using Larger Than Block-Size Key - Hash Key First");
            assert_eq!(
                hmac_sha256(
                    &key,
                    b"Test Using Larger Than Block-Size Key - Hash Key First"
                )
                .to_vec(),
                reference.finalize().into_bytes().to_vec()
            );
        }
    }

    #[test]
    fn id_numbers_are_checked_by_gb_11643() {
        assert_eq!(id_number("11010519491231002X"), Ok(()));
        assert_eq!(id_number("11010519491231002x"), Ok(()));
        assert_eq!(id_number("440524188001010014"), Ok(()));
        assert!(id_number("110105194912310021").is_err()); // wrong check digit
        assert!(id_number("11010519491331002X").is_err()); // month 13
    }

    #[test]
    fn each_document_type_has_its_own_format() {
        let ok = |t, v| assert_eq!(document(t, v), Ok(()), "{t} {v}");
        let bad = |t, v| {
            assert!(
                matches!(document(t, v), Err(DomainError::InvalidDocument { .. }))
                    || (t == IdType::Resident && document(t, v).is_err()),
                "{t} {v}"
            )
        };
        ok(IdType::Resident, "11010519491231002X");
        bad(IdType::Resident, "E12345678");
        ok(IdType::Passport, "E12345678");
        ok(IdType::Passport, "p1234567");
        bad(IdType::Passport, "E123");
        bad(IdType::Passport, "E1234-5678");
        let long = "A".repeat(21);
        bad(IdType::Passport, &long);
        ok(IdType::HkMacao, "H12345678");
        ok(IdType::HkMacao, "M1234567890");
        bad(IdType::HkMacao, "X12345678");
        bad(IdType::HkMacao, "H1234567");
        ok(IdType::Taiwan, "12345678");
        bad(IdType::Taiwan, "1234567A");
        ok(IdType::ForeignPermanent, "USA123456789012");
        bad(IdType::ForeignPermanent, "US1123456789012");
        // The 2017 card: starts with 9, resident-ID checksum and birth date.
        ok(IdType::ForeignPermanent, "911010198001010011");
        bad(IdType::ForeignPermanent, "911010198001010012");
        bad(IdType::ForeignPermanent, "11010519491231002X");
        // A document error never repeats the number.
        let error = document(IdType::Passport, "SECRET-99")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("SECRET"), "{error}");
        assert_eq!(nationality("usa"), Ok(()));
        assert!(nationality("US").is_err() && nationality("U5A").is_err());
    }

    #[test]
    fn a_document_key_is_distinct_by_type() {
        // A resident ID keeps the key it had before document types.
        assert_eq!(
            document_key(b"s", IdType::Resident, "11010519491231002x"),
            petitioner_key(b"s", "11010519491231002X")
        );
        let number = "911010198001010011";
        let keys: std::collections::BTreeSet<String> = IdType::ALL
            .iter()
            .map(|t| document_key(b"s", *t, number))
            .collect();
        assert_eq!(keys.len(), IdType::ALL.len());
        assert_eq!(
            document_key(b"s", IdType::Passport, "e12345678"),
            document_key(b"s", IdType::Passport, "E12345678")
        );
        for t in IdType::ALL {
            assert_eq!(
                petitioner_key_format(&document_key(b"s", *t, number)),
                Ok(())
            );
        }
    }

    #[test]
    fn petitioner_key_ignores_the_case_of_x() {
        assert_eq!(
            petitioner_key(b"s", "11010519491231002x"),
            petitioner_key(b"s", "11010519491231002X")
        );
        assert_ne!(
            petitioner_key(b"s", "11010519491231002X"),
            petitioner_key(b"t", "11010519491231002X")
        );
        assert_eq!(petitioner_key_format(&petitioner_key(b"s", "x")), Ok(()));
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        assert_eq!(line("name", &"张".repeat(64), NAME_CHARS_MAX), Ok(()));
        assert_eq!(
            line("name", &"张".repeat(65), NAME_CHARS_MAX),
            Err(DomainError::FieldTooLong {
                field: "name",
                max: 64
            })
        );
        assert_eq!(
            line("name", "  ", NAME_CHARS_MAX),
            Err(DomainError::FieldEmpty { field: "name" })
        );
        assert!(line("name", "a\nb", NAME_CHARS_MAX).is_err());
        // Display spoofing: an override that reverses what follows, an invisible space.
        for spoof in ["张\u{202E}三", "张\u{200B}三", "a\u{2067}b", "\u{FEFF}张三"] {
            assert!(
                matches!(
                    line("name", spoof, NAME_CHARS_MAX),
                    Err(DomainError::FieldInvalid { field: "name", .. })
                ),
                "{spoof:?}"
            );
        }
        assert_eq!(line("name", "Zoë 张三", NAME_CHARS_MAX), Ok(()));
        assert_eq!(text("summary", "a\nb", SUMMARY_CHARS_MAX), Ok(()));
        assert_eq!(phone("+8613800138000"), Ok(()));
        assert!(phone("1234").is_err() && phone("12-345678").is_err() && phone("+").is_err());
    }
}

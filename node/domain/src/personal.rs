//! Personal data (a petitioner's name, ID number, phone) as a case keeps it: [`Personal::Clear`],
//! as an officer types it, as it crosses the wire between offices (over mutual TLS) and as builds
//! before field encryption stored it; or [`Personal::Sealed`], encrypted by the office that holds
//! the case under its data key (the node seals and opens: `node/src/personal.rs`). The engine never
//! sees inside a sealed value: it stores, copies and compares its bytes, so every replica keeps the
//! same bytes, and it checks clear values as before.
//!
//! **Stored form.** A personal field is stored where a string was, in the same encoding: a clear
//! value *is* the string it was before, so cases, registrations and messages written by older
//! builds read unchanged. A sealed value is a byte string starting with [`SEALED_MARK`] (0x01), a
//! byte no clear value can start with (names, ID numbers and phones refuse control characters);
//! in human-readable formats (JSON) it is the string `"\u0001"` followed by its bytes in hex.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DomainError;

/// The first byte of every sealed value: a control character, which no clear value holds.
pub const SEALED_MARK: u8 = 0x01;
/// The longest sealed value (a 64-character name in UTF-8 with the node's envelope is ~300 bytes).
pub const SEALED_BYTES_MAX: usize = 512;

/// A personal field encrypted by its office: opaque bytes here, starting with [`SEALED_MARK`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sealed(Vec<u8>);

impl Sealed {
    /// A sealed value's bytes, checked for the mark and the length (nothing else is known here).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Sealed, DomainError> {
        if bytes.first() != Some(&SEALED_MARK) {
            return Err(DomainError::Corrupt {
                reason: "a sealed value starts with its mark".into(),
            });
        }
        if bytes.len() > SEALED_BYTES_MAX {
            return Err(DomainError::Corrupt {
                reason: format!(
                    "a sealed value has at most {SEALED_BYTES_MAX} bytes, not {}",
                    bytes.len()
                ),
            });
        }
        Ok(Sealed(bytes))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

/// One personal field: clear or sealed (see the module's doc).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Personal {
    Clear(String),
    Sealed(Sealed),
}

impl Personal {
    /// The clear text, None when sealed.
    pub fn clear(&self) -> Option<&str> {
        match self {
            Personal::Clear(text) => Some(text),
            Personal::Sealed(_) => None,
        }
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self, Personal::Sealed(_))
    }

    /// A clear value changed by `f` (normalising); a sealed value as it is.
    pub fn map_clear(self, f: impl FnOnce(&str) -> String) -> Personal {
        match self {
            Personal::Clear(text) => Personal::Clear(f(&text)),
            sealed => sealed,
        }
    }

    /// A clear value checked by `check`; a sealed value was checked clear before it was sealed
    /// (its length is bounded by its type).
    pub fn check(
        &self,
        check: impl FnOnce(&str) -> Result<(), DomainError>,
    ) -> Result<(), DomainError> {
        match self {
            Personal::Clear(text) => check(text),
            Personal::Sealed(_) => Ok(()),
        }
    }
}

impl From<String> for Personal {
    fn from(text: String) -> Personal {
        Personal::Clear(text)
    }
}

impl From<&str> for Personal {
    fn from(text: &str) -> Personal {
        Personal::Clear(text.to_string())
    }
}

impl PartialEq<str> for Personal {
    fn eq(&self, other: &str) -> bool {
        self.clear() == Some(other)
    }
}

impl PartialEq<&str> for Personal {
    fn eq(&self, other: &&str) -> bool {
        self.clear() == Some(*other)
    }
}

impl fmt::Debug for Personal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Personal::Clear(text) => fmt::Debug::fmt(text, f),
            Personal::Sealed(sealed) => fmt::Debug::fmt(sealed, f),
        }
    }
}

/// The clear text, or `(sealed)`.
impl fmt::Display for Personal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Personal::Clear(text) => f.write_str(text),
            Personal::Sealed(_) => f.write_str("(sealed)"),
        }
    }
}

impl Serialize for Personal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Personal::Clear(text) => serializer.serialize_str(text),
            Personal::Sealed(sealed) if serializer.is_human_readable() => {
                let mut text = String::from(char::from(SEALED_MARK));
                text.push_str(&hex::encode(sealed.bytes()));
                serializer.serialize_str(&text)
            }
            Personal::Sealed(sealed) => serializer.serialize_bytes(sealed.bytes()),
        }
    }
}

impl<'de> Deserialize<'de> for Personal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Personal, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            return match text.strip_prefix(char::from(SEALED_MARK)) {
                Some(digits) => {
                    let bytes = hex::decode(digits).map_err(D::Error::custom)?;
                    Sealed::from_bytes(bytes)
                        .map(Personal::Sealed)
                        .map_err(D::Error::custom)
                }
                None => Ok(Personal::Clear(text)),
            };
        }
        // The binary codec writes a string and a byte string alike (length, bytes): a clear
        // value stored by any build reads as bytes, which are UTF-8.
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?.into_vec();
        if bytes.first() == Some(&SEALED_MARK) {
            return Sealed::from_bytes(bytes)
                .map(Personal::Sealed)
                .map_err(D::Error::custom);
        }
        String::from_utf8(bytes)
            .map(Personal::Clear)
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    /// A clear value is stored exactly as the string it was before; a sealed one reads back as
    /// sealed, in both formats.
    #[test]
    fn clear_values_keep_the_string_form() {
        let clear = Personal::from("张三");
        assert_eq!(encode(&clear), encode(&"张三".to_string()));
        assert_eq!(
            decode::<Personal>(&encode(&"张三".to_string())).unwrap(),
            clear
        );
        assert_eq!(serde_json::to_string(&clear).unwrap(), "\"张三\"");
        let sealed = Personal::Sealed(Sealed::from_bytes(vec![SEALED_MARK, 7, 8, 9]).unwrap());
        assert_eq!(decode::<Personal>(&encode(&sealed)).unwrap(), sealed);
        let json = serde_json::to_string(&sealed).unwrap();
        assert_eq!(json, "\"\\u000101070809\"");
        assert_eq!(serde_json::from_str::<Personal>(&json).unwrap(), sealed);
        assert!(Sealed::from_bytes(vec![2, 1]).is_err());
        assert!(Sealed::from_bytes(vec![SEALED_MARK; SEALED_BYTES_MAX + 1]).is_err());
        assert_eq!(sealed.to_string(), "(sealed)");
    }
}

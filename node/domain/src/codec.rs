//! The one codec of everything Liandong stores or sends between its own processes: every RocksDB
//! value, raft log entries, raft payloads, snapshots, case documents. An encoded value is one
//! leading format byte, then the body:
//!
//! | byte | format | written by |
//! | --- | --- | --- |
//! | 1 | JSON (serde_json) | builds before the binary codec; still read |
//! | 2 | postcard (serde, binary, positional) | this build |
//!
//! A reader of format N reads N-1, so a federation stored by the previous build opens on this
//! one; a format it does not know is refused, never misread (Garage's `Migrate` idea).
//!
//! Format 2 is positional, like every compact binary encoding: a struct's fields and an enum's
//! variants are identified by their order. So a stored type may gain an enum variant at its end,
//! but any other change to a stored type (a field added, removed or reordered, a variant
//! reordered) makes a new format, with this reader keeping the previous one's layout. The
//! domain's internally tagged enums have a binary form of their own (see [`tagged_enum`]). A
//! history entry is the one stored type that gained fields without a new format: a sealed entry
//! (state hash and signature) starts with a sequence number of 0, which no entry has, and an
//! unsealed one keeps the earlier layout (see `HistoryEntry`).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// JSON: every value written before the binary codec.
pub const FORMAT_JSON: u8 = 1;
/// postcard over serde: what this build writes.
pub const FORMAT_BINARY: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encoded value is empty")]
    Empty,
    #[error(
        "encoded value has format {0}; this build reads formats {FORMAT_JSON} and {FORMAT_BINARY}"
    )]
    UnknownFormat(u8),
    #[error("format {FORMAT_JSON} value does not decode: {0}")]
    Json(#[from] serde_json::Error),
    #[error("format {FORMAT_BINARY} value does not decode: {0}")]
    Binary(#[from] postcard::Error),
}

/// Encodes `value` in this build's format.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_into(value, &mut out);
    out
}

/// Appends `value`, encoded in this build's format, to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    out.push(FORMAT_BINARY);
    let body = postcard::to_extend(value, std::mem::take(out));
    // postcard fails only on sequences of unknown length and on types whose Serialize fails;
    // every stored type has neither (each has a round-trip test), so this is a programming error.
    *out = body.expect("every stored type encodes in the binary format");
}

/// The length of `value` encoded in this build's format, without encoding it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    // As `encode`: every stored type encodes (a programming error otherwise).
    1 + postcard::experimental::serialized_size(value).expect("every stored type encodes")
}

/// Decodes a value of any format this build reads.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT_BINARY, body)) => Ok(postcard::from_bytes(body)?),
        Some((&FORMAT_JSON, body)) => Ok(serde_json::from_slice(body)?),
        Some((&other, _)) => Err(CodecError::UnknownFormat(other)),
    }
}

/// The format byte of an encoded value (None when empty).
pub fn format_of(bytes: &[u8]) -> Option<u8> {
    bytes.first().copied()
}

/// Declares an enum with two serde forms. Human-readable formats (the JSON documents people and
/// scripts read, and every value stored in format 1) see it internally tagged, `{"<tag>":
/// "<variant>", ...fields}`. Binary formats see it externally tagged (variant index, then
/// fields): postcard cannot read an internally tagged enum, which needs the variant before it
/// knows which fields follow. Variants are snake_case in both. Field attributes (serde's) apply
/// to both forms; a field's doc comment does not reach the generated documentation.
#[macro_export]
macro_rules! tagged_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident tagged $tag:literal {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident $({
                    $( $(#[$field_meta:meta])* $field:ident : $type:ty ),* $(,)?
                })?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                $variant $({ $( $field: $type ),* })?
            ),*
        }

        const _: () = {
            #[derive(serde::Serialize)]
            #[serde(tag = $tag, rename_all = "snake_case")]
            enum TaggedRef<'a> {
                $( $variant $({ $( $(#[$field_meta])* $field: &'a $type ),* })? ),*
            }

            #[derive(serde::Deserialize)]
            #[serde(tag = $tag, rename_all = "snake_case")]
            enum Tagged {
                $( $variant $({ $( $(#[$field_meta])* $field: $type ),* })? ),*
            }

            #[derive(serde::Serialize)]
            #[serde(rename_all = "snake_case")]
            enum PlainRef<'a> {
                $( $variant $({ $( $(#[$field_meta])* $field: &'a $type ),* })? ),*
            }

            #[derive(serde::Deserialize)]
            #[serde(rename_all = "snake_case")]
            enum Plain {
                $( $variant $({ $( $(#[$field_meta])* $field: $type ),* })? ),*
            }

            impl serde::Serialize for $name {
                fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                    if serializer.is_human_readable() {
                        match self {
                            $( $name::$variant $({ $($field),* })? => TaggedRef::$variant $({ $($field),* })? ),*
                        }
                        .serialize(serializer)
                    } else {
                        match self {
                            $( $name::$variant $({ $($field),* })? => PlainRef::$variant $({ $($field),* })? ),*
                        }
                        .serialize(serializer)
                    }
                }
            }

            impl<'de> serde::Deserialize<'de> for $name {
                fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                    Ok(if deserializer.is_human_readable() {
                        match Tagged::deserialize(deserializer)? {
                            $( Tagged::$variant $({ $($field),* })? => $name::$variant $({ $($field),* })? ),*
                        }
                    } else {
                        match Plain::deserialize(deserializer)? {
                            $( Plain::$variant $({ $($field),* })? => $name::$variant $({ $($field),* })? ),*
                        }
                    })
                }
            }
        };
    };
}
pub use crate::tagged_enum;

#[cfg(test)]
mod tests {
    use super::*;

    tagged_enum! {
        #[derive(Debug, Clone, PartialEq)]
        enum Shape tagged "type" {
            Dot,
            Circle { radius: u32 },
            Named {
                #[serde(default)]
                name: String,
                sides: Option<u8>,
            },
        }
    }

    #[test]
    fn a_value_round_trips_in_the_binary_format_with_its_format_byte() {
        let bytes = encode(&vec![1u32, 2, 3]);
        assert_eq!(bytes[0], FORMAT_BINARY);
        assert_eq!(decode::<Vec<u32>>(&bytes).unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn the_encoded_length_is_known_without_encoding() {
        let value = (7u64, "seven".to_string(), vec![1u8; 300]);
        assert_eq!(encoded_len(&value), encode(&value).len());
    }

    #[test]
    fn a_format_1_json_value_is_still_read() {
        let mut bytes = vec![FORMAT_JSON];
        bytes.extend_from_slice(br#"{"type":"circle","radius":3}"#);
        assert_eq!(
            decode::<Shape>(&bytes).unwrap(),
            Shape::Circle { radius: 3 }
        );
    }

    #[test]
    fn an_unknown_format_is_refused_not_misread() {
        let mut bytes = encode(&7u32);
        bytes[0] = 9;
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(CodecError::UnknownFormat(9))
        ));
        assert!(matches!(decode::<u32>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<u32>(&[FORMAT_BINARY]),
            Err(CodecError::Binary(_))
        ));
    }

    /// Without the binary form, postcard could not decode an internally tagged enum at all.
    #[test]
    fn a_tagged_enum_is_internally_tagged_in_json_and_round_trips_in_both() {
        let shapes = [
            Shape::Dot,
            Shape::Circle { radius: 7 },
            Shape::Named {
                name: "square".into(),
                sides: Some(4),
            },
        ];
        for shape in shapes {
            let json = serde_json::to_value(&shape).unwrap();
            assert!(json.get("type").is_some(), "{json}");
            assert_eq!(serde_json::from_value::<Shape>(json).unwrap(), shape);
            assert_eq!(decode::<Shape>(&encode(&shape)).unwrap(), shape);
        }
        let defaulted: Shape = serde_json::from_str(r#"{"type":"named","sides":null}"#).unwrap();
        assert_eq!(
            defaulted,
            Shape::Named {
                name: String::new(),
                sides: None
            }
        );
    }
}

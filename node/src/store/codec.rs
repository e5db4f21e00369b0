//! Every value Liandong writes to RocksDB is versioned: one leading format byte, then the body.
//! A reader refuses a version it does not know instead of misreading it (Garage's `Migrate` idea,
//! kept to the minimum we need until a second version exists).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The format byte of values written by this build.
pub const VALUE_FORMAT_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("stored value is empty")]
    Empty,
    #[error("stored value has format version {0}; this build reads version {VALUE_FORMAT_V1}")]
    UnknownVersion(u8),
    #[error("stored value does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Encodes `value` as a version-1 stored value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(VALUE_FORMAT_V1);
    // Serializing our own plain data types to a Vec cannot fail.
    serde_json::to_writer(&mut out, value).expect("serializing a stored value");
    out
}

/// Decodes a stored value written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&VALUE_FORMAT_V1, body)) => Ok(serde_json::from_slice(body)?),
        Some((&other, _)) => Err(CodecError::UnknownVersion(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_with_its_version_byte() {
        let bytes = encode(&vec![1u32, 2, 3]);
        assert_eq!(bytes[0], VALUE_FORMAT_V1);
        assert_eq!(decode::<Vec<u32>>(&bytes).unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn an_unknown_version_is_refused_not_misread() {
        let mut bytes = encode(&7u32);
        bytes[0] = 9;
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(CodecError::UnknownVersion(9))
        ));
        assert!(matches!(decode::<u32>(&[]), Err(CodecError::Empty)));
    }
}

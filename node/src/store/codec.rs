//! Every value Liandong writes to RocksDB is versioned: one leading format byte, then the body,
//! in the one codec of the whole system ([`liandong_domain::codec`]): format 2, postcard, is
//! written; format 1, the JSON of earlier builds, is still read. A reader refuses a format it
//! does not know instead of misreading it.

pub use liandong_domain::codec::{
    decode, encode, encode_into, encoded_len, format_of, CodecError, FORMAT_BINARY, FORMAT_JSON,
};

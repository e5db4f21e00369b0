//! Storage key layout. One RocksDB per host; every replica's keys live under its office's prefix
//! (`<office code>/`), the layout the multi-Raft systems use (TiKV's raftstore). Division codes
//! have 2, 4, 6 or 9 digits, and the `/` terminator keeps `5306/` from being a prefix of `530602/`.

/// Key-value pairs read from a scan, keys relative to an office prefix.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Column family of raft log entries: `<office>/` + index (u64, big-endian).
pub const CF_LOG: &str = "log";
/// Column family of raft metadata: vote, committed, purged, the current snapshot.
pub const CF_META: &str = "meta";
/// Column family of the state machines (their keys: `machine::keys`).
pub const CF_SM: &str = "sm";

pub fn office_prefix(office: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(office.len() + 1);
    key.extend_from_slice(office.as_bytes());
    key.push(b'/');
    key
}

/// The first key past every key under `prefix` (for range deletes and bounded scans).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    // Prefixes end with '/', never 0xff, so incrementing the last byte is exact.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

pub fn log_key(office: &str, index: u64) -> Vec<u8> {
    let mut key = office_prefix(office);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

pub fn log_index_of(key: &[u8], prefix_len: usize) -> Option<u64> {
    let bytes: [u8; 8] = key.get(prefix_len..)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

pub fn meta_key(office: &str, name: &str) -> Vec<u8> {
    let mut key = office_prefix(office);
    key.extend_from_slice(name.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_city_prefix_never_covers_its_counties() {
        let city = office_prefix("5306");
        assert!(!office_prefix("530602").starts_with(&city));
        assert!(log_key("5306", 7).starts_with(&city));
        assert!(prefix_end(&city) > log_key("5306", u64::MAX));
    }
}

//! Key layout. One RocksDB per host; every replica's keys live under its office's prefix
//! (`<office code>/`), the layout the multi-Raft systems use (TiKV's raftstore). Division codes
//! have 2, 4, 6 or 9 digits, and the `/` terminator keeps `5306/` from being a prefix of `530602/`.

/// Key-value pairs read from a scan, keys relative to an office prefix.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Column family of raft log entries: `<office>/` + index (u64, big-endian).
pub const CF_LOG: &str = "log";
/// Column family of raft metadata: vote, committed, purged, the current snapshot.
pub const CF_META: &str = "meta";
/// Column family of the state machines: cases, counters, alarms, applied state.
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

/// State machine keys, relative to the office prefix.
pub mod sm {
    pub const APPLIED: &[u8] = b"applied";
    pub const CASE: &[u8] = b"case/";
    pub const SEQ: &[u8] = b"seq/";
    pub const ALARM: &[u8] = b"alarm/";
    pub const REQUEST: &[u8] = b"request/";
    pub const REPLY: &[u8] = b"reply/";

    /// Which case a client request id produced (deduplicates retried requests).
    pub fn request(request_id: &str) -> Vec<u8> {
        [REQUEST, request_id.as_bytes()].concat()
    }

    /// The case document a client request id was first answered with: a retry gets the same
    /// answer, not the case as later writes left it (the history stays linearizable).
    pub fn reply(request_id: &str) -> Vec<u8> {
        [REPLY, request_id.as_bytes()].concat()
    }

    pub fn case(case_id: &str) -> Vec<u8> {
        [CASE, case_id.as_bytes()].concat()
    }

    pub fn seq(year: u16) -> Vec<u8> {
        [SEQ, year.to_string().as_bytes()].concat()
    }

    /// Alarms sort by time, so a tick scans only what is due.
    pub fn alarm(at_ms: i64, case_id: &str) -> Vec<u8> {
        let at = u64::try_from(at_ms.max(0)).unwrap_or(0);
        [ALARM, &at.to_be_bytes(), case_id.as_bytes()].concat()
    }

    pub fn alarm_time(key: &[u8]) -> Option<i64> {
        let bytes: [u8; 8] = key.get(ALARM.len()..ALARM.len() + 8)?.try_into().ok()?;
        i64::try_from(u64::from_be_bytes(bytes)).ok()
    }

    pub fn alarm_case(key: &[u8]) -> Option<&str> {
        std::str::from_utf8(key.get(ALARM.len() + 8..)?).ok()
    }
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

    #[test]
    fn alarms_sort_by_time_and_round_trip() {
        let early = sm::alarm(1_000, "5306-2026-000002");
        let late = sm::alarm(2_000, "5306-2026-000001");
        assert!(early < late);
        assert_eq!(sm::alarm_time(&late), Some(2_000));
        assert_eq!(sm::alarm_case(&late), Some("5306-2026-000001"));
    }
}

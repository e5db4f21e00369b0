//! Every key the state machine writes, relative to its office's prefix (`<office>/`, see
//! [`crate::store::keys::office_prefix`]), in the column family [`crate::store::keys::CF_SM`].
//! Nothing else writes these keys; readers (the APIs, the pump, the Deliver handler) name them
//! through this module.
//!
//! Some modules keep their own keys beside their code: [`super::departments`] (`department/`,
//! `tasks/`, …), [`super::sessions`] (`session/`, …), [`super::notices`] (`notice-…`,
//! `red-card-…`) and [`super::reports`] (`report/1/<kind>/<period>`: a scheduled report, format
//! version 1; `report-next`: when the next can fall due).

use liandong_domain::{CaseId, OfficeCode};

/// The applied state ([`super::AppliedState`]).
pub const APPLIED: &[u8] = b"applied";
/// `case/<case id>`: a case's header as this office holds it (the case without its history
/// entries; [`liandong_domain::Case::into_header`]).
pub const CASE: &[u8] = b"case/";
/// `history/<case id>/<seq, u32 big-endian>`: one entry of a case's hash-chained history, stored
/// apart from its header so that a write appends entries instead of rewriting the history.
pub const HISTORY: &[u8] = b"history/";
/// `seq/<year>`: the last case sequence number given out in that year.
pub const SEQ: &[u8] = b"seq/";
/// `alarm/<at ms, u64 big-endian><case id>`: when a case's next deadline clock is due.
pub const ALARM: &[u8] = b"alarm/";
/// `retry/<caller>\0<request id>`: what a client request did (operation, case, the reply it got),
/// so that a retry is answered again rather than applied again ([`super::RequestRecord`]).
pub const RETRY: &[u8] = b"retry/";
/// `session-retry/<caller>\0<request id>`: what a client's session request did (operation,
/// session, the reply it got) ([`super::requests::NamedRequestRecord`]).
pub const SESSION_RETRY: &[u8] = b"session-retry/";
/// `desk-retry/<caller>\0<request id>`: what a client's desk change about no case did
/// (operation, the department, point, proxy or meeting, the reply it got)
/// ([`super::requests::NamedRequestRecord`]).
pub const DESK_RETRY: &[u8] = b"desk-retry/";
/// `expiry/<at ms, u64 big-endian><key>`: the per-request record under `key`, made at `at`; the
/// tick deletes both once the clients' retry horizon has passed.
pub const EXPIRY: &[u8] = b"expiry/";
/// `request/<request id>` (format 1, before request ids were scoped): which case a request id
/// produced. Converted into `retry/` records when a replica opens.
pub const LEGACY_REQUEST: &[u8] = b"request/";
/// `reply/<request id>` (format 1): the case document the request was first answered with.
pub const LEGACY_REPLY: &[u8] = b"reply/";
/// `outbox/<to>/<seq, u64 big-endian>`: a message not yet acknowledged by its receiver.
pub const OUTBOX: &[u8] = b"outbox/";
/// `link/<to>`: the sending side of a link ([`super::LinkOut`]).
pub const LINK: &[u8] = b"link/";
/// `inbox/<from>`: the receiving side of a link ([`super::LinkIn`]).
pub const INBOX: &[u8] = b"inbox/";
/// `refused/<from>/<seq, u64 big-endian>`: a message this office committed as refused, kept until
/// the sender's deliveries move past it (it has committed the acknowledgement then).
pub const REFUSED: &[u8] = b"refused/";
/// `index/<case id>`: a summary of a case of the subtree, for supervisors.
pub const INDEX: &[u8] = b"index/";
/// `watermark/<child>`: the latest change time a child's index feed has reached.
pub const WATERMARK: &[u8] = b"watermark/";
/// `index-applied/<child>`: when (the applying entry's stamped time) this office last applied a
/// summary from that child: the `as_of` of the child's subtree in index answers.
pub const INDEX_APPLIED: &[u8] = b"index-applied/";
/// `stat/<office>/day:<YYYY-MM-DD>:<measure>`: one of the trend's per-day counters of the cases
/// of the subtree held by that office ([`super::stats`]; until stats format 3, every figure had
/// a counter here).
pub const STAT: &[u8] = b"stat/";
/// `stat-row/1/<office>`: every other figure of the cases of the subtree held by that office,
/// packed in one value ([`super::stats::StatRow`], layout version 1 in the prefix).
pub const STAT_ROW: &[u8] = b"stat-row/1/";
/// The format of the `stat/` counters, present once they are complete.
pub const STATS_FORMAT: &[u8] = b"stats-format";
/// `order/<order id>`: a supervision order this office issued.
pub const ORDER: &[u8] = b"order/";
/// `order-case/<case id>`: the open order on a case.
pub const ORDER_BY_CASE: &[u8] = b"order-case/";
/// The last order sequence number given out.
pub const ORDER_SEQ: &[u8] = b"order-seq";
/// `officer/<user>`: an officer account ([`crate::raft::types::OfficerRecord`]).
pub const OFFICER: &[u8] = b"officer/";
/// `audit/<seq, u64 big-endian>`: one audit log entry ([`super::audit::AuditEntry`]).
pub const AUDIT: &[u8] = b"audit/";
/// Where the audit chain stands ([`super::audit::AuditHead`]).
pub const AUDIT_HEAD: &[u8] = b"audit-head";
/// `notify/<number, u64 big-endian>`: an SMS notice not yet sent ([`super::notify::Notification`]).
pub const NOTIFY: &[u8] = b"notify/";
/// `notified/<message id>`: the number of a notice made (kept once it is sent): never made twice.
pub const NOTIFIED: &[u8] = b"notified/";
/// The notification outbox's counters ([`super::notify::NotifyState`]).
pub const NOTIFY_STATE: &[u8] = b"notify-state";
/// `anchor/<child>`: the latest whole anchor a child sent ([`super::anchors::AnchorRecord`]).
pub const ANCHOR: &[u8] = b"anchor/";
/// `anchor-leaf/<child>/<case id>`: a child's case head as its anchors say it
/// ([`super::anchors::AnchoredLeaf`]).
pub const ANCHOR_LEAF: &[u8] = b"anchor-leaf/";
/// `anchored/<case id>`: a case head of this office as this office last sent it to its parent
/// ([`super::anchors::AnchoredLeaf`]).
pub const ANCHORED: &[u8] = b"anchored/";
/// Where the tick's walk making the next anchor stands ([`super::anchors::AnchorScan`]).
pub const ANCHOR_SCAN: &[u8] = b"anchor-scan";

pub fn anchor(child: &OfficeCode) -> Vec<u8> {
    [ANCHOR, child.as_str().as_bytes()].concat()
}

/// The prefix of every leaf kept for `child`: sorted by case id.
pub fn anchor_leaves(child: &OfficeCode) -> Vec<u8> {
    [ANCHOR_LEAF, child.as_str().as_bytes(), b"/"].concat()
}

pub fn anchor_leaf(child: &OfficeCode, case_id: &CaseId) -> Vec<u8> {
    [anchor_leaves(child), case_id.to_string().into_bytes()].concat()
}

pub fn anchored(case_id: &CaseId) -> Vec<u8> {
    [ANCHORED, case_id.to_string().as_bytes()].concat()
}

/// `query-key/`: the secondary keys of the supervisor's index ([`super::query_keys`]).
pub const QUERY_KEY: &[u8] = b"query-key/";
/// `query-key/s/<scope>\0<sort><time><case id>`: a case in one scope and order of `query`.
pub const QUERY_KEY_SCOPE: &[u8] = b"query-key/s/";
/// `query-key/r/<repeat key><registered><case id>`: an original in its repeat key's group.
pub const QUERY_KEY_REPEAT: &[u8] = b"query-key/r/";
/// The format of the `query-key/` keys, present once they are complete.
pub const QUERY_KEYS_FORMAT: &[u8] = b"query-keys-format";

/// Notices sort by the order they were made.
pub fn notify(number: u64) -> Vec<u8> {
    [NOTIFY, &number.to_be_bytes()].concat()
}

pub fn notified(message_id: &str) -> Vec<u8> {
    [NOTIFIED, message_id.as_bytes()].concat()
}

pub fn officer(user: &str) -> Vec<u8> {
    [OFFICER, user.as_bytes()].concat()
}

/// Audit entries sort by number.
pub fn audit(seq: u64) -> Vec<u8> {
    [AUDIT, &seq.to_be_bytes()].concat()
}

/// The record of request `request_id` of `caller`: a request id is the caller's own (an empty
/// caller is the API before sign-in). Callers and request ids hold no NUL.
pub fn retry(caller: &str, request_id: &str) -> Vec<u8> {
    [RETRY, caller.as_bytes(), b"\0", request_id.as_bytes()].concat()
}

pub fn desk_retry(caller: &str, request_id: &str) -> Vec<u8> {
    [DESK_RETRY, caller.as_bytes(), b"\0", request_id.as_bytes()].concat()
}

pub fn session_retry(caller: &str, request_id: &str) -> Vec<u8> {
    [
        SESSION_RETRY,
        caller.as_bytes(),
        b"\0",
        request_id.as_bytes(),
    ]
    .concat()
}

/// The expiry index entry of the record under `key`, made at `at_ms`.
pub fn expiry(at_ms: i64, key: &[u8]) -> Vec<u8> {
    [EXPIRY, &time_bytes(at_ms), key].concat()
}

/// When an expiry index entry's record was written.
pub fn expiry_time(key: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = key.get(EXPIRY.len()..EXPIRY.len() + 8)?.try_into().ok()?;
    i64::try_from(u64::from_be_bytes(bytes)).ok()
}

/// The record key an expiry index entry names.
pub fn expiry_target(key: &[u8]) -> Option<&[u8]> {
    key.get(EXPIRY.len() + 8..)
}

/// Format 1's record of `request_id` (read only, while it is converted).
pub fn legacy_request(request_id: &str) -> Vec<u8> {
    [LEGACY_REQUEST, request_id.as_bytes()].concat()
}

/// Format 1's saved reply to `request_id`.
pub fn legacy_reply(request_id: &str) -> Vec<u8> {
    [LEGACY_REPLY, request_id.as_bytes()].concat()
}

fn time_bytes(at_ms: i64) -> [u8; 8] {
    u64::try_from(at_ms.max(0)).unwrap_or(0).to_be_bytes()
}

pub fn case(case_id: &str) -> Vec<u8> {
    [CASE, case_id.as_bytes()].concat()
}

/// The prefix of every history entry of a case.
pub fn history_of(case_id: &str) -> Vec<u8> {
    [HISTORY, case_id.as_bytes(), b"/"].concat()
}

/// History entry `seq` of a case: entries sort in chain order.
pub fn history(case_id: &str, seq: u32) -> Vec<u8> {
    [history_of(case_id).as_slice(), &seq.to_be_bytes()].concat()
}

pub fn seq(year: u16) -> Vec<u8> {
    [SEQ, year.to_string().as_bytes()].concat()
}

/// Alarms sort by time, so a tick scans only what is due.
pub fn alarm(at_ms: i64, case_id: &str) -> Vec<u8> {
    [ALARM, &time_bytes(at_ms), case_id.as_bytes()].concat()
}

pub fn alarm_time(key: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = key.get(ALARM.len()..ALARM.len() + 8)?.try_into().ok()?;
    i64::try_from(u64::from_be_bytes(bytes)).ok()
}

pub fn alarm_case(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(ALARM.len() + 8..)?).ok()
}

/// `outbox/<to>/<seq>`: sorted by link, then sequence.
pub fn outbox(to: &OfficeCode, seq: u64) -> Vec<u8> {
    [OUTBOX, to.as_str().as_bytes(), b"/", &seq.to_be_bytes()].concat()
}

/// The prefix of every message waiting on the link to `to`.
pub fn outbox_link(to: &OfficeCode) -> Vec<u8> {
    [OUTBOX, to.as_str().as_bytes(), b"/"].concat()
}

pub fn link(to: &OfficeCode) -> Vec<u8> {
    [LINK, to.as_str().as_bytes()].concat()
}

/// The office a `link/<to>` key names.
pub fn link_office(key: &[u8]) -> Option<OfficeCode> {
    std::str::from_utf8(key.get(LINK.len()..)?)
        .ok()?
        .parse()
        .ok()
}

pub fn inbox(from: &OfficeCode) -> Vec<u8> {
    [INBOX, from.as_str().as_bytes()].concat()
}

pub fn refused(from: &OfficeCode, seq: u64) -> Vec<u8> {
    [refused_link(from).as_slice(), &seq.to_be_bytes()].concat()
}

/// The prefix of every refusal of messages from `from`.
pub fn refused_link(from: &OfficeCode) -> Vec<u8> {
    [REFUSED, from.as_str().as_bytes(), b"/"].concat()
}

pub fn index(case_id: &CaseId) -> Vec<u8> {
    [INDEX, case_id.to_string().as_bytes()].concat()
}

pub fn watermark(child: &OfficeCode) -> Vec<u8> {
    [WATERMARK, child.as_str().as_bytes()].concat()
}

pub fn index_applied(child: &OfficeCode) -> Vec<u8> {
    [INDEX_APPLIED, child.as_str().as_bytes()].concat()
}

pub fn stat(office: &str, figure: &str) -> Vec<u8> {
    [STAT, office.as_bytes(), b"/", figure.as_bytes()].concat()
}

pub fn stat_row(office: &str) -> Vec<u8> {
    [STAT_ROW, office.as_bytes()].concat()
}

pub fn order(order_id: &str) -> Vec<u8> {
    [ORDER, order_id.as_bytes()].concat()
}

pub fn order_by_case(case_id: &CaseId) -> Vec<u8> {
    [ORDER_BY_CASE, case_id.to_string().as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_sort_by_time_and_round_trip() {
        let early = alarm(1_000, "5306-2026-000002");
        let late = alarm(2_000, "5306-2026-000001");
        assert!(early < late);
        assert_eq!(alarm_time(&late), Some(2_000));
        assert_eq!(alarm_case(&late), Some("5306-2026-000001"));
    }

    /// The key layout is the stored format: these bytes are what a federation written by an
    /// earlier build holds, so a change here would need a migration.
    #[test]
    fn keys_keep_their_stored_layout() {
        let county: OfficeCode = "530602".parse().unwrap();
        assert_eq!(link(&county), b"link/530602");
        assert_eq!(inbox(&county), b"inbox/530602");
        assert_eq!(
            outbox(&county, 258),
            [b"outbox/530602/".as_slice(), &[0, 0, 0, 0, 0, 0, 1, 2]].concat()
        );
        assert_eq!(
            refused(&county, 1),
            [b"refused/530602/".as_slice(), &[0, 0, 0, 0, 0, 0, 0, 1]].concat()
        );
        assert_eq!(link_office(&link(&county)), Some(county));
        assert_eq!(legacy_request("r1"), b"request/r1");
        assert_eq!(legacy_reply("r1"), b"reply/r1");
        assert_eq!(seq(2026), b"seq/2026");
        assert_eq!(retry("li", "r1"), b"retry/li\0r1");
        assert_eq!(retry("", "r1"), b"retry/\0r1");
        assert_eq!(session_retry("li", "r1"), b"session-retry/li\0r1");
        assert_eq!(desk_retry("li", "r1"), b"desk-retry/li\0r1");
        assert_eq!(
            history("5306-2026-000001", 2),
            [b"history/5306-2026-000001/".as_slice(), &[0, 0, 0, 2]].concat()
        );
        let expiry_key = expiry(258, &retry("", "r1"));
        assert_eq!(
            expiry_key,
            [
                b"expiry/".as_slice(),
                &[0, 0, 0, 0, 0, 0, 1, 2],
                b"retry/\0r1"
            ]
            .concat()
        );
        assert_eq!(expiry_target(&expiry_key), Some(retry("", "r1").as_slice()));
        assert_eq!(
            notify(258),
            [b"notify/".as_slice(), &[0, 0, 0, 0, 0, 0, 1, 2]].concat()
        );
        assert_eq!(notified("5306/x/result/0"), b"notified/5306/x/result/0");
    }
}

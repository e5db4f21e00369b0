//! Messages this office sent that the receiver could not admit (a kind the receiver's build does
//! not know, content its rules refuse): the receiver commits them as refused and the sender does
//! not send them again (see [`crate::federation::link::is_unadmitted`]). Each link keeps how
//! many, and the last one, so that `liandong status` shows them beside the outbox: without this
//! record an operator learns of them only from the sending leader's log at that moment.
//!
//! Key: `unadmitted/<to>` ([`Unadmitted`]), written with the acknowledgement that reports the
//! refusal, in the same commit.

use liandong_domain::{Millis, OfficeCode};
use serde::{Deserialize, Serialize};

use super::apply::{ApplyError, Applying};
use super::get_or_default;
use crate::store::codec::{decode, encode};

/// `unadmitted/<to>`: the messages the office `to` refused on admission.
pub const UNADMITTED: &[u8] = b"unadmitted/";

/// The longest refusal code kept (bytes): it comes from the receiver.
const CODE_BYTES_MAX: usize = 64;

/// The key of the link to `to`.
pub fn key(to: &OfficeCode) -> Vec<u8> {
    [UNADMITTED, to.as_str().as_bytes()].concat()
}

/// The messages of one link that its receiver refused on admission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unadmitted {
    /// How many, since the link began.
    pub count: u64,
    /// The last one: its number on the link, its kind, the receiver's code, and when this
    /// office learned of it (the acknowledgement's apply time, federation clock).
    pub last_seq: u64,
    pub last_kind: String,
    pub last_code: String,
    pub last_at: Millis,
}

/// Counts message `seq` of the link to `to`, of `kind`, refused on admission with `code`.
pub(super) fn record(
    apply: &mut Applying<'_, '_>,
    to: &OfficeCode,
    seq: u64,
    kind: &str,
    code: &str,
) -> Result<(), ApplyError> {
    let key = key(to);
    let mut unadmitted: Unadmitted = get_or_default(apply.txn, &key)?;
    unadmitted.count = unadmitted.count.saturating_add(1);
    unadmitted.last_seq = seq;
    unadmitted.last_kind = kind.to_string();
    unadmitted.last_code = bounded(code, CODE_BYTES_MAX);
    unadmitted.last_at = apply.now;
    apply.txn.put(key, encode(&unadmitted));
    Ok(())
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The record of every link, from a scan of the `unadmitted/` prefix (a record this build cannot
/// read is left out).
pub fn of_links(items: &[(Vec<u8>, Vec<u8>)]) -> Vec<(OfficeCode, Unadmitted)> {
    items
        .iter()
        .filter_map(|(key, value)| {
            let to = std::str::from_utf8(key.get(UNADMITTED.len()..)?).ok()?;
            Some((to.parse().ok()?, decode(value).ok()?))
        })
        .collect()
}

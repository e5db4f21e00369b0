//! The audit log of an office: every officer and operator call, allowed or refused, and every
//! read of personal data, replicated with the office's state and hash-chained.
//!
//! Entry `n` is stored at `audit/<n>` with `hash = SHA-256(prev_hash, n, canonical record)`;
//! `audit-head` keeps the last entry's number and hash. A changed, removed or reordered entry
//! breaks the chain at that entry ([`verify`]). The log is bounded: it keeps the newest
//! [`AUDIT_ENTRIES_MAX`] entries, and appending past that prunes the oldest in the same batch;
//! the head then keeps the number and hash of the last pruned entry, the anchor from which the
//! kept entries still verify.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::apply::{ApplyError, Applying};
use super::{get_or_default, keys, Read};
use crate::raft::types::AuditRecord;
use crate::store::codec::{decode, encode};

/// Entries an office keeps (about 300 bytes each: some 15 MB per office at most).
pub const AUDIT_ENTRIES_MAX: u64 = 50_000;
/// Records one batch carries at most.
pub const AUDIT_BATCH_MAX: usize = 500;
/// The hash before the first entry.
pub const AUDIT_GENESIS_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    pub record: AuditRecord,
}

/// Where the chain stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// The last entry's number (0: none yet).
    pub last_seq: u64,
    pub last_hash: String,
    /// Every entry up to this number was pruned (0: none).
    pub pruned_through: u64,
    /// The hash of entry `pruned_through`: the anchor of the kept entries.
    pub pruned_hash: String,
}

impl Default for AuditHead {
    fn default() -> AuditHead {
        AuditHead {
            last_seq: 0,
            last_hash: AUDIT_GENESIS_HASH.to_string(),
            pruned_through: 0,
            pruned_hash: AUDIT_GENESIS_HASH.to_string(),
        }
    }
}

/// The hash of entry `seq` holding `record`, chained to `prev_hash`.
pub fn entry_hash(prev_hash: &str, seq: u64, record: &AuditRecord) -> String {
    let canonical = serde_json::to_vec(record).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(seq.to_be_bytes());
    hasher.update((canonical.len() as u64).to_be_bytes());
    hasher.update(&canonical);
    hex::encode(hasher.finalize())
}

pub(crate) fn head(reader: &impl Read) -> Result<AuditHead, ApplyError> {
    get_or_default(reader, keys::AUDIT_HEAD)
}

/// Appends `records` in order, then prunes what exceeds [`AUDIT_ENTRIES_MAX`].
pub(super) fn append(
    apply: &mut Applying<'_, '_>,
    records: &[AuditRecord],
) -> Result<(), ApplyError> {
    let mut head = head(apply.txn)?;
    for record in records {
        let record = record.clone().bounded();
        let seq = head.last_seq + 1;
        let hash = entry_hash(&head.last_hash, seq, &record);
        let entry = AuditEntry {
            seq,
            prev_hash: head.last_hash.clone(),
            hash: hash.clone(),
            record,
        };
        apply.txn.put(keys::audit(seq), encode(&entry));
        head.last_seq = seq;
        head.last_hash = hash;
    }
    while head.last_seq - head.pruned_through > AUDIT_ENTRIES_MAX {
        let oldest = head.pruned_through + 1;
        let key = keys::audit(oldest);
        if let Some(bytes) = apply.txn.get(&key)? {
            let entry: AuditEntry = decode(&bytes)?;
            head.pruned_hash = entry.hash;
        }
        apply.txn.delete(key);
        head.pruned_through = oldest;
    }
    apply.txn.put(keys::AUDIT_HEAD.to_vec(), encode(&head));
    Ok(())
}

/// Entries from number `from` on, at most `limit`.
pub(crate) fn entries(
    reader: &impl Read,
    from: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, ApplyError> {
    let end = crate::store::keys::prefix_end(keys::AUDIT);
    reader
        .scan(&keys::audit(from), &end, limit)?
        .iter()
        .map(|(_, value)| Ok(decode(value)?))
        .collect()
}

/// Checks the kept chain from the anchor to the head: `Ok(entries checked)`, or the first
/// entry that does not verify and why.
pub(crate) fn verify(reader: &impl Read) -> Result<Result<u64, String>, ApplyError> {
    let head = head(reader)?;
    let mut expected_prev = head.pruned_hash.clone();
    let mut expected_seq = head.pruned_through + 1;
    let mut checked = 0;
    loop {
        let batch = entries(reader, expected_seq, AUDIT_BATCH_MAX)?;
        if batch.is_empty() {
            break;
        }
        for entry in batch {
            if let Err(why) = check_entry(&entry, expected_seq, &expected_prev) {
                return Ok(Err(why));
            }
            expected_prev = entry.hash.clone();
            expected_seq += 1;
            checked += 1;
        }
    }
    if expected_seq != head.last_seq + 1 || expected_prev != head.last_hash {
        return Ok(Err(format!(
            "the chain ends at entry {} but the head names entry {}",
            expected_seq - 1,
            head.last_seq
        )));
    }
    Ok(Ok(checked))
}

/// One entry in its place: its number, its link to the previous one, its own hash.
pub fn check_entry(entry: &AuditEntry, seq: u64, prev_hash: &str) -> Result<(), String> {
    if entry.seq != seq {
        return Err(format!("entry {seq} is missing (found {})", entry.seq));
    }
    if entry.prev_hash != prev_hash {
        return Err(format!("entry {seq} does not follow entry {}", seq - 1));
    }
    if entry.hash != entry_hash(prev_hash, seq, &entry.record) {
        return Err(format!("entry {seq} was changed after it was written"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::tests::Office;
    use crate::raft::types::Operation;
    use crate::store::Txn;

    fn record(n: u64) -> AuditRecord {
        AuditRecord {
            at_ms: n as i64,
            user: "clerk".into(),
            office: "530602".into(),
            rpc: "Cases.Show".into(),
            case_id: format!("530602-2026-{n:06}"),
            request_id: String::new(),
            result: "ok".into(),
            detail: String::new(),
            count: 1,
        }
    }

    fn txn(office: &Office) -> Txn<'_> {
        Txn::new(&office.db, office.context.office.as_str())
    }

    /// The chain verifies as written; an entry changed on disk (even with its own hash
    /// recomputed) is found, and named.
    #[test]
    fn a_changed_entry_breaks_the_chain_there() {
        let mut office = Office::new("530602", Some("5306"));
        office.apply(Operation::Audit {
            records: (1..=5).map(record).collect(),
        });
        assert_eq!(verify(&txn(&office)).unwrap(), Ok(5));
        let mut entry = entries(&txn(&office), 3, 1).unwrap().remove(0);
        entry.record.user = "someone else".into();
        entry.hash = entry_hash(&entry.prev_hash, 3, &entry.record);
        let mut tamper = txn(&office);
        tamper.put(keys::audit(3), encode(&entry));
        office.db.write(tamper.into_batch(), false).unwrap();
        let broken = verify(&txn(&office)).unwrap().unwrap_err();
        assert!(broken.contains("entry 4"), "{broken}");
    }

    /// Past the bound the oldest entries go, in the same batch, and what is kept still verifies
    /// from the pruned entry's hash.
    #[test]
    fn the_log_is_bounded_and_still_verifies() {
        let mut office = Office::new("530602", Some("5306"));
        let total = AUDIT_ENTRIES_MAX + 700;
        let mut next = 1;
        while next <= total {
            let last = (next + AUDIT_BATCH_MAX as u64 - 1).min(total);
            office.apply(Operation::Audit {
                records: (next..=last).map(record).collect(),
            });
            next = last + 1;
        }
        let head = head(&txn(&office)).unwrap();
        assert_eq!(head.last_seq, total);
        assert_eq!(head.pruned_through, 700);
        assert!(entries(&txn(&office), 1, 1).unwrap()[0].seq == 701);
        assert_eq!(verify(&txn(&office)).unwrap(), Ok(AUDIT_ENTRIES_MAX));
    }

    /// A write and its audit record commit in one entry, the record carrying what applying
    /// answered (a refusal's code), and the case a registration made.
    #[test]
    fn a_write_carries_its_record() {
        let mut office = Office::new("530602", Some("5306"));
        let mut audited = record(0);
        audited.case_id = String::new();
        audited.rpc = "Cases.File".into();
        let op = Operation::Audited {
            record: audited.clone(),
            op: Box::new(Operation::File {
                registration: crate::machine::tests::registration(),
                request_id: None,
                caller: "clerk".into(),
            }),
        };
        office.apply(op);
        let accept_missing = Operation::Audited {
            record: audited,
            op: Box::new(Operation::Act {
                case_id: "530602-2026-000099".parse().unwrap(),
                command: liandong_domain::CaseCommand::Accept {
                    officer: "clerk".into(),
                },
                request_id: None,
                caller: "clerk".into(),
            }),
        };
        office.apply(accept_missing);
        let kept = entries(&txn(&office), 1, 10).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].record.result, "ok");
        assert!(
            kept[0].record.case_id.starts_with("530602-"),
            "{:?}",
            kept[0]
        );
        assert_eq!(kept[1].record.result, "refused: case_not_found");
    }
}

//! Personal data an earlier build stored in clear, sealed where it lies when a replica opens.
//!
//! Builds before field sealing kept a petitioner's name, ID number and phone in clear in the
//! case (`case/<id>`), in the case documents request records answered with (`retry/…`), in
//! the handoffs waiting in the outbox (`outbox/…`) and in the SMS notices waiting to be sent
//! (`notify/…`). Without this step such a case was sealed
//! only when it moved. Once per replica, before its Raft starts (nothing applies meanwhile),
//! every such value is sealed under the office's data key in bounded batches
//! ([`RESEAL_BATCH_ITEMS`] values per RocksDB batch), with nonces derived from the case, the
//! field and the value ([`crate::personal::OfficeSeal::reseal_case`]) so that every replica
//! writes the same bytes. A meta mark records that it is done; a crash midway leaves it unset
//! and the walk runs again (a sealed value is left as it is, so a second walk changes nothing).
//!
//! The clear bytes the old values left in RocksDB's files go with the next compaction of the
//! files that hold them; the walk flushes and compacts the office's range once it is done.

// Errors are openraft's `StorageError` (large), as for every storage step a replica's open runs.
#![allow(clippy::result_large_err)]

use liandong_domain::message::{Body, CaseDocument, Envelope};
use liandong_domain::Case;
use rocksdb::WriteBatch;

use super::keys;
use super::notify::Notification;
use super::requests::RequestRecord;
use crate::personal::{Field, OfficeSeal};
use crate::raft::types::StorageError;
use crate::store::codec::{decode, encode};
use crate::store::keys::{meta_key, office_prefix, prefix_end, CF_META, CF_SM};
use crate::store::{read_err, HostDb, Txn};

/// Meta key of the mark: present once the office's clear values were sealed.
pub const RESEAL_MARK: &str = "resealed";
/// Values read per RocksDB batch.
pub const RESEAL_BATCH_ITEMS: usize = 256;

/// What one walk sealed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resealed {
    /// Cases whose stored header held a clear field.
    pub cases: usize,
    /// Request records whose saved reply did.
    pub replies: usize,
    /// Handoffs and escalations waiting in the outbox that did.
    pub messages: usize,
    /// SMS notices waiting to be sent whose phone was clear.
    pub notices: usize,
    /// Fields sealed in all.
    pub fields: usize,
    /// Whether the walk ran (false: the mark said it was done).
    pub ran: bool,
}

/// Seals every clear personal value of `office` stored in `db`, once: nothing when the mark is
/// set. Call it before the office's Raft starts.
pub fn run(db: &HostDb, office: &str, seal: &OfficeSeal) -> Result<Resealed, StorageError> {
    let mark = meta_key(office, RESEAL_MARK);
    let meta = db.cf(CF_META);
    let mut done = Resealed::default();
    if db.raw().get_cf(meta, &mark).map_err(read_err)?.is_some() {
        return Ok(done);
    }
    done.ran = true;
    walk(
        db,
        office,
        keys::CASE,
        |_, value, done| {
            let mut case = Case::from_bytes(value).map_err(read_err)?;
            let (fields, left) = seal.reseal_case(&mut case);
            warn_left(office, &case, &left);
            if fields == 0 {
                return Ok(None);
            }
            done.cases += 1;
            done.fields += fields;
            Ok(Some(encode(&case)))
        },
        &mut done,
    )?;
    walk(
        db,
        office,
        keys::RETRY,
        |_, value, done| {
            let mut record: RequestRecord = decode(value).map_err(read_err)?;
            let Some(reply) = resealed_document(seal, office, &record.reply, done)? else {
                return Ok(None);
            };
            record.reply = reply;
            done.replies += 1;
            Ok(Some(encode(&record)))
        },
        &mut done,
    )?;
    walk(
        db,
        office,
        keys::OUTBOX,
        |_, value, done| {
            let mut envelope: Envelope = decode(value).map_err(read_err)?;
            let document = match &mut envelope.body {
                Body::Handoff { case } | Body::Escalation { case, .. } => case,
                _ => return Ok(None),
            };
            let Some(bytes) = resealed_document(seal, office, document.bytes(), done)? else {
                return Ok(None);
            };
            *document = CaseDocument::from_bytes(bytes);
            done.messages += 1;
            Ok(Some(encode(&envelope)))
        },
        &mut done,
    )?;
    walk(
        db,
        office,
        keys::NOTIFY,
        |_, value, done| {
            let mut notice: Notification = decode(value).map_err(read_err)?;
            let sealed = seal.reseal_value(
                &notice.case_id.to_string(),
                &notice.petitioner_key,
                Field::Phone,
                &mut notice.phone,
            );
            if !sealed {
                return Ok(None);
            }
            done.notices += 1;
            done.fields += 1;
            Ok(Some(encode(&notice)))
        },
        &mut done,
    )?;
    let mut batch = WriteBatch::default();
    batch.put_cf(meta, &mark, [1]);
    db.write(batch, true)?;
    if done.fields > 0 {
        // The clear bytes stay in the files that held them until those are compacted.
        let prefix = office_prefix(office);
        let raw = db.raw();
        raw.flush_cf(db.cf(CF_SM)).map_err(read_err)?;
        raw.compact_range_cf(db.cf(CF_SM), Some(&prefix), Some(&prefix_end(&prefix)));
        tracing::info!(
            office,
            cases = done.cases,
            replies = done.replies,
            messages = done.messages,
            notices = done.notices,
            fields = done.fields,
            "sealed the personal data an earlier build stored in clear"
        );
    }
    Ok(done)
}

/// A case document with its clear fields sealed; None when it had none.
fn resealed_document(
    seal: &OfficeSeal,
    office: &str,
    bytes: &[u8],
    done: &mut Resealed,
) -> Result<Option<Vec<u8>>, StorageError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let mut case = Case::from_bytes(bytes).map_err(read_err)?;
    let (fields, left) = seal.reseal_case(&mut case);
    warn_left(office, &case, &left);
    if fields == 0 {
        return Ok(None);
    }
    done.fields += fields;
    Ok(Some(case.to_bytes()))
}

fn warn_left(office: &str, case: &Case, left: &[String]) {
    if !left.is_empty() {
        tracing::warn!(office, case_id = %case.id, fields = ?left, "a clear value too long to seal stays clear");
    }
}

/// Walks the keys under `prefix` in batches, writing back the values `change` rewrites.
fn walk(
    db: &HostDb,
    office: &str,
    prefix: &[u8],
    mut change: impl FnMut(&[u8], &[u8], &mut Resealed) -> Result<Option<Vec<u8>>, StorageError>,
    done: &mut Resealed,
) -> Result<(), StorageError> {
    let end = prefix_end(prefix);
    let mut from = prefix.to_vec();
    loop {
        let mut txn = Txn::new(db, office);
        let page = txn
            .scan(&from, &end, RESEAL_BATCH_ITEMS)
            .map_err(read_err)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        from = [last.as_slice(), b"\0"].concat();
        for (key, value) in page {
            if let Some(value) = change(&key, &value, done)? {
                txn.put(key, value);
            }
        }
        db.write(txn.into_batch(), false)?;
    }
}

/// Whether a case's petitioner still holds a clear personal field.
pub fn has_clear(case: &Case) -> bool {
    case.petitioner.as_ref().is_some_and(|petitioner| {
        !petitioner.name.is_sealed()
            || !petitioner.id_number.is_sealed()
            || petitioner
                .phone
                .as_ref()
                .is_some_and(|phone| !phone.is_sealed())
    }) || case.address().is_some_and(|address| !address.is_sealed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::tests::Office;
    use crate::raft::types::Operation;

    const PHONE: &str = "13912345678";

    /// Every byte of every file of the database folder.
    fn files_spell(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(files_spell(&path, needle));
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|window| window == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
        found
    }

    /// A case filed in clear through the path an earlier build logged (its header, its request
    /// record's reply and its handoff in the outbox), then the open-time walk: every value
    /// sealed, the case reads back the same through the seal, the second walk changes nothing,
    /// and the phone is found in no file of the database.
    #[test]
    fn clear_values_of_an_earlier_build_are_sealed_once_where_they_lie() {
        let mut township = Office::new("530602001", Some("530602"));
        let seal =
            crate::personal::OfficeSeal::new("530602001".parse().unwrap(), &[9; 32], vec![7; 32]);
        let mut registration = crate::machine::tests::registration();
        registration.phone = Some(PHONE.into());
        let filed = township.apply(Operation::File {
            registration: registration.clone(),
            request_id: Some("r1".into()),
            caller: "li".into(),
        });
        let case = crate::machine::tests::case_of(filed);
        township.apply(Operation::Act {
            case_id: case.id.clone(),
            command: liandong_domain::CaseCommand::Transfer {
                to: "530602".parse().unwrap(),
                officer: "li".into(),
            },
            request_id: None,
            caller: String::new(),
        });
        let before = township.case_whole(&case.id);
        assert!(has_clear(&before), "filed in clear: {before:?}");

        let done = run(&township.db, "530602001", &seal).unwrap();
        assert!(done.ran);
        assert_eq!(done.cases, 1, "{done:?}");
        assert_eq!(done.replies, 1, "{done:?}");
        assert_eq!(done.messages, 1, "{done:?}");
        assert_eq!(done.notices, 1, "{done:?}");
        let mut after = township.case_whole(&case.id);
        assert!(!has_clear(&after), "{after:?}");
        seal.open_case(&mut after).unwrap();
        assert_eq!(after, before, "the same case, read through the seal");

        // Recorded once: a second open does nothing.
        assert_eq!(
            run(&township.db, "530602001", &seal).unwrap(),
            Resealed::default()
        );

        // Deterministic: another replica sealing the same case writes the same bytes.
        let mut one = before.clone();
        let mut two = before.clone();
        seal.reseal_case(&mut one);
        seal.reseal_case(&mut two);
        assert_eq!(encode(&one), encode(&two));

        township.db.flush().unwrap();
        let raw = township.db.raw();
        for cf in [CF_SM, CF_META] {
            raw.compact_range_cf(township.db.cf(cf), None::<&[u8]>, None::<&[u8]>);
        }
        let dir = raw.path().to_path_buf();
        let found = files_spell(&dir, PHONE.as_bytes());
        assert!(found.is_empty(), "the phone is still in {found:?}");
    }
}

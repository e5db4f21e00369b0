//! Backups of one office (`liandong snapshot save|restore`): the office's snapshot file
//! ([`super::snapshot`], the one Raft sends to a follower) wrapped with a header and a checksum,
//! and its restore into the stopped, empty replicas of a fresh replica set.
//!
//! The file:
//!
//! ```text
//! magic    b"LIANDONG-BACKUP\n", format version (u32, big-endian)
//! header   length (u32), then a JSON document (BackupHeader): office, snapshot meta (applied
//!          log id and membership), state hash, cases, created at, body length
//! body     the office's snapshot file, as the state machine writes it (its own records and
//!          SHA-256)
//! digest   SHA-256 of every byte before it
//! ```
//!
//! A restore installs the body into each replica of the office as Raft's last snapshot (the
//! log purged up to it), after putting in the link records it learned from the office's peers:
//! every peer acknowledged or applied some messages after the backup was taken, and a restored
//! office that did not know would send new messages under sequence numbers its peer already
//! took (dropped there as redeliveries) and wait for ever for messages its peer no longer has.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use liandong_domain::OfficeCode;
use rocksdb::{Direction, IteratorMode, Options, WriteBatch, DB};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keys;
use super::records::{LinkIn, LinkOut};
use super::snapshot;
use super::state_machine::{AppliedState, SnapshotRecord, SNAPSHOT_INSTALLING, SNAPSHOT_RECORD};
use crate::raft::types::{NodeId, SnapshotMeta, Vote};
use crate::store::keys::{meta_key, office_prefix, prefix_end, CF_LOG, CF_META, CF_SM};
use crate::store::{codec, HostDb};

/// The backup format this build writes and reads.
pub const BACKUP_VERSION: u32 = 1;
pub const MAGIC: &[u8; 16] = b"LIANDONG-BACKUP\n";
/// The longest header a backup may carry (what this build writes is a few hundred bytes).
pub const HEADER_BYTES_MAX: usize = 64 * 1024;
/// The largest piece of a backup one streamed message carries.
pub const PIECE_BYTES_MAX: usize = 1024 * 1024;
const DIGEST_BYTES: u64 = 32;
const BUFFER_BYTES: usize = 256 * 1024;

/// What a backup says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupHeader {
    pub office: String,
    /// The host and replica that wrote it.
    pub host: String,
    pub replica: NodeId,
    /// The snapshot's meta: the last applied log id and the membership in effect there.
    pub meta: SnapshotMeta,
    pub applied_index: u64,
    pub applied_term: u64,
    pub state_hash: String,
    pub cases: u64,
    /// Wall time (Unix ms) the snapshot was taken.
    pub created_at_ms: i64,
    /// The length of the body (the snapshot file).
    pub body_bytes: u64,
}

impl BackupHeader {
    pub fn new(
        office: &OfficeCode,
        host: &str,
        replica: NodeId,
        applied: &AppliedState,
        created_at_ms: i64,
        body_bytes: u64,
    ) -> BackupHeader {
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id: format!("backup-{created_at_ms}"),
        };
        BackupHeader {
            office: office.to_string(),
            host: host.to_string(),
            replica,
            applied_index: applied.last_applied.map_or(0, |id| id.index),
            applied_term: applied.last_applied.map_or(0, |id| id.leader_id.term),
            meta,
            state_hash: applied.state_hash.clone(),
            cases: applied.cases,
            created_at_ms,
            body_bytes,
        }
    }

    /// The bytes of the file before its body: magic, version, header.
    pub fn encode(&self) -> Vec<u8> {
        let document = serde_json::to_vec(self).unwrap_or_default();
        let mut bytes = Vec::with_capacity(MAGIC.len() + 8 + document.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&BACKUP_VERSION.to_be_bytes());
        bytes.extend_from_slice(&(document.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&document);
        bytes
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Refused before anything changed; the text says why and what to do.
    #[error("{0}")]
    Refused(String),
    #[error("{what}: {error}")]
    Io { what: String, error: io::Error },
    #[error("{0}")]
    Storage(String),
}

fn refused(text: impl Into<String>) -> BackupError {
    BackupError::Refused(text.into())
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> BackupError {
    let what = what.into();
    move |error| BackupError::Io { what, error }
}

fn storage(error: impl std::fmt::Display) -> BackupError {
    BackupError::Storage(error.to_string())
}

/// A backup file checked whole: its structure, its digest and its body's own checksum.
#[derive(Debug)]
pub struct BackupFile {
    pub path: PathBuf,
    pub header: BackupHeader,
    body_offset: u64,
}

impl BackupFile {
    /// Opens and checks the file at `path`; refuses anything but a whole, intact backup of
    /// this format.
    pub fn open(path: &Path) -> Result<BackupFile, BackupError> {
        let shown = path.display().to_string();
        let mut file = File::open(path).map_err(io_error(format!("opening {shown}")))?;
        let length = file
            .metadata()
            .map_err(io_error(format!("reading {shown}")))?
            .len();
        let mut input = BufReader::with_capacity(BUFFER_BYTES, &mut file);
        let mut start = [0u8; 24];
        if input.read_exact(&mut start).is_err() || start[..16] != MAGIC[..] {
            return Err(refused(format!("{shown} is not a Liandong backup")));
        }
        let version = u32::from_be_bytes(start[16..20].try_into().unwrap_or_default());
        if version != BACKUP_VERSION {
            return Err(refused(format!(
                "{shown} is a backup of format version {version}; this build reads version \
                 {BACKUP_VERSION} (restore it with the build that wrote it)"
            )));
        }
        let header_len = u32::from_be_bytes(start[20..24].try_into().unwrap_or_default()) as usize;
        if header_len > HEADER_BYTES_MAX {
            return Err(refused(format!("{shown}: corrupted (a header too long)")));
        }
        let mut document = vec![0u8; header_len];
        input
            .read_exact(&mut document)
            .map_err(|_| refused(format!("{shown}: truncated (in its header)")))?;
        let header: BackupHeader = serde_json::from_slice(&document)
            .map_err(|e| refused(format!("{shown}: corrupted (its header: {e})")))?;
        let body_offset = 24 + header_len as u64;
        let expected = body_offset
            .checked_add(header.body_bytes)
            .and_then(|n| n.checked_add(DIGEST_BYTES));
        match expected {
            Some(expected) if expected == length => {}
            Some(expected) if expected > length => {
                return Err(refused(format!(
                    "{shown}: truncated ({length} bytes of {expected})"
                )))
            }
            _ => {
                return Err(refused(format!(
                    "{shown}: corrupted (its length {length} does not match its header)"
                )))
            }
        }
        drop(input);
        // The digest over everything before it.
        file.seek(SeekFrom::Start(0))
            .map_err(io_error(format!("reading {shown}")))?;
        let mut hasher = Sha256::new();
        let mut limited = BufReader::with_capacity(BUFFER_BYTES, (&mut file).take(length - 32));
        io::copy(&mut limited, &mut HashWriter(&mut hasher))
            .map_err(io_error(format!("reading {shown}")))?;
        let mut stored = [0u8; 32];
        file.read_exact(&mut stored)
            .map_err(io_error(format!("reading {shown}")))?;
        if stored[..] != hasher.finalize()[..] {
            return Err(refused(format!(
                "{shown}: corrupted (checksum mismatch): nothing was restored"
            )));
        }
        let backup = BackupFile {
            path: path.to_path_buf(),
            header,
            body_offset,
        };
        snapshot::for_each_record(backup.body()?, |_, _| Ok(()))
            .map_err(|e| refused(format!("{shown}: corrupted snapshot inside ({e})")))?;
        Ok(backup)
    }

    /// The body (the office's snapshot file), to read.
    pub fn body(&self) -> Result<impl Read, BackupError> {
        let shown = self.path.display().to_string();
        let mut file = File::open(&self.path).map_err(io_error(format!("opening {shown}")))?;
        file.seek(SeekFrom::Start(self.body_offset))
            .map_err(io_error(format!("reading {shown}")))?;
        Ok(file.take(self.header.body_bytes))
    }

    /// The office's links as the backup holds them: (sending side by receiver, receiving side
    /// by sender).
    pub fn links(&self) -> Result<(Links<LinkOut>, Links<LinkIn>), BackupError> {
        let mut out = BTreeMap::new();
        let mut inbound = BTreeMap::new();
        snapshot::for_each_record(self.body()?, |key, value| {
            if let Some(rest) = key.strip_prefix(keys::LINK) {
                if let (Some(to), Ok(link)) = (office_of(rest), codec::decode(value)) {
                    out.insert(to, link);
                }
            } else if let Some(rest) = key.strip_prefix(keys::INBOX) {
                if let (Some(from), Ok(link)) = (office_of(rest), codec::decode(value)) {
                    inbound.insert(from, link);
                }
            }
            Ok(())
        })
        .map_err(storage)?;
        Ok((out, inbound))
    }
}

pub type Links<T> = BTreeMap<OfficeCode, T>;

/// State machine records a restore puts into the snapshot, keys relative to the office prefix.
pub type Records = BTreeMap<Vec<u8>, Vec<u8>>;

fn office_of(bytes: &[u8]) -> Option<OfficeCode> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A peer's side of its two links with the office being restored, as the peer applied them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerLinks {
    /// The peer applied every message from the office up to this one.
    pub applied_from: u64,
    /// The office acknowledged every message from the peer up to this one.
    pub acked_by: u64,
    /// The highest case number of the office, per year, the peer's index holds (an ancestor's
    /// index summarises every case of its subtree).
    pub case_seqs: BTreeMap<u16, u32>,
}

impl PeerLinks {
    /// Takes the higher of each figure (replicas of one peer, or several peers).
    pub fn merge(&mut self, other: &PeerLinks) {
        self.applied_from = self.applied_from.max(other.applied_from);
        self.acked_by = self.acked_by.max(other.acked_by);
        for (year, seq) in &other.case_seqs {
            let best = self.case_seqs.entry(*year).or_default();
            *best = (*best).max(*seq);
        }
    }
}

/// Index entries of one office's cases a peer's index is scanned for at most.
pub const INDEX_SCAN_MAX: usize = 10_000_000;

/// Reads each of `peers`' side of its links with `office` from a host's database at
/// `db_path`, read only (the host may be running); a peer the host holds no state of is left
/// out.
pub fn read_peer_links(
    db_path: &Path,
    peers: &[OfficeCode],
    office: &OfficeCode,
) -> Result<BTreeMap<OfficeCode, PeerLinks>, BackupError> {
    let mut found = BTreeMap::new();
    if !db_path.join("CURRENT").exists() {
        return Ok(found);
    }
    let db = DB::open_cf_for_read_only(
        &Options::default(),
        db_path,
        [CF_LOG, CF_META, CF_SM],
        false,
    )
    .map_err(|e| storage(format!("reading {}: {e}", db_path.display())))?;
    let Some(cf) = db.cf_handle(CF_SM) else {
        return Ok(found);
    };
    for peer in peers {
        if let Some(links) = peer_links_in(&db, cf, peer, office)? {
            found.insert(peer.clone(), links);
        }
    }
    Ok(found)
}

/// `peer`'s side of its links with `office` in a host's database (the state machine's column
/// family `cf`), from one consistent view; None when the host holds no state of `peer`. Read
/// from a stopped host's folder ([`read_peer_links`]) or by a running host for the Backup
/// service's `PeerLinks`.
pub fn peer_links_in(
    db: &DB,
    cf: &rocksdb::ColumnFamily,
    peer: &OfficeCode,
    office: &OfficeCode,
) -> Result<Option<PeerLinks>, BackupError> {
    let view = db.snapshot();
    let prefix = office_prefix(peer.as_str());
    let get = |key: &[u8]| view.get_cf(cf, [prefix.as_slice(), key].concat());
    if get(keys::APPLIED).map_err(storage)?.is_none() {
        return Ok(None);
    }
    let inbox: LinkIn = match get(&keys::inbox(office)).map_err(storage)? {
        Some(bytes) => codec::decode(&bytes).map_err(storage)?,
        None => LinkIn::default(),
    };
    let outbox: LinkOut = match get(&keys::link(office)).map_err(storage)? {
        Some(bytes) => codec::decode(&bytes).map_err(storage)?,
        None => LinkOut::default(),
    };
    let mut case_seqs: BTreeMap<u16, u32> = BTreeMap::new();
    let start = [
        prefix.as_slice(),
        keys::INDEX,
        office.as_str().as_bytes(),
        b"-",
    ]
    .concat();
    let mut options = rocksdb::ReadOptions::default();
    options.set_iterate_upper_bound(prefix_end(&start));
    options.fill_cache(false);
    let entries = view
        .iterator_cf_opt(cf, options, IteratorMode::From(&start, Direction::Forward))
        .take(INDEX_SCAN_MAX);
    for item in entries {
        let (key, _) = item.map_err(storage)?;
        let id = std::str::from_utf8(&key[prefix.len() + keys::INDEX.len()..])
            .ok()
            .and_then(|id| id.parse::<liandong_domain::CaseId>().ok());
        if let Some(id) = id.filter(|id| id.office == *office) {
            let best = case_seqs.entry(id.year).or_default();
            *best = (*best).max(id.seq);
        }
    }
    Ok(Some(PeerLinks {
        applied_from: inbox.applied_through,
        acked_by: outbox.acked_through,
        case_seqs,
    }))
}

/// What a restore does to one link pair of the office, and what it reports lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkRepair {
    pub peer: String,
    /// Messages to the peer numbered in this range (inclusive) were sent after the backup:
    /// the peer applied them, this office no longer has what sent them. New messages are
    /// numbered after them.
    pub sent_after_backup: Option<(u64, u64)>,
    /// Messages from the peer numbered in this range were received after the backup and
    /// acknowledged: the peer no longer has them and this office lost them.
    pub received_after_backup: Option<(u64, u64)>,
}

/// The link records a restore puts into the office's snapshot, from its peers' sides, and what
/// they mean; keys relative to the office prefix.
pub fn repair_links(
    backup: &BackupFile,
    peers: &BTreeMap<OfficeCode, PeerLinks>,
) -> Result<(Records, Vec<LinkRepair>), BackupError> {
    let (links_out, links_in) = backup.links()?;
    let mut records = BTreeMap::new();
    let mut repairs = Vec::new();
    for (peer, seen) in peers {
        let mut repair = LinkRepair {
            peer: peer.to_string(),
            ..LinkRepair::default()
        };
        let mut out = links_out.get(peer).cloned().unwrap_or_default();
        if seen.applied_from > out.last_seq {
            repair.sent_after_backup = Some((out.last_seq + 1, seen.applied_from));
            // Messages still waiting here were applied there too: the first delivery is
            // answered from the peer's watermark and acknowledges them (a handoff among them
            // finishes as acknowledged).
            if out.acked_through == out.last_seq {
                out.acked_through = seen.applied_from;
            }
            out.last_seq = seen.applied_from;
            records.insert(keys::link(peer), codec::encode(&out));
        }
        let mut inbound = links_in.get(peer).cloned().unwrap_or_default();
        if seen.acked_by > inbound.applied_through {
            repair.received_after_backup = Some((inbound.applied_through + 1, seen.acked_by));
            inbound.applied += seen.acked_by - inbound.applied_through;
            inbound.applied_through = seen.acked_by;
            records.insert(keys::inbox(peer), codec::encode(&inbound));
        }
        if repair.sent_after_backup.is_some() || repair.received_after_backup.is_some() {
            repairs.push(repair);
        }
    }
    Ok((records, repairs))
}

/// Case numbers the office gave after the backup, per year (the highest an ancestor's index
/// knows, above the backup's counter), and the counter records that keep a restored office from
/// giving them again; keys relative to the office prefix.
pub fn repair_case_numbers(
    backup: &BackupFile,
    peers: &BTreeMap<OfficeCode, PeerLinks>,
) -> Result<(Records, Vec<NumbersGiven>), BackupError> {
    let mut counters: BTreeMap<u16, u32> = BTreeMap::new();
    snapshot::for_each_record(backup.body()?, |key, value| {
        if let Some(year) = key
            .strip_prefix(keys::SEQ)
            .and_then(|year| std::str::from_utf8(year).ok()?.parse::<u16>().ok())
        {
            if let Ok(seq) = codec::decode::<u32>(value) {
                counters.insert(year, seq);
            }
        }
        Ok(())
    })
    .map_err(storage)?;
    let mut known = PeerLinks::default();
    for seen in peers.values() {
        known.merge(seen);
    }
    let mut records = BTreeMap::new();
    let mut given = Vec::new();
    for (year, highest) in known.case_seqs {
        let counter = counters.get(&year).copied().unwrap_or(0);
        if highest > counter {
            records.insert(keys::seq(year), codec::encode(&highest));
            given.push(NumbersGiven {
                year,
                first: counter + 1,
                last: highest,
            });
        }
    }
    Ok((records, given))
}

/// Case numbers of one year given after the backup: a restored office continues after them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumbersGiven {
    pub year: u16,
    pub first: u32,
    pub last: u32,
}

/// Writes the backup's body with `records` put in, as the snapshot file a restore installs, to
/// `path`.
pub fn prepare_body(
    backup: &BackupFile,
    records: &Records,
    path: &Path,
) -> Result<(), BackupError> {
    snapshot::rewrite(backup.body()?, path, records).map_err(storage)
}

/// Whether `db_path`'s database holds anything of `office` (its applied index, if it says).
/// Refused when the database is in use (its host runs).
pub fn holds_office(db_path: &Path, office: &OfficeCode) -> Result<Option<u64>, BackupError> {
    if !db_path.join("CURRENT").exists() {
        return Ok(None);
    }
    let db = HostDb::open(db_path).map_err(|e| in_use(db_path, e))?;
    office_data(&db, office)
}

fn in_use(db_path: &Path, error: rocksdb::Error) -> BackupError {
    if HostDb::is_lock_held(&error) {
        refused(format!(
            "the database {} is in use: its host is running; stop it first (`liandong down`)",
            db_path.display()
        ))
    } else {
        storage(format!("opening {}: {error}", db_path.display()))
    }
}

fn office_data(db: &HostDb, office: &OfficeCode) -> Result<Option<u64>, BackupError> {
    let prefix = office_prefix(office.as_str());
    let mut found = false;
    for family in [CF_SM, CF_LOG, CF_META] {
        let mut iter = db.raw().iterator_cf(
            db.cf(family),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        if let Some(item) = iter.next() {
            let (key, _) = item.map_err(storage)?;
            found |= key.starts_with(&prefix) && key.as_ref() < prefix_end(&prefix).as_slice();
        }
    }
    if !found {
        return Ok(None);
    }
    let applied = db
        .raw()
        .get_cf(db.cf(CF_SM), [prefix.as_slice(), keys::APPLIED].concat())
        .map_err(storage)?
        .and_then(|bytes| codec::decode::<AppliedState>(&bytes).ok())
        .and_then(|applied| applied.last_applied)
        .map_or(0, |id| id.index);
    Ok(Some(applied))
}

/// Restores a replica of `office` into the database at `db_path` (its host stopped, the office
/// absent there) from the snapshot file `body` ([`prepare_body`]) described by `meta`: the file
/// is kept as the replica's current snapshot, its records installed, and the Raft log starts
/// after it (purged up to it; the vote at its term, so the next election follows it). A crash
/// midway is finished when the host opens the office.
pub fn restore_replica(
    db_path: &Path,
    office: &OfficeCode,
    meta: &SnapshotMeta,
    body: &Path,
) -> Result<(), BackupError> {
    let db = HostDb::open(db_path).map_err(|e| in_use(db_path, e))?;
    if let Some(index) = office_data(&db, office)? {
        return Err(refused(format!(
            "{} already holds office {office} (applied index {index}): a restore goes into a \
             fresh replica set; move that host's data folder away first",
            db_path.display()
        )));
    }
    let Some(last) = meta.last_log_id else {
        return Err(refused("the backup holds an office that applied nothing"));
    };
    let folder = db.snapshot_dir(office.as_str());
    std::fs::create_dir_all(&folder).map_err(io_error(format!("creating {}", folder.display())))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let record = SnapshotRecord {
        meta: meta.clone(),
        file: format!("snapshot-{:020}-{nanos}.snap", last.index),
    };
    let path = folder.join(&record.file);
    std::fs::copy(body, &path).map_err(io_error(format!("writing {}", path.display())))?;
    File::open(&path)
        .and_then(|file| file.sync_all())
        .map_err(io_error(format!("writing {}", path.display())))?;
    snapshot::check(&path).map_err(storage)?;
    let name = office.as_str();
    let meta_cf = db.cf(CF_META);
    let encoded = codec::encode(&record);
    // Marked first, with the Raft state that starts after the snapshot: a crash from here on
    // is finished by the host, which installs a marked snapshot again when it opens.
    let mut marker = WriteBatch::default();
    marker.put_cf(meta_cf, meta_key(name, SNAPSHOT_INSTALLING), &encoded);
    marker.put_cf(meta_cf, meta_key(name, "purged"), codec::encode(&last));
    marker.put_cf(
        meta_cf,
        meta_key(name, "committed"),
        codec::encode(&Some(last)),
    );
    // The vote of a replica that applied the snapshot's last entry: for its leader, in its term
    // (not committed): the next election runs in a later term.
    let vote = Vote::new(last.leader_id.term, last.leader_id.node_id);
    marker.put_cf(meta_cf, meta_key(name, "vote"), codec::encode(&vote));
    db.write(marker, true).map_err(storage)?;
    let mut done = WriteBatch::default();
    done.put_cf(meta_cf, meta_key(name, SNAPSHOT_RECORD), &encoded);
    done.delete_cf(meta_cf, meta_key(name, SNAPSHOT_INSTALLING));
    snapshot::install(&db, &office_prefix(name), &path, done).map_err(storage)?;
    db.flush().map_err(storage)?;
    Ok(())
}

//! Snapshots as files. Building one streams a consistent RocksDB view of an office's state
//! machine keys into a file; openraft sends the file to a follower in chunks of at most
//! [`SNAPSHOT_CHUNK_BYTES_MAX`]; the follower streams the file into its RocksDB in batches of at
//! most [`INSTALL_BATCH_BYTES_MAX`]. No step holds a snapshot whole in memory.
//!
//! The file (the snapshot's version 2; version 1 was one JSON value in the meta column family,
//! which a replica of this build drops when it opens: openraft builds a new snapshot when it
//! needs one):
//!
//! ```text
//! magic    b"LIANDONG-SNAPSHOT", version byte 2
//! record*  key length (u32, big-endian), key, value length (u32), value
//!          keys relative to the office prefix, in key order; values as stored
//! end      0xFFFF_FFFF, then the SHA-256 of every byte before it
//! ```

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use sha2::{Digest, Sha256};

use super::keys;
use super::state_machine::AppliedState;
use crate::store::codec;
use crate::store::keys::{prefix_end, CF_SM};
use crate::store::HostDb;

/// The largest piece of a snapshot one InstallSnapshot call carries: well under the transport's
/// message limit ([`federation_proto::MESSAGE_BYTES_MAX`]).
pub const SNAPSHOT_CHUNK_BYTES_MAX: u64 = 1024 * 1024;
const _: () = assert!(SNAPSHOT_CHUNK_BYTES_MAX * 4 <= federation_proto::MESSAGE_BYTES_MAX as u64);
/// The largest RocksDB batch an install writes at once.
pub const INSTALL_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// The longest key and value a snapshot file may hold (what this build writes is far below; a
/// longer one means a corrupt file, refused before anything is allocated for it).
pub const KEY_BYTES_MAX: usize = 64 * 1024;
pub const VALUE_BYTES_MAX: usize = 16 * 1024 * 1024;

const MAGIC: &[u8] = b"LIANDONG-SNAPSHOT";
const VERSION: u8 = 2;
const END: u32 = u32::MAX;
/// Buffer of the file reader and writer.
const BUFFER_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot file: {0}")]
    Io(#[from] io::Error),
    #[error("RocksDB: {0}")]
    Storage(#[from] rocksdb::Error),
    #[error("snapshot file is not a version-{VERSION} snapshot: {0}")]
    Format(&'static str),
    #[error("the snapshot's applied state does not decode: {0}")]
    Applied(#[from] codec::CodecError),
}

fn format_error(what: &'static str) -> SnapshotError {
    SnapshotError::Format(what)
}

/// Writes the office's state machine keys, as of one consistent view, to `path` (synced), and
/// returns the applied state they hold.
pub fn write(db: &HostDb, prefix: &[u8], path: &Path) -> Result<AppliedState, SnapshotError> {
    let raw = db.raw();
    let view = raw.snapshot();
    let cf = db.cf(CF_SM);
    let applied_key = [prefix, keys::APPLIED].concat();
    let applied = match view.get_cf(cf, &applied_key)? {
        Some(bytes) => codec::decode(&bytes)?,
        None => AppliedState::default(),
    };
    let mut out = Hashing::new(BufWriter::with_capacity(BUFFER_BYTES, File::create(path)?));
    out.write_all(MAGIC)?;
    out.write_all(&[VERSION])?;
    let mut options = ReadOptions::default();
    options.set_snapshot(&view);
    options.set_iterate_upper_bound(prefix_end(prefix));
    // A scan read once: keep its blocks out of the cache the write path uses.
    options.fill_cache(false);
    for item in raw.iterator_cf_opt(cf, options, IteratorMode::From(prefix, Direction::Forward)) {
        let (key, value) = item?;
        write_record(&mut out, &key[prefix.len()..], &value)?;
    }
    finish_file(out)?;
    Ok(applied)
}

fn write_record(out: &mut impl Write, key: &[u8], value: &[u8]) -> io::Result<()> {
    out.write_all(&length(key.len())?.to_be_bytes())?;
    out.write_all(key)?;
    out.write_all(&length(value.len())?.to_be_bytes())?;
    out.write_all(value)
}

/// Writes the end mark and the checksum, and syncs the file.
fn finish_file(mut out: Hashing<BufWriter<File>>) -> Result<(), SnapshotError> {
    out.write_all(&END.to_be_bytes())?;
    let (writer, digest) = out.finish();
    let mut file = writer.into_inner().map_err(|e| e.into_error())?;
    file.write_all(&digest)?;
    file.sync_all()?;
    Ok(())
}

/// Reads every record of the snapshot in `input` (checked whole: structure and checksum).
pub fn for_each_record(
    input: impl Read,
    each: impl FnMut(&[u8], &[u8]) -> io::Result<()>,
) -> Result<(), SnapshotError> {
    read_from(input, each)
}

/// Copies the snapshot in `input` to a new file at `path` (synced), with the records of
/// `replace` put in (a key present is given the new value, a key absent is added in its
/// place): a restore adjusts the links of the office it restores this way. When `input`
/// turns out not to be a whole, intact snapshot, `path` is removed and nothing else changed.
pub fn rewrite(
    input: impl Read,
    path: &Path,
    replace: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
) -> Result<(), SnapshotError> {
    let copy = || -> Result<(), SnapshotError> {
        let mut out = Hashing::new(BufWriter::with_capacity(BUFFER_BYTES, File::create(path)?));
        out.write_all(MAGIC)?;
        out.write_all(&[VERSION])?;
        let mut pending = replace.iter().peekable();
        read_from(input, |key, value| {
            while let Some((new_key, new_value)) = pending.next_if(|(k, _)| k.as_slice() < key) {
                write_record(&mut out, new_key, new_value)?;
            }
            match pending.next_if(|(k, _)| k.as_slice() == key) {
                Some((_, new_value)) => write_record(&mut out, key, new_value),
                None => write_record(&mut out, key, value),
            }
        })?;
        for (new_key, new_value) in pending {
            write_record(&mut out, new_key, new_value)?;
        }
        finish_file(out)
    };
    copy().inspect_err(|_| {
        let _ = std::fs::remove_file(path);
    })
}

fn length(len: usize) -> io::Result<u32> {
    u32::try_from(len)
        .ok()
        .filter(|&len| len != END)
        .ok_or_else(|| io::Error::other("a key or value too long for a snapshot"))
}

/// Checks `path` end to end (structure and checksum) without changing anything.
pub fn check(path: &Path) -> Result<(), SnapshotError> {
    read_records(path, |_, _| Ok(()))
}

/// Replaces the office's state machine keys with the snapshot at `path`, in batches, and writes
/// `last` (the snapshot record, the end of the install) after them, synced. The caller checks
/// the file first ([`check`]), so a corrupt one changes nothing; a crash midway leaves a partial
/// state, so the caller marks the install before it starts and runs it again at open.
pub fn install(
    db: &HostDb,
    prefix: &[u8],
    path: &Path,
    last: WriteBatch,
) -> Result<(), SnapshotError> {
    let cf = db.cf(CF_SM);
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(cf, prefix, &prefix_end(prefix));
    read_records(path, |key, value| {
        batch.put_cf(cf, [prefix, key].concat(), value);
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES_MAX {
            db.write(std::mem::take(&mut batch), false)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    })?;
    db.write(batch, false)
        .map_err(|e| io::Error::other(e.to_string()))?;
    db.write(last, true)
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(())
}

/// Calls `each` with every record of the file at `path`, in order, once its structure and
/// checksum are known good up to that record; fails on anything but a whole, intact file.
fn read_records(
    path: &Path,
    each: impl FnMut(&[u8], &[u8]) -> io::Result<()>,
) -> Result<(), SnapshotError> {
    read_from(File::open(path)?, each)
}

fn read_from(
    input: impl Read,
    mut each: impl FnMut(&[u8], &[u8]) -> io::Result<()>,
) -> Result<(), SnapshotError> {
    let mut input = Hashing::new(BufReader::with_capacity(BUFFER_BYTES, input));
    let mut magic = [0u8; MAGIC.len() + 1];
    input.read_exact(&mut magic)?;
    if &magic[..MAGIC.len()] != MAGIC || magic[MAGIC.len()] != VERSION {
        return Err(format_error("no snapshot header"));
    }
    let mut key = Vec::new();
    let mut value = Vec::new();
    loop {
        let key_len = read_u32(&mut input)?;
        if key_len == END {
            break;
        }
        read_field(&mut input, key_len, KEY_BYTES_MAX, &mut key)?;
        let value_len = read_u32(&mut input)?;
        read_field(&mut input, value_len, VALUE_BYTES_MAX, &mut value)?;
        each(&key, &value)?;
    }
    let (mut reader, digest) = input.finish();
    let mut stored = [0u8; 32];
    reader.read_exact(&mut stored)?;
    if stored != digest {
        return Err(format_error("checksum mismatch"));
    }
    if reader.read(&mut [0u8; 1])? != 0 {
        return Err(format_error("bytes after the end"));
    }
    Ok(())
}

fn read_u32(input: &mut impl Read) -> Result<u32, SnapshotError> {
    let mut bytes = [0u8; 4];
    input.read_exact(&mut bytes)?;
    Ok(u32::from_be_bytes(bytes))
}

fn read_field(
    input: &mut impl Read,
    len: u32,
    max: usize,
    into: &mut Vec<u8>,
) -> Result<(), SnapshotError> {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > max {
        return Err(format_error("a key or value longer than a snapshot holds"));
    }
    into.resize(len, 0);
    input.read_exact(into)?;
    Ok(())
}

/// A reader or writer that hashes every byte passing through it.
struct Hashing<T> {
    inner: T,
    hasher: Sha256,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Hashing<T> {
        Hashing {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> (T, [u8; 32]) {
        (self.inner, self.hasher.finalize().into())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..read]);
        Ok(read)
    }
}

//! `liandong snapshot save|restore`: backups of one office (docs/operations.md, "Backup and
//! restore").
//!
//! Save asks the office's leader (any replica when none answers as leader) for a backup over
//! the Backup service with the operator certificate: the replica writes its snapshot of one
//! consistent view of what it applied and streams it in pieces of at most 1 MiB; this command
//! writes them to `FILE.partial` as they come, checks the digest the replica sent against its
//! own, and only then names the file `FILE`. Nothing holds the office whole in memory.
//!
//! Restore works on the restored office's stopped hosts, on this machine's data folders: it
//! checks the file whole, refuses a foreign office, a running host or a replica that still
//! holds the office; learns every other office's side of its links with the restored office,
//! and puts into the snapshot what those peers applied or had acknowledged after the backup was
//! taken (see `liandong_node::machine::backup`); then installs it into every replica of the
//! backup's membership. The peers' side comes from their running hosts over the network
//! (`Backup.PeerLinks`, wherever they run), else from a stopped host's data folder on this
//! machine (read only); a host that answered neither way is named.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use federation_proto::v1::backup_client::BackupClient;
use federation_proto::v1::save_piece::Piece;
use federation_proto::v1::{PeerLinksRequest, SaveRequest};
use liandong_domain::OfficeCode;
use liandong_node::machine::backup::{self, BackupFile, BackupHeader, PeerLinks};
use liandong_node::manifest::{HostConfig, HostEntry, Manifest, OfficeEntry};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::client::{channel, retryable, status_error, Federation};
use crate::commands::Report;
use crate::layout::Layout;
use crate::progress::Progress;

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Save a consistent backup of a running office to a file (operator certificate).
    ///
    /// Example: liandong snapshot save --office 530602 --out 530602.backup
    Save(SaveArgs),
    /// Restore an office from a backup into a fresh replica set: its hosts stopped, the office
    /// absent from their data. Then `liandong up`.
    ///
    /// Example: liandong snapshot restore --office 530602 --from 530602.backup
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    #[arg(long)]
    pub office: String,
    /// The backup file to write (refused if it exists).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[arg(long)]
    pub office: String,
    /// The backup file, as `snapshot save` wrote it.
    #[arg(long)]
    pub from: PathBuf,
}

pub async fn run(layout: &Layout, command: SnapshotCommand) -> anyhow::Result<Report> {
    match command {
        SnapshotCommand::Save(args) => save(layout, &args).await,
        SnapshotCommand::Restore(args) => restore(layout, &args).await,
    }
}

/// `office`'s code and its entry in the manifest (refused if it is not in this federation).
fn office_entry<'m>(
    manifest: &'m Manifest,
    office: &str,
) -> anyhow::Result<(OfficeCode, &'m OfficeEntry)> {
    let code: OfficeCode = office
        .parse()
        .map_err(|e| anyhow!("bad office code {office:?}: {e}"))?;
    let entry = manifest
        .office(office)
        .ok_or_else(|| anyhow!("no office {office} in this federation"))?;
    Ok((code, entry))
}

/// The partial file beside `out`.
fn partial_of(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// The office's api addresses, its leader's first.
async fn hosts_leader_first(
    federation: &Federation,
    manifest: &Manifest,
    office: &str,
) -> Vec<(String, String)> {
    let mut hosts: Vec<(String, String)> = manifest
        .office(office)
        .map(|entry| {
            entry
                .members
                .iter()
                .filter_map(|member| manifest.host(&member.host))
                .map(|host| (host.name.clone(), host.api_addr.clone()))
                .collect()
        })
        .unwrap_or_default();
    let statuses = federation.statuses().await;
    let leader = statuses.iter().find_map(|(host, reply)| {
        reply
            .as_ref()?
            .replicas
            .iter()
            .any(|r| r.office == office && r.state == "Leader")
            .then(|| host.name.clone())
    });
    if let Some(leader) = leader {
        hosts.sort_by_key(|(name, _)| *name != leader);
    }
    hosts
}

async fn save(layout: &Layout, args: &SaveArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let manifest = layout.load_manifest()?;
    office_entry(&manifest, &args.office)?;
    if args.out.exists() {
        bail!(
            "{} exists: choose another file (a backup is never written over)",
            args.out.display()
        );
    }
    let partial = partial_of(&args.out);
    let mut last = Status::unavailable(format!("office {} has no hosts", args.office));
    for (host, addr) in hosts_leader_first(&federation, &manifest, &args.office).await {
        match save_from(&addr, &args.office, &partial).await {
            Ok(saved) => {
                std::fs::rename(&partial, &args.out)
                    .with_context(|| format!("naming {}", args.out.display()))?;
                if let Some(folder) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
                    let _ = std::fs::File::open(folder).and_then(|f| f.sync_all());
                }
                return Ok(saved_report(&saved, &host, &args.out));
            }
            Err(SaveError::Status(status)) if retryable(&status) => {
                let _ = std::fs::remove_file(&partial);
                last = status;
            }
            Err(SaveError::Status(status)) => {
                let _ = std::fs::remove_file(&partial);
                return Err(status_error(&status));
            }
            Err(SaveError::Other(error)) => {
                let _ = std::fs::remove_file(&partial);
                return Err(error);
            }
        }
    }
    Err(anyhow!(
        "no replica of office {} answered: {}",
        args.office,
        last.message()
    ))
}

enum SaveError {
    Status(Status),
    Other(anyhow::Error),
}

impl From<Status> for SaveError {
    fn from(status: Status) -> SaveError {
        SaveError::Status(status)
    }
}

impl From<anyhow::Error> for SaveError {
    fn from(error: anyhow::Error) -> SaveError {
        SaveError::Other(error)
    }
}

impl From<std::io::Error> for SaveError {
    fn from(error: std::io::Error) -> SaveError {
        SaveError::Other(error.into())
    }
}

struct Saved {
    header: BackupHeader,
    bytes: u64,
    digest: String,
}

/// Streams the backup from the host at `addr` into `partial`, checked and synced.
async fn save_from(addr: &str, office: &str, partial: &Path) -> Result<Saved, SaveError> {
    let mut client = BackupClient::new(channel(addr).await?);
    let mut stream = client
        .save(SaveRequest {
            office: office.to_string(),
        })
        .await?
        .into_inner();
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(partial)
            .map_err(|e| anyhow!("creating {}: {e}", partial.display()))?,
    );
    let mut hasher = Sha256::new();
    let mut header: Option<BackupHeader> = None;
    let mut written = 0u64;
    let mut body_written = 0u64;
    let mut progress: Option<Progress> = None;
    while let Some(piece) = stream.message().await? {
        match piece.piece {
            Some(Piece::Header(bytes)) if header.is_none() => {
                let parsed = bytes
                    .get(24..)
                    .and_then(|document| serde_json::from_slice::<BackupHeader>(document).ok())
                    .ok_or_else(|| anyhow!("the replica sent a header this build does not read"))?;
                progress = Some(Progress::new(
                    format!("saving office {office}"),
                    parsed.body_bytes,
                    true,
                ));
                header = Some(parsed);
                hasher.update(&bytes);
                file.write_all(&bytes)?;
                written += bytes.len() as u64;
            }
            Some(Piece::Data(bytes)) if header.is_some() => {
                hasher.update(&bytes);
                file.write_all(&bytes)?;
                written += bytes.len() as u64;
                body_written += bytes.len() as u64;
                if let Some(progress) = progress.as_mut() {
                    progress.at(body_written);
                }
            }
            Some(Piece::Digest(digest)) => {
                if let Some(progress) = &progress {
                    progress.done();
                }
                let header = header.ok_or_else(|| anyhow!("the replica sent no header"))?;
                let ours = hasher.finalize();
                if digest[..] != ours[..] {
                    return Err(anyhow!(
                        "the backup arrived damaged (checksum mismatch); try again"
                    )
                    .into());
                }
                file.write_all(&ours)?;
                written += ours.len() as u64;
                let file = file.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                // The file as written must read back whole.
                BackupFile::open(partial).map_err(|e| anyhow!("{e}"))?;
                return Ok(Saved {
                    header,
                    bytes: written,
                    digest: hex::encode(ours),
                });
            }
            _ => return Err(anyhow!("the replica sent the backup out of order").into()),
        }
    }
    Err(Status::unavailable("the backup stream ended early").into())
}

fn saved_report(saved: &Saved, host: &str, out: &Path) -> Report {
    let header = &saved.header;
    let json = json!({
        "office": header.office,
        "file": out.display().to_string(),
        "bytes": saved.bytes,
        "sha256": saved.digest,
        "applied_index": header.applied_index,
        "applied_term": header.applied_term,
        "cases": header.cases,
        "state_hash": header.state_hash,
        "created_at_ms": header.created_at_ms,
        "host": host,
        "replica": header.replica,
        "format_version": backup::BACKUP_VERSION,
    });
    let text = format!(
        "office {} saved to {}: applied index {} (term {}), {} cases, {} bytes, from replica {} \
         on {host}; sha256 {}",
        header.office,
        out.display(),
        header.applied_index,
        header.applied_term,
        header.cases,
        saved.bytes,
        header.replica,
        saved.digest
    );
    Report::new(json, text)
}

/// The database folder of `host`, from its config (the manifest's layout by default).
fn db_path(layout: &Layout, host: &str) -> PathBuf {
    let data_dir = HostConfig::load(&layout.host_config(host))
        .map(|config| config.data_dir)
        .unwrap_or_else(|_| layout.data_dir(host));
    data_dir.join("db")
}

/// How long one host may take to tell its offices' side of their links with the restored one.
pub const PEER_LINKS_TIMEOUT_MS: u64 = 5_000;

/// How a host told its offices' side of the links (or did not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    Network,
    Folder,
    Neither,
}

/// The offices' side of their links with `office` from the running host at `addr`: each office
/// it carries, what it applied from `office`, what `office` acknowledged, the case numbers its
/// index holds.
async fn ask_peer_links(
    addr: &str,
    office: &OfficeCode,
) -> Result<Vec<(OfficeCode, PeerLinks)>, String> {
    let attempt = async {
        let mut client = BackupClient::new(channel(addr).await?);
        client
            .peer_links(PeerLinksRequest {
                office: office.to_string(),
            })
            .await
    };
    let reply = tokio::time::timeout(
        std::time::Duration::from_millis(PEER_LINKS_TIMEOUT_MS),
        attempt,
    )
    .await
    .map_err(|_| format!("no answer within {PEER_LINKS_TIMEOUT_MS} ms"))?
    .map_err(|status| status.message().to_string())?
    .into_inner();
    let mut found = Vec::new();
    for state in reply.peers {
        let peer: OfficeCode = state
            .peer
            .parse()
            .map_err(|e| format!("answered for office {:?}: {e}", state.peer))?;
        let mut case_seqs = BTreeMap::new();
        for (year, seq) in state.case_seqs {
            let year = u16::try_from(year)
                .map_err(|_| format!("answered year {year} for office {peer}"))?;
            case_seqs.insert(year, seq);
        }
        found.push((
            peer,
            PeerLinks {
                applied_from: state.applied_from,
                acked_by: state.acked_by,
                case_seqs,
            },
        ));
    }
    Ok(found)
}

/// Every other office's side of its links with `office`, from every host carrying one: over the
/// network from the hosts that run (asked at once), else from a stopped host's data folder on
/// this machine. Also how each host told it.
async fn peers_side(
    layout: &Layout,
    manifest: &Manifest,
    office: &OfficeCode,
) -> anyhow::Result<(
    BTreeMap<OfficeCode, PeerLinks>,
    BTreeMap<String, Told>,
    BTreeMap<String, String>,
)> {
    let peers: Vec<OfficeCode> = manifest
        .offices
        .iter()
        .filter(|other| other.code != office.as_str())
        .filter_map(|other| other.code.parse().ok())
        .collect();
    let asked: Vec<(&HostEntry, Vec<OfficeCode>)> = manifest
        .hosts
        .iter()
        .map(|host| {
            let carried: Vec<OfficeCode> = peers
                .iter()
                .filter(|peer| host.offices.iter().any(|code| code == peer.as_str()))
                .cloned()
                .collect();
            (host, carried)
        })
        .filter(|(_, carried)| !carried.is_empty())
        .collect();
    let answers = futures::future::join_all(
        asked
            .iter()
            .map(|(host, _)| ask_peer_links(&host.api_addr, office)),
    )
    .await;
    let mut seen: BTreeMap<OfficeCode, PeerLinks> = BTreeMap::new();
    let mut told = BTreeMap::new();
    let mut why = BTreeMap::new();
    for ((host, carried), answer) in asked.iter().zip(answers) {
        let how = match answer {
            Ok(found) => {
                for (peer, links) in found.iter().filter(|(peer, _)| carried.contains(peer)) {
                    seen.entry(peer.clone()).or_default().merge(links);
                }
                Told::Network
            }
            Err(_) if db_path(layout, &host.name).join("CURRENT").exists() => {
                let found = backup::read_peer_links(&db_path(layout, &host.name), carried, office)
                    .map_err(|e| anyhow!("host {}: {e}", host.name))?;
                for (peer, links) in found {
                    seen.entry(peer).or_default().merge(&links);
                }
                Told::Folder
            }
            Err(error) => {
                why.insert(host.name.clone(), error);
                Told::Neither
            }
        };
        told.insert(host.name.clone(), how);
    }
    Ok((seen, told, why))
}

async fn restore(layout: &Layout, args: &RestoreArgs) -> anyhow::Result<Report> {
    // What it writes into the hosts' data folders is theirs: 0600 files, 0700 folders, as the
    // hosts make them.
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    let manifest = layout.load_manifest()?;
    let (office, entry) = office_entry(&manifest, &args.office)?;
    let backup = BackupFile::open(&args.from).map_err(|e| anyhow!("{e}"))?;
    let header = backup.header.clone();
    if header.office != office.as_str() {
        bail!(
            "{} is a backup of office {}, not {office}: nothing was restored",
            args.from.display(),
            header.office
        );
    }
    // The replicas the backup's membership names, each on its slot of the manifest.
    let mut targets = Vec::new();
    for (id, node) in header.meta.last_membership.membership().nodes() {
        let slot = entry
            .members
            .iter()
            .any(|member| member.id == *id && member.host == node.host);
        if !slot || manifest.host(&node.host).is_none() {
            bail!(
                "the backup's replica {id} of office {office} lives on host {}, which the \
                 manifest does not place there: nothing was restored",
                node.host
            );
        }
        targets.push((*id, node.host.clone(), db_path(layout, &node.host)));
    }
    if targets.is_empty() {
        bail!("the backup names no replica of office {office}: nothing was restored");
    }
    for (_, host, db) in &targets {
        if let Some(index) =
            backup::holds_office(db, &office).map_err(|e| anyhow!("host {host}: {e}"))?
        {
            bail!(
                "host {host} still holds office {office} (applied index {index}): a restore goes \
                 into a fresh replica set; stop the host and move its data folder {} away first",
                db.parent().unwrap_or(db).display()
            );
        }
    }
    // Every other office's side of its links with this one: from its running hosts over the
    // network, else from a stopped host's data folder here.
    crate::client::use_federation_tls(layout)?;
    let (seen, told, why) = peers_side(layout, &manifest, &office).await?;
    let (links_out, links_in) = backup.links().map_err(|e| anyhow!("{e}"))?;
    let unsynced: Vec<String> = links_out
        .keys()
        .chain(links_in.keys())
        .filter(|peer| !seen.contains_key(*peer))
        .map(|peer| peer.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (mut records, repairs) =
        backup::repair_links(&backup, &seen).map_err(|e| anyhow!("{e}"))?;
    let (counters, numbers) =
        backup::repair_case_numbers(&backup, &seen).map_err(|e| anyhow!("{e}"))?;
    records.extend(counters);
    let (_, first_host, first_db) = &targets[0];
    liandong_node::secrets::private_dir(first_db.parent().unwrap_or(first_db))
        .map_err(|e| anyhow!("host {first_host}: {e}"))?;
    let body = first_db
        .parent()
        .unwrap_or(first_db)
        .join(format!("restore-{office}.snap"));
    backup::prepare_body(&backup, &records, &body).map_err(|e| anyhow!("{e}"))?;
    let mut restored = Vec::new();
    let mut progress = Progress::new(
        format!("restoring office {office}: replicas"),
        targets.len() as u64,
        false,
    );
    for (n, (id, host, db)) in targets.iter().enumerate() {
        let outcome = liandong_node::secrets::private_dir(db.parent().unwrap_or(db))
            .map_err(|e| anyhow!("{e}"))
            .and_then(|()| {
                backup::restore_replica(db, &office, &header.meta, &body)
                    .map_err(|e| anyhow!("{e}"))
            });
        if let Err(error) = outcome {
            let _ = std::fs::remove_file(&body);
            bail!(
                "host {host}: {error} (replicas restored before it: {}; move their data folders \
                 away before trying again)",
                if restored.is_empty() {
                    "none".to_string()
                } else {
                    restored.join(", ")
                }
            );
        }
        restored.push(format!("{id}@{host}"));
        progress.at(n as u64 + 1);
    }
    progress.done();
    let _ = std::fs::remove_file(&body);
    Ok(restored_report(
        &header, &restored, &repairs, &numbers, &unsynced, &told, &why,
    ))
}

fn restored_report(
    header: &BackupHeader,
    restored: &[String],
    repairs: &[backup::LinkRepair],
    numbers: &[backup::NumbersGiven],
    unsynced: &[String],
    told: &BTreeMap<String, Told>,
    why: &BTreeMap<String, String>,
) -> Report {
    let hosts = |how: Told| -> Vec<&str> {
        told.iter()
            .filter(|(_, t)| **t == how)
            .map(|(host, _)| host.as_str())
            .collect()
    };
    let (network, folders, neither) = (
        hosts(Told::Network),
        hosts(Told::Folder),
        hosts(Told::Neither),
    );
    let range = |r: Option<(u64, u64)>| r.map(|(a, b)| json!({"first": a, "last": b}));
    let links: Vec<Value> = repairs
        .iter()
        .map(|repair| {
            json!({
                "peer": repair.peer,
                "sent_after_backup": range(repair.sent_after_backup),
                "received_after_backup": range(repair.received_after_backup),
            })
        })
        .collect();
    let json = json!({
        "office": header.office,
        "applied_index": header.applied_index,
        "applied_term": header.applied_term,
        "cases": header.cases,
        "created_at_ms": header.created_at_ms,
        "replicas": restored,
        "links": links,
        "case_numbers_given_after_backup": numbers,
        "unsynced_peers": unsynced,
        "peers_told_by": {"network": network, "data_folder": folders},
        "hosts_unanswered": neither,
    });
    let mut text = format!(
        "office {} restored at applied index {} (term {}), {} cases, into replicas {}",
        header.office,
        header.applied_index,
        header.applied_term,
        header.cases,
        restored.join(", ")
    );
    for repair in repairs {
        if let Some((first, last)) = repair.sent_after_backup {
            text.push_str(&format!(
                "\nlink to {}: messages #{first}-#{last} were sent after the backup; {} applied \
                 them, this office no longer has what sent them; its next message is #{}",
                repair.peer,
                repair.peer,
                last + 1
            ));
        }
        if let Some((first, last)) = repair.received_after_backup {
            text.push_str(&format!(
                "\nlink from {}: messages #{first}-#{last} arrived after the backup and are \
                 lost here ({} no longer has them): ask {} to send them again",
                repair.peer, repair.peer, repair.peer
            ));
        }
    }
    for given in numbers {
        text.push_str(&format!(
            "\ncase numbers {}-{:06} to {:06} were given after the backup (an ancestor's index \
             knows them): those cases are lost here; new cases continue after them",
            given.year, given.first, given.last
        ));
    }
    text.push_str(&format!(
        "\nthe other offices' side of the links: {} hosts answered over the network, {} data \
         folders read here",
        network.len(),
        folders.len()
    ));
    if !neither.is_empty() {
        let named: Vec<String> = neither
            .iter()
            .map(|host| match why.get(*host) {
                Some(error) => format!("{host} ({})", error.chars().take(120).collect::<String>()),
                None => host.to_string(),
            })
            .collect();
        text.push_str(&format!(
            "\nno answer from hosts {}, and no data folder of theirs here",
            named.join(", ")
        ));
    }
    if !unsynced.is_empty() {
        text.push_str(&format!(
            "\nnot synced (none of their hosts answered, no data folder of theirs here): {}; \
             restore them too, or check their links with `liandong status` once up",
            unsynced.join(", ")
        ));
    }
    text.push_str("\nstart it with `liandong up`");
    Report::new(json, text)
}

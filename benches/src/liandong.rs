//! Liandong under test: a temporary federation of real `liandong-node` processes on loopback
//! (mTLS, RocksDB, fsync), driven only through the `liandong` command line and the officer
//! gRPC API, and the sessions of each Liandong workload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use clap::Parser;
use federation_proto::v1::case_command::Command;
use federation_proto::v1::cases_client::CasesClient;
use federation_proto::v1::{
    ActRequest, CaseCommand, CaseReply, Consistency, FileRequest, SetGrade, ShowRequest, Transfer,
};
use liandong_ops::cli::Cli;
use liandong_ops::client::OfficerChannel;
use liandong_ops::sample;
use serde_json::Value;

use crate::documents::DocumentSample;
use crate::load::{Recorded, Session};

/// Runs one `liandong` command in-process, exactly as the command line would.
pub async fn liandong(dir: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let mut argv = vec!["liandong", "--json", "--dir"];
    let dir_text = dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    argv.push(dir_text);
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(&argv).with_context(|| format!("parsing {argv:?}"))?;
    Ok(liandong_ops::commands::run(cli).await?.json)
}

/// Runs one `liandong` command in-process as the benchmark's officer of `office` (signed in by
/// [`LocalFederation::start`]).
pub async fn liandong_as(dir: &Path, office: &str, args: &[&str]) -> anyhow::Result<Value> {
    let token = dir.join("tokens").join(format!("{office}.token"));
    let token = token.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    let mut all = vec!["--token-file", token];
    all.extend_from_slice(args);
    liandong(dir, &all).await
}

/// `office`'s entry in the JSON of `liandong status`.
pub fn office_status<'a>(status: &'a Value, office: &str) -> Option<&'a Value> {
    status["offices"]
        .as_array()?
        .iter()
        .find(|entry| entry["code"] == office)
}

/// A fresh federation in a temporary folder, started; stopped again on drop.
pub struct LocalFederation {
    pub dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl LocalFederation {
    pub async fn start(
        region: &str,
        max_children: usize,
        replicas: u8,
        base_port: u16,
    ) -> anyhow::Result<LocalFederation> {
        LocalFederation::start_with(region, Some(max_children), replicas, base_port, 60, None).await
    }

    /// As [`LocalFederation::start`]; `None` keeps every child (the region's whole tree), `up`
    /// waits for leaders at most `up_timeout_seconds`, and with `sign_in` the benchmark's
    /// officer is signed in at those offices only, one after the other (a whole region's
    /// offices at once overload one machine's hosts right after `up`).
    pub async fn start_with(
        region: &str,
        max_children: Option<usize>,
        replicas: u8,
        base_port: u16,
        up_timeout_seconds: u64,
        sign_in: Option<&[String]>,
    ) -> anyhow::Result<LocalFederation> {
        let temp = tempfile::Builder::new()
            .prefix("liandong-bench-")
            .tempdir()?;
        let dir = temp.path().join("federation");
        let max = max_children.map(|max| max.to_string());
        let replicas = replicas.to_string();
        let port = base_port.to_string();
        let mut init = vec![
            "federation",
            "init",
            "--region",
            region,
            "--replicas",
            &replicas,
            "--base-port",
            &port,
        ];
        if let Some(max) = &max {
            init.extend(["--max-children", max]);
        }
        liandong(&dir, &init).await?;
        // From here on the drop stops whatever `up` started, also when `up` fails half-way.
        let federation = LocalFederation { dir, _temp: temp };
        let timeout = up_timeout_seconds.to_string();
        liandong(&federation.dir, &["up", "--timeout-seconds", &timeout]).await?;
        // The benchmark's officer at every office (every role but admin), made with each
        // office's initial admin password: its calls carry that office's token.
        let opened = liandong_ops::client::Federation::open(liandong_ops::layout::Layout::new(
            &federation.dir,
        ))?;
        let roles = liandong_ops::session::WORKING_ROLES;
        let tokens = federation.dir.join("tokens");
        match sign_in {
            None => {
                liandong_ops::session::sign_in_everywhere(&opened, "bench", &roles, Some(&tokens))
                    .await?
            }
            Some(offices) => {
                for office in offices {
                    liandong_ops::session::officer_session(&opened, office, "bench", &roles)
                        .await
                        .with_context(|| format!("signing in at {office}"))?
                        .save(&tokens.join(format!("{office}.token")))?;
                }
            }
        }
        Ok(federation)
    }

    pub fn manifest(&self) -> anyhow::Result<liandong_node::manifest::Manifest> {
        Ok(liandong_node::manifest::Manifest::load(
            &self.dir.join("manifest.json"),
        )?)
    }

    /// The API addresses of the hosts carrying `office`, its leader's first.
    pub async fn office_addresses(&self, office: &str) -> anyhow::Result<Vec<String>> {
        let status = liandong(&self.dir, &["status"]).await?;
        let leader = office_status(&status, office)
            .and_then(|entry| entry["leader"].as_u64())
            .ok_or_else(|| anyhow!("office {office} has no leader: {status}"))?;
        let manifest = self.manifest()?;
        let leader_host = manifest
            .member_host(office, leader)
            .context("leader host")?
            .api_addr
            .clone();
        let entry = manifest.office(office).context("office")?;
        let mut addresses = vec![leader_host.clone()];
        addresses.extend(
            entry
                .members
                .iter()
                .filter_map(|member| manifest.host(&member.host))
                .map(|host| host.api_addr.clone())
                .filter(|address| *address != leader_host),
        );
        Ok(addresses)
    }

    /// One mTLS channel per address of [`LocalFederation::office_addresses`]; all clients
    /// share them, as many officers' requests share a host's connection.
    pub async fn office_channels(&self, office: &str) -> anyhow::Result<Vec<OfficerChannel>> {
        let mut channels = Vec::new();
        for address in self.office_addresses(office).await? {
            channels.push(
                liandong_ops::client::officer_channel(&address, office)
                    .await
                    .map_err(|status| anyhow!("{address}: {status}"))?,
            );
        }
        Ok(channels)
    }

    /// The version and set-up of this federation, as one line for a report.
    pub fn setup(&self, replicas: u8, offices: &str) -> String {
        let build = if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        };
        format!(
            "liandong {} ({build}), {offices}, {replicas} replicas each, mTLS, RocksDB fsync",
            env!("CARGO_PKG_VERSION")
        )
    }
}

impl Drop for LocalFederation {
    fn drop(&mut self) {
        let dir = self.dir.clone();
        // `down` is synchronous process work; run it on a fresh runtime-free thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(liandong(&dir, &["down"])).ok()
        })
        .join();
    }
}

/// An office's hosts as one client sees them: the one it talks to, and the others to turn to
/// when that one fails (any replica forwards writes to the leader).
#[derive(Clone)]
pub struct OfficeClient {
    pub office: String,
    channels: Vec<OfficerChannel>,
    target: usize,
}

impl OfficeClient {
    /// A client of `office` starting at `channels[first % len]`.
    pub fn new(office: &str, channels: Vec<OfficerChannel>, first: usize) -> OfficeClient {
        let target = first % channels.len().max(1);
        OfficeClient {
            office: office.to_string(),
            channels,
            target,
        }
    }

    fn cases(&self) -> CasesClient<OfficerChannel> {
        CasesClient::new(self.channels[self.target].clone())
    }

    /// After a failure: the next host.
    fn turn(&mut self) {
        self.target = (self.target + 1) % self.channels.len().max(1);
    }

    /// Files sample petition `sequence`; the case document.
    pub async fn file(&mut self, sequence: u64) -> anyhow::Result<Vec<u8>> {
        let request = FileRequest {
            office: self.office.clone(),
            registration: Some(sample::registration(sequence)),
            hops: 0,
            request_id: format!("bench-{sequence:x}"),
            session_id: String::new(),
            ..FileRequest::default()
        };
        let outcome = self.cases().file(request).await;
        self.document(outcome)
    }

    /// Applies one officer command to `case_id` held here; the case document.
    pub async fn act(
        &mut self,
        case_id: &str,
        command: Command,
        request_id: String,
    ) -> anyhow::Result<Vec<u8>> {
        let request = ActRequest {
            case_id: case_id.to_string(),
            command: Some(CaseCommand {
                command: Some(command),
            }),
            hops: 0,
            request_id,
            office: self.office.clone(),
        };
        let outcome = self.cases().act(request).await;
        self.document(outcome)
    }

    /// This office's copy of `case_id` as the host talked to holds it (no read barrier).
    pub async fn show_local(&mut self, case_id: &str) -> anyhow::Result<Value> {
        let request = ShowRequest {
            case_id: case_id.to_string(),
            consistency: Consistency::Local as i32,
            hops: 0,
            office: self.office.clone(),
            reason: String::new(),
        };
        let outcome = self.cases().show(request).await;
        case_json(&self.document(outcome)?)
    }

    fn document(
        &mut self,
        outcome: Result<tonic::Response<CaseReply>, tonic::Status>,
    ) -> anyhow::Result<Vec<u8>> {
        match outcome {
            Ok(reply) => Ok(reply.into_inner().case_document),
            Err(status) => {
                if liandong_ops::client::retryable(&status) {
                    self.turn();
                }
                Err(anyhow!("{}: {}", self.office, status.message()))
            }
        }
    }
}

/// A case document of the API (the engine's binary codec) as JSON: the case engine's serde form,
/// what the anchors store and the workloads read stamps from.
pub fn case_json(document: &[u8]) -> anyhow::Result<Value> {
    let case = liandong_domain::Case::from_bytes(document)
        .map_err(|e| anyhow!("a case document that does not decode: {e}"))?;
    Ok(serde_json::to_value(case)?)
}

fn case_id_of(document: &[u8]) -> anyhow::Result<String> {
    let case = liandong_domain::Case::from_bytes(document)
        .map_err(|e| anyhow!("a case document that does not decode: {e}"))?;
    Ok(case.id.to_string())
}

/// The stamp (Unix ms) of the last `kind` event in a case's history: a number in the API's
/// case document, RFC 3339 text in the command line's.
pub fn event_stamp(case: &Value, kind: &str) -> Option<i64> {
    let entry = case["history"]
        .as_array()?
        .iter()
        .rev()
        .find(|entry| entry["kind"] == kind)?;
    match &entry["at"] {
        Value::Number(ms) => ms.as_i64(),
        Value::String(text) => liandong_domain::parse_rfc3339(text).ok(),
        _ => None,
    }
}

/// Filing cases: one new case per request.
pub struct FileSession {
    pub office: OfficeClient,
    /// Where the replies' documents are noted (for the anchors' payload).
    pub documents: Arc<DocumentSample>,
}

impl Session for FileSession {
    async fn write(&mut self, sequence: u64) -> anyhow::Result<Recorded> {
        let document = self.office.file(sequence).await?;
        // The anchors store the case as JSON, the size and shape it has as a document.
        self.documents
            .note(&serde_json::to_vec(&case_json(&document)?)?);
        Ok(Recorded::ROUND_TRIP)
    }
}

/// How far ahead a grading's deadline is set (it must lie in the future).
const GRADE_DEADLINE_AHEAD_MS: i64 = 30 * 24 * 3_600_000;

/// The officer command the update workload repeats: grading (四定), which any open case takes
/// any number of times.
pub fn grade_command(sequence: u64) -> Command {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as i64)
        .unwrap_or_default();
    Command::SetGrade(SetGrade {
        grade: ["A", "B", "C"][(sequence % 3) as usize].to_string(),
        leader: "bench leader".to_string(),
        department: "petitions".to_string(),
        plan: format!("plan {sequence}"),
        deadline_ms: now_ms + GRADE_DEADLINE_AHEAD_MS,
    })
}

/// Files a case and grades it until its history holds `events` entries; its id.
pub async fn grow_case(
    office: &mut OfficeClient,
    sequence: u64,
    events: usize,
) -> anyhow::Result<String> {
    let case_id = case_id_of(&office.file(sequence).await?)?;
    for step in 1..events {
        let request_id = format!("grow-{sequence:x}-{step}");
        office
            .act(&case_id, grade_command(step as u64), request_id)
            .await
            .with_context(|| format!("growing {case_id} to {events} events"))?;
    }
    Ok(case_id)
}

/// Updating cases: each request files a fresh case (not timed), grades it (timed: series 0),
/// then grades one of the long-history cases (timed: series 1), so both kinds of update share
/// the same moments of a noisy machine.
pub struct UpdateSession {
    pub office: OfficeClient,
    pub long_cases: Vec<String>,
}

/// Series of the update workload.
pub const UPDATE_SERIES: [&str; 2] = [crate::report::UPDATE_FRESH, crate::report::UPDATE_LONG];

impl Session for UpdateSession {
    async fn write(&mut self, sequence: u64) -> anyhow::Result<Recorded> {
        let fresh = case_id_of(&self.office.file(sequence).await?)?;
        let began = std::time::Instant::now();
        let command = grade_command(sequence);
        self.office
            .act(&fresh, command.clone(), format!("fresh-{sequence:x}"))
            .await?;
        let fresh_latency = began.elapsed();
        let long = &self.long_cases[(sequence % self.long_cases.len() as u64) as usize];
        let began = std::time::Instant::now();
        self.office
            .act(long, command, format!("long-{sequence:x}"))
            .await?;
        Ok(Recorded::Stamped(vec![
            (0, fresh_latency),
            (1, began.elapsed()),
        ]))
    }
}

/// How often an office's copy is read while waiting for a handoff's step (the latency comes
/// from the offices' stamps, so this bounds only how soon the next handoff starts).
pub const HANDOFF_POLL_MS: u64 = 5;
/// How long a handoff may take to be acknowledged before the request counts as failed.
pub const HANDOFF_WAIT_MS: u64 = 8_000;

/// Reads `office`'s copy of `case_id` until its history holds a `kind` event; that event's stamp.
async fn wait_for_event(
    office: &mut OfficeClient,
    case_id: &str,
    kind: &str,
    deadline: std::time::Instant,
) -> anyhow::Result<i64> {
    loop {
        if let Ok(case) = office.show_local(case_id).await {
            if let Some(at) = event_stamp(&case, kind) {
                return Ok(at);
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(anyhow!(
                "{case_id}: no {kind} at {} within {HANDOFF_WAIT_MS} ms",
                office.office
            ));
        }
        tokio::time::sleep(Duration::from_millis(HANDOFF_POLL_MS)).await;
    }
}

/// Handoffs: each request files a case at `from` and transfers it to `to`, then waits until the
/// sender has committed the receiver's acknowledgement. Recorded from the offices' own history
/// stamps: transfer → `received` at the receiver (series 0), transfer → `handoff_completed`
/// at the sender (series 1).
pub struct HandoffSession {
    pub from: OfficeClient,
    pub to: OfficeClient,
}

/// Series of the handoff workload.
pub const HANDOFF_SERIES: [&str; 2] = [
    crate::report::HANDOFF_RECEIVED,
    crate::report::HANDOFF_COMPLETED,
];

impl Session for HandoffSession {
    async fn write(&mut self, sequence: u64) -> anyhow::Result<Recorded> {
        let case_id = case_id_of(&self.from.file(sequence).await?)?;
        let transfer = Command::Transfer(Transfer {
            to: self.to.office.clone(),
            officer: "bench".to_string(),
        });
        let started = case_json(
            &self
                .from
                .act(&case_id, transfer, format!("handoff-{sequence:x}"))
                .await?,
        )?;
        let started_at = event_stamp(&started, "handoff_started").context("handoff_started")?;
        let deadline = std::time::Instant::now() + Duration::from_millis(HANDOFF_WAIT_MS);
        let completed_at =
            wait_for_event(&mut self.from, &case_id, "handoff_completed", deadline).await?;
        // The receiver committed its copy before it acknowledged.
        let received_at = wait_for_event(&mut self.to, &case_id, "received", deadline).await?;
        let since_start = |at: i64| Duration::from_millis((at - started_at).max(0) as u64);
        Ok(Recorded::Stamped(vec![
            (0, since_start(received_at)),
            (1, since_start(completed_at)),
        ]))
    }
}

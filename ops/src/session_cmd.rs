//! `liandong session`: joint video reception sessions (视频联动接访) across levels — schedule at
//! the host office, answer an invitation at an invited office, book petitioners, record the
//! recording's checksum, show and list (docs/sessions.md).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use federation_proto::v1::{self, session_request};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::client::{status_error, Federation};
use crate::commands::{acting_office, Report};
use crate::layout::Layout;

#[derive(Subcommand, Debug)]
pub enum SessionCommand {
    /// Schedule a session hosted by your office, inviting offices below it.
    Schedule(ScheduleArgs),
    /// Answer your office's invitation (accept or decline), naming the leader.
    Answer(AnswerArgs),
    /// Book a petitioner's slot at your office.
    Book(BookArgs),
    /// Record the session's recording (host office): its SHA-256 and size are computed here
    /// from the media file, which stays in the office's storage.
    Recording(RecordingArgs),
    /// One session's record as your office holds it.
    Show(ShowArgs),
    /// The sessions your office hosts or was invited to.
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// The host office (default, and the only one allowed: the signed-in officer's).
    #[arg(long)]
    pub office: Option<String>,
    /// The day, YYYY-MM-DD (China time).
    #[arg(long)]
    pub date: String,
    /// Start, HH:MM or HH:MM:SS (China time).
    #[arg(long)]
    pub start: String,
    /// End, HH:MM or HH:MM:SS (China time), the same day.
    #[arg(long)]
    pub end: String,
    /// Offices below the host invited to receive at the same time (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub invite: Vec<String>,
    /// The host's leader receiving.
    #[arg(long)]
    pub leader: String,
    /// Booking slots each participating office offers.
    #[arg(long, default_value_t = 20)]
    pub slots: u32,
    /// This request's id: a retry with the same id (after a lost answer) is answered again and
    /// applied once. Generated when absent.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct AnswerArgs {
    pub session_id: String,
    #[arg(long)]
    pub office: Option<String>,
    #[arg(long, conflicts_with = "decline", required_unless_present = "decline")]
    pub accept: bool,
    #[arg(long)]
    pub decline: bool,
    /// The leader who receives at this office (or who declines).
    #[arg(long)]
    pub leader: String,
    /// This request's id: a retry with the same id (after a lost answer) is answered again and
    /// applied once. Generated when absent.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct BookArgs {
    pub session_id: String,
    #[arg(long)]
    pub office: Option<String>,
    /// The petitioner's 18-character resident ID number.
    #[arg(long)]
    pub petitioner_id: String,
    #[arg(long)]
    pub name: String,
    /// This request's id: a retry with the same id (after a lost answer) is answered again and
    /// applied once. Generated when absent.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct RecordingArgs {
    pub session_id: String,
    #[arg(long)]
    pub office: Option<String>,
    /// The media file, in the office's storage.
    #[arg(long)]
    pub file: PathBuf,
    /// How the office finds the file again (default: its absolute path).
    #[arg(long)]
    pub reference: Option<String>,
    /// This request's id: a retry with the same id (after a lost answer) is answered again and
    /// applied once. Generated when absent.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    pub session_id: String,
    #[arg(long)]
    pub office: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long)]
    pub office: Option<String>,
}

pub async fn run(layout: &Layout, command: SessionCommand) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let (office, session_id, command, request_id) = match command {
        SessionCommand::Show(args) => {
            return show(&federation, args.office, &args.session_id).await
        }
        SessionCommand::List(args) => return list(&federation, args.office).await,
        SessionCommand::Schedule(args) => {
            let office = acting_office(&federation, args.office.as_deref())?;
            let starts_ms = china_time(&args.date, &args.start)?;
            let ends_ms = china_time(&args.date, &args.end)?;
            let command = session_request::Command::Schedule(v1::ScheduleSession {
                starts_ms,
                ends_ms,
                invite: args.invite,
                leader: args.leader,
                slots: args.slots,
            });
            (office, String::new(), command, args.request_id)
        }
        SessionCommand::Answer(args) => {
            let office = acting_office(&federation, args.office.as_deref())?;
            let command = session_request::Command::Answer(v1::AnswerSession {
                accept: args.accept && !args.decline,
                leader: args.leader,
            });
            (office, args.session_id, command, args.request_id)
        }
        SessionCommand::Book(args) => {
            let office = acting_office(&federation, args.office.as_deref())?;
            let command = session_request::Command::Book(v1::BookSession {
                petitioner_id: args.petitioner_id,
                name: args.name,
            });
            (office, args.session_id, command, args.request_id)
        }
        SessionCommand::Recording(args) => {
            let office = acting_office(&federation, args.office.as_deref())?;
            let (sha256, bytes) = checksum(&args.file)?;
            let reference = match args.reference {
                Some(reference) => reference,
                None => std::fs::canonicalize(&args.file)
                    .unwrap_or(args.file.clone())
                    .display()
                    .to_string(),
            };
            let command = session_request::Command::Recording(v1::RecordSession {
                reference,
                sha256,
                bytes,
            });
            (office, args.session_id, command, args.request_id)
        }
    };
    let request = v1::SessionRequest {
        office: office.clone(),
        session_id,
        command: Some(command),
        hops: 0,
        request_id: request_id.unwrap_or_else(new_request_id),
    };
    let reply = federation
        .office_call(&office, |mut client| {
            let request = request.clone();
            async move { client.session(request).await.map(|r| r.into_inner()) }
        })
        .await
        .map_err(|s| status_error(&s))?;
    let session: Value = serde_json::from_slice(&reply.session_document)
        .context("the office answered with an unreadable session record")?;
    let text = session_text(&session, &office);
    Ok(Report::new(session, text))
}

/// A fresh request id: a retry of this very command (by the client, across the office's hosts)
/// carries the same one.
fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// `date` (YYYY-MM-DD) at `time` (HH:MM), China time, as Unix ms.
fn china_time(date: &str, time: &str) -> anyhow::Result<i64> {
    let seconds = match time.len() {
        5 => ":00",
        8 => "",
        _ => bail!("invalid time {time:?}: expected HH:MM or HH:MM:SS (China time)"),
    };
    liandong_domain::parse_rfc3339(&format!("{date}T{time}{seconds}+08:00")).map_err(|_| {
        anyhow!("invalid date or time {date:?} {time:?}: expected YYYY-MM-DD and HH:MM")
    })
}

/// SHA-256 (lowercase hex) and size of the file at `path`, read in pieces.
fn checksum(path: &PathBuf) -> anyhow::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the recording {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

async fn show(
    federation: &Federation,
    office: Option<String>,
    session_id: &str,
) -> anyhow::Result<Report> {
    let sessions = read(federation, office, session_id).await?;
    let (office, session) = sessions;
    let session = session
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("office {office} has no session {session_id}"))?;
    let text = session_text(&session, &office);
    Ok(Report::new(session, text))
}

async fn list(federation: &Federation, office: Option<String>) -> anyhow::Result<Report> {
    let (office, sessions) = read(federation, office, "").await?;
    let mut lines: Vec<String> = sessions.iter().map(|s| headline(s, &office)).collect();
    if lines.is_empty() {
        lines.push(format!(
            "office {office} hosts no session and was invited to none"
        ));
    }
    Ok(Report::new(
        json!({"office": office, "sessions": sessions}),
        lines.join("\n"),
    ))
}

async fn read(
    federation: &Federation,
    office: Option<String>,
    session_id: &str,
) -> anyhow::Result<(String, Vec<Value>)> {
    let office = acting_office(federation, office.as_deref())?;
    let request = v1::SessionsRequest {
        office: office.clone(),
        session_id: session_id.to_string(),
        limit: 0,
    };
    let reply = federation
        .office_call(&office, |mut client| {
            let request = request.clone();
            async move { client.sessions(request).await.map(|r| r.into_inner()) }
        })
        .await
        .map_err(|s| status_error(&s))?;
    let sessions = reply
        .session_documents
        .iter()
        .map(|document| serde_json::from_slice(document))
        .collect::<Result<Vec<Value>, _>>()?;
    Ok((office, sessions))
}

fn time(value: &Value) -> String {
    value
        .as_i64()
        .map(liandong_domain::format_rfc3339)
        .unwrap_or_default()
}

fn headline(session: &Value, office: &str) -> String {
    let host = session["host"].as_str().unwrap_or("");
    let role = if host == office {
        "hosted here"
    } else {
        "invited"
    };
    format!(
        "session {} ({role}, host {host}): {} to {}, leader {}, {} slots per office",
        session["id"].as_str().unwrap_or(""),
        time(&session["starts_at"]),
        time(&session["ends_at"]),
        session["leader"].as_str().unwrap_or(""),
        session["slots"],
    )
}

fn session_text(session: &Value, office: &str) -> String {
    let mut lines = vec![headline(session, office)];
    let empty = Vec::new();
    let parts = session["parts"].as_array().unwrap_or(&empty);
    for (n, part) in parts.iter().enumerate() {
        let answer = if n == 0 {
            "host".to_string()
        } else {
            match &part["answer"] {
                Value::Null => "no answer yet".to_string(),
                answer if answer["accept"] == true => {
                    format!(
                        "accepted, leader {}",
                        answer["leader"].as_str().unwrap_or("")
                    )
                }
                answer => format!("declined by {}", answer["leader"].as_str().unwrap_or("")),
            }
        };
        let cases: Vec<&str> = part["cases"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .filter_map(Value::as_str)
            .collect();
        lines.push(format!(
            "  {}: {answer}; {} booked; cases: {}",
            part["office"].as_str().unwrap_or(""),
            part["booked"],
            if cases.is_empty() {
                "none".to_string()
            } else {
                cases.join(", ")
            }
        ));
    }
    match &session["recording"] {
        Value::Null => lines.push("  recording: none yet".to_string()),
        recording => lines.push(format!(
            "  recording: {} sha256 {} ({} bytes)",
            recording["reference"].as_str().unwrap_or(""),
            recording["sha256"].as_str().unwrap_or(""),
            recording["bytes"],
        )),
    }
    lines.join("\n")
}

//! `liandong department|meeting|intake-point|proxy` and `case route|task-answer`: an office's
//! departments, the tasks a case gives them, joint meetings, intake points and proxy agents
//! (docs/departments.md). Every command acts as the signed-in officer, for its own office.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use federation_proto::v1::desks_client::DesksClient;
use federation_proto::v1::{DeskChangeRequest, DeskReadRequest, DeskReply};
use liandong_domain::department::{Decision, DeskChange, MeetingRequest, Routing};
use liandong_domain::proxy::PointKind;
use liandong_domain::{format_rfc3339, CaseId};
use serde_json::{json, Value};

use crate::client::{status_error, Federation};
use crate::commands::Report;
use crate::layout::Layout;

#[derive(Subcommand, Debug)]
pub enum DepartmentCommand {
    /// A department of the office (admin): `--code housing --name 住建`.
    Add(DepartmentAddArgs),
    /// The office's departments.
    List(OfficeOnly),
    /// A disabled department takes no new tasks (admin); its tasks and figures stay.
    Disable(DepartmentCodeArgs),
    /// Per-department figures: tasks open, answered, overdue (a scorecard's feed).
    Stats(OfficeOnly),
}

#[derive(Subcommand, Debug)]
pub enum MeetingCommand {
    /// Record a joint meeting (联席会议): its cases, attending departments, minutes and a
    /// decision per case; each decision becomes a department task with a clock.
    Hold(MeetingHoldArgs),
    /// The office's meetings.
    List(OfficeOnly),
    /// One meeting with its minutes and decisions.
    Show(MeetingShowArgs),
}

#[derive(Subcommand, Debug)]
pub enum IntakePointCommand {
    /// An intake point (admin): the district centre, a street station or a community point.
    Add(PointAddArgs),
    /// The office's intake points.
    List(OfficeOnly),
    /// The cases filed by proxy at this point or below it, with their progress.
    Cases(PointCasesArgs),
}

#[derive(Subcommand, Debug)]
pub enum ProxyCommand {
    /// A proxy agent (代办员) at an intake point (admin).
    Add(ProxyAddArgs),
    /// The office's proxy agents.
    List(OfficeOnly),
    /// The cases a proxy agent filed, with their progress.
    Cases(ProxyCasesArgs),
}

#[derive(Args, Debug)]
pub struct OfficeOnly {
    /// The office (default, and the only one allowed: the signed-in officer's).
    #[arg(long)]
    pub office: Option<String>,
}

#[derive(Args, Debug)]
pub struct DepartmentAddArgs {
    #[arg(long)]
    pub office: Option<String>,
    /// Lowercase letters, digits and '-' (e.g. judicial, labour, land, housing).
    #[arg(long)]
    pub code: String,
    #[arg(long)]
    pub name: String,
    /// Retrying with the same id (within 24 hours) answers as the first time; generated when
    /// absent.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct DepartmentCodeArgs {
    #[arg(long)]
    pub office: Option<String>,
    #[arg(long)]
    pub code: String,
    /// Retrying with the same id (within 24 hours) answers as the first time; generated when
    /// absent.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct RouteArgs {
    pub case_id: String,
    /// The lead department (牵头): the office's reply waits for its answer.
    #[arg(long)]
    pub lead: Option<String>,
    /// Cooperating departments (协办), comma separated.
    #[arg(long, value_delimiter = ',')]
    pub cooperate: Vec<String>,
    /// Each task's clock, in working days (1 to 90).
    #[arg(long)]
    pub due_days: u32,
    /// What the departments are asked to do.
    #[arg(long, default_value = "")]
    pub text: String,
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct TaskAnswerArgs {
    pub case_id: String,
    #[arg(long)]
    pub department: String,
    #[arg(long)]
    pub text: String,
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct MeetingHoldArgs {
    #[arg(long)]
    pub office: Option<String>,
    /// The cases the meeting takes, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub cases: Vec<String>,
    /// The attending departments, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub attendees: Vec<String>,
    /// The minutes: text, or `@FILE` to read them from a file.
    #[arg(long)]
    pub minutes: String,
    /// `CASE=DEPARTMENT:DAYS:TEXT`, once per decision: the department's task on that case,
    /// due in DAYS working days.
    #[arg(long = "decision", required = true)]
    pub decisions: Vec<String>,
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct MeetingShowArgs {
    pub id: String,
    #[arg(long)]
    pub office: Option<String>,
}

#[derive(Args, Debug)]
pub struct PointAddArgs {
    #[arg(long)]
    pub office: Option<String>,
    #[arg(long)]
    pub code: String,
    #[arg(long)]
    pub name: String,
    /// centre | street | community
    #[arg(long)]
    pub kind: String,
    /// The point above: a community point's street station, a station's centre.
    #[arg(long)]
    pub parent: Option<String>,
    /// Retrying with the same id (within 24 hours) answers as the first time; generated when
    /// absent.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct PointCasesArgs {
    pub point: String,
    #[arg(long)]
    pub office: Option<String>,
}

#[derive(Args, Debug)]
pub struct ProxyAddArgs {
    #[arg(long)]
    pub office: Option<String>,
    #[arg(long)]
    pub code: String,
    #[arg(long)]
    pub name: String,
    /// The intake point the agent works at.
    #[arg(long)]
    pub point: String,
    /// The officer account the agent signs in with (registrar role), if any.
    #[arg(long)]
    pub officer: Option<String>,
    /// Retrying with the same id (within 24 hours) answers as the first time; generated when
    /// absent.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct ProxyCasesArgs {
    pub agent: String,
    #[arg(long)]
    pub office: Option<String>,
}

/// The signed-in officer's office; `given` must name it.
fn own_office(federation: &Federation, given: Option<&str>) -> anyhow::Result<String> {
    let own = federation.officer()?.claims.office.clone();
    match given {
        Some(code) if code != own => {
            bail!("signed in at office {own}, not {code}: an officer acts only for its own office")
        }
        _ => Ok(own),
    }
}

fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// Sends one desk change with the officer's request id, or a new one: a retry of the same
/// command line with `--request-id` is answered as the first time.
async fn change(
    federation: &Federation,
    office: &str,
    change: &DeskChange,
    request_id: Option<String>,
) -> anyhow::Result<(Value, i64)> {
    let request = DeskChangeRequest {
        office: office.to_string(),
        change: serde_json::to_vec(change)?,
        request_id: request_id.unwrap_or_else(new_request_id),
    };
    let reply = federation
        .office_channel_call(office, |channel| {
            let request = request.clone();
            async move {
                DesksClient::new(channel)
                    .change(request)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
        .map_err(|s| status_error(&s))?;
    Ok((serde_json::from_slice(&reply.document)?, reply.now_ms))
}

/// Reads `what` (`key`) at `office`: the document and the office's clock.
pub async fn read(
    federation: &Federation,
    office: &str,
    what: &str,
    key: &str,
) -> Result<(Value, i64), tonic::Status> {
    let request = DeskReadRequest {
        office: office.to_string(),
        what: what.to_string(),
        key: key.to_string(),
    };
    let reply: DeskReply = federation
        .office_channel_call(office, |channel| {
            let request = request.clone();
            async move {
                DesksClient::new(channel)
                    .read(request)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await?;
    let value = serde_json::from_slice(&reply.document)
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    Ok((value, reply.now_ms))
}

async fn read_report(
    federation: &Federation,
    office: &str,
    what: &str,
    key: &str,
) -> anyhow::Result<Value> {
    read(federation, office, what, key)
        .await
        .map(|(value, _)| value)
        .map_err(|s| status_error(&s))
}

fn time(value: &Value) -> String {
    value.as_i64().map(format_rfc3339).unwrap_or_default()
}

fn s(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// One line per task.
pub fn task_lines(tasks: &Value) -> Vec<String> {
    tasks
        .as_array()
        .into_iter()
        .flatten()
        .map(|task| {
            let state = match task["answer"].is_null() {
                true => "open".to_string(),
                false => format!(
                    "answered by {} {}: {}",
                    s(&task["answer"]["officer"]),
                    time(&task["answer"]["at"]),
                    s(&task["answer"]["text"])
                ),
            };
            format!(
                "  task {} ({}{}) due {}: {}{}",
                s(&task["department"]),
                s(&task["role"]),
                task["meeting"]
                    .as_str()
                    .map(|m| format!(", meeting {m}"))
                    .unwrap_or_default(),
                time(&task["due_by"]),
                state,
                if task["overdue"] == true {
                    " OVERDUE"
                } else {
                    ""
                }
            )
        })
        .collect()
}

/// `case show` with the case's department tasks and its proxy filing (when the signed-in
/// officer's office holds them): added to the JSON as `tasks` and `proxy`, and as lines.
pub async fn with_tasks(federation: &Federation, mut report: Report) -> Report {
    let Some(session) = &federation.session else {
        return report;
    };
    let office = session.claims.office.clone();
    let case_id = s(&report.json["case_id"]).to_string();
    // The owner's tasks, or the tasks this office closed when it handed the case on.
    let handed_on_here =
        report.json["status"] == "forwarded" || report.json["status"] == "in_transit";
    if case_id.is_empty() || (s(&report.json["office"]) != office && !handed_on_here) {
        return report;
    }
    let Ok((desk, _)) = read(federation, &office, "case", &case_id).await else {
        return report;
    };
    let mut lines = task_lines(&desk["tasks"]);
    for closing in desk["closed"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  tasks closed {}: {}",
            time(&closing["at"]),
            s(&closing["reason"])
        ));
        lines.extend(
            task_lines(&closing["tasks"])
                .into_iter()
                .map(|line| line.replacen(": open", ": closed unanswered", 1)),
        );
    }
    if !lines.is_empty() {
        report.text.push('\n');
        report.text.push_str(&lines.join("\n"));
    }
    if !desk["proxy"].is_null() {
        report.text.push_str(&format!(
            "\n  filed by proxy {} at {} (chain {}), consent: {}",
            s(&desk["proxy"]["agent"]),
            s(&desk["proxy"]["point"]),
            desk["proxy"]["chain"]
                .as_array()
                .map(|c| c
                    .iter()
                    .map(|p| s(p).to_string())
                    .collect::<Vec<_>>()
                    .join(" → "))
                .unwrap_or_default(),
            s(&desk["proxy"]["consent"])
        ));
    }
    report.json["tasks"] = desk["tasks"].clone();
    report.json["closed_tasks"] = desk["closed"].clone();
    report.json["proxy"] = desk["proxy"].clone();
    report
}

pub async fn department(layout: &Layout, command: DepartmentCommand) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    match command {
        DepartmentCommand::Add(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            let change_ = DeskChange::AddDepartment {
                code: args.code,
                name: args.name,
            };
            let (record, _) = change(&federation, &office, &change_, args.request_id).await?;
            let text = format!(
                "department {} {} at {office}",
                s(&record["code"]),
                s(&record["name"])
            );
            Ok(Report::new(record, text))
        }
        DepartmentCommand::Disable(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            let change_ = DeskChange::DisableDepartment { code: args.code };
            let (record, _) = change(&federation, &office, &change_, args.request_id).await?;
            let text = format!("department {} disabled", s(&record["code"]));
            Ok(Report::new(record, text))
        }
        DepartmentCommand::List(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            let list = read_report(&federation, &office, "departments", "").await?;
            let mut lines: Vec<String> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    format!(
                        "{} {}{}",
                        s(&d["code"]),
                        s(&d["name"]),
                        if d["disabled"] == true {
                            " (disabled)"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            if lines.is_empty() {
                lines.push(format!("no departments at {office}"));
            }
            Ok(Report::new(
                json!({"office": office, "departments": list}),
                lines.join("\n"),
            ))
        }
        DepartmentCommand::Stats(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            let (figures, now) = read(&federation, &office, "stats", "")
                .await
                .map_err(|s| status_error(&s))?;
            let mut lines = vec![format!(
                "{:<16} {:>6} {:>9} {:>8} {:>5} {:>10} {:>8} {:>9} {:>10}",
                "department",
                "open",
                "answered",
                "overdue",
                "lead",
                "cooperate",
                "meeting",
                "red-cards",
                "handed-on"
            )];
            for f in figures.as_array().into_iter().flatten() {
                lines.push(format!(
                    "{:<16} {:>6} {:>9} {:>8} {:>5} {:>10} {:>8} {:>9} {:>10}",
                    s(&f["department"]),
                    f["open"],
                    f["answered"],
                    f["overdue"],
                    f["lead"],
                    f["cooperate"],
                    f["meeting"],
                    f["red_cards"],
                    f["handed_on"]
                ));
            }
            Ok(Report::new(
                json!({"office": office, "as_of": now, "departments": figures}),
                lines.join("\n"),
            ))
        }
    }
}

fn office_of_case(case_id: &str) -> anyhow::Result<CaseId> {
    case_id
        .parse()
        .map_err(|e| anyhow!("bad case id {case_id:?}: {e}"))
}

pub async fn route(layout: &Layout, args: RouteArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let office = own_office(&federation, None)?;
    let case_id = office_of_case(&args.case_id)?;
    let change_ = DeskChange::Route {
        case_id,
        routing: Routing {
            lead: args.lead,
            cooperate: args.cooperate,
            due_days: args.due_days,
            text: args.text,
        },
        officer: String::new(),
    };
    let (tasks, _) = change(&federation, &office, &change_, args.request_id).await?;
    let mut lines = vec![format!("case {} routed", args.case_id)];
    lines.extend(task_lines(&tasks["tasks"]));
    Ok(Report::new(tasks, lines.join("\n")))
}

pub async fn task_answer(layout: &Layout, args: TaskAnswerArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let office = own_office(&federation, None)?;
    let change_ = DeskChange::AnswerTask {
        case_id: office_of_case(&args.case_id)?,
        department: args.department.clone(),
        text: args.text,
        officer: String::new(),
    };
    let (tasks, _) = change(&federation, &office, &change_, args.request_id).await?;
    let mut lines = vec![format!(
        "case {}: department {} answered",
        args.case_id, args.department
    )];
    lines.extend(task_lines(&tasks["tasks"]));
    Ok(Report::new(tasks, lines.join("\n")))
}

/// `CASE=DEPARTMENT:DAYS:TEXT`.
fn parse_decision(input: &str) -> anyhow::Result<Decision> {
    let shape = || anyhow!("bad decision {input:?}: CASE=DEPARTMENT:DAYS:TEXT");
    let (case, rest) = input.split_once('=').ok_or_else(shape)?;
    let mut parts = rest.splitn(3, ':');
    let department = parts.next().ok_or_else(shape)?.trim().to_string();
    let days = parts.next().ok_or_else(shape)?.trim();
    let text = parts.next().ok_or_else(shape)?.trim().to_string();
    Ok(Decision {
        case_id: office_of_case(case.trim())?,
        department,
        due_days: days
            .parse()
            .map_err(|_| anyhow!("bad decision {input:?}: DAYS is a number of working days"))?,
        text,
    })
}

/// The minutes: the text, or a file's (`@FILE`), read only up to the limit and one byte more.
fn minutes(input: &str) -> anyhow::Result<String> {
    let Some(path) = input.strip_prefix('@') else {
        return Ok(input.to_string());
    };
    use std::io::Read;
    let limit = liandong_domain::department::MEETING_MINUTES_BYTES_MAX as u64 + 1;
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(|e| anyhow!("minutes file {path}: {e}"))?
        .take(limit)
        .read_to_string(&mut text)
        .map_err(|e| anyhow!("minutes file {path}: {e}"))?;
    Ok(text)
}

pub async fn meeting(layout: &Layout, command: MeetingCommand) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    match command {
        MeetingCommand::Hold(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            let cases = args
                .cases
                .iter()
                .map(|c| office_of_case(c.trim()))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let decisions = args
                .decisions
                .iter()
                .map(|d| parse_decision(d))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let change_ = DeskChange::HoldMeeting {
                request: MeetingRequest {
                    cases,
                    attendees: args
                        .attendees
                        .iter()
                        .map(|a| a.trim().to_string())
                        .collect(),
                    minutes: minutes(&args.minutes)?,
                    decisions,
                },
                officer: String::new(),
            };
            let (meeting, _) = change(&federation, &office, &change_, args.request_id).await?;
            Ok(Report::new(meeting.clone(), meeting_text(&meeting)))
        }
        MeetingCommand::List(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            let list = read_report(&federation, &office, "meetings", "").await?;
            let mut lines: Vec<String> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    format!(
                        "{} {}: {} cases, {} decisions",
                        s(&m["id"]),
                        time(&m["held_at"]),
                        m["cases"].as_array().map_or(0, Vec::len),
                        m["decisions"].as_array().map_or(0, Vec::len)
                    )
                })
                .collect();
            if lines.is_empty() {
                lines.push(format!("no meetings at {office}"));
            }
            Ok(Report::new(
                json!({"office": office, "meetings": list}),
                lines.join("\n"),
            ))
        }
        MeetingCommand::Show(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            let meeting = read_report(&federation, &office, "meeting", &args.id).await?;
            Ok(Report::new(meeting.clone(), meeting_text(&meeting)))
        }
    }
}

fn meeting_text(meeting: &Value) -> String {
    let list = |v: &Value| {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|x| s(x).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut lines = vec![
        format!(
            "meeting {} held {} (recorded by {})",
            s(&meeting["id"]),
            time(&meeting["held_at"]),
            s(&meeting["recorded_by"])
        ),
        format!("  cases: {}", list(&meeting["cases"])),
        format!("  attending: {}", list(&meeting["attendees"])),
        format!("  minutes: {}", s(&meeting["minutes"])),
    ];
    for d in meeting["decisions"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  decision on {}: {} within {} working days: {}",
            s(&d["case_id"]),
            s(&d["department"]),
            d["due_days"],
            s(&d["text"])
        ));
    }
    lines.join("\n")
}

fn case_rows_text(rows: &Value, empty: String) -> String {
    let mut lines: Vec<String> = rows
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} {} at {} ({}), filed by {} at {}{}",
                s(&r["case_id"]),
                s(&r["status"]),
                s(&r["owner"]),
                s(&r["category"]),
                s(&r["agent"]),
                s(&r["point"]),
                if r["overdue"] == true { " OVERDUE" } else { "" }
            )
        })
        .collect();
    if lines.is_empty() {
        lines.push(empty);
    }
    lines.join("\n")
}

/// The cases filed by proxy at `point` or below it, with their progress.
pub async fn point_cases(
    federation: &Federation,
    office: &str,
    point: &str,
) -> anyhow::Result<Report> {
    let rows = read_report(federation, office, "point-cases", point).await?;
    let text = case_rows_text(&rows, format!("no cases filed at or below {point}"));
    Ok(Report::new(
        json!({"office": office, "point": point, "cases": rows}),
        text,
    ))
}

pub async fn intake_point(layout: &Layout, command: IntakePointCommand) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    match command {
        IntakePointCommand::Add(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            let kind = PointKind::parse(&args.kind).map_err(|e| anyhow!("{}", e.message))?;
            let change_ = DeskChange::AddIntakePoint {
                code: args.code,
                name: args.name,
                kind,
                parent: args.parent,
            };
            let (point, _) = change(&federation, &office, &change_, args.request_id).await?;
            let text = format!(
                "intake point {} {} ({}{})",
                s(&point["code"]),
                s(&point["name"]),
                s(&point["kind"]),
                point["parent"]
                    .as_str()
                    .map(|p| format!(", under {p}"))
                    .unwrap_or_default()
            );
            Ok(Report::new(point, text))
        }
        IntakePointCommand::List(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            let list = read_report(&federation, &office, "points", "").await?;
            let mut lines: Vec<String> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{} {} ({}{})",
                        s(&p["code"]),
                        s(&p["name"]),
                        s(&p["kind"]),
                        p["parent"]
                            .as_str()
                            .map(|x| format!(", under {x}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            if lines.is_empty() {
                lines.push(format!("no intake points at {office}"));
            }
            Ok(Report::new(
                json!({"office": office, "points": list}),
                lines.join("\n"),
            ))
        }
        IntakePointCommand::Cases(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            point_cases(&federation, &office, &args.point).await
        }
    }
}

pub async fn proxy(layout: &Layout, command: ProxyCommand) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    match command {
        ProxyCommand::Add(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            let change_ = DeskChange::AddProxy {
                code: args.code,
                name: args.name,
                point: args.point,
                officer: args.officer,
            };
            let (agent, _) = change(&federation, &office, &change_, args.request_id).await?;
            let text = format!(
                "proxy agent {} {} at {}",
                s(&agent["code"]),
                s(&agent["name"]),
                s(&agent["point"])
            );
            Ok(Report::new(agent, text))
        }
        ProxyCommand::List(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            let list = read_report(&federation, &office, "proxies", "").await?;
            let mut lines: Vec<String> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| format!("{} {} at {}", s(&a["code"]), s(&a["name"]), s(&a["point"])))
                .collect();
            if lines.is_empty() {
                lines.push(format!("no proxy agents at {office}"));
            }
            Ok(Report::new(
                json!({"office": office, "proxies": list}),
                lines.join("\n"),
            ))
        }
        ProxyCommand::Cases(args) => {
            let office = own_office(&federation, args.office.as_deref())?;
            let rows = read_report(&federation, &office, "proxy-cases", &args.agent).await?;
            let text = case_rows_text(&rows, format!("no cases filed by {}", args.agent));
            Ok(Report::new(
                json!({"office": office, "agent": args.agent, "cases": rows}),
                text,
            ))
        }
    }
}

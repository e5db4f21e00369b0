//! `liandong report list` and `liandong report show`: the scheduled supervision reports
//! (日监测、周调度、月通报) an office makes of its subtree when a day, week or month ends in China
//! time (docs/supervision.md). The office serves them to its own supervisors, leaders and
//! auditors; an officer of any other office is refused by the office.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use federation_proto::v1::federation_client::FederationClient;
use federation_proto::v1::{ReportEntry, ReportRequest, ReportsRequest};
use liandong_domain::figures::parse_day;
use liandong_domain::format_rfc3339;
use liandong_domain::reports::ReportKind;
use serde_json::{json, Value};

use crate::client::{status_error, Bearer, Federation};
use crate::commands::Report;
use crate::layout::Layout;

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// The reports the office keeps, newest first: kind, period, days covered, when made, totals.
    List(ListArgs),
    /// One report (the latest of its kind without --period) as JSON, CSV or an HTML page with
    /// SVG charts, on standard output or into --out.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// The office (default: the signed-in officer's).
    #[arg(long)]
    pub office: Option<String>,
    /// Only this kind: daily, weekly or monthly.
    #[arg(long)]
    pub kind: Option<String>,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The office (default: the signed-in officer's).
    #[arg(long)]
    pub office: Option<String>,
    /// daily, weekly or monthly.
    #[arg(long)]
    pub kind: String,
    /// The period: YYYY-MM-DD for a day or a week (its Monday), YYYY-MM for a month (default:
    /// the latest report of the kind).
    #[arg(long)]
    pub period: Option<String>,
    /// json, csv or html.
    #[arg(long, default_value = "json")]
    pub format: String,
    /// Write the report into this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The office asked about (`--office`, else the signed-in officer's) and the signed-in officer's
/// token, sent whatever the office: the office itself decides whether the officer may read it.
fn office_of(federation: &Federation, given: Option<String>) -> anyhow::Result<(String, Bearer)> {
    let session = federation.officer()?;
    let office = given.unwrap_or_else(|| session.claims.office.clone());
    Ok((office, Bearer::new(Some(&session.token))))
}

/// A period name of `kind`, checked before anything is asked.
fn check_period(kind: ReportKind, period: &str) -> anyhow::Result<()> {
    let fits = match kind {
        ReportKind::Daily => parse_day(period).is_ok(),
        ReportKind::Weekly => parse_day(period).is_ok_and(|day| day.days().rem_euclid(7) == 4),
        ReportKind::Monthly => period.len() == 7 && parse_day(&format!("{period}-01")).is_ok(),
    };
    if fits {
        return Ok(());
    }
    let shape = match kind {
        ReportKind::Daily => "a day, YYYY-MM-DD",
        ReportKind::Weekly => "a week by its Monday, YYYY-MM-DD",
        ReportKind::Monthly => "a month, YYYY-MM",
    };
    bail!(
        "bad --period {:?}: a {} report's period is {shape}",
        liandong_domain::echo(period),
        kind.as_str()
    )
}

fn entry_json(entry: &ReportEntry) -> Value {
    json!({
        "kind": entry.kind,
        "period": entry.period,
        "from": entry.from_day,
        "to": entry.to_day,
        "made_at": entry.made_ms,
        "total": entry.total,
        "backlog": entry.backlog,
        "overdue": entry.overdue,
        "warned": entry.warned,
    })
}

pub async fn list(layout: &Layout, args: ListArgs) -> anyhow::Result<Report> {
    let kind = match &args.kind {
        Some(word) => ReportKind::parse(word).map_err(|e| anyhow!("--kind: {e}"))?,
        None => ReportKind::Daily,
    };
    let federation = Federation::open(layout.clone())?;
    let (office, bearer) = office_of(&federation, args.office)?;
    let request = ReportsRequest {
        office: office.clone(),
        kind: args
            .kind
            .as_ref()
            .map(|_| kind.as_str().to_string())
            .unwrap_or_default(),
    };
    let reply = federation
        .office_call_as(&office, bearer, |channel| {
            let request = request.clone();
            async move {
                FederationClient::new(channel)
                    .reports(request)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
        .map_err(|s| status_error(&s))?;
    let mut lines = vec![format!(
        "{:<8} {:<10} {:<10} {:<10} {:<25} {:>7} {:>7} {:>7}",
        "kind", "period", "from", "to", "made", "cases", "backlog", "overdue"
    )];
    for entry in &reply.reports {
        lines.push(format!(
            "{:<8} {:<10} {:<10} {:<10} {:<25} {:>7} {:>7} {:>7}",
            entry.kind,
            entry.period,
            entry.from_day,
            entry.to_day,
            format_rfc3339(entry.made_ms),
            entry.total,
            entry.backlog,
            entry.overdue
        ));
    }
    if reply.reports.is_empty() {
        lines = vec![format!(
            "office {office} has made no reports yet (the first are made when it starts, then \
             one when each day, week and month ends, China time)"
        )];
    }
    Ok(Report::new(
        json!({
            "office": office,
            "reports": reply.reports.iter().map(entry_json).collect::<Vec<_>>(),
        }),
        lines.join("\n"),
    ))
}

pub async fn show(layout: &Layout, args: ShowArgs) -> anyhow::Result<Report> {
    let kind = ReportKind::parse(&args.kind).map_err(|e| anyhow!("--kind: {e}"))?;
    if !["json", "csv", "html"].contains(&args.format.as_str()) {
        bail!(
            "bad --format {:?}: one of json, csv, html",
            liandong_domain::echo(&args.format)
        );
    }
    if let Some(period) = &args.period {
        check_period(kind, period)?;
    }
    let federation = Federation::open(layout.clone())?;
    let (office, bearer) = office_of(&federation, args.office)?;
    let request = ReportRequest {
        office: office.clone(),
        kind: kind.as_str().to_string(),
        period: args.period.clone().unwrap_or_default(),
        format: args.format.clone(),
    };
    let reply = federation
        .office_call_as(&office, bearer, |channel| {
            let request = request.clone();
            async move {
                FederationClient::new(channel)
                    .report(request)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
        .map_err(|s| status_error(&s))?;
    let entry = reply.report.unwrap_or_default();
    let mut json = json!({
        "office": office,
        "report": entry_json(&entry),
        "format": reply.format,
    });
    let text = match &args.out {
        Some(path) => {
            std::fs::write(path, &reply.body)
                .with_context(|| format!("writing the report into {}", path.display()))?;
            json["out"] = json!(path.display().to_string());
            format!(
                "{office} {} report {} ({} to {}) written to {} ({})",
                entry.kind,
                entry.period,
                entry.from_day,
                entry.to_day,
                path.display(),
                reply.format
            )
        }
        None => {
            json["body"] = json!(reply.body);
            reply.body.trim_end().to_string()
        }
    };
    Ok(Report::new(json, text))
}

//! `liandong notice policy`, `liandong notices` and `liandong red-cards`: an office's escalating
//! notice ages (三级抄告), the notices it received from its subtree, and the red cards (红牌) it
//! earned and received (docs/notices.md). Every command acts as the signed-in officer, for its
//! own office; the office refuses any other.

use anyhow::bail;
use clap::{Args, Subcommand};
use federation_proto::v1::notices_client::NoticesClient;
use federation_proto::v1::{NoticePolicyRequest, NoticeReadRequest, NoticeReply};
use liandong_domain::format_rfc3339;
use serde_json::{json, Value};

use crate::client::{status_error, Federation};
use crate::commands::Report;
use crate::layout::Layout;

#[derive(Subcommand, Debug)]
pub enum NoticeCommand {
    /// The ages (calendar days since registration) at which an unresolved case is copied one
    /// level further up: `--ages 30,60,90` sets them (admin), `--off` clears them, neither
    /// shows them.
    Policy(PolicyArgs),
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// The office (default: the signed-in officer's).
    #[arg(long)]
    pub office: Option<String>,
    /// 1 to 3 strictly increasing ages in days: the parent, the grandparent, the level above.
    #[arg(long, value_delimiter = ',', conflicts_with = "off")]
    pub ages: Vec<u32>,
    /// No notices from this office any more.
    #[arg(long)]
    pub off: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// The office (default: the signed-in officer's).
    #[arg(long)]
    pub office: Option<String>,
    /// Rows at most (default 50, at most 500).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

/// The signed-in officer's office; `given` must name it (an office's notices, ages and cards
/// are its own officers' business: a supervisor reads its own worklist, fed from below).
fn office_of(federation: &Federation, given: Option<String>) -> anyhow::Result<String> {
    let own = federation.officer()?.claims.office.clone();
    match given {
        Some(code) if code != own => {
            bail!("signed in at office {own}, not {code}: an officer acts only for its own office")
        }
        _ => Ok(own),
    }
}

async fn call_policy(
    federation: &Federation,
    request: NoticePolicyRequest,
) -> anyhow::Result<NoticeReply> {
    let office = request.office.clone();
    federation
        .office_channel_call(&office, |channel| {
            let request = request.clone();
            async move {
                NoticesClient::new(channel)
                    .policy(request)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
        .map_err(|s| status_error(&s))
}

async fn read(
    federation: &Federation,
    office: &str,
    what: &str,
    limit: u32,
) -> anyhow::Result<(Value, i64)> {
    let request = NoticeReadRequest {
        office: office.to_string(),
        what: what.to_string(),
        limit,
    };
    let reply = federation
        .office_channel_call(office, |channel| {
            let request = request.clone();
            async move {
                NoticesClient::new(channel)
                    .read(request)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
        .map_err(|s| status_error(&s))?;
    Ok((serde_json::from_slice(&reply.document)?, reply.now_ms))
}

fn s(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

fn time(value: &Value) -> String {
    value.as_i64().map(format_rfc3339).unwrap_or_default()
}

fn policy_text(office: &str, policy: &Value) -> String {
    match policy["policy"]["ages_days"].as_array() {
        Some(ages) => format!(
            "{office} copies an unresolved case up at {} calendar days (set by {} {})",
            ages.iter()
                .enumerate()
                .map(|(n, age)| format!("{age} (level {})", n + 1))
                .collect::<Vec<_>>()
                .join(", "),
            s(&policy["set_by"]),
            time(&policy["set_at"])
        ),
        None => format!("{office} sends no escalating notices (no policy)"),
    }
}

pub async fn policy(layout: &Layout, command: NoticeCommand) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let NoticeCommand::Policy(args) = command;
    let office = office_of(&federation, args.office)?;
    let request = NoticePolicyRequest {
        office: office.clone(),
        ages_days: args.ages,
        clear: args.off,
    };
    let reply = call_policy(&federation, request).await?;
    let policy: Value = serde_json::from_slice(&reply.document)?;
    let text = policy_text(&office, &policy);
    Ok(Report::new(
        json!({"office": office, "policy": policy}),
        text,
    ))
}

pub async fn notices(layout: &Layout, args: ListArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let office = office_of(&federation, args.office)?;
    let (list, now) = read(&federation, &office, "notices", args.limit).await?;
    let rows = list["notices"].as_array().cloned().unwrap_or_default();
    let mut lines = vec![format!(
        "{:<22} {:<10} {:>5} {:>5} {:<12} {:<10} {:<25} now",
        "case", "origin", "level", "age", "status", "category", "received"
    )];
    let mut resolved = 0;
    for row in &rows {
        let notice = &row["notice"];
        let now = &row["now"];
        resolved += usize::from(now["resolved"] == true);
        lines.push(format!(
            "{:<22} {:<10} {:>5} {:>5} {:<12} {:<10} {:<25} {}",
            s(&notice["case_id"]),
            s(&notice["origin"]),
            notice["level"],
            format!("{}d", notice["age_days"]),
            s(&notice["status"]),
            s(&notice["category"]),
            time(&row["received_at"]),
            match (now["status"].as_str(), now["resolved"] == true) {
                (Some(status), true) => format!("resolved ({status} at {})", s(&now["holder"])),
                (Some(status), false) => format!("{status} at {}", s(&now["holder"])),
                (None, _) => "not yet in the index".to_string(),
            }
        ));
    }
    if !rows.is_empty() {
        lines.push(format!(
            "{} notices, {resolved} resolved since (their matter answered)",
            rows.len()
        ));
    }
    if rows.is_empty() {
        lines = vec![format!("no notices received at {office}")];
    }
    if list["more"] == true {
        lines.push(format!(
            "… more: older notices not shown (--limit {} shows more)",
            (args.limit.max(1) * 2).min(500)
        ));
    }
    Ok(Report::new(
        json!({"office": office, "as_of": now, "notices": rows, "more": list["more"]}),
        lines.join("\n"),
    ))
}

fn card_line(card: &Value) -> String {
    format!(
        "{:<22} {:<10} {:<12} issuer {:<8} due {} missed {}",
        s(&card["case_id"]),
        s(&card["office"]),
        card["department"].as_str().unwrap_or("-"),
        s(&card["issuer"]),
        time(&card["due_by"]),
        time(&card["at"])
    )
}

pub async fn red_cards(layout: &Layout, args: ListArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let office = office_of(&federation, args.office)?;
    let (cards, now) = read(&federation, &office, "red-cards", args.limit).await?;
    let mut lines = Vec::new();
    let section = |title: &str, rows: &Value, lines: &mut Vec<String>| {
        let rows = rows.as_array().cloned().unwrap_or_default();
        lines.push(format!("{title}: {}", rows.len()));
        for row in &rows {
            lines.push(format!("  {}", card_line(&row["card"])));
        }
    };
    section(&format!("earned by {office}"), &cards["earned"], &mut lines);
    section("received from the subtree", &cards["received"], &mut lines);
    if cards["more"] == true {
        lines.push("… more: older cards not shown (the counts include them)".to_string());
    }
    lines.push("red cards per office:".to_string());
    for row in cards["counts"].as_array().into_iter().flatten() {
        lines.push(format!("  {:<10} {}", s(&row["office"]), row["red_cards"]));
    }
    if let Some(departments) = cards["departments"].as_array().filter(|d| !d.is_empty()) {
        lines.push(format!("red cards per department of {office}:"));
        for row in departments {
            lines.push(format!(
                "  {:<16} {}",
                s(&row["department"]),
                row["red_cards"]
            ));
        }
    }
    let mut json = cards;
    json["office"] = json!(office);
    json["as_of"] = json!(now);
    Ok(Report::new(json, lines.join("\n")))
}

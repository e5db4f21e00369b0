//! `liandong login`, `logout`, `officer ...` and `audit`: the command line's side of people and
//! trust (the calls themselves are in [`crate::session`]).

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::{anyhow, bail};
use federation_proto::v1::AuditReadRequest;
use liandong_node::raft::types::Role;
use liandong_node::secrets;
use serde_json::{json, Value};

use crate::cli::{AuditArgs, LoginArgs, OfficerCommand};
use crate::client::Federation;
use crate::commands::Report;
use crate::layout::Layout;
use crate::session;

/// A password from `file`'s first line, or from standard input's.
fn password(file: Option<&Path>) -> anyhow::Result<String> {
    match file {
        Some(path) => secrets::password_from_file(path).map_err(|e| anyhow!("{e}")),
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .take(secrets::PASSWORD_BYTES_MAX as u64 + 2)
                .read_line(&mut line)?;
            Ok(line.trim_end_matches(['\r', '\n']).to_string())
        }
    }
}

/// A new password from `file`, or a random one (printed once, in the report).
fn new_password(file: Option<&Path>) -> anyhow::Result<(String, bool)> {
    match file {
        Some(_) => Ok((password(file)?, false)),
        None => Ok((secrets::generate_password(), true)),
    }
}

pub async fn login(layout: &Layout, args: &LoginArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let password = password(args.password_file.as_deref())?;
    let session = session::login(&federation, &args.office, &args.user, &password)
        .await
        .map_err(|s| anyhow!("login refused: {}", s.message()))?;
    session.save(&layout.token_file())?;
    let claims = &session.claims;
    let roles: Vec<String> = claims.roles.iter().map(|r| r.to_string()).collect();
    let until = liandong_domain::format_rfc3339(claims.expires_ms);
    Ok(Report::new(
        json!({
            "office": claims.office,
            "user": claims.user,
            "roles": roles,
            "expires": until,
            "token_file": layout.token_file().display().to_string(),
        }),
        format!(
            "signed in as {} at office {} ({}) until {until}",
            claims.user,
            claims.office,
            roles.join(", ")
        ),
    ))
}

pub fn logout(layout: &Layout) -> anyhow::Result<Report> {
    let path = layout.token_file();
    let removed = match std::fs::remove_file(&path) {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => return Err(anyhow!("{}: {error}", path.display())),
    };
    Ok(Report::new(
        json!({"signed_out": removed}),
        if removed {
            "signed out"
        } else {
            "nobody was signed in"
        },
    ))
}

fn roles(words: &[String]) -> anyhow::Result<Vec<Role>> {
    words
        .iter()
        .map(|word| word.trim().parse::<Role>().map_err(|e| anyhow!(e)))
        .collect()
}

/// The office an officer command is about: `--office`, else the signed-in officer's.
fn office(federation: &Federation, given: Option<&String>) -> anyhow::Result<String> {
    match given {
        Some(code) => Ok(code.clone()),
        None => Ok(federation.officer()?.claims.office.clone()),
    }
}

fn officer_line(officer: &Value) -> String {
    let roles: Vec<&str> = officer["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "{} ({}){}",
        officer["user"].as_str().unwrap_or(""),
        roles.join(", "),
        if officer["enabled"] == false {
            " DISABLED"
        } else {
            ""
        }
    )
}

pub async fn officer(layout: &Layout, command: OfficerCommand) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let (officer, password) = match &command {
        OfficerCommand::Add(args) => {
            let office = office(&federation, args.office.as_ref())?;
            let roles = roles(&args.roles)?;
            let (password, made) = new_password(args.password_file.as_deref())?;
            let officer = session::add(&federation, &office, &args.user, &roles, &password).await?;
            (officer, made.then_some(password))
        }
        OfficerCommand::List(args) => {
            let office = office(&federation, args.office.as_ref())?;
            let officers = session::list(&federation, &office).await?;
            let text = officers.iter().map(officer_line).collect::<Vec<_>>();
            return Ok(Report::new(
                json!({"office": office, "officers": officers}),
                text.join("\n"),
            ));
        }
        OfficerCommand::Disable(args) | OfficerCommand::Enable(args) => {
            let office = office(&federation, args.office.as_ref())?;
            let enabled = matches!(command, OfficerCommand::Enable(_));
            let officer = session::set_enabled(&federation, &office, &args.user, enabled).await?;
            (officer, None)
        }
        OfficerCommand::ResetPassword(args) => {
            let office = office(&federation, args.office.as_ref())?;
            let (password, made) = new_password(args.password_file.as_deref())?;
            let officer =
                session::reset_password(&federation, &office, &args.user, &password).await?;
            (officer, made.then_some(password))
        }
    };
    let mut text = officer_line(&officer);
    let mut json = json!({"officer": officer});
    if let Some(password) = password {
        text.push_str(&format!("\npassword (shown once): {password}"));
        json["password"] = Value::String(password);
    }
    Ok(Report::new(json, text))
}

pub async fn audit(layout: &Layout, args: &AuditArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let office = office(&federation, args.office.as_ref())?;
    let since_ms = match &args.since {
        Some(text) => {
            liandong_domain::parse_rfc3339(text).map_err(|e| anyhow!("--since {text:?}: {e}"))?
        }
        None => 0,
    };
    if args.limit == 0 {
        bail!("--limit must be at least 1");
    }
    let request = AuditReadRequest {
        office,
        case_id: args.case_id.clone(),
        user: args.user.clone(),
        since_ms,
        limit: args.limit,
    };
    let json = session::audit(&federation, request).await?;
    let mut lines: Vec<String> = json["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {} {} {} {}{}{}",
                e["at"].as_str().unwrap_or(""),
                e["user"].as_str().unwrap_or(""),
                e["rpc"].as_str().unwrap_or(""),
                e["case_id"].as_str().unwrap_or(""),
                e["result"].as_str().unwrap_or(""),
                match e["count"].as_u64() {
                    Some(n) if n > 1 => format!(" (x{n})"),
                    _ => String::new(),
                },
                match e["detail"].as_str() {
                    Some(d) if !d.is_empty() => format!(" [{d}]"),
                    _ => String::new(),
                }
            )
        })
        .collect();
    lines.push(format!(
        "chain: {} ({})",
        if json["chain_ok"] == true {
            "intact"
        } else {
            "BROKEN"
        },
        json["chain_detail"].as_str().unwrap_or("")
    ));
    let ok = json["chain_ok"] == true;
    let mut report = Report::new(json, lines.join("\n"));
    report.ok = ok;
    Ok(report)
}

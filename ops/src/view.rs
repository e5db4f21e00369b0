//! How the command line shows things: the JSON documents of docs/commands.md and their
//! readable text.

use std::collections::BTreeMap;

use federation_proto::v1::{ReplicaStatus, StatusReply};
use liandong_domain::{format_rfc3339, Case, CaseKind, Millis};
use liandong_node::health::FLAPPING_LEADER_CHANGES;
use liandong_node::manifest::HostEntry;
use serde_json::{json, Value};

use crate::client::Federation;
use crate::process;

/// The leader of `office` as the answering hosts report it (the highest term wins).
pub fn office_leader(statuses: &[(HostEntry, Option<StatusReply>)], office: &str) -> Option<u64> {
    statuses
        .iter()
        .filter_map(|(_, reply)| reply.as_ref())
        .flat_map(|reply| reply.replicas.iter())
        .filter(|replica| replica.office == office && replica.state == "Leader")
        .max_by_key(|replica| replica.term)
        .map(|replica| replica.id)
}

/// The office's voters, learners and the log index of that membership as its leader reports
/// them: the live membership, which `replica add|remove` changes (the manifest lists replica
/// slots, not members). During a change the voters are the union of the joint configs.
pub fn office_membership(
    statuses: &[(HostEntry, Option<StatusReply>)],
    office: &str,
) -> Option<(Vec<u64>, Vec<u64>, u64)> {
    let leader = office_leader(statuses, office)?;
    statuses
        .iter()
        .filter_map(|(_, reply)| reply.as_ref())
        .flat_map(|reply| reply.replicas.iter())
        .filter(|r| r.office == office && r.id == leader && r.state == "Leader")
        .max_by_key(|r| (r.term, r.membership_index))
        .map(|r| (r.voters.clone(), r.learners.clone(), r.membership_index))
}

/// How an office stands, as `status` and `up` judge it (liandong_node::health): a leader that
/// commits, and steady leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// No answering replica leads.
    NoLeader,
    /// Its leader's read index did not complete: no majority confirms it.
    NotCommitting,
    /// More than `FLAPPING_LEADER_CHANGES` leader changes in the last minute.
    Flapping,
    /// A leader answered, but was not asked whether it commits.
    Unchecked,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::NoLeader => "no_leader",
            Health::NotCommitting => "not_committing",
            Health::Flapping => "flapping",
            Health::Unchecked => "unchecked",
        }
    }

    /// The office's health from its leader (if any), whether the leader committed (None: not
    /// checked) and the most leader changes any of its replicas saw in the last minute.
    pub fn judge(leader: Option<u64>, commits: Option<bool>, leader_changes: u32) -> Health {
        if leader.is_none() {
            Health::NoLeader
        } else if leader_changes > FLAPPING_LEADER_CHANGES {
            Health::Flapping
        } else {
            match commits {
                Some(true) => Health::Ok,
                Some(false) => Health::NotCommitting,
                None => Health::Unchecked,
            }
        }
    }
}

/// The replica statuses of `office` that answered, with their hosts.
fn reported<'a>(
    statuses: &'a [(HostEntry, Option<StatusReply>)],
    office: &'a str,
) -> impl Iterator<Item = (&'a HostEntry, &'a ReplicaStatus)> + 'a {
    statuses.iter().filter_map(move |(host, reply)| {
        let replica = reply
            .as_ref()?
            .replicas
            .iter()
            .find(|r| r.office == office)?;
        Some((host, replica))
    })
}

/// The status of the replica that leads `office` (the highest term's leader).
fn leader_status<'a>(
    statuses: &'a [(HostEntry, Option<StatusReply>)],
    office: &'a str,
) -> Option<&'a ReplicaStatus> {
    reported(statuses, office)
        .map(|(_, replica)| replica)
        .filter(|replica| replica.state == "Leader")
        .max_by_key(|replica| replica.term)
}

fn age_text(ms: u64) -> String {
    let seconds = ms / 1_000;
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3_599 => format!("{}m", seconds / 60),
        3_600..=86_399 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// One office in the status document: what docs/commands.md lists, plus its health.
fn office_json(
    office: &liandong_node::manifest::OfficeEntry,
    statuses: &[(HostEntry, Option<StatusReply>)],
) -> Value {
    let membership = office_membership(statuses, &office.code);
    let role = |id: u64| {
        membership.as_ref().map(|(voters, learners, _)| {
            if voters.contains(&id) {
                "voter"
            } else if learners.contains(&id) {
                "learner"
            } else {
                "removed"
            }
        })
    };
    let leader = leader_status(statuses, &office.code);
    let term = reported(statuses, &office.code)
        .map(|(_, replica)| replica.term)
        .max()
        .unwrap_or(0);
    let leader_changes = reported(statuses, &office.code)
        .map(|(_, replica)| replica.leader_changes_last_minute)
        .max()
        .unwrap_or(0);
    let replicas: Vec<Value> = office
        .members
        .iter()
        .map(|member| {
            let reported = reported(statuses, &office.code)
                .find(|(host, _)| host.name == member.host)
                .map(|(_, replica)| replica);
            json!({
                "id": member.id,
                "host": member.host,
                "alive": reported.is_some(),
                "state": reported.map(|r| r.state.clone()),
                "term": reported.map(|r| r.term),
                "last_log": reported.map(|r| r.last_log),
                "last_applied": reported.map(|r| r.last_applied),
                "state_hash": reported.map(|r| r.state_hash.clone()),
                "cases": reported.map(|r| r.cases),
                "role": role(member.id),
                "quiesced": reported.map(|r| r.quiesced),
                "quiesce_note": reported.map(|r| r.quiesce_note.clone()).filter(|n| !n.is_empty()),
            })
        })
        .collect();
    let check = leader.and_then(|leader| leader.commit_check.as_ref());
    let health = Health::judge(
        leader.map(|l| l.id),
        check.map(|c| c.commits),
        leader_changes,
    );
    let detail = match health {
        Health::Ok => String::new(),
        Health::NoLeader => "no answering replica leads".to_string(),
        Health::Flapping => format!("{leader_changes} leader changes in the last minute"),
        Health::NotCommitting => check.map(|c| c.error.clone()).unwrap_or_default(),
        Health::Unchecked => "the leader was not asked".to_string(),
    };
    let outbox_oldest_ms = leader.map_or(0, |l| l.outbox_oldest_ms);
    let links: Vec<Value> = leader
        .into_iter()
        .flat_map(|l| l.links.iter())
        .map(|link| {
            json!({
                "to": link.to,
                "pending": link.pending,
                "oldest": (link.oldest_ms > 0).then(|| format_rfc3339(link.oldest_ms)),
                "oldest_age_ms": link.oldest_age_ms,
                "unadmitted": link.unadmitted,
                "last_unadmitted": (link.unadmitted > 0).then(|| json!({
                    "seq": link.last_unadmitted_seq,
                    "kind": link.last_unadmitted_kind,
                    "code": link.last_unadmitted_code,
                    "at": format_rfc3339(link.last_unadmitted_ms),
                })),
            })
        })
        .collect();
    let replication: Vec<Value> = leader
        .into_iter()
        .flat_map(|l| l.replication.iter())
        .map(
            |progress| json!({"id": progress.id, "matched": progress.matched, "lag": progress.lag}),
        )
        .collect();
    let sms = leader.map(|l| {
        json!({
            "pending": l.sms_pending,
            "sent": l.sms_sent,
            "dropped": l.sms_dropped,
            "failed_attempts": l.sms_failed_attempts,
            "last_error": (!l.sms_last_error.is_empty()).then(|| l.sms_last_error.clone()),
            "oldest": (l.sms_oldest_ms > 0).then(|| format_rfc3339(l.sms_oldest_ms)),
            "oldest_age_ms": l.sms_oldest_age_ms,
        })
    });
    json!({
        "code": office.code,
        "name": office.name,
        "level": office.level,
        "parent": office.parent,
        "leader": leader.map(|l| l.id),
        "term": term,
        "replicas": replicas,
        "outbox_pending": leader.map_or(0, |l| l.outbox_pending),
        "voters": membership.as_ref().map(|m| m.0.clone()),
        "learners": membership.as_ref().map(|m| m.1.clone()),
        "membership_index": membership.as_ref().map(|m| m.2),
        "outbox_oldest": (outbox_oldest_ms > 0).then(|| format_rfc3339(outbox_oldest_ms)),
        "commit_index": leader.map(|l| l.commit_index),
        "applied_index": leader.map(|l| l.last_applied),
        "replication": replication,
        "links": links,
        "quiesced": leader.map(|l| l.quiesced),
        "leader_changes_last_minute": leader_changes,
        "commits": check.map(|c| c.commits),
        "commit_check_ms": check.map(|c| c.took_ms),
        "health": health.as_str(),
        "health_detail": detail,
        "sms": sms,
    })
}

pub fn status_json(
    federation: &Federation,
    statuses: &[(HostEntry, Option<StatusReply>)],
) -> Value {
    let offices: Vec<Value> = federation
        .manifest
        .offices
        .iter()
        .map(|office| office_json(office, statuses))
        .collect();
    let hosts: Vec<Value> = statuses
        .iter()
        .map(|(host, reply)| {
            let pid = process::running_pid(&federation.layout, &host.name);
            json!({
                "name": host.name,
                "pid": pid.or(reply.as_ref().and_then(|r| i32::try_from(r.pid).ok())),
                "alive": reply.is_some(),
                "metrics_url": format!("http://{}/metrics", host.metrics_addr),
                // The public surface (Open311, the petitioner's status page); null for a host
                // of a manifest made before it existed, which serves none.
                "http_url": host.http_addr.as_deref().map(liandong_node::public::url_of),
                "api_addr": host.api_addr,
                // Where it runs (a federation made from an inventory) and the generation of the
                // manifest it runs with (null: it did not answer).
                "site": host.site,
                "manifest_generation": reply.as_ref().map(|r| r.manifest_generation),
                "certificate": reply.as_ref().filter(|r| !r.certificate_serial.is_empty()).map(|r| {
                    let days = crate::cert_cmd::days_left(r.certificate_not_after_ms);
                    json!({
                        "serial": r.certificate_serial,
                        "expires": format_rfc3339(r.certificate_not_after_ms),
                        "days_left": days,
                        "expires_soon": days < crate::cert_cmd::EXPIRY_WARNING_DAYS,
                    })
                }),
            })
        })
        .collect();
    let verdict = verdict(&offices, &hosts);
    let mut sms = sms_totals(federation.manifest.sms_gateway.as_deref(), &offices);
    sms["hotline_callback"] = json!(federation.manifest.hotline_callback);
    json!({"verdict": verdict, "offices": offices, "hosts": hosts, "sms": sms})
}

/// The SMS to petitioners over every office whose leader answered: the gateway, notices
/// waiting (and the oldest's age), sent, failed attempts, dropped. The counts include the
/// hotline callbacks, which wait and go the same way.
fn sms_totals(gateway: Option<&str>, offices: &[Value]) -> Value {
    let sum = |field: &str| {
        offices
            .iter()
            .filter_map(|o| o["sms"][field].as_u64())
            .sum::<u64>()
    };
    let oldest_age_ms = offices
        .iter()
        .filter(|o| o["sms"]["pending"].as_u64().unwrap_or(0) > 0)
        .filter_map(|o| o["sms"]["oldest_age_ms"].as_u64())
        .max();
    let last_error = offices.iter().find_map(|o| {
        o["sms"]["last_error"]
            .as_str()
            .map(|e| format!("{}: {e}", o["code"].as_str().unwrap_or("")))
    });
    json!({
        "gateway": gateway.unwrap_or("none"),
        "pending": sum("pending"),
        "sent": sum("sent"),
        "failed_attempts": sum("failed_attempts"),
        "dropped": sum("dropped"),
        "oldest_age_ms": oldest_age_ms,
        "last_error": last_error,
    })
}

/// The one-line verdict: ok only when every office is healthy.
fn verdict(offices: &[Value], hosts: &[Value]) -> Value {
    let unhealthy: Vec<Value> = offices
        .iter()
        .filter(|office| office["health"] != "ok")
        .map(|office| {
            json!({
                "code": office["code"],
                "health": office["health"],
                "detail": office["health_detail"],
            })
        })
        .collect();
    let quiesced = offices.iter().filter(|o| o["quiesced"] == true).count();
    let answering = hosts.iter().filter(|h| h["alive"] == true).count();
    let ok = unhealthy.is_empty();
    let text = if ok {
        format!(
            "ok: all {} offices have a leader that commits ({quiesced} quiesced); {answering}/{} hosts answering",
            offices.len(),
            hosts.len()
        )
    } else {
        let shown: Vec<String> = unhealthy
            .iter()
            .take(VERDICT_OFFICES_NAMED_MAX)
            .map(|o| {
                format!(
                    "{} {}",
                    o["code"].as_str().unwrap_or(""),
                    o["health"].as_str().unwrap_or("").replace('_', " ")
                )
            })
            .collect();
        let more = unhealthy.len().saturating_sub(VERDICT_OFFICES_NAMED_MAX);
        format!(
            "NOT OK: {} of {} offices unhealthy ({}{}); {answering}/{} hosts answering",
            unhealthy.len(),
            offices.len(),
            shown.join(", "),
            if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            },
            hosts.len()
        )
    };
    json!({"ok": ok, "text": text, "unhealthy": unhealthy, "quiesced": quiesced})
}

/// Offices the verdict line names at most (the rest are counted).
pub const VERDICT_OFFICES_NAMED_MAX: usize = 5;

/// Columns wider than this are cut (an office's name in the tree, its links).
const CELL_CHARS_MAX: usize = 60;

/// How wide `text` shows in a terminal: CJK characters take two columns.
fn display_width(text: &str) -> usize {
    text.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

fn pad(text: &str, width: usize) -> String {
    let shown: String = text.chars().take(CELL_CHARS_MAX).collect();
    let fill = width.saturating_sub(display_width(&shown));
    format!("{shown}{}", " ".repeat(fill))
}

/// Rows of cells as an aligned table (columns two spaces apart, the last one unpadded).
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| display_width(&cell.chars().take(CELL_CHARS_MAX).collect::<String>()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(column, cell)| {
                    if column + 1 == row.len() {
                        cell.clone()
                    } else {
                        pad(cell, widths[column])
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

/// The offices in tree order (each after its parent, children in the manifest's order), with
/// their depth.
fn tree_order(offices: &[Value]) -> Vec<(usize, &Value)> {
    let codes: std::collections::HashSet<&str> =
        offices.iter().filter_map(|o| o["code"].as_str()).collect();
    let mut children: std::collections::HashMap<&str, Vec<&Value>> = Default::default();
    let mut roots = Vec::new();
    for office in offices {
        match office["parent"]
            .as_str()
            .filter(|parent| codes.contains(parent))
        {
            Some(parent) => children.entry(parent).or_default().push(office),
            None => roots.push(office),
        }
    }
    let mut order = Vec::with_capacity(offices.len());
    let mut stack: Vec<(usize, &Value)> = roots.into_iter().rev().map(|o| (0, o)).collect();
    while let Some((depth, office)) = stack.pop() {
        order.push((depth, office));
        let code = office["code"].as_str().unwrap_or("");
        for child in children.get(code).into_iter().flatten().rev() {
            stack.push((depth + 1, child));
        }
    }
    order
}

/// The replicas cell: each replica's id, `*` for the leader, and what is off: down, lagging
/// entries behind the leader, learner or removed.
fn replicas_cell(office: &Value) -> String {
    let leader = office["leader"].as_u64();
    office["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let id = r["id"].as_u64().unwrap_or(0);
            let mut cell = format!("{id}{}", if Some(id) == leader { "*" } else { "" });
            let lag = office["replication"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["id"].as_u64() == Some(id))
                .and_then(|p| p["lag"].as_u64())
                .unwrap_or(0);
            if r["alive"] != true {
                cell.push_str(" down");
            } else if lag > 0 {
                cell.push_str(&format!(" -{lag}"));
            }
            if let Some(role @ ("learner" | "removed")) = r["role"].as_str() {
                cell.push_str(&format!(" ({role})"));
            }
            cell
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The outbox cell: messages waiting, on how many links, and the oldest's age; then the messages
/// a receiver refused on admission (not sent again: the receiver's build must be upgraded).
fn outbox_cell(office: &Value) -> String {
    let links = office["links"].as_array().cloned().unwrap_or_default();
    let waiting_links: Vec<&Value> = links
        .iter()
        .filter(|l| l["pending"].as_u64().unwrap_or(0) > 0)
        .collect();
    let oldest = waiting_links
        .iter()
        .filter_map(|l| l["oldest_age_ms"].as_u64())
        .max()
        .unwrap_or(0);
    let waiting = waiting_links
        .iter()
        .filter_map(|l| l["pending"].as_u64())
        .sum::<u64>();
    let mut cell = match waiting_links.as_slice() {
        [] => "-".to_string(),
        [one] => format!(
            "{waiting} to {} (oldest {})",
            one["to"].as_str().unwrap_or(""),
            age_text(oldest)
        ),
        _ => format!(
            "{waiting} on {} links (oldest {})",
            waiting_links.len(),
            age_text(oldest)
        ),
    };
    for link in &links {
        let refused = link["unadmitted"].as_u64().unwrap_or(0);
        if refused == 0 {
            continue;
        }
        let last = &link["last_unadmitted"];
        cell.push_str(&format!(
            "; {refused} REFUSED by {} ({} {})",
            link["to"].as_str().unwrap_or(""),
            last["kind"].as_str().unwrap_or(""),
            last["code"].as_str().unwrap_or("")
        ));
    }
    cell
}

fn health_cell(office: &Value) -> String {
    let health = office["health"].as_str().unwrap_or("");
    let detail = office["health_detail"].as_str().unwrap_or("");
    match health {
        "ok" if office["quiesced"] == true => "ok, quiesced".to_string(),
        "ok" => "ok".to_string(),
        other => {
            let word = other.replace('_', " ").to_uppercase();
            if detail.is_empty() {
                word
            } else {
                format!("{word}: {detail}")
            }
        }
    }
}

fn index_cell(value: &Value) -> String {
    value.as_u64().map_or("-".to_string(), |n| n.to_string())
}

/// `status` as text: the verdict, then the office tree as an aligned table, then the hosts.
pub fn status_text(status: &Value) -> String {
    let mut lines = vec![status["verdict"]["text"]
        .as_str()
        .unwrap_or("no verdict")
        .to_string()];
    let offices = status["offices"].as_array().cloned().unwrap_or_default();
    let mut rows = vec![[
        "OFFICE", "LEVEL", "LEADER", "TERM", "COMMIT", "APPLIED", "REPLICAS", "OUTBOX", "HEALTH",
    ]
    .map(String::from)
    .to_vec()];
    for (depth, office) in tree_order(&offices) {
        rows.push(vec![
            format!(
                "{}{} {}",
                "  ".repeat(depth),
                office["code"].as_str().unwrap_or(""),
                office["name"].as_str().unwrap_or("")
            ),
            office["level"].as_str().unwrap_or("").to_string(),
            index_cell(&office["leader"]),
            index_cell(&office["term"]),
            index_cell(&office["commit_index"]),
            index_cell(&office["applied_index"]),
            replicas_cell(office),
            outbox_cell(office),
            health_cell(office),
        ]);
    }
    lines.extend(table(&rows));
    let hosts = status["hosts"].as_array().map(Vec::len).unwrap_or(0);
    let alive = status["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["alive"] == true)
        .count();
    let down: Vec<&str> = status["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["alive"] != true)
        .filter_map(|h| h["name"].as_str())
        .collect();
    let mut hosts_line = format!("hosts: {alive}/{hosts} answering");
    if !down.is_empty() {
        hosts_line.push_str(&format!(" (not answering: {})", down.join(", ")));
    }
    lines.push(hosts_line);
    lines.push(sms_line(&status["sms"]));
    let public: Vec<&str> = status["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["http_url"].as_str())
        .collect();
    lines.push(match public.first() {
        Some(first) => format!(
            "public surface: {} of {hosts} hosts, e.g. {first}/status/CASE?code=CODE, {first}/open311/v2/",
            public.len()
        ),
        None => "public surface: none (the manifest gives no host an http_addr: it predates the \
                 public surface)"
            .to_string(),
    });
    if let Some(line) = sites_line(status) {
        lines.push(line);
    }
    for host in status["hosts"].as_array().into_iter().flatten() {
        let certificate = &host["certificate"];
        if certificate["expires_soon"] == true {
            lines.push(format!(
                "WARNING: host {}'s certificate {} expires {} ({} days left): run `liandong cert rotate`",
                host["name"].as_str().unwrap_or(""),
                certificate["serial"].as_str().unwrap_or(""),
                certificate["expires"].as_str().unwrap_or(""),
                certificate["days_left"]
            ));
        }
    }
    lines.join("\n")
}

/// `sites: city 3/3 hosts up, zhaoyang 3/3 hosts up; manifest generation 1 on every host that
/// answered` (or the hosts still on an older one), for a federation made from an inventory.
fn sites_line(status: &Value) -> Option<String> {
    let hosts = status["hosts"].as_array()?;
    let mut sites: Vec<(String, usize, usize)> = Vec::new();
    for host in hosts {
        let site = host["site"].as_str()?.to_string();
        let alive = usize::from(host["alive"] == true);
        match sites.iter_mut().find(|(name, _, _)| *name == site) {
            Some((_, up, all)) => {
                *up += alive;
                *all += 1;
            }
            None => sites.push((site, alive, 1)),
        }
    }
    let generations: Vec<(String, u64)> = hosts
        .iter()
        .filter_map(|h| {
            Some((
                h["name"].as_str()?.to_string(),
                h["manifest_generation"].as_u64()?,
            ))
        })
        .collect();
    let newest = generations.iter().map(|(_, g)| *g).max().unwrap_or(0);
    let behind: Vec<String> = generations
        .iter()
        .filter(|(_, g)| *g < newest)
        .map(|(name, g)| format!("{name} ({g})"))
        .collect();
    let sites: Vec<String> = sites
        .iter()
        .map(|(name, up, all)| format!("{name} {up}/{all} hosts up"))
        .collect();
    let manifest = if behind.is_empty() {
        format!("manifest generation {newest} on every host that answered")
    } else {
        format!(
            "manifest generation {newest}; behind: {} (run `liandong federation add-office` again)",
            behind.join(", ")
        )
    };
    Some(format!("sites: {}; {manifest}", sites.join(", ")))
}

/// `sms: gateway …; N pending (oldest AGE), N sent, N failed attempts, N dropped`.
fn sms_line(sms: &Value) -> String {
    let count = |field: &str| sms[field].as_u64().unwrap_or(0);
    let oldest = match sms["oldest_age_ms"].as_u64() {
        Some(age) if count("pending") > 0 => format!(" (oldest {})", age_text(age)),
        _ => String::new(),
    };
    let mut line = format!(
        "sms: gateway {}; {} pending{oldest}, {} sent, {} failed attempts, {} dropped",
        sms["gateway"].as_str().unwrap_or("none"),
        count("pending"),
        count("sent"),
        count("failed_attempts"),
        count("dropped"),
    );
    if let Some(callback) = sms["hotline_callback"].as_str() {
        line.push_str(&format!("; hotline callback {callback}"));
    }
    if let Some(error) = sms["last_error"].as_str() {
        line.push_str(&format!("; last error {error}"));
    }
    line
}

fn time(ms: Option<Millis>) -> Value {
    ms.map(|ms| Value::String(format_rfc3339(ms)))
        .unwrap_or(Value::Null)
}

/// The case that reviews this one, as the level above registered it (the last review or
/// re-review it asked for whose case is known here): from the `review_opened` history entry.
pub fn review_case(case: &Case) -> Option<String> {
    case.history
        .iter()
        .rev()
        .find(|entry| entry.kind == "review_opened")
        .and_then(|entry| entry.detail["review"].as_str())
        .map(str::to_string)
}

/// The review and re-review decisions that came back to this case, in order.
pub fn review_decisions(case: &Case) -> Vec<Value> {
    case.history
        .iter()
        .filter(|entry| entry.kind == "review_decided")
        .map(|entry| {
            let detail = &entry.detail;
            json!({
                "level": detail["level"],
                "review_case": detail["review"],
                "opinion": detail["opinion"],
                "text": detail["text"],
                "decided_at": detail["decided_at"].as_i64().map(format_rfc3339),
                "final": detail["is_final"],
                "received_at": format_rfc3339(entry.at),
            })
        })
        .collect()
}

pub fn case_json(case: &Case) -> Value {
    let history: Vec<Value> = case
        .history
        .iter()
        .map(|entry| {
            json!({
                "seq": entry.seq,
                "at": format_rfc3339(entry.at),
                "kind": entry.kind,
                "office": entry.office.to_string(),
                "detail": entry.detail,
                "prev_hash": entry.prev_hash,
                "hash": entry.hash,
                "state_sha256": entry.state_sha256,
                "signer": entry.signer.as_ref().map(ToString::to_string),
                "signature": entry.signature,
            })
        })
        .collect();
    json!({
        "case_id": case.id.to_string(),
        "office": case.office.to_string(),
        "kind": case.kind,
        "status": case.status.as_str(),
        "forwarded_to": match &case.status {
            liandong_domain::Status::Forwarded { to } | liandong_domain::Status::InTransit { to, .. } => Some(to.to_string()),
            _ => None,
        },
        "supervision": case.supervision,
        "review_case": review_case(case),
        "review_decisions": review_decisions(case),
        "channel": case.channel.as_str(),
        "category": case.category,
        "summary": case.summary,
        "location": case.location.as_ref().map(|l| l.to_string()),
        "petitioner_key": case.petitioner_key,
        "petitioner": case.petitioner.as_ref().map(|p| json!({
            "name": p.name.to_string(),
            "id_type": case.group.as_ref().map(|g| g.id_type.to_string()).unwrap_or_else(|| "resident".into()),
            "id_number": p.id_number.to_string(),
            "phone": p.phone.as_ref().map(ToString::to_string),
            "nationality": case.group.as_ref().and_then(|g| g.nationality.as_ref()).map(ToString::to_string),
            "address": case.address().map(ToString::to_string),
        })),
        "petitioners": case.petitioner.as_ref().map(|_| case.group.as_ref().map_or(1, |g| g.petitioners())),
        "co_petitioners": case.group.as_ref().map(|g| g.members.iter().map(|m| json!({
            "name": m.name.to_string(),
            "id_type": m.id_type.to_string(),
            "id_number": m.id_number.to_string(),
            "phone": m.phone.as_ref().map(ToString::to_string),
            "nationality": m.nationality.as_ref().map(ToString::to_string),
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "grade": case.grade,
        "opinion": case.opinion,
        "satisfaction": case.satisfaction,
        "registered_at": format_rfc3339(case.registered_at),
        "first_officer": case.first_officer,
        "extended": case.extended,
        "deadlines": {
            "accept_by": time(case.deadlines.accept_by),
            "reply_by": time(case.deadlines.reply_by),
            "review_by": time(case.deadlines.review_by),
            "return_by": time(case.deadlines.return_by),
            "report_by": time(case.deadlines.report_by),
            "supervision_by": time(case.deadlines.supervision_by),
            "grade_by": time(case.clock_due(liandong_domain::ClockKind::Grade)),
            "follow_up_by": time(case.clock_due(liandong_domain::ClockKind::FollowUp)),
        },
        "warnings": warnings(case),
        "follow_up": case.extra.as_ref().and_then(|extra| extra.followed_up.as_ref()).map(|done| json!({
            "at": format_rfc3339(done.at),
            "officer": done.officer,
            "note": done.note,
        })),
        "overdue": case.overdue,
        "history_start": case.history_start.entries,
        "history": history,
    })
}

/// The highest warning each running clock has reached (50, 75, 100 %): what `case show` warns of.
fn warnings(case: &Case) -> Value {
    liandong_domain::ClockKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let run = case.clock_run(kind)?;
            (run.reached_percent > 0).then(|| {
                json!({
                    "clock": kind.as_str(),
                    "percent": run.reached_percent,
                    "due": time(case.clock_due(kind)),
                })
            })
        })
        .collect()
}

/// ", GBR" for a petitioner with a nationality on record.
fn nationality(value: Option<&liandong_domain::Personal>) -> String {
    value.map(|n| format!(", {n}")).unwrap_or_default()
}

pub fn case_text(case: &Case) -> String {
    let mut lines = vec![format!(
        "{} at {}: {} ({}, {}){}",
        case.id,
        case.office,
        case.status.as_str(),
        case.channel.as_str(),
        case.category,
        if case.overdue { " OVERDUE" } else { "" }
    )];
    if let Some(petitioner) = &case.petitioner {
        let phone = match &petitioner.phone {
            Some(phone) => format!(", phone {phone}"),
            None => String::new(),
        };
        match &case.group {
            None => lines.push(format!(
                "  petitioner {} ({}){phone}",
                petitioner.name, petitioner.id_number
            )),
            Some(group) => {
                let representative = if group.members.is_empty() {
                    String::new()
                } else {
                    format!(
                        "  group petition of {} petitioners, represented by:\n",
                        group.petitioners()
                    )
                };
                lines.push(format!(
                    "{representative}  petitioner {} ({} {}{}){phone}",
                    petitioner.name,
                    group.id_type,
                    petitioner.id_number,
                    nationality(group.nationality.as_ref()),
                ));
                for (index, member) in group.members.iter().enumerate() {
                    let phone = match &member.phone {
                        Some(phone) => format!(", phone {phone}"),
                        None => String::new(),
                    };
                    lines.push(format!(
                        "  co-petitioner {}: {} ({} {}{}){phone}",
                        index + 2,
                        member.name,
                        member.id_type,
                        member.id_number,
                        nationality(member.nationality.as_ref()),
                    ));
                }
            }
        }
        if let Some(address) = case.address() {
            lines.push(format!("  address {address}"));
        }
    }
    if let CaseKind::Review { of } | CaseKind::ReReview { of } = &case.kind {
        lines.push(format!("  {} of {of}", case.kind.as_str()));
    }
    if let Some(review) = review_case(case) {
        lines.push(format!("  reviewed by case {review}"));
    }
    for decision in review_decisions(case) {
        lines.push(format!(
            "  {} decision of {}: {}{}: {}",
            decision["level"].as_str().unwrap_or(""),
            decision["review_case"].as_str().unwrap_or(""),
            decision["opinion"].as_str().unwrap_or(""),
            if decision["final"] == true {
                " (final)"
            } else {
                ""
            },
            decision["text"].as_str().unwrap_or("")
        ));
    }
    if let Some(grade) = &case.grade {
        let reached = case
            .clock_run(liandong_domain::ClockKind::Grade)
            .map(|run| format!(", {} % of its time used", run.reached_percent))
            .unwrap_or_default();
        lines.push(format!(
            "  grade {:?} deadline {}{reached}",
            grade.grade,
            format_rfc3339(grade.deadline)
        ));
    }
    if let Some(due) = case.clock_due(liandong_domain::ClockKind::FollowUp) {
        lines.push(format!(
            "  follow-up (回访) of a dissatisfied petitioner due {}",
            format_rfc3339(due)
        ));
    }
    if let Some(done) = case
        .extra
        .as_ref()
        .and_then(|extra| extra.followed_up.as_ref())
    {
        lines.push(format!(
            "  followed up {} by {}: {}",
            format_rfc3339(done.at),
            done.officer,
            done.note
        ));
    }
    if let Some(order) = &case.supervision {
        lines.push(format!(
            "  supervision order of {} due {}: {}",
            order.from,
            format_rfc3339(order.due_by),
            order.text
        ));
    }
    for entry in &case.history {
        lines.push(format!(
            "  {} {} {} {}",
            format_rfc3339(entry.at),
            entry.office,
            entry.kind,
            &entry.hash[..12.min(entry.hash.len())]
        ));
    }
    lines.join("\n")
}

/// An office's figures as `stats` prints them: the subtree's totals, each the sum of the
/// per-office rows, and the rows themselves.
pub fn stats_json(as_office: &str, reply: &federation_proto::v1::StatsReply) -> Value {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    let mut offices = Vec::new();
    for row in &reply.offices {
        let count = |figure: &str| row.counts.get(figure).copied().unwrap_or(0);
        let level = row
            .office
            .parse::<liandong_domain::OfficeCode>()
            .map(|code| code.level().as_str().to_string())
            .unwrap_or_default();
        *by.entry("by_level").or_default().entry(level).or_default() += count("total");
        for (figure, count) in &row.counts {
            match figure.split_once(':') {
                Some((dimension, value)) => {
                    let table = match dimension {
                        "status" => "by_status",
                        "category" => "by_category",
                        "kind" => "by_kind",
                        "grade" => "by_grade",
                        "satisfaction" => "satisfaction",
                        "channel" => "by_channel",
                        "resolution" => "resolution",
                        "accepted" => "accepted",
                        "replied" => "replied",
                        "answered" => "answered",
                        _ => continue,
                    };
                    *by.entry(table)
                        .or_default()
                        .entry(value.to_string())
                        .or_default() += count;
                }
                None => *totals.entry(figure.as_str()).or_default() += count,
            }
        }
        let mut office = json!({"code": row.office});
        for figure in ROW_FIGURES {
            office[figure] = json!(count(figure));
        }
        office["rates"] = rates_json(&row_counts(row));
        offices.push(office);
    }
    let as_of: BTreeMap<&String, String> = reply
        .as_of_ms
        .iter()
        .map(|(child, ms)| (child, format_rfc3339(*ms)))
        .collect();
    let mut json = json!({
        "as": as_office,
        "total": totals.get("total").copied().unwrap_or(0),
        "overdue": totals.get("overdue").copied().unwrap_or(0),
        "backlog": totals.get("backlog").copied().unwrap_or(0),
        "breached": totals.get("breached").copied().unwrap_or(0),
        "warned": totals.get("warned").copied().unwrap_or(0),
        "skip_level": totals.get("skip_level").copied().unwrap_or(0),
        "offices": offices,
        "as_of": as_of,
    });
    for table in [
        "by_status",
        "by_level",
        "by_category",
        "by_kind",
        "by_grade",
        "satisfaction",
        "by_channel",
        "resolution",
        "accepted",
        "replied",
        "answered",
    ] {
        json[table] = json!(by.get(table).cloned().unwrap_or_default());
    }
    json["rates"] = rates_json(&subtree_counts(reply));
    json
}

/// The figures each office's row shows besides its rates.
const ROW_FIGURES: [&str; 6] = [
    "total",
    "overdue",
    "backlog",
    "breached",
    "warned",
    "skip_level",
];

/// One office's counters as a map.
fn row_counts(row: &federation_proto::v1::OfficeFigures) -> BTreeMap<String, u64> {
    row.counts
        .iter()
        .map(|(figure, count)| (figure.clone(), *count))
        .collect()
}

/// The sum of every office's counters: the subtree's row.
fn subtree_counts(reply: &federation_proto::v1::StatsReply) -> BTreeMap<String, u64> {
    let mut sum: BTreeMap<String, u64> = BTreeMap::new();
    for row in &reply.offices {
        for (figure, count) in &row.counts {
            *sum.entry(figure.clone()).or_default() += count;
        }
    }
    sum
}

/// A rate as JSON: its parts and its value (null when there is nothing to divide by).
fn rate_json(rate: liandong_domain::figures::Rate) -> Value {
    json!({"part": rate.part, "whole": rate.whole, "rate": rate.value()})
}

/// Every rate of a row of counters, with its formula's parts.
pub fn rates_json(counts: &BTreeMap<String, u64>) -> Value {
    let rates = liandong_domain::figures::Rates::of(counts);
    json!({
        "acceptance_in_time": rate_json(rates.acceptance_in_time),
        "reply_on_time": rate_json(rates.reply_on_time),
        "skip_level": rate_json(rates.skip_level),
        "review": rate_json(rates.review),
        "re_review": rate_json(rates.re_review),
        "satisfaction": rate_json(rates.satisfaction),
        "overdue": rate_json(rates.overdue),
    })
}

/// `stats --scorecard`: the subtree's offices ranked by the scorecard formula, best first (an
/// office with no term to score last), each term with its weight and value.
pub fn scorecard_report(
    as_office: &str,
    reply: &federation_proto::v1::StatsReply,
) -> crate::commands::Report {
    use liandong_domain::figures::{score, Rates, SCORE_FORMULA, SCORE_WEIGHTS};
    let mut scored: Vec<(String, liandong_domain::figures::Score)> = reply
        .offices
        .iter()
        .filter(|row| row.counts.get("total").copied().unwrap_or(0) > 0)
        .map(|row| (row.office.clone(), score(&Rates::of(&row_counts(row)))))
        .collect();
    scored.sort_by(|a, b| {
        let key = |s: &Option<f64>| s.unwrap_or(f64::NEG_INFINITY);
        key(&b.1.score)
            .total_cmp(&key(&a.1.score))
            .then_with(|| a.0.cmp(&b.0))
    });
    let mut lines = vec![format!("scorecard of {as_office}: {SCORE_FORMULA}")];
    let mut offices = Vec::new();
    for (rank, (office, card)) in (1..).zip(&scored) {
        let terms: serde_json::Map<String, Value> = card
            .terms
            .iter()
            .map(|(name, weight, value)| {
                (name.to_string(), json!({"weight": weight, "value": value}))
            })
            .collect();
        let shown: Vec<String> = card
            .terms
            .iter()
            .map(|(name, weight, value)| match value {
                Some(value) => format!("{name} {value:.3}×{weight}"),
                None => format!("{name} -"),
            })
            .collect();
        lines.push(format!(
            "{rank}. {office}: {} ({})",
            card.score
                .map_or_else(|| "no score".to_string(), |s| format!("{s:.1}")),
            shown.join(", ")
        ));
        offices.push(json!({
            "rank": rank,
            "office": office,
            "score": card.score,
            "terms": terms,
        }));
    }
    let weights: serde_json::Map<String, Value> = SCORE_WEIGHTS
        .iter()
        .map(|(name, weight)| (name.to_string(), json!(weight)))
        .collect();
    let json = json!({
        "as": as_office,
        "formula": SCORE_FORMULA,
        "weights": weights,
        "offices": offices,
    });
    crate::commands::Report::new(json, lines.join("\n"))
}

/// `stats --trend`: the subtree's per-day counters summed into buckets of the period.
pub fn trend_report(
    as_office: &str,
    reply: &federation_proto::v1::StatsReply,
    period: liandong_domain::figures::Period,
    from: liandong_domain::Date,
    to: liandong_domain::Date,
) -> anyhow::Result<crate::commands::Report> {
    use liandong_domain::figures::{day_name, parse_day_figure, trend, TREND_MEASURES};
    let mut by_day = Vec::new();
    for row in &reply.offices {
        for (figure, count) in &row.counts {
            if let Some((day, measure)) = parse_day_figure(figure) {
                by_day.push((day, measure.to_string(), *count));
            }
        }
    }
    let buckets = trend(&by_day, period, from, to).map_err(|e| anyhow::anyhow!(e))?;
    let mut lines = vec![format!(
        "trend of {as_office} from {} to {}: bucket {}",
        day_name(from),
        day_name(to),
        TREND_MEASURES.join(" ")
    )];
    let rows: Vec<Value> = buckets
        .iter()
        .map(|(name, counts)| {
            let count = |m: &str| counts.get(m).copied().unwrap_or(0);
            lines.push(format!(
                "{name} {}",
                TREND_MEASURES
                    .iter()
                    .map(|m| count(m).to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            let mut row = json!({"bucket": name});
            for measure in TREND_MEASURES {
                row[measure] = json!(count(measure));
            }
            row
        })
        .collect();
    let json = json!({
        "as": as_office,
        "period": format!("{period:?}").to_lowercase(),
        "from": day_name(from),
        "to": day_name(to),
        "buckets": rows,
    });
    Ok(crate::commands::Report::new(json, lines.join("\n")))
}

/// A case summary from an office's index, as `query` prints it.
pub fn summary_json(summary: &federation_proto::v1::IndexUpdate) -> Value {
    json!({
        "case_id": summary.case_id,
        "office": summary.owner,
        "status": summary.status,
        "kind": summary.kind,
        "category": summary.category,
        "petitioner_key": summary.petitioner_key,
        "location": summary.location,
        "overdue": summary.overdue,
        "grade": summary.grade,
        "satisfaction": summary.satisfaction,
        "repeat_of": summary.repeat_of,
        "registered_at": format_rfc3339(summary.registered_ms),
        "changed_at": format_rfc3339(summary.changed_ms),
        "stale": summary.stale,
        "summary_version": summary.summary_version.max(1),
        "channel": summary.channel,
        "due_at": summary.due_ms.map(format_rfc3339),
        "accepted_at": summary.accepted_ms.map(format_rfc3339),
        "replied_at": summary.replied_ms.map(format_rfc3339),
        "accepted_in_time": summary.accepted_in_time,
        "replied_on_time": summary.replied_on_time,
        "warned": summary.warned,
        "overdue_at": summary.overdue_ms.map(format_rfc3339),
        "opinion": summary.opinion,
        "skip_level": summary.skip_level,
    })
}

/// `text` without terminal colour codes (`ESC [ ... m`), which the hosts' logs carry.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for skipped in chars.by_ref() {
                if skipped == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_cell_names_messages_refused_on_admission_beside_the_waiting_ones() {
        let office = json!({"links": [
            {"to": "5306", "pending": 3, "oldest_age_ms": 4_000, "unadmitted": 0},
            {"to": "530602001", "pending": 0, "oldest_age_ms": 0, "unadmitted": 2,
             "last_unadmitted": {"seq": 812, "kind": "anchor", "code": "unknown_message_kind"}},
        ]});
        let cell = outbox_cell(&office);
        assert!(cell.starts_with("3 to 5306 (oldest "), "{cell}");
        assert!(
            cell.ends_with("; 2 REFUSED by 530602001 (anchor unknown_message_kind)"),
            "{cell}"
        );
        let refused_only = json!({"links": [office["links"][1].clone()]});
        assert_eq!(
            outbox_cell(&refused_only),
            "-; 2 REFUSED by 530602001 (anchor unknown_message_kind)"
        );
        assert_eq!(outbox_cell(&json!({"links": []})), "-");
    }
}

//! How the command line shows things: the JSON documents of docs/commands.md and their
//! readable text.

use federation_proto::v1::StatusReply;
use liandong_domain::{format_rfc3339, Case, Millis};
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

pub fn status_json(
    federation: &Federation,
    statuses: &[(HostEntry, Option<StatusReply>)],
) -> Value {
    let offices: Vec<Value> = federation
        .manifest
        .offices
        .iter()
        .map(|office| {
            let mut term = 0;
            let mut outbox_pending = 0;
            let mut outbox_oldest_ms = 0;
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
            let replicas: Vec<Value> = office
                .members
                .iter()
                .map(|member| {
                    let reported = statuses
                        .iter()
                        .find(|(host, _)| host.name == member.host)
                        .and_then(|(_, reply)| reply.as_ref())
                        .and_then(|reply| reply.replicas.iter().find(|r| r.office == office.code));
                    if let Some(replica) = reported {
                        term = term.max(replica.term);
                        if replica.state == "Leader" {
                            outbox_pending = replica.outbox_pending;
                            outbox_oldest_ms = replica.outbox_oldest_ms;
                        }
                    }
                    json!({
                        "id": member.id,
                        "host": member.host,
                        "alive": reported.is_some(),
                        "state": reported.map(|r| r.state.clone()),
                        "last_applied": reported.map(|r| r.last_applied),
                        "state_hash": reported.map(|r| r.state_hash.clone()),
                        "cases": reported.map(|r| r.cases),
                        "role": role(member.id),
                    })
                })
                .collect();
            json!({
                "code": office.code,
                "name": office.name,
                "level": office.level,
                "parent": office.parent,
                "leader": office_leader(statuses, &office.code),
                "term": term,
                "replicas": replicas,
                "outbox_pending": outbox_pending,
                "voters": membership.as_ref().map(|m| m.0.clone()),
                "learners": membership.as_ref().map(|m| m.1.clone()),
                "membership_index": membership.as_ref().map(|m| m.2),
                "outbox_oldest": (outbox_oldest_ms > 0).then(|| format_rfc3339(outbox_oldest_ms)),
            })
        })
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
                "api_addr": host.api_addr,
            })
        })
        .collect();
    json!({"offices": offices, "hosts": hosts})
}

pub fn status_text(status: &Value) -> String {
    let mut lines = Vec::new();
    for office in status["offices"].as_array().into_iter().flatten() {
        let replicas: Vec<String> = office["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let state = r["state"].as_str().unwrap_or("down");
                // Only what differs from a voter is shown: learners and removed replicas.
                let role = match r["role"].as_str() {
                    Some(role @ ("learner" | "removed")) => format!("({role})"),
                    _ => String::new(),
                };
                format!("{}:{}{role}@{}", r["id"], state, r["last_applied"])
            })
            .collect();
        let outbox = match office["outbox_oldest"].as_str() {
            Some(oldest) => format!(" outbox={} (oldest {oldest})", office["outbox_pending"]),
            None => String::new(),
        };
        lines.push(format!(
            "{} {} ({}) leader={} term={} [{}]{outbox}",
            office["code"].as_str().unwrap_or(""),
            office["name"].as_str().unwrap_or(""),
            office["level"].as_str().unwrap_or(""),
            office["leader"],
            office["term"],
            replicas.join(" ")
        ));
    }
    let hosts = status["hosts"].as_array().map(Vec::len).unwrap_or(0);
    let alive = status["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["alive"] == true)
        .count();
    lines.push(format!("hosts: {alive}/{hosts} answering"));
    lines.join("\n")
}

fn time(ms: Option<Millis>) -> Value {
    ms.map(|ms| Value::String(format_rfc3339(ms)))
        .unwrap_or(Value::Null)
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
        "channel": case.channel.as_str(),
        "category": case.category,
        "summary": case.summary,
        "location": case.location.as_ref().map(|l| l.to_string()),
        "petitioner_key": case.petitioner_key,
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
        },
        "overdue": case.overdue,
        "history_start": case.history_start.entries,
        "history": history,
    })
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
    })
}

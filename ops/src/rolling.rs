//! `liandong rolling-restart [--office CODE]`: every host (or every host of one office) restarted
//! one at a time while officers keep working (docs/operations.md, "Rolling restart").
//!
//! For each host in turn: check that every office it carries keeps a live, caught-up majority
//! without it (refuse otherwise, before touching it); move the leadership of each office it leads
//! to a caught-up replica on another host (Membership.Campaign); stop it gracefully and start it
//! again; wait until each of its replicas has applied what its office's leader had committed when
//! the host stopped. Only then the next host.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Args;
use federation_proto::v1::membership_client::MembershipClient;
use federation_proto::v1::{CampaignRequest, ReplicaStatus, StatusReply};
use liandong_node::manifest::{HostEntry, Manifest};
use serde_json::{json, Value};

use crate::client::{status_error, Federation};
use crate::commands::Report;
use crate::layout::Layout;
use crate::process;

/// How far (in log entries) a replica may be behind its leader and still count as caught up
/// for the quorum check and as a target for leadership.
const CAUGHT_UP_ENTRIES: u64 = 64;

#[derive(Args, Debug)]
pub struct RollingArgs {
    /// Only the hosts carrying a replica of this office.
    #[arg(long)]
    pub office: Option<String>,
    /// How long each host may take to come back and catch up.
    #[arg(long, default_value_t = 120)]
    pub timeout_seconds: u64,
}

/// One replica as its host reports it, with the host's name.
fn replicas<'a>(
    statuses: &'a [(HostEntry, Option<StatusReply>)],
    office: &'a str,
) -> impl Iterator<Item = (&'a str, &'a ReplicaStatus)> + 'a {
    statuses.iter().filter_map(move |(host, reply)| {
        reply.as_ref().and_then(|reply| {
            reply
                .replicas
                .iter()
                .find(|r| r.office == office)
                .map(|r| (host.name.as_str(), r))
        })
    })
}

/// The office's leader as reported: (host, replica).
fn leader<'a>(
    statuses: &'a [(HostEntry, Option<StatusReply>)],
    office: &'a str,
) -> Option<(&'a str, &'a ReplicaStatus)> {
    replicas(statuses, office)
        .filter(|(_, r)| r.state == "Leader")
        .max_by_key(|(_, r)| r.term)
}

/// Why stopping `host` now would cost an office it carries its majority, if it would: counted
/// over the leader's voters, a voter is live when its host answers and it is a leader or a
/// follower within [`CAUGHT_UP_ENTRIES`] of the leader.
fn quorum_refusal(
    statuses: &[(HostEntry, Option<StatusReply>)],
    host: &HostEntry,
) -> Option<String> {
    for office in &host.offices {
        let Some((_, lead)) = leader(statuses, office) else {
            return Some(format!("office {office} has no leader"));
        };
        let voters = &lead.voters;
        let live_elsewhere = replicas(statuses, office)
            .filter(|(name, r)| {
                *name != host.name
                    && voters.contains(&r.id)
                    && (r.state == "Leader" || r.state == "Follower")
                    && r.last_applied + CAUGHT_UP_ENTRIES >= lead.last_applied
            })
            .count();
        if live_elsewhere * 2 <= voters.len() {
            return Some(format!(
                "office {office} would keep {live_elsewhere} of {} voters live and caught up",
                voters.len()
            ));
        }
    }
    None
}

/// Moves the leadership of every office `host` leads to a caught-up replica elsewhere; the
/// offices moved.
async fn move_leaders(federation: &Federation, host: &HostEntry) -> anyhow::Result<Vec<Value>> {
    let statuses = federation.statuses().await;
    let mut moved = Vec::new();
    for office in &host.offices {
        let Some((leader_host, lead)) = leader(&statuses, office) else {
            continue;
        };
        if leader_host != host.name {
            continue;
        }
        let mut candidates: Vec<(&str, &ReplicaStatus)> = replicas(&statuses, office)
            .filter(|(name, r)| {
                *name != host.name
                    && lead.voters.contains(&r.id)
                    && r.state == "Follower"
                    && r.last_applied + CAUGHT_UP_ENTRIES >= lead.last_applied
            })
            .collect();
        candidates.sort_by_key(|(_, r)| std::cmp::Reverse(r.last_applied));
        let mut last_error = None;
        let mut to = None;
        for (name, replica) in candidates {
            let Some(addr) = federation.manifest.host(name).map(|h| h.api_addr.clone()) else {
                continue;
            };
            let call = async {
                let channel = crate::client::channel(&addr).await?;
                MembershipClient::new(channel)
                    .campaign(CampaignRequest {
                        office: office.clone(),
                    })
                    .await
            };
            match call.await {
                Ok(_) => {
                    to = Some((name.to_string(), replica.id));
                    break;
                }
                Err(status) => last_error = Some(status_error(&status)),
            }
        }
        match to {
            Some((name, id)) => {
                moved.push(json!({"office": office, "to_host": name, "to_replica": id}))
            }
            // Not fatal: stopping the host gracefully makes the others elect a leader anyway,
            // a little later. The report says so.
            None => moved.push(json!({
                "office": office,
                "to_host": null,
                "error": last_error.map_or("no caught-up replica elsewhere".to_string(), |e| e.to_string()),
            })),
        }
    }
    Ok(moved)
}

/// Waits until `host` answers and each of its replicas has applied `targets` (office → index).
async fn caught_up(
    federation: &Federation,
    host: &HostEntry,
    targets: &[(String, u64)],
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let statuses = federation.statuses().await;
        let reply = statuses
            .iter()
            .find(|(h, _)| h.name == host.name)
            .and_then(|(_, reply)| reply.as_ref());
        let behind: Vec<String> = match reply {
            None => vec!["the host does not answer".to_string()],
            Some(reply) => targets
                .iter()
                .filter(|(office, target)| {
                    !reply.replicas.iter().any(|r| {
                        &r.office == office
                            && r.last_applied >= *target
                            && (r.state == "Leader" || r.state == "Follower")
                    }) || leader(&statuses, office).is_none()
                })
                .map(|(office, target)| format!("{office} (to index {target})"))
                .collect(),
        };
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "host {} did not catch up within {}s: {}",
                host.name,
                limit.as_secs(),
                behind.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn hosts_to_restart(manifest: &Manifest, office: Option<&str>) -> anyhow::Result<Vec<HostEntry>> {
    match office {
        None => Ok(manifest.hosts.clone()),
        Some(code) => {
            let entry = manifest
                .office(code)
                .ok_or_else(|| anyhow!("no office {code} in this federation"))?;
            Ok(manifest
                .hosts
                .iter()
                .filter(|h| entry.members.iter().any(|m| m.host == h.name))
                .cloned()
                .collect())
        }
    }
}

pub async fn rolling_restart(layout: &Layout, args: &RollingArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let hosts = hosts_to_restart(&federation.manifest, args.office.as_deref())?;
    // Refuse before touching anything when a host is already down or an office lacks a
    // majority without one of them.
    let statuses = federation.statuses().await;
    let down: Vec<&str> = statuses
        .iter()
        .filter(|(h, reply)| reply.is_none() && hosts.iter().any(|x| x.name == h.name))
        .map(|(h, _)| h.name.as_str())
        .collect();
    if !down.is_empty() {
        bail!(
            "hosts not answering: {}; start them (liandong up) before a rolling restart: \
             nothing was restarted",
            down.join(", ")
        );
    }
    let limit = Duration::from_secs(args.timeout_seconds);
    let mut restarted = Vec::new();
    for host in &hosts {
        let statuses = federation.statuses().await;
        if let Some(why) = quorum_refusal(&statuses, host) {
            let done: Vec<&str> = restarted
                .iter()
                .filter_map(|r: &Value| r["host"].as_str())
                .collect();
            bail!(
                "restarting host {} now would leave an office without a majority: {why}; \
                 stopped before it (restarted so far: {})",
                host.name,
                if done.is_empty() {
                    "none".to_string()
                } else {
                    done.join(", ")
                }
            );
        }
        let started = Instant::now();
        let moved = move_leaders(&federation, host).await?;
        // What each of its offices has committed now: the replica must apply it after its start.
        let statuses = federation.statuses().await;
        let targets: Vec<(String, u64)> = host
            .offices
            .iter()
            .map(|office| {
                let index = leader(&statuses, office).map_or(0, |(_, r)| r.last_applied);
                (office.clone(), index)
            })
            .collect();
        let old_pid = process::stop_host(layout, &host.name)?;
        let new_pid = process::start_host(layout, &host.name, &[])?;
        caught_up(&federation, host, &targets, limit).await?;
        restarted.push(json!({
            "host": host.name,
            "old_pid": old_pid,
            "pid": new_pid,
            "leaders_moved": moved,
            "took_ms": started.elapsed().as_millis() as u64,
        }));
    }
    let text = {
        let mut lines = vec![format!(
            "{} hosts restarted one at a time; every office kept a majority",
            restarted.len()
        )];
        for r in &restarted {
            lines.push(format!(
                "  {}: {} leaders moved away, back and caught up in {} ms",
                r["host"].as_str().unwrap_or(""),
                r["leaders_moved"].as_array().map_or(0, Vec::len),
                r["took_ms"]
            ));
        }
        lines.join("\n")
    };
    Ok(Report::new(json!({"restarted": restarted}), text))
}

//! `liandong replica add|remove`: membership changes of an office (docs/commands.md).
//!
//! The office's leader does the work (node `api::admin::MembershipService`): adding makes the
//! replica a learner, waits for it to catch up and only then promotes it, so a new voter never
//! counts towards a quorum before it holds the log; removing demotes the voter to a learner, then
//! drops it. The leader refuses a change that would leave fewer than 2 voters or fewer live voters
//! than a majority, and a second change while one runs.
//!
//! Where a replica may go: the manifest places every office's replica slots on hosts, and only
//! those hosts open the office's replica at start and carry a certificate naming the office. So a
//! replica is (re-)added on a host of the manifest that carries a slot of the office (typically
//! one removed earlier); other hosts are refused with the reason.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use federation_proto::v1::membership_client::MembershipClient;
use federation_proto::v1::{AddReplicaRequest, MembershipReply, RemoveReplicaRequest};
use liandong_node::manifest::Manifest;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::client::{status_error, Federation};
use crate::commands::Report;
use crate::layout::Layout;
use crate::view;

#[derive(Subcommand, Debug)]
pub enum ReplicaCommand {
    /// Add a replica to an office's voters: a learner first, promoted once it has caught up.
    Add(AddArgs),
    /// Remove a replica from an office (refused if it would lose quorum).
    Remove(RemoveArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[arg(long)]
    pub office: String,
    /// The host to put it on: a host of the manifest carrying a replica slot of the office.
    /// Default: the first slot that is not a voter now.
    #[arg(long)]
    pub host: Option<String>,
    /// Give up when the learner has not caught up after this many seconds (it is removed
    /// again; the voters stay as they were).
    #[arg(long, default_value_t = 30)]
    pub timeout_seconds: u64,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[arg(long)]
    pub office: String,
    /// The replica's id (1-based, as `liandong status` shows it).
    #[arg(long)]
    pub replica: u64,
}

/// How long the command keeps looking for the office's leader (hosts down, an election).
pub const LEADER_SEARCH_MS: u64 = 15_000;
/// A call may take this much beyond the catch-up time: a few commits, forwarding.
pub const CALL_MARGIN_MS: u64 = 40_000;
/// Pause between rounds over the office's hosts while no leader answers.
pub const RETRY_PAUSE_MS: u64 = 200;
/// The longest catch-up wait one may ask for (the node bounds it too).
pub const TIMEOUT_SECONDS_MAX: u64 = 600;

pub async fn run(layout: &Layout, command: ReplicaCommand) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    match command {
        ReplicaCommand::Add(args) => add(&federation, &args).await,
        ReplicaCommand::Remove(args) => remove(&federation, &args).await,
    }
}

/// The replica slot (id, host) of `office` to add: the one on `host`, or the first that is not
/// one of `voters`. Refuses hosts without a slot of the office, with what would be needed.
pub fn choose_slot(
    manifest: &Manifest,
    office: &str,
    host: Option<&str>,
    voters: &BTreeSet<u64>,
) -> anyhow::Result<(u64, String)> {
    let entry = manifest
        .office(office)
        .ok_or_else(|| anyhow!("no office {office} in this federation"))?;
    let slots = || {
        entry
            .members
            .iter()
            .map(|m| format!("replica {} on {}", m.id, m.host))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(host) = host else {
        let mut free = entry.members.iter().filter(|m| !voters.contains(&m.id));
        return match free.next() {
            Some(member) => Ok((member.id, member.host.clone())),
            None => bail!(
                "every replica slot of office {office} is a voter already ({}); remove one first",
                slots()
            ),
        };
    };
    if manifest.host(host).is_none() {
        bail!("no host {host} in this federation");
    }
    let Some(member) = entry.members.iter().find(|m| m.host == host) else {
        bail!(
            "host {host} carries no replica slot of office {office} ({}): a replica can only be \
             added where the manifest places the office (that host opens the office's replica and \
             its certificate names the office); placing one on another host is not supported",
            slots()
        );
    };
    if voters.contains(&member.id) {
        bail!(
            "replica {} of office {office} on host {host} is a voter already",
            member.id
        );
    }
    Ok((member.id, member.host.clone()))
}

/// The office's voters as its leader reports them (status of every host).
async fn current_voters(federation: &Federation, office: &str) -> anyhow::Result<BTreeSet<u64>> {
    let statuses = federation.statuses().await;
    let leader = view::office_leader(&statuses, office)
        .ok_or_else(|| anyhow!("office {office} has no leader now; try again"))?;
    statuses
        .iter()
        .filter_map(|(_, reply)| reply.as_ref())
        .flat_map(|reply| reply.replicas.iter())
        .filter(|r| r.office == office && r.id == leader && r.state == "Leader")
        .max_by_key(|r| r.term)
        .map(|r| r.voters.iter().copied().collect())
        .ok_or_else(|| anyhow!("office {office}: its leader did not report its membership"))
}

/// Calls `call` on the Membership service of `office`'s hosts until one answers with something
/// other than UNAVAILABLE (which the node returns only before it changed anything: no leader
/// known, leader unreachable), giving each call `limit`.
async fn membership_call<F, Fut>(
    federation: &Federation,
    office: &str,
    limit: Duration,
    call: F,
) -> Result<MembershipReply, Status>
where
    F: Fn(MembershipClient<Channel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<MembershipReply>, Status>>,
{
    let entry = federation
        .manifest
        .office(office)
        .ok_or_else(|| Status::not_found(format!("no office {office} in this federation")))?;
    let addrs: Vec<String> = entry
        .members
        .iter()
        .filter_map(|m| federation.manifest.host(&m.host))
        .map(|h| h.api_addr.clone())
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(LEADER_SEARCH_MS);
    let mut last = Status::unavailable(format!("office {office} has no hosts"));
    loop {
        for addr in &addrs {
            let attempt = async {
                let channel = crate::client::channel(addr).await?;
                call(MembershipClient::new(channel)).await
            };
            match tokio::time::timeout(limit, attempt).await {
                Ok(Ok(reply)) => return Ok(reply.into_inner()),
                Ok(Err(status)) if status.code() == Code::Unavailable => last = status,
                Ok(Err(status)) => return Err(status),
                Err(_elapsed) => {
                    return Err(Status::deadline_exceeded(format!(
                        "{addr} did not answer within {} s; `liandong status` shows the membership",
                        limit.as_secs()
                    )))
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
    }
}

async fn add(federation: &Federation, args: &AddArgs) -> anyhow::Result<Report> {
    if args.timeout_seconds == 0 || args.timeout_seconds > TIMEOUT_SECONDS_MAX {
        bail!("--timeout-seconds must be 1 to {TIMEOUT_SECONDS_MAX}");
    }
    federation
        .manifest
        .office(&args.office)
        .ok_or_else(|| anyhow!("no office {} in this federation", args.office))?;
    // Only the automatic choice needs the current voters; a named host is checked by the leader.
    let voters = match &args.host {
        Some(_) => BTreeSet::new(),
        None => current_voters(federation, &args.office).await?,
    };
    let (replica, host) = choose_slot(
        &federation.manifest,
        &args.office,
        args.host.as_deref(),
        &voters,
    )?;
    let request = AddReplicaRequest {
        office: args.office.clone(),
        replica,
        catch_up_timeout_ms: args.timeout_seconds * 1_000,
        hops: 0,
    };
    let limit = Duration::from_secs(args.timeout_seconds) + Duration::from_millis(CALL_MARGIN_MS);
    let reply = membership_call(federation, &args.office, limit, |mut client| {
        let request = request.clone();
        async move { client.add_replica(request).await }
    })
    .await
    .map_err(|s| status_error(&s))?;
    Ok(report("add", replica, &host, &reply))
}

async fn remove(federation: &Federation, args: &RemoveArgs) -> anyhow::Result<Report> {
    federation
        .manifest
        .office(&args.office)
        .ok_or_else(|| anyhow!("no office {} in this federation", args.office))?;
    let host = federation
        .manifest
        .member_host(&args.office, args.replica)
        .map(|h| h.name.clone())
        .unwrap_or_default();
    let request = RemoveReplicaRequest {
        office: args.office.clone(),
        replica: args.replica,
        hops: 0,
    };
    let limit = Duration::from_millis(CALL_MARGIN_MS);
    let call = |mut client: MembershipClient<Channel>| {
        let request = request.clone();
        async move { client.remove_replica(request).await }
    };
    let reply = membership_call(federation, &args.office, limit, call)
        .await
        .map_err(|s| status_error(&s))?;
    Ok(report("remove", args.replica, &host, &reply))
}

fn report(action: &str, replica: u64, host: &str, reply: &MembershipReply) -> Report {
    let list = |ids: &[u64]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
        }
    };
    let json: Value = json!({
        "office": reply.office,
        "action": action,
        "replica": replica,
        "host": host,
        "changed": reply.changed,
        "voters": reply.voters,
        "learners": reply.learners,
        "leader": reply.leader,
        "membership_log_index": reply.log_index,
        "catch_up_ms": (action == "add").then_some(reply.catch_up_ms),
        "steps": reply.steps,
    });
    let mut lines = vec![format!(
        "office {}: replica {replica} ({host}) {}; voters {}, learners {} (membership at log index {})",
        reply.office,
        if action == "add" { "added" } else { "removed" },
        list(&reply.voters),
        list(&reply.learners),
        reply.log_index
    )];
    lines.extend(reply.steps.iter().map(|step| format!("  {step}")));
    Report {
        json,
        text: lines.join("\n"),
        ok: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liandong_node::manifest::{HostEntry, Member, OfficeEntry, MANIFEST_VERSION};

    fn manifest() -> Manifest {
        let host = |name: &str, port: u16, offices: &[&str]| HostEntry {
            name: name.into(),
            raft_addr: format!("127.0.0.1:{port}"),
            api_addr: format!("127.0.0.1:{}", port + 1),
            metrics_addr: format!("127.0.0.1:{}", port + 2),
            http_addr: None,
            offices: offices.iter().map(|s| s.to_string()).collect(),
            site: None,
        };
        let members = |hosts: &[&str]| {
            hosts
                .iter()
                .enumerate()
                .map(|(i, h)| Member {
                    id: i as u64 + 1,
                    host: h.to_string(),
                })
                .collect()
        };
        Manifest {
            version: MANIFEST_VERSION,
            region: "5306".into(),
            replicas: 3,
            time_scale: 1.0,
            clock_origin_ms: 0,
            secret_hex: "ab".repeat(32),
            sms_gateway: None,
            hotline_callback: None,
            generation: 0,
            offices: vec![
                OfficeEntry {
                    code: "5306".into(),
                    name: "city".into(),
                    level: "City".into(),
                    parent: None,
                    members: members(&["a", "b", "c"]),
                },
                OfficeEntry {
                    code: "530602".into(),
                    name: "county".into(),
                    level: "County".into(),
                    parent: Some("5306".into()),
                    members: members(&["d", "e", "f"]),
                },
            ],
            hosts: vec![
                host("a", 7000, &["5306"]),
                host("b", 7003, &["5306"]),
                host("c", 7006, &["5306"]),
                host("d", 7009, &["530602"]),
                host("e", 7012, &["530602"]),
                host("f", 7015, &["530602"]),
            ],
        }
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_removed_slot_is_chosen_by_default_or_by_its_host() {
        let m = manifest();
        m.validate().unwrap();
        let voters = set(&[1, 3]);
        assert_eq!(
            choose_slot(&m, "5306", None, &voters).unwrap(),
            (2, "b".into())
        );
        assert_eq!(
            choose_slot(&m, "5306", Some("b"), &voters).unwrap(),
            (2, "b".into())
        );
    }

    #[test]
    fn hosts_without_a_slot_of_the_office_are_refused_with_the_reason() {
        let m = manifest();
        let error = choose_slot(&m, "5306", Some("d"), &set(&[1, 3]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("carries no replica slot") && error.contains("not supported"),
            "{error}"
        );
        let error = choose_slot(&m, "5306", Some("zz"), &set(&[1])).unwrap_err();
        assert!(error.to_string().contains("no host zz"), "{error}");
        let error = choose_slot(&m, "5399", None, &set(&[])).unwrap_err();
        assert!(error.to_string().contains("no office 5399"), "{error}");
    }

    #[test]
    fn voters_are_not_added_again() {
        let m = manifest();
        let error = choose_slot(&m, "5306", Some("a"), &set(&[1, 2, 3])).unwrap_err();
        assert!(error.to_string().contains("a voter already"), "{error}");
        let error = choose_slot(&m, "5306", None, &set(&[1, 2, 3])).unwrap_err();
        assert!(error.to_string().contains("every replica slot"), "{error}");
    }
}

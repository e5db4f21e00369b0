//! What each `liandong` command does. Every command returns a [`Report`]: the JSON document for
//! `--json` and the readable text otherwise.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use federation_proto::v1::{
    self, case_command, ActRequest, CaseReply, Consistency, FileRequest, ShowRequest,
};
use liandong_domain::Case;
use liandong_node::manifest::{HostConfig, Manifest};
use serde_json::{json, Value};

use crate::cli::*;
use crate::client::{status_error, Federation};
use crate::layout::Layout;
use crate::process;
use crate::topology::{build_manifest, InitOptions, Topology};
use crate::view;

pub struct Report {
    pub json: Value,
    pub text: String,
}

impl Report {
    fn new(json: Value, text: impl Into<String>) -> Report {
        Report {
            json,
            text: text.into(),
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<Report> {
    let layout = Layout::new(&cli.dir);
    match cli.command {
        Command::Federation(FederationCommand::Init(args)) => init(&layout, &args),
        Command::Up(args) => up(&layout, &args).await,
        Command::Down => down(&layout),
        Command::Status => status(&layout).await,
        Command::Case(command) => case(&layout, command).await,
        Command::Drill(command) => drill(&layout, command).await,
        Command::Node(args) => {
            liandong_node::host::run(&args.config, liandong_node::host::terminated()).await?;
            Ok(Report::new(json!({"stopped": true}), "host stopped"))
        }
    }
}

fn init(layout: &Layout, args: &InitArgs) -> anyhow::Result<Report> {
    if layout.manifest().exists() && !args.force {
        bail!(
            "a federation already exists at {} (use another --dir, or --force)",
            layout.root().display()
        );
    }
    let secret: [u8; 32] = rand::random();
    let options = InitOptions {
        region: args.region.clone(),
        max_children: args.max_children,
        replicas: args.replicas,
        time_scale: args.time_scale,
        base_port: args.base_port,
        secret_hex: hex::encode(secret),
    };
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        bail!(
            "--time-scale must be a positive number, not {}",
            args.time_scale
        );
    }
    let mut manifest = build_manifest(&Topology::load(), &options)?;
    manifest.clock_origin_ms = liandong_node::clock::wall_ms();
    std::fs::create_dir_all(layout.root().join("hosts"))?;
    std::fs::create_dir_all(layout.run_dir())?;
    let root = std::fs::canonicalize(layout.root())?;
    let layout = Layout::new(&root);
    manifest.save(&layout.manifest())?;
    for host in &manifest.hosts {
        let config = HostConfig {
            host: host.name.clone(),
            manifest: layout.manifest(),
            data_dir: layout.data_dir(&host.name),
            log_dir: layout.run_dir(),
            log_level: "info".to_string(),
        };
        config.save(&layout.host_config(&host.name))?;
    }
    let json = json!({
        "dir": root.display().to_string(),
        "region": manifest.region,
        "offices": manifest.offices.len(),
        "hosts": manifest.hosts.len(),
        "replicas": manifest.replicas,
    });
    let root_office = manifest
        .offices
        .first()
        .map(|o| format!("{} {}", o.code, o.name))
        .unwrap_or_default();
    let text = format!(
        "federation for {root_office}: {} offices, {} hosts, {} replicas each, in {}",
        manifest.offices.len(),
        manifest.hosts.len(),
        manifest.replicas,
        root.display()
    );
    Ok(Report::new(json, text))
}

async fn up(layout: &Layout, args: &UpArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let mut started = Vec::new();
    for host in &federation.manifest.hosts {
        let pid = process::start_host(layout, &host.name, &[])?;
        started.push(json!({"name": host.name, "pid": pid}));
    }
    let missing = wait_for_leaders(&federation, Duration::from_secs(args.timeout_seconds)).await;
    if !missing.is_empty() {
        bail!(
            "no leader after {}s for offices {} (logs in {})",
            args.timeout_seconds,
            missing.join(", "),
            layout.run_dir().display()
        );
    }
    let offices = federation.manifest.offices.len();
    Ok(Report::new(
        json!({"hosts": started, "offices": offices}),
        format!(
            "{} hosts up; all {offices} offices have a leader",
            started.len()
        ),
    ))
}

/// Offices still without a leader when `limit` ran out (empty: all have one).
pub async fn wait_for_leaders(federation: &Federation, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let statuses = federation.statuses().await;
        let missing: Vec<String> = federation
            .manifest
            .offices
            .iter()
            .filter(|office| view::office_leader(&statuses, &office.code).is_none())
            .map(|office| office.code.clone())
            .collect();
        if missing.is_empty() || start.elapsed() >= limit {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn down(layout: &Layout) -> anyhow::Result<Report> {
    let manifest = layout.load_manifest()?;
    let mut stopped = Vec::new();
    for host in &manifest.hosts {
        if let Some(pid) = process::stop_host(layout, &host.name)? {
            stopped.push(json!({"name": host.name, "pid": pid}));
        }
    }
    Ok(Report::new(
        json!({"stopped": stopped}),
        format!("{} hosts stopped", stopped.len()),
    ))
}

async fn status(layout: &Layout) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let statuses = federation.statuses().await;
    let json = view::status_json(&federation, &statuses);
    let text = view::status_text(&json);
    Ok(Report::new(json, text))
}

fn request_id() -> String {
    let bytes: [u8; 12] = rand::random();
    hex::encode(bytes)
}

async fn case(layout: &Layout, command: CaseCommand) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let reply = match command {
        CaseCommand::File(args) => {
            let office = args.office.clone();
            let request = FileRequest {
                office: args.office,
                registration: Some(v1::Registration {
                    channel: args.channel,
                    petitioner_id: args.petitioner_id,
                    name: args.name,
                    phone: args.phone,
                    category: args.category,
                    summary: args.summary,
                    location: args.location,
                    officer: args.officer,
                }),
                hops: 0,
                request_id: args.request_id.unwrap_or_else(request_id),
            };
            federation
                .office_call(&office, |mut client| {
                    let request = request.clone();
                    async move { client.file(request).await.map(|r| r.into_inner()) }
                })
                .await
        }
        CaseCommand::Show(args) => return show(&federation, &args).await,
        CaseCommand::Accept(args) => {
            act(
                &federation,
                &args.case_id,
                case_command::Command::Accept(v1::Accept {
                    officer: args.officer,
                }),
            )
            .await
        }
        CaseCommand::Decline(args) => {
            let command = v1::Decline {
                route: args.route,
                officer: args.officer,
            };
            act(
                &federation,
                &args.case_id,
                case_command::Command::Decline(command),
            )
            .await
        }
        CaseCommand::Extend(args) => {
            let command = v1::Extend {
                days: args.days,
                reason: args.reason,
                officer: args.officer,
            };
            act(
                &federation,
                &args.case_id,
                case_command::Command::Extend(command),
            )
            .await
        }
        CaseCommand::Reply(args) => {
            let command = v1::Reply {
                opinion: args.opinion,
                text: args.text,
                officer: args.officer,
            };
            act(
                &federation,
                &args.case_id,
                case_command::Command::Reply(command),
            )
            .await
        }
        CaseCommand::Evaluate(args) => {
            let command = v1::Evaluate {
                satisfaction: args.satisfaction,
            };
            act(
                &federation,
                &args.case_id,
                case_command::Command::Evaluate(command),
            )
            .await
        }
        CaseCommand::Grade(args) => {
            let deadline_ms = liandong_domain::parse_rfc3339(&args.deadline)
                .map_err(|e| anyhow!("--deadline {:?}: {e}", args.deadline))?;
            let command = v1::SetGrade {
                grade: args.grade,
                leader: args.leader,
                department: args.department,
                plan: args.plan,
                deadline_ms,
            };
            act(
                &federation,
                &args.case_id,
                case_command::Command::SetGrade(command),
            )
            .await
        }
    };
    case_report(reply.map_err(|status| status_error(&status))?)
}

fn case_report(reply: CaseReply) -> anyhow::Result<Report> {
    let case = Case::from_bytes(&reply.case_document)
        .map_err(|e| anyhow!("the office sent a bad case document: {e}"))?;
    Ok(Report::new(view::case_json(&case), view::case_text(&case)))
}

fn office_of(case_id: &str) -> anyhow::Result<String> {
    let id: liandong_domain::CaseId = case_id
        .parse()
        .map_err(|e| anyhow!("bad case id {case_id:?}: {e}"))?;
    Ok(id.office.to_string())
}

async fn act(
    federation: &Federation,
    case_id: &str,
    command: case_command::Command,
) -> Result<CaseReply, tonic::Status> {
    let office = office_of(case_id).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
    let request = ActRequest {
        case_id: case_id.to_string(),
        command: Some(v1::CaseCommand {
            command: Some(command),
        }),
        hops: 0,
        request_id: request_id(),
    };
    federation
        .office_call(&office, |mut client| {
            let request = request.clone();
            async move { client.act(request).await.map(|r| r.into_inner()) }
        })
        .await
}

async fn show(federation: &Federation, args: &ShowArgs) -> anyhow::Result<Report> {
    let office = office_of(&args.case_id)?;
    let request = ShowRequest {
        case_id: args.case_id.clone(),
        consistency: if args.replica.is_some() {
            Consistency::Local
        } else {
            Consistency::Linearizable
        } as i32,
        hops: 0,
    };
    let reply = match args.replica {
        Some(replica) => {
            let host = member_host(&federation.manifest, &office, replica)?;
            let channel = crate::client::channel(&host)
                .await
                .map_err(|s| status_error(&s))?;
            let mut client = federation_proto::v1::cases_client::CasesClient::new(channel);
            client.show(request).await.map(|r| r.into_inner())
        }
        None => {
            federation
                .office_call(&office, |mut client| {
                    let request = request.clone();
                    async move { client.show(request).await.map(|r| r.into_inner()) }
                })
                .await
        }
    };
    case_report(reply.map_err(|status| status_error(&status))?)
}

fn member_host(manifest: &Manifest, office: &str, replica: u64) -> anyhow::Result<String> {
    manifest
        .member_host(office, replica)
        .map(|host| host.api_addr.clone())
        .ok_or_else(|| anyhow!("office {office} has no replica {replica}"))
}

async fn drill(layout: &Layout, command: DrillCommand) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let (verb, target) = match &command {
        DrillCommand::Kill(target) => ("kill", target),
        DrillCommand::Restart(target) => ("restart", target),
        DrillCommand::Pause(target) => ("pause", target),
        DrillCommand::Resume(target) => ("resume", target),
    };
    let hosts = drill_hosts(&federation, target, verb).await?;
    let mut done = Vec::new();
    for (replica, host) in hosts {
        let pid = match verb {
            "kill" => process::kill_host(layout, &host)?,
            "restart" => Some(process::start_host(layout, &host, &[])?),
            "pause" => signal_host(layout, &host, libc::SIGSTOP)?,
            _ => signal_host(layout, &host, libc::SIGCONT)?,
        };
        done.push(json!({"replica": replica, "host": host, "pid": pid}));
    }
    let text = done
        .iter()
        .map(|d| {
            format!(
                "{verb}: office {} replica {} on host {}",
                target.office,
                d["replica"],
                d["host"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Report::new(
        json!({"drill": verb, "office": target.office, "targets": done}),
        text,
    ))
}

fn signal_host(layout: &Layout, host: &str, signal: i32) -> anyhow::Result<Option<i32>> {
    let Some(pid) = process::running_pid(layout, host) else {
        return Ok(None);
    };
    process::signal(pid, signal)?;
    Ok(Some(pid))
}

/// Which (replica, host) pairs a drill acts on.
async fn drill_hosts(
    federation: &Federation,
    target: &DrillTarget,
    verb: &str,
) -> anyhow::Result<Vec<(u64, String)>> {
    let members = process::office_hosts(&federation.manifest, &target.office)?;
    if let Some(replica) = target.replica {
        let pair = members.into_iter().find(|(id, _)| *id == replica);
        return pair
            .map(|p| vec![p])
            .ok_or_else(|| anyhow!("office {} has no replica {replica}", target.office));
    }
    if target.leader {
        let statuses = federation.statuses().await;
        let leader = view::office_leader(&statuses, &target.office)
            .with_context(|| format!("office {} has no leader now", target.office))?;
        return Ok(members
            .into_iter()
            .filter(|(id, _)| *id == leader)
            .collect());
    }
    match verb {
        "restart" | "resume" => Ok(members),
        _ => bail!("say which replica: --leader or --replica N"),
    }
}

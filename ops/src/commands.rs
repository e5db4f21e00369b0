//! What each `liandong` command does. Every command returns a [`Report`]: the JSON document for
//! `--json` and the readable text otherwise.

use std::collections::BTreeMap;
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
    /// False when the command ran but found a problem (a failed invariant): exit non-zero.
    pub ok: bool,
}

impl Report {
    pub fn new(json: Value, text: impl Into<String>) -> Report {
        Report {
            json,
            text: text.into(),
            ok: true,
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<Report> {
    let layout = Layout::new(&cli.dir).with_token_file(cli.token_file.clone());
    let json = cli.json;
    match cli.command {
        Command::Federation(FederationCommand::Init(args)) => match &args.inventory {
            Some(inventory) => crate::site_cmd::init(&layout, &args, inventory),
            None => init(&layout, &args),
        },
        Command::Federation(FederationCommand::Bundle(args)) => {
            crate::site_cmd::bundle(&layout, &args)
        }
        Command::Federation(FederationCommand::AddOffice(args)) => {
            crate::site_cmd::add_office(&layout, &args).await
        }
        Command::Up(args) => up(&layout, &args).await,
        Command::Down => down(&layout),
        Command::Status => status(&layout).await,
        Command::Case(command) => case(&layout, command).await,
        Command::Drill(command) => drill(&layout, command).await,
        Command::Supervise(args) => supervise(&layout, &args).await,
        Command::Orders(args) => orders(&layout, &args).await,
        Command::Query(args) => query(&layout, &args).await,
        Command::Stats(args) => stats(&layout, &args).await,
        Command::Replica(command) => crate::replica_cmd::run(&layout, command).await,
        Command::Snapshot(command) => crate::snapshot_cmd::run(&layout, command).await,
        Command::Cert(command) => crate::cert_cmd::run(&layout, command).await,
        Command::RollingRestart(args) => crate::rolling::rolling_restart(&layout, &args).await,
        Command::Verify(args) => {
            crate::verify::verify(&Federation::open(layout.clone())?, &args).await
        }
        Command::Login(args) => crate::people::login(&layout, &args).await,
        Command::Logout => crate::people::logout(&layout),
        Command::Officer(command) => crate::people::officer(&layout, command).await,
        Command::Audit(args) => crate::people::audit(&layout, &args).await,
        Command::Logs(args) => crate::logs_cmd::logs(&layout, &args, json).await,
        Command::Department(command) => crate::desk_cmd::department(&layout, command).await,
        Command::Meeting(command) => crate::desk_cmd::meeting(&layout, command).await,
        Command::IntakePoint(command) => crate::desk_cmd::intake_point(&layout, command).await,
        Command::Proxy(command) => crate::desk_cmd::proxy(&layout, command).await,
        Command::Session(command) => crate::session_cmd::run(&layout, command).await,
        Command::Notice(command) => crate::notice_cmd::policy(&layout, command).await,
        Command::Notices(args) => crate::notice_cmd::notices(&layout, args).await,
        Command::RedCards(args) => crate::notice_cmd::red_cards(&layout, args).await,
        Command::Report(crate::report_cmd::ReportCommand::List(args)) => {
            crate::report_cmd::list(&layout, args).await
        }
        Command::Report(crate::report_cmd::ReportCommand::Show(args)) => {
            crate::report_cmd::show(&layout, args).await
        }
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
    let options = InitOptions {
        region: args.region.clone().unwrap_or_default(),
        max_children: args.max_children,
        replicas: args.replicas,
        time_scale: args.time_scale,
        base_port: args.base_port,
        // The petitioner-key secret lives in its own 0600 file (`secrets/petitioner.key`).
        secret_hex: String::new(),
    };
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        bail!(
            "--time-scale must be a positive number, not {}",
            args.time_scale
        );
    }
    // A federation made again (--force) keeps its petitioner-key secret, even one that an older
    // build kept in the manifest.
    let previous_secret = layout
        .load_manifest()
        .map(|m| m.secret_hex)
        .unwrap_or_default();
    let mut manifest = build_manifest(&Topology::load(), &options)?;
    manifest.clock_origin_ms = liandong_node::clock::wall_ms();
    manifest.sms_gateway = args
        .sms_gateway
        .as_deref()
        .map(|spec| gateway("--sms-gateway", spec))
        .transpose()?;
    manifest.hotline_callback = args
        .hotline_callback
        .as_deref()
        .map(|spec| gateway("--hotline-callback", spec))
        .transpose()?;
    std::fs::create_dir_all(layout.root().join("hosts"))?;
    std::fs::create_dir_all(layout.run_dir())?;
    let root = std::fs::canonicalize(layout.root())?;
    let layout = Layout::new(&root);
    manifest.save(&layout.manifest())?;
    // A province takes a while: how far it is, on stderr (stdout stays the report).
    let started = std::time::Instant::now();
    issue_certificates(&layout, &manifest)?;
    let codes: Vec<String> = manifest.offices.iter().map(|o| o.code.clone()).collect();
    let mut progress = crate::progress::Progress::new(
        "federation init: offices' keys and admin passwords".to_string(),
        codes.len() as u64,
        false,
    );
    layout
        .secrets()
        .generate_with(&codes, &previous_secret, |done| progress.at(done as u64))?;
    progress.done();
    layout.publish_office_keys(&codes)?;
    progress.summary(&format!(
        "federation init: {} offices' keys and admin passwords, {} certificates in {:.1} s",
        codes.len(),
        manifest.hosts.len() + 1,
        started.elapsed().as_secs_f64()
    ));
    liandong_node::secrets::private_dir(&layout.root().join("data"))?;
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
        "sms_gateway": manifest.sms_gateway,
        "hotline_callback": manifest.hotline_callback,
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

/// A gateway flag (`--sms-gateway`, `--hotline-callback`) checked, a relative file path made
/// absolute (the hosts run elsewhere).
pub fn gateway(flag: &str, spec: &str) -> anyhow::Result<String> {
    let spec = match spec.strip_prefix("file:") {
        Some(path) if !path.is_empty() && !std::path::Path::new(path).is_absolute() => {
            format!("file:{}", std::env::current_dir()?.join(path).display())
        }
        _ => spec.to_string(),
    };
    liandong_node::notify::GatewaySpec::parse(&spec)
        .map_err(|error| anyhow::anyhow!("{flag}: {error}"))?;
    Ok(spec)
}

/// The federation CA and one certificate per host naming the offices it carries, plus the
/// command line's own (an operator certificate for the root office), all under `DIR/pki/`.
fn issue_certificates(layout: &Layout, manifest: &Manifest) -> anyhow::Result<()> {
    use liandong_node::tls::Pki;
    let dir = liandong_node::host::pki_dir(&layout.manifest());
    let pki = Pki::generate(&format!("liandong-{}", manifest.region))?;
    pki.write(&dir)?;
    let days = crate::client::CERT_VALIDITY_DAYS;
    let mut progress = crate::progress::Progress::new(
        "federation init: host certificates".to_string(),
        manifest.hosts.len() as u64,
        false,
    );
    for (n, host) in manifest.hosts.iter().enumerate() {
        pki.issue_host(&host.name, &host.offices, days)?
            .write(&dir, &host.name)?;
        progress.at(n as u64 + 1);
    }
    progress.done();
    let root: Vec<String> = manifest
        .root()
        .map(|o| o.code.clone())
        .into_iter()
        .collect();
    pki.issue_operator(crate::client::CLI_IDENTITY, &root, days)?
        .write(&dir, crate::client::CLI_IDENTITY)?;
    Ok(())
}

async fn up(layout: &Layout, args: &UpArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let mut started = Vec::new();
    for host in &federation.manifest.hosts {
        let pid = process::start_host(layout, &host.name, &[])?;
        started.push(json!({"name": host.name, "pid": pid}));
    }
    let limit = Duration::from_secs(args.timeout_seconds);
    let unhealthy = wait_for_health(&federation, limit).await;
    if !unhealthy.is_empty() {
        let named: Vec<String> = unhealthy
            .iter()
            .take(view::VERDICT_OFFICES_NAMED_MAX)
            .map(|(code, why)| format!("{code} ({why})"))
            .collect();
        let more = unhealthy.len().saturating_sub(named.len());
        bail!(
            "{} of {} offices have no leader that commits after {}s: {}{} (logs in {})",
            unhealthy.len(),
            federation.manifest.offices.len(),
            args.timeout_seconds,
            named.join(", "),
            if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            },
            layout.run_dir().display()
        );
    }
    let offices = federation.manifest.offices.len();
    Ok(Report::new(
        json!({"hosts": started, "offices": offices, "healthy": offices}),
        format!(
            "{} hosts up; all {offices} offices have a leader that commits",
            started.len()
        ),
    ))
}

/// Offices whose leader does not commit (or that are flapping) when `limit` ran out, with why;
/// empty when every office is healthy.
pub async fn wait_for_health(federation: &Federation, limit: Duration) -> Vec<(String, String)> {
    use std::io::{IsTerminal, Write};
    let start = Instant::now();
    let offices = federation.manifest.offices.len();
    // How far it is, on a terminal only: one line of stderr, rewritten each round.
    let shown = std::io::stderr().is_terminal();
    let progress = |unhealthy: usize, done: bool| {
        if shown {
            eprint!(
                "\rup: {} of {offices} offices have a leader that commits ({} s)",
                offices.saturating_sub(unhealthy),
                start.elapsed().as_secs()
            );
            if done {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    };
    loop {
        let statuses = federation.statuses_checked().await;
        let status = view::status_json(federation, &statuses);
        let unhealthy: Vec<(String, String)> = status["verdict"]["unhealthy"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|office| {
                let health = office["health"].as_str().unwrap_or("").replace('_', " ");
                let detail = office["detail"].as_str().unwrap_or("");
                let why = if detail.is_empty() {
                    health
                } else {
                    format!("{health}: {detail}")
                };
                (office["code"].as_str().unwrap_or("").to_string(), why)
            })
            .collect();
        let done = unhealthy.is_empty() || start.elapsed() >= limit;
        progress(unhealthy.len(), done);
        if done {
            return unhealthy;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    let statuses = federation.statuses_checked().await;
    let json = view::status_json(&federation, &statuses);
    let text = view::status_text(&json);
    Ok(Report::new(json, text))
}

/// Co-petitioners read from `--co-petitioner` values: each `[TYPE:]ID:NAME[:PHONE[:NATIONALITY]]`, or
/// `@FILE` naming a file with one per line. Formats are checked by the office.
pub fn co_petitioners(values: &[String]) -> anyhow::Result<Vec<v1::CoPetitioner>> {
    /// Bytes of a co-petitioner file at most (200 petitioners fit many times over).
    const FILE_BYTES_MAX: u64 = 256 * 1024;
    let mut lines = Vec::new();
    for value in values {
        match value.strip_prefix('@') {
            Some(path) => {
                let size = std::fs::metadata(path)
                    .map_err(|e| anyhow!("--co-petitioner @{path}: {e}"))?
                    .len();
                if size > FILE_BYTES_MAX {
                    bail!("--co-petitioner @{path}: {size} bytes; at most {FILE_BYTES_MAX}");
                }
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow!("--co-petitioner @{path}: {e}"))?;
                lines.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|line| !line.is_empty() && !line.starts_with('#'))
                        .map(str::to_string),
                );
            }
            None => lines.push(value.clone()),
        }
    }
    lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            co_petitioner(line).ok_or_else(|| {
                anyhow!(
                    "co-petitioner {} (petitioner {}): expected [TYPE:]ID:NAME[:PHONE[:NATIONALITY]], e.g. passport:G12345678:Ann Lee",
                    index + 1,
                    index + 2
                )
            })
        })
        .collect()
}

fn co_petitioner(line: &str) -> Option<v1::CoPetitioner> {
    let parts: Vec<&str> = line.split(':').map(str::trim).collect();
    let is_type = |word: &str| word.parse::<liandong_domain::IdType>().is_ok();
    let (id_type, rest) = match parts.split_first() {
        Some((first, rest)) if is_type(first) => (first.to_string(), rest),
        _ => (String::new(), &parts[..]),
    };
    let (id_number, name, phone, nationality) = match rest {
        [id, name] => (id, name, "", ""),
        [id, name, phone] => (id, name, *phone, ""),
        [id, name, phone, nationality] => (id, name, *phone, *nationality),
        _ => return None,
    };
    let given = |value: &str| (!value.is_empty()).then(|| value.to_string());
    Some(v1::CoPetitioner {
        id_type,
        id_number: id_number.to_string(),
        name: name.to_string(),
        phone: given(phone),
        nationality: given(nationality),
    })
}

fn request_id() -> String {
    let bytes: [u8; 12] = rand::random();
    hex::encode(bytes)
}

async fn case(layout: &Layout, command: CaseCommand) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let reply = match command {
        CaseCommand::File(args) => {
            let args = *args;
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
                session_id: args.session.unwrap_or_default(),
                id_type: args.id_type.unwrap_or_default(),
                nationality: args.nationality,
                co_petitioners: co_petitioners(&args.co_petitioners)?,
                representative: args.representative.unwrap_or(0),
                address: args.address,
            };
            if args.proxy.is_some() || args.consent.is_some() {
                let Some(agent) = args.proxy else {
                    bail!("--consent goes with --proxy AGENT (a case filed by a proxy agent)");
                };
                let request = v1::ProxyFileRequest {
                    file: Some(request),
                    agent,
                    consent: args.consent.unwrap_or_default(),
                };
                let reply = federation
                    .office_channel_call(&office, |channel| {
                        let request = request.clone();
                        async move {
                            v1::desks_client::DesksClient::new(channel)
                                .proxy_file(request)
                                .await
                                .map(|r| r.into_inner())
                        }
                    })
                    .await
                    .map_err(|status| status_error(&status))?;
                let report = coded_report(&federation, reply)?;
                return Ok(crate::desk_cmd::with_tasks(&federation, report).await);
            }
            let reply = federation
                .office_call(&office, |mut client| {
                    let request = request.clone();
                    async move { client.file(request).await.map(|r| r.into_inner()) }
                })
                .await
                .map_err(|status| status_error(&status))?;
            return coded_report(&federation, reply);
        }
        CaseCommand::Show(args) => {
            let report = show(&federation, &args).await?;
            return Ok(crate::desk_cmd::with_tasks(&federation, report).await);
        }
        CaseCommand::Route(args) => return crate::desk_cmd::route(layout, args).await,
        CaseCommand::TaskAnswer(args) => return crate::desk_cmd::task_answer(layout, args).await,
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
        CaseCommand::Transfer(args) => {
            let command = v1::Transfer {
                to: args.to,
                officer: args.officer,
            };
            act(
                &federation,
                &args.case_id,
                case_command::Command::Transfer(command),
            )
            .await
        }
        CaseCommand::Assign(args) => {
            let command = v1::Assign {
                to: args.to,
                due_days: args.due_days,
                officer: args.officer,
            };
            act(
                &federation,
                &args.case_id,
                case_command::Command::Assign(command),
            )
            .await
        }
        CaseCommand::Return(args) => {
            let command = v1::Return {
                reason: args.reason,
                officer: args.officer,
            };
            act(
                &federation,
                &args.case_id,
                case_command::Command::Return(command),
            )
            .await
        }
        CaseCommand::RequestReview(args) => {
            let command = case_command::Command::RequestReview(v1::RequestReview {});
            let reply = act(&federation, &args.case_id, command)
                .await
                .map_err(|status| status_error(&status))?;
            return review_requested(&federation, &args.case_id, reply).await;
        }
        CaseCommand::AnswerSupervision(args) => {
            let command = v1::AnswerSupervision {
                text: args.text,
                officer: args.officer,
            };
            act(
                &federation,
                &args.case_id,
                case_command::Command::AnswerSupervision(command),
            )
            .await
        }
        CaseCommand::FollowUp(args) => {
            let command = v1::FollowUp {
                note: args.note,
                officer: String::new(),
            };
            act(
                &federation,
                &args.case_id,
                case_command::Command::FollowUp(command),
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

/// How long `request-review` waits for the level above to register the review case.
pub const REVIEW_CASE_WAIT_MS: u64 = 15_000;

/// A review requested: the case, and the id of the review case once the level above has
/// registered it (it tells the case; `request-review` waits up to [`REVIEW_CASE_WAIT_MS`]).
async fn review_requested(
    federation: &Federation,
    case_id: &str,
    reply: CaseReply,
) -> anyhow::Result<Report> {
    let mut case = Case::from_bytes(&reply.case_document)
        .map_err(|e| anyhow!("the office sent a bad case document: {e}"))?;
    let to = case
        .history
        .iter()
        .rev()
        .find(|entry| entry.kind == "review_requested")
        .and_then(|entry| entry.detail["to"].as_str().map(str::to_string))
        .unwrap_or_default();
    let holder = case.office.to_string();
    let started = std::time::Instant::now();
    let review = loop {
        if let Some(review) = view::review_case(&case) {
            break Some(review);
        }
        if started.elapsed() >= std::time::Duration::from_millis(REVIEW_CASE_WAIT_MS) {
            break None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if let Ok((_, reply)) = locate_from(federation, case_id, holder.clone(), None).await {
            if let Ok(shown) = Case::from_bytes(&reply.case_document) {
                case = shown;
            }
        }
    };
    let mut json = view::case_json(&case);
    let mut text = view::case_text(&case);
    match &review {
        Some(review) => text.push_str(&format!("\nreview case {review} registered at {to}")),
        None => {
            json["review_pending"] = Value::Bool(true);
            text.push_str(&format!(
                "\nthe review goes to {to}, which has not registered it yet (unreachable?): \
                 `liandong case show {case_id}` names the review case once it has"
            ));
        }
    }
    Ok(Report::new(json, text))
}

/// A case, and the petitioner's verification code (filing, `case show`) with where to use it.
fn coded_report(federation: &Federation, reply: CaseReply) -> anyhow::Result<Report> {
    let code = reply.status_code.clone();
    let session = reply.session_id.clone();
    let mut report = case_report(reply)?;
    if !session.is_empty() {
        report.json["session"] = Value::String(session.clone());
        report.text.push_str(&format!(
            "\n  registered in joint reception session {session}"
        ));
    }
    if code.is_empty() {
        return Ok(report);
    }
    let case_id = report.json["case_id"].as_str().unwrap_or("").to_string();
    let office = case_id.split('-').next().unwrap_or("");
    let url = federation
        .manifest
        .office(office)
        .and_then(|o| o.members.first())
        .and_then(|m| federation.manifest.host(&m.host))
        .and_then(|h| h.http_addr.as_deref())
        .map(|addr| {
            format!(
                "{}/status/{case_id}?code={code}",
                liandong_node::public::url_of(addr)
            )
        });
    report.text.push_str(&format!(
        "\n  verification code {code}: tell the petitioner (status by phone or online{})",
        url.as_ref().map(|u| format!(": {u}")).unwrap_or_default()
    ));
    report.json["verification_code"] = Value::String(code);
    report.json["status_url"] = url.map(Value::String).unwrap_or(Value::Null);
    Ok(report)
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

/// Forwarding stubs followed at most this often when looking for a case's holder.
pub const STUB_HOPS_MAX: usize = 16;

/// The office holding a case now, and its copy there: starts at the office in the case id and
/// follows forwarding stubs.
pub async fn locate(
    federation: &Federation,
    case_id: &str,
) -> Result<(String, CaseReply), tonic::Status> {
    let office = office_of(case_id).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
    locate_from(federation, case_id, office, None).await
}

/// Like [`locate`], starting at `office`'s copy; an auditor's reads carry `reason`.
pub async fn locate_from(
    federation: &Federation,
    case_id: &str,
    mut office: String,
    reason: Option<&str>,
) -> Result<(String, CaseReply), tonic::Status> {
    for _ in 0..STUB_HOPS_MAX {
        let request = ShowRequest {
            case_id: case_id.to_string(),
            consistency: Consistency::Linearizable as i32,
            hops: 0,
            office: office.clone(),
            reason: reason.unwrap_or_default().to_string(),
        };
        let reply = federation
            .office_call(&office, |mut client| {
                let request = request.clone();
                async move { client.show(request).await.map(|r| r.into_inner()) }
            })
            .await?;
        let case = Case::from_bytes(&reply.case_document)
            .map_err(|e| tonic::Status::internal(format!("bad case document: {e}")))?;
        match case.status {
            liandong_domain::Status::Forwarded { to } => office = to.to_string(),
            _ => return Ok((office, reply)),
        }
    }
    Err(tonic::Status::failed_precondition(format!(
        "case {case_id}: more than {STUB_HOPS_MAX} forwarding stubs"
    )))
}

/// An officer's command on a case its own office holds.
async fn act(
    federation: &Federation,
    case_id: &str,
    command: case_command::Command,
) -> Result<CaseReply, tonic::Status> {
    let office = match &federation.session {
        Some(session) => session.claims.office.clone(),
        None => locate(federation, case_id).await?.0,
    };
    let request = ActRequest {
        case_id: case_id.to_string(),
        command: Some(v1::CaseCommand {
            command: Some(command),
        }),
        hops: 0,
        request_id: request_id(),
        office: office.clone(),
    };
    federation
        .office_call(&office, |mut client| {
            let request = request.clone();
            async move { client.act(request).await.map(|r| r.into_inner()) }
        })
        .await
}

/// The case as the signed-in officer's office holds it (following its forwarding stubs as far
/// as the officer may read), or as the office in its id holds it.
async fn show(federation: &Federation, args: &ShowArgs) -> anyhow::Result<Report> {
    let office = match &federation.session {
        Some(session) => session.claims.office.clone(),
        None => office_of(&args.case_id)?,
    };
    let reason = args.reason.as_deref();
    let reply = match args.replica {
        Some(replica) => {
            let request = ShowRequest {
                case_id: args.case_id.clone(),
                consistency: Consistency::Local as i32,
                hops: 0,
                office: office.clone(),
                reason: reason.unwrap_or_default().to_string(),
            };
            let host = member_host(&federation.manifest, &office, replica)?;
            let channel = crate::client::officer_channel(&host, &office)
                .await
                .map_err(|s| status_error(&s))?;
            let mut client = federation_proto::v1::cases_client::CasesClient::new(channel);
            client.show(request).await.map(|r| r.into_inner())
        }
        None => locate_from(federation, &args.case_id, office, reason)
            .await
            .map(|(_, reply)| reply),
    };
    coded_report(federation, reply.map_err(|status| status_error(&status))?)
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
        DrillCommand::Partition(args) if args.to.is_some() => return link_partition(layout, args),
        DrillCommand::Partition(args) => return partition(layout, Some(&args.office)),
        DrillCommand::Heal => return partition(layout, None),
        DrillCommand::Link(args) => return link_fault(layout, args),
        DrillCommand::Skew(args) => return clock_skew(layout, args),
        DrillCommand::Run(args) => {
            return crate::drill_run::run(federation, &args.scenario, args.seconds, args.clients)
                .await
        }
    };
    let hosts = drill_hosts(&federation, target, verb).await?;
    let mut done = Vec::new();
    for (replica, host) in hosts {
        let pid = match verb {
            "kill" => process::kill_host(layout, &host)?,
            "restart" if process::running_pid(layout, &host).is_some() => {
                // A running host whose replica of this office stopped (its storage failed)
                // serves nothing for it until the process starts again: restart it, gracefully.
                if !replica_stopped(&federation, &host, &target.office, replica).await {
                    continue;
                }
                process::stop_host(layout, &host)?;
                Some(process::start_host(layout, &host, &[])?)
            }
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

/// The office acting: the signed-in officer's; `given` (a `--from` or `--as`) must name it.
pub(crate) fn acting_office(
    federation: &Federation,
    given: Option<&str>,
) -> anyhow::Result<String> {
    let own = federation.officer()?.claims.office.clone();
    match given {
        Some(code) if code != own => bail!(
            "signed in at office {own}, not {code}: an officer acts only for its own office \
             (a supervisor's subtree is read through its own office's index)"
        ),
        _ => Ok(own),
    }
}

async fn supervise(layout: &Layout, args: &SuperviseArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let from = acting_office(&federation, args.from.as_deref())?;
    // Where the case is now, from the supervising office's own index.
    let found = query_index(&federation, &from, |request| {
        request.case_id = Some(args.case_id.clone());
    })
    .await?;
    let holder = found
        .cases
        .first()
        .map(|summary| summary.owner.clone())
        .ok_or_else(|| {
            anyhow!(
                "case {} is not in office {from}'s index (not in its subtree, or its summary \
                 has not arrived yet)",
                args.case_id
            )
        })?;
    let args = SuperviseArgs {
        from: Some(from),
        case_id: args.case_id.clone(),
        due_days: args.due_days,
        text: args.text.clone(),
    };
    let from = args.from.clone().unwrap_or_default();
    let request = v1::SuperviseRequest {
        from: from.clone(),
        case_id: args.case_id.clone(),
        to: holder,
        due_days: args.due_days,
        text: args.text.clone(),
        hops: 0,
    };
    let reply = federation
        .office_call(&from, |mut client| {
            let request = request.clone();
            async move { client.supervise(request).await.map(|r| r.into_inner()) }
        })
        .await
        .map_err(|s| status_error(&s))?;
    let order: Value = serde_json::from_slice(&reply.order_document)?;
    let text = format!(
        "order {} from {} on {} (held by {}), due {}",
        order["order_id"].as_str().unwrap_or(""),
        from,
        args.case_id,
        order["to"].as_str().unwrap_or(""),
        order["due_by"]
            .as_i64()
            .map(liandong_domain::format_rfc3339)
            .unwrap_or_default()
    );
    Ok(Report::new(order, text))
}

async fn orders(layout: &Layout, args: &OrdersArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let office = acting_office(&federation, args.office.as_deref())?;
    let request = v1::OrdersRequest {
        office: office.clone(),
    };
    let reply = federation
        .office_call(&office, |mut client| {
            let request = request.clone();
            async move { client.orders(request).await.map(|r| r.into_inner()) }
        })
        .await
        .map_err(|s| status_error(&s))?;
    let mut orders = Vec::new();
    let mut lines = Vec::new();
    for document in &reply.order_documents {
        let mut order: Value = serde_json::from_slice(document)?;
        let answered = !order["answer"].is_null();
        let overdue = !answered
            && order["refused"].is_null()
            && order["due_by"]
                .as_i64()
                .is_some_and(|due| reply.now_ms > due);
        order["overdue"] = Value::Bool(overdue);
        lines.push(format!(
            "{} on {} at {}: {}{}",
            order["order_id"].as_str().unwrap_or(""),
            order["case_id"].as_str().unwrap_or(""),
            order["to"].as_str().unwrap_or(""),
            if answered {
                format!(
                    "answered by {}: {}",
                    order["answer"]["officer"].as_str().unwrap_or(""),
                    order["answer"]["text"].as_str().unwrap_or("")
                )
            } else if let Some(refused) = order["refused"].as_str() {
                format!("refused: {refused}")
            } else {
                "open".to_string()
            },
            if overdue { " OVERDUE" } else { "" }
        ));
        orders.push(order);
    }
    if lines.is_empty() {
        lines.push(format!("no supervision orders issued by {office}"));
    }
    Ok(Report::new(
        json!({"office": office, "orders": orders}),
        lines.join("\n"),
    ))
}

/// Asks `as_office`'s index (as its signed-in supervisor), with `narrow` applied to the request.
async fn query_index(
    federation: &Federation,
    as_office: &str,
    narrow: impl FnOnce(&mut v1::QueryRequest),
) -> anyhow::Result<v1::QueryReply> {
    let mut request = v1::QueryRequest {
        as_office: as_office.to_string(),
        limit: 1,
        ..v1::QueryRequest::default()
    };
    narrow(&mut request);
    federation
        .office_channel_call(as_office, |channel| {
            let request = request.clone();
            async move {
                let mut client =
                    federation_proto::v1::federation_client::FederationClient::new(channel);
                client.query(request).await.map(|r| r.into_inner())
            }
        })
        .await
        .map_err(|s| status_error(&s))
}

/// A day given as `YYYY-MM-DD`, as the time (China) it starts; `after` gives the next day's.
fn day_start_ms(flag: &str, text: &str, after: bool) -> anyhow::Result<i64> {
    let bad = || anyhow!("bad {flag} {text:?}: expected a day as YYYY-MM-DD");
    let mut parts = text.splitn(3, '-');
    let mut number = || -> anyhow::Result<u16> {
        parts
            .next()
            .and_then(|part| part.parse::<u16>().ok())
            .ok_or_else(bad)
    };
    let (year, month, day) = (number()?, number()?, number()?);
    let date = liandong_domain::Date::new(
        year,
        u8::try_from(month).map_err(|_| bad())?,
        u8::try_from(day).map_err(|_| bad())?,
    )
    .map_err(|e| anyhow!("bad {flag} {text:?}: {e}"))?;
    let date = if after {
        liandong_domain::Date::from_days(date.days() + 1)
    } else {
        date
    };
    Ok(date.start_millis())
}

/// The federation's time now (its clock may run faster than the wall's).
fn federation_now(federation: &Federation) -> i64 {
    let manifest = &federation.manifest;
    liandong_node::clock::Clock::new(manifest.clock_origin_ms, manifest.time_scale, 0).now()
}

/// A day flag's start (`after`: the next day's start), when given.
fn day_flag(flag: &str, text: Option<&String>, after: bool) -> anyhow::Result<Option<i64>> {
    text.map(|day| day_start_ms(flag, day, after)).transpose()
}

/// The checks the CLI makes before it asks (the office checks them again).
fn check_query_args(args: &QueryArgs) -> anyhow::Result<()> {
    use liandong_node::federation::query::{
        check_channel, parse_level, Sort, GRADES, QUERY_LIMIT_MAX, STATUS_GROUPS,
    };
    if let Some(channel) = &args.channel {
        check_channel(channel).map_err(|e| anyhow!(e))?;
    }
    let sort = Sort::parse(args.sort.as_deref()).map_err(|e| anyhow!(e))?;
    if let Some(cursor) = &args.cursor {
        sort.parse_cursor(cursor)
            .map_err(|e| anyhow!(e.replacen("bad cursor", "bad --cursor", 1)))?;
    }
    if let Some(status) = &args.status {
        let known = liandong_domain::Status::WORDS.contains(&status.as_str())
            || STATUS_GROUPS.contains(&status.as_str());
        if !known {
            bail!(
                "unknown status {status:?}: one of {}, or a group: {}",
                liandong_domain::Status::WORDS.join(", "),
                STATUS_GROUPS.join(", ")
            );
        }
    }
    if let Some(grade) = &args.grade {
        if !GRADES.contains(&grade.as_str()) {
            bail!("unknown grade {grade:?}: one of {}", GRADES.join(", "));
        }
    }
    if let Some(level) = &args.level {
        parse_level(level).map_err(|e| anyhow!(e))?;
    }
    if args.limit > QUERY_LIMIT_MAX {
        bail!(
            "--limit {} is over the maximum {QUERY_LIMIT_MAX}: page with --cursor",
            args.limit
        );
    }
    Ok(())
}

/// The times of `by_child` (child office to milliseconds) as RFC 3339 text.
fn times_json(by_child: &std::collections::HashMap<String, i64>) -> serde_json::Map<String, Value> {
    let sorted: BTreeMap<&String, &i64> = by_child.iter().collect();
    sorted
        .into_iter()
        .map(|(child, ms)| {
            (
                child.clone(),
                Value::String(liandong_domain::format_rfc3339(*ms)),
            )
        })
        .collect()
}

async fn query_reply(
    federation: &Federation,
    as_office: &str,
    args: &QueryArgs,
) -> anyhow::Result<v1::QueryReply> {
    check_query_args(args)?;
    let registered_from_ms = match &args.registered_from {
        Some(day) => Some(day_start_ms("--registered-from", day, false)?),
        None => None,
    };
    let registered_to_ms = match &args.registered_to {
        Some(day) => Some(day_start_ms("--registered-to", day, true)?),
        None => None,
    };
    let (due_from_ms, due_to_ms) = match args.due_within {
        Some(days) => {
            let now = federation_now(federation);
            (
                Some(now),
                Some(now.saturating_add(i64::from(days) * liandong_domain::DAY_MS)),
            )
        }
        None => (
            day_flag("--due-from", args.due_from.as_ref(), false)?,
            day_flag("--due-to", args.due_to.as_ref(), true)?,
        ),
    };
    let replied_from_ms = day_flag("--replied-from", args.replied_from.as_ref(), false)?;
    let replied_to_ms = day_flag("--replied-to", args.replied_to.as_ref(), true)?;
    query_index(federation, as_office, |request| {
        request.office = args.office.clone();
        request.status = args.status.clone();
        request.overdue_only = args.overdue;
        request.category = args.category.clone();
        request.limit = args.limit;
        request.cursor = args.cursor.clone();
        request.fresh = args.fresh;
        request.deadline_ms = args.deadline_ms.unwrap_or(0);
        request.grade = args.grade.clone();
        request.level = args.level.clone();
        request.registered_from_ms = registered_from_ms;
        request.registered_to_ms = registered_to_ms;
        request.petitioner_key = args.petitioner_key.clone();
        request.channel = args.channel.clone();
        request.due_from_ms = due_from_ms;
        request.due_to_ms = due_to_ms;
        request.replied_from_ms = replied_from_ms;
        request.replied_to_ms = replied_to_ms;
        request.warned_only = args.warned;
        request.skip_level_only = args.skip_level;
        request.sort = args.sort.clone();
    })
    .await
}

async fn query(layout: &Layout, args: &QueryArgs) -> anyhow::Result<Report> {
    let federation = Federation::open(layout.clone())?;
    let as_office = acting_office(&federation, args.as_office.as_deref())?;
    if let Some(point) = &args.intake_point {
        return crate::desk_cmd::point_cases(&federation, &as_office, point).await;
    }
    let reply = query_reply(&federation, &as_office, args).await?;
    let cases: Vec<Value> = reply.cases.iter().map(view::summary_json).collect();
    let mut lines: Vec<String> = cases
        .iter()
        .map(|c| {
            format!(
                "{} at {}: {} ({}){}",
                c["case_id"].as_str().unwrap_or(""),
                c["office"].as_str().unwrap_or(""),
                c["status"].as_str().unwrap_or(""),
                c["category"].as_str().unwrap_or(""),
                if c["stale"] == true { " STALE" } else { "" }
            )
        })
        .collect();
    lines.push(format!("{} cases", cases.len()));
    if reply.partial {
        lines.push(format!(
            "PARTIAL: no answer in time from {} (their cases are from the index, marked STALE)",
            reply.unreachable.join(", ")
        ));
    }
    if let Some(cursor) = &reply.next_cursor {
        lines.push(format!("more: --cursor {cursor}"));
    }
    let json = json!({
        "as": as_office,
        "fresh": args.fresh,
        "cases": cases,
        "partial": reply.partial,
        "unreachable": reply.unreachable,
        "as_of": times_json(&reply.as_of_ms),
        "answered": times_json(&reply.answered_ms),
        "next_cursor": reply.next_cursor,
    });
    Ok(Report::new(json, lines.join("\n")))
}

async fn stats(layout: &Layout, args: &StatsArgs) -> anyhow::Result<Report> {
    use liandong_domain::figures::{day_name, parse_day, trend, Period};
    let federation = Federation::open(layout.clone())?;
    let as_office = acting_office(&federation, args.as_office.as_deref())?;
    let span = match &args.trend {
        Some(word) => {
            let period = Period::parse(word).map_err(|e| anyhow!(e))?;
            let day =
                |flag: &str, text: &String| parse_day(text).map_err(|e| anyhow!("{flag}: {e}"));
            let to = match &args.to {
                Some(text) => day("--to", text)?,
                None => liandong_domain::Date::from_millis(federation_now(&federation)),
            };
            let from = match &args.from {
                Some(text) => day("--from", text)?,
                None => {
                    let back = match period {
                        Period::Day => 29,
                        Period::Week => 7 * 11,
                        Period::Month => 31 * 11,
                    };
                    liandong_domain::Date::from_days(to.days() - back)
                }
            };
            // Checked before asking: the span and the number of buckets.
            trend(&[], period, from, to).map_err(|e| anyhow!(e))?;
            Some((period, from, to))
        }
        None => None,
    };
    let request = v1::StatsRequest {
        as_office: as_office.clone(),
        trend: span.is_some(),
        from_day: span.map(|(_, from, _)| day_name(from)),
        to_day: span.map(|(_, _, to)| day_name(to)),
        fresh: args.fresh,
        deadline_ms: args.deadline_ms.unwrap_or(0),
    };
    let reply = federation
        .office_channel_call(&as_office, |channel| {
            let request = request.clone();
            async move {
                let mut client =
                    federation_proto::v1::federation_client::FederationClient::new(channel);
                client.stats(request).await.map(|r| r.into_inner())
            }
        })
        .await
        .map_err(|s| status_error(&s))?;
    if let Some((period, from, to)) = span {
        return Ok(with_freshness(
            view::trend_report(&as_office, &reply, period, from, to)?,
            args.fresh,
            &reply,
        ));
    }
    if args.scorecard {
        return Ok(with_freshness(
            view::scorecard_report(&as_office, &reply),
            args.fresh,
            &reply,
        ));
    }
    let json = view::stats_json(&as_office, &reply);
    let text = format!(
        "{} cases under {as_office}: {} overdue, {} in backlog, {} breached on record; by status {}",
        json["total"],
        json["overdue"],
        json["backlog"],
        json["breached"],
        serde_json::to_string(&json["by_status"]).unwrap_or_default()
    );
    let rate = |name: &str| {
        let rate = &json["rates"][name];
        match rate["rate"].as_f64() {
            Some(value) => format!(
                "{name} {:.1}% ({}/{})",
                value * 100.0,
                rate["part"],
                rate["whole"]
            ),
            None => format!("{name} -"),
        }
    };
    let rates: Vec<String> = [
        "acceptance_in_time",
        "reply_on_time",
        "satisfaction",
        "skip_level",
        "review",
        "re_review",
    ]
    .iter()
    .map(|name| rate(name))
    .collect();
    let text = format!(
        "{text}\n{} warned, {} skip-level; by channel {}\nrates: {}",
        json["warned"],
        json["skip_level"],
        serde_json::to_string(&json["by_channel"]).unwrap_or_default(),
        rates.join(", ")
    );
    Ok(with_freshness(Report::new(json, text), args.fresh, &reply))
}

/// A `stats` answer says whether it is fresh, and a fresh one which subtrees it could not ask:
/// JSON `fresh`, `partial`, `unreachable`, `answered` (per child, when it answered itself), and
/// a `PARTIAL` line.
fn with_freshness(mut report: Report, fresh: bool, reply: &v1::StatsReply) -> Report {
    report.json["fresh"] = json!(fresh);
    report.json["partial"] = json!(reply.partial);
    report.json["unreachable"] = json!(reply.unreachable);
    report.json["answered"] = json!(reply
        .answered_ms
        .iter()
        .map(|(child, ms)| (child.clone(), liandong_domain::format_rfc3339(*ms)))
        .collect::<std::collections::BTreeMap<_, _>>());
    if reply.partial {
        report.text.push_str(&format!(
            "\nPARTIAL: counted from the index for {} (no answer within the deadline; see as_of)",
            reply.unreachable.join(", ")
        ));
    }
    report
}

fn partition(layout: &Layout, office: Option<&str>) -> anyhow::Result<Report> {
    let cut = set_partition(layout, office)?;
    // Hosts re-read the fault file every 100 ms: return once every one has seen it.
    std::thread::sleep(Duration::from_millis(
        3 * liandong_node::federation::faults::FAULTS_POLL_MS,
    ));
    let text = if cut.is_empty() {
        "every link healed".to_string()
    } else {
        format!("cut off: {}", cut.join(", "))
    };
    let mut json = json!({ "partitioned": cut });
    if office.is_none() {
        json["faults"] = json!(liandong_node::federation::faults::FaultSpec::default());
    }
    Ok(Report::new(json, text))
}

/// Cuts `office` off every other office (None: heals every cut); returns the offices cut now.
pub fn set_partition(layout: &Layout, office: Option<&str>) -> anyhow::Result<Vec<String>> {
    let manifest = layout.load_manifest()?;
    let mut spec = liandong_node::federation::faults::FaultSpec::load(&layout.run_dir());
    match office {
        Some(code) => {
            manifest
                .office(code)
                .ok_or_else(|| anyhow!("no office {code} in this federation"))?;
            spec.partitioned.insert(code.to_string());
        }
        // Heal: every fault goes, not only office cuts (link faults, one-way cuts, skews).
        None => spec = liandong_node::federation::faults::FaultSpec::default(),
    }
    std::fs::create_dir_all(layout.run_dir())?;
    spec.save(&layout.run_dir())?;
    Ok(spec.partitioned.iter().cloned().collect())
}

fn signal_host(layout: &Layout, host: &str, signal: i32) -> anyhow::Result<Option<i32>> {
    let Some(pid) = process::running_pid(layout, host) else {
        return Ok(None);
    };
    process::signal(pid, signal)?;
    Ok(Some(pid))
}

/// Which (replica, host) pairs a drill acts on.
/// Whether `host` runs but reports its replica `id` of `office` as stopped (`Shutdown`).
async fn replica_stopped(federation: &Federation, host: &str, office: &str, id: u64) -> bool {
    let Some(entry) = federation.manifest.host(host) else {
        return false;
    };
    federation.host_status(entry).await.is_some_and(|status| {
        status
            .replicas
            .iter()
            .any(|r| r.office == office && r.id == id && r.state == "Shutdown")
    })
}

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

// ---- Drill faults beyond whole-office cuts: one-way office cuts, host link faults, clock skew.

/// Reads the fault file, lets `change` edit it, validates the result against the manifest and
/// writes it; a bad value (or a corrupt file) is an error and the file is left as it was. Then
/// waits for the hosts to have read it, and reports every fault in force.
fn change_faults(
    layout: &Layout,
    change: impl FnOnce(&mut liandong_node::federation::faults::FaultSpec),
) -> anyhow::Result<liandong_node::federation::faults::FaultSpec> {
    use liandong_node::federation::faults::{FaultSpec, FAULTS_POLL_MS};
    let manifest = layout.load_manifest()?;
    let mut spec = FaultSpec::read(&layout.run_dir())
        .map_err(|e| anyhow!("{e} (`liandong drill heal` replaces it)"))?;
    change(&mut spec);
    spec.validate(Some(&manifest)).map_err(|e| anyhow!(e))?;
    std::fs::create_dir_all(layout.run_dir())?;
    spec.save(&layout.run_dir())?;
    // Hosts re-read the fault file every 100 ms: return once every one has seen it.
    std::thread::sleep(Duration::from_millis(3 * FAULTS_POLL_MS));
    Ok(spec)
}

/// `drill partition --office A --to B [--one-way]`: cuts A -> B (and B -> A unless one way).
fn link_partition(layout: &Layout, args: &PartitionArgs) -> anyhow::Result<Report> {
    use liandong_node::federation::faults::OfficeCut;
    let to = args.to.clone().unwrap_or_default();
    let from = args.office.clone();
    let one_way = args.one_way;
    let spec = change_faults(layout, |spec| {
        spec.one_way.insert(OfficeCut {
            from: from.clone(),
            to: to.clone(),
        });
        if !one_way {
            spec.one_way.insert(OfficeCut {
                from: to.clone(),
                to: from.clone(),
            });
        }
    })?;
    let arrow = if one_way { "->" } else { "<->" };
    Ok(Report::new(
        json!({"cut": {"from": from, "to": to, "one_way": one_way}, "faults": spec}),
        format!("cut: {from} {arrow} {to}"),
    ))
}

/// `drill link --from-host H1 --to-host H2 [--cut] [--drop P] [--delay-ms N]`.
fn link_fault(layout: &Layout, args: &LinkArgs) -> anyhow::Result<Report> {
    use liandong_node::federation::faults::LinkFault;
    let fault = LinkFault {
        from_host: args.from_host.clone(),
        to_host: args.to_host.clone(),
        cut: args.cut,
        drop: args.drop.unwrap_or(0.0),
        delay_ms: args.delay_ms.unwrap_or(0),
    };
    let text = if fault.is_noop() {
        format!("link {} -> {}: no fault", fault.from_host, fault.to_host)
    } else {
        format!(
            "link {} -> {}: cut {}, drop {}, delay {} ms",
            fault.from_host, fault.to_host, fault.cut, fault.drop, fault.delay_ms
        )
    };
    let link = json!(fault);
    let spec = change_faults(layout, |spec| spec.set_link(fault))?;
    Ok(Report::new(json!({"link": link, "faults": spec}), text))
}

/// `drill skew --host H --ms N`: the running host's clock jumps to wall + N ms.
fn clock_skew(layout: &Layout, args: &SkewArgs) -> anyhow::Result<Report> {
    let (host, ms) = (args.host.clone(), args.ms);
    let spec = change_faults(layout, |spec| {
        if ms == 0 {
            spec.clock_skew_ms.remove(&host);
        } else {
            spec.clock_skew_ms.insert(host.clone(), ms);
        }
    })?;
    Ok(Report::new(
        json!({"skew": {"host": args.host, "ms": ms}, "faults": spec}),
        format!("host {}: clock skewed by {ms} ms", args.host),
    ))
}

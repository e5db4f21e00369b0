//! Who may call what, from the outside: every officer-facing and operator RPC × principal kind
//! (no credential, a host certificate, an operator certificate, an officer's token) × role ×
//! scope (own office, descendant, ancestor, sibling, another county), against real hosts. Each
//! forbidden pair is refused with PERMISSION_DENIED or UNAUTHENTICATED and changes nothing; each
//! allowed pair gets past the check. Plus the issue's own probes: a county's host certificate
//! cannot act on, read or dump its neighbour's township's case, and the history records the
//! signed-in officer whatever the client sends.

mod common;

use std::collections::BTreeMap;

use common::{connect, Fed, WORKING_ROLES};
use federation_proto::v1::admin_client::AdminClient;
use federation_proto::v1::audit_client::AuditClient;
use federation_proto::v1::backup_client::BackupClient;
use federation_proto::v1::cases_client::CasesClient;
use federation_proto::v1::desks_client::DesksClient;
use federation_proto::v1::federation_client::FederationClient;
use federation_proto::v1::membership_client::MembershipClient;
use federation_proto::v1::notices_client::NoticesClient;
use federation_proto::v1::officers_client::OfficersClient;
use federation_proto::v1::raft_transport_client::RaftTransportClient;
use federation_proto::v1::{
    self, case_command, ActRequest, AddOfficerRequest, AuditReadRequest, CampaignRequest,
    DumpRequest, FileRequest, ListOfficersRequest, OrdersRequest, ProposeRequest, QueryRequest,
    RemoveReplicaRequest, SaveRequest, ShowRequest, SuperviseRequest,
};
use federation_proto::v1::{DeskChangeRequest, DeskReadRequest, ProxyFileRequest};
use liandong_node::manifest::Manifest;
use liandong_node::tls::{HostIdentity, Pki};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const COUNTY: &str = "530602";
/// The scopes, seen from county 530602.
const SCOPES: [(&str, &str); 5] = [
    ("own office", "530602"),
    ("descendant", "530602001"),
    ("ancestor", "5306"),
    ("sibling", "530621"),
    ("other county", "530621001"),
];

fn five_offices() -> Fed {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "2", "--replicas", "1"],
        9,
    );
    fed.ok(&["up"]);
    fed
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rpc {
    File,
    Accept,
    Grade,
    Show,
    Supervise,
    Orders,
    Query,
    AddOfficer,
    ListOfficers,
    ReadAudit,
    Dump,
    RemoveReplica,
    Campaign,
    BackupSave,
    AddDepartment,
    RouteCase,
    ProxyFile,
    DeskRead,
    SessionSchedule,
    SessionBook,
    Sessions,
    NoticePolicy,
    NoticeRead,
    ApplyManifest,
    PeerLinks,
    Reports,
    Report,
}

const RPCS: [Rpc; 27] = [
    Rpc::File,
    Rpc::Accept,
    Rpc::Grade,
    Rpc::Show,
    Rpc::Supervise,
    Rpc::Orders,
    Rpc::Query,
    Rpc::AddOfficer,
    Rpc::ListOfficers,
    Rpc::ReadAudit,
    Rpc::Dump,
    Rpc::RemoveReplica,
    Rpc::Campaign,
    Rpc::BackupSave,
    Rpc::AddDepartment,
    Rpc::RouteCase,
    Rpc::ProxyFile,
    Rpc::DeskRead,
    Rpc::SessionSchedule,
    Rpc::SessionBook,
    Rpc::Sessions,
    Rpc::NoticePolicy,
    Rpc::NoticeRead,
    Rpc::ApplyManifest,
    Rpc::PeerLinks,
    Rpc::Reports,
    Rpc::Report,
];

impl Rpc {
    /// The roles an officer needs (any one), or None for operators' work.
    fn roles(self) -> Option<&'static [&'static str]> {
        Some(match self {
            Rpc::File => &["registrar"],
            Rpc::Accept => &["handler"],
            Rpc::Grade => &["leader"],
            Rpc::Show => &["registrar", "handler", "leader", "supervisor", "auditor"],
            Rpc::Supervise => &["supervisor"],
            Rpc::Orders | Rpc::Query | Rpc::Reports | Rpc::Report => {
                &["supervisor", "leader", "auditor"]
            }
            Rpc::AddOfficer | Rpc::ListOfficers => &["admin"],
            Rpc::ReadAudit => &["auditor"],
            Rpc::Dump | Rpc::RemoveReplica | Rpc::Campaign | Rpc::BackupSave => return None,
            Rpc::AddDepartment => &["admin"],
            Rpc::RouteCase => &["handler", "leader"],
            Rpc::ProxyFile => &["registrar"],
            Rpc::DeskRead => &[
                "registrar",
                "handler",
                "leader",
                "supervisor",
                "auditor",
                "admin",
            ],
            Rpc::SessionSchedule => &["leader", "supervisor"],
            Rpc::SessionBook => &["registrar"],
            Rpc::Sessions => &["registrar", "handler", "leader", "supervisor", "auditor"],
            Rpc::NoticePolicy => &["admin"],
            Rpc::NoticeRead => &["handler", "leader", "supervisor", "auditor", "admin"],
            Rpc::ApplyManifest | Rpc::PeerLinks => return None,
        })
    }
}

/// Who calls.
#[derive(Debug, Clone)]
enum Who {
    Nobody,
    Host,
    Operator,
    Officer(&'static str),
}

/// Whether `who` may call `rpc` for an office at `scope`: the rules as the issue states them.
fn allowed(who: &Who, rpc: Rpc, scope: &str) -> bool {
    match who {
        Who::Nobody | Who::Host => false,
        // A new manifest is the whole federation's: only an operator of the region's root office
        // (the command line's certificate) may send one, never a county's (tests/sites.rs sends
        // one with the command line's).
        Who::Operator if rpc == Rpc::ApplyManifest => false,
        Who::Operator => rpc.roles().is_none() && matches!(scope, "own office" | "descendant"),
        Who::Officer(role) => {
            scope == "own office" && rpc.roles().is_some_and(|roles| roles.contains(role))
        }
    }
}

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// Calls `rpc` about `office` (its case `case_id`) over `channel`; the status code.
async fn call(
    rpc: Rpc,
    channel: Channel,
    token: Option<&str>,
    office: &str,
    case_id: &str,
    n: u64,
) -> Code {
    let t = token;
    let code = |result: Result<(), Status>| result.err().map_or(Code::Ok, |s| s.code());
    let act = |command| ActRequest {
        case_id: case_id.to_string(),
        command: Some(v1::CaseCommand {
            command: Some(command),
        }),
        office: office.to_string(),
        request_id: format!("r{n}"),
        ..ActRequest::default()
    };
    match rpc {
        Rpc::File => code(
            CasesClient::new(channel)
                .file(with_token(
                    FileRequest {
                        office: office.to_string(),
                        registration: Some(liandong_ops::sample::registration(n)),
                        request_id: format!("f{n}"),
                        ..FileRequest::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::Accept => code(
            CasesClient::new(channel)
                .act(with_token(
                    act(case_command::Command::Accept(v1::Accept {
                        officer: "fake".into(),
                    })),
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::Grade => code(
            CasesClient::new(channel)
                .act(with_token(
                    act(case_command::Command::SetGrade(v1::SetGrade {
                        grade: "B".into(),
                        leader: "l".into(),
                        department: "d".into(),
                        plan: "p".into(),
                        deadline_ms: i64::MAX / 4,
                    })),
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::Show => code(
            CasesClient::new(channel)
                .show(with_token(
                    ShowRequest {
                        case_id: case_id.to_string(),
                        office: office.to_string(),
                        reason: "table test".into(),
                        ..ShowRequest::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::Supervise => code(
            CasesClient::new(channel)
                .supervise(with_token(
                    SuperviseRequest {
                        from: office.to_string(),
                        case_id: case_id.to_string(),
                        to: office.to_string(),
                        due_days: 5,
                        text: "report".into(),
                        hops: 0,
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::Orders => code(
            CasesClient::new(channel)
                .orders(with_token(
                    OrdersRequest {
                        office: office.to_string(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::Query => code(
            FederationClient::new(channel)
                .query(with_token(
                    QueryRequest {
                        as_office: office.to_string(),
                        ..QueryRequest::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::AddOfficer => code(
            OfficersClient::new(channel)
                .add(with_token(
                    AddOfficerRequest {
                        office: office.to_string(),
                        user: format!("new{n}"),
                        roles: vec!["handler".into()],
                        password: "a long enough password".into(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::ListOfficers => code(
            OfficersClient::new(channel)
                .list(with_token(
                    ListOfficersRequest {
                        office: office.to_string(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::ReadAudit => code(
            AuditClient::new(channel)
                .read(with_token(
                    AuditReadRequest {
                        office: office.to_string(),
                        ..AuditReadRequest::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::Dump => code(
            AdminClient::new(channel)
                .max_decoding_message_size(federation_proto::MESSAGE_BYTES_MAX)
                .dump(with_token(
                    DumpRequest {
                        office: office.to_string(),
                        ..DumpRequest::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::BackupSave => code(
            BackupClient::new(channel)
                .save(with_token(
                    SaveRequest {
                        office: office.to_string(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        // An allowed schedule invites no one: refused as invalid, nothing made.
        Rpc::SessionSchedule => code(
            CasesClient::new(channel)
                .session(with_token(
                    v1::SessionRequest {
                        office: office.to_string(),
                        command: Some(v1::session_request::Command::Schedule(
                            v1::ScheduleSession {
                                starts_ms: 0,
                                ends_ms: i64::MAX / 4,
                                invite: Vec::new(),
                                leader: "l".into(),
                                slots: 1,
                            },
                        )),
                        ..v1::SessionRequest::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        // An allowed booking names no session there: NOT_FOUND, nothing made.
        Rpc::SessionBook => code(
            CasesClient::new(channel)
                .session(with_token(
                    v1::SessionRequest {
                        office: office.to_string(),
                        session_id: format!("{office}-S99"),
                        command: Some(v1::session_request::Command::Book(v1::BookSession {
                            petitioner_id: common::id_number(n),
                            name: "张三".into(),
                        })),
                        hops: 0,
                        request_id: String::new(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::Sessions => code(
            CasesClient::new(channel)
                .sessions(with_token(
                    v1::SessionsRequest {
                        office: office.to_string(),
                        ..v1::SessionsRequest::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        // A read of the links of the host's other offices with `office` (a restore's): operators
        // of `office` only.
        Rpc::PeerLinks => code(
            BackupClient::new(channel)
                .peer_links(with_token(
                    v1::PeerLinksRequest {
                        office: office.to_string(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        // Not a manifest at all: a caller past the check is told so, and nothing changes.
        Rpc::ApplyManifest => code(
            federation_proto::v1::sites_client::SitesClient::new(channel)
                .apply_manifest(with_token(
                    v1::ApplyManifestRequest {
                        manifest: format!("{{\"office\": \"{office}\"}}").into_bytes(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::Campaign => code(
            MembershipClient::new(channel)
                .campaign(with_token(
                    CampaignRequest {
                        office: office.to_string(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::AddDepartment | Rpc::RouteCase => {
            let change = if rpc == Rpc::AddDepartment {
                serde_json::json!({"add_department": {"code": format!("d{n}"), "name": "部门"}})
            } else {
                // An unknown department: an allowed call is refused by the office, nothing changes.
                serde_json::json!({"route": {"case_id": case_id, "officer": "fake", "routing": {
                    "lead": "nowhere", "cooperate": [], "due_days": 5, "text": ""}}})
            };
            code(
                DesksClient::new(channel)
                    .change(with_token(
                        DeskChangeRequest {
                            office: office.to_string(),
                            change: serde_json::to_vec(&change).unwrap(),
                            request_id: format!("d{n}"),
                        },
                        t,
                    ))
                    .await
                    .map(drop),
            )
        }
        Rpc::ProxyFile => code(
            DesksClient::new(channel)
                .proxy_file(with_token(
                    ProxyFileRequest {
                        file: Some(FileRequest {
                            office: office.to_string(),
                            registration: Some(liandong_ops::sample::registration(n)),
                            request_id: format!("p{n}"),
                            ..FileRequest::default()
                        }),
                        // No such agent: an allowed call is refused by the office.
                        agent: "nobody".into(),
                        consent: "signed".into(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::DeskRead => code(
            DesksClient::new(channel)
                .read(with_token(
                    DeskReadRequest {
                        office: office.to_string(),
                        what: "departments".into(),
                        key: String::new(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        // An allowed policy names a zero age: refused as invalid, nothing set.
        Rpc::NoticePolicy => code(
            NoticesClient::new(channel)
                .policy(with_token(
                    v1::NoticePolicyRequest {
                        office: office.to_string(),
                        ages_days: vec![0],
                        clear: false,
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::NoticeRead => code(
            NoticesClient::new(channel)
                .read(with_token(
                    v1::NoticeReadRequest {
                        office: office.to_string(),
                        what: "notices".into(),
                        limit: 10,
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::Reports => code(
            FederationClient::new(channel)
                .reports(with_token(
                    v1::ReportsRequest {
                        office: office.to_string(),
                        kind: String::new(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::Report => code(
            FederationClient::new(channel)
                .report(with_token(
                    v1::ReportRequest {
                        office: office.to_string(),
                        kind: "daily".into(),
                        period: String::new(),
                        format: "html".into(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        Rpc::RemoveReplica => code(
            MembershipClient::new(channel)
                .remove_replica(with_token(
                    RemoveReplicaRequest {
                        office: office.to_string(),
                        // Not a member: an allowed call is answered NOT_FOUND, nothing changes.
                        replica: 9,
                        hops: 0,
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
    }
}

fn refused(code: Code) -> bool {
    matches!(code, Code::PermissionDenied | Code::Unauthenticated)
}

struct World {
    fed: Fed,
    manifest: Manifest,
    /// A case filed at each office.
    cases: BTreeMap<&'static str, String>,
    /// Officers of the county: one per role.
    tokens: BTreeMap<&'static str, String>,
}

impl World {
    async fn new() -> World {
        let fed = five_offices();
        let manifest = Manifest::load(&fed.dir.join("manifest.json")).unwrap();
        let mut cases = BTreeMap::new();
        for (_, office) in SCOPES {
            let case = fed.at(office).json(&[
                "case",
                "file",
                "--office",
                office,
                "--channel",
                "visit",
                "--petitioner-id",
                &common::id_number(1),
                "--name",
                "张三",
                "--category",
                "housing",
                "--summary",
                "roof",
                "--phone",
                "13800001234",
            ]);
            cases.insert(office, case["case_id"].as_str().unwrap().to_string());
        }
        let mut tokens = BTreeMap::new();
        for role in ["registrar", "handler", "leader", "supervisor", "auditor"] {
            let user = format!("only-{role}");
            fed.officer(COUNTY, &user, role);
            let file = fed.dir.join(format!("{COUNTY}-{user}.token"));
            tokens.insert(role, std::fs::read_to_string(file).unwrap());
        }
        // The county's initial admin, signed in by the helper above.
        let admin = fed.dir.join(format!("{COUNTY}-admin.token"));
        tokens.insert("admin", std::fs::read_to_string(admin).unwrap());
        World {
            fed,
            manifest,
            cases,
            tokens,
        }
    }

    fn addr_of(&self, office: &str) -> String {
        let host = &self.manifest.office(office).unwrap().members[0].host;
        self.manifest.host(host).unwrap().api_addr.clone()
    }

    fn identity(&self, who: &Who) -> HostIdentity {
        let pki = Pki::load(&self.fed.dir.join("pki")).unwrap();
        match who {
            Who::Host => HostIdentity::load(&self.fed.dir.join("pki"), "h530621-1").unwrap(),
            Who::Operator => pki
                .issue_operator("county-it", &[COUNTY.to_string()], 1)
                .unwrap(),
            // An officer's client presents the command line's certificate; its token decides.
            Who::Nobody | Who::Officer(_) => pki.issue_host("nobody", &[], 1).unwrap(),
        }
    }

    fn token(&self, who: &Who) -> Option<&str> {
        match who {
            Who::Officer(role) => Some(self.tokens[role].trim()),
            _ => None,
        }
    }

    /// What must not change when a call is refused: every office's cases, with their history.
    fn state(&self) -> Vec<(String, usize)> {
        self.cases
            .iter()
            .map(|(office, id)| {
                let case = self.fed.at(office).json(&["case", "show", id]);
                let status = self.fed.json(&["status"]);
                let count = status["offices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|o| o["code"] == *office)
                    .and_then(|o| o["replicas"][0]["cases"].as_u64())
                    .unwrap();
                (
                    format!("{office} {count} {}", case["status"]),
                    case["history"].as_array().unwrap().len(),
                )
            })
            .collect()
    }
}

/// The whole table: forbidden pairs refused and nothing changed, allowed pairs past the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_every_principal_it_must_and_serves_the_rest() {
    let world = World::new().await;
    let mut principals = vec![Who::Nobody, Who::Host, Who::Operator];
    principals.extend(
        [
            "registrar",
            "handler",
            "leader",
            "supervisor",
            "auditor",
            "admin",
        ]
        .into_iter()
        .map(Who::Officer),
    );
    let mut table = Vec::new();
    for who in &principals {
        for rpc in RPCS {
            for (scope, office) in SCOPES {
                table.push((who.clone(), rpc, scope, office, allowed(who, rpc, scope)));
            }
        }
    }
    let before = world.state();
    let mut wrong = Vec::new();
    let mut n = 100;
    // Forbidden first: none of them may change anything.
    for allowed_pass in [false, true] {
        for (who, rpc, scope, office, allowed) in &table {
            if *allowed != allowed_pass {
                continue;
            }
            n += 1;
            let channel = connect(&world.fed, &world.addr_of(office), world.identity(who)).await;
            let code = call(
                *rpc,
                channel,
                world.token(who),
                office,
                &world.cases[office],
                n,
            )
            .await;
            if refused(code) == *allowed {
                wrong.push(format!("{who:?} {rpc:?} at {scope} ({office}): {code:?}"));
            }
        }
        if !allowed_pass {
            assert_eq!(world.state(), before, "a refused call changed something");
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// The issue's probes, each refused, each in the audit log, none changing anything; and the
/// history names the signed-in officer, not what the client claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neighbour_county_cannot_touch_a_township_case_and_every_refusal_is_audited() {
    let world = World::new().await;
    let fed = &world.fed;
    let township = "530602001";
    let case_id = &world.cases[township];
    let before = world.state();

    // County 530621's host certificate: act, read, dump.
    let host = world.identity(&Who::Host);
    let addr = world.addr_of(township);
    for rpc in [Rpc::Accept, Rpc::Show, Rpc::Dump] {
        let channel = connect(fed, &addr, host.clone()).await;
        let code = call(rpc, channel, None, township, case_id, 1).await;
        assert!(
            refused(code),
            "{rpc:?} with 530621's host certificate: {code:?}"
        );
    }
    // Nor through the replicas' own Propose RPC (account changes and audit batches): only the
    // office's own hosts propose through its leader.
    let host_of = &world.manifest.office(township).unwrap().members[0].host;
    let raft_addr = world.manifest.host(host_of).unwrap().raft_addr.clone();
    let forged = serde_json::json!({"Audit": {"records": []}});
    let propose = RaftTransportClient::new(connect(fed, &raft_addr, host.clone()).await)
        .propose(ProposeRequest {
            office: township.to_string(),
            operation: serde_json::to_vec(&forged).unwrap(),
        })
        .await
        .expect_err("a neighbour's host proposes nothing");
    assert_eq!(propose.code(), Code::PermissionDenied, "{propose:?}");
    // A registrar of the township files but cannot accept.
    let registrar = fed.officer(township, "clerk", "registrar");
    let filed = registrar.json(&[
        "case",
        "file",
        "--office",
        township,
        "--channel",
        "visit",
        "--petitioner-id",
        &common::id_number(2),
        "--name",
        "李四",
        "--category",
        "land",
        "--summary",
        "fence",
        "--officer",
        "中纪委 (fake)",
    ]);
    let filed_id = filed["case_id"].as_str().unwrap().to_string();
    assert_eq!(filed["first_officer"], "clerk", "{filed}");
    assert_eq!(filed["history"][0]["detail"]["officer"], "clerk", "{filed}");
    let refusal = registrar.fails(&["case", "accept", &filed_id]);
    assert!(refusal.contains("needs the role handler"), "{refusal}");
    // The history records the handler signed in, whatever --officer says.
    let accepted = fed
        .at(township)
        .json(&["case", "accept", &filed_id, "--officer", "someone"]);
    let last = accepted["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["detail"]["officer"], "officer", "{accepted}");
    // A supervisor of the county cannot query its sibling or its city.
    let supervisor = fed.officer(COUNTY, "watcher", "supervisor");
    for office in ["530621", "5306"] {
        let refusal = supervisor.fails(&["query", "--as", office]);
        assert!(
            refusal.contains("acts only for its own office"),
            "{refusal}"
        );
        let channel = connect(fed, &world.addr_of(office), world.identity(&Who::Nobody)).await;
        let token =
            std::fs::read_to_string(fed.dir.join(format!("{COUNTY}-watcher.token"))).unwrap();
        let code = call(Rpc::Query, channel, Some(token.trim()), office, "", 2).await;
        assert!(refused(code), "query --as {office}: {code:?}");
    }
    let mut after = world.state();
    // The township has one case more: the registrar's filing, nothing else.
    let township_before = before
        .iter()
        .find(|(s, _)| s.starts_with(township))
        .unwrap();
    let township_after = after
        .iter_mut()
        .find(|(s, _)| s.starts_with(township))
        .unwrap();
    assert_eq!(
        township_after.0.replace(" 2 ", " 1 "),
        township_before.0,
        "only the registrar's filing changed the township"
    );
    township_after.0 = township_before.0.clone();
    assert_eq!(after, before, "refusals changed nothing");

    // Every refusal is in the township's audit log (and the county's for the query).
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let audit = fed.at(township).json(&["audit"]);
    assert_eq!(audit["chain_ok"], true, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let has = |user: &str, rpc: &str, refused: &str| {
        entries.iter().any(|e| {
            e["user"] == user
                && e["rpc"] == rpc
                && e["result"].as_str().unwrap_or("").contains(refused)
        })
    };
    for rpc in ["Cases.Act", "Cases.Show", "Admin.Dump"] {
        assert!(
            has("host:h530621-1", rpc, "unauthenticated")
                || has("host:h530621-1", rpc, "permission denied"),
            "{rpc} refusal missing: {audit}"
        );
    }
    assert!(has("clerk", "Cases.Act", "permission denied"), "{audit}");
    assert!(has("clerk", "Cases.File", "ok"), "{audit}");
    for office in ["530621", "5306"] {
        let log = fed.at(office).json(&["audit"]);
        let found = log["entries"].as_array().unwrap().iter().any(|e| {
            let result = e["result"].as_str().unwrap_or("");
            e["user"].as_str().unwrap_or("").contains("watcher")
                && e["rpc"] == "Federation.Query"
                && (result.starts_with("unauthenticated") || result.starts_with("permission"))
        });
        assert!(
            found,
            "the refused query is not in {office}'s audit log: {log}"
        );
    }
    // The operator's verify still passes on dumps without personal data.
    let verify = fed.json(&["verify"]);
    assert_eq!(verify["ok"], true, "{verify}");
}

/// Every folder under `dir` is 0700 and every file 0600.
fn private_tree(dir: &std::path::Path, bad: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let expected = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != expected {
            bad.push(format!("{} is {mode:o}", path.display()));
        }
        if meta.is_dir() {
            private_tree(&path, bad);
        }
    }
}

/// A disabled officer's token stops working at once; five wrong passwords lock the account.
/// The hosts' data (RocksDB's files too) and the secrets are private; the manifest holds none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_and_lockout_take_effect_at_once() {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "0", "--replicas", "3"],
        3,
    );
    fed.ok(&["up"]);
    let mut bad = Vec::new();
    for folder in ["data", "secrets"] {
        private_tree(&fed.dir.join(folder), &mut bad);
    }
    assert!(bad.is_empty(), "not private: {bad:?}");
    let manifest = std::fs::read_to_string(fed.dir.join("manifest.json")).unwrap();
    assert!(!manifest.contains("secret"), "the manifest holds a secret");
    let clerk = fed.officer("5306", "clerk", WORKING_ROLES);
    clerk.json(&["query"]);
    let admin = fed.dir.join("5306-admin.token");
    let admin = admin.to_str().unwrap();
    fed.ok(&[
        "--token-file",
        admin,
        "officer",
        "disable",
        "--user",
        "clerk",
    ]);
    let refused = clerk.fails(&["query"]);
    assert!(refused.contains("disabled"), "{refused}");
    fed.ok(&[
        "--token-file",
        admin,
        "officer",
        "enable",
        "--user",
        "clerk",
    ]);
    let listed = fed.json(&["--token-file", admin, "officer", "list"]);
    assert!(
        listed["officers"].as_array().unwrap().len() >= 2,
        "{listed}"
    );

    let wrong = fed.dir.join("wrong.password");
    std::fs::write(&wrong, "not the password\n").unwrap();
    let token = fed.dir.join("attempt.token");
    let login = |password: &std::path::Path| {
        fed.run(&[
            "--token-file",
            token.to_str().unwrap(),
            "login",
            "--office",
            "5306",
            "--user",
            "clerk",
            "--password-file",
            password.to_str().unwrap(),
        ])
    };
    for _ in 0..5 {
        assert!(!login(&wrong).status.success());
    }
    let right = fed.dir.join("5306-clerk.password");
    let locked = login(&right);
    let stderr = String::from_utf8_lossy(&locked.stderr);
    assert!(
        !locked.status.success() && stderr.contains("locked"),
        "{stderr}"
    );
    // An admin's reset unlocks it (and ends the old sessions).
    fed.ok(&[
        "--token-file",
        admin,
        "officer",
        "reset-password",
        "--user",
        "clerk",
        "--password-file",
        right.to_str().unwrap(),
    ]);
    assert!(login(&right).status.success());
    let ended = clerk.fails(&["query"]);
    assert!(ended.contains("log in again"), "{ended}");
}

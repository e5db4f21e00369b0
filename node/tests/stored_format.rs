//! A federation stored by the build before the binary codec (every value JSON, format byte 1;
//! cases as one document with their history) opens on this build: the fixture
//! `fixtures/format_v1.tar.xz` (made by `fixtures/make_format_v1.sh` with that build) is started
//! with this build's hosts; every case reads back with its hash chain intact and the same on
//! every replica, the messages left in its outboxes are delivered, a request id of the old build
//! is kept, a new case is filed, old cases are handled, and the replicas agree on their state
//! hash again. The old build knew no people: upgrading gives every office its secrets (signing
//! key, first admin password) as `liandong federation init --force` does, and officers sign in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use federation_proto::v1::admin_client::AdminClient;
use federation_proto::v1::cases_client::CasesClient;
use federation_proto::v1::officers_client::OfficersClient;
use federation_proto::v1::{
    case_command, Accept, ActRequest, AddOfficerRequest, CaseCommand, Consistency, FileRequest,
    LoginRequest, ShowRequest, StatusReply, StatusRequest,
};
use liandong_domain::{Case, Status};
use liandong_node::manifest::{HostConfig, Manifest};
use liandong_node::secrets::{password_from_file, Secrets};
use liandong_node::tls::{client_config, https_uri, Pki, TlsFiles};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/format_v1.tar.xz"
);
const CASES: &str = include_str!("fixtures/format_v1.cases");
/// How long the hosts may take to elect leaders, deliver, and settle on a loaded machine.
const SETTLE_MS: u64 = 60_000;
const CALL_TIMEOUT_MS: u64 = 5_000;

/// The fixture's federation, unpacked and running on this build.
struct Federation {
    _dir: tempfile::TempDir,
    manifest: Manifest,
    hosts: Vec<Child>,
    tls: tonic::transport::ClientTlsConfig,
    logs: PathBuf,
    secrets: Secrets,
    /// Each office's officer's `authorization` value, once signed in.
    tokens: BTreeMap<String, MetadataValue<Ascii>>,
}

/// `message` as a call carrying `token`.
fn authed<T>(message: T, token: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", token.clone());
    request
}

const OFFICER_PASSWORD: &str = "fixture-officer-password";

impl Drop for Federation {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            let _ = host.kill();
            let _ = host.wait();
        }
    }
}

impl Federation {
    /// Unpacks the fixture, issues fresh certificates (the data does not depend on them; the
    /// old ones would expire), and starts every host with this build.
    fn start() -> Federation {
        let dir = tempfile::Builder::new()
            .prefix("liandong-format-v1-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        let unpacked = Command::new("tar")
            .args(["-xJf", FIXTURE, "-C"])
            .arg(root)
            .status()
            .expect("tar runs");
        assert!(unpacked.success(), "the fixture unpacks");
        let manifest_path = root.join("manifest.json");
        let manifest = Manifest::load(&manifest_path).unwrap();
        let pki_dir = liandong_node::host::pki_dir(&manifest_path);
        let pki = Pki::generate(&format!("liandong-{}", manifest.region)).unwrap();
        pki.write(&pki_dir).unwrap();
        let secrets = Secrets::for_manifest(&manifest_path);
        let codes: Vec<String> = manifest.offices.iter().map(|o| o.code.clone()).collect();
        secrets.generate(&codes, &manifest.secret_hex).unwrap();
        let logs = root.join("run");
        std::fs::create_dir_all(root.join("hosts")).unwrap();
        std::fs::create_dir_all(&logs).unwrap();
        let mut hosts = Vec::new();
        for host in &manifest.hosts {
            pki.issue_host(&host.name, &host.offices, 30)
                .unwrap()
                .write(&pki_dir, &host.name)
                .unwrap();
            let config = HostConfig {
                host: host.name.clone(),
                manifest: manifest_path.clone(),
                data_dir: root.join("data").join(&host.name),
                log_dir: logs.clone(),
                log_level: "info".into(),
            };
            let config_path = root.join("hosts").join(format!("{}.toml", host.name));
            std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
            let log = std::fs::File::create(logs.join(format!("{}.log", host.name))).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_liandong-node"))
                .arg("--config")
                .arg(&config_path)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("liandong-node starts");
            hosts.push(child);
        }
        // An operator of the whole federation (the root office and its subtree).
        let root: Vec<String> = manifest
            .offices
            .iter()
            .filter(|o| o.parent.is_none())
            .map(|o| o.code.clone())
            .collect();
        pki.issue_operator("fixture-test", &root, 30)
            .unwrap()
            .write(&pki_dir, "fixture-test")
            .unwrap();
        let tls = client_config(&TlsFiles::load(&pki_dir, "fixture-test").unwrap());
        Federation {
            _dir: dir,
            manifest,
            hosts,
            tls,
            logs,
            secrets,
            tokens: BTreeMap::new(),
        }
    }

    /// An officer of every office, made by the office's first admin (created on its first
    /// sign-in from the secrets the upgrade generated); later calls carry its token.
    async fn sign_in(&mut self) {
        let codes: Vec<String> = self
            .manifest
            .offices
            .iter()
            .map(|o| o.code.clone())
            .collect();
        for office in codes {
            let mut officers = OfficersClient::new(self.host_channel(&office));
            let password = password_from_file(&self.secrets.admin_password_file(&office)).unwrap();
            let login = |user: &str, password: &str| LoginRequest {
                office: office.clone(),
                user: user.into(),
                password: password.into(),
            };
            let admin = officers
                .login(login("admin", &password))
                .await
                .unwrap_or_else(|e| panic!("admin of {office} signs in: {e}"))
                .into_inner()
                .token;
            let admin: MetadataValue<Ascii> = format!("Bearer {admin}").parse().unwrap();
            let add = AddOfficerRequest {
                office: office.clone(),
                user: "clerk".into(),
                roles: ["registrar", "handler", "leader", "supervisor"]
                    .map(String::from)
                    .to_vec(),
                password: OFFICER_PASSWORD.into(),
            };
            officers.add(authed(add, &admin)).await.unwrap();
            let token = officers
                .login(login("clerk", OFFICER_PASSWORD))
                .await
                .unwrap()
                .into_inner()
                .token;
            self.tokens
                .insert(office, format!("Bearer {token}").parse().unwrap());
        }
    }

    fn token(&self, office: &str) -> &MetadataValue<Ascii> {
        &self.tokens[office]
    }

    /// A channel to one host carrying `office`.
    fn host_channel(&self, office: &str) -> Channel {
        let host = self
            .manifest
            .hosts
            .iter()
            .find(|host| host.offices.iter().any(|o| o == office))
            .expect("a host carries the office");
        self.channel(&host.api_addr)
    }

    fn channel(&self, addr: &str) -> Channel {
        Endpoint::from_shared(https_uri(addr))
            .unwrap()
            .tls_config(self.tls.clone())
            .unwrap()
            .timeout(Duration::from_millis(CALL_TIMEOUT_MS))
            .connect_lazy()
    }

    /// Every answering host's status.
    async fn statuses(&self) -> Vec<StatusReply> {
        let mut replies = Vec::new();
        for host in &self.manifest.hosts {
            let mut client = AdminClient::new(self.channel(&host.api_addr));
            if let Ok(reply) = client
                .status(StatusRequest {
                    check_commit: false,
                })
                .await
            {
                replies.push(reply.into_inner());
            }
        }
        replies
    }

    /// A client of one host carrying `office` (any replica takes a request).
    fn cases(&self, office: &str) -> CasesClient<Channel> {
        CasesClient::new(self.host_channel(office))
    }

    /// Every host of `office`, one client each (to read each replica's own copy).
    fn replicas(&self, office: &str) -> Vec<CasesClient<Channel>> {
        self.manifest
            .hosts
            .iter()
            .filter(|host| host.offices.iter().any(|o| o == office))
            .map(|host| CasesClient::new(self.channel(&host.api_addr)))
            .collect()
    }

    /// Waits until `done` holds of the hosts' statuses, or fails with the last statuses and
    /// the hosts' logs' tails.
    async fn wait_for(&self, what: &str, done: impl Fn(&[StatusReply]) -> bool) {
        let start = Instant::now();
        loop {
            let statuses = self.statuses().await;
            if done(&statuses) {
                return;
            }
            if start.elapsed() > Duration::from_millis(SETTLE_MS) {
                panic!(
                    "{what}: not within {SETTLE_MS} ms; statuses {statuses:#?}\n{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(&self.logs).unwrap().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {}\n", entry.path().display()));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// The case as the office holding it shows it (forwarding stubs followed).
    async fn show(&self, case_id: &str) -> Case {
        let mut office = case_id.split('-').next().unwrap().to_string();
        for _ in 0..8 {
            let case = show_at(
                &mut self.cases(&office),
                self.token(&office),
                case_id,
                &office,
                Consistency::Linearizable,
            )
            .await
            .unwrap_or_else(|e| panic!("show {case_id} at {office}: {e}"));
            match &case.status {
                Status::Forwarded { to } => office = to.to_string(),
                _ => return case,
            }
        }
        panic!("{case_id}: too many forwarding stubs");
    }
}

async fn show_at(
    client: &mut CasesClient<Channel>,
    token: &MetadataValue<Ascii>,
    case_id: &str,
    office: &str,
    consistency: Consistency,
) -> Result<Case, tonic::Status> {
    let reply = client
        .show(authed(
            ShowRequest {
                case_id: case_id.into(),
                consistency: consistency as i32,
                hops: 0,
                office: office.into(),
                reason: String::new(),
            },
            token,
        ))
        .await?
        .into_inner();
    Case::from_bytes(&reply.case_document).map_err(|e| tonic::Status::internal(e.to_string()))
}

fn leaders(statuses: &[StatusReply]) -> BTreeMap<String, u64> {
    statuses
        .iter()
        .flat_map(|reply| &reply.replicas)
        .filter(|replica| replica.state == "Leader")
        .map(|replica| (replica.office.clone(), replica.id))
        .collect()
}

/// Every office's replicas at the same applied index with the same state hash, and nothing
/// waiting in any outbox.
fn settled(statuses: &[StatusReply], offices: usize) -> bool {
    let mut by_office: BTreeMap<&str, Vec<(u64, &str, u64)>> = BTreeMap::new();
    for replica in statuses.iter().flat_map(|reply| &reply.replicas) {
        by_office.entry(&replica.office).or_default().push((
            replica.last_applied,
            &replica.state_hash,
            replica.outbox_pending,
        ));
    }
    by_office.len() == offices
        && by_office.values().all(|replicas| {
            replicas.len() == 3 && replicas.iter().all(|r| *r == replicas[0]) && replicas[0].2 == 0
        })
}

fn accept(case_id: &str, office: &str, request_id: &str) -> ActRequest {
    ActRequest {
        case_id: case_id.into(),
        command: Some(CaseCommand {
            command: Some(case_command::Command::Accept(Accept {
                officer: "fixture".into(),
            })),
        }),
        hops: 0,
        request_id: request_id.into(),
        office: office.into(),
    }
}

/// The stored federation of the previous format opens and works on this build (fails if any
/// format-1 value, a case's one-document form, an old request record or an old outbox message
/// is not read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federation_stored_by_the_json_build_opens_and_works() {
    let mut federation = Federation::start();
    let offices = federation.manifest.offices.len();
    federation
        .wait_for("every office has a leader", |statuses| {
            leaders(statuses).len() == offices
        })
        .await;
    federation.sign_in().await;

    // The messages left waiting in the outboxes when the old build stopped are delivered: the
    // handoff of the sixth case reaches the township, the index catches up, the outboxes drain.
    federation
        .wait_for("outboxes drained and replicas agree", |statuses| {
            settled(statuses, offices)
        })
        .await;
    let cases: Vec<&str> = CASES.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(cases.len(), 7, "the fixture's cases");
    let six = federation.show(cases[5]).await;
    assert_eq!(
        six.office.as_str(),
        "530602001",
        "the pending handoff was delivered"
    );
    assert_eq!(six.status, Status::Registered);

    // Every case reads back whole, its chain intact, the same on each replica of its holder.
    for case_id in &cases {
        let case = federation.show(case_id).await;
        assert!(case.has_whole_history(), "{case_id}");
        assert!(
            case.history.len() >= 2 || case_id == &cases[6],
            "{case_id}: {case:?}"
        );
        case.verify_chain()
            .unwrap_or_else(|e| panic!("{case_id}: {e}"));
        let office = case.office.to_string();
        for mut replica in federation.replicas(&office) {
            let copy = show_at(
                &mut replica,
                federation.token(&office),
                case_id,
                &office,
                Consistency::Local,
            )
            .await
            .unwrap();
            assert_eq!(copy, case, "{case_id}: every replica holds the same copy");
        }
    }
    let first = federation.show(cases[0]).await;
    let kinds: Vec<&str> = first.history.iter().map(|e| e.kind.as_str()).collect();
    for kind in [
        "registered",
        "accepted",
        "extended",
        "graded",
        "replied",
        "review_requested",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }

    // Request ids are now scoped by who sent them (the signed-in officer): the old build's
    // records (converted, kept until they expire) belonged to a caller who no longer exists.
    let fresh = FileRequest {
        office: "5306".into(),
        registration: Some(federation_proto::v1::Registration {
            channel: "letter".into(),
            petitioner_id: "530602198001010012".into(),
            name: "钱七".into(),
            phone: None,
            category: "land".into(),
            summary: "boundary".into(),
            location: None,
            officer: "registrar".into(),
        }),
        hops: 0,
        request_id: "fixture-new".into(),
        session_id: String::new(),
        ..FileRequest::default()
    };
    let mut city = federation.cases("5306");
    // A new case is filed; old ones are handled.
    let filed = city
        .file(authed(fresh, federation.token("5306")))
        .await
        .unwrap()
        .into_inner();
    let filed = Case::from_bytes(&filed.case_document).unwrap();
    assert_eq!(
        filed.id.seq, 3,
        "numbering continues after the old build's cases"
    );
    let mut township = federation.cases("530602001");
    let accepted = township
        .act(authed(
            accept(cases[6], "530602001", "fixture-accept-7"),
            federation.token("530602001"),
        ))
        .await
        .unwrap()
        .into_inner();
    let accepted = Case::from_bytes(&accepted.case_document).unwrap();
    assert_eq!(accepted.status, Status::Accepted);
    // The reply carries what the accept added, after the entries the case had (its
    // registration, and any clock mark a tick of the reopened office made first: the fixture's
    // clocks are long past, and when that tick runs is the hosts' business).
    assert!(accepted.history_start.entries >= 1, "{accepted:?}");
    let added: Vec<&str> = accepted.history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(added, ["accepted"], "the reply carries what it added");
    let accepted = township
        .act(authed(
            accept(cases[5], "530602001", "fixture-accept-6"),
            federation.token("530602001"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        Case::from_bytes(&accepted.case_document).unwrap().status,
        Status::Accepted,
        "the case handed over by the old build's outbox"
    );
    let three = federation.show(cases[2]).await;
    assert_eq!(three.status, Status::Registered);
    let mut county = federation.cases("530602");
    county
        .act(authed(
            accept(cases[2], "530602", "fixture-accept-3"),
            federation.token("530602"),
        ))
        .await
        .unwrap();
    let three = federation.show(cases[2]).await;
    assert_eq!(three.status, Status::Accepted);
    three.verify_chain().unwrap();

    // The first tick restarts the state hash on every replica alike: they agree again.
    federation
        .wait_for("replicas agree on their state hash", |statuses| {
            settled(statuses, offices)
        })
        .await;
}

//! `liandong verify`: invariants 2, 3, 5 and 7 of docs/design.md, checked on the live
//! federation from every replica's dump.

use std::collections::{BTreeMap, HashMap};

use federation_proto::v1::admin_client::AdminClient;
use federation_proto::v1::DumpRequest;
use liandong_domain::message::Summary;
use liandong_domain::{Case, OfficeCode, SealCount, Status};
use serde_json::{json, Value};

use liandong_node::manifest::Manifest;

use crate::client::{channel, Federation};
use crate::commands::Report;

/// Problems listed per invariant at most (the count is always exact).
const DETAILS_MAX: usize = 10;

struct Check {
    name: &'static str,
    problems: Vec<String>,
    checked: usize,
}

impl Check {
    fn new(name: &'static str) -> Check {
        Check {
            name,
            problems: Vec::new(),
            checked: 0,
        }
    }

    fn json(&self) -> Value {
        invariant_json(self.name, self.checked, &self.problems)
    }
}

/// One invariant's result as `verify` reports it: `{name, ok, detail}`, the detail counting what
/// was checked and listing the first problems.
pub fn invariant_json(name: &str, checked: usize, problems: &[String]) -> Value {
    let detail = if problems.is_empty() {
        format!("{checked} checked")
    } else {
        let shown: Vec<&str> = problems
            .iter()
            .take(DETAILS_MAX)
            .map(String::as_str)
            .collect();
        format!(
            "{} of {checked} failed: {}",
            problems.len(),
            shown.join("; ")
        )
    };
    json!({"name": name, "ok": problems.is_empty(), "detail": detail})
}

/// One replica's dump of one office.
struct Dump {
    office: String,
    replica: u64,
    last_applied: u64,
    state_hash: String,
    outbox_pending: u64,
    cases: Vec<Case>,
    /// Each case's personal-data digest (the dump leaves the data out and carries it).
    petitioner_digests: Vec<Option<String>>,
    index: Vec<Summary>,
    links_out: BTreeMap<String, Value>,
    links_in: BTreeMap<String, Value>,
}

async fn fetch(federation: &Federation, office: &str, replica: u64, addr: &str) -> Option<Dump> {
    let mut client = AdminClient::new(channel(addr).await.ok()?)
        .max_decoding_message_size(federation_proto::MESSAGE_BYTES_MAX);
    let reply = client
        .dump(DumpRequest {
            office: office.to_string(),
        })
        .await
        .ok()?
        .into_inner();
    let document: Value = serde_json::from_slice(&reply.document).ok()?;
    let _ = federation;
    Some(Dump::parse(office, replica, &document))
}

impl Dump {
    /// Reads the Dump RPC's document (`liandong_node::api::admin::dump`).
    fn parse(office: &str, replica: u64, document: &Value) -> Dump {
        let list = |name: &str| document[name].as_array().cloned().unwrap_or_default();
        let map = |name: &str| {
            document[name]
                .as_object()
                .map(|o| o.clone().into_iter().collect())
                .unwrap_or_default()
        };
        let cases: Vec<(Case, Option<String>)> = list("cases")
            .into_iter()
            .filter_map(|value| {
                let case: Case = serde_json::from_value(value.clone()).ok()?;
                let digest = match value.get("petitioner_sha256") {
                    Some(digest) => digest.as_str().map(str::to_string),
                    None => case.petitioner_sha256(),
                };
                Some((case, digest))
            })
            .collect();
        Dump {
            office: office.to_string(),
            replica,
            last_applied: document["last_applied"].as_u64().unwrap_or(0),
            state_hash: document["state_hash"].as_str().unwrap_or("").to_string(),
            outbox_pending: document["outbox_pending"].as_u64().unwrap_or(0),
            cases: cases.iter().map(|(case, _)| case.clone()).collect(),
            petitioner_digests: cases.into_iter().map(|(_, digest)| digest).collect(),
            index: list("index")
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect(),
            links_out: map("links_out"),
            links_in: map("links_in"),
        }
    }
}

pub async fn verify(federation: &Federation) -> anyhow::Result<Report> {
    let mut asks = Vec::new();
    for office in &federation.manifest.offices {
        for member in &office.members {
            if let Some(host) = federation.manifest.host(&member.host) {
                asks.push(fetch(federation, &office.code, member.id, &host.api_addr));
            }
        }
    }
    let dumps: Vec<Dump> = futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    let keys: OfficeKeys = federation
        .manifest
        .offices
        .iter()
        .filter_map(|office| {
            let key = federation.layout.read_office_public_key(&office.code)?;
            Some((office.code.parse().ok()?, key))
        })
        .collect();
    let invariants = check_dumps(&federation.manifest, &dumps, Some(&keys));
    let ok = invariants.iter().all(|i| i["ok"] == true);
    let text = invariants
        .iter()
        .map(|i| {
            format!(
                "{} {}: {}",
                if i["ok"] == true { "ok  " } else { "FAIL" },
                i["name"].as_str().unwrap_or(""),
                i["detail"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Report {
        json: json!({"ok": ok, "invariants": invariants}),
        text,
        ok,
    })
}

/// The same invariants over replica dumps gathered some other way (the deterministic
/// simulator's replicas): `(office, replica id, dump document)`.
pub fn check_documents(manifest: &Manifest, documents: &[(String, u64, Value)]) -> Vec<Value> {
    let dumps: Vec<Dump> = documents
        .iter()
        .map(|(office, replica, document)| Dump::parse(office, *replica, document))
        .collect();
    check_dumps(manifest, &dumps, None)
}

/// Each office's public signing key.
pub type OfficeKeys = BTreeMap<OfficeCode, Vec<u8>>;

/// The invariants; the seals of history entries too when the offices' public keys are given.
fn check_dumps(manifest: &Manifest, dumps: &[Dump], keys: Option<&OfficeKeys>) -> Vec<Value> {
    // The most advanced replica of each office speaks for it.
    let mut best: BTreeMap<String, &Dump> = BTreeMap::new();
    for dump in dumps {
        let entry = best.entry(dump.office.clone()).or_insert(dump);
        if dump.last_applied > entry.last_applied {
            *entry = dump;
        }
    }
    let missing: Vec<&str> = manifest
        .offices
        .iter()
        .map(|o| o.code.as_str())
        .filter(|code| !best.contains_key(*code))
        .collect();
    let checks = [
        single_owner(&best),
        exactly_once(&best),
        convergence(manifest, &best),
        integrity(dumps),
    ];
    let mut invariants: Vec<Value> = checks.iter().map(Check::json).collect();
    if let Some(keys) = keys {
        invariants.push(seals(dumps, keys));
    }
    if !missing.is_empty() {
        invariants.push(json!({"name": "reachability", "ok": false, "detail": format!("no replica answered for {}", missing.join(", "))}));
    }
    invariants
}

/// Invariant 2: at most one office can mutate a case; every forwarding chain ends at one owner.
fn single_owner(best: &BTreeMap<String, &Dump>) -> Check {
    let mut check = Check::new("single_owner");
    let mut copies: HashMap<String, Vec<(&str, &Status)>> = HashMap::new();
    for dump in best.values() {
        for case in &dump.cases {
            copies
                .entry(case.id.to_string())
                .or_default()
                .push((dump.office.as_str(), &case.status));
        }
    }
    for (case_id, holders) in &copies {
        check.checked += 1;
        let owners: Vec<&str> = holders
            .iter()
            .filter(|(_, status)| !matches!(status, Status::Forwarded { .. }))
            .map(|(office, _)| *office)
            .collect();
        if owners.len() != 1 {
            check
                .problems
                .push(format!("{case_id} has {} owners {owners:?}", owners.len()));
            continue;
        }
        for (office, status) in holders {
            let mut hops = 0;
            let mut current = *status;
            while let Status::Forwarded { to } = current {
                hops += 1;
                let at = to.to_string();
                match holders.iter().find(|(o, _)| *o == at) {
                    Some((_, next)) if hops < 32 => current = next,
                    _ => {
                        check.problems.push(format!(
                            "{case_id}: the stub at {office} leads to {at}, which has no copy"
                        ));
                        break;
                    }
                }
            }
        }
    }
    check
}

/// Invariant 3: after quiescence every outbox is empty, and each link's receiver applied
/// exactly the messages its sender sent, once each.
fn exactly_once(best: &BTreeMap<String, &Dump>) -> Check {
    let mut check = Check::new("exactly_once");
    for dump in best.values() {
        if dump.outbox_pending > 0 {
            check.problems.push(format!(
                "{} still holds {} unacknowledged messages",
                dump.office, dump.outbox_pending
            ));
        }
        for (to, link) in &dump.links_out {
            check.checked += 1;
            let sent = link["last_seq"].as_u64().unwrap_or(0);
            let Some(receiver) = best.get(to) else {
                continue;
            };
            let inbox = receiver.links_in.get(&dump.office);
            let through = inbox
                .and_then(|l| l["applied_through"].as_u64())
                .unwrap_or(0);
            let applied = inbox.and_then(|l| l["applied"].as_u64()).unwrap_or(0);
            if through != sent || applied != sent {
                check.problems.push(format!(
                    "link {}->{to}: sent {sent}, receiver applied through {through} ({applied} applications)",
                    dump.office
                ));
            }
        }
    }
    check
}

/// Invariant 5: every ancestor's index equals the owners' truth for its subtree.
fn convergence(manifest: &Manifest, best: &BTreeMap<String, &Dump>) -> Check {
    let mut check = Check::new("convergence");
    let owners: Vec<Summary> = best
        .values()
        .flat_map(|dump| dump.cases.iter())
        .filter(|case| !matches!(case.status, Status::Forwarded { .. }))
        .map(Summary::of)
        .collect();
    for office in &manifest.offices {
        if manifest.children(&office.code).next().is_none() {
            continue;
        }
        let Some(dump) = best.get(&office.code) else {
            continue;
        };
        let code: liandong_domain::OfficeCode = match office.code.parse() {
            Ok(code) => code,
            Err(_) => continue,
        };
        let index: HashMap<String, &Summary> = dump
            .index
            .iter()
            .map(|s| (s.case_id.to_string(), s))
            .collect();
        for truth in owners.iter().filter(|s| code.is_ancestor_of(&s.owner)) {
            check.checked += 1;
            match index.get(&truth.case_id.to_string()) {
                None => check
                    .problems
                    .push(format!("{}'s index lacks {}", office.code, truth.case_id)),
                Some(seen)
                    if seen.owner != truth.owner
                        || seen.status != truth.status
                        || seen.version != truth.version =>
                {
                    check.problems.push(format!(
                        "{}'s index has {} as {} at {} (v{}), the owner says {} at {} (v{})",
                        office.code,
                        truth.case_id,
                        seen.status,
                        seen.owner,
                        seen.version,
                        truth.status,
                        truth.owner,
                        truth.version
                    ))
                }
                Some(_) => {}
            }
        }
    }
    check
}

/// Invariant 7: every case history's hash chain verifies; replicas of an office agree on the
/// state hash at the same applied index.
fn integrity(dumps: &[Dump]) -> Check {
    let mut check = Check::new("integrity");
    for dump in dumps {
        for case in &dump.cases {
            check.checked += 1;
            if let Err(error) = case.verify_chain() {
                check.problems.push(format!(
                    "{} at {} replica {}: {error}",
                    case.id, dump.office, dump.replica
                ));
            }
        }
    }
    let mut by_index: BTreeMap<(&str, u64), Vec<(&str, u64)>> = BTreeMap::new();
    for dump in dumps {
        by_index
            .entry((dump.office.as_str(), dump.last_applied))
            .or_default()
            .push((dump.state_hash.as_str(), dump.replica));
    }
    for ((office, index), hashes) in by_index {
        check.checked += 1;
        if hashes.iter().any(|(hash, _)| *hash != hashes[0].0) {
            check.problems.push(format!(
                "{office} replicas disagree on the state hash at index {index}: {hashes:?}"
            ));
        }
    }
    check
}

/// Every history entry's seal, recomputed from each replica's stored cases: the signature of a
/// signed entry against its signing office's public key, each state hash against the case
/// re-folded from the events, the last one against the stored case itself. Entries written
/// before entries were signed are counted, not refused.
fn seals(dumps: &[Dump], keys: &OfficeKeys) -> Value {
    let mut check = Check::new("seals");
    let mut count = SealCount::default();
    for dump in dumps {
        for (case, digest) in dump.cases.iter().zip(&dump.petitioner_digests) {
            check.checked += 1;
            match case.check_seals(digest.as_deref(), |office| keys.get(office).cloned()) {
                Ok(seen) => {
                    count.signed += seen.signed;
                    count.unsigned += seen.unsigned;
                }
                Err(error) => check.problems.push(format!(
                    "case {} at office {} replica {}: {error}",
                    case.id, dump.office, dump.replica
                )),
            }
        }
    }
    let mut value = check.json();
    if check.problems.is_empty() {
        value["detail"] = Value::from(format!(
            "{} case copies checked: {} entries signed, {} unsigned (written before version {})",
            check.checked,
            count.signed,
            count.unsigned,
            liandong_domain::SEALED_ENTRY_VERSION
        ));
    }
    value["entries_signed"] = Value::from(count.signed);
    value["entries_unsigned"] = Value::from(count.unsigned);
    value
}

//! Who is calling, and may they: officers' tokens, the principals a call can come from, and the
//! one table of what each may do ([`authorize`]).
//!
//! - An **officer** signs in at its office (Officers.Login) and gets a token: its claims (office,
//!   user, roles, issue and expiry time) signed with the office's Ed25519 key. Every replica of
//!   the office verifies it locally, then reads the account as the office replicated it: a
//!   disabled account, or a token issued before the last password change, is refused at once on
//!   every replica, and the roles are the account's current ones.
//! - An **operator** presents an operator certificate naming the offices it may operate.
//! - A **host** presents its host certificate: Raft traffic and federation messages only.
//! - Anything else is **anonymous**.

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use liandong_domain::{CaseCommand, Millis, OfficeCode};
use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::audit_log::AuditLog;
use crate::clock::wall_ms;
use crate::machine::officers;
use crate::raft::types::{AuditRecord, Role};
use crate::replica::Replicas;
use crate::secrets::Secrets;
use crate::tls::PeerIdentity;

/// The gRPC metadata key carrying an officer's token (`Bearer <token>`).
pub const AUTHORIZATION: &str = "authorization";
/// How long a token is valid: a working day.
pub const TOKEN_LIFETIME_MS: Millis = 8 * 3_600_000;
/// A token issued this far in the future (a replica's clock ahead of the verifier's) is still
/// taken.
pub const TOKEN_CLOCK_ALLOWANCE_MS: Millis = 5 * 60_000;
/// The longest token read: a token is a few hundred bytes.
pub const TOKEN_BYTES_MAX: usize = 4_096;
/// The token format's version (its first part).
const TOKEN_VERSION: &str = "v1";

/// What a token says, signed by its office.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub office: String,
    pub user: String,
    pub roles: BTreeSet<Role>,
    pub issued_ms: Millis,
    pub expires_ms: Millis,
}

/// `v1.<claims>.<signature>`, both base64url.
pub fn sign_token(key: &Ed25519KeyPair, claims: &Claims) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signed = format!("{TOKEN_VERSION}.{body}");
    let signature = URL_SAFE_NO_PAD.encode(key.sign(signed.as_bytes()).as_ref());
    format!("{signed}.{signature}")
}

/// The claims of a token, unverified: what the command line shows of its own session.
pub fn read_claims(token: &str) -> Result<Claims, String> {
    let (_, body, _) = split_token(token)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| "the token is not base64url".to_string())?;
    serde_json::from_slice(&bytes).map_err(|_| "the token's claims do not decode".to_string())
}

fn split_token(token: &str) -> Result<(&str, &str, &str), String> {
    if token.len() > TOKEN_BYTES_MAX {
        return Err(format!("a token has at most {TOKEN_BYTES_MAX} bytes"));
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(TOKEN_VERSION), Some(body), Some(signature), None) => {
            Ok((TOKEN_VERSION, body, signature))
        }
        _ => Err("not a Liandong token".to_string()),
    }
}

/// The claims of `token` if `public_key` signed it and it is valid at `now_ms`.
pub fn verify_token(public_key: &[u8], token: &str, now_ms: Millis) -> Result<Claims, String> {
    let (version, body, signature) = split_token(token)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "the token's signature is not base64url".to_string())?;
    let signed = format!("{version}.{body}");
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| "the token's signature does not verify".to_string())?;
    let claims = read_claims(token)?;
    check_token_times(&claims, now_ms)?;
    Ok(claims)
}

/// A token is taken from its issue time (less the clock allowance) until its expiry.
fn check_token_times(claims: &Claims, now_ms: Millis) -> Result<(), String> {
    if now_ms >= claims.expires_ms {
        return Err("the token has expired: log in again".to_string());
    }
    if claims.issued_ms > now_ms + TOKEN_CLOCK_ALLOWANCE_MS {
        return Err("the token is issued in the future".to_string());
    }
    Ok(())
}

/// An officer signed in, as its office's replicated account says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Officer {
    pub office: OfficeCode,
    pub user: String,
    pub roles: BTreeSet<Role>,
}

/// Who a call comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credential: a certificate naming neither offices nor operations.
    Anonymous,
    /// A host certificate naming the offices it carries.
    Host {
        name: String,
        offices: Vec<String>,
    },
    /// An operator certificate naming the offices (with subtrees) it operates.
    Operator {
        name: String,
        operates: Vec<String>,
    },
    Officer(Officer),
}

impl Principal {
    /// What the audit log writes as `user`.
    pub fn who(&self) -> String {
        match self {
            Principal::Anonymous => "-".to_string(),
            Principal::Host { name, .. } => format!("host:{name}"),
            Principal::Operator { name, .. } => format!("operator:{name}"),
            Principal::Officer(officer) => officer.user.clone(),
        }
    }

    /// What the audit log writes as `office`: an officer's own, else the office asked about.
    fn audit_office(&self, office: &OfficeCode) -> String {
        match self {
            Principal::Officer(officer) => officer.office.to_string(),
            _ => office.to_string(),
        }
    }

    fn from_peer(peer: PeerIdentity) -> Principal {
        if let (Some(name), false) = (&peer.operator, peer.operates.is_empty()) {
            return Principal::Operator {
                name: name.clone(),
                operates: peer.operates,
            };
        }
        match peer.host {
            Some(name) if !peer.offices.is_empty() => Principal::Host {
                name,
                offices: peer.offices,
            },
            _ => Principal::Anonymous,
        }
    }
}

/// What a call wants to do, for [`authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    File,
    Act(&'a CaseCommand),
    Show,
    Supervise,
    Orders,
    Query,
    ManageOfficers,
    ReadAudit,
    /// Admin.Status: what the host carries (no personal data).
    Status,
    /// Admin.Dump: an office's state (personal data removed).
    Dump,
    /// Membership: `forwarded` when a replica of the office relays an operator's request.
    Membership {
        forwarded: bool,
    },
    /// Backup.Save: an office's whole state, personal data included (operators only).
    Backup,
    /// Desks.Change: departments, intake points and proxies (admins); routing, task answers
    /// and joint meetings (handlers, leaders).
    Desk(&'a liandong_domain::department::DeskChange),
    /// Desks.ProxyFile: a case filed by a proxy agent with the petitioner's consent.
    ProxyFile,
    /// Desks.Read: departments, tasks, meetings, figures, intake points, proxies.
    DeskRead,
    /// Cases.Session: a joint reception session command at the officer's office.
    Session(&'a liandong_domain::session::SessionCommand),
    /// Cases.Sessions: the sessions an office holds.
    Sessions,
    /// Notices.Policy setting or clearing the office's notice ages (admins).
    NoticePolicy,
    /// Notices.Policy showing the ages, Notices.Read: received notices, red cards.
    NoticeRead,
    /// Sites.ApplyManifest: a new directory of offices for the whole federation (operators of
    /// the region's root office).
    Sites,
    /// Backup.PeerLinks: the other offices' side of their links with an office being restored
    /// (operators of that office only).
    PeerLinks,
    /// Federation.Reports and Federation.Report: the scheduled supervision reports an office
    /// keeps (who may: as for Query).
    Reports,
}

impl Action<'_> {
    pub fn rpc(&self) -> &'static str {
        match self {
            Action::File => "Cases.File",
            Action::Act(_) => "Cases.Act",
            Action::Show => "Cases.Show",
            Action::Supervise => "Cases.Supervise",
            Action::Orders => "Cases.Orders",
            Action::Query => "Federation.Query",
            Action::ManageOfficers => "Officers",
            Action::ReadAudit => "Audit.Read",
            Action::Status => "Admin.Status",
            Action::Dump => "Admin.Dump",
            Action::Membership { .. } => "Membership",
            Action::Backup => "Backup.Save",
            Action::Desk(_) => "Desks.Change",
            Action::ProxyFile => "Desks.ProxyFile",
            Action::DeskRead => "Desks.Read",
            Action::Session(_) => "Cases.Session",
            Action::Sessions => "Cases.Sessions",
            Action::NoticePolicy => "Notices.Policy",
            Action::NoticeRead => "Notices.Read",
            Action::Sites => "Sites.ApplyManifest",
            Action::PeerLinks => "Backup.PeerLinks",
            Action::Reports => "Federation.Reports",
        }
    }

    /// The roles an officer needs for this action (any one of them); None: not an officer's.
    pub fn roles(&self) -> Option<&'static [Role]> {
        use Role::*;
        Some(match self {
            Action::File => &[Registrar],
            Action::Act(command) => match command {
                CaseCommand::Decline { .. } | CaseCommand::Extend { .. } => &[Handler, Leader],
                CaseCommand::SetGrade { .. } => &[Leader],
                CaseCommand::Assign { .. } => &[Handler, Supervisor],
                CaseCommand::RequestReview => &[Registrar, Handler],
                _ => &[Handler],
            },
            Action::Show => &[Registrar, Handler, Leader, Supervisor, Auditor],
            Action::Supervise => &[Supervisor],
            Action::Orders | Action::Query | Action::Reports => &[Supervisor, Leader, Auditor],
            Action::ManageOfficers => &[Admin],
            Action::ReadAudit => &[Auditor],
            Action::Status | Action::Dump | Action::Membership { .. } | Action::Backup => {
                return None
            }
            Action::Desk(change) => {
                use liandong_domain::department::DeskChange;
                match change {
                    DeskChange::AddDepartment { .. }
                    | DeskChange::DisableDepartment { .. }
                    | DeskChange::AddIntakePoint { .. }
                    | DeskChange::AddProxy { .. } => &[Admin],
                    DeskChange::ProxyFile { .. } => &[Registrar],
                    _ => &[Handler, Leader],
                }
            }
            Action::ProxyFile => &[Registrar],
            Action::DeskRead => &[Registrar, Handler, Leader, Supervisor, Auditor, Admin],
            Action::Session(command) => {
                use liandong_domain::session::SessionCommand as C;
                match command {
                    C::Schedule(_) => &[Leader, Supervisor],
                    C::Answer { .. } => &[Leader],
                    C::Book { .. } => &[Registrar],
                    C::Recording { .. } => &[Registrar, Leader],
                }
            }
            Action::Sessions => &[Registrar, Handler, Leader, Supervisor, Auditor],
            Action::NoticePolicy => &[Admin],
            Action::NoticeRead => &[Handler, Leader, Supervisor, Auditor, Admin],
            Action::Sites | Action::PeerLinks => return None,
        })
    }
}

/// Why a call was refused: `UNAUTHENTICATED` (no fitting credential) or `PERMISSION_DENIED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unauthenticated(String),
    PermissionDenied(String),
}

impl Refusal {
    pub fn status(&self) -> Status {
        match self {
            Refusal::Unauthenticated(reason) => Status::unauthenticated(reason.clone()),
            Refusal::PermissionDenied(reason) => Status::permission_denied(reason.clone()),
        }
    }

    fn result(&self) -> String {
        match self {
            Refusal::Unauthenticated(reason) => format!("unauthenticated: {reason}"),
            Refusal::PermissionDenied(reason) => format!("permission denied: {reason}"),
        }
    }
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The one table of who may do what, for which office. Officers act only for their own office
/// (a supervisor's subtree is reached through its own office's index); operators operate the
/// offices their certificate names and their subtrees, and read no personal data; hosts only
/// replicate and deliver (their own services), relay an operator's membership request, and see
/// the status of the offices they carry.
pub fn authorize(
    principal: &Principal,
    action: Action<'_>,
    office: &OfficeCode,
) -> Result<(), Refusal> {
    let rpc = action.rpc();
    match (principal, action.roles()) {
        (Principal::Officer(officer), Some(needed)) => {
            if officer.office != *office {
                return Err(Refusal::PermissionDenied(format!(
                    "officer {} of office {} acts only for its own office, not {office}",
                    officer.user, officer.office
                )));
            }
            if !needed.iter().any(|role| officer.roles.contains(role)) {
                return Err(Refusal::PermissionDenied(format!(
                    "{rpc} needs the role {}; officer {} has {}",
                    roles_text(needed),
                    officer.user,
                    roles_text(&officer.roles.iter().copied().collect::<Vec<_>>())
                )));
            }
            Ok(())
        }
        (Principal::Operator { operates, .. }, None) => {
            let covers = operates
                .iter()
                .any(|code| code.parse::<OfficeCode>().is_ok_and(|c| c.covers(office)));
            if covers {
                Ok(())
            } else {
                Err(Refusal::PermissionDenied(format!(
                    "the operator certificate operates {}, not office {office}",
                    operates.join(", ")
                )))
            }
        }
        (Principal::Host { offices, .. }, None)
            if matches!(
                action,
                Action::Status | Action::Membership { forwarded: true }
            ) =>
        {
            if offices.iter().any(|code| code == office.as_str()) {
                Ok(())
            } else {
                Err(Refusal::PermissionDenied(format!(
                    "the host certificate does not name office {office}"
                )))
            }
        }
        (Principal::Anonymous, _) => Err(Refusal::Unauthenticated(format!(
            "{rpc} needs {}",
            if action.roles().is_some() {
                "an officer's token: log in first (`liandong login`)"
            } else {
                "an operator certificate"
            }
        ))),
        (_, Some(_)) => Err(Refusal::Unauthenticated(format!(
            "{rpc} is officers' work: it needs an officer's token (`liandong login`), not a \
             certificate"
        ))),
        (_, None) => Err(Refusal::PermissionDenied(format!(
            "{rpc} needs an operator certificate; {} is not an operator",
            principal.who()
        ))),
    }
}

/// Who a token that did not verify claims to be (`unverified:<user>@<office>`), for the audit
/// log; `-` when it claims nothing readable.
fn claimed(metadata: &MetadataMap) -> String {
    match bearer(metadata)
        .and_then(Result::ok)
        .map(|t| read_claims(&t))
    {
        Some(Ok(claims)) if crate::machine::officers::check_user(&claims.user).is_ok() => {
            let office: String = claims.office.chars().take(9).collect();
            format!("unverified:{}@{office}", claims.user)
        }
        _ => "-".to_string(),
    }
}

/// A call's audit record, `ok` until told otherwise.
fn audit_record(
    user: String,
    office: String,
    action: Action<'_>,
    case_id: &str,
    request_id: &str,
) -> AuditRecord {
    AuditRecord {
        at_ms: wall_ms(),
        user,
        office,
        rpc: action.rpc().to_string(),
        case_id: case_id.to_string(),
        request_id: request_id.to_string(),
        result: "ok".to_string(),
        detail: String::new(),
        count: 1,
    }
}

/// The bearer token of a request's metadata, if any.
pub fn bearer(metadata: &MetadataMap) -> Option<Result<String, String>> {
    let value = metadata.get(AUTHORIZATION)?;
    let text = match value.to_str() {
        Ok(text) => text,
        Err(_) => return Some(Err("the authorization header is not text".to_string())),
    };
    Some(
        text.strip_prefix("Bearer ")
            .map(str::to_string)
            .ok_or_else(|| "the authorization header is not `Bearer <token>`".to_string()),
    )
}

/// The offices' keys this host holds (those it carries), the accounts, and the audit log: what
/// every service checks a call against.
pub struct Trust {
    keys: BTreeMap<OfficeCode, Ed25519KeyPair>,
    replicas: Replicas,
    pub secrets: Secrets,
    pub audit: AuditLog,
    verified: VerifiedTokens,
}

/// Tokens whose signature this host has already checked: an officer's every call carries the
/// same token for hours, and an Ed25519 verification costs more than the rest of the check. A
/// token is found by the SHA-256 of the office's public key and the token, so a token signed by
/// another key is checked afresh; its expiry and issue time are checked at every call, and the
/// account (enabled, sessions not ended) is read at every call, as before. Bounded: at most
/// [`VERIFIED_TOKENS_MAX`] entries, the expired ones dropped when it is full, all of them when
/// that frees nothing.
#[derive(Default)]
struct VerifiedTokens {
    tokens: std::sync::Mutex<std::collections::HashMap<[u8; 32], Claims>>,
}

/// Tokens a host remembers as verified at most.
pub const VERIFIED_TOKENS_MAX: usize = 4_096;

impl VerifiedTokens {
    fn fingerprint(public_key: &[u8], token: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update((public_key.len() as u64).to_le_bytes());
        hasher.update(public_key);
        hasher.update(token.as_bytes());
        hasher.finalize().into()
    }

    /// [`verify_token`], with the signature checked once per token and key.
    fn verify(&self, public_key: &[u8], token: &str, now_ms: Millis) -> Result<Claims, String> {
        let fingerprint = Self::fingerprint(public_key, token);
        let known = self.lock().get(&fingerprint).cloned();
        let claims = match known {
            Some(claims) => claims,
            None => {
                let claims = verify_token(public_key, token, now_ms)?;
                let mut tokens = self.lock();
                if tokens.len() >= VERIFIED_TOKENS_MAX {
                    tokens.retain(|_, claims| claims.expires_ms > now_ms);
                    if tokens.len() >= VERIFIED_TOKENS_MAX {
                        tokens.clear();
                    }
                }
                tokens.insert(fingerprint, claims.clone());
                return Ok(claims);
            }
        };
        check_token_times(&claims, now_ms)?;
        Ok(claims)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 32], Claims>> {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Trust {
    /// Loads the signing key of every office `replicas` carries from `secrets`.
    pub fn load(replicas: Replicas, secrets: Secrets) -> anyhow::Result<Trust> {
        let mut keys = BTreeMap::new();
        for replica in replicas.iter() {
            let key = secrets
                .office_key(replica.office.as_str())
                .map_err(|e| anyhow::anyhow!("office {}'s signing key: {e}", replica.office))?;
            keys.insert(replica.office.clone(), key);
        }
        Ok(Trust {
            keys,
            replicas,
            secrets,
            audit: AuditLog::default(),
            verified: VerifiedTokens::default(),
        })
    }

    pub fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// A token for `user` of `office` with `roles`, valid from now.
    pub fn issue(
        &self,
        office: &OfficeCode,
        user: &str,
        roles: &BTreeSet<Role>,
    ) -> Result<(String, Claims), Status> {
        let key = self.keys.get(office).ok_or_else(|| {
            Status::not_found(format!("office {office} is not carried by this host"))
        })?;
        let now = wall_ms();
        let claims = Claims {
            office: office.to_string(),
            user: user.to_string(),
            roles: roles.clone(),
            issued_ms: now,
            expires_ms: now + TOKEN_LIFETIME_MS,
        };
        Ok((sign_token(key, &claims), claims))
    }

    /// Who sent `request`: an officer (a token verified and its account checked), else what its
    /// certificate says. A token that does not verify is refused, not ignored.
    pub fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Refusal> {
        if let Some(token) = bearer(request.metadata()) {
            return self
                .officer_of(&token.map_err(Refusal::Unauthenticated)?)
                .map(Principal::Officer);
        }
        match crate::tls::peer(request) {
            Ok(peer) => Ok(Principal::from_peer(peer)),
            Err(revoked @ crate::tls::PeerError::Revoked(_)) => {
                Err(Refusal::Unauthenticated(revoked.to_string()))
            }
            Err(crate::tls::PeerError::Missing(_)) => Ok(Principal::Anonymous),
        }
    }

    fn officer_of(&self, token: &str) -> Result<Officer, Refusal> {
        let unauthenticated = |reason: String| Refusal::Unauthenticated(reason);
        let claims = read_claims(token).map_err(unauthenticated)?;
        let office: OfficeCode = claims
            .office
            .parse()
            .map_err(|_| unauthenticated("the token names no office".into()))?;
        let key = self.keys.get(&office).ok_or_else(|| {
            unauthenticated(format!(
                "a token of office {office}, which this host does not carry: an officer acts \
                 only for its own office"
            ))
        })?;
        let claims = self
            .verified
            .verify(&crate::secrets::public_key(key), token, wall_ms())
            .map_err(unauthenticated)?;
        let replica = self
            .replicas
            .get(&office)
            .ok_or_else(|| unauthenticated(format!("office {office} is not carried here")))?;
        let account = officers::load(&replica.state_machine, &claims.user)
            .map_err(|e| unauthenticated(format!("reading the account: {e}")))?
            .ok_or_else(|| unauthenticated(format!("officer {} no longer exists", claims.user)))?;
        if !account.enabled {
            return Err(unauthenticated(format!(
                "officer {} is disabled",
                claims.user
            )));
        }
        if claims.issued_ms < account.tokens_valid_from_ms {
            return Err(unauthenticated(
                "this session ended (password changed or account disabled): log in again".into(),
            ));
        }
        Ok(Officer {
            office,
            user: account.user,
            roles: account.roles,
        })
    }

    /// Checks `request` may do `action` for `office`. A refusal is recorded in the office's
    /// audit log (when this host carries it) and returned as the call's status; an allowed call
    /// is the caller's to record (with its write, or as a read).
    pub fn check<T>(
        &self,
        request: &Request<T>,
        action: Action<'_>,
        office: &OfficeCode,
        case_id: &str,
        request_id: &str,
    ) -> Result<Principal, Status> {
        let outcome = self
            .principal(request)
            .and_then(|principal| authorize(&principal, action, office).map(|()| principal));
        match outcome {
            Ok(principal) => Ok(principal),
            Err(refusal) => {
                let (user, audit_office) = match self.principal(request) {
                    Ok(principal) => (principal.who(), principal.audit_office(office)),
                    Err(_) => (claimed(request.metadata()), office.to_string()),
                };
                let mut record = audit_record(user, audit_office, action, case_id, request_id);
                record.result = refusal.result();
                let anonymous = matches!(refusal, Refusal::Unauthenticated(_));
                self.audit.record_refusal(office, record, anonymous);
                Err(refusal.status())
            }
        }
    }

    /// The audit record of an allowed call by `principal`.
    pub fn record_of(
        principal: &Principal,
        action: Action<'_>,
        office: &OfficeCode,
        case_id: &str,
        request_id: &str,
    ) -> AuditRecord {
        let audit_office = principal.audit_office(office);
        audit_record(principal.who(), audit_office, action, case_id, request_id)
    }

    /// Records a call that wrote nothing (a read, a login) in `office`'s audit log; refused
    /// with UNAVAILABLE when the log's backlog is full (the call must not go unrecorded).
    pub fn record(&self, office: &OfficeCode, record: AuditRecord) -> Result<(), Status> {
        self.audit.record(office, record)
    }

    /// Queues the audit record of a status call: it waits for the office's next append (see
    /// [`super::audit_log`]).
    pub fn record_observation(
        &self,
        office: &OfficeCode,
        record: AuditRecord,
    ) -> Result<(), Status> {
        self.audit.record_observation(office, record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> OfficeCode {
        text.parse().unwrap()
    }

    fn officer(office: &str, roles: &[Role]) -> Principal {
        Principal::Officer(Officer {
            office: code(office),
            user: "u".into(),
            roles: roles.iter().copied().collect(),
        })
    }

    fn new_key() -> Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap()
    }

    /// A registrar's claims at 530602, issued at 1,000 ms for a token's lifetime.
    fn clerk_claims() -> Claims {
        Claims {
            office: "530602".into(),
            user: "clerk".into(),
            roles: BTreeSet::from([Role::Registrar]),
            issued_ms: 1_000,
            expires_ms: 1_000 + TOKEN_LIFETIME_MS,
        }
    }

    /// A token verifies with its office's key only, and not once changed or expired.
    #[test]
    fn tokens_verify_only_untouched_and_in_time() {
        let (key, other) = (new_key(), new_key());
        let claims = clerk_claims();
        let token = sign_token(&key, &claims);
        let public = crate::secrets::public_key(&key);
        assert_eq!(verify_token(&public, &token, 2_000), Ok(claims.clone()));
        assert!(verify_token(&crate::secrets::public_key(&other), &token, 2_000).is_err());
        assert!(verify_token(&public, &token, 1_000 + TOKEN_LIFETIME_MS).is_err());
        // The claims changed to another role, the signature kept.
        let mut forged = claims;
        forged.roles.insert(Role::Admin);
        let forged_body = sign_token(&other, &forged);
        let parts: Vec<&str> = token.split('.').collect();
        let forged_parts: Vec<&str> = forged_body.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
        assert!(verify_token(&public, &spliced, 2_000).is_err());
        assert!(verify_token(&public, "garbage", 2_000).is_err());
        assert!(verify_token(&public, &"x".repeat(TOKEN_BYTES_MAX + 1), 2_000).is_err());
    }

    /// A token verified once is taken again without its signature checked, but only under the
    /// same key, and never past its expiry; the remembered set stays bounded.
    #[test]
    fn verified_tokens_are_remembered_per_key_until_they_expire() {
        let (key, other) = (new_key(), new_key());
        let claims = clerk_claims();
        let token = sign_token(&key, &claims);
        let (public, other_public) = (
            crate::secrets::public_key(&key),
            crate::secrets::public_key(&other),
        );
        let verified = VerifiedTokens::default();
        assert_eq!(verified.verify(&public, &token, 2_000), Ok(claims.clone()));
        assert_eq!(verified.lock().len(), 1);
        assert_eq!(verified.verify(&public, &token, 3_000), Ok(claims.clone()));
        // Remembered under the signing key only: another office's key checks it afresh.
        assert!(verified.verify(&other_public, &token, 3_000).is_err());
        // Remembered, yet refused once expired.
        assert!(verified
            .verify(&public, &token, 1_000 + TOKEN_LIFETIME_MS)
            .is_err());
        // A bad token is refused and not remembered.
        assert!(verified.verify(&public, "v1.garbage.x", 2_000).is_err());
        assert_eq!(verified.lock().len(), 1);
        // Full: the expired ones go first, then all.
        for user in 0..VERIFIED_TOKENS_MAX + 10 {
            let claims = Claims {
                user: format!("u{user}"),
                ..claims.clone()
            };
            let token = sign_token(&key, &claims);
            assert!(verified.verify(&public, &token, 2_000).is_ok());
            assert!(verified.lock().len() <= VERIFIED_TOKENS_MAX);
        }
    }

    /// Every action × principal kind × role × scope: the allowed pairs and only those.
    #[test]
    fn the_table_allows_exactly_what_each_principal_may_do() {
        let accept = CaseCommand::Accept {
            officer: "x".into(),
        };
        let grade = CaseCommand::SetGrade {
            grade: liandong_domain::Grade::A,
            leader: "l".into(),
            department: "d".into(),
            plan: "p".into(),
            deadline: 0,
        };
        let add_department = liandong_domain::department::DeskChange::AddDepartment {
            code: "housing".into(),
            name: "住建".into(),
        };
        let answer_task = liandong_domain::department::DeskChange::AnswerTask {
            case_id: "530602-2026-000001".parse().unwrap(),
            department: "housing".into(),
            text: "t".into(),
            officer: "x".into(),
        };
        let actions = [
            Action::File,
            Action::Act(&accept),
            Action::Act(&grade),
            Action::Show,
            Action::Supervise,
            Action::Orders,
            Action::Query,
            Action::ManageOfficers,
            Action::ReadAudit,
            Action::Status,
            Action::Dump,
            Action::Membership { forwarded: false },
            Action::Membership { forwarded: true },
            Action::Desk(&add_department),
            Action::Desk(&answer_task),
            Action::ProxyFile,
            Action::DeskRead,
        ];
        // Departments are the admin's; tasks the handler's and leader's.
        assert_eq!(
            Action::Desk(&add_department).roles(),
            Some(&[Role::Admin][..])
        );
        assert_eq!(
            Action::Desk(&answer_task).roles(),
            Some(&[Role::Handler, Role::Leader][..])
        );
        // Scopes seen from county 530602.
        let scopes = [
            ("own", "530602"),
            ("descendant", "530602001"),
            ("ancestor", "5306"),
            ("sibling", "530621"),
            ("other county", "530621001"),
        ];
        for action in actions {
            for (scope, office) in scopes {
                let office = code(office);
                let own = scope == "own";
                for role in Role::ALL {
                    let allowed = authorize(&officer("530602", &[role]), action, &office).is_ok();
                    let expected = own && action.roles().is_some_and(|r| r.contains(&role));
                    assert_eq!(allowed, expected, "officer {role} {action:?} {scope}");
                }
                let operator = Principal::Operator {
                    name: "it".into(),
                    operates: vec!["530602".into()],
                };
                let expected = action.roles().is_none() && matches!(scope, "own" | "descendant");
                assert_eq!(
                    authorize(&operator, action, &office).is_ok(),
                    expected,
                    "operator {action:?} {scope}"
                );
                let host = Principal::Host {
                    name: "h".into(),
                    offices: vec!["530602".into()],
                };
                let expected = own
                    && matches!(
                        action,
                        Action::Status | Action::Membership { forwarded: true }
                    );
                assert_eq!(
                    authorize(&host, action, &office).is_ok(),
                    expected,
                    "host {action:?} {scope}"
                );
                assert!(matches!(
                    authorize(&Principal::Anonymous, action, &office),
                    Err(Refusal::Unauthenticated(_))
                ));
            }
        }
    }

    /// A certificate is never an officer: officers' work asks for a token, not a better
    /// certificate.
    #[test]
    fn certificates_get_unauthenticated_for_officers_work() {
        let host = Principal::Host {
            name: "h".into(),
            offices: vec!["530602".into()],
        };
        assert!(matches!(
            authorize(&host, Action::Show, &code("530602")),
            Err(Refusal::Unauthenticated(_))
        ));
        let operator = Principal::Operator {
            name: "it".into(),
            operates: vec!["53".into()],
        };
        assert!(matches!(
            authorize(&operator, Action::File, &code("530602")),
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(matches!(
            authorize(
                &officer("530602", &Role::ALL),
                Action::Dump,
                &code("530602")
            ),
            Err(Refusal::PermissionDenied(_))
        ));
    }
}

//! What the log carries about people: officer accounts and their roles, changes to them, and the
//! audit log's records. Plain data shared by the state machine (`machine::officers`,
//! `machine::audit`) and the APIs that propose them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use liandong_domain::Millis;
use serde::{Deserialize, Serialize};

/// What an officer may do. An account holds one or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Registers petitions (登记).
    Registrar,
    /// Accepts, declines, transfers, assigns, extends, replies, returns, answers supervision.
    Handler,
    /// Grades major cases with the four fixed points; may also decline and extend.
    Leader,
    /// Queries and statistics over the office's subtree; supervision orders downwards.
    Supervisor,
    /// Reads histories, the audit log, and personal data with a reason.
    Auditor,
    /// Manages the office's accounts.
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Registrar,
        Role::Handler,
        Role::Leader,
        Role::Supervisor,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Registrar => "registrar",
            Role::Handler => "handler",
            Role::Leader => "leader",
            Role::Supervisor => "supervisor",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                let words: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!(
                    "unknown role {:?}: one of {}",
                    text.chars().take(32).collect::<String>(),
                    words.join(", ")
                )
            })
    }
}

/// One officer account of an office, as every replica keeps it (`officer/<user>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfficerRecord {
    pub user: String,
    pub roles: BTreeSet<Role>,
    /// The password as an argon2id PHC string (salted); never the password itself.
    pub password_hash: String,
    pub enabled: bool,
    /// Failed logins in a row since the last success or lock.
    pub failed_logins: u32,
    /// Wall time (Unix ms) until which logins are refused after too many failures.
    pub locked_until_ms: Millis,
    /// Tokens issued before this wall time (Unix ms) are void: a password reset or a disable
    /// ends every session the account had.
    pub tokens_valid_from_ms: Millis,
    pub created_ms: Millis,
    pub changed_ms: Millis,
}

impl OfficerRecord {
    /// The account without its password hash: what `officer list` shows.
    pub fn public_view(&self) -> serde_json::Value {
        serde_json::json!({
            "user": self.user,
            "roles": self.roles,
            "enabled": self.enabled,
            "locked_until_ms": self.locked_until_ms,
            "failed_logins": self.failed_logins,
            "created_ms": self.created_ms,
            "changed_ms": self.changed_ms,
        })
    }
}

/// A change to the office's accounts. Every time in it is the wall time (Unix ms) of the replica
/// that proposed it, so every replica applies the same change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// Externally tagged (no `#[serde(tag)]`): stored in the log with the binary codec, which cannot
/// read internally tagged enums.
#[serde(rename_all = "snake_case")]
pub enum OfficerChange {
    /// A new account (refused if the user exists).
    Add {
        user: String,
        roles: BTreeSet<Role>,
        password_hash: String,
        at_ms: Millis,
    },
    /// The office's first `admin`, from the hash `federation init` left for the hosts: a no-op
    /// once the account exists, so its initial password stays valid until an admin changes it.
    Bootstrap {
        user: String,
        password_hash: String,
        at_ms: Millis,
    },
    /// A new password; every token issued before is void.
    SetPassword {
        user: String,
        password_hash: String,
        at_ms: Millis,
    },
    /// Disable (every token void at once) or enable an account.
    SetEnabled {
        user: String,
        enabled: bool,
        at_ms: Millis,
    },
    /// A wrong password: counts towards the lock.
    LoginFailed { user: String, at_ms: Millis },
    /// A right password after failures: the count starts again.
    LoginSucceeded { user: String, at_ms: Millis },
}

impl OfficerChange {
    pub fn user(&self) -> &str {
        match self {
            OfficerChange::Add { user, .. }
            | OfficerChange::Bootstrap { user, .. }
            | OfficerChange::SetPassword { user, .. }
            | OfficerChange::SetEnabled { user, .. }
            | OfficerChange::LoginFailed { user, .. }
            | OfficerChange::LoginSucceeded { user, .. } => user,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            OfficerChange::Add { .. } => "add",
            OfficerChange::Bootstrap { .. } => "bootstrap",
            OfficerChange::SetPassword { .. } => "set_password",
            OfficerChange::SetEnabled { .. } => "set_enabled",
            OfficerChange::LoginFailed { .. } => "login_failed",
            OfficerChange::LoginSucceeded { .. } => "login_succeeded",
        }
    }
}

/// One call as the audit log records it: who, for which office, which RPC, on which case, with
/// which request id, what came of it, when. Identical records of one flush (status polling, a
/// client retrying a refused call) are kept once with their `count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Wall time (Unix ms) at the replica that served the call.
    pub at_ms: Millis,
    /// `<user>` of an officer, `operator:<name>`, `host:<name>`, or `-` for no credential.
    pub user: String,
    /// The caller's office (an officer's), or the office the call was about.
    pub office: String,
    pub rpc: String,
    /// Empty when the call names no case.
    pub case_id: String,
    /// Empty when the call carries none.
    pub request_id: String,
    /// `ok`, or the refusal's status and reason.
    pub result: String,
    /// Why personal data was read (an auditor's reason), or other context; may be empty.
    #[serde(default)]
    pub detail: String,
    /// How many identical calls this record stands for (at least 1).
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// The longest text of each audit field kept (longer input is cut, never refused: the audit
/// log must take every call).
pub const AUDIT_FIELD_CHARS_MAX: usize = 200;

impl AuditRecord {
    /// Every field cut to [`AUDIT_FIELD_CHARS_MAX`] characters, control characters replaced.
    pub fn bounded(mut self) -> AuditRecord {
        for field in [
            &mut self.user,
            &mut self.office,
            &mut self.rpc,
            &mut self.case_id,
            &mut self.request_id,
            &mut self.result,
            &mut self.detail,
        ] {
            if field.chars().count() > AUDIT_FIELD_CHARS_MAX || field.chars().any(char::is_control)
            {
                *field = field
                    .chars()
                    .take(AUDIT_FIELD_CHARS_MAX)
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
            }
        }
        self.count = self.count.max(1);
        self
    }

    /// The same call (everything but the time and the count): coalesced into one record.
    pub fn same_call(&self, other: &AuditRecord) -> bool {
        (
            &self.user,
            &self.office,
            &self.rpc,
            &self.case_id,
            &self.request_id,
            &self.result,
            &self.detail,
        ) == (
            &other.user,
            &other.office,
            &other.rpc,
            &other.case_id,
            &other.request_id,
            &other.result,
            &other.detail,
        )
    }
}

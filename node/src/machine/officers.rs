//! Officer accounts: office data, replicated in the office's Raft group like its cases. Applying a
//! change is deterministic (every time in it was stamped by the replica that proposed it); the
//! APIs hash passwords and check logins before they propose anything.

use std::collections::BTreeSet;

use liandong_domain::Millis;

use super::apply::{refused, ApplyError, Applying, Outcome};
use super::{keys, Read};
use crate::raft::types::{OfficerChange, OfficerRecord, RejectKind, Response, Role};
use crate::store::codec::{decode, encode};

/// Accounts one office keeps at most.
pub const OFFICERS_PER_OFFICE_MAX: usize = 1_000;
/// Failed logins in a row that lock an account.
pub const LOGIN_FAILURES_MAX: u32 = 5;
/// How long a locked account refuses logins.
pub const LOCKOUT_MS: Millis = 15 * 60 * 1_000;
/// Longest user name: letters, digits, '.', '_' and '-'.
pub const USER_CHARS_MAX: usize = 32;
/// Longest password hash kept (an argon2id PHC string is about 100 characters).
pub const PASSWORD_HASH_CHARS_MAX: usize = 256;

/// A user name: 1 to [`USER_CHARS_MAX`] ASCII letters, digits, '.', '_' or '-', starting with a
/// letter or digit. It is written into case histories as the officer, so it must be plain.
pub fn check_user(user: &str) -> Result<(), String> {
    let well_formed = !user.is_empty()
        && user.len() <= USER_CHARS_MAX
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && user.as_bytes()[0].is_ascii_alphanumeric();
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "bad user name {:?}: 1 to {USER_CHARS_MAX} letters, digits, '.', '_' or '-', \
             starting with a letter or digit",
            user.chars().take(USER_CHARS_MAX + 8).collect::<String>()
        ))
    }
}

/// The account `user`, as applied so far.
pub(crate) fn load(reader: &impl Read, user: &str) -> Result<Option<OfficerRecord>, ApplyError> {
    match reader.get(&keys::officer(user))? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// Every account of the office, by user name.
pub(crate) fn all(reader: &impl Read) -> Result<Vec<OfficerRecord>, ApplyError> {
    let end = crate::store::keys::prefix_end(keys::OFFICER);
    reader
        .scan(keys::OFFICER, &end, OFFICERS_PER_OFFICE_MAX)?
        .iter()
        .map(|(_, value)| Ok(decode(value)?))
        .collect()
}

fn store(apply: &mut Applying<'_, '_>, record: OfficerRecord) -> Response {
    apply
        .txn
        .put(keys::officer(&record.user), encode(&record));
    Response::Officer {
        record: Box::new(record),
    }
}

fn check_hash(hash: &str) -> Result<(), String> {
    if hash.starts_with("$argon2id$") && hash.len() <= PASSWORD_HASH_CHARS_MAX {
        Ok(())
    } else {
        Err("the password hash is not an argon2id PHC string".to_string())
    }
}

/// Applies one change to the office's accounts.
pub(super) fn apply(apply: &mut Applying<'_, '_>, change: &OfficerChange) -> Outcome<Response> {
    let user = change.user();
    if let Err(reason) = check_user(user) {
        return Ok(Err(refused(RejectKind::Invalid, "bad_user", reason)));
    }
    let existing = load(apply.txn, user)?;
    match (change, existing) {
        (
            OfficerChange::Add {
                roles,
                password_hash,
                at_ms,
                ..
            },
            None,
        ) => add(apply, user, roles, password_hash, *at_ms),
        (OfficerChange::Add { .. }, Some(_)) => Ok(Err(refused(
            RejectKind::Forbidden,
            "officer_exists",
            format!("officer {user} already exists"),
        ))),
        (
            OfficerChange::Bootstrap {
                password_hash,
                at_ms,
                ..
            },
            None,
        ) => add(
            apply,
            user,
            &BTreeSet::from([Role::Admin]),
            password_hash,
            *at_ms,
        ),
        (OfficerChange::Bootstrap { .. }, Some(record)) => Ok(Ok(Response::Officer {
            record: Box::new(record),
        })),
        (_, None) => Ok(Err(refused(
            RejectKind::NotFound,
            "officer_not_found",
            format!("no officer {user} at this office"),
        ))),
        (change, Some(record)) => change_existing(apply, change, record),
    }
}

fn add(
    apply: &mut Applying<'_, '_>,
    user: &str,
    roles: &BTreeSet<Role>,
    password_hash: &str,
    at_ms: Millis,
) -> Outcome<Response> {
    if let Err(reason) = check_hash(password_hash) {
        return Ok(Err(refused(RejectKind::Invalid, "bad_password_hash", reason)));
    }
    if roles.is_empty() {
        return Ok(Err(refused(
            RejectKind::Invalid,
            "no_roles",
            "an officer needs at least one role",
        )));
    }
    if all(apply.txn)?.len() >= OFFICERS_PER_OFFICE_MAX {
        return Ok(Err(refused(
            RejectKind::Forbidden,
            "too_many_officers",
            format!("an office keeps at most {OFFICERS_PER_OFFICE_MAX} officers"),
        )));
    }
    let record = OfficerRecord {
        user: user.to_string(),
        roles: roles.clone(),
        password_hash: password_hash.to_string(),
        enabled: true,
        failed_logins: 0,
        locked_until_ms: 0,
        tokens_valid_from_ms: 0,
        created_ms: at_ms,
        changed_ms: at_ms,
    };
    Ok(Ok(store(apply, record)))
}

fn change_existing(
    apply: &mut Applying<'_, '_>,
    change: &OfficerChange,
    mut record: OfficerRecord,
) -> Outcome<Response> {
    match change {
        OfficerChange::SetPassword {
            password_hash,
            at_ms,
            ..
        } => {
            if let Err(reason) = check_hash(password_hash) {
                return Ok(Err(refused(RejectKind::Invalid, "bad_password_hash", reason)));
            }
            record.password_hash = password_hash.clone();
            record.failed_logins = 0;
            record.locked_until_ms = 0;
            record.tokens_valid_from_ms = *at_ms;
            record.changed_ms = *at_ms;
        }
        OfficerChange::SetEnabled { enabled, at_ms, .. } => {
            if !enabled && record.enabled && record.roles.contains(&Role::Admin) {
                let other_admins = all(apply.txn)?
                    .iter()
                    .filter(|o| o.user != record.user && o.enabled)
                    .any(|o| o.roles.contains(&Role::Admin));
                if !other_admins {
                    return Ok(Err(refused(
                        RejectKind::Forbidden,
                        "last_admin",
                        format!(
                            "{} is the office's last enabled admin: disabling it would leave \
                             nobody to manage accounts",
                            record.user
                        ),
                    )));
                }
            }
            record.enabled = *enabled;
            if !enabled {
                record.tokens_valid_from_ms = *at_ms;
            }
            record.changed_ms = *at_ms;
        }
        OfficerChange::LoginFailed { at_ms, .. } => {
            record.failed_logins = record.failed_logins.saturating_add(1);
            if record.failed_logins >= LOGIN_FAILURES_MAX {
                record.failed_logins = 0;
                record.locked_until_ms = at_ms.saturating_add(LOCKOUT_MS);
            }
        }
        OfficerChange::LoginSucceeded { .. } => record.failed_logins = 0,
        OfficerChange::Add { .. } | OfficerChange::Bootstrap { .. } => {
            unreachable!("handled by apply")
        }
    }
    Ok(Ok(store(apply, record)))
}

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
    apply.txn.put(keys::officer(&record.user), encode(&record));
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
        return Ok(Err(refused(
            RejectKind::Invalid,
            "bad_password_hash",
            reason,
        )));
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
                return Ok(Err(refused(
                    RejectKind::Invalid,
                    "bad_password_hash",
                    reason,
                )));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::tests::Office;
    use crate::raft::types::Operation;
    use crate::store::Txn;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    fn account(office: &Office, user: &str) -> Option<OfficerRecord> {
        let txn = Txn::new(&office.db, office.context.office.as_str());
        load(&txn, user).unwrap()
    }

    fn change(office: &mut Office, change: OfficerChange) -> Response {
        office.apply(Operation::Officers { change })
    }

    fn add(user: &str, roles: &[Role]) -> OfficerChange {
        OfficerChange::Add {
            user: user.into(),
            roles: roles.iter().copied().collect(),
            password_hash: HASH.into(),
            at_ms: 1_000,
        }
    }

    fn code(response: &Response) -> &str {
        match response {
            Response::Rejected { code, .. } => code,
            _ => "",
        }
    }

    /// Five wrong passwords in a row lock the account for the lockout time; a right one in
    /// between starts the count again.
    #[test]
    fn failed_logins_lock_the_account() {
        let mut office = Office::new("530602", Some("5306"));
        change(&mut office, add("clerk", &[Role::Registrar]));
        let failed = |at_ms| OfficerChange::LoginFailed {
            user: "clerk".into(),
            at_ms,
        };
        for _ in 0..LOGIN_FAILURES_MAX - 1 {
            change(&mut office, failed(2_000));
        }
        change(
            &mut office,
            OfficerChange::LoginSucceeded {
                user: "clerk".into(),
                at_ms: 2_000,
            },
        );
        assert_eq!(account(&office, "clerk").unwrap().failed_logins, 0);
        for _ in 0..LOGIN_FAILURES_MAX {
            change(&mut office, failed(3_000));
        }
        let locked = account(&office, "clerk").unwrap();
        assert_eq!(locked.locked_until_ms, 3_000 + LOCKOUT_MS);
    }

    /// A password reset and a disable void the tokens issued before; enabling again does not
    /// revive them.
    #[test]
    fn reset_and_disable_void_earlier_tokens() {
        let mut office = Office::new("530602", Some("5306"));
        change(&mut office, add("admin", &[Role::Admin]));
        change(&mut office, add("clerk", &[Role::Registrar]));
        change(
            &mut office,
            OfficerChange::SetPassword {
                user: "clerk".into(),
                password_hash: HASH.into(),
                at_ms: 5_000,
            },
        );
        assert_eq!(
            account(&office, "clerk").unwrap().tokens_valid_from_ms,
            5_000
        );
        let disable = |enabled, at_ms| OfficerChange::SetEnabled {
            user: "clerk".into(),
            enabled,
            at_ms,
        };
        change(&mut office, disable(false, 7_000));
        change(&mut office, disable(true, 8_000));
        let clerk = account(&office, "clerk").unwrap();
        assert!(clerk.enabled);
        assert_eq!(clerk.tokens_valid_from_ms, 7_000);
    }

    /// Bad changes are refused and change nothing: a second account of one name, a bad name, a
    /// hash that is not argon2id, no roles, the last admin disabled; the bootstrap admin is made
    /// once and never replaced.
    #[test]
    fn bad_changes_are_refused() {
        let mut office = Office::new("530602", Some("5306"));
        let first = OfficerChange::Bootstrap {
            user: "admin".into(),
            password_hash: HASH.into(),
            at_ms: 1,
        };
        change(&mut office, first);
        let again = OfficerChange::Bootstrap {
            user: "admin".into(),
            password_hash: format!("{HASH}x"),
            at_ms: 2,
        };
        change(&mut office, again);
        assert_eq!(account(&office, "admin").unwrap().password_hash, HASH);
        assert_eq!(
            code(&change(&mut office, add("admin", &[Role::Handler]))),
            "officer_exists"
        );
        assert_eq!(
            code(&change(&mut office, add("../x", &[Role::Handler]))),
            "bad_user"
        );
        assert_eq!(code(&change(&mut office, add("clerk", &[]))), "no_roles");
        let plain = OfficerChange::Add {
            user: "clerk".into(),
            roles: [Role::Handler].into(),
            password_hash: "secret".into(),
            at_ms: 1,
        };
        assert_eq!(code(&change(&mut office, plain)), "bad_password_hash");
        assert!(account(&office, "clerk").is_none());
        let last = OfficerChange::SetEnabled {
            user: "admin".into(),
            enabled: false,
            at_ms: 3,
        };
        assert_eq!(code(&change(&mut office, last)), "last_admin");
        assert!(account(&office, "admin").unwrap().enabled);
        let nobody = OfficerChange::LoginFailed {
            user: "nobody".into(),
            at_ms: 1,
        };
        assert_eq!(code(&change(&mut office, nobody)), "officer_not_found");
        assert!(
            account(&office, "nobody").is_none(),
            "no account made by a failed login"
        );
    }
}

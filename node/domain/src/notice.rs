//! Escalating notices (三级抄告) and red cards (红牌): the pure rules only. An office sets the ages
//! (in days) at which a case it holds that is still unresolved is copied one level further up
//! (30 → parent, 60 → grandparent, 90 → the level above); a red card is earned by the holder of
//! a supervised case that lets the order's due date pass unanswered.
//!
//! The node's tick decides with [`notices_due`] which notices a case it holds is owed and sends
//! each as a [`Notice`] message to [`target`]; a missed supervision order becomes one
//! [`RedCard`], kept by the office that earned it and sent to the order's issuer.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::validate::{self, CATEGORY_CHARS_MAX, DEPARTMENT_CHARS_MAX};
use crate::{Case, CaseId, Millis, OfficeCode, Status, DAY_MS};

/// The version of a stored notice policy, notice and red card this build writes.
pub const NOTICE_VERSION: u16 = 1;
/// Longest status word a notice carries.
pub const STATUS_CHARS_MAX: usize = 32;

/// Levels a notice may climb (parent, grandparent, great-grandparent).
pub const NOTICE_LEVELS_MAX: usize = 3;
/// The oldest age a policy may name, in days.
pub const NOTICE_AGE_DAYS_MAX: u32 = 3_650;

/// An office's notice ages: the n-th age copies the case to the n-th ancestor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticePolicy {
    pub ages_days: Vec<u32>,
}

/// A policy as an office stores it: versioned, with who set it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub v: u16,
    pub policy: NoticePolicy,
    pub set_by: String,
    pub set_at: Millis,
}

impl NoticePolicy {
    /// 1 to [`NOTICE_LEVELS_MAX`] ages, strictly increasing, each 1 to [`NOTICE_AGE_DAYS_MAX`].
    pub fn new(ages_days: Vec<u32>) -> Result<NoticePolicy, DomainError> {
        if ages_days.is_empty() || ages_days.len() > NOTICE_LEVELS_MAX {
            return Err(DomainError::OutOfRange {
                field: "ages",
                min: 1,
                max: NOTICE_LEVELS_MAX as u32,
            });
        }
        let mut previous = 0;
        for &age in &ages_days {
            if !(1..=NOTICE_AGE_DAYS_MAX).contains(&age) {
                return Err(DomainError::OutOfRange {
                    field: "age",
                    min: 1,
                    max: NOTICE_AGE_DAYS_MAX,
                });
            }
            if age <= previous {
                return Err(DomainError::FieldInvalid {
                    field: "ages",
                    reason: "each age is older than the one before",
                });
            }
            previous = age;
        }
        Ok(NoticePolicy { ages_days })
    }

    /// The levels (1 = parent) an unresolved case registered at `registered_at` has crossed by
    /// `now` and not yet been copied to (`sent` levels were): in order, each once.
    pub fn due(&self, registered_at: Millis, now: Millis, sent: usize) -> Vec<usize> {
        let age = now.saturating_sub(registered_at);
        self.ages_days
            .iter()
            .enumerate()
            .filter(|(_, days)| age >= i64::from(**days) * DAY_MS)
            .map(|(n, _)| n + 1)
            .filter(|level| *level > sent)
            .collect()
    }
}

/// The office a notice of `level` (1 = parent) from `office` goes to; None above the root.
pub fn target(office: &OfficeCode, level: usize) -> Option<OfficeCode> {
    let mut at = office.clone();
    for _ in 0..level {
        at = at.parent_code()?;
    }
    Some(at)
}

/// Whether a case this office holds is still unresolved: registered or accepted, not yet
/// replied, declined, handed on or closed.
pub fn unresolved(case: &Case, office: &OfficeCode) -> bool {
    case.office == *office && matches!(case.status, Status::Registered | Status::Accepted)
}

/// The notices an unresolved case held by `office` is owed at `now`, `sent` levels having been
/// sent: one per level crossed, in order, each for the ancestor at that level ([`target`]; a
/// level above the codes' root makes none but still counts as done). Empty for a resolved case.
/// Each travels up one link at a time, from the office to its parent, which keeps it or passes
/// it on ([`Notice::check_route`]).
pub fn notices_due(
    policy: &NoticePolicy,
    case: &Case,
    office: &OfficeCode,
    now: Millis,
    sent: usize,
) -> Vec<Notice> {
    if !unresolved(case, office) {
        return Vec::new();
    }
    let age_days =
        u32::try_from(now.saturating_sub(case.registered_at).max(0) / DAY_MS).unwrap_or(u32::MAX);
    let due = match case.status {
        Status::Registered => case.deadlines.accept_by,
        _ => case.deadlines.reply_by,
    };
    policy
        .due(case.registered_at, now, sent)
        .into_iter()
        .filter(|level| target(office, *level).is_some())
        .map(|level| Notice {
            v: NOTICE_VERSION,
            case_id: case.id.clone(),
            origin: office.clone(),
            level: u8::try_from(level).unwrap_or(u8::MAX),
            age_days,
            category: case.category.clone(),
            status: case.status.as_str().to_string(),
            registered_at: case.registered_at,
            due,
        })
        .collect()
}

/// The highest level `policy` names: a case owed nothing more once it has sent this many.
pub fn levels(policy: &NoticePolicy) -> usize {
    policy.ages_days.len()
}

/// An escalating notice (抄告): an unresolved case copied `level` levels up from `origin`, the
/// office holding it. No personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub v: u16,
    pub case_id: CaseId,
    pub origin: OfficeCode,
    /// 1 = the origin's parent, 2 = its grandparent, 3 = the level above.
    pub level: u8,
    /// Whole calendar days since registration when the notice was made.
    pub age_days: u32,
    pub category: String,
    pub status: String,
    pub registered_at: Millis,
    /// The running deadline of the case when the notice was made (decide by, or reply by).
    pub due: Option<Millis>,
}

impl Notice {
    /// Its fields as the rules make them: a known version, a level the rules name, words that fit.
    pub fn validate(&self) -> Result<(), DomainError> {
        check_version(self.v)?;
        if !(1..=NOTICE_LEVELS_MAX).contains(&usize::from(self.level)) {
            return Err(DomainError::OutOfRange {
                field: "level",
                min: 1,
                max: NOTICE_LEVELS_MAX as u32,
            });
        }
        validate::line("category", &self.category, CATEGORY_CHARS_MAX)?;
        validate::line("status", &self.status, STATUS_CHARS_MAX)
    }

    /// What a receiver `here` checks of where it came from: the sender is the origin or an
    /// office between the origin and `here`, and the notice is for `here` or an office above
    /// it. True when it is for `here` (kept), false when it goes on up.
    pub fn check_route(&self, from: &OfficeCode, here: &OfficeCode) -> Result<bool, DomainError> {
        let on_the_way = self.origin == *from || from.is_ancestor_of(&self.origin);
        let for_whom = target(&self.origin, usize::from(self.level));
        let ahead = for_whom
            .as_ref()
            .is_some_and(|t| t == here || t.is_ancestor_of(here));
        if !on_the_way || !here.is_ancestor_of(from) || !ahead {
            return Err(DomainError::FieldInvalid {
                field: "level",
                reason: "a notice climbs from the office holding the case to the office that many levels above it",
            });
        }
        Ok(for_whom.as_ref() == Some(here))
    }
}

/// A red card (红牌): `office` (and its `department`, the case's lead, if it had one) let the
/// supervision order `issuer` gave on `case_id` at `ordered_at` pass its due date unanswered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedCard {
    pub v: u16,
    pub case_id: CaseId,
    pub office: OfficeCode,
    pub department: Option<String>,
    pub issuer: OfficeCode,
    pub ordered_at: Millis,
    pub due_by: Millis,
    /// When the holder's tick found the order missed.
    pub at: Millis,
}

impl RedCard {
    /// One card per order: the case and the instant the order was given name it.
    pub fn id(&self) -> String {
        format!("{}@{}", self.case_id, self.ordered_at)
    }

    /// Its fields as the rules make them: a known version, a department name that fits, an
    /// order due before the card was made.
    pub fn validate(&self) -> Result<(), DomainError> {
        check_version(self.v)?;
        if let Some(department) = &self.department {
            validate::line("department", department, DEPARTMENT_CHARS_MAX)?;
        }
        if !red_card(self.due_by, None, self.at) || self.due_by < self.ordered_at {
            return Err(DomainError::FieldInvalid {
                field: "due_by",
                reason: "a red card is made after the order's due date",
            });
        }
        Ok(())
    }

    /// What the issuer checks of where it came from: the card is the sender's own, and the
    /// sender sits below the receiver, which issued the order.
    pub fn check_route(&self, from: &OfficeCode, to: &OfficeCode) -> Result<(), DomainError> {
        if self.office != *from || self.issuer != *to || !to.is_ancestor_of(from) {
            return Err(DomainError::FieldInvalid {
                field: "office",
                reason:
                    "a red card goes from the office that earned it to the order's issuer above it",
            });
        }
        Ok(())
    }
}

fn check_version(v: u16) -> Result<(), DomainError> {
    if v == 0 || v > NOTICE_VERSION {
        return Err(DomainError::FieldInvalid {
            field: "v",
            reason: "a version this build does not read",
        });
    }
    Ok(())
}

/// Whether a supervision order due at `due_by` earns its holder a red card at `now`: not
/// answered by then (an answer after the due date earns one too). Unanswered at the due instant
/// itself is missed, as the case engine marks a clock overdue at its limit: the card a tick made
/// at that instant must pass its receiver's check, or the link it travels on stops for good.
pub fn red_card(due_by: Millis, answered_at: Option<Millis>, now: Millis) -> bool {
    match answered_at {
        Some(at) => at > due_by,
        None => now >= due_by,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_has_one_to_three_increasing_ages() {
        assert!(NoticePolicy::new(vec![30, 60, 90]).is_ok());
        assert_eq!(
            NoticePolicy::new(vec![]).unwrap_err().code(),
            "out_of_range"
        );
        assert_eq!(
            NoticePolicy::new(vec![1, 2, 3, 4]).unwrap_err().code(),
            "out_of_range"
        );
        assert_eq!(
            NoticePolicy::new(vec![60, 30]).unwrap_err().code(),
            "field_invalid"
        );
        assert_eq!(
            NoticePolicy::new(vec![0]).unwrap_err().code(),
            "out_of_range"
        );
    }

    #[test]
    fn a_case_crosses_each_age_once_in_order() {
        let policy = NoticePolicy::new(vec![30, 60, 90]).unwrap();
        let day = |n: i64| n * DAY_MS;
        assert!(policy.due(0, day(29), 0).is_empty());
        assert_eq!(policy.due(0, day(30), 0), vec![1]);
        assert!(policy.due(0, day(45), 1).is_empty());
        // A tick that comes late sends every level crossed since.
        assert_eq!(policy.due(0, day(95), 1), vec![2, 3]);
        assert!(policy.due(0, day(400), 3).is_empty());
    }

    #[test]
    fn notices_climb_the_tree_and_stop_at_its_root() {
        let township: OfficeCode = "530602001".parse().unwrap();
        assert_eq!(target(&township, 1), Some("530602".parse().unwrap()));
        assert_eq!(target(&township, 2), Some("5306".parse().unwrap()));
        assert_eq!(target(&township, 3), Some("53".parse().unwrap()));
        assert_eq!(target(&township, 4), None);
    }

    #[test]
    fn a_notice_climbs_one_link_at_a_time_to_its_level() {
        let code = |c: &str| -> OfficeCode { c.parse().unwrap() };
        let notice = Notice {
            v: NOTICE_VERSION,
            case_id: "530602001-2026-000001".parse().unwrap(),
            origin: code("530602001"),
            level: 2,
            age_days: 60,
            category: "housing".into(),
            status: "accepted".into(),
            registered_at: 0,
            due: None,
        };
        assert!(notice.validate().is_ok());
        // The county passes it on; the city keeps it.
        assert_eq!(
            notice.check_route(&code("530602001"), &code("530602")),
            Ok(false)
        );
        assert_eq!(notice.check_route(&code("530602"), &code("5306")), Ok(true));
        // Past its level, from the side, from above, or not from the case's side of the tree.
        assert!(notice.check_route(&code("5306"), &code("53")).is_err());
        assert!(notice.check_route(&code("530621"), &code("5306")).is_err());
        assert!(notice.check_route(&code("5306"), &code("530602")).is_err());
        let mut bad = notice.clone();
        bad.level = 4;
        assert!(bad.validate().is_err());
        bad.level = 1;
        bad.category = "x".repeat(CATEGORY_CHARS_MAX + 1);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn a_red_card_goes_from_its_earner_to_the_issuer_above() {
        let code = |c: &str| -> OfficeCode { c.parse().unwrap() };
        let card = RedCard {
            v: NOTICE_VERSION,
            case_id: "530602-2026-000001".parse().unwrap(),
            office: code("530602"),
            department: Some("housing".into()),
            issuer: code("5306"),
            ordered_at: 0,
            due_by: 10,
            at: 11,
        };
        assert!(card.validate().is_ok());
        assert!(card.check_route(&code("530602"), &code("5306")).is_ok());
        assert!(card.check_route(&code("530621"), &code("5306")).is_err());
        assert!(card.check_route(&code("530602"), &code("53")).is_err());
        // Made by the tick at the due instant, when the engine marks the order overdue: it
        // passes (it was refused once, and stopped its link for good).
        let at_the_limit = RedCard {
            at: 10,
            ..card.clone()
        };
        assert!(at_the_limit.validate().is_ok());
        let early = RedCard {
            at: 9,
            ..card.clone()
        };
        assert!(early.validate().is_err());
        let unknown = RedCard { v: 9, ..card };
        assert!(unknown.validate().is_err());
    }

    #[test]
    fn a_red_card_for_an_order_not_answered_in_time() {
        assert!(!red_card(100, None, 99));
        assert!(red_card(100, None, 100));
        assert!(red_card(100, None, 101));
        assert!(!red_card(100, Some(100), 500));
        assert!(!red_card(100, Some(99), 500));
        assert!(red_card(100, Some(101), 500));
    }
}

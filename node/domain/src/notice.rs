//! Escalating notices (三级抄告) and red cards (红牌): the pure rules only. An office sets the ages
//! (in days) at which a case it holds that is still unresolved is copied one level further up
//! (30 → parent, 60 → grandparent, 90 → the level above); a red card is earned by the holder of
//! a supervised case that lets the order's due date pass unanswered.
//!
//! Not wired into the node yet: no command, message or stored value uses this module.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::{Millis, OfficeCode, DAY_MS};

/// Levels a notice may climb (parent, grandparent, great-grandparent).
pub const NOTICE_LEVELS_MAX: usize = 3;
/// The oldest age a policy may name, in days.
pub const NOTICE_AGE_DAYS_MAX: u32 = 3_650;

/// An office's notice ages: the n-th age copies the case to the n-th ancestor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticePolicy {
    pub ages_days: Vec<u32>,
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

/// Whether a supervision order due at `due_by` earns its holder a red card at `now`: not
/// answered by then (an answer after the due date earns one too).
pub fn red_card(due_by: Millis, answered_at: Option<Millis>, now: Millis) -> bool {
    match answered_at {
        Some(at) => at > due_by,
        None => now > due_by,
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
    fn a_red_card_for_an_order_not_answered_in_time() {
        assert!(!red_card(100, None, 100));
        assert!(red_card(100, None, 101));
        assert!(!red_card(100, Some(99), 500));
        assert!(red_card(100, Some(101), 500));
    }
}

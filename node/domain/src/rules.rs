//! The statute in numbers (《信访工作条例》2022) and the engine's own limits, in one place.
//!
//! How a limit is counted: a limit of N days that starts at instant `t` ends at the same China
//! wall-clock time N days later (working days: on the N-th working day after the day of `t`, by the
//! holiday calendar). The limit's end is exclusive for the office: an action stamped exactly at it
//! is late (a window is closed, a clock is overdue). This is never later than the statute's "day of
//! start not counted, ends at the end of the last day", so the system warns early, never late, and
//! the 50 % / 75 % thresholds are exact fractions of the limit.

/// Calendar days to accept, decline, transfer or assign after registration or receipt (第二十二条).
pub const ACCEPT_DAYS: u32 = 15;
/// Working days within which the receiver of a transfer or assignment may return it.
pub const RETURN_WORKING_DAYS: u32 = 5;
/// Calendar days from acceptance to the reply (第三十二条).
pub const REPLY_DAYS: u32 = 60;
/// The longest single extension of the reply limit; only one is allowed.
pub const EXTENSION_DAYS_MAX: u32 = 30;
/// Working days within which an office follows up (回访) a dissatisfied evaluation.
pub const FOLLOW_UP_WORKING_DAYS: u32 = 5;
/// Calendar days from the reply within which the petitioner may ask for review (or re-review).
pub const REVIEW_REQUEST_DAYS: u32 = 30;
/// Calendar days from registering a review (复查) or re-review (复核) case to its decision
/// (第三十五条, 第三十六条); they cannot be extended.
pub const REVIEW_DECISION_DAYS: u32 = 30;
/// Calendar days from the reply within which the petitioner may evaluate it; chosen equal to the
/// review window, so both close together and an unevaluated case lapses to "not evaluated".
pub const EVALUATION_DAYS: u32 = 30;
/// Report-back limit an assigning office may set, in calendar days.
pub const ASSIGN_DUE_DAYS_MIN: u32 = 1;
pub const ASSIGN_DUE_DAYS_MAX: u32 = 90;
/// Answer limit a supervision order may set, in calendar days.
pub const SUPERVISION_DUE_DAYS_MIN: u32 = 1;
pub const SUPERVISION_DUE_DAYS_MAX: u32 = 90;
/// Percentages of every statutory clock at which a warning is raised (100 % marks it overdue).
pub const WARNING_PERCENTS: [u8; 2] = [50, 75];
/// History entries a case may hold; further commands are refused (clock events stay bounded:
/// each threshold fires once per clock run).
pub const HISTORY_ENTRIES_MAX: usize = 4096;

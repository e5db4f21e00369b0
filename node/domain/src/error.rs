//! The one error type of the case engine. Every refusal is a typed variant, so the node can map it
//! to a gRPC status and the CLI to a one-line reason, and tests can assert the exact rule.

use crate::ids::OfficeCode;

/// Longest piece of offending input an error message repeats (bad input may be huge or hostile).
pub const ERROR_ECHO_CHARS_MAX: usize = 40;

/// Why the engine refused an input or a transition. `code()` is a stable snake_case name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    // ---- malformed input ----
    #[error("invalid office code {input:?}: expected exactly 2, 4, 6 or 9 ASCII digits")]
    InvalidOfficeCode { input: String },
    #[error("invalid case id {input:?}: {reason} (expected <office>-<year>-<seq>, e.g. 530602-2026-000123)")]
    InvalidCaseId { input: String, reason: &'static str },
    #[error("invalid channel {input:?}: expected visit, letter, phone, online or video")]
    InvalidChannel { input: String },
    #[error("invalid decline route {input:?}: expected litigation, arbitration, admin-review or discipline")]
    InvalidDeclineRoute { input: String },
    #[error("invalid opinion {input:?}: expected support, explain or not-support")]
    InvalidOpinion { input: String },
    #[error("invalid satisfaction {input:?}: expected satisfied, basic or dissatisfied")]
    InvalidSatisfaction { input: String },
    #[error("invalid grade {input:?}: expected A, B or C")]
    InvalidGrade { input: String },
    /// The ID number itself is never echoed: it is personal data.
    #[error("invalid resident ID number: {reason}")]
    InvalidIdNumber { reason: &'static str },
    #[error("invalid phone number: expected digits with an optional leading '+', 5 to 20 digits")]
    InvalidPhone,
    #[error("invalid petitioner key: expected 64 lowercase hex characters (HMAC-SHA256)")]
    InvalidPetitionerKey,
    #[error("invalid document type {input:?}: expected resident, passport, hk-macao, taiwan or foreign-permanent")]
    InvalidIdType { input: String },
    /// The document number itself is never echoed: it is personal data.
    #[error("invalid {id_type} document number: {reason}")]
    InvalidDocument {
        id_type: &'static str,
        reason: &'static str,
    },
    /// A group petition's members as a whole (count, size, duplicates, representative).
    #[error("group petition: {reason}")]
    GroupInvalid { reason: String },
    #[error("{field} must not be empty")]
    FieldEmpty { field: &'static str },
    #[error("{field} is too long: at most {max} characters")]
    FieldTooLong { field: &'static str, max: usize },
    #[error("{field} is invalid: {reason}")]
    FieldInvalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("{field} must be between {min} and {max}")]
    OutOfRange {
        field: &'static str,
        min: u32,
        max: u32,
    },
    #[error("invalid date {input:?}: expected YYYY-MM-DD, a real calendar day in 0000..=9999")]
    InvalidDate { input: String },
    #[error("invalid time {input:?}: expected RFC 3339, e.g. 2026-03-02T09:00:00+08:00")]
    InvalidTime { input: String },
    #[error("calendar line {line}: {reason}")]
    InvalidCalendar { line: usize, reason: &'static str },
    #[error(
        "case id {id} belongs to office {case_office}, not to the registering office {office}"
    )]
    CaseIdOfficeMismatch {
        id: String,
        case_office: OfficeCode,
        office: OfficeCode,
    },

    // ---- ownership ----
    #[error("case is owned by office {owner}, not by this office")]
    NotOwner { owner: OfficeCode },
    #[error("case was forwarded to office {to}: this copy is a read-only stub")]
    Forwarded { to: OfficeCode },
    #[error(
        "case is in transit to office {to}: read-only until the handoff is acknowledged or refused"
    )]
    InTransit { to: OfficeCode },
    #[error("case is not in transit")]
    NotInTransit,
    #[error("case was handed to office {to}, not to office {office}")]
    WrongRecipient { to: OfficeCode, office: OfficeCode },
    #[error("the handoff received does not match the handoff the sender started")]
    HandoffMismatch,
    #[error("a case cannot be transferred to the office that holds it")]
    TransferToSelf,
    #[error("offices {from} and {to} share no ancestor: transfer stays within a common ancestor's subtree")]
    NoCommonAncestor { from: OfficeCode, to: OfficeCode },
    #[error("office {to} is not a descendant of {from}: assignment goes only down the tree")]
    AssignNotDescendant { from: OfficeCode, to: OfficeCode },
    #[error("office {from} is not an ancestor of the owner {owner}: only ancestors supervise")]
    NotSupervisor { from: OfficeCode, owner: OfficeCode },
    #[error("office {office} has no level above it to review the case")]
    NoLevelAbove { office: OfficeCode },

    // ---- statutory transitions ----
    #[error("case is already accepted")]
    AlreadyAccepted,
    #[error("case is not accepted")]
    NotAccepted,
    #[error(
        "case was not accepted (declined with a statutory route): nothing more can happen here"
    )]
    CaseDeclined,
    #[error("the handling period was already extended once")]
    AlreadyExtended,
    #[error("an extension is at most {max} days")]
    ExtensionTooLong { max: u32 },
    #[error("review and re-review limits cannot be extended")]
    ExtensionNotAllowed,
    #[error("a case must be accepted before it is replied to")]
    ReplyBeforeAcceptance,
    #[error("case is already replied to")]
    AlreadyReplied,
    #[error("case has no reply yet")]
    NotReplied,
    #[error("case is already evaluated")]
    AlreadyEvaluated,
    #[error("the evaluation window has closed")]
    EvaluationWindowClosed,
    #[error(
        "not-evaluated is set by the engine when the evaluation window lapses, not by a person"
    )]
    SatisfactionReserved,
    #[error("only the receiver of a transfer or assignment may return it")]
    NotReceiver,
    #[error("the return window (5 working days from receipt) has closed")]
    ReturnWindowClosed,
    #[error("the review window (30 days from the reply) has closed")]
    ReviewWindowClosed,
    #[error("a review of this case is already requested")]
    ReviewAlreadyRequested,
    #[error("the matter is final: it cannot be reviewed again")]
    Final,
    #[error("the grade deadline must lie in the future")]
    GradeDeadlinePast,
    #[error("case has no open supervision order")]
    NoSupervisionOrder,
    #[error("case has no open follow-up (only a dissatisfied evaluation opens one)")]
    NoFollowUp,
    #[error("case history is full ({max} entries)")]
    HistoryFull { max: usize },
    #[error("{command} is not allowed on a case that is {status}")]
    InvalidTransition {
        status: &'static str,
        command: &'static str,
    },

    // ---- stored data ----
    #[error("unsupported stored version {found} (this build reads version {supported})")]
    UnsupportedVersion { found: u64, supported: u16 },
    #[error("stored document is corrupt: {reason}")]
    Corrupt { reason: String },
    #[error("hash chain broken at history entry {seq}: {reason}")]
    ChainBroken { seq: u32, reason: &'static str },
}

impl DomainError {
    /// A stable snake_case name for logs, APIs and tests; never changes once published.
    pub fn code(&self) -> &'static str {
        use DomainError::*;
        match self {
            InvalidOfficeCode { .. } => "invalid_office_code",
            InvalidCaseId { .. } => "invalid_case_id",
            InvalidChannel { .. } => "invalid_channel",
            InvalidDeclineRoute { .. } => "invalid_decline_route",
            InvalidOpinion { .. } => "invalid_opinion",
            InvalidSatisfaction { .. } => "invalid_satisfaction",
            InvalidGrade { .. } => "invalid_grade",
            InvalidIdNumber { .. } => "invalid_id_number",
            InvalidPhone => "invalid_phone",
            InvalidPetitionerKey => "invalid_petitioner_key",
            InvalidIdType { .. } => "invalid_id_type",
            InvalidDocument { .. } => "invalid_document",
            GroupInvalid { .. } => "group_invalid",
            FieldEmpty { .. } => "field_empty",
            FieldTooLong { .. } => "field_too_long",
            FieldInvalid { .. } => "field_invalid",
            OutOfRange { .. } => "out_of_range",
            InvalidDate { .. } => "invalid_date",
            InvalidTime { .. } => "invalid_time",
            InvalidCalendar { .. } => "invalid_calendar",
            CaseIdOfficeMismatch { .. } => "case_id_office_mismatch",
            NotOwner { .. } => "not_owner",
            Forwarded { .. } => "forwarded",
            InTransit { .. } => "in_transit",
            NotInTransit => "not_in_transit",
            WrongRecipient { .. } => "wrong_recipient",
            HandoffMismatch => "handoff_mismatch",
            TransferToSelf => "transfer_to_self",
            NoCommonAncestor { .. } => "no_common_ancestor",
            AssignNotDescendant { .. } => "assign_not_descendant",
            NotSupervisor { .. } => "not_supervisor",
            NoLevelAbove { .. } => "no_level_above",
            AlreadyAccepted => "already_accepted",
            NotAccepted => "not_accepted",
            CaseDeclined => "case_declined",
            AlreadyExtended => "already_extended",
            ExtensionTooLong { .. } => "extension_too_long",
            ExtensionNotAllowed => "extension_not_allowed",
            ReplyBeforeAcceptance => "reply_before_acceptance",
            AlreadyReplied => "already_replied",
            NotReplied => "not_replied",
            AlreadyEvaluated => "already_evaluated",
            EvaluationWindowClosed => "evaluation_window_closed",
            SatisfactionReserved => "satisfaction_reserved",
            NotReceiver => "not_receiver",
            ReturnWindowClosed => "return_window_closed",
            ReviewWindowClosed => "review_window_closed",
            ReviewAlreadyRequested => "review_already_requested",
            Final => "final",
            GradeDeadlinePast => "grade_deadline_past",
            NoSupervisionOrder => "no_supervision_order",
            NoFollowUp => "no_follow_up",
            HistoryFull { .. } => "history_full",
            InvalidTransition { .. } => "invalid_transition",
            UnsupportedVersion { .. } => "unsupported_version",
            Corrupt { .. } => "corrupt",
            ChainBroken { .. } => "chain_broken",
        }
    }

    /// True when the input itself is malformed (a client error, whatever the case's state);
    /// false when well-formed input is refused by ownership or the statute, or stored data is bad.
    pub fn is_invalid_input(&self) -> bool {
        use DomainError::*;
        matches!(
            self,
            InvalidOfficeCode { .. }
                | InvalidCaseId { .. }
                | InvalidChannel { .. }
                | InvalidDeclineRoute { .. }
                | InvalidOpinion { .. }
                | InvalidSatisfaction { .. }
                | InvalidGrade { .. }
                | InvalidIdNumber { .. }
                | InvalidPhone
                | InvalidPetitionerKey
                | InvalidIdType { .. }
                | InvalidDocument { .. }
                | GroupInvalid { .. }
                | FieldEmpty { .. }
                | FieldTooLong { .. }
                | FieldInvalid { .. }
                | OutOfRange { .. }
                | InvalidDate { .. }
                | InvalidTime { .. }
                | InvalidCalendar { .. }
                | CaseIdOfficeMismatch { .. }
                | ExtensionTooLong { .. }
                | SatisfactionReserved
                | GradeDeadlinePast
        )
    }
}

/// A short, printable copy of offending input for an error message.
pub fn echo(input: &str) -> String {
    input.chars().take(ERROR_ECHO_CHARS_MAX).collect()
}

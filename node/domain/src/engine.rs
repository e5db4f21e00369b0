//! The engine: `(case, command, stamped time) -> events`, in the style of openraft's engine. It never
//! mutates, never reads a clock, never does IO; every refusal is a typed [`DomainError`]. The node
//! applies the events it returns with [`Case::apply`], on every replica alike.

use sha2::{Digest, Sha256};

use crate::calendar::{Calendar, Millis};
use crate::clock::{self, Alarm, ClockKind, Due};
use crate::command::CaseCommand;
use crate::error::DomainError;
use crate::event::Event;
use crate::group::Group;
use crate::ids::{CaseId, OfficeCode};
use crate::model::{
    Case, CaseKind, DeclineRoute, Grade, HandoffKind, Opinion, Petitioner, Registration,
    ReviewLevel, Satisfaction, Status,
};
use crate::model::{
    CaseExtra, IdType, PetitionerExtra, CASE_VERSION_ADDRESS, CASE_VERSION_GROUP,
    CASE_VERSION_SINGLE,
};
use crate::rules::*;
use crate::validate::{
    self, DEPARTMENT_CHARS_MAX, OFFICER_CHARS_MAX, REASON_CHARS_MAX, TEXT_CHARS_MAX,
};

/// Everything a decision depends on besides the case: who decides, when (the stamped time of the
/// log entry, identical on every replica) and by which holiday calendar.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub office: &'a OfficeCode,
    pub now: Millis,
    pub calendar: &'a Calendar,
}

impl<'a> Context<'a> {
    pub fn new(office: &'a OfficeCode, now: Millis, calendar: &'a Calendar) -> Context<'a> {
        Context {
            office,
            now,
            calendar,
        }
    }
}

fn days_later(from: Millis, days: u32) -> Millis {
    Calendar::add_calendar_days(from, days)
}

/// Registers a petition at `ctx.office`: a new case whose first history entry (`registered`)
/// names the first-contact officer and starts the 15-day clock (and, for a review or re-review
/// case, the 30-day decision clock).
pub fn register(
    id: CaseId,
    registration: Registration,
    petitioner_key: String,
    kind: CaseKind,
    ctx: &Context,
) -> Result<Case, DomainError> {
    register_with_group(id, registration, petitioner_key, kind, None, ctx)
}

/// [`register`] with the petitioners beyond one resident-ID petitioner (`group`, see
/// [`crate::group`]): the registration's petitioner is the group's representative, identified
/// by the group's document type. A case with a group is written at [`CASE_VERSION_GROUP`], one
/// with the petitioner's address at [`CASE_VERSION_ADDRESS`].
pub fn register_with_group(
    id: CaseId,
    registration: Registration,
    petitioner_key: String,
    kind: CaseKind,
    group: Option<Group>,
    ctx: &Context,
) -> Result<Case, DomainError> {
    let mut id_type = IdType::Resident;
    if let Some(group) = &group {
        group.validate()?;
        id_type = group.representative_id_type()?.unwrap_or(IdType::Resident);
    }
    registration.validate_as(id_type)?;
    validate::petitioner_key_format(&petitioner_key)?;
    if id.office != *ctx.office {
        return Err(DomainError::CaseIdOfficeMismatch {
            id: id.to_string(),
            case_office: id.office.clone(),
            office: ctx.office.clone(),
        });
    }
    if matches!(&kind, CaseKind::Review { of } | CaseKind::ReReview { of } if *of == id) {
        return Err(DomainError::FieldInvalid {
            field: "kind",
            reason: "a case cannot review itself",
        });
    }
    let at = ctx.now;
    let event = Event::Registered {
        at,
        office: ctx.office.clone(),
        channel: registration.channel,
        category: registration.category.clone(),
        officer: registration.officer.clone(),
        petitioner_key: petitioner_key.clone(),
        case_kind: kind.clone(),
        location: registration.location.clone(),
        summary_sha256: hex::encode(Sha256::digest(registration.summary.as_bytes())),
        accept_by: days_later(at, ACCEPT_DAYS),
        reply_by: kind
            .is_review()
            .then(|| days_later(at, REVIEW_DECISION_DAYS)),
    };
    let Registration {
        channel,
        petitioner_id,
        name,
        phone,
        category,
        summary,
        location,
        officer,
        address,
    } = registration;
    // A case with an address is written at version 5, with both extensions from here on; one
    // without is written as before.
    let (v, extra, petitioner_extra) = match address {
        Some(address) => (
            CASE_VERSION_ADDRESS,
            Some(CaseExtra::default()),
            Some(PetitionerExtra {
                address: Some(address),
            }),
        ),
        None if group.is_some() => (CASE_VERSION_GROUP, None, None),
        None => (CASE_VERSION_SINGLE, None, None),
    };
    let mut case = Case {
        v,
        id,
        kind,
        office: ctx.office.clone(),
        status: Status::Registered,
        status_since: at,
        channel,
        category,
        summary,
        location,
        petitioner: Some(Petitioner {
            name,
            id_number: petitioner_id.map_clear(validate::normalise_id_number),
            phone,
        }),
        petitioner_key,
        registered_at: at,
        first_officer: officer,
        handler: None,
        accepted_at: None,
        received: None,
        grade: None,
        opinion: None,
        reply_text: None,
        replied_at: None,
        satisfaction: None,
        supervision: None,
        deadlines: Default::default(),
        clocks: Default::default(),
        extended: false,
        overdue: false,
        history_start: Default::default(),
        history: Vec::new(),
        extra,
        petitioner_extra,
        group,
    };
    case.apply(&event);
    Ok(case)
}

/// The events `command` produces on `case` at `ctx`, or why it is refused. Never mutates.
pub fn decide(
    case: &Case,
    command: &CaseCommand,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    check_holder(case, command, ctx)?;
    if case.history_len() as usize >= HISTORY_ENTRIES_MAX {
        return Err(DomainError::HistoryFull {
            max: HISTORY_ENTRIES_MAX,
        });
    }
    let decision = Decision {
        case,
        at: ctx.now,
        office: ctx.office.clone(),
        calendar: ctx.calendar,
    };
    match command {
        CaseCommand::Accept { officer } => decision.accept(officer),
        CaseCommand::Decline { route, officer } => decision.decline(*route, officer),
        CaseCommand::Transfer { to, officer } => decision.transfer(to, officer),
        CaseCommand::Assign {
            to,
            due_days,
            officer,
        } => decision.assign(to, *due_days, officer),
        CaseCommand::Return { reason, officer } => decision.return_to_sender(reason, officer),
        CaseCommand::Extend {
            days,
            reason,
            officer,
        } => decision.extend(*days, reason, officer),
        CaseCommand::Reply {
            opinion,
            text,
            officer,
        } => decision.reply(*opinion, text, officer),
        CaseCommand::Evaluate { satisfaction } => decision.evaluate(*satisfaction),
        CaseCommand::RequestReview => decision.request_review(),
        CaseCommand::SetGrade {
            grade,
            leader,
            department,
            plan,
            deadline,
        } => decision.set_grade(*grade, leader, department, plan, *deadline),
        CaseCommand::HandoffAcked => decision.handoff_acked(),
        CaseCommand::HandoffRefused { reason } => decision.handoff_refused(reason),
        CaseCommand::Supervise {
            from,
            due_days,
            text,
        } => decision.supervise(from, *due_days, text),
        CaseCommand::AnswerSupervision { text, officer } => {
            decision.answer_supervision(text, officer)
        }
        CaseCommand::ReviewOpened { review, level } => decision.review_opened(review, *level),
        CaseCommand::ReviewDecided {
            review,
            level,
            opinion,
            text,
            decided_at,
            is_final,
        } => decision.review_decided(review, *level, *opinion, text, *decided_at, *is_final),
        CaseCommand::FollowOrder {
            from,
            text,
            ordered_at,
            due_by,
        } => decision.follow_order(from, text, *ordered_at, *due_by),
        CaseCommand::FollowUp { note, officer } => decision.follow_up(note, officer),
    }
}

/// Only the owner's copy may change, and a copy in transit only by the handoff's outcome.
fn check_holder(case: &Case, command: &CaseCommand, ctx: &Context) -> Result<(), DomainError> {
    if let Status::Forwarded { to } = &case.status {
        return Err(DomainError::Forwarded { to: to.clone() });
    }
    if case.office != *ctx.office {
        return Err(DomainError::NotOwner {
            owner: case.office.clone(),
        });
    }
    match &case.status {
        Status::InTransit { to, .. } if !command.is_handoff_outcome() => {
            Err(DomainError::InTransit { to: to.clone() })
        }
        _ => Ok(()),
    }
}

/// One decision in the making: the case and the stamp.
struct Decision<'a> {
    case: &'a Case,
    at: Millis,
    office: OfficeCode,
    calendar: &'a Calendar,
}

type Decided = Result<Vec<Event>, DomainError>;

impl Decision<'_> {
    /// The 15-day decision is still open (registered or received, nothing decided yet).
    fn require_undecided(&self) -> Result<(), DomainError> {
        match &self.case.status {
            Status::Registered => Ok(()),
            Status::Accepted
            | Status::Replied
            | Status::Evaluated
            | Status::ReviewRequested
            | Status::Reviewed => Err(DomainError::AlreadyAccepted),
            other => self.refuse_closed(other),
        }
    }

    /// Being handled: accepted, not yet replied.
    fn require_handling(&self, before_acceptance: DomainError) -> Result<(), DomainError> {
        match &self.case.status {
            Status::Accepted => Ok(()),
            Status::Registered => Err(before_acceptance),
            Status::Replied | Status::Evaluated | Status::ReviewRequested | Status::Reviewed => {
                Err(DomainError::AlreadyReplied)
            }
            other => self.refuse_closed(other),
        }
    }

    /// The refusal for a closed (or, defensively, a handed-off) status.
    fn refuse_closed(&self, status: &Status) -> Result<(), DomainError> {
        Err(match status {
            Status::Declined { .. } => DomainError::CaseDeclined,
            Status::Final => DomainError::Final,
            Status::InTransit { to, .. } => DomainError::InTransit { to: to.clone() },
            Status::Forwarded { to } => DomainError::Forwarded { to: to.clone() },
            other => DomainError::InvalidTransition {
                status: other.as_str(),
                command: "this command",
            },
        })
    }

    fn accept(&self, officer: &str) -> Decided {
        self.require_undecided()?;
        validate::line("officer", officer, OFFICER_CHARS_MAX)?;
        let reply_by = if self.case.kind.is_review() {
            // The review decision clock runs from registration; acceptance does not restart it.
            self.case
                .deadlines
                .reply_by
                .unwrap_or_else(|| days_later(self.case.registered_at, REVIEW_DECISION_DAYS))
        } else {
            days_later(self.at, REPLY_DAYS)
        };
        Ok(vec![Event::Accepted {
            at: self.at,
            office: self.office.clone(),
            officer: officer.to_string(),
            reply_by,
        }])
    }

    fn decline(&self, route: DeclineRoute, officer: &str) -> Decided {
        self.require_undecided()?;
        validate::line("officer", officer, OFFICER_CHARS_MAX)?;
        Ok(vec![Event::Declined {
            at: self.at,
            office: self.office.clone(),
            route,
            officer: officer.to_string(),
        }])
    }

    fn transfer(&self, to: &OfficeCode, officer: &str) -> Decided {
        self.require_undecided()?;
        validate::line("officer", officer, OFFICER_CHARS_MAX)?;
        if *to == self.office {
            return Err(DomainError::TransferToSelf);
        }
        if self.office.common_ancestor(to).is_none() {
            return Err(DomainError::NoCommonAncestor {
                from: self.office.clone(),
                to: to.clone(),
            });
        }
        Ok(vec![self.handoff(to, HandoffKind::Transfer, officer)])
    }

    fn assign(&self, to: &OfficeCode, due_days: u32, officer: &str) -> Decided {
        self.require_undecided()?;
        validate::line("officer", officer, OFFICER_CHARS_MAX)?;
        in_range(
            "due_days",
            due_days,
            ASSIGN_DUE_DAYS_MIN,
            ASSIGN_DUE_DAYS_MAX,
        )?;
        if !self.office.is_ancestor_of(to) {
            return Err(DomainError::AssignNotDescendant {
                from: self.office.clone(),
                to: to.clone(),
            });
        }
        Ok(vec![self.handoff(
            to,
            HandoffKind::Assign {
                due_by: days_later(self.at, due_days),
            },
            officer,
        )])
    }

    fn handoff(&self, to: &OfficeCode, handoff: HandoffKind, officer: &str) -> Event {
        Event::HandoffStarted {
            at: self.at,
            office: self.office.clone(),
            to: to.clone(),
            handoff,
            officer: officer.to_string(),
        }
    }

    fn return_to_sender(&self, reason: &str, officer: &str) -> Decided {
        let sender = match &self.case.received {
            Some(receipt) if receipt.handoff != HandoffKind::Return => receipt.from.clone(),
            _ => return Err(DomainError::NotReceiver),
        };
        self.require_undecided()?;
        match self.case.deadlines.return_by {
            Some(return_by) if self.at < return_by => {}
            _ => return Err(DomainError::ReturnWindowClosed),
        }
        validate::text("reason", reason, REASON_CHARS_MAX)?;
        validate::line("officer", officer, OFFICER_CHARS_MAX)?;
        Ok(vec![Event::Returned {
            at: self.at,
            office: self.office.clone(),
            to: sender,
            reason: reason.to_string(),
            officer: officer.to_string(),
        }])
    }

    fn extend(&self, days: u32, reason: &str, officer: &str) -> Decided {
        self.require_handling(DomainError::NotAccepted)?;
        if self.case.kind.is_review() {
            return Err(DomainError::ExtensionNotAllowed);
        }
        if self.case.extended {
            return Err(DomainError::AlreadyExtended);
        }
        if days > EXTENSION_DAYS_MAX {
            return Err(DomainError::ExtensionTooLong {
                max: EXTENSION_DAYS_MAX,
            });
        }
        in_range("days", days, 1, EXTENSION_DAYS_MAX)?;
        validate::text("reason", reason, REASON_CHARS_MAX)?;
        validate::line("officer", officer, OFFICER_CHARS_MAX)?;
        let reply_by = days_later(self.case.deadlines.reply_by.unwrap_or(self.at), days);
        Ok(vec![Event::Extended {
            at: self.at,
            office: self.office.clone(),
            days,
            reason: reason.to_string(),
            officer: officer.to_string(),
            reply_by,
        }])
    }

    fn reply(&self, opinion: Opinion, text: &str, officer: &str) -> Decided {
        self.require_handling(DomainError::ReplyBeforeAcceptance)?;
        validate::text("text", text, TEXT_CHARS_MAX)?;
        validate::line("officer", officer, OFFICER_CHARS_MAX)?;
        let final_level = matches!(self.case.kind, CaseKind::ReReview { .. });
        Ok(vec![Event::Replied {
            at: self.at,
            office: self.office.clone(),
            opinion,
            text: text.to_string(),
            officer: officer.to_string(),
            review_by: (!final_level).then(|| days_later(self.at, REVIEW_REQUEST_DAYS)),
            evaluate_by: days_later(self.at, EVALUATION_DAYS),
        }])
    }

    fn evaluate(&self, satisfaction: Satisfaction) -> Decided {
        if satisfaction == Satisfaction::NotEvaluated {
            return Err(DomainError::SatisfactionReserved);
        }
        match (&self.case.status, self.case.satisfaction) {
            (_, Some(Satisfaction::NotEvaluated)) => {
                return Err(DomainError::EvaluationWindowClosed)
            }
            (_, Some(_)) => return Err(DomainError::AlreadyEvaluated),
            (Status::Replied | Status::ReviewRequested, None) => {}
            (Status::Registered | Status::Accepted, None) => return Err(DomainError::NotReplied),
            (other, None) => self.refuse_closed(other)?,
        }
        match self.case.deadlines.evaluate_by {
            Some(evaluate_by) if self.at < evaluate_by => {}
            _ => return Err(DomainError::EvaluationWindowClosed),
        }
        let mut events = vec![Event::Evaluated {
            at: self.at,
            office: self.office.clone(),
            satisfaction,
        }];
        // 回访: the office goes back to a dissatisfied petitioner, on a clock of its own.
        if satisfaction == Satisfaction::Dissatisfied {
            events.push(Event::FollowUpOpened {
                at: self.at,
                office: self.office.clone(),
                due_by: self
                    .calendar
                    .add_working_days(self.at, FOLLOW_UP_WORKING_DAYS),
            });
        }
        // A re-reviewed matter has no review window left: evaluating it closes it.
        if matches!(self.case.kind, CaseKind::ReReview { .. })
            && self.case.status == Status::Replied
        {
            events.push(Event::Finalised {
                at: self.at,
                office: self.office.clone(),
            });
        }
        Ok(events)
    }

    fn request_review(&self) -> Decided {
        match &self.case.status {
            Status::Replied | Status::Evaluated => {}
            Status::Registered | Status::Accepted => return Err(DomainError::NotReplied),
            // A reviewed case's re-review is asked of its review case, at the level above.
            Status::ReviewRequested | Status::Reviewed => {
                return Err(DomainError::ReviewAlreadyRequested)
            }
            other => self.refuse_closed(other)?,
        }
        let level = match self.case.kind {
            CaseKind::Original => ReviewLevel::Review,
            CaseKind::Review { .. } => ReviewLevel::ReReview,
            CaseKind::ReReview { .. } => return Err(DomainError::Final),
        };
        match self.case.deadlines.review_by {
            Some(review_by) if self.at < review_by => {}
            _ => return Err(DomainError::ReviewWindowClosed),
        }
        let Some(to) = self.office.parent_code() else {
            return Err(DomainError::NoLevelAbove {
                office: self.office.clone(),
            });
        };
        Ok(vec![Event::ReviewRequested {
            at: self.at,
            office: self.office.clone(),
            level,
            to,
        }])
    }

    fn set_grade(
        &self,
        grade: Grade,
        leader: &str,
        department: &str,
        plan: &str,
        deadline: Millis,
    ) -> Decided {
        if let status @ (Status::Final | Status::Declined { .. }) = &self.case.status {
            self.refuse_closed(status)?;
        }
        validate::line("leader", leader, OFFICER_CHARS_MAX)?;
        validate::line("department", department, DEPARTMENT_CHARS_MAX)?;
        validate::text("plan", plan, TEXT_CHARS_MAX)?;
        if deadline <= self.at {
            return Err(DomainError::GradeDeadlinePast);
        }
        Ok(vec![Event::Graded {
            at: self.at,
            office: self.office.clone(),
            grade,
            leader: leader.to_string(),
            department: department.to_string(),
            plan: plan.to_string(),
            deadline,
        }])
    }

    fn in_transit_to(&self) -> Result<OfficeCode, DomainError> {
        match &self.case.status {
            Status::InTransit { to, .. } => Ok(to.clone()),
            _ => Err(DomainError::NotInTransit),
        }
    }

    fn handoff_acked(&self) -> Decided {
        let to = self.in_transit_to()?;
        Ok(vec![Event::HandoffCompleted {
            at: self.at,
            office: self.office.clone(),
            to,
        }])
    }

    /// Bookkeeping from another office: never refused for its wording (an over-long reason is cut).
    fn handoff_refused(&self, reason: &str) -> Decided {
        let to = self.in_transit_to()?;
        let reason = validate::truncate(reason, REASON_CHARS_MAX);
        Ok(vec![Event::HandoffReverted {
            at: self.at,
            office: self.office.clone(),
            to,
            reason,
        }])
    }

    fn supervise(&self, from: &OfficeCode, due_days: u32, text: &str) -> Decided {
        if self.case.status == Status::Final {
            return Err(DomainError::Final);
        }
        if !from.is_ancestor_of(&self.case.office) {
            return Err(DomainError::NotSupervisor {
                from: from.clone(),
                owner: self.case.office.clone(),
            });
        }
        in_range(
            "due_days",
            due_days,
            SUPERVISION_DUE_DAYS_MIN,
            SUPERVISION_DUE_DAYS_MAX,
        )?;
        validate::text("text", text, TEXT_CHARS_MAX)?;
        Ok(vec![Event::SupervisionOrdered {
            at: self.at,
            office: self.office.clone(),
            from: from.clone(),
            text: text.to_string(),
            due_by: days_later(self.at, due_days),
        }])
    }

    fn answer_supervision(&self, text: &str, officer: &str) -> Decided {
        if self.case.supervision.is_none() {
            return Err(DomainError::NoSupervisionOrder);
        }
        validate::text("text", text, TEXT_CHARS_MAX)?;
        validate::line("officer", officer, OFFICER_CHARS_MAX)?;
        Ok(vec![Event::SupervisionAnswered {
            at: self.at,
            office: self.office.clone(),
            text: text.to_string(),
            officer: officer.to_string(),
        }])
    }
}

impl Decision<'_> {
    /// The review this case asked for must be of the case's own kind: a review of an original,
    /// a re-review of a review.
    fn require_reviewed_at(&self, level: ReviewLevel) -> Result<(), DomainError> {
        let fits = matches!(
            (&self.case.kind, level),
            (CaseKind::Original, ReviewLevel::Review)
                | (CaseKind::Review { .. }, ReviewLevel::ReReview)
        );
        if fits {
            Ok(())
        } else {
            Err(DomainError::FieldInvalid {
                field: "level",
                reason: "this case was not escalated to that level",
            })
        }
    }

    fn review_opened(&self, review: &CaseId, level: ReviewLevel) -> Decided {
        if *review == self.case.id {
            return Err(DomainError::FieldInvalid {
                field: "review",
                reason: "a case cannot review itself",
            });
        }
        self.require_reviewed_at(level)?;
        match &self.case.status {
            Status::ReviewRequested => {}
            other => {
                return Err(DomainError::InvalidTransition {
                    status: other.as_str(),
                    command: "review_opened",
                })
            }
        }
        Ok(vec![Event::ReviewOpened {
            at: self.at,
            office: self.office.clone(),
            review: review.clone(),
            level,
        }])
    }

    /// A decision from the level above. A review's decision makes an original `reviewed` (or
    /// final, when its re-review window lapsed); a re-review's makes the review it re-reviewed
    /// final, and (passed on by that review case) the original too.
    fn review_decided(
        &self,
        review: &CaseId,
        level: ReviewLevel,
        opinion: Opinion,
        text: &str,
        decided_at: Millis,
        is_final: bool,
    ) -> Decided {
        if *review == self.case.id {
            return Err(DomainError::FieldInvalid {
                field: "review",
                reason: "a case cannot review itself",
            });
        }
        validate::text("text", text, TEXT_CHARS_MAX)?;
        let allowed = match (&self.case.kind, level, &self.case.status) {
            (_, _, Status::Final) => return Err(DomainError::Final),
            (CaseKind::Original, ReviewLevel::Review, Status::ReviewRequested) => true,
            (CaseKind::Original, ReviewLevel::Review, Status::Reviewed) => is_final,
            (
                CaseKind::Original,
                ReviewLevel::ReReview,
                Status::ReviewRequested | Status::Reviewed,
            ) => true,
            (CaseKind::Review { .. }, ReviewLevel::ReReview, Status::ReviewRequested) => true,
            _ => false,
        };
        if !allowed {
            return Err(DomainError::InvalidTransition {
                status: self.case.status.as_str(),
                command: "review_decided",
            });
        }
        Ok(vec![Event::ReviewDecided {
            at: self.at,
            office: self.office.clone(),
            review: review.clone(),
            level,
            opinion,
            text: text.to_string(),
            decided_at,
            // A re-review's decision closes the matter whatever the message says.
            is_final: is_final || level == ReviewLevel::ReReview,
        }])
    }

    fn follow_order(
        &self,
        from: &OfficeCode,
        text: &str,
        ordered_at: Millis,
        due_by: Millis,
    ) -> Decided {
        if self.case.status == Status::Final {
            return Err(DomainError::Final);
        }
        validate::text("text", text, TEXT_CHARS_MAX)?;
        if due_by < ordered_at {
            return Err(DomainError::FieldInvalid {
                field: "due_by",
                reason: "an order is due after it is given",
            });
        }
        Ok(vec![Event::SupervisionFollowed {
            at: self.at,
            office: self.office.clone(),
            from: from.clone(),
            text: text.to_string(),
            ordered_at,
            due_by,
        }])
    }
}

impl Decision<'_> {
    /// Records the follow-up (回访) of a dissatisfied evaluation: its clock stops.
    fn follow_up(&self, note: &str, officer: &str) -> Decided {
        validate::line("officer", officer, OFFICER_CHARS_MAX)?;
        validate::text("note", note, TEXT_CHARS_MAX)?;
        if self.case.clock_run(ClockKind::FollowUp).is_none() {
            return Err(DomainError::NoFollowUp);
        }
        Ok(vec![Event::FollowedUp {
            at: self.at,
            office: self.office.clone(),
            officer: officer.to_string(),
            note: note.to_string(),
        }])
    }
}

fn in_range(field: &'static str, value: u32, min: u32, max: u32) -> Result<(), DomainError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(DomainError::OutOfRange { field, min, max })
    }
}

/// The clock events due at `ctx.now`, in order: warnings at 50 % and 75 %, overdue marks, the
/// return window's lapse, the evaluation's lapse, finalisation. Each fires once: after applying
/// them, `tick` at the same instant returns nothing and `next_alarm` lies in the future.
pub fn tick(case: &Case, ctx: &Context) -> Vec<Event> {
    if case.office != *ctx.office {
        return Vec::new();
    }
    clock::alarms(case)
        .into_iter()
        .take_while(|alarm| alarm.at <= ctx.now)
        .map(|alarm| clock_event(alarm, ctx))
        .collect()
}

fn clock_event(
    Alarm {
        at: threshold_at,
        due,
    }: Alarm,
    ctx: &Context,
) -> Event {
    let (at, office) = (ctx.now, ctx.office.clone());
    match due {
        Due::Threshold { clock, percent, .. } if percent < 100 => Event::Warned {
            at,
            office,
            clock,
            percent,
            threshold_at,
        },
        // A grade's deadline is a plan's date: reaching it is the last warning, not a breach.
        Due::Threshold {
            clock: clock @ ClockKind::Grade,
            percent,
            ..
        } => Event::Warned {
            at,
            office,
            clock,
            percent,
            threshold_at,
        },
        Due::Threshold { clock, due_at, .. } if clock.is_breach_at_limit() => Event::Overdue {
            at,
            office,
            clock,
            due_at,
        },
        Due::Threshold { due_at, .. } => Event::ReturnWindowLapsed { at, office, due_at },
        Due::EvaluationLapse => Event::EvaluationLapsed { at, office },
        Due::Finalise => Event::Finalised { at, office },
    }
}

/// The receiver's copy of a case handed to `ctx.office`: same id, owned here, history continued
/// with a `received` entry. Its clocks are this office's own: 15 days to decide, 5 working days to
/// return (not for a case that comes back by return), the assignment's report-back limit. The
/// sender's copy must be in transit to this office with this very handoff, and its chain intact.
pub fn receive(original: &Case, kind: HandoffKind, ctx: &Context) -> Result<Case, DomainError> {
    let Status::InTransit { to, kind: started } = &original.status else {
        return Err(DomainError::NotInTransit);
    };
    if to != ctx.office {
        return Err(DomainError::WrongRecipient {
            to: to.clone(),
            office: ctx.office.clone(),
        });
    }
    if *started != kind {
        return Err(DomainError::HandoffMismatch);
    }
    original.verify_chain()?;
    let at = ctx.now;
    let return_by = (kind != HandoffKind::Return)
        .then(|| ctx.calendar.add_working_days(at, RETURN_WORKING_DAYS));
    let report_by = match kind {
        HandoffKind::Assign { due_by } => Some(due_by),
        HandoffKind::Transfer | HandoffKind::Return => None,
    };
    let event = Event::Received {
        at,
        office: ctx.office.clone(),
        from: original.office.clone(),
        handoff: kind,
        accept_by: days_later(at, ACCEPT_DAYS),
        return_by,
        report_by,
    };
    let mut case = original.clone();
    case.apply(&event);
    Ok(case)
}

//! Deadline clocks. Each statutory clock runs from a stamped start to a due instant, warns at 50 %
//! and 75 % and reaches its limit at 100 %, each threshold exactly once per run. One function,
//! [`alarms`], lists what is still to fire: `tick` emits the due part of it and `next_alarm` reads
//! its head, so the two can never disagree.

use serde::{Deserialize, Serialize};

use crate::calendar::Millis;
use crate::model::{Case, CaseExtra, CaseKind, Status};
use crate::rules::WARNING_PERCENTS;

/// The statutory clocks that warn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockKind {
    /// 15 days to accept / decline / transfer / assign.
    Accept,
    /// 60 days (+ one extension) to reply; 30 days to decide a review or re-review.
    Reply,
    /// 5 working days in which the receiver may return the case.
    Return,
    /// The report-back deadline of an assignment.
    Report,
    /// The answer deadline of a supervision order.
    Supervision,
    /// The resolution deadline a leader set when grading a major case (四定's 定时限): it warns
    /// at 50 %, 75 % and 100 % and is not a statutory limit, so reaching it is no breach.
    Grade,
    /// The follow-up (回访) a dissatisfied evaluation opens: the office contacts the petitioner
    /// again within [`crate::rules::FOLLOW_UP_WORKING_DAYS`] working days.
    FollowUp,
}

impl ClockKind {
    pub const ALL: [ClockKind; 7] = [
        ClockKind::Accept,
        ClockKind::Reply,
        ClockKind::Return,
        ClockKind::Report,
        ClockKind::Supervision,
        ClockKind::Grade,
        ClockKind::FollowUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClockKind::Accept => "accept",
            ClockKind::Reply => "reply",
            ClockKind::Return => "return",
            ClockKind::Report => "report",
            ClockKind::Supervision => "supervision",
            ClockKind::Grade => "grade",
            ClockKind::FollowUp => "follow_up",
        }
    }

    /// Reaching the limit is a breach (the case is overdue) for every clock but the return window
    /// (a receiver that does not return a case simply keeps it) and a grade's deadline (a plan's
    /// date, warned at 100 %, not a statutory limit).
    pub fn is_breach_at_limit(self) -> bool {
        !matches!(self, ClockKind::Return | ClockKind::Grade)
    }
}

/// A running clock: when it started (the due instant is in [`Deadlines`]) and the highest
/// threshold already announced (0, 50, 75 or 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockRun {
    pub started_at: Millis,
    pub reached_percent: u8,
}

/// One slot per statutory clock; None when it is not running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clocks {
    pub accept: Option<ClockRun>,
    pub reply: Option<ClockRun>,
    #[serde(rename = "return")]
    pub return_window: Option<ClockRun>,
    pub report: Option<ClockRun>,
    pub supervision: Option<ClockRun>,
}

impl Clocks {
    pub fn get(&self, kind: ClockKind) -> Option<&ClockRun> {
        match kind {
            ClockKind::Accept => self.accept.as_ref(),
            ClockKind::Reply => self.reply.as_ref(),
            ClockKind::Return => self.return_window.as_ref(),
            ClockKind::Report => self.report.as_ref(),
            ClockKind::Supervision => self.supervision.as_ref(),
            // Kept in the case's extension ([`Case::clock_run`]).
            ClockKind::Grade | ClockKind::FollowUp => None,
        }
    }

    fn slot_mut(&mut self, kind: ClockKind) -> Option<&mut Option<ClockRun>> {
        match kind {
            ClockKind::Accept => Some(&mut self.accept),
            ClockKind::Reply => Some(&mut self.reply),
            ClockKind::Return => Some(&mut self.return_window),
            ClockKind::Report => Some(&mut self.report),
            ClockKind::Supervision => Some(&mut self.supervision),
            ClockKind::Grade | ClockKind::FollowUp => None,
        }
    }
}

/// When each running limit or window ends (Unix ms); None where nothing runs. The CLI prints them
/// with `format_rfc3339`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// Decide (accept / decline / transfer / assign) by.
    pub accept_by: Option<Millis>,
    /// Reply (or decide the review) by.
    pub reply_by: Option<Millis>,
    /// The petitioner may ask for review (or re-review) until.
    pub review_by: Option<Millis>,
    /// The petitioner may evaluate the reply until.
    pub evaluate_by: Option<Millis>,
    /// The receiver may return the case until.
    pub return_by: Option<Millis>,
    /// Report back to the assigning office by.
    pub report_by: Option<Millis>,
    /// Answer the open supervision order by.
    pub supervision_by: Option<Millis>,
}

impl Deadlines {
    /// The due instant of a statutory clock.
    pub fn of(&self, kind: ClockKind) -> Option<Millis> {
        match kind {
            ClockKind::Accept => self.accept_by,
            ClockKind::Reply => self.reply_by,
            ClockKind::Return => self.return_by,
            ClockKind::Report => self.report_by,
            ClockKind::Supervision => self.supervision_by,
            // Kept in the case's extension ([`Case::clock_due`]).
            ClockKind::Grade | ClockKind::FollowUp => None,
        }
    }

    fn slot_mut(&mut self, kind: ClockKind) -> Option<&mut Option<Millis>> {
        match kind {
            ClockKind::Accept => Some(&mut self.accept_by),
            ClockKind::Reply => Some(&mut self.reply_by),
            ClockKind::Return => Some(&mut self.return_by),
            ClockKind::Report => Some(&mut self.report_by),
            ClockKind::Supervision => Some(&mut self.supervision_by),
            ClockKind::Grade | ClockKind::FollowUp => None,
        }
    }
}

/// The instant at which a clock reaches `percent` of its limit (100 gives the due instant). A limit
/// already past at the start (an assignment received after its report-back date) has every
/// threshold at its start, so they still fire in order.
pub fn threshold_at(started_at: Millis, due_at: Millis, percent: u8) -> Millis {
    if due_at <= started_at {
        return started_at;
    }
    let span = i128::from(due_at) - i128::from(started_at);
    let at = i128::from(started_at) + span * i128::from(percent) / 100;
    // Between start and due for percent <= 100, so it fits.
    i64::try_from(at).unwrap_or(due_at)
}

impl Case {
    /// A clock's run, wherever this case keeps it (the five statutory clocks in `clocks`, the
    /// grade and follow-up clocks in the version-4 extension).
    pub fn clock_run(&self, kind: ClockKind) -> Option<&ClockRun> {
        match kind {
            ClockKind::Grade => self.extra.as_ref()?.grade.as_ref(),
            ClockKind::FollowUp => self.extra.as_ref()?.follow_up.as_ref(),
            _ => self.clocks.get(kind),
        }
    }

    /// A running clock's due instant: the grade's own deadline for the grade clock.
    pub fn clock_due(&self, kind: ClockKind) -> Option<Millis> {
        match kind {
            ClockKind::Grade => self
                .clock_run(kind)
                .and(self.grade.as_ref())
                .map(|grade| grade.deadline),
            ClockKind::FollowUp => self.extra.as_ref()?.follow_up_by,
            _ => self.deadlines.of(kind),
        }
    }

    /// The version-4 extension, made on first use: the case is stored at version 4 from then on.
    pub(crate) fn extra_mut(&mut self) -> &mut CaseExtra {
        self.v = self.v.max(crate::model::CASE_VERSION_EXTRA);
        self.extra.get_or_insert_with(CaseExtra::default)
    }

    fn run_slot(&mut self, kind: ClockKind) -> &mut Option<ClockRun> {
        match kind {
            ClockKind::Grade => &mut self.extra_mut().grade,
            ClockKind::FollowUp => &mut self.extra_mut().follow_up,
            _ => self.clocks.slot_mut(kind).expect("a statutory clock"),
        }
    }

    /// (Re)starts a clock: a new run announces every threshold again. The grade clock's due
    /// instant is the grade's deadline.
    pub(crate) fn start_clock(&mut self, kind: ClockKind, started_at: Millis, due_at: Millis) {
        *self.run_slot(kind) = Some(ClockRun {
            started_at,
            reached_percent: 0,
        });
        match kind {
            ClockKind::Grade => {}
            ClockKind::FollowUp => self.extra_mut().follow_up_by = Some(due_at),
            _ => *self.deadlines.slot_mut(kind).expect("a statutory clock") = Some(due_at),
        }
    }

    /// Moves a running clock's limit (an extension); thresholds already announced stay announced.
    pub(crate) fn move_clock(&mut self, kind: ClockKind, due_at: Millis) {
        if let (Some(_), Some(slot)) = (self.clocks.get(kind), self.deadlines.slot_mut(kind)) {
            *slot = Some(due_at);
        }
    }

    pub(crate) fn stop_clock(&mut self, kind: ClockKind) {
        match kind {
            ClockKind::Grade | ClockKind::FollowUp => {
                // Nothing to stop on a case without the extension (and none is made for it).
                if let Some(extra) = &mut self.extra {
                    match kind {
                        ClockKind::Grade => extra.grade = None,
                        _ => {
                            extra.follow_up = None;
                            extra.follow_up_by = None;
                        }
                    }
                }
            }
            _ => {
                *self.run_slot(kind) = None;
                *self.deadlines.slot_mut(kind).expect("a statutory clock") = None;
            }
        }
    }

    pub(crate) fn mark_reached(&mut self, kind: ClockKind, percent: u8) {
        let run = match kind {
            ClockKind::Grade | ClockKind::FollowUp if self.extra.is_none() => return,
            _ => self.run_slot(kind),
        };
        if let Some(run) = run {
            run.reached_percent = run.reached_percent.max(percent);
        }
    }
}

/// What a clock event does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// A statutory clock reaches a percentage of its limit (which ends at `due_at`).
    Threshold {
        clock: ClockKind,
        percent: u8,
        due_at: Millis,
    },
    /// The evaluation window closes unevaluated.
    EvaluationLapse,
    /// The review window closes without a request (or a re-reviewed matter's evaluation window
    /// closes): the matter is final.
    Finalise,
}

/// One future (or overdue-for-ticking) clock event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Alarm {
    pub at: Millis,
    pub due: Due,
}

/// Everything still to fire on this copy, in firing order (by instant; at equal instants by clock,
/// then the evaluation lapse, then finalisation). A case in transit or forwarded has none: its
/// decision is made and this office no longer answers for it.
pub(crate) fn alarms(case: &Case) -> Vec<Alarm> {
    if matches!(
        case.status,
        Status::InTransit { .. } | Status::Forwarded { .. }
    ) {
        return Vec::new();
    }
    let mut alarms: Vec<(Millis, u32, Due)> = Vec::new();
    for (index, clock) in (0u32..).zip(ClockKind::ALL) {
        let (Some(run), Some(due_at)) = (case.clock_run(clock), case.clock_due(clock)) else {
            continue;
        };
        for percent in WARNING_PERCENTS
            .into_iter()
            .chain([100])
            .filter(|&percent| percent > run.reached_percent)
        {
            let at = threshold_at(run.started_at, due_at, percent);
            alarms.push((
                at,
                index * 1000 + u32::from(percent),
                Due::Threshold {
                    clock,
                    percent,
                    due_at,
                },
            ));
        }
    }
    if case.satisfaction.is_none() {
        if let Some(at) = case.deadlines.evaluate_by {
            alarms.push((at, 10_000, Due::EvaluationLapse));
        }
    }
    if let Some(at) = finalise_at(case) {
        alarms.push((at, 10_001, Due::Finalise));
    }
    alarms.sort_by_key(|&(at, rank, _)| (at, rank));
    alarms
        .into_iter()
        .map(|(at, _, due)| Alarm { at, due })
        .collect()
}

/// When the matter becomes final by lapse: the review window's end, or for a re-reviewed matter
/// (no further review) the end of its evaluation window.
fn finalise_at(case: &Case) -> Option<Millis> {
    match (&case.status, &case.kind) {
        (Status::Replied, CaseKind::ReReview { .. }) => case.deadlines.evaluate_by,
        (Status::Replied | Status::Evaluated, _) => case.deadlines.review_by,
        _ => None,
    }
}

//! Departments inside an office (一窗受理: the departments resident in the reception hall), the
//! tasks a case gives them (集成联办: one lead department, cooperating departments, each with its
//! own clock and answer) and joint meetings (联席会议) whose decisions become tasks.
//!
//! Pure: every function takes the time and the calendar it needs, reads only what it is given
//! and answers a new value or a [`DeskError`] that changes nothing. The node stores the values
//! (`machine::departments`), one key each, versioned like every stored value.
//!
//! The rule the reply follows: the office's reply waits for the lead department's answer.
//! Cooperating departments' answers (and tasks from a joint meeting) are recorded, counted and
//! shown, but do not hold the reply back: the lead answers, the others support it.

use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, Millis};
use crate::ids::{CaseId, OfficeCode};
use crate::validate;

/// The version of the stored department records this build writes (every record carries it).
pub const DESK_VERSION: u16 = 1;
/// Departments one office keeps at most.
pub const DEPARTMENTS_PER_OFFICE_MAX: usize = 64;
/// Longest department, intake point or proxy code: lowercase letters, digits and '-'.
pub const CODE_CHARS_MAX: usize = 32;
/// Longest department or intake point name.
pub const NAME_CHARS_MAX: usize = 64;
/// Tasks one case carries at most (lead, cooperating and meeting tasks together).
pub const TASKS_PER_CASE_MAX: usize = 16;
/// Cooperating departments one routing names at most.
pub const COOPERATE_MAX: usize = 8;
/// A task's clock: 1 to this many working days.
pub const TASK_DUE_DAYS_MAX: u32 = 90;
/// Hand-offs of one case whose closed tasks an office keeps (the oldest goes beyond).
pub const CLOSINGS_PER_CASE_MAX: usize = 16;
/// Longest instruction or answer of a task.
pub const TASK_TEXT_CHARS_MAX: usize = 2_000;
/// Cases one joint meeting decides at most.
pub const MEETING_CASES_MAX: usize = 20;
/// Departments attending one meeting at most.
pub const MEETING_ATTENDEES_MAX: usize = DEPARTMENTS_PER_OFFICE_MAX;
/// Decisions one meeting records at most.
pub const MEETING_DECISIONS_MAX: usize = 40;
/// Largest minutes of one meeting, in bytes (UTF-8).
pub const MEETING_MINUTES_BYTES_MAX: usize = 16 * 1024;

/// Why a department request changed nothing: a stable code, a message for people, and whether
/// the input itself was malformed (else it was refused by a rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskError {
    pub code: &'static str,
    pub message: String,
    pub invalid: bool,
}

impl std::fmt::Display for DeskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> DeskError {
    DeskError {
        code,
        message: message.into(),
        invalid: true,
    }
}

pub(crate) fn refuse(code: &'static str, message: impl Into<String>) -> DeskError {
    DeskError {
        code,
        message: message.into(),
        invalid: false,
    }
}

/// A short, printable echo of input in an error.
fn shown(input: &str) -> String {
    crate::error::echo(input)
}

/// A code (department, intake point, proxy agent): 1 to [`CODE_CHARS_MAX`] lowercase ASCII
/// letters, digits or '-', starting with a letter or digit.
pub fn check_code(what: &str, code: &str) -> Result<(), DeskError> {
    let ok = !code.is_empty()
        && code.len() <= CODE_CHARS_MAX
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && code.as_bytes()[0] != b'-';
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "bad_code",
            format!(
                "bad {what} code {:?}: 1 to {CODE_CHARS_MAX} lowercase letters, digits or '-'",
                shown(code)
            ),
        ))
    }
}

pub(crate) fn check_line(field: &'static str, value: &str, max: usize) -> Result<(), DeskError> {
    validate::line(field, value, max).map_err(|e| invalid("bad_text", e.to_string()))
}

pub(crate) fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), DeskError> {
    validate::text(field, value, max).map_err(|e| invalid("bad_text", e.to_string()))
}

/// A department of an office (e.g. `judicial 司法`, `labour 人社`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    pub v: u16,
    pub code: String,
    pub name: String,
    /// A disabled department takes no new tasks; its tasks and figures stay.
    pub disabled: bool,
    pub added_at: Millis,
}

/// A new department, or the existing one when it is the same (a retried request); refused when
/// the code is taken by another name or the office has [`DEPARTMENTS_PER_OFFICE_MAX`].
pub fn add_department(
    existing: Option<&Department>,
    count: usize,
    code: &str,
    name: &str,
    now: Millis,
) -> Result<Department, DeskError> {
    check_code("department", code)?;
    check_line("name", name, NAME_CHARS_MAX)?;
    match existing {
        Some(department) if department.name == name && !department.disabled => {
            Ok(department.clone())
        }
        Some(department) => Err(refuse(
            "department_exists",
            format!(
                "department {code} exists already ({}{})",
                department.name,
                if department.disabled {
                    ", disabled"
                } else {
                    ""
                }
            ),
        )),
        None if count >= DEPARTMENTS_PER_OFFICE_MAX => Err(refuse(
            "too_many_departments",
            format!("an office has at most {DEPARTMENTS_PER_OFFICE_MAX} departments"),
        )),
        None => Ok(Department {
            v: DESK_VERSION,
            code: code.to_string(),
            name: name.to_string(),
            disabled: false,
            added_at: now,
        }),
    }
}

/// The department `code` disabled.
pub fn disable_department(
    existing: Option<&Department>,
    code: &str,
) -> Result<Department, DeskError> {
    check_code("department", code)?;
    let department = existing.ok_or_else(|| unknown_department(code))?;
    let mut department = department.clone();
    department.disabled = true;
    Ok(department)
}

fn unknown_department(code: &str) -> DeskError {
    refuse(
        "unknown_department",
        format!(
            "no department {:?} at this office (`liandong department list`)",
            shown(code)
        ),
    )
}

/// What part a department takes in a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskRole {
    /// 牵头: answers for the case; the office's reply waits for it.
    Lead,
    /// 协办: supports the lead with its own answer.
    Cooperate,
    /// A joint meeting's decision (联席会议交办).
    Meeting,
}

impl TaskRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskRole::Lead => "lead",
            TaskRole::Cooperate => "cooperate",
            TaskRole::Meeting => "meeting",
        }
    }
}

/// A department's answer to its task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAnswer {
    pub text: String,
    pub officer: String,
    pub at: Millis,
}

/// One department's task on a case, with its own clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub department: String,
    pub role: TaskRole,
    /// What the department is asked to do (the routing's note or the meeting's decision).
    pub text: String,
    pub assigned_by: String,
    pub assigned_at: Millis,
    /// The task's clock: `due_days` working days after it was given.
    pub due_by: Millis,
    /// The meeting whose decision made it.
    pub meeting: Option<String>,
    pub answer: Option<TaskAnswer>,
    /// Its clock ran out before it was answered (set by the office's tick, sticky).
    pub overdue: bool,
}

impl Task {
    pub fn is_open(&self) -> bool {
        self.answer.is_none()
    }

    /// Past its clock and not answered at `now` (what the tick marks; also true between the
    /// clock's end and the next tick).
    pub fn is_overdue(&self, now: Millis) -> bool {
        self.overdue || (self.is_open() && now > self.due_by)
    }
}

/// Every department task of one case (`tasks/<case id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseTasks {
    pub v: u16,
    pub case_id: CaseId,
    pub tasks: Vec<Task>,
}

impl CaseTasks {
    pub fn new(case_id: CaseId) -> CaseTasks {
        CaseTasks {
            v: DESK_VERSION,
            case_id,
            tasks: Vec::new(),
        }
    }

    pub fn lead(&self) -> Option<&Task> {
        self.tasks.iter().find(|t| t.role == TaskRole::Lead)
    }

    fn open_task_of(&self, department: &str) -> Option<usize> {
        self.tasks
            .iter()
            .position(|t| t.department == department && t.is_open())
    }
}

/// The clock of a task given at `now` for `due_days` working days.
pub fn task_due(calendar: &Calendar, now: Millis, due_days: u32) -> Result<Millis, DeskError> {
    if !(1..=TASK_DUE_DAYS_MAX).contains(&due_days) {
        return Err(invalid(
            "out_of_range",
            format!("due days must be between 1 and {TASK_DUE_DAYS_MAX} (working days)"),
        ));
    }
    Ok(calendar.add_working_days(now, due_days))
}

/// One department's new task; `departments` says which departments exist (and are enabled).
#[allow(clippy::too_many_arguments)]
fn add_task(
    tasks: &mut CaseTasks,
    department: &str,
    role: TaskRole,
    text: &str,
    officer: &str,
    now: Millis,
    due_by: Millis,
    meeting: Option<&str>,
    departments: &dyn Fn(&str) -> Option<Department>,
) -> Result<(), DeskError> {
    check_code("department", department)?;
    match departments(department) {
        None => return Err(unknown_department(department)),
        Some(d) if d.disabled => {
            return Err(refuse(
                "department_disabled",
                format!("department {department} is disabled"),
            ))
        }
        Some(_) => {}
    }
    if tasks.open_task_of(department).is_some() {
        return Err(refuse(
            "task_open",
            format!(
                "department {department} already has an open task on case {}",
                tasks.case_id
            ),
        ));
    }
    if tasks.tasks.len() >= TASKS_PER_CASE_MAX {
        return Err(refuse(
            "too_many_tasks",
            format!("a case carries at most {TASKS_PER_CASE_MAX} department tasks"),
        ));
    }
    tasks.tasks.push(Task {
        department: department.to_string(),
        role,
        text: text.to_string(),
        assigned_by: officer.to_string(),
        assigned_at: now,
        due_by,
        meeting: meeting.map(str::to_string),
        answer: None,
        overdue: false,
    });
    Ok(())
}

/// What a routing (集成联办) asks: a lead department (required unless the case has one) and
/// cooperating departments, each with a clock of `due_days` working days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    pub lead: Option<String>,
    pub cooperate: Vec<String>,
    pub due_days: u32,
    pub text: String,
}

/// The case's tasks after `routing`. A case has one lead: routing again may add cooperating
/// departments, not a second lead.
pub fn route(
    tasks: Option<&CaseTasks>,
    case_id: &CaseId,
    routing: &Routing,
    officer: &str,
    now: Millis,
    calendar: &Calendar,
    departments: &dyn Fn(&str) -> Option<Department>,
) -> Result<CaseTasks, DeskError> {
    let mut next = tasks
        .cloned()
        .unwrap_or_else(|| CaseTasks::new(case_id.clone()));
    if routing.cooperate.len() > COOPERATE_MAX {
        return Err(invalid(
            "too_many_departments",
            format!("a routing names at most {COOPERATE_MAX} cooperating departments"),
        ));
    }
    let text = routing.text.trim();
    if !text.is_empty() {
        check_text("text", text, TASK_TEXT_CHARS_MAX)?;
    }
    let due_by = task_due(calendar, now, routing.due_days)?;
    match (&routing.lead, next.lead()) {
        (Some(_), Some(lead)) => {
            return Err(refuse(
                "lead_exists",
                format!(
                    "case {case_id} has its lead department already ({})",
                    lead.department
                ),
            ))
        }
        (None, None) => {
            return Err(invalid(
                "no_lead",
                format!("case {case_id} needs a lead department (`--lead CODE`)"),
            ))
        }
        (Some(lead), None) => add_task(
            &mut next,
            lead,
            TaskRole::Lead,
            text,
            officer,
            now,
            due_by,
            None,
            departments,
        )?,
        (None, Some(_)) if routing.cooperate.is_empty() => {
            return Err(invalid(
                "nothing_to_route",
                "name a lead or cooperating departments",
            ))
        }
        (None, Some(_)) => {}
    }
    for department in &routing.cooperate {
        add_task(
            &mut next,
            department,
            TaskRole::Cooperate,
            text,
            officer,
            now,
            due_by,
            None,
            departments,
        )?;
    }
    Ok(next)
}

/// The case's tasks with `department`'s open task answered.
pub fn answer(
    tasks: Option<&CaseTasks>,
    case_id: &CaseId,
    department: &str,
    text: &str,
    officer: &str,
    now: Millis,
) -> Result<CaseTasks, DeskError> {
    check_code("department", department)?;
    check_text("text", text, TASK_TEXT_CHARS_MAX)?;
    let no_task = || {
        refuse(
            "no_open_task",
            format!("department {department} has no open task on case {case_id}"),
        )
    };
    let mut next = tasks.cloned().ok_or_else(no_task)?;
    let index = next.open_task_of(department).ok_or_else(no_task)?;
    next.tasks[index].answer = Some(TaskAnswer {
        text: text.to_string(),
        officer: officer.to_string(),
        at: now,
    });
    Ok(next)
}

/// Whether the office may reply: refused while the lead department has not answered.
pub fn check_reply(tasks: Option<&CaseTasks>) -> Result<(), DeskError> {
    match tasks.and_then(CaseTasks::lead) {
        Some(lead) if lead.is_open() => Err(refuse(
            "lead_not_answered",
            format!(
                "the lead department {} has not answered yet (`liandong case task-answer CASE \
                 --department {} --text ...`); the reply waits for it",
                lead.department, lead.department
            ),
        )),
        _ => Ok(()),
    }
}

/// Marks every open task of `tasks` past its clock at `now` overdue; whether any changed.
pub fn mark_overdue(tasks: &mut CaseTasks, now: Millis) -> bool {
    let mut changed = false;
    for task in &mut tasks.tasks {
        if task.is_open() && !task.overdue && now > task.due_by {
            task.overdue = true;
            changed = true;
        }
    }
    changed
}

/// A case's tasks as they stood when the office handed the case on: closed, their clocks
/// stopped (an unanswered one is never marked overdue afterwards; one marked before stays so).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closing {
    /// Why they were closed, for people: "handed on to <office> (<handoff>)".
    pub reason: String,
    /// The office the case was handed on to.
    pub to: OfficeCode,
    /// `transfer`, `assign` or `return`.
    pub handoff: String,
    pub at: Millis,
    /// The tasks, answered or not, as they stood.
    pub tasks: Vec<Task>,
}

/// Every closing of one case's tasks at this office, oldest first (`tasks-closed/<case id>`):
/// kept in the office's records after the case left; at most [`CLOSINGS_PER_CASE_MAX`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedTasks {
    pub v: u16,
    pub case_id: CaseId,
    pub closings: Vec<Closing>,
}

/// The case's tasks closed because the office handed the case on to `to` at `at`: `closed`
/// with one more closing. The office then holds no tasks on the case (a case that comes back
/// is routed anew).
pub fn close_handed_on(
    closed: Option<&ClosedTasks>,
    tasks: &CaseTasks,
    to: &OfficeCode,
    handoff: &str,
    at: Millis,
) -> ClosedTasks {
    let mut next = closed.cloned().unwrap_or_else(|| ClosedTasks {
        v: DESK_VERSION,
        case_id: tasks.case_id.clone(),
        closings: Vec::new(),
    });
    next.closings.push(Closing {
        reason: format!("handed on to {to} ({handoff})"),
        to: to.clone(),
        handoff: handoff.to_string(),
        at,
        tasks: tasks.tasks.clone(),
    });
    let beyond = next.closings.len().saturating_sub(CLOSINGS_PER_CASE_MAX);
    next.closings.drain(..beyond);
    next
}

/// One department's figures: the feed of a scorecard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentFigures {
    pub department: String,
    pub open: u64,
    pub answered: u64,
    /// Open past their clock, or answered after it.
    pub overdue: u64,
    pub lead: u64,
    pub cooperate: u64,
    pub meeting: u64,
    /// Unanswered when the office handed the case on: closed, counted neither open nor overdue
    /// (unless marked overdue before it left).
    pub handed_on: u64,
}

/// Figures per department over `all` tasks at `now`, for every department in `departments`
/// (those without tasks count zero), in code order.
pub fn figures<'a>(
    departments: &[Department],
    all: impl IntoIterator<Item = &'a CaseTasks>,
    now: Millis,
) -> Vec<DepartmentFigures> {
    let mut by: std::collections::BTreeMap<String, DepartmentFigures> = departments
        .iter()
        .map(|d| {
            (
                d.code.clone(),
                DepartmentFigures {
                    department: d.code.clone(),
                    ..Default::default()
                },
            )
        })
        .collect();
    for tasks in all {
        for task in &tasks.tasks {
            let f = by
                .entry(task.department.clone())
                .or_insert_with(|| DepartmentFigures {
                    department: task.department.clone(),
                    ..Default::default()
                });
            if task.is_open() {
                f.open += 1;
            } else {
                f.answered += 1;
            }
            let late_answer = task.answer.as_ref().is_some_and(|a| a.at > task.due_by);
            if task.is_overdue(now) || late_answer {
                f.overdue += 1;
            }
            match task.role {
                TaskRole::Lead => f.lead += 1,
                TaskRole::Cooperate => f.cooperate += 1,
                TaskRole::Meeting => f.meeting += 1,
            }
        }
    }
    by.into_values().collect()
}

/// `figures` with the tasks the office closed when it handed cases on: an answered one counts
/// as answered, an unanswered one as handed on; overdue only when it was answered late or
/// marked overdue before the case left.
pub fn count_closed<'a>(
    figures: &mut Vec<DepartmentFigures>,
    closed: impl IntoIterator<Item = &'a ClosedTasks>,
) {
    let mut by: std::collections::BTreeMap<String, DepartmentFigures> = figures
        .drain(..)
        .map(|f| (f.department.clone(), f))
        .collect();
    for task in closed
        .into_iter()
        .flat_map(|c| c.closings.iter())
        .flat_map(|c| c.tasks.iter())
    {
        let f = by
            .entry(task.department.clone())
            .or_insert_with(|| DepartmentFigures {
                department: task.department.clone(),
                ..Default::default()
            });
        if task.is_open() {
            f.handed_on += 1;
        } else {
            f.answered += 1;
        }
        let late_answer = task.answer.as_ref().is_some_and(|a| a.at > task.due_by);
        if task.overdue || late_answer {
            f.overdue += 1;
        }
        match task.role {
            TaskRole::Lead => f.lead += 1,
            TaskRole::Cooperate => f.cooperate += 1,
            TaskRole::Meeting => f.meeting += 1,
        }
    }
    figures.extend(by.into_values());
}

/// A decision of a joint meeting on one case: which department does what within how many
/// working days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub case_id: CaseId,
    pub department: String,
    pub due_days: u32,
    pub text: String,
}

/// A joint meeting (联席会议) of the office's departments (`meeting/<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    pub v: u16,
    pub id: String,
    pub held_at: Millis,
    pub recorded_by: String,
    pub cases: Vec<CaseId>,
    pub attendees: Vec<String>,
    pub minutes: String,
    pub decisions: Vec<Decision>,
}

/// What holding a meeting asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingRequest {
    pub cases: Vec<CaseId>,
    pub attendees: Vec<String>,
    pub minutes: String,
    pub decisions: Vec<Decision>,
}

/// The meeting `id` as recorded, and each case's tasks with the decisions' tasks added.
/// `tasks_of` gives a case's current tasks, `held` whether this office holds the case.
#[allow(clippy::too_many_arguments)]
pub fn hold_meeting(
    id: &str,
    request: &MeetingRequest,
    officer: &str,
    now: Millis,
    calendar: &Calendar,
    departments: &dyn Fn(&str) -> Option<Department>,
    held: &dyn Fn(&CaseId) -> bool,
    tasks_of: &dyn Fn(&CaseId) -> Option<CaseTasks>,
) -> Result<(Meeting, Vec<CaseTasks>), DeskError> {
    if request.cases.is_empty() || request.cases.len() > MEETING_CASES_MAX {
        return Err(invalid(
            "bad_cases",
            format!("a meeting takes 1 to {MEETING_CASES_MAX} cases"),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for case_id in &request.cases {
        if !seen.insert(case_id) {
            return Err(invalid(
                "bad_cases",
                format!("case {case_id} is named twice"),
            ));
        }
        if !held(case_id) {
            return Err(refuse(
                "case_not_found",
                format!("case {case_id} is not held by this office"),
            ));
        }
    }
    if request.attendees.is_empty() || request.attendees.len() > MEETING_ATTENDEES_MAX {
        return Err(invalid(
            "bad_attendees",
            format!("a meeting has 1 to {MEETING_ATTENDEES_MAX} attending departments"),
        ));
    }
    let mut present = std::collections::BTreeSet::new();
    for department in &request.attendees {
        check_code("department", department)?;
        if departments(department).is_none() {
            return Err(unknown_department(department));
        }
        if !present.insert(department.as_str()) {
            return Err(invalid(
                "bad_attendees",
                format!("department {department} is named twice"),
            ));
        }
    }
    if request.minutes.len() > MEETING_MINUTES_BYTES_MAX {
        return Err(invalid(
            "too_large",
            format!(
                "the minutes have {} bytes; at most {MEETING_MINUTES_BYTES_MAX}",
                request.minutes.len()
            ),
        ));
    }
    check_text("minutes", &request.minutes, MEETING_MINUTES_BYTES_MAX)?;
    if request.decisions.is_empty() || request.decisions.len() > MEETING_DECISIONS_MAX {
        return Err(invalid(
            "bad_decisions",
            format!("a meeting records 1 to {MEETING_DECISIONS_MAX} decisions"),
        ));
    }
    let mut changed: Vec<CaseTasks> = Vec::new();
    for decision in &request.decisions {
        if !request.cases.contains(&decision.case_id) {
            return Err(invalid(
                "bad_decisions",
                format!(
                    "the decision for {} names a case the meeting did not take",
                    decision.case_id
                ),
            ));
        }
        check_text("decision", &decision.text, TASK_TEXT_CHARS_MAX)?;
        let due_by = task_due(calendar, now, decision.due_days)?;
        let index = match changed.iter().position(|t| t.case_id == decision.case_id) {
            Some(index) => index,
            None => {
                changed.push(
                    tasks_of(&decision.case_id)
                        .unwrap_or_else(|| CaseTasks::new(decision.case_id.clone())),
                );
                changed.len() - 1
            }
        };
        add_task(
            &mut changed[index],
            &decision.department,
            TaskRole::Meeting,
            &decision.text,
            officer,
            now,
            due_by,
            Some(id),
            departments,
        )?;
    }
    let meeting = Meeting {
        v: DESK_VERSION,
        id: id.to_string(),
        held_at: now,
        recorded_by: officer.to_string(),
        cases: request.cases.clone(),
        attendees: request.attendees.clone(),
        minutes: request.minutes.clone(),
        decisions: request.decisions.clone(),
    };
    Ok((meeting, changed))
}

/// One change to an office's departments, tasks, meetings, intake points or proxies: what goes
/// through the office's log (`Operation::Desk`). New variants go at the end (the binary codec
/// names a variant by its position).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeskChange {
    AddDepartment {
        code: String,
        name: String,
    },
    DisableDepartment {
        code: String,
    },
    /// 集成联办: a lead and cooperating departments on a case.
    Route {
        case_id: CaseId,
        routing: Routing,
        officer: String,
    },
    /// A department's answer to its open task on a case.
    AnswerTask {
        case_id: CaseId,
        department: String,
        text: String,
        officer: String,
    },
    /// 联席会议: attendance, minutes, a decision per case (each a task with a clock).
    HoldMeeting {
        request: MeetingRequest,
        officer: String,
    },
    AddIntakePoint {
        code: String,
        name: String,
        kind: crate::proxy::PointKind,
        parent: Option<String>,
    },
    AddProxy {
        code: String,
        name: String,
        point: String,
        officer: Option<String>,
    },
    /// A case filed by proxy agent `agent` with the petitioner's `consent`: the registration is
    /// sealed by the proposing host, like every filing.
    ProxyFile {
        registration: Box<crate::model::Registration>,
        petitioner_key: String,
        agent: String,
        consent: String,
    },
}

impl DeskChange {
    /// The snake_case name (audit records, request records).
    pub fn name(&self) -> &'static str {
        match self {
            DeskChange::AddDepartment { .. } => "add_department",
            DeskChange::DisableDepartment { .. } => "disable_department",
            DeskChange::Route { .. } => "route",
            DeskChange::AnswerTask { .. } => "answer_task",
            DeskChange::HoldMeeting { .. } => "hold_meeting",
            DeskChange::AddIntakePoint { .. } => "add_intake_point",
            DeskChange::AddProxy { .. } => "add_proxy",
            DeskChange::ProxyFile { .. } => "proxy_file",
        }
    }

    /// What a change about no case names (a department's, intake point's or proxy agent's
    /// code), for request records; None for a change about a case.
    pub fn target(&self) -> Option<&str> {
        match self {
            DeskChange::AddDepartment { code, .. }
            | DeskChange::DisableDepartment { code }
            | DeskChange::AddIntakePoint { code, .. }
            | DeskChange::AddProxy { code, .. } => Some(code),
            DeskChange::Route { .. }
            | DeskChange::AnswerTask { .. }
            | DeskChange::HoldMeeting { .. }
            | DeskChange::ProxyFile { .. } => None,
        }
    }

    /// The case a change is about (a meeting: its first case), for request records.
    pub fn case_id(&self) -> Option<&CaseId> {
        match self {
            DeskChange::Route { case_id, .. } | DeskChange::AnswerTask { case_id, .. } => {
                Some(case_id)
            }
            DeskChange::HoldMeeting { request, .. } => request.cases.first(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::DAY_MS;

    fn case(seq: u32) -> CaseId {
        format!("530602001-2026-{seq:06}").parse().unwrap()
    }

    fn departments(code: &str) -> Option<Department> {
        ["housing", "land", "labour", "judicial"]
            .contains(&code)
            .then(|| add_department(None, 0, code, code, 0).unwrap())
    }

    const NOW: Millis = 1_780_000_000_000;

    fn routed() -> CaseTasks {
        let routing = Routing {
            lead: Some("housing".into()),
            cooperate: vec!["land".into(), "labour".into()],
            due_days: 10,
            text: "roof".into(),
        };
        route(
            None,
            &case(1),
            &routing,
            "li",
            NOW,
            &Calendar::china(),
            &departments,
        )
        .unwrap()
    }

    #[test]
    fn a_routed_case_has_a_lead_and_cooperating_tasks_each_with_a_working_day_clock() {
        let tasks = routed();
        let roles: Vec<_> = tasks
            .tasks
            .iter()
            .map(|t| (t.department.as_str(), t.role))
            .collect();
        assert_eq!(
            roles,
            [
                ("housing", TaskRole::Lead),
                ("land", TaskRole::Cooperate),
                ("labour", TaskRole::Cooperate)
            ]
        );
        let due = Calendar::china().add_working_days(NOW, 10);
        assert!(tasks.tasks.iter().all(|t| t.due_by == due));
        // 10 working days are at least two calendar weeks.
        assert!(due >= NOW + 14 * DAY_MS);
    }

    #[test]
    fn the_lead_blocks_the_reply_until_it_answers_and_cooperating_departments_do_not() {
        let tasks = routed();
        assert_eq!(
            check_reply(Some(&tasks)).unwrap_err().code,
            "lead_not_answered"
        );
        let cooperated = answer(Some(&tasks), &case(1), "land", "map attached", "wang", NOW)
            .expect("a cooperating department answers");
        assert_eq!(
            check_reply(Some(&cooperated)).unwrap_err().code,
            "lead_not_answered"
        );
        let led = answer(Some(&tasks), &case(1), "housing", "repair", "zhao", NOW + 1).unwrap();
        assert_eq!(check_reply(Some(&led)), Ok(()));
        assert_eq!(
            check_reply(None),
            Ok(()),
            "an unrouted case replies as before"
        );
        assert_eq!(
            answer(Some(&led), &case(1), "housing", "again", "zhao", NOW)
                .unwrap_err()
                .code,
            "no_open_task"
        );
    }

    #[test]
    fn bad_routings_are_refused() {
        let calendar = Calendar::china();
        let mut routing = Routing {
            lead: Some("police".into()),
            cooperate: vec![],
            due_days: 10,
            text: String::new(),
        };
        let r = |routing: &Routing, tasks: Option<&CaseTasks>| {
            route(tasks, &case(1), routing, "li", NOW, &calendar, &departments)
                .unwrap_err()
                .code
        };
        assert_eq!(r(&routing, None), "unknown_department");
        routing.lead = Some("housing".into());
        routing.due_days = 0;
        assert_eq!(r(&routing, None), "out_of_range");
        routing.due_days = 5;
        routing.cooperate = vec!["housing".into()];
        assert_eq!(r(&routing, None), "task_open");
        routing.cooperate = vec![];
        assert_eq!(r(&routing, Some(&routed())), "lead_exists");
        routing.lead = None;
        assert_eq!(r(&routing, None), "no_lead");
        routing.lead = Some("Bad Code".into());
        assert_eq!(r(&routing, None), "bad_code");
    }

    #[test]
    fn a_task_past_its_clock_is_marked_overdue_and_counted() {
        let mut tasks = routed();
        let due = tasks.tasks[0].due_by;
        assert!(!mark_overdue(&mut tasks, due));
        let answered = answer(Some(&tasks), &case(1), "land", "ok", "w", NOW).unwrap();
        let mut tasks = answered;
        assert!(mark_overdue(&mut tasks, due + 1));
        let marked: Vec<_> = tasks.tasks.iter().map(|t| t.overdue).collect();
        assert_eq!(marked, [true, false, true]);
        let list: Vec<Department> = ["housing", "land", "judicial"]
            .iter()
            .map(|c| departments(c).unwrap())
            .collect();
        let f = figures(&list, [&tasks], due + 1);
        let row = |code: &str| f.iter().find(|r| r.department == code).unwrap().clone();
        assert_eq!((row("housing").open, row("housing").overdue), (1, 1));
        assert_eq!((row("land").answered, row("land").overdue), (1, 0));
        assert_eq!(
            row("judicial"),
            DepartmentFigures {
                department: "judicial".into(),
                ..Default::default()
            }
        );
        assert_eq!(row("labour").open, 1, "a department with tasks is counted");
    }

    #[test]
    fn a_meeting_decision_becomes_a_task_with_a_clock_on_its_case() {
        let calendar = Calendar::china();
        let request = MeetingRequest {
            cases: vec![case(1), case(2)],
            attendees: vec!["housing".into(), "land".into()],
            minutes: "会议纪要".into(),
            decisions: vec![Decision {
                case_id: case(2),
                department: "land".into(),
                due_days: 15,
                text: "survey the plot".into(),
            }],
        };
        let held = |_: &CaseId| true;
        let none = |_: &CaseId| None;
        let (meeting, changed) = hold_meeting(
            "m-1",
            &request,
            "li",
            NOW,
            &calendar,
            &departments,
            &held,
            &none,
        )
        .unwrap();
        assert_eq!(meeting.cases.len(), 2);
        assert_eq!(changed.len(), 1);
        let task = &changed[0].tasks[0];
        assert_eq!(changed[0].case_id, case(2));
        assert_eq!(task.role, TaskRole::Meeting);
        assert_eq!(task.meeting.as_deref(), Some("m-1"));
        assert_eq!(task.due_by, calendar.add_working_days(NOW, 15));
        // A meeting task does not hold the reply back.
        assert_eq!(check_reply(Some(&changed[0])), Ok(()));

        let not_held = |c: &CaseId| *c != case(2);
        let refused = hold_meeting(
            "m-2",
            &request,
            "li",
            NOW,
            &calendar,
            &departments,
            &not_held,
            &none,
        )
        .unwrap_err();
        assert_eq!(refused.code, "case_not_found");
        let mut big = request.clone();
        big.minutes = "x".repeat(MEETING_MINUTES_BYTES_MAX + 1);
        let refused = hold_meeting(
            "m-3",
            &big,
            "li",
            NOW,
            &calendar,
            &departments,
            &held,
            &none,
        )
        .unwrap_err();
        assert_eq!(refused.code, "too_large");
        let mut stray = request.clone();
        stray.decisions[0].case_id = case(3);
        let refused = hold_meeting(
            "m-4",
            &stray,
            "li",
            NOW,
            &calendar,
            &departments,
            &held,
            &none,
        )
        .unwrap_err();
        assert_eq!(refused.code, "bad_decisions");
    }
}

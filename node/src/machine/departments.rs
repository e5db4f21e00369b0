//! Departments, their tasks on cases, joint meetings, intake points and proxy agents: office
//! data, replicated in the office's Raft group like its cases. The case engine's
//! `department` and `proxy` modules decide; this module keeps what they decided, one key per
//! record, so snapshots and backups carry it with the rest of the office.
//!
//! Keys (relative to the office prefix, next to [`super::keys`]):
//!
//! | key | value |
//! | --- | --- |
//! | `department/<code>` | [`Department`] |
//! | `tasks/<case id>` | [`CaseTasks`]: every department task of the case |
//! | `task-due/<due ms, u64 BE><case id>` | empty: a case with an open task whose clock ends then |
//! | `tasks-closed/<case id>` | [`ClosedTasks`]: the tasks closed when the case was handed on |
//! | `meeting/<id>` | [`Meeting`]; `meeting-seq`: the last meeting number given |
//! | `intake-point/<code>` | [`IntakePoint`] |
//! | `proxy/<code>` | [`ProxyAgent`] |
//! | `proxied/<case id>` | [`ProxyFiling`] |
//! | `point-case/<point>/<case id>` | empty: a case filed at or below that intake point |

use liandong_domain::department::{
    self, CaseTasks, ClosedTasks, Department, DeskChange, DeskError, Meeting,
    DEPARTMENTS_PER_OFFICE_MAX,
};
use liandong_domain::proxy::{
    self, IntakePoint, ProxyAgent, ProxyFiling, INTAKE_POINTS_PER_OFFICE_MAX,
    PROXIES_PER_OFFICE_MAX,
};
use liandong_domain::{CaseCommand, CaseId, Millis, OfficeCode, Status};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::apply::{refused, ApplyError, Applying, Outcome, Refused};
use super::{cases, requests, Read};
use crate::raft::types::{RejectKind, Response};
use crate::store::codec::{decode, encode};
use crate::store::keys::prefix_end;

pub const DEPARTMENT: &[u8] = b"department/";
pub const TASKS: &[u8] = b"tasks/";
pub const TASK_DUE: &[u8] = b"task-due/";
pub const TASKS_CLOSED: &[u8] = b"tasks-closed/";
pub const MEETING: &[u8] = b"meeting/";
pub const MEETING_SEQ: &[u8] = b"meeting-seq";
pub const INTAKE_POINT: &[u8] = b"intake-point/";
pub const PROXY: &[u8] = b"proxy/";
pub const PROXIED: &[u8] = b"proxied/";
pub const POINT_CASE: &[u8] = b"point-case/";
/// Meetings one listing reads at most; cases with tasks one figures read scans at most.
pub const MEETINGS_LISTED_MAX: usize = 1_000;
pub const TASKS_SCANNED_MAX: usize = 100_000;
/// Cases one intake point listing answers at most.
pub const POINT_CASES_MAX: usize = 1_000;
/// Task clocks one tick marks at most; the rest wait for the next tick.
pub const TICK_TASKS_MAX: usize = 256;

fn key(prefix: &[u8], name: &str) -> Vec<u8> {
    [prefix, name.as_bytes()].concat()
}

fn task_due(at: Millis, case_id: &str) -> Vec<u8> {
    let at = u64::try_from(at.max(0)).unwrap_or(0);
    [TASK_DUE, &at.to_be_bytes(), case_id.as_bytes()].concat()
}

pub fn point_case_prefix(point: &str) -> Vec<u8> {
    [POINT_CASE, point.as_bytes(), b"/"].concat()
}

fn load<T: DeserializeOwned>(reader: &impl Read, key: &[u8]) -> Result<Option<T>, ApplyError> {
    match reader.get(key)? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

fn all<T: DeserializeOwned>(
    reader: &impl Read,
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<T>, ApplyError> {
    reader
        .scan(prefix, &prefix_end(prefix), limit)?
        .iter()
        .map(|(_, value)| Ok(decode(value)?))
        .collect()
}

pub(crate) fn departments(reader: &impl Read) -> Result<Vec<Department>, ApplyError> {
    all(reader, DEPARTMENT, DEPARTMENTS_PER_OFFICE_MAX)
}

pub(crate) fn tasks(reader: &impl Read, case_id: &CaseId) -> Result<Option<CaseTasks>, ApplyError> {
    load(reader, &key(TASKS, &case_id.to_string()))
}

pub(crate) fn all_tasks(reader: &impl Read) -> Result<Vec<CaseTasks>, ApplyError> {
    all(reader, TASKS, TASKS_SCANNED_MAX)
}

/// The tasks this office closed on `case_id` when it handed the case on, if any.
pub(crate) fn closed(
    reader: &impl Read,
    case_id: &CaseId,
) -> Result<Option<ClosedTasks>, ApplyError> {
    load(reader, &key(TASKS_CLOSED, &case_id.to_string()))
}

pub(crate) fn all_closed(reader: &impl Read) -> Result<Vec<ClosedTasks>, ApplyError> {
    all(reader, TASKS_CLOSED, TASKS_SCANNED_MAX)
}

/// The case left this office for `to` (`handoff`: transfer, assign, return): its department
/// tasks are closed ("handed on to <office>"), their clocks stopped, and kept in the office's
/// records under `tasks-closed/`; the office holds no tasks on the case afterwards. Nothing to
/// do for a case without tasks.
pub(super) fn hand_on(
    apply: &mut Applying<'_, '_>,
    case_id: &CaseId,
    to: &OfficeCode,
    handoff: &str,
) -> Result<(), ApplyError> {
    let Some(held) = tasks(apply.txn, case_id)? else {
        return Ok(());
    };
    let id = case_id.to_string();
    for task in &held.tasks {
        apply.txn.delete(task_due(task.due_by, &id));
    }
    apply.txn.delete(key(TASKS, &id));
    let before = closed(apply.txn, case_id)?;
    let after = department::close_handed_on(before.as_ref(), &held, to, handoff, apply.now);
    apply.txn.put(key(TASKS_CLOSED, &id), encode(&after));
    Ok(())
}

pub(crate) fn meetings(reader: &impl Read) -> Result<Vec<Meeting>, ApplyError> {
    all(reader, MEETING, MEETINGS_LISTED_MAX)
}

pub(crate) fn meeting(reader: &impl Read, id: &str) -> Result<Option<Meeting>, ApplyError> {
    load(reader, &key(MEETING, id))
}

pub(crate) fn points(reader: &impl Read) -> Result<Vec<IntakePoint>, ApplyError> {
    all(reader, INTAKE_POINT, INTAKE_POINTS_PER_OFFICE_MAX)
}

pub(crate) fn point(reader: &impl Read, code: &str) -> Result<Option<IntakePoint>, ApplyError> {
    load(reader, &key(INTAKE_POINT, code))
}

pub(crate) fn agents(reader: &impl Read) -> Result<Vec<ProxyAgent>, ApplyError> {
    all(reader, PROXY, PROXIES_PER_OFFICE_MAX)
}

pub(crate) fn filing(
    reader: &impl Read,
    case_id: &CaseId,
) -> Result<Option<ProxyFiling>, ApplyError> {
    load(reader, &key(PROXIED, &case_id.to_string()))
}

/// The cases filed at `point` or at a point below it, at most [`POINT_CASES_MAX`].
pub(crate) fn cases_at_point(reader: &impl Read, point: &str) -> Result<Vec<CaseId>, ApplyError> {
    let prefix = point_case_prefix(point);
    Ok(reader
        .scan(&prefix, &prefix_end(&prefix), POINT_CASES_MAX)?
        .iter()
        .filter_map(|(key, _)| std::str::from_utf8(&key[prefix.len()..]).ok()?.parse().ok())
        .collect())
}

/// The cases `agent` filed, at most [`POINT_CASES_MAX`] (a scan of the office's proxy filings).
pub(crate) fn cases_of_agent(reader: &impl Read, agent: &str) -> Result<Vec<CaseId>, ApplyError> {
    let all: Vec<ProxyFiling> = all(reader, PROXIED, POINT_CASES_MAX * 16)?;
    Ok(all
        .into_iter()
        .filter(|f| f.agent == agent)
        .take(POINT_CASES_MAX)
        .map(|f| f.case_id)
        .collect())
}

fn desk_refusal(error: DeskError) -> Refused {
    let kind = if error.invalid {
        RejectKind::Invalid
    } else if error.code.starts_with("unknown_") || error.code == "case_not_found" {
        RejectKind::NotFound
    } else {
        RejectKind::Forbidden
    };
    refused(kind, error.code, error.message)
}

fn document(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Whether this office holds `case_id` and may work on it (not handed on).
fn held(reader: &impl Read, case_id: &CaseId) -> Result<Result<(), Refused>, ApplyError> {
    match cases::load_header(reader, case_id)? {
        None => Ok(Err(refused(
            RejectKind::NotFound,
            "case_not_found",
            format!("case {case_id} is not held by this office"),
        ))),
        Some(case)
            if matches!(
                case.status,
                Status::Forwarded { .. } | Status::InTransit { .. }
            ) =>
        {
            Ok(Err(refused(
                RejectKind::Forbidden,
                "case_handed_on",
                format!("case {case_id} was handed on ({})", case.status),
            )))
        }
        Some(_) => Ok(Ok(())),
    }
}

/// Stores a case's tasks and moves the task clocks' alarms.
fn store_tasks(apply: &mut Applying<'_, '_>, before: Option<&CaseTasks>, after: &CaseTasks) {
    let id = after.case_id.to_string();
    for task in before.iter().flat_map(|t| t.tasks.iter()) {
        apply.txn.delete(task_due(task.due_by, &id));
    }
    for task in after.tasks.iter().filter(|t| t.is_open() && !t.overdue) {
        apply.txn.put(task_due(task.due_by, &id), Vec::new());
    }
    apply.txn.put(key(TASKS, &id), encode(after));
}

/// A case command the departments hold back: the reply waits for the lead department.
pub(super) fn check_act(
    reader: &impl Read,
    case_id: &CaseId,
    command: &CaseCommand,
) -> Result<Option<Refused>, ApplyError> {
    if !matches!(command, CaseCommand::Reply { .. }) {
        return Ok(None);
    }
    let tasks = tasks(reader, case_id)?;
    Ok(department::check_reply(tasks.as_ref())
        .err()
        .map(desk_refusal))
}

/// Applies one change; a refusal changes nothing. A change with a request id is answered again,
/// not applied again, when retried (`scope`).
pub(super) fn apply_change(
    apply: &mut Applying<'_, '_>,
    change: &DeskChange,
    scope: Option<&requests::Scope<'_>>,
) -> Result<Response, ApplyError> {
    let outcome = match change {
        DeskChange::ProxyFile {
            registration,
            petitioner_key,
            agent,
            consent,
        } => {
            return match proxy_file(apply, registration, petitioner_key, agent, consent)? {
                Ok((document, case_id)) => {
                    if let Some(scope) = scope {
                        requests::remember(apply.txn, scope, &case_id, apply.now, &document);
                    }
                    Ok(Response::Case { document })
                }
                Err(refusal) => Ok(refusal.into()),
            }
        }
        other => office_change(apply, other)?,
    };
    match outcome {
        Ok(document) => {
            if let (Some(scope), Some(case_id)) = (scope, change.case_id()) {
                requests::remember(apply.txn, scope, case_id, apply.now, &document);
            }
            Ok(Response::Desk { document })
        }
        Err(refusal) => Ok(refusal.into()),
    }
}

fn office_change(apply: &mut Applying<'_, '_>, change: &DeskChange) -> Outcome<Vec<u8>> {
    let now = apply.now;
    let calendar = apply.context.calendar.clone();
    let known: Vec<Department> = departments(apply.txn)?;
    let lookup = |code: &str| known.iter().find(|d| d.code == code).cloned();
    match change {
        DeskChange::AddDepartment { code, name } => {
            let existing = lookup(code);
            match department::add_department(existing.as_ref(), known.len(), code, name, now) {
                Ok(department) => {
                    apply.txn.put(key(DEPARTMENT, code), encode(&department));
                    Ok(Ok(document(&department)))
                }
                Err(error) => Ok(Err(desk_refusal(error))),
            }
        }
        DeskChange::DisableDepartment { code } => {
            match department::disable_department(lookup(code).as_ref(), code) {
                Ok(department) => {
                    apply.txn.put(key(DEPARTMENT, code), encode(&department));
                    Ok(Ok(document(&department)))
                }
                Err(error) => Ok(Err(desk_refusal(error))),
            }
        }
        DeskChange::Route {
            case_id,
            routing,
            officer,
        } => {
            if let Err(refusal) = held(apply.txn, case_id)? {
                return Ok(Err(refusal));
            }
            let before = tasks(apply.txn, case_id)?;
            match department::route(
                before.as_ref(),
                case_id,
                routing,
                officer,
                now,
                &calendar,
                &lookup,
            ) {
                Ok(after) => {
                    store_tasks(apply, before.as_ref(), &after);
                    Ok(Ok(document(&after)))
                }
                Err(error) => Ok(Err(desk_refusal(error))),
            }
        }
        DeskChange::AnswerTask {
            case_id,
            department: code,
            text,
            officer,
        } => {
            if let Err(refusal) = held(apply.txn, case_id)? {
                return Ok(Err(refusal));
            }
            let before = tasks(apply.txn, case_id)?;
            match department::answer(before.as_ref(), case_id, code, text, officer, now) {
                Ok(after) => {
                    store_tasks(apply, before.as_ref(), &after);
                    Ok(Ok(document(&after)))
                }
                Err(error) => Ok(Err(desk_refusal(error))),
            }
        }
        DeskChange::HoldMeeting { request, officer } => {
            let seq: u64 = load(apply.txn, MEETING_SEQ)?.unwrap_or(0) + 1;
            let id = format!("{}-m{seq}", apply.context.office);
            let mut holding = Vec::with_capacity(request.cases.len());
            let mut before = Vec::with_capacity(request.cases.len());
            for case_id in request.cases.iter().take(department::MEETING_CASES_MAX) {
                holding.push((case_id.clone(), held(apply.txn, case_id)?.is_ok()));
                before.push(tasks(apply.txn, case_id)?);
            }
            let held_here = |c: &CaseId| holding.iter().any(|(id, ok)| id == c && *ok);
            let tasks_of = |c: &CaseId| {
                request
                    .cases
                    .iter()
                    .position(|id| id == c)
                    .and_then(|i| before.get(i).cloned().flatten())
            };
            match department::hold_meeting(
                &id, request, officer, now, &calendar, &lookup, &held_here, &tasks_of,
            ) {
                Ok((meeting, changed)) => {
                    for after in &changed {
                        let old = tasks_of(&after.case_id);
                        store_tasks(apply, old.as_ref(), after);
                    }
                    apply.txn.put(MEETING_SEQ.to_vec(), encode(&seq));
                    apply.txn.put(key(MEETING, &id), encode(&meeting));
                    Ok(Ok(document(&meeting)))
                }
                Err(error) => Ok(Err(desk_refusal(error))),
            }
        }
        DeskChange::AddIntakePoint {
            code,
            name,
            kind,
            parent,
        } => {
            let existing = point(apply.txn, code)?;
            let count = points(apply.txn)?.len();
            let parent_point = match parent {
                Some(p) if department::check_code("intake point", p).is_ok() => {
                    point(apply.txn, p)?
                }
                _ => None,
            };
            match proxy::add_point(
                existing.as_ref(),
                count,
                code,
                name,
                *kind,
                parent_point.as_ref(),
                parent.as_deref(),
                now,
            ) {
                Ok(point) => {
                    apply.txn.put(key(INTAKE_POINT, code), encode(&point));
                    Ok(Ok(document(&point)))
                }
                Err(error) => Ok(Err(desk_refusal(error))),
            }
        }
        DeskChange::AddProxy {
            code,
            name,
            point: at,
            officer,
        } => {
            let valid = department::check_code("proxy", code).is_ok()
                && department::check_code("intake point", at).is_ok();
            let (existing, at_point) = if valid {
                (load(apply.txn, &key(PROXY, code))?, point(apply.txn, at)?)
            } else {
                (None, None)
            };
            let count = agents(apply.txn)?.len();
            match proxy::add_agent(
                existing.as_ref(),
                count,
                code,
                name,
                at_point.as_ref(),
                at,
                officer.as_deref(),
                now,
            ) {
                Ok(agent) => {
                    apply.txn.put(key(PROXY, code), encode(&agent));
                    Ok(Ok(document(&agent)))
                }
                Err(error) => Ok(Err(desk_refusal(error))),
            }
        }
        DeskChange::ProxyFile { .. } => unreachable!("filed by proxy_file"),
    }
}

/// A case filed by a proxy agent: checked (agent, consent) before anything is written, then
/// registered as any filing, then recorded with the chain of points that follows it.
fn proxy_file(
    apply: &mut Applying<'_, '_>,
    registration: &liandong_domain::Registration,
    petitioner_key: &String,
    agent_code: &str,
    consent: &str,
) -> Outcome<(Vec<u8>, CaseId)> {
    let agent: Option<ProxyAgent> = if department::check_code("proxy", agent_code).is_ok() {
        load(apply.txn, &key(PROXY, agent_code))?
    } else {
        None
    };
    let known = points(apply.txn)?;
    let point_of = |code: &str| known.iter().find(|p| p.code == code).cloned();
    let chain = match proxy::check_filing(agent.as_ref(), agent_code, consent, &point_of) {
        Ok(chain) => chain,
        Err(error) => return Ok(Err(desk_refusal(error))),
    };
    let (document, case_id) = match cases::file(apply, registration, Some(petitioner_key))? {
        Ok(filed) => filed,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let agent = agent.expect("checked above");
    let filing = ProxyFiling {
        v: department::DESK_VERSION,
        case_id: case_id.clone(),
        agent: agent.code.clone(),
        point: agent.point.clone(),
        chain: chain.clone(),
        consent: consent.trim().to_string(),
        filed_at: apply.now,
    };
    let id = case_id.to_string();
    apply.txn.put(key(PROXIED, &id), encode(&filing));
    for point in &chain {
        apply.txn.put(
            [point_case_prefix(point), id.as_bytes().to_vec()].concat(),
            Vec::new(),
        );
    }
    Ok(Ok((document, case_id)))
}

/// When the next task clock ends (the tick then has work), if any task is open.
pub(super) fn next_task_due(reader: &impl Read) -> Result<Option<Millis>, rocksdb::Error> {
    let first = reader.scan(TASK_DUE, &prefix_end(TASK_DUE), 1)?;
    Ok(first.first().and_then(|(key, _)| {
        let bytes: [u8; 8] = key
            .get(TASK_DUE.len()..TASK_DUE.len() + 8)?
            .try_into()
            .ok()?;
        i64::try_from(u64::from_be_bytes(bytes))
            .ok()
            .map(|at| at.saturating_add(1))
    }))
}

/// Marks the tasks whose clock ended before `now` overdue, for at most [`TICK_TASKS_MAX`]
/// cases; returns how many cases changed.
pub(super) fn tick(apply: &mut Applying<'_, '_>) -> Result<u32, ApplyError> {
    let end = task_due(apply.now, "");
    let due = apply.txn.scan(TASK_DUE, &end, TICK_TASKS_MAX)?;
    let mut changed = 0u32;
    for (due_key, _) in due {
        apply.txn.delete(due_key.clone());
        let Some(case_id) = due_key
            .get(TASK_DUE.len() + 8..)
            .and_then(|id| std::str::from_utf8(id).ok())
            .and_then(|id| id.parse::<CaseId>().ok())
        else {
            continue;
        };
        let Some(before) = tasks(apply.txn, &case_id)? else {
            continue;
        };
        // A case handed on before its tasks were closed with it (by an earlier build): closed
        // now, not marked overdue at an office that no longer holds it.
        if let Some(case) = cases::load_header(apply.txn, &case_id)? {
            if let Status::InTransit { to, kind } = &case.status {
                hand_on(apply, &case_id, to, kind.as_str())?;
                continue;
            }
            if let Status::Forwarded { to } = &case.status {
                hand_on(apply, &case_id, to, "handoff")?;
                continue;
            }
        }
        let mut after = before.clone();
        if department::mark_overdue(&mut after, apply.now) {
            store_tasks(apply, Some(&before), &after);
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
pub(crate) mod tests {
    use liandong_domain::department::{Decision, DeskChange, MeetingRequest, Routing};
    use liandong_domain::proxy::PointKind;
    use liandong_domain::{CaseCommand, CaseId, Opinion};

    use super::*;
    use crate::machine::tests::{case_of, registration, Office};
    use crate::raft::types::Operation;

    fn desk(office: &mut Office, change: DeskChange) -> Response {
        office.apply(Operation::Desk {
            change,
            request_id: None,
            caller: "li".into(),
        })
    }

    fn ok(response: Response) -> serde_json::Value {
        match response {
            Response::Desk { document } => serde_json::from_slice(&document).unwrap(),
            other => panic!("expected a desk record, got {other:?}"),
        }
    }

    fn refusal(response: Response) -> String {
        match response {
            Response::Rejected { code, .. } => code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn add(office: &mut Office, code: &str) {
        ok(desk(
            office,
            DeskChange::AddDepartment {
                code: code.into(),
                name: format!("{code} 部门"),
            },
        ));
    }

    fn route_change(case_id: &CaseId) -> DeskChange {
        DeskChange::Route {
            case_id: case_id.clone(),
            routing: Routing {
                lead: Some("housing".into()),
                cooperate: vec!["land".into()],
                due_days: 5,
                text: "joint handling".into(),
            },
            officer: "li".into(),
        }
    }

    fn reply(office: &mut Office, case_id: &CaseId) -> Response {
        office.apply(Operation::Act {
            case_id: case_id.clone(),
            command: CaseCommand::Reply {
                opinion: Opinion::Support,
                text: "fixed".into(),
                officer: "li".into(),
            },
            request_id: None,
            caller: "li".into(),
        })
    }

    fn filed_and_accepted(office: &mut Office) -> CaseId {
        let case = case_of(office.apply(Operation::File {
            registration: registration(),
            request_id: None,
            caller: "li".into(),
        }));
        case_of(office.apply(Operation::Act {
            case_id: case.id.clone(),
            command: CaseCommand::Accept {
                officer: "li".into(),
            },
            request_id: None,
            caller: "li".into(),
        }));
        case.id
    }

    fn footprint(office: &Office) -> Vec<(Vec<u8>, Vec<u8>)> {
        let reader = crate::store::Txn::new(&office.db, office.context.office.as_str());
        reader
            .scan(b"", b"\xff", usize::MAX)
            .unwrap()
            .into_iter()
            .filter(|(key, _)| key.as_slice() != crate::machine::keys::APPLIED)
            .collect()
    }

    #[test]
    fn the_reply_waits_for_the_lead_department_and_a_refusal_changes_nothing() {
        let mut office = Office::new("530602", Some("5306"));
        add(&mut office, "housing");
        add(&mut office, "land");
        let case_id = filed_and_accepted(&mut office);
        let tasks = ok(desk(&mut office, route_change(&case_id)));
        assert_eq!(tasks["tasks"].as_array().unwrap().len(), 2);

        let before = footprint(&office);
        assert_eq!(refusal(reply(&mut office, &case_id)), "lead_not_answered");
        assert_eq!(
            footprint(&office),
            before,
            "a refused reply changed nothing"
        );

        ok(desk(
            &mut office,
            DeskChange::AnswerTask {
                case_id: case_id.clone(),
                department: "land".into(),
                text: "boundary confirmed".into(),
                officer: "wang".into(),
            },
        ));
        assert_eq!(refusal(reply(&mut office, &case_id)), "lead_not_answered");
        ok(desk(
            &mut office,
            DeskChange::AnswerTask {
                case_id: case_id.clone(),
                department: "housing".into(),
                text: "repair scheduled".into(),
                officer: "zhao".into(),
            },
        ));
        let replied = case_of(reply(&mut office, &case_id));
        assert_eq!(replied.status.as_str(), "replied");
    }

    #[test]
    fn bad_department_requests_are_refused_and_change_nothing() {
        let mut office = Office::new("530602", Some("5306"));
        add(&mut office, "housing");
        let case_id = filed_and_accepted(&mut office);
        let before = footprint(&office);
        let mut unknown = route_change(&case_id);
        if let DeskChange::Route { routing, .. } = &mut unknown {
            routing.cooperate = vec!["police".into()];
        }
        assert_eq!(refusal(desk(&mut office, unknown)), "unknown_department");
        let stranger: CaseId = "530602-2026-999999".parse().unwrap();
        assert_eq!(
            refusal(desk(&mut office, route_change(&stranger))),
            "case_not_found"
        );
        let meeting = DeskChange::HoldMeeting {
            request: MeetingRequest {
                cases: vec![case_id.clone(), stranger.clone()],
                attendees: vec!["housing".into()],
                minutes: "m".into(),
                decisions: vec![Decision {
                    case_id: case_id.clone(),
                    department: "housing".into(),
                    due_days: 3,
                    text: "visit".into(),
                }],
            },
            officer: "li".into(),
        };
        assert_eq!(refusal(desk(&mut office, meeting)), "case_not_found");
        let no_consent = DeskChange::ProxyFile {
            registration: Box::new(registration()),
            petitioner_key: "ab".repeat(32),
            agent: "wang".into(),
            consent: " ".into(),
        };
        assert_eq!(refusal(desk(&mut office, no_consent)), "no_consent");
        assert_eq!(footprint(&office), before, "the refusals changed nothing");
    }

    #[test]
    fn a_retried_routing_is_answered_again_not_applied_again() {
        let mut office = Office::new("530602", Some("5306"));
        add(&mut office, "housing");
        add(&mut office, "land");
        let case_id = filed_and_accepted(&mut office);
        let routed = |office: &mut Office| {
            office.apply(Operation::Desk {
                change: route_change(&case_id),
                request_id: Some("r-route".into()),
                caller: "li".into(),
            })
        };
        let first = routed(&mut office);
        let tasks_after = tasks(&crate::store::Txn::new(&office.db, "530602"), &case_id).unwrap();
        let again = routed(&mut office);
        let document = |response: Response| match response {
            Response::Desk { document } | Response::Case { document } => document,
            other => panic!("{other:?}"),
        };
        assert_eq!(document(first), document(again), "the first answer, again");
        let stored = tasks(&crate::store::Txn::new(&office.db, "530602"), &case_id).unwrap();
        assert_eq!(stored, tasks_after, "applied once");
        // Without the request id the same routing is refused: the lead exists.
        assert_eq!(
            refusal(desk(&mut office, route_change(&case_id))),
            "lead_exists"
        );
    }

    #[test]
    fn a_task_past_its_clock_is_marked_overdue_by_the_tick() {
        let mut office = Office::new("530602", Some("5306"));
        add(&mut office, "housing");
        add(&mut office, "land");
        let case_id = filed_and_accepted(&mut office);
        ok(desk(&mut office, route_change(&case_id)));
        let reader = || crate::store::Txn::new(&office.db, "530602");
        let due = tasks(&reader(), &case_id).unwrap().unwrap().tasks[0].due_by;
        // Ticks until the clock of 5 working days has run out (one stamped minute each).
        let mut office = office;
        office.apply(Operation::Tick);
        let stored = |office: &Office| {
            tasks(&crate::store::Txn::new(&office.db, "530602"), &case_id)
                .unwrap()
                .unwrap()
        };
        assert!(stored(&office).tasks.iter().all(|t| !t.overdue));
        office.advance_to(due + 1);
        office.apply(Operation::Tick);
        assert!(stored(&office).tasks.iter().all(|t| t.overdue));
    }

    fn code(text: &str) -> liandong_domain::OfficeCode {
        text.parse().unwrap()
    }

    /// Every message waiting in `office`'s outbox for `to`, delivered to `receiver`; then the
    /// sender acknowledges them (a handoff leaves a stub).
    fn exchange(sender: &mut Office, receiver: &mut Office) {
        let to = receiver.context.office.clone();
        let start = crate::machine::keys::outbox_link(&to);
        let envelopes: Vec<liandong_domain::message::Envelope> = {
            let txn = crate::store::Txn::new(&sender.db, sender.context.office.as_str());
            txn.scan(&start, &prefix_end(&start), usize::MAX)
                .unwrap()
                .into_iter()
                .map(|(_, value)| decode(&value).unwrap())
                .collect()
        };
        let through = envelopes.last().map(|e| e.seq).unwrap_or(0);
        match receiver.apply(Operation::Receive {
            from: sender.context.office.clone(),
            envelopes,
        }) {
            Response::Delivered { refused, .. } => assert!(refused.is_empty(), "{refused:?}"),
            other => panic!("Receive answered {other:?}"),
        }
        sender.apply(Operation::Acked {
            to,
            through,
            refused: Vec::new(),
        });
    }

    fn act(office: &mut Office, case_id: &CaseId, command: CaseCommand) -> Response {
        office.apply(Operation::Act {
            case_id: case_id.clone(),
            command,
            request_id: None,
            caller: "li".into(),
        })
    }

    /// A case handed on (a transfer, then a return) takes none of its department tasks along:
    /// the office it leaves closes them ("handed on to ..."), stops their clocks (no overdue
    /// mark later), keeps them in its records and counts them as handed on; the receiving
    /// office starts with none and routes its own; when the case comes back, the first office
    /// routes it again, to a new lead.
    #[test]
    fn a_handed_on_case_closes_its_tasks_at_the_office_it_leaves() {
        let mut county = Office::new("530602", Some("5306"));
        let mut sibling = Office::new("530621", Some("5306"));
        for office in [&mut county, &mut sibling] {
            add(office, "housing");
            add(office, "land");
        }
        let case = case_of(county.apply(Operation::File {
            registration: registration(),
            request_id: None,
            caller: "li".into(),
        }));
        let case_id = case.id.clone();
        ok(desk(&mut county, route_change(&case_id)));
        ok(desk(
            &mut county,
            DeskChange::AnswerTask {
                case_id: case_id.clone(),
                department: "land".into(),
                text: "boundary confirmed".into(),
                officer: "wang".into(),
            },
        ));
        let reader = |office: &Office| {
            crate::store::Txn::new(&office.db, office.context.office.as_str())
                .scan(b"", b"\xff", usize::MAX)
                .unwrap()
        };
        let due = |office: &Office| {
            reader(office)
                .into_iter()
                .filter(|(key, _)| key.starts_with(TASK_DUE))
                .count()
        };
        assert_eq!(due(&county), 1, "the open lead task's clock runs");
        let routed = tasks(&crate::store::Txn::new(&county.db, "530602"), &case_id)
            .unwrap()
            .unwrap();

        act(
            &mut county,
            &case_id,
            CaseCommand::Transfer {
                to: code("530621"),
                officer: "li".into(),
            },
        );
        let held = |office: &Office| {
            let txn = crate::store::Txn::new(&office.db, office.context.office.as_str());
            (
                tasks(&txn, &case_id).unwrap(),
                closed(&txn, &case_id).unwrap(),
            )
        };
        let (open, record) = held(&county);
        assert_eq!(
            open, None,
            "the office holds no tasks on a case it handed on"
        );
        let record = record.expect("the closed tasks are kept");
        assert_eq!(record.closings.len(), 1);
        assert_eq!(record.closings[0].reason, "handed on to 530621 (transfer)");
        assert_eq!(record.closings[0].tasks, routed.tasks, "kept as they stood");
        assert_eq!(due(&county), 0, "their clocks stopped");
        assert_eq!(
            refusal(desk(&mut county, route_change(&case_id))),
            "case_handed_on"
        );

        // Long past the tasks' clocks: nothing marked overdue at the office that handed it on.
        county.advance_to(routed.tasks[0].due_by + 1);
        county.apply(Operation::Tick);
        let (_, record) = held(&county);
        assert!(record.unwrap().closings[0].tasks.iter().all(|t| !t.overdue));
        let departments_here = departments(&crate::store::Txn::new(&county.db, "530602")).unwrap();
        let all = all_tasks(&crate::store::Txn::new(&county.db, "530602")).unwrap();
        let all_closed = all_closed(&crate::store::Txn::new(&county.db, "530602")).unwrap();
        let mut figures = department::figures(&departments_here, &all, routed.tasks[0].due_by + 1);
        department::count_closed(&mut figures, &all_closed);
        let row = |code: &str| {
            figures
                .iter()
                .find(|f| f.department == code)
                .unwrap()
                .clone()
        };
        assert_eq!(
            (
                row("housing").open,
                row("housing").handed_on,
                row("housing").overdue
            ),
            (0, 1, 0)
        );
        assert_eq!((row("land").answered, row("land").handed_on), (1, 0));

        // The receiving office starts with no tasks and routes its own departments.
        exchange(&mut county, &mut sibling);
        assert_eq!(held(&sibling), (None, None));
        ok(desk(&mut sibling, route_change(&case_id)));

        // It hands the case back: its own tasks close; the first office routes it again.
        act(
            &mut sibling,
            &case_id,
            CaseCommand::Return {
                reason: "not ours".into(),
                officer: "li".into(),
            },
        );
        let (open, record) = held(&sibling);
        assert_eq!(open, None);
        assert_eq!(
            record.unwrap().closings[0].reason,
            "handed on to 530602 (return)"
        );
        exchange(&mut sibling, &mut county);
        let again = ok(desk(&mut county, route_change(&case_id)));
        assert_eq!(again["tasks"].as_array().unwrap().len(), 2, "a new lead");
        let (_, record) = held(&county);
        assert_eq!(record.unwrap().closings.len(), 1, "the old tasks kept");
    }

    /// One of every stored department record, and the operations that made them: for
    /// `every_stored_type_round_trips_in_both_formats`.
    pub(crate) struct Sample {
        pub department: Department,
        pub tasks: CaseTasks,
        pub meeting: Meeting,
        pub point: IntakePoint,
        pub agent: ProxyAgent,
        pub filing: ProxyFiling,
        pub operations: Vec<Operation>,
    }

    pub(crate) fn sample() -> Sample {
        let mut office = Office::new("530602", Some("5306"));
        let mut changes = vec![
            DeskChange::AddDepartment {
                code: "housing".into(),
                name: "住建".into(),
            },
            DeskChange::AddDepartment {
                code: "land".into(),
                name: "自然资源".into(),
            },
            DeskChange::AddIntakePoint {
                code: "gongshu".into(),
                name: "区代办中心".into(),
                kind: PointKind::Centre,
                parent: None,
            },
            DeskChange::AddIntakePoint {
                code: "mishixiang".into(),
                name: "米市巷街道代办站".into(),
                kind: PointKind::Street,
                parent: Some("gongshu".into()),
            },
            DeskChange::AddIntakePoint {
                code: "daguan".into(),
                name: "大关社区代办点".into(),
                kind: PointKind::Community,
                parent: Some("mishixiang".into()),
            },
            DeskChange::AddProxy {
                code: "wang".into(),
                name: "王代办".into(),
                point: "daguan".into(),
                officer: Some("wang".into()),
            },
        ];
        for change in &changes {
            ok(desk(&mut office, change.clone()));
        }
        let case_id = filed_and_accepted(&mut office);
        let more = [
            route_change(&case_id),
            DeskChange::HoldMeeting {
                request: MeetingRequest {
                    cases: vec![case_id.clone()],
                    attendees: vec!["housing".into(), "land".into()],
                    minutes: "纪要".into(),
                    decisions: vec![],
                },
                officer: "li".into(),
            },
            DeskChange::AnswerTask {
                case_id: case_id.clone(),
                department: "land".into(),
                text: "ok".into(),
                officer: "li".into(),
            },
        ];
        ok(desk(&mut office, more[0].clone()));
        ok(desk(&mut office, more[2].clone()));
        let mut meeting = more[1].clone();
        if let DeskChange::HoldMeeting { request, .. } = &mut meeting {
            request.decisions.push(Decision {
                case_id: case_id.clone(),
                department: "land".into(),
                due_days: 9,
                text: "survey".into(),
            });
        }
        ok(desk(&mut office, meeting.clone()));
        let filed = case_of(desk(
            &mut office,
            DeskChange::ProxyFile {
                registration: Box::new(registration()),
                petitioner_key: "ab".repeat(32),
                agent: "wang".into(),
                consent: "signed form 2026-12-06".into(),
            },
        ));
        changes.extend([more[0].clone(), meeting, more[2].clone()]);
        let reader = crate::store::Txn::new(&office.db, "530602");
        let operations = changes
            .into_iter()
            .map(|change| Operation::Desk {
                change,
                request_id: Some("d1".into()),
                caller: "li".into(),
            })
            .collect();
        Sample {
            department: departments(&reader).unwrap().remove(0),
            tasks: tasks(&reader, &case_id).unwrap().unwrap(),
            meeting: meetings(&reader).unwrap().remove(0),
            point: points(&reader).unwrap().remove(0),
            agent: agents(&reader).unwrap().remove(0),
            filing: filing(&reader, &filed.id).unwrap().unwrap(),
            operations,
        }
    }

    fn desk_once(office: &mut Office, change: DeskChange, request_id: &str) -> Response {
        office.apply(Operation::Desk {
            change,
            request_id: Some(request_id.into()),
            caller: "li".into(),
        })
    }

    /// A desk change about no case (here `department add`) retried with its request id after
    /// a lost reply is answered as the first time and changes nothing, even when the department
    /// was disabled in between: without a record the retry was applied again and refused
    /// "department_exists", an admin told that what succeeded failed. The same id for another
    /// department, or for a change about a case, is refused as reused.
    #[test]
    fn a_desk_change_about_no_case_retried_with_its_request_id_is_applied_once() {
        let mut office = Office::new("530602", Some("5306"));
        let housing = DeskChange::AddDepartment {
            code: "housing".into(),
            name: "住建局".into(),
        };
        let first = ok(desk_once(&mut office, housing.clone(), "add-1"));
        assert_eq!(first["disabled"], false);
        let disabled = ok(desk_once(
            &mut office,
            DeskChange::DisableDepartment {
                code: "housing".into(),
            },
            "disable-1",
        ));
        assert_eq!(disabled["disabled"], true);
        let after_disable = footprint(&office);
        let again = ok(desk_once(&mut office, housing.clone(), "add-1"));
        assert_eq!(again, first, "the first answer, again");
        assert_eq!(footprint(&office), after_disable, "a retry changes nothing");
        // Without its id, the same add is a new request, refused.
        assert_eq!(refusal(desk(&mut office, housing)), "department_exists");
        let land = DeskChange::AddDepartment {
            code: "land".into(),
            name: "自然资源局".into(),
        };
        assert_eq!(
            refusal(desk_once(&mut office, land, "add-1")),
            "request_id_reused"
        );
        add(&mut office, "land");
        let case_id = filed_and_accepted(&mut office);
        assert_eq!(
            refusal(desk_once(&mut office, route_change(&case_id), "add-1")),
            "request_id_reused"
        );
    }

    #[test]
    fn a_proxy_filing_is_seen_along_its_chain_of_intake_points() {
        let sample = sample();
        assert_eq!(sample.filing.chain, ["daguan", "mishixiang", "gongshu"]);
        assert_eq!(sample.tasks.tasks.len(), 3, "lead, cooperating, meeting");
        assert_eq!(sample.meeting.decisions.len(), 1);
    }
}

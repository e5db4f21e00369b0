//! The clocks that are not statutory limits: a grade's deadline (四定's 定时限) warns at 50, 75
//! and 100 % without making the case overdue, and a dissatisfied evaluation opens a follow-up
//! (回访) on a clock of its own. Both live in the case's version-4 extension, which stores and
//! reads back whole, next to a group.

mod common;

use common::*;
use liandong_domain::*;

fn grade(deadline: Millis) -> CaseCommand {
    CaseCommand::SetGrade {
        grade: Grade::A,
        leader: "Deputy head Chen".into(),
        department: "Land bureau".into(),
        plan: "Pay the compensation".into(),
        deadline,
    }
}

fn follow_up(note: &str) -> CaseCommand {
    CaseCommand::FollowUp {
        note: note.into(),
        officer: "Officer Zhao".into(),
    }
}

/// The grade clock's warnings among `events`, as (percent, at).
fn grade_warnings(events: &[Event]) -> Vec<(u8, Millis)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Warned {
                clock: ClockKind::Grade,
                percent,
                at,
                ..
            } => Some((*percent, *at)),
            _ => None,
        })
        .collect()
}

/// Ticks at every alarm up to `until`, returning every event fired.
fn run_until(desk: &Desk, case: &mut Case, until: Millis) -> Vec<Event> {
    let mut fired = Vec::new();
    while let Some(alarm) = case.next_alarm().filter(|&alarm| alarm <= until) {
        let events = desk.tick(case, alarm);
        assert!(!events.is_empty(), "an alarm at {alarm} fires something");
        fired.extend(events);
    }
    fired
}

#[test]
fn a_grade_deadline_warns_at_50_75_and_100_percent_once_each_and_is_no_breach() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    let graded_at = t(MONDAY) + days(1);
    desk.ok(&mut case, graded_at, accept());
    let deadline = graded_at + days(8);
    desk.ok(&mut case, graded_at, grade(deadline));
    assert_eq!(
        case.v, CASE_VERSION_EXTRA,
        "a graded case has the extension"
    );
    assert_eq!(case.clock_due(ClockKind::Grade), Some(deadline));

    let fired = run_until(&desk, &mut case, deadline + days(1));
    assert_eq!(
        grade_warnings(&fired),
        [
            (50, graded_at + days(4)),
            (75, graded_at + days(6)),
            (100, deadline)
        ]
    );
    assert!(
        !fired.iter().any(|event| matches!(
            event,
            Event::Overdue {
                clock: ClockKind::Grade,
                ..
            }
        )),
        "a plan's date is not a statutory limit"
    );
    assert!(!case.overdue);
    assert_eq!(
        case.clock_run(ClockKind::Grade)
            .map(|run| run.reached_percent),
        Some(100)
    );
    // Nothing more from the grade clock, ever.
    assert!(grade_warnings(&desk.tick(&mut case, deadline + days(20))).is_empty());
}

#[test]
fn a_reply_stops_the_grade_clock_and_a_regrade_warns_again() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    let at = t(MONDAY) + days(1);
    desk.ok(&mut case, at, accept());
    desk.ok(&mut case, at, grade(at + days(10)));
    let fired = run_until(&desk, &mut case, at + days(5));
    assert_eq!(grade_warnings(&fired), [(50, at + days(5))]);
    // Re-graded with a later deadline: a new run from the new grade.
    let regraded = at + days(6);
    desk.ok(&mut case, regraded, grade(regraded + days(20)));
    assert_eq!(
        case.clock_run(ClockKind::Grade)
            .map(|run| run.reached_percent),
        Some(0)
    );
    let fired = run_until(&desk, &mut case, regraded + days(10));
    assert_eq!(grade_warnings(&fired), [(50, regraded + days(10))]);
    desk.ok(&mut case, regraded + days(11), reply(Opinion::Support));
    assert_eq!(case.clock_run(ClockKind::Grade), None);
    assert_eq!(case.clock_due(ClockKind::Grade), None);
    let fired = run_until(&desk, &mut case, regraded + days(40));
    assert!(grade_warnings(&fired).is_empty(), "{fired:?}");
}

/// A case accepted and replied at the county.
fn replied(desk: &Desk) -> (Case, Millis) {
    let mut case = desk.register(t(MONDAY));
    desk.ok(&mut case, t(MONDAY) + days(1), accept());
    let replied_at = t(MONDAY) + days(10);
    desk.ok(&mut case, replied_at, reply(Opinion::NotSupport));
    (case, replied_at)
}

#[test]
fn a_dissatisfied_evaluation_opens_a_follow_up_due_in_five_working_days() {
    let desk = Desk::new(COUNTY);
    let (mut case, replied_at) = replied(&desk);
    // 2026-03-11 (Wednesday) + 5 working days = 2026-03-18 (Wednesday).
    let evaluated_at = replied_at + days(1);
    let events = desk.ok(
        &mut case,
        evaluated_at,
        evaluate(Satisfaction::Dissatisfied),
    );
    assert_eq!(names(&events), ["evaluated", "follow_up_opened"]);
    let due = case
        .clock_due(ClockKind::FollowUp)
        .unwrap_or_else(|| panic!("a follow-up is due"));
    assert_eq!(
        due,
        desk.calendar
            .add_working_days(evaluated_at, rules::FOLLOW_UP_WORKING_DAYS)
    );
    assert_eq!(case.v, CASE_VERSION_EXTRA);

    // Recorded before it is due: the clock stops, the record stays, a second is refused.
    let events = desk.ok(
        &mut case,
        evaluated_at + days(2),
        follow_up("Called back; the petitioner accepts the explanation"),
    );
    assert_eq!(names(&events), ["followed_up"]);
    assert_eq!(case.clock_run(ClockKind::FollowUp), None);
    let record = case
        .extra
        .as_ref()
        .and_then(|extra| extra.followed_up.clone())
        .unwrap_or_else(|| panic!("recorded"));
    assert_eq!(
        (record.officer.as_str(), record.at),
        ("Officer Zhao", evaluated_at + days(2))
    );
    assert_eq!(
        desk.act(&mut case, evaluated_at + days(3), follow_up("again")),
        Err(DomainError::NoFollowUp)
    );
    assert!(!case.overdue);
}

#[test]
fn a_follow_up_not_made_in_time_is_overdue_and_satisfied_petitioners_get_none() {
    let desk = Desk::new(COUNTY);
    let (mut case, replied_at) = replied(&desk);
    let evaluated_at = replied_at + days(1);
    desk.ok(
        &mut case,
        evaluated_at,
        evaluate(Satisfaction::Dissatisfied),
    );
    let due = case.clock_due(ClockKind::FollowUp).unwrap_or_default();
    let fired = run_until(&desk, &mut case, due);
    let follow_ups: Vec<&str> = fired
        .iter()
        .filter_map(|event| match event {
            Event::Warned {
                clock: ClockKind::FollowUp,
                ..
            } => Some("warned"),
            Event::Overdue {
                clock: ClockKind::FollowUp,
                ..
            } => Some("overdue"),
            _ => None,
        })
        .collect();
    assert_eq!(follow_ups, ["warned", "warned", "overdue"]);
    assert!(case.overdue, "a missed follow-up is a breach");
    // Still owed after its due date: recording it closes the clock.
    desk.ok(&mut case, due + days(1), follow_up("Reached at last"));
    assert_eq!(case.clock_run(ClockKind::FollowUp), None);

    let (mut satisfied, replied_at) = replied(&desk);
    let events = desk.ok(
        &mut satisfied,
        replied_at + days(1),
        evaluate(Satisfaction::Basic),
    );
    assert_eq!(names(&events), ["evaluated"]);
    assert_eq!(satisfied.extra, None);
    assert_eq!(satisfied.v, CASE_VERSION_SINGLE, "stored as before");
    assert_eq!(
        desk.act(&mut satisfied, replied_at + days(2), follow_up("x")),
        Err(DomainError::NoFollowUp)
    );
}

#[test]
fn a_follow_up_note_is_checked() {
    let desk = Desk::new(COUNTY);
    let (mut case, replied_at) = replied(&desk);
    desk.ok(
        &mut case,
        replied_at + days(1),
        evaluate(Satisfaction::Dissatisfied),
    );
    let before = case.clone();
    assert_eq!(
        code(desk.act(&mut case, replied_at + days(2), follow_up("  "))),
        "field_empty"
    );
    let long = "回".repeat(5_000);
    assert_eq!(
        code(desk.act(&mut case, replied_at + days(2), follow_up(&long))),
        "field_too_long"
    );
    assert_eq!(case, before, "nothing changed");
}

#[test]
fn a_case_with_the_extension_stores_and_reads_back_whole_with_or_without_a_group() {
    let desk = Desk::new(COUNTY);
    let (mut case, replied_at) = replied(&desk);
    desk.ok(
        &mut case,
        replied_at + days(1),
        evaluate(Satisfaction::Dissatisfied),
    );
    let (header, _) = case.clone().into_header();
    let read = Case::from_bytes(&header.to_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read, header);
    assert!(read.extra.is_some());

    // The same with a group after the extension: a group case graded.
    let parties = group::arrange(
        vec![
            group::Party {
                id_type: IdType::Passport,
                id_number: "E12345678".into(),
                name: "John Smith".into(),
                phone: None,
                nationality: Some("GBR".into()),
            },
            group::Party {
                id_type: IdType::Resident,
                id_number: ID_NUMBER.into(),
                name: "张三".into(),
                phone: None,
                nationality: None,
            },
        ],
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut registration = registration(Channel::Visit);
    registration.petitioner_id = "E12345678".into();
    registration.name = "John Smith".into();
    let mut grouped = register_with_group(
        CaseId {
            office: desk.office.clone(),
            year: 2026,
            seq: 8,
        },
        registration,
        document_key(SECRET, IdType::Passport, "E12345678"),
        CaseKind::Original,
        group::Group::of(&parties),
        &desk.ctx(t(MONDAY)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(grouped.v, CASE_VERSION_GROUP);
    desk.ok(&mut grouped, t(MONDAY) + days(1), accept());
    desk.ok(
        &mut grouped,
        t(MONDAY) + days(1),
        grade(t(MONDAY) + days(9)),
    );
    assert_eq!(grouped.v, CASE_VERSION_EXTRA);
    let (grouped, _) = grouped.into_header();
    assert!(grouped.group.is_some() && grouped.extra.is_some());
    let read = Case::from_bytes(&grouped.to_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read, grouped);

    // A version-4 case cut before its extension is refused, not misread.
    let mut plain = header.clone();
    plain.extra = None;
    let cut = plain.to_bytes();
    assert_eq!(code(Case::from_bytes(&cut)), "corrupt");
}

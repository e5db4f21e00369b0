//! Golden tests: one per statutory rule of 《信访工作条例》2022 as the engine implements it, with
//! exact deadlines (printed in China time) and exact refusals.

mod common;

use common::*;
use liandong_domain::*;

/// A petition registers on each of the five channels, and the first entry names the first-contact officer.
#[test]
fn registration_on_every_channel_names_the_first_contact_officer() {
    let desk = Desk::new(COUNTY);
    for (seq, channel) in (1..).zip(Channel::ALL) {
        let id = CaseId {
            office: office(COUNTY),
            year: 2026,
            seq,
        };
        let key = petitioner_key(SECRET, ID_NUMBER);
        let case = register(
            id,
            registration(*channel),
            key,
            CaseKind::Original,
            &desk.ctx(t(MONDAY)),
        )
        .unwrap_or_else(|error| panic!("{channel}: {error}"));
        assert_eq!(case.channel, *channel);
        assert_eq!(case.status, Status::Registered);
        assert_eq!(case.first_officer, "Officer Li");
        assert_eq!(case.history.len(), 1);
        assert_eq!(case.history[0].kind, "registered");
        assert_eq!(case.history[0].detail["officer"], "Officer Li");
        assert_eq!(case.history[0].detail["channel"], channel.as_str());
        // The history carries the key, never the ID number.
        assert!(!serde_json::to_string(&case.history)
            .unwrap_or_default()
            .contains(ID_NUMBER));
    }
}

/// The decision limit is exactly 15 calendar days after registration, same wall-clock time.
#[test]
fn accept_limit_is_15_days_from_registration() {
    let case = Desk::new(COUNTY).register(t(MONDAY));
    assert_eq!(case.deadlines.accept_by, Some(t(MONDAY) + days(15)));
    assert_eq!(
        rfc(case.deadlines.accept_by).as_deref(),
        Some("2026-03-17T09:00:00+08:00")
    );
    assert_eq!(
        (case.deadlines.reply_by, case.deadlines.review_by),
        (None, None)
    );
}

/// A transferred case gets the receiver's own 15 days, counted from receipt.
#[test]
fn received_case_has_15_days_from_receipt() {
    let (sender, receiver) = (Desk::new(COUNTY), Desk::new(OTHER_COUNTY));
    let mut case = sender.register(t(MONDAY));
    sender.ok(
        &mut case,
        t("2026-03-05T09:00:00+08:00"),
        transfer(OTHER_COUNTY),
    );
    let received = receiver.receive(&case, t("2026-03-06T14:30:00+08:00"));
    assert_eq!(received.office, office(OTHER_COUNTY));
    assert_eq!(received.status, Status::Registered);
    assert_eq!(
        rfc(received.deadlines.accept_by).as_deref(),
        Some("2026-03-21T14:30:00+08:00")
    );
    assert_eq!(
        received.history.last().map(|entry| entry.kind.as_str()),
        Some("received")
    );
    assert_eq!(received.verify_chain(), Ok(()));
}

/// Within the 15 days the office accepts, declines with a statutory route, transfers or assigns; once decided, not again.
#[test]
fn decision_is_accept_decline_transfer_or_assign_once() {
    let desk = Desk::new(COUNTY);
    let at = t(MONDAY) + days(1);
    let decline = CaseCommand::Decline {
        route: DeclineRoute::AdminReview,
        officer: "Officer Li".into(),
    };
    for (command, status) in [
        (accept(), "accepted"),
        (decline.clone(), "declined"),
        (transfer(OTHER_COUNTY), "in_transit"),
        (assign(TOWNSHIP, 20), "in_transit"),
    ] {
        let mut case = desk.register(t(MONDAY));
        desk.ok(&mut case, at, command);
        assert_eq!(case.status.as_str(), status);
        assert_eq!(
            case.deadlines.accept_by.is_some(),
            status == "in_transit",
            "{status}"
        );
    }
    let mut accepted = desk.register(t(MONDAY));
    desk.ok(&mut accepted, at, accept());
    assert_eq!(
        code(desk.act(&mut accepted, at, decline.clone())),
        "already_accepted"
    );
    assert_eq!(
        code(desk.act(&mut accepted, at, transfer(OTHER_COUNTY))),
        "already_accepted"
    );
    let mut declined = desk.register(t(MONDAY));
    desk.ok(&mut declined, at, decline);
    assert_eq!(
        declined.status,
        Status::Declined {
            route: DeclineRoute::AdminReview
        }
    );
    assert_eq!(code(desk.act(&mut declined, at, accept())), "case_declined");
}

/// Accepting twice is refused with AlreadyAccepted.
#[test]
fn accept_twice_is_already_accepted() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    desk.ok(&mut case, t(MONDAY) + days(2), accept());
    assert_eq!(
        desk.act(&mut case, t(MONDAY) + days(3), accept()),
        Err(DomainError::AlreadyAccepted)
    );
}

/// Return within 5 working days of receipt, by the real calendar: receipt on 2026-09-30 skips National Day (10-01..10-07) and counts make-up Saturday 10-10.
#[test]
fn return_within_5_working_days_skips_national_day() {
    let (sender, receiver) = (Desk::new(COUNTY), Desk::new(OTHER_COUNTY));
    let mut case = sender.register(t("2026-09-28T09:00:00+08:00"));
    sender.ok(
        &mut case,
        t("2026-09-29T09:00:00+08:00"),
        transfer(OTHER_COUNTY),
    );
    let received = receiver.receive(&case, t("2026-09-30T10:00:00+08:00"));
    // Working days after 09-30: 10-08 (Thu), 10-09 (Fri), 10-10 (make-up Sat), 10-12 (Mon), 10-13 (Tue).
    assert_eq!(
        rfc(received.deadlines.return_by).as_deref(),
        Some("2026-10-13T10:00:00+08:00")
    );
    let mut late = received.clone();
    assert_eq!(
        receiver.act(&mut late, t("2026-10-13T10:00:00+08:00"), return_case()),
        Err(DomainError::ReturnWindowClosed)
    );
    let mut in_time = received;
    let events = receiver.ok(&mut in_time, t("2026-10-13T09:59:59+08:00"), return_case());
    assert_eq!(names(&events), ["returned"]);
    assert_eq!(
        in_time.status,
        Status::InTransit {
            to: office(COUNTY),
            kind: HandoffKind::Return
        }
    );
}

/// Only a case this office received in a transfer or assignment can be returned; a case that came back by return cannot.
#[test]
fn only_a_received_case_can_be_returned() {
    let (sender, receiver) = (Desk::new(COUNTY), Desk::new(OTHER_COUNTY));
    let mut original = sender.register(t(MONDAY));
    assert_eq!(
        sender.act(&mut original, t(MONDAY) + days(1), return_case()),
        Err(DomainError::NotReceiver)
    );

    sender.ok(&mut original, t(MONDAY) + days(1), transfer(OTHER_COUNTY));
    let mut received = receiver.receive(&original, t(MONDAY) + days(2));
    receiver.ok(&mut received, t(MONDAY) + days(3), return_case());
    // The sender takes it back: a fresh 15-day clock, no return window.
    let mut back = sender.receive(&received, t(MONDAY) + days(4));
    assert_eq!(back.office, office(COUNTY));
    assert_eq!(back.deadlines.accept_by, Some(t(MONDAY) + days(19)));
    assert_eq!(back.deadlines.return_by, None);
    assert_eq!(
        sender.act(&mut back, t(MONDAY) + days(5), return_case()),
        Err(DomainError::NotReceiver)
    );
    // The returner's copy becomes a stub once the sender acknowledges.
    receiver.ok(
        &mut received,
        t(MONDAY) + days(4),
        CaseCommand::HandoffAcked,
    );
    assert_eq!(received.status, Status::Forwarded { to: office(COUNTY) });
    // A receiver that accepted has made the case its own.
    let mut again = Desk::new(COUNTY).register_kind(t(MONDAY), 124, CaseKind::Original);
    sender.ok(&mut again, t(MONDAY) + days(1), transfer(OTHER_COUNTY));
    let mut accepted = receiver.receive(&again, t(MONDAY) + days(2));
    receiver.ok(&mut accepted, t(MONDAY) + days(2), accept());
    assert_eq!(
        receiver.act(&mut accepted, t(MONDAY) + days(3), return_case()),
        Err(DomainError::AlreadyAccepted)
    );
}

/// The reply is due 60 days after acceptance.
#[test]
fn reply_limit_is_60_days_from_acceptance() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    desk.ok(&mut case, t("2026-03-03T10:00:00+08:00"), accept());
    assert_eq!(case.deadlines.accept_by, None);
    assert_eq!(
        rfc(case.deadlines.reply_by).as_deref(),
        Some("2026-05-02T10:00:00+08:00")
    );
    assert_eq!(case.handler.as_deref(), Some("Officer Wang"));
}

/// One extension of at most 30 days with a reason: 31 days, an empty reason, 0 days and a second extension are refused.
#[test]
fn one_extension_of_at_most_30_days_with_a_reason() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    let at = t("2026-03-03T10:00:00+08:00");
    assert_eq!(
        desk.act(&mut case, at, extend(10, "more time")),
        Err(DomainError::NotAccepted)
    );
    desk.ok(&mut case, at, accept());
    assert_eq!(
        desk.act(&mut case, at, extend(31, "more time")),
        Err(DomainError::ExtensionTooLong { max: 30 })
    );
    assert_eq!(
        desk.act(&mut case, at, extend(10, "  ")),
        Err(DomainError::FieldEmpty { field: "reason" })
    );
    assert_eq!(
        code(desk.act(&mut case, at, extend(0, "more time"))),
        "out_of_range"
    );
    desk.ok(&mut case, at + days(40), extend(30, "Land survey pending."));
    assert!(case.extended);
    assert_eq!(
        rfc(case.deadlines.reply_by).as_deref(),
        Some("2026-06-01T10:00:00+08:00")
    );
    assert_eq!(
        desk.act(&mut case, at + days(41), extend(1, "again")),
        Err(DomainError::AlreadyExtended)
    );
}

/// A reply before acceptance is refused.
#[test]
fn reply_before_acceptance_is_refused() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    assert_eq!(
        desk.act(&mut case, t(MONDAY) + days(1), reply(Opinion::Support)),
        Err(DomainError::ReplyBeforeAcceptance)
    );
}

/// The reply is one of support / explain / not-support, with text; it opens 30-day review and evaluation windows.
#[test]
fn reply_is_an_opinion_with_text() {
    let desk = Desk::new(COUNTY);
    for opinion in Opinion::ALL {
        let mut case = desk.register(t(MONDAY));
        desk.ok(&mut case, t(MONDAY) + days(1), accept());
        let empty = CaseCommand::Reply {
            opinion: *opinion,
            text: String::new(),
            officer: "Officer Wang".into(),
        };
        assert_eq!(
            desk.act(&mut case, t(MONDAY) + days(2), empty),
            Err(DomainError::FieldEmpty { field: "text" })
        );
        desk.ok(&mut case, t("2026-04-01T10:00:00+08:00"), reply(*opinion));
        assert_eq!(
            (case.status.as_str(), case.opinion),
            ("replied", Some(*opinion))
        );
        assert_eq!(case.deadlines.reply_by, None);
        assert_eq!(
            rfc(case.deadlines.review_by).as_deref(),
            Some("2026-05-01T10:00:00+08:00")
        );
        assert_eq!(case.deadlines.evaluate_by, case.deadlines.review_by);
        assert_eq!(
            desk.act(&mut case, t("2026-04-02T10:00:00+08:00"), reply(*opinion)),
            Err(DomainError::AlreadyReplied)
        );
    }
}

fn replied_case(desk: &Desk) -> Case {
    let mut case = desk.register(t(MONDAY));
    desk.ok(&mut case, t("2026-03-03T10:00:00+08:00"), accept());
    desk.ok(
        &mut case,
        t("2026-04-01T10:00:00+08:00"),
        reply(Opinion::Explain),
    );
    case
}

/// The petitioner evaluates a replied case once: satisfied, basic or dissatisfied; not before the reply, and never "not evaluated" by hand.
#[test]
fn evaluation_of_a_replied_case() {
    let desk = Desk::new(COUNTY);
    let mut early = desk.register(t(MONDAY));
    assert_eq!(
        desk.act(&mut early, t(MONDAY), evaluate(Satisfaction::Satisfied)),
        Err(DomainError::NotReplied)
    );
    for satisfaction in [
        Satisfaction::Satisfied,
        Satisfaction::Basic,
        Satisfaction::Dissatisfied,
    ] {
        let mut case = replied_case(&desk);
        let at = t("2026-04-05T10:00:00+08:00");
        assert_eq!(
            desk.act(&mut case, at, evaluate(Satisfaction::NotEvaluated)),
            Err(DomainError::SatisfactionReserved)
        );
        desk.ok(&mut case, at, evaluate(satisfaction));
        assert_eq!(
            (case.status.as_str(), case.satisfaction),
            ("evaluated", Some(satisfaction))
        );
        assert_eq!(
            desk.act(&mut case, at, evaluate(satisfaction)),
            Err(DomainError::AlreadyEvaluated)
        );
    }
    assert_eq!(
        code("not-evaluated".parse::<Satisfaction>()),
        "invalid_satisfaction"
    );
}

/// An evaluation not given within 30 days of the reply lapses to NotEvaluated, and the closed review window finalises the case.
#[test]
fn evaluation_lapses_after_30_days() {
    let desk = Desk::new(COUNTY);
    let mut case = replied_case(&desk);
    let closes = t("2026-05-01T10:00:00+08:00");
    assert_eq!(desk.tick(&mut case, closes - 1), Vec::<Event>::new());
    assert_eq!(
        names(&desk.tick(&mut case, closes)),
        ["evaluation_lapsed", "finalised"]
    );
    assert_eq!(case.satisfaction, Some(Satisfaction::NotEvaluated));
    assert_eq!(case.status, Status::Final);
    assert_eq!(
        desk.act(&mut case, closes + 1, evaluate(Satisfaction::Basic)),
        Err(DomainError::EvaluationWindowClosed)
    );
}

/// Review (复查) is requested within 30 days of the reply and goes one level up; at the limit the window is closed.
#[test]
fn review_requested_within_30_days_of_the_reply() {
    let desk = Desk::new(COUNTY);
    let mut late = replied_case(&desk);
    let closes = t("2026-05-01T10:00:00+08:00");
    assert_eq!(
        desk.act(&mut late, closes, CaseCommand::RequestReview),
        Err(DomainError::ReviewWindowClosed)
    );
    let mut case = replied_case(&desk);
    let events = desk.ok(&mut case, closes - 1, CaseCommand::RequestReview);
    assert_eq!(
        events,
        [Event::ReviewRequested {
            at: closes - 1,
            office: office(COUNTY),
            level: ReviewLevel::Review,
            to: office(CITY)
        }]
    );
    assert_eq!(case.status, Status::ReviewRequested);
    assert_eq!(
        desk.act(&mut case, closes - 1, CaseCommand::RequestReview),
        Err(DomainError::ReviewAlreadyRequested)
    );
    let mut accepted = desk.register(t(MONDAY));
    desk.ok(&mut accepted, t(MONDAY), accept());
    assert_eq!(
        desk.act(&mut accepted, t(MONDAY), CaseCommand::RequestReview),
        Err(DomainError::NotReplied)
    );
}

/// A review case is decided within 30 days of its registration, without extension.
#[test]
fn review_case_is_decided_within_30_days() {
    let city = Desk::new(CITY);
    let of = CaseId {
        office: office(COUNTY),
        year: 2026,
        seq: 123,
    };
    let registered = t("2026-04-20T09:00:00+08:00");
    let mut review = city.register_kind(registered, 7, CaseKind::Review { of });
    assert_eq!(
        rfc(review.deadlines.reply_by).as_deref(),
        Some("2026-05-20T09:00:00+08:00")
    );
    city.ok(&mut review, registered + days(10), accept());
    assert_eq!(
        rfc(review.deadlines.reply_by).as_deref(),
        Some("2026-05-20T09:00:00+08:00")
    );
    assert_eq!(
        city.act(&mut review, registered + days(11), extend(10, "more time")),
        Err(DomainError::ExtensionNotAllowed)
    );
    // The decision clock warns from registration: 50 % of 30 days is day 15.
    assert_eq!(review.next_alarm(), Some(registered + days(15)));
}

/// Re-review (复核) is what RequestReview starts on a replied review case, one more level up.
#[test]
fn re_review_follows_a_replied_review() {
    let city = Desk::new(CITY);
    let of = CaseId {
        office: office(COUNTY),
        year: 2026,
        seq: 123,
    };
    let registered = t("2026-04-20T09:00:00+08:00");
    let mut review = city.register_kind(registered, 7, CaseKind::Review { of });
    city.ok(&mut review, registered + days(1), accept());
    city.ok(
        &mut review,
        registered + days(20),
        reply(Opinion::NotSupport),
    );
    let events = city.ok(
        &mut review,
        registered + days(21),
        CaseCommand::RequestReview,
    );
    assert_eq!(names(&events), ["review_requested"]);
    assert!(
        matches!(&events[0], Event::ReviewRequested { level: ReviewLevel::ReReview, to, .. } if *to == office("53"))
    );
}

/// After a re-review case is replied the matter is final: RequestReview is refused with Final, and evaluating it closes it.
#[test]
fn after_re_review_the_matter_is_final() {
    let province = Desk::new("53");
    let of = CaseId {
        office: office(CITY),
        year: 2026,
        seq: 7,
    };
    let registered = t("2026-06-01T09:00:00+08:00");
    let mut case = province.register_kind(registered, 1, CaseKind::ReReview { of });
    province.ok(&mut case, registered + days(1), accept());
    province.ok(&mut case, registered + days(25), reply(Opinion::Explain));
    assert_eq!(case.deadlines.review_by, None);
    assert_eq!(
        province.act(&mut case, registered + days(26), CaseCommand::RequestReview),
        Err(DomainError::Final)
    );
    let events = province.ok(
        &mut case,
        registered + days(26),
        evaluate(Satisfaction::Basic),
    );
    assert_eq!(names(&events), ["evaluated", "finalised"]);
    assert_eq!(case.status, Status::Final);
    assert_eq!(
        province.act(&mut case, registered + days(27), CaseCommand::RequestReview),
        Err(DomainError::Final)
    );
}

/// When the review window closes without a request, tick finalises the case (an evaluated one too).
#[test]
fn review_window_closing_finalises() {
    let desk = Desk::new(COUNTY);
    let mut case = replied_case(&desk);
    desk.ok(
        &mut case,
        t("2026-04-02T10:00:00+08:00"),
        evaluate(Satisfaction::Satisfied),
    );
    assert_eq!(
        rfc(case.next_alarm()).as_deref(),
        Some("2026-05-01T10:00:00+08:00")
    );
    assert_eq!(
        names(&desk.tick(&mut case, t("2026-05-03T00:00:00+08:00"))),
        ["finalised"]
    );
    assert_eq!(
        (case.status.clone(), case.next_alarm()),
        (Status::Final, None)
    );
    assert_eq!(
        desk.act(
            &mut case,
            t("2026-05-03T00:00:00+08:00"),
            CaseCommand::RequestReview
        ),
        Err(DomainError::Final)
    );
}

/// A grade A/B/C needs all four fixed points (leader, department, plan, deadline in the future).
#[test]
fn grade_needs_the_four_fixed_points() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    let grade =
        |leader: &str, department: &str, plan: &str, deadline: Millis| CaseCommand::SetGrade {
            grade: Grade::A,
            leader: leader.into(),
            department: department.into(),
            plan: plan.into(),
            deadline,
        };
    let (now, later) = (t(MONDAY) + days(1), t(MONDAY) + days(30));
    for (command, field) in [
        (grade("", "Land bureau", "Pay by June", later), "leader"),
        (
            grade("Deputy head Chen", "", "Pay by June", later),
            "department",
        ),
        (grade("Deputy head Chen", "Land bureau", " ", later), "plan"),
    ] {
        assert_eq!(
            desk.act(&mut case, now, command),
            Err(DomainError::FieldEmpty { field })
        );
    }
    assert_eq!(
        desk.act(&mut case, now, grade("Chen", "Land", "Pay", now)),
        Err(DomainError::GradeDeadlinePast)
    );
    desk.ok(
        &mut case,
        now,
        grade("Deputy head Chen", "Land bureau", "Pay by June", later),
    );
    let info = case.grade.clone().unwrap_or_else(|| panic!("graded"));
    assert_eq!(
        (info.grade, info.leader.as_str(), info.deadline),
        (Grade::A, "Deputy head Chen", later)
    );
    assert_eq!(code("D".parse::<Grade>()), "invalid_grade");
}

/// The accept clock warns at 50 % and 75 % and marks overdue at 100 %, each exactly once, and next_alarm names each threshold.
#[test]
fn clock_warns_at_50_and_75_and_is_overdue_at_100() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    let expected = [
        (
            "2026-03-09T21:00:00+08:00",
            Event::Warned {
                at: 0,
                office: office(COUNTY),
                clock: ClockKind::Accept,
                percent: 50,
                threshold_at: 0,
            },
        ),
        (
            "2026-03-13T15:00:00+08:00",
            Event::Warned {
                at: 0,
                office: office(COUNTY),
                clock: ClockKind::Accept,
                percent: 75,
                threshold_at: 0,
            },
        ),
        (
            "2026-03-17T09:00:00+08:00",
            Event::Overdue {
                at: 0,
                office: office(COUNTY),
                clock: ClockKind::Accept,
                due_at: 0,
            },
        ),
    ];
    for (instant, template) in expected {
        let alarm = case
            .next_alarm()
            .unwrap_or_else(|| panic!("an alarm before {instant}"));
        assert_eq!(format_rfc3339(alarm), instant);
        assert_eq!(desk.tick(&mut case, alarm - 1), Vec::<Event>::new());
        let fired = desk.tick(&mut case, alarm);
        let stamped = match template {
            Event::Warned {
                office,
                clock,
                percent,
                ..
            } => Event::Warned {
                at: alarm,
                office,
                clock,
                percent,
                threshold_at: alarm,
            },
            Event::Overdue { office, clock, .. } => Event::Overdue {
                at: alarm,
                office,
                clock,
                due_at: alarm,
            },
            other => other,
        };
        assert_eq!(fired, [stamped]);
        assert_eq!(
            desk.tick(&mut case, alarm),
            Vec::<Event>::new(),
            "exactly once"
        );
    }
    assert!(case.overdue);
    assert_eq!(case.next_alarm(), None);
    // Overdue does not block the decision: the breach stays on record.
    desk.ok(&mut case, t("2026-03-18T09:00:00+08:00"), accept());
    assert!(case.overdue);
}

/// A tick past several thresholds emits all of them at once, in threshold order, stamped with the tick's time.
#[test]
fn late_tick_emits_every_passed_threshold_in_order() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    desk.ok(&mut case, t("2026-03-03T10:00:00+08:00"), accept());
    desk.ok(
        &mut case,
        t("2026-03-03T10:00:00+08:00"),
        CaseCommand::Supervise {
            from: office(CITY),
            due_days: 10,
            text: "Report progress.".into(),
        },
    );
    let late = t("2026-12-01T00:00:00+08:00");
    let events = desk.tick(&mut case, late);
    let fired: Vec<(&str, String, u8)> = events
        .iter()
        .map(|event| match event {
            Event::Warned {
                clock,
                percent,
                threshold_at,
                ..
            } => (clock.as_str(), format_rfc3339(*threshold_at), *percent),
            Event::Overdue { clock, due_at, .. } => (clock.as_str(), format_rfc3339(*due_at), 100),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        fired,
        [
            ("supervision", "2026-03-08T10:00:00+08:00".to_string(), 50),
            ("supervision", "2026-03-10T22:00:00+08:00".to_string(), 75),
            ("supervision", "2026-03-13T10:00:00+08:00".to_string(), 100),
            ("reply", "2026-04-02T10:00:00+08:00".to_string(), 50),
            ("reply", "2026-04-17T10:00:00+08:00".to_string(), 75),
            ("reply", "2026-05-02T10:00:00+08:00".to_string(), 100),
        ]
    );
    assert!(events.iter().all(|event| event.at() == late));
    assert_eq!(desk.tick(&mut case, late), Vec::<Event>::new());
}

/// Every clock has the 50/75/100 thresholds: reply (extension moves the limit), return (lapses, not a breach), report-back, review decision.
#[test]
fn every_clock_warns_and_reaches_its_limit() {
    let (county, township) = (Desk::new(COUNTY), Desk::new(TOWNSHIP));
    let mut case = county.register(t(MONDAY));
    county.ok(&mut case, t(MONDAY), assign(TOWNSHIP, 40));
    assert_eq!(case.next_alarm(), None, "in transit: frozen");
    let received_at = t(MONDAY) + days(1);
    let mut received = township.receive(&case, received_at);
    assert_eq!(
        rfc(received.deadlines.report_by).as_deref(),
        Some("2026-04-11T09:00:00+08:00")
    );
    // Receipt on Tuesday 03-03: five working days end on Tuesday 03-10.
    assert_eq!(
        rfc(received.deadlines.return_by).as_deref(),
        Some("2026-03-10T09:00:00+08:00")
    );
    let events = township.tick(&mut received, t("2026-03-10T09:00:00+08:00"));
    let clocks: Vec<(&str, &str)> = events
        .iter()
        .map(|event| match event {
            Event::Warned { clock, .. } | Event::Overdue { clock, .. } => {
                (event.name(), clock.as_str())
            }
            other => (other.name(), ""),
        })
        .collect();
    assert_eq!(
        clocks,
        [
            ("warned", "return"),
            ("warned", "return"),
            ("return_window_lapsed", "")
        ]
    );
    assert!(!received.overdue, "an unused return window is no breach");
    assert_eq!(received.deadlines.return_by, None);
    township.ok(&mut received, t("2026-03-11T09:00:00+08:00"), accept());
    township.ok(
        &mut received,
        t("2026-03-11T09:00:00+08:00"),
        extend(30, "Survey"),
    );
    // Reply limit 03-11 + 60 + 30 days = 06-09; report-back at 04-11 passes first.
    assert_eq!(
        rfc(received.deadlines.reply_by).as_deref(),
        Some("2026-06-09T09:00:00+08:00")
    );
    let events = township.tick(&mut received, t("2026-04-11T09:00:00+08:00"));
    assert!(names(&events).contains(&"overdue"));
    assert!(received.overdue);
    township.ok(
        &mut received,
        t("2026-04-12T09:00:00+08:00"),
        reply(Opinion::Support),
    );
    assert_eq!(
        (received.deadlines.report_by, received.deadlines.reply_by),
        (None, None)
    );
}

/// A case in transit is read-only: every command but the handoff's outcome is refused with InTransit.
#[test]
fn case_in_transit_is_read_only() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    desk.ok(&mut case, t(MONDAY), transfer(OTHER_COUNTY));
    assert!(!case.is_mutable_by(&office(COUNTY)));
    let commands = [
        accept(),
        CaseCommand::Decline {
            route: DeclineRoute::Litigation,
            officer: "Li".into(),
        },
        transfer(CITY),
        assign(TOWNSHIP, 10),
        return_case(),
        extend(5, "x"),
        reply(Opinion::Support),
        evaluate(Satisfaction::Basic),
        CaseCommand::RequestReview,
        CaseCommand::SetGrade {
            grade: Grade::B,
            leader: "a".into(),
            department: "b".into(),
            plan: "c".into(),
            deadline: t(MONDAY) + days(9),
        },
        CaseCommand::Supervise {
            from: office(CITY),
            due_days: 5,
            text: "x".into(),
        },
        CaseCommand::AnswerSupervision {
            text: "x".into(),
            officer: "y".into(),
        },
    ];
    for command in commands {
        let name = command.name();
        assert_eq!(
            desk.act(&mut case, t(MONDAY) + days(1), command),
            Err(DomainError::InTransit {
                to: office(OTHER_COUNTY)
            }),
            "{name}"
        );
    }
}

/// A forwarded stub refuses everything, keeps no personal data and no clocks; another office's copy is NotOwner.
#[test]
fn forwarded_stub_refuses_everything() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    desk.ok(&mut case, t(MONDAY), transfer(OTHER_COUNTY));
    desk.ok(&mut case, t(MONDAY) + days(1), CaseCommand::HandoffAcked);
    assert_eq!(
        case.status,
        Status::Forwarded {
            to: office(OTHER_COUNTY)
        }
    );
    assert_eq!(
        (
            case.office.clone(),
            case.petitioner.clone(),
            case.next_alarm()
        ),
        (office(OTHER_COUNTY), None, None)
    );
    for command in [
        accept(),
        CaseCommand::HandoffAcked,
        CaseCommand::HandoffRefused { reason: "x".into() },
    ] {
        assert_eq!(
            desk.act(&mut case, t(MONDAY) + days(2), command),
            Err(DomainError::Forwarded {
                to: office(OTHER_COUNTY)
            })
        );
    }
    let fresh = desk.register(t(MONDAY));
    let other = Desk::new(OTHER_COUNTY);
    assert_eq!(
        decide(&fresh, &accept(), &other.ctx(t(MONDAY))),
        Err(DomainError::NotOwner {
            owner: office(COUNTY)
        })
    );
    assert_eq!(
        tick(&fresh, &other.ctx(t(MONDAY) + days(30))),
        Vec::<Event>::new()
    );
}

/// A refused handoff gives ownership back: status and clocks as before the handoff.
#[test]
fn refused_handoff_restores_ownership() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    let before = case.deadlines.clone();
    desk.ok(&mut case, t(MONDAY), transfer(OTHER_COUNTY));
    let events = desk.ok(
        &mut case,
        t(MONDAY) + days(1),
        CaseCommand::HandoffRefused {
            reason: "Not ours".into(),
        },
    );
    assert_eq!(names(&events), ["handoff_reverted"]);
    assert_eq!(
        (case.status.clone(), case.deadlines.clone()),
        (Status::Registered, before)
    );
    assert!(case.is_mutable_by(&office(COUNTY)));
    assert_eq!(
        desk.act(&mut case, t(MONDAY) + days(1), CaseCommand::HandoffAcked),
        Err(DomainError::NotInTransit)
    );
}

/// Assignment goes only to descendants, with a report-back limit of 1..=90 days; transfer stays within a common ancestor's subtree.
#[test]
fn assignment_and_transfer_follow_the_tree() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    assert_eq!(
        code(desk.act(&mut case, t(MONDAY), assign(TOWNSHIP, 0))),
        "out_of_range"
    );
    assert_eq!(
        code(desk.act(&mut case, t(MONDAY), assign(TOWNSHIP, 91))),
        "out_of_range"
    );
    assert_eq!(
        code(desk.act(&mut case, t(MONDAY), assign(OTHER_COUNTY, 10))),
        "assign_not_descendant"
    );
    assert_eq!(
        code(desk.act(&mut case, t(MONDAY), assign(CITY, 10))),
        "assign_not_descendant"
    );
    assert_eq!(
        desk.act(&mut case, t(MONDAY), transfer(COUNTY)),
        Err(DomainError::TransferToSelf)
    );
    assert_eq!(
        code(desk.act(&mut case, t(MONDAY), transfer("440305"))),
        "no_common_ancestor"
    );
    let events = desk.ok(&mut case, t(MONDAY), assign(TOWNSHIP, 90));
    assert!(
        matches!(&events[0], Event::HandoffStarted { handoff: HandoffKind::Assign { due_by }, .. } if *due_by == t(MONDAY) + days(90))
    );
}

/// receive() takes only a copy in transit to this very office with the same handoff, and an intact chain.
#[test]
fn receive_checks_the_handoff() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    let other = Desk::new(OTHER_COUNTY);
    assert_eq!(
        receive(&case, HandoffKind::Transfer, &other.ctx(t(MONDAY))),
        Err(DomainError::NotInTransit)
    );
    desk.ok(&mut case, t(MONDAY), transfer(OTHER_COUNTY));
    let city = Desk::new(CITY);
    assert_eq!(
        code(receive(&case, HandoffKind::Transfer, &city.ctx(t(MONDAY)))),
        "wrong_recipient"
    );
    assert_eq!(
        receive(&case, HandoffKind::Return, &other.ctx(t(MONDAY))),
        Err(DomainError::HandoffMismatch)
    );
    let mut tampered = case.clone();
    tampered.history[0].detail["officer"] = "Someone else".into();
    assert_eq!(
        code(receive(
            &tampered,
            HandoffKind::Transfer,
            &other.ctx(t(MONDAY))
        )),
        "chain_broken"
    );
}

/// A supervision order from an ancestor runs its own clock until answered; non-ancestors cannot supervise.
#[test]
fn supervision_order_is_answered() {
    let desk = Desk::new(COUNTY);
    let mut case = desk.register(t(MONDAY));
    let order = |from: &str| CaseCommand::Supervise {
        from: office(from),
        due_days: 10,
        text: "Report by Friday.".into(),
    };
    assert_eq!(
        code(desk.act(&mut case, t(MONDAY), order(OTHER_COUNTY))),
        "not_supervisor"
    );
    assert_eq!(
        code(desk.act(&mut case, t(MONDAY), order(TOWNSHIP))),
        "not_supervisor"
    );
    let answer = CaseCommand::AnswerSupervision {
        text: "Surveyed on Thursday.".into(),
        officer: "Officer Li".into(),
    };
    assert_eq!(
        desk.act(&mut case, t(MONDAY), answer.clone()),
        Err(DomainError::NoSupervisionOrder)
    );
    desk.ok(&mut case, t(MONDAY), order("53"));
    assert_eq!(case.deadlines.supervision_by, Some(t(MONDAY) + days(10)));
    desk.ok(&mut case, t(MONDAY) + days(3), answer);
    assert_eq!(
        (case.supervision.clone(), case.deadlines.supervision_by),
        (None, None)
    );
}

/// The history is a hash chain: every event appends an entry, and a modified, dropped or reordered entry fails verification.
#[test]
fn hash_chain_detects_tampering() {
    let desk = Desk::new(COUNTY);
    let mut case = replied_case(&desk);
    desk.ok(
        &mut case,
        t("2026-04-02T10:00:00+08:00"),
        evaluate(Satisfaction::Satisfied),
    );
    assert_eq!(case.history.len(), 4);
    assert_eq!(case.history[0].prev_hash, GENESIS_HASH);
    assert!(case
        .history
        .windows(2)
        .all(|pair| pair[1].prev_hash == pair[0].hash && pair[1].seq == pair[0].seq + 1));
    assert_eq!(case.verify_chain(), Ok(()));

    let mut modified = case.clone();
    modified.history[2].detail["text"] = "We will pay double.".into();
    assert_eq!(
        modified.verify_chain(),
        Err(DomainError::ChainBroken {
            seq: 3,
            reason: "the entry's content does not match its hash"
        })
    );
    let mut dropped = case.clone();
    dropped.history.remove(1);
    assert_eq!(code(dropped.verify_chain()), "chain_broken");
    let mut restamped = case.clone();
    restamped.history[1].at += 1;
    assert_eq!(code(restamped.verify_chain()), "chain_broken");
}

/// Same inputs give a byte-identical case, however often the engine runs.
#[test]
fn same_inputs_give_byte_identical_cases() {
    let run = || {
        let (county, township) = (Desk::new(COUNTY), Desk::new(TOWNSHIP));
        let mut case = county.register(t(MONDAY));
        county.ok(&mut case, t(MONDAY) + days(1), assign(TOWNSHIP, 30));
        let mut received = township.receive(&case, t(MONDAY) + days(2));
        township.tick(&mut received, t(MONDAY) + days(9));
        township.ok(&mut received, t(MONDAY) + days(10), accept());
        township.ok(&mut received, t(MONDAY) + days(20), reply(Opinion::Support));
        township.tick(&mut received, t(MONDAY) + days(90));
        received.to_bytes()
    };
    let first = run();
    assert_eq!(first, run());
    assert_eq!(first[0], liandong_domain::codec::FORMAT_BINARY);
}

/// The stored form is the versioned binary codec and round-trips exactly; version 1's JSON document
/// (written before the binary codec) is still read; other versions and garbage are refused with
/// typed errors.
#[test]
fn stored_case_is_versioned() {
    let desk = Desk::new(COUNTY);
    let case = replied_case(&desk);
    let bytes = case.to_bytes();
    assert_eq!(Case::from_bytes(&bytes), Ok(case.clone()));
    let mut value = serde_json::to_value(&case).unwrap_or_default();
    value["v"] = 1.into();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("history_start");
    }
    let version_1 = serde_json::to_vec(&value).unwrap_or_default();
    let mut read = Case::from_bytes(&version_1).expect("a version-1 document");
    assert_eq!(read.v, 1);
    read.v = case.v;
    assert_eq!(read, case, "a version-1 document carries the whole history");
    value["v"] = (CASE_VERSION + 1).into();
    let future = serde_json::to_vec(&value).unwrap_or_default();
    assert_eq!(
        Case::from_bytes(&future),
        Err(DomainError::UnsupportedVersion {
            found: u64::from(CASE_VERSION + 1),
            supported: CASE_VERSION
        })
    );
    assert!(
        serde_json::from_slice::<Case>(&future).is_err(),
        "plain serde refuses it too"
    );
    let mut future_format = bytes.clone();
    future_format[0] = 3;
    assert_eq!(
        code(Case::from_bytes(&future_format)),
        "unsupported_version"
    );
    value["v"] = 1.into();
    value["office"] = "53060".into();
    assert_eq!(
        code(Case::from_bytes(
            &serde_json::to_vec(&value).unwrap_or_default()
        )),
        "corrupt"
    );
    assert_eq!(code(Case::from_bytes(&bytes[..bytes.len() / 2])), "corrupt");
    assert_eq!(code(Case::from_bytes(b"{}")), "corrupt");
}

/// A case's header (no history entries) decides exactly as the whole case does: the entries it
/// adds extend the whole chain, so header plus stored entries plus new entries is the whole case.
#[test]
fn a_header_decides_like_the_whole_case() {
    let desk = Desk::new(COUNTY);
    let whole = replied_case(&desk);
    let (mut header, stored) = whole.clone().into_header();
    assert!(header.history.is_empty());
    assert_eq!(header.history_len(), whole.history_len());
    let later = t("2026-04-02T10:00:00+08:00");
    let mut whole_after = whole.clone();
    let on_whole = desk.ok(&mut whole_after, later, evaluate(Satisfaction::Basic));
    let on_header = desk.ok(&mut header, later, evaluate(Satisfaction::Basic));
    assert_eq!(on_header, on_whole);
    assert_eq!(
        header.history_start.entries, 3,
        "the chain before the new entry"
    );
    assert_eq!(
        header.history,
        whole_after.history[3..],
        "only the new entry"
    );
    assert_eq!(header.verify_chain(), Ok(()));
    let (header, added) = header.into_header();
    let mut entries = stored;
    entries.extend(added);
    let joined = header.with_whole_history(entries.clone()).expect("joined");
    assert_eq!(joined, whole_after);
    // Entries that do not end where the header's chain does are refused, not joined.
    let (header, _) = whole_after.into_header();
    entries.pop();
    assert_eq!(code(header.with_whole_history(entries)), "corrupt");
}

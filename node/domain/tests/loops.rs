//! Loops that close across levels, as the engine decides them: a review's and a re-review's
//! decision come back to the case they review, and a supervision order follows the case to its
//! next holder.

mod common;

use common::*;
use liandong_domain::*;

fn case_id(code: &str, seq: u32) -> CaseId {
    CaseId {
        office: office(code),
        year: 2026,
        seq,
    }
}

fn decided(review: &CaseId, level: ReviewLevel, is_final: bool) -> CaseCommand {
    CaseCommand::ReviewDecided {
        review: review.clone(),
        level,
        opinion: Opinion::NotSupport,
        text: "the county's reply stands".to_string(),
        decided_at: t("2026-05-10T09:00:00+08:00"),
        is_final,
    }
}

/// An original case replied and sent for review at the county's parent.
fn under_review(desk: &Desk) -> Case {
    let mut case = desk.register(t(MONDAY));
    desk.ok(&mut case, t(MONDAY), accept());
    desk.ok(&mut case, t(MONDAY) + days(5), reply(Opinion::Explain));
    desk.ok(&mut case, t(MONDAY) + days(6), CaseCommand::RequestReview);
    assert_eq!(case.status, Status::ReviewRequested);
    case
}

/// The review's id, then its decision, then the re-review's decision come back to the original:
/// `reviewed`, then `final`, each in the history with the deciding case's id.
#[test]
fn a_review_and_a_re_review_decide_the_original() {
    let county = Desk::new(COUNTY);
    let mut original = under_review(&county);
    let review = case_id(CITY, 4);
    let re_review = case_id("53", 9);
    let at = t(MONDAY) + days(7);

    let opened = CaseCommand::ReviewOpened {
        review: review.clone(),
        level: ReviewLevel::Review,
    };
    assert_eq!(
        names(&county.ok(&mut original, at, opened)),
        ["review_opened"]
    );
    assert_eq!(original.status, Status::ReviewRequested);
    assert_eq!(
        original.history.last().unwrap().detail["review"],
        review.to_string()
    );

    county.ok(
        &mut original,
        at + days(20),
        decided(&review, ReviewLevel::Review, false),
    );
    assert_eq!(original.status, Status::Reviewed);
    // Its re-review is asked of the review case, not of the original.
    assert_eq!(
        county.act(&mut original, at + days(21), CaseCommand::RequestReview),
        Err(DomainError::ReviewAlreadyRequested)
    );
    // Only the petitioner's evaluation window lapses: the original waits for the re-review.
    let lapsed = county.tick(&mut original, at + days(200));
    assert_eq!(names(&lapsed), ["evaluation_lapsed"]);
    assert_eq!(original.status, Status::Reviewed);

    let events = county.ok(
        &mut original,
        at + days(40),
        decided(&re_review, ReviewLevel::ReReview, false),
    );
    assert!(
        matches!(&events[..], [Event::ReviewDecided { is_final: true, level: ReviewLevel::ReReview, review, .. }] if *review == re_review),
        "a re-review's decision is final whatever the message says: {events:?}"
    );
    assert_eq!(original.status, Status::Final);
    assert_eq!(
        county.act(
            &mut original,
            at + days(41),
            decided(&re_review, ReviewLevel::ReReview, true)
        ),
        Err(DomainError::Final)
    );
    assert_eq!(original.verify_chain(), Ok(()));
}

/// A review decided and never re-reviewed makes the original final when its window lapses.
#[test]
fn a_review_whose_re_review_window_lapsed_makes_the_original_final() {
    let county = Desk::new(COUNTY);
    let mut original = under_review(&county);
    let review = case_id(CITY, 4);
    let at = t(MONDAY) + days(30);
    county.ok(
        &mut original,
        at,
        decided(&review, ReviewLevel::Review, false),
    );
    // The same review's decision again, not final: nothing to do.
    assert_eq!(
        code(county.act(
            &mut original,
            at,
            decided(&review, ReviewLevel::Review, false)
        )),
        "invalid_transition"
    );
    county.ok(
        &mut original,
        at + days(31),
        decided(&review, ReviewLevel::Review, true),
    );
    assert_eq!(original.status, Status::Final);
}

/// A re-review decision reaches the review case it re-reviews: final there too.
#[test]
fn a_re_review_decides_the_review_case() {
    let city = Desk::new(CITY);
    let registered = t("2026-04-20T09:00:00+08:00");
    let of = case_id(COUNTY, 123);
    let mut review = city.register_kind(registered, 4, CaseKind::Review { of });
    city.ok(&mut review, registered, accept());
    city.ok(
        &mut review,
        registered + days(10),
        reply(Opinion::NotSupport),
    );
    city.ok(
        &mut review,
        registered + days(11),
        CaseCommand::RequestReview,
    );
    let re_review = case_id("53", 9);
    // A review case is re-reviewed, not reviewed again.
    let wrong = CaseCommand::ReviewOpened {
        review: re_review.clone(),
        level: ReviewLevel::Review,
    };
    assert_eq!(
        code(city.act(&mut review, registered + days(12), wrong)),
        "field_invalid"
    );
    let opened = CaseCommand::ReviewOpened {
        review: re_review.clone(),
        level: ReviewLevel::ReReview,
    };
    city.ok(&mut review, registered + days(12), opened);
    city.ok(
        &mut review,
        registered + days(30),
        decided(&re_review, ReviewLevel::ReReview, true),
    );
    assert_eq!(review.status, Status::Final);
}

/// Review messages are refused where they do not fit: a case not under review, a case naming
/// itself, an officer sending them.
#[test]
fn review_messages_fit_only_a_case_under_review() {
    let county = Desk::new(COUNTY);
    let mut fresh = county.register(t(MONDAY));
    let review = case_id(CITY, 4);
    assert_eq!(
        code(county.act(
            &mut fresh,
            t(MONDAY),
            decided(&review, ReviewLevel::Review, false)
        )),
        "invalid_transition"
    );
    let opened = CaseCommand::ReviewOpened {
        review: review.clone(),
        level: ReviewLevel::Review,
    };
    assert_eq!(
        code(county.act(&mut fresh, t(MONDAY), opened)),
        "invalid_transition"
    );
    let mut original = under_review(&county);
    let itself = original.id.clone();
    assert_eq!(
        code(county.act(
            &mut original,
            t(MONDAY) + days(8),
            decided(&itself, ReviewLevel::Review, false)
        )),
        "field_invalid"
    );
    assert!(decided(&review, ReviewLevel::Review, false).is_federation_only());
}

/// A supervision order on a case goes with it: the receiver holds it, by the order's own due
/// date, and answers it; the sender's stub keeps none.
#[test]
fn a_supervision_order_follows_the_case_to_its_receiver() {
    let (township, county) = (Desk::new(TOWNSHIP), Desk::new(COUNTY));
    let mut case = township.register(t(MONDAY));
    let ordered = CaseCommand::Supervise {
        from: office(CITY),
        due_days: 10,
        text: "Report progress.".to_string(),
    };
    township.ok(&mut case, t(MONDAY) + days(1), ordered);
    let due = case.deadlines.supervision_by;
    assert!(due.is_some());
    township.ok(&mut case, t(MONDAY) + days(2), transfer(COUNTY));
    let mut received = county.receive(&case, t(MONDAY) + days(3));
    assert_eq!(
        received.supervision.as_ref().map(|s| s.from.clone()),
        Some(office(CITY))
    );
    assert_eq!(
        received.deadlines.supervision_by, due,
        "the order keeps its due date"
    );
    let events = county.ok(
        &mut received,
        t(MONDAY) + days(4),
        CaseCommand::AnswerSupervision {
            text: "In hand.".to_string(),
            officer: "Officer Zhao".to_string(),
        },
    );
    assert_eq!(names(&events), ["supervision_answered"]);
    assert_eq!(received.supervision, None);
    // The sender's copy, once the receiver acknowledged, is a stub without the order.
    township.ok(&mut case, t(MONDAY) + days(3), CaseCommand::HandoffAcked);
    assert_eq!(case.supervision, None);
}

/// An order that reached the sender after the case left is passed on: the receiver takes it
/// with its issuer and due date.
#[test]
fn an_order_passed_on_keeps_its_issuer_and_due_date() {
    let county = Desk::new(COUNTY);
    let mut case = county.register(t(MONDAY));
    let (ordered_at, due_by) = (t(MONDAY) + days(1), t(MONDAY) + days(11));
    let follow = CaseCommand::FollowOrder {
        from: office(CITY),
        text: "Report progress.".to_string(),
        ordered_at,
        due_by,
    };
    assert_eq!(
        names(&county.ok(&mut case, t(MONDAY) + days(2), follow)),
        ["supervision_followed"]
    );
    let order = case.supervision.clone().unwrap();
    assert_eq!(
        (order.from, order.ordered_at, order.due_by),
        (office(CITY), ordered_at, due_by)
    );
    // Its clock runs from when it was given: 50 % of 10 days is day 6.
    assert_eq!(
        case.clocks.supervision.map(|run| run.started_at),
        Some(ordered_at)
    );
    let backwards = CaseCommand::FollowOrder {
        from: office(CITY),
        text: "x".to_string(),
        ordered_at: due_by,
        due_by: ordered_at,
    };
    assert_eq!(
        code(county.act(&mut case, t(MONDAY) + days(2), backwards)),
        "field_invalid"
    );
}

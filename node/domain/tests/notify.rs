//! Which SMS notices a case change makes (`notify::notices`): filed, accepted and replied is
//! exactly three; handling notices come from an extension and from a handoff's receipt; no phone,
//! no notice.

mod common;

use common::*;
use liandong_domain::notify::{
    hotline_officer, hotline_ticket, message_id, notices, sms_text, Cause, Follow, Notice, Stage,
};
use liandong_domain::*;

/// The notices of `command` on `case` (a stored header), as the node computes them.
fn notices_of(desk: &Desk, case: &mut Case, now: Millis, command: CaseCommand) -> Vec<Notice> {
    let (header, _) = case.clone().into_header();
    let events = desk.ok(case, now, command);
    let mut after = header.clone();
    for event in &events {
        after.apply(event);
    }
    notices(Some(&header), &after, &events)
}

fn stages(notices: &[Notice]) -> Vec<(Stage, u32)> {
    notices.iter().map(|n| (n.stage, n.seq)).collect()
}

const FOLLOW: Follow<'static> = Follow {
    code: "12345678",
    public_url: Some("https://127.0.0.1:17103"),
};

#[test]
fn filed_accepted_replied_makes_exactly_three() {
    let desk = Desk::new(COUNTY);
    let now = t(MONDAY);
    let mut case = desk.register(now);
    let filed = notices(None, &case, &[]);
    assert_eq!(stages(&filed), vec![(Stage::Received, 0)]);
    let text = sms_text(
        Stage::Received,
        &case.id,
        &desk.office,
        &filed[0].cause,
        FOLLOW,
    );
    assert!(text.contains("查询码12345678"), "the code is told: {text}");
    let page = format!("https://127.0.0.1:17103/status/{}?code=12345678", case.id);
    assert!(text.contains(&page), "and the status page: {text}");
    let accepted = notices_of(&desk, &mut case, now + days(1), accept());
    assert_eq!(stages(&accepted), vec![(Stage::Accepted, 0)]);
    let Cause::Accepted { reply_by } = accepted[0].cause else {
        panic!("{accepted:?}")
    };
    assert_eq!(Some(reply_by), case.deadlines.reply_by);
    let replied = notices_of(&desk, &mut case, now + days(2), reply(Opinion::Explain));
    assert_eq!(stages(&replied), vec![(Stage::Result, 0)]);
    let text = sms_text(
        Stage::Result,
        &case.id,
        &desk.office,
        &replied[0].cause,
        FOLLOW,
    );
    assert!(
        text.contains(&case.id.to_string()) && text.contains("查看办理结果"),
        "{text}"
    );
    assert!(
        text.contains(&page),
        "the result links the page to evaluate on: {text}"
    );
    // Nothing else a handled case goes through makes one.
    let evaluated = notices_of(
        &desk,
        &mut case,
        now + days(3),
        evaluate(Satisfaction::Satisfied),
    );
    assert!(evaluated.is_empty(), "{evaluated:?}");
}

#[test]
fn an_extension_is_a_handling_notice_with_its_reason() {
    let desk = Desk::new(COUNTY);
    let now = t(MONDAY);
    let mut case = desk.register(now);
    desk.ok(&mut case, now, accept());
    let extended = notices_of(&desk, &mut case, now + days(5), extend(10, "site survey"));
    assert_eq!(
        stages(&extended),
        vec![(Stage::Handling, case.history_len())]
    );
    let text = sms_text(
        Stage::Handling,
        &case.id,
        &desk.office,
        &extended[0].cause,
        FOLLOW,
    );
    assert!(text.contains("site survey"), "{text}");
}

#[test]
fn a_received_handoff_is_a_handling_notice_at_the_receiver() {
    let county = Desk::new(COUNTY);
    let other = Desk::new(OTHER_COUNTY);
    let now = t(MONDAY);
    let mut case = county.register(now);
    let started = notices_of(&county, &mut case, now, transfer(OTHER_COUNTY));
    assert!(started.is_empty(), "the sender says nothing: {started:?}");
    let received = other.receive(&case, now + days(1));
    let made = notices(None, &received, &[]);
    assert_eq!(
        stages(&made),
        vec![(Stage::Handling, received.history_len())]
    );
    assert!(
        matches!(&made[0].cause, Cause::Handed { from, handoff } if from.as_str() == COUNTY && handoff == "transfer")
    );
    // The receiver's acceptance is its own `accepted` notice.
    let mut held = received.clone();
    let accepted = notices_of(&other, &mut held, now + days(2), accept());
    assert_eq!(stages(&accepted), vec![(Stage::Accepted, 0)]);
}

#[test]
fn a_decline_is_the_result_with_its_route() {
    let desk = Desk::new(COUNTY);
    let now = t(MONDAY);
    let mut case = desk.register(now);
    let declined = notices_of(
        &desk,
        &mut case,
        now,
        CaseCommand::Decline {
            route: DeclineRoute::Litigation,
            officer: "o".into(),
        },
    );
    assert_eq!(stages(&declined), vec![(Stage::Result, 0)]);
    let text = sms_text(
        Stage::Result,
        &case.id,
        &desk.office,
        &declined[0].cause,
        FOLLOW,
    );
    assert!(text.contains("诉讼"), "{text}");
}

#[test]
fn no_phone_no_notice() {
    let desk = Desk::new(COUNTY);
    let now = t(MONDAY);
    let mut case = desk.register(now);
    if let Some(petitioner) = case.petitioner.as_mut() {
        petitioner.phone = None;
    }
    assert!(notices(None, &case, &[]).is_empty());
    assert!(notices_of(&desk, &mut case, now, accept()).is_empty());
}

/// A case the 12345 hotline handed over makes one callback at its result, beside the SMS when
/// there is a phone and alone when there is none; an officer's own case makes none.
#[test]
fn a_hotline_case_calls_back_at_its_result_phone_or_not() {
    let desk = Desk::new(COUNTY);
    let now = t(MONDAY);
    for phone in [true, false] {
        let mut case = desk.register(now);
        case.first_officer = hotline_officer("HL-2026-000123");
        assert_eq!(hotline_ticket(&case), Some("HL-2026-000123"));
        if !phone {
            if let Some(petitioner) = case.petitioner.as_mut() {
                petitioner.phone = None;
            }
        }
        let accepted = notices_of(&desk, &mut case, now + days(1), accept());
        let replied = notices_of(&desk, &mut case, now + days(2), reply(Opinion::Support));
        if phone {
            assert_eq!(stages(&accepted), vec![(Stage::Accepted, 0)]);
            assert_eq!(
                stages(&replied),
                vec![(Stage::Result, 0), (Stage::Callback, 0)]
            );
        } else {
            assert!(accepted.is_empty(), "{accepted:?}");
            assert_eq!(stages(&replied), vec![(Stage::Callback, 0)]);
        }
        let callback = replied.last().unwrap();
        assert!(
            matches!(
                callback.cause,
                Cause::Replied {
                    opinion: Opinion::Support,
                    ..
                }
            ),
            "{callback:?}"
        );
        assert!(!callback.stage.is_sms());
    }
    let mut own = desk.register(now);
    assert_eq!(hotline_ticket(&own), None);
    notices_of(&desk, &mut own, now, accept());
    let replied = notices_of(&desk, &mut own, now + days(1), reply(Opinion::Support));
    assert!(replied.iter().all(|notice| notice.stage.is_sms()));
    own.first_officer = "hotline12345".into();
    assert_eq!(hotline_ticket(&own), None, "no ticket, no callback");
}

#[test]
fn message_ids_name_office_case_stage_and_seq() {
    let desk = Desk::new(COUNTY);
    let case = desk.register(t(MONDAY));
    assert_eq!(
        message_id(&desk.office, &case.id, Stage::Handling, 4),
        format!("{COUNTY}/{}/handling/4", case.id)
    );
}

//! Loops that close across levels, from the outside: seven offices (city, two counties, four
//! townships) on nine real host processes. A review's and a re-review's decisions come back to
//! the original case; a supervision order follows its case to the office it was transferred to,
//! which answers it, and the issuer sees the answer.

mod common;

use common::{verified, Fed};
use serde_json::Value;

fn seven_offices() -> Fed {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "2", "--replicas", "3"],
        9,
    );
    fed.ok(&["up"]);
    fed
}

fn show(fed: &Fed, office: &str, case_id: &str) -> Value {
    fed.at(office).json(&["case", "show", case_id])
}

/// Accepts and replies to a case held by `office`.
fn decide(fed: &Fed, office: &str, case_id: &str, opinion: &str, text: &str) {
    let officer = fed.at(office);
    officer.ok(&["case", "accept", case_id]);
    officer.ok(&[
        "case",
        "reply",
        case_id,
        "--opinion",
        opinion,
        "--text",
        text,
    ]);
}

/// A township case is reviewed by its county and re-reviewed by the city: `request-review`
/// names each new case, the original shows both decisions and ends final, and the review case
/// is not counted a repeat of the case it reviews.
#[test]
fn a_case_reviewed_and_re_reviewed_shows_both_decisions_on_the_original() {
    let fed = seven_offices();
    let original = common::file_case(&fed, "530602001", 11, "housing");
    decide(
        &fed,
        "530602001",
        &original,
        "explain",
        "the policy applies",
    );

    let requested = fed
        .at("530602001")
        .json(&["case", "request-review", &original]);
    let review = requested["review_case"]
        .as_str()
        .unwrap_or_else(|| panic!("request-review names the review case: {requested}"))
        .to_string();
    assert!(review.starts_with("530602-"), "{review}");
    let text = fed.at("530602001").ok(&["case", "show", &original]);
    assert!(
        text.contains(&format!("reviewed by case {review}")),
        "{text}"
    );

    let at_county = show(&fed, "530602", &review);
    assert_eq!(at_county["kind"]["of"], original.as_str(), "{at_county}");
    verified(&fed);
    let listed = fed
        .at("530602")
        .json(&["query", "--as", "530602", "--office", "530602"]);
    let listed_review = listed["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|case| case["case_id"] == review.as_str())
        .unwrap_or_else(|| panic!("the county lists its review case: {listed}"));
    assert!(
        listed_review["repeat_of"].is_null(),
        "a review case is not a repeat of its original: {listed}"
    );

    decide(
        &fed,
        "530602",
        &review,
        "not-support",
        "the township's reply stands",
    );
    verified(&fed);
    let reviewed = show(&fed, "530602001", &original);
    assert_eq!(reviewed["status"], "reviewed", "{reviewed}");
    let decisions = reviewed["review_decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 1, "{reviewed}");
    assert_decision(
        &decisions[0],
        (
            "review",
            &review,
            "not-support",
            "the township's reply stands",
            false,
        ),
    );

    let re_requested = fed.at("530602").json(&["case", "request-review", &review]);
    let re_review = re_requested["review_case"]
        .as_str()
        .unwrap_or_else(|| panic!("request-review names the re-review case: {re_requested}"))
        .to_string();
    assert!(re_review.starts_with("5306-"), "{re_review}");
    assert_eq!(
        show(&fed, "5306", &re_review)["kind"]["of"],
        review.as_str()
    );

    decide(
        &fed,
        "5306",
        &re_review,
        "support",
        "the petitioner is right",
    );
    verified(&fed);
    let closed = show(&fed, "530602001", &original);
    assert_eq!(closed["status"], "final", "{closed}");
    let decisions = closed["review_decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2, "{closed}");
    assert_decision(
        &decisions[1],
        (
            "re_review",
            &re_review,
            "support",
            "the petitioner is right",
            true,
        ),
    );
    assert_eq!(show(&fed, "530602", &review)["status"], "final");
    // Nothing can be asked of the original after the re-review.
    let refused = fed
        .at("530602001")
        .fails(&["case", "request-review", &original]);
    assert!(refused.contains("final"), "{refused}");
}

/// The city orders a township to report; the township then transfers the case to its sibling.
/// The order goes with the case: the receiver answers it, and the city sees the answer.
#[test]
fn a_supervision_order_issued_before_a_transfer_is_answered_by_the_receiver() {
    let fed = seven_offices();
    let none = fed.at("530621").ok(&["orders"]);
    assert!(
        none.contains("no supervision orders issued by 530621"),
        "{none}"
    );

    let id = common::file_case(&fed, "530602001", 12, "labour");
    verified(&fed);
    let order = fed.at("5306").json(&[
        "supervise",
        &id,
        "--due-days",
        "7",
        "--text",
        "report progress by Friday",
    ]);
    assert_eq!(order["to"], "530602001", "{order}");
    verified(&fed);
    fed.at("530602001")
        .ok(&["case", "transfer", &id, "--to", "530602002"]);
    verified(&fed);

    let received = show(&fed, "530602002", &id);
    assert_eq!(received["office"], "530602002", "{received}");
    assert_eq!(received["supervision"]["from"], "5306", "{received}");
    assert_eq!(
        received["supervision"]["text"], "report progress by Friday",
        "{received}"
    );
    fed.at("530602002").ok(&[
        "case",
        "answer-supervision",
        &id,
        "--text",
        "received from the township next door; visiting Thursday",
    ]);
    verified(&fed);

    let orders = fed.at("5306").json(&["orders"]);
    let answered = orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["case_id"] == id.as_str())
        .unwrap_or_else(|| panic!("the order is listed: {orders}"))
        .clone();
    assert_eq!(
        answered["answer"]["text"], "received from the township next door; visiting Thursday",
        "{orders}"
    );
    assert_eq!(answered["overdue"], false);
    let text = fed.at("5306").ok(&["orders"]);
    assert!(text.contains("answered by"), "{text}");
}

/// An order given while the case is on its way to another office (the receiver cut off) follows
/// it there once the link heals: the old holder passes it on, and the receiver answers it.
#[test]
fn an_order_given_while_the_case_moves_is_passed_on_to_the_receiver() {
    let fed = seven_offices();
    let id = common::file_case(&fed, "530602001", 13, "land");
    verified(&fed);
    fed.ok(&["drill", "partition", "--office", "530602002"]);
    fed.at("530602001")
        .ok(&["case", "transfer", &id, "--to", "530602002"]);
    let order = fed.at("5306").json(&[
        "supervise",
        &id,
        "--due-days",
        "7",
        "--text",
        "who holds this now?",
    ]);
    assert_eq!(order["to"], "530602001", "{order}");
    fed.ok(&["drill", "heal"]);
    verified(&fed);

    let received = show(&fed, "530602002", &id);
    assert_eq!(received["supervision"]["from"], "5306", "{received}");
    fed.at("530602002")
        .ok(&["case", "answer-supervision", &id, "--text", "we do"]);
    verified(&fed);
    let orders = fed.at("5306").json(&["orders"]);
    assert_eq!(orders["orders"][0]["answer"]["text"], "we do", "{orders}");
}

/// A decision as the original shows it: (level, review case, opinion, text, final).
fn assert_decision(decision: &serde_json::Value, expected: (&str, &str, &str, &str, bool)) {
    let (level, review_case, opinion, text, is_final) = expected;
    assert_eq!(decision["level"], level, "{decision}");
    assert_eq!(decision["review_case"], review_case, "{decision}");
    assert_eq!(decision["opinion"], opinion, "{decision}");
    assert_eq!(decision["text"], text, "{decision}");
    assert_eq!(decision["final"], is_final, "{decision}");
}

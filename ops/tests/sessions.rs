//! Joint video reception sessions (视频联动接访) from outside, on real hosts: a city schedules a
//! session with two counties and a township; the invitations travel down and the answers up,
//! through a county's partition in both directions; a petitioner books at the township, a case
//! registered in the session there is linked to it, and the recording's checksum is shown at the
//! host and at the township. Bad input is one clear error that changes nothing.

mod common;

use std::time::{Duration, Instant};

use common::{As, Fed};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The China-time date and HH:MM:SS of `ms` (Unix ms).
fn china(ms: i64) -> (String, String) {
    // `YYYY-MM-DDTHH:MM:SS[.mmm]+08:00`
    let text = liandong_domain::format_rfc3339(ms);
    (text[..10].to_string(), text[11..19].to_string())
}

fn now_ms() -> i64 {
    liandong_node::clock::wall_ms()
}

/// A session on `now`'s China date, from ten minutes before `now` (the day's start at the
/// earliest) to `lasting_ms` after it (a second before the day ends at the latest): its date,
/// start and end as `session schedule` takes them.
fn window_around(now: i64, lasting_ms: i64) -> (String, String, String) {
    let (date, _) = china(now);
    let day_start = liandong_domain::parse_rfc3339(&format!("{date}T00:00:00+08:00")).unwrap();
    let start = china((now - 600_000).max(day_start)).1;
    let end = china((now + lasting_ms).min(day_start + 86_399_000)).1;
    (date, start, end)
}

/// Polls `office`'s copy of `session` until `ready` holds (the message is delivered
/// asynchronously by the outbox pump); the copy.
fn wait_for(officer: &As<'_>, session: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let out = officer.run(&["session", "show", session, "--json"]);
        if out.status.success() {
            let record: Value = serde_json::from_slice(&out.stdout).unwrap();
            if ready(&record) {
                return record;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "never saw {what}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn part<'a>(record: &'a Value, office: &str) -> &'a Value {
    record["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|part| part["office"] == office)
        .unwrap_or_else(|| panic!("no part of {office} in {record}"))
}

fn answered(record: &Value, office: &str) -> bool {
    !part(record, office)["answer"].is_null()
}

#[test]
fn a_city_session_with_two_counties_and_a_township() {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "2", "--replicas", "3"],
        9,
    );
    fed.ok(&["up"]);
    let city = fed.at("5306");
    let county = fed.at("530602");
    let cut_county = fed.at("530621");
    let township = fed.at("530602001");

    // The session runs now (China time): from a little before to an hour and a half on, the
    // same day.
    let (date, start, end) = window_around(now_ms(), 5_400_000);

    // One county is cut off before the invitation is sent: it waits in the city's outbox.
    fed.ok(&["drill", "partition", "--office", "530621"]);
    let scheduled = city.json(&[
        "session",
        "schedule",
        "--date",
        &date,
        "--start",
        &start,
        "--end",
        &end,
        "--invite",
        "530602,530621,530602001",
        "--leader",
        "王市长",
        "--slots",
        "1",
    ]);
    let session = scheduled["id"].as_str().unwrap().to_string();
    assert_eq!(scheduled["host"], "5306");
    assert_eq!(scheduled["parts"].as_array().unwrap().len(), 4);

    // The invitations arrive below; the county cut off has none yet.
    wait_for(&county, &session, "the county's invitation", |_| true);
    wait_for(&township, &session, "the township's invitation", |_| true);
    let missing = cut_county.fails(&["session", "show", &session]);
    assert!(missing.contains("no session"), "{missing}");

    // The county and the township answer; the answers come back up.
    county.ok(&[
        "session",
        "answer",
        &session,
        "--accept",
        "--leader",
        "张县长",
    ]);
    township.ok(&[
        "session",
        "answer",
        &session,
        "--accept",
        "--leader",
        "赵镇长",
    ]);
    wait_for(&city, &session, "the answers at the city", |r| {
        answered(r, "530602") && answered(r, "530602001")
    });

    // After the heal the cut-off county has its invitation...
    fed.ok(&["drill", "heal"]);
    wait_for(
        &cut_county,
        &session,
        "the cut-off county's invitation",
        |_| true,
    );
    // ...and, cut off again, answers: its answer waits in its outbox until the next heal.
    fed.ok(&["drill", "partition", "--office", "530621"]);
    let own = cut_county.json(&[
        "session",
        "answer",
        &session,
        "--decline",
        "--leader",
        "李县长",
    ]);
    assert!(answered(&own, "530621"));
    std::thread::sleep(Duration::from_secs(2));
    let at_city = city.json(&["session", "show", &session]);
    assert!(!answered(&at_city, "530621"), "{at_city}");
    fed.ok(&["drill", "heal"]);
    let at_city = wait_for(&city, &session, "the cut-off county's answer", |r| {
        answered(r, "530621")
    });
    assert_eq!(part(&at_city, "530621")["answer"]["accept"], false);
    assert_eq!(part(&at_city, "530621")["answer"]["leader"], "李县长");
    assert_eq!(part(&at_city, "530602")["answer"]["leader"], "张县长");

    // A petitioner books the township's one slot; a second booking is refused, nothing changed.
    let id1 = common::id_number(1);
    let id2 = common::id_number(2);
    let booked = township.json(&[
        "session",
        "book",
        &session,
        "--petitioner-id",
        &id1,
        "--name",
        "陈七",
    ]);
    assert_eq!(part(&booked, "530602001")["booked"], 1);
    let full = township.fails(&[
        "session",
        "book",
        &session,
        "--petitioner-id",
        &id2,
        "--name",
        "王五",
    ]);
    assert!(full.contains("session_full"), "{full}");
    let after = township.json(&["session", "show", &session]);
    assert_eq!(part(&after, "530602001")["booked"], 1);
    // The first petitioner's booking retried: the same answer, still one booking.
    let again = township.json(&[
        "session",
        "book",
        &session,
        "--petitioner-id",
        &id1,
        "--name",
        "陈七",
    ]);
    assert_eq!(part(&again, "530602001")["booked"], 1, "{again}");
    // The county that declined takes no bookings.
    let declined = cut_county.fails(&[
        "session",
        "book",
        &session,
        "--petitioner-id",
        &id2,
        "--name",
        "王五",
    ]);
    assert!(declined.contains("declined"), "{declined}");

    // A case registered in the session at the township is linked to it.
    let case = township.json(&[
        "case",
        "file",
        "--office",
        "530602001",
        "--channel",
        "video",
        "--petitioner-id",
        &id1,
        "--name",
        "陈七",
        "--category",
        "land",
        "--summary",
        "Received by video in the joint session.",
        "--session",
        &session,
    ]);
    let case_id = case["case_id"].as_str().unwrap().to_string();
    let shown = township.json(&["case", "show", &case_id]);
    assert_eq!(shown["session"], session.as_str(), "{shown}");
    let text = township.ok(&["case", "show", &case_id]);
    assert!(text.contains(&session), "{text}");
    let at_township = township.json(&["session", "show", &session]);
    assert_eq!(
        part(&at_township, "530602001")["cases"][0],
        case_id.as_str()
    );
    wait_for(&city, &session, "the linked case at the city", |r| {
        part(r, "530602001")["cases"][0] == case_id.as_str()
    });
    // A case filed at the township while the session runs is linked without asking.
    let walk_in = common::file_case(&fed, "530602001", 3, "labour");
    let shown = township.json(&["case", "show", &walk_in]);
    assert_eq!(shown["session"], session.as_str(), "{shown}");
    let at_township = township.json(&["session", "show", &session]);
    assert_eq!(
        part(&at_township, "530602001")["cases"][1],
        walk_in.as_str()
    );

    // The recording: checksum and size computed from the file, shown at the host and, once the
    // record travels down, at the township.
    let media = fed.dir.join("session.mp4");
    let content: Vec<u8> = (0..100_000u32).map(|n| (n % 251) as u8).collect();
    std::fs::write(&media, &content).unwrap();
    let sha256 = hex::encode(Sha256::digest(&content));
    let recorded = city.json(&[
        "session",
        "recording",
        &session,
        "--file",
        media.to_str().unwrap(),
    ]);
    assert_eq!(recorded["recording"]["sha256"], sha256.as_str());
    assert_eq!(recorded["recording"]["bytes"], 100_000);
    let text = city.ok(&["session", "show", &session]);
    assert!(
        text.contains(&sha256) && text.contains("100000 bytes"),
        "{text}"
    );
    let below = wait_for(&township, &session, "the recording at the township", |r| {
        !r["recording"].is_null()
    });
    assert_eq!(below["recording"]["sha256"], sha256.as_str());
    let listed = county.ok(&["session", "list"]);
    assert!(listed.contains(&session), "{listed}");
    common::verified(&fed);
}

#[test]
fn bad_session_input_is_one_clear_error_that_changes_nothing() {
    let fed = common::small_federation();
    let city = fed.at("5306");
    let county = fed.at("530602");
    // A session that ends in a few seconds (a few seconds before the day ends at the latest).
    let (date, start, end) = window_around(now_ms(), 6_000);
    let short = city.json(&[
        "session",
        "schedule",
        "--date",
        &date,
        "--start",
        &start,
        "--end",
        &end,
        "--invite",
        "530602",
        "--leader",
        "王市长",
        "--slots",
        "5",
    ]);
    let session = short["id"].as_str().unwrap().to_string();

    // An unknown session.
    let unknown = city.fails(&["session", "show", "5306-S99"]);
    assert!(unknown.contains("no session"), "{unknown}");
    let unknown = county.fails(&[
        "session",
        "answer",
        "5306-S99",
        "--accept",
        "--leader",
        "张县长",
    ]);
    assert!(unknown.contains("session_unknown"), "{unknown}");
    // An invitation not sent to you: the host cannot answer its own, an office not invited
    // holds none.
    let host = city.fails(&["session", "answer", &session, "--accept", "--leader", "x"]);
    assert!(host.contains("host"), "{host}");
    let township = fed.at("530602001");
    let not_invited = township.fails(&["session", "answer", &session, "--accept", "--leader", "x"]);
    assert!(not_invited.contains("session_unknown"), "{not_invited}");
    // Inviting an office that is not below the host.
    let upward = county.fails(&[
        "session",
        "schedule",
        "--date",
        &date,
        "--start",
        &start,
        "--end",
        &end,
        "--invite",
        "5306",
        "--leader",
        "张县长",
    ]);
    assert!(upward.contains("not_descendant"), "{upward}");
    // A malformed time.
    let bad_time = city.fails(&[
        "session",
        "schedule",
        "--date",
        &date,
        "--start",
        "9am",
        "--end",
        &end,
        "--invite",
        "530602",
        "--leader",
        "王市长",
    ]);
    assert!(bad_time.contains("invalid time"), "{bad_time}");

    // A past session: booking refused, filing in it refused, nothing changed.
    let ends_at = short["ends_at"].as_i64().unwrap();
    while now_ms() <= ends_at + 1_000 {
        std::thread::sleep(Duration::from_millis(250));
    }
    let id = common::id_number(7);
    let past = city.fails(&[
        "session",
        "book",
        &session,
        "--petitioner-id",
        &id,
        "--name",
        "陈七",
    ]);
    assert!(past.contains("session_past"), "{past}");
    let before = fed.json(&["status"]);
    let filed = city.fails(&[
        "case",
        "file",
        "--office",
        "5306",
        "--channel",
        "video",
        "--petitioner-id",
        &id,
        "--name",
        "陈七",
        "--category",
        "land",
        "--summary",
        "late",
        "--session",
        &session,
    ]);
    assert!(filed.contains("session_past"), "{filed}");
    let after = city.json(&["session", "show", &session]);
    assert_eq!(part(&after, "5306")["booked"], 0);
    assert_eq!(part(&after, "5306")["cases"].as_array().unwrap().len(), 0);
    let cases = |status: &Value| {
        status["offices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["code"] == "5306")
            .and_then(|o| o["replicas"].as_array())
            .and_then(|r| r.iter().filter_map(|r| r["cases"].as_u64()).max())
    };
    assert_eq!(cases(&before), cases(&fed.json(&["status"])));
}

/// A session write sent again with its request id (a client retrying after a lost answer) is
/// answered as the first time and applied once: one session scheduled, one slot booked; the id
/// for another command, or an over-long one, is refused.
#[test]
fn a_session_write_retried_with_its_request_id_is_applied_once() {
    let fed = common::small_federation();
    let city = fed.at("5306");
    let county = fed.at("530602");
    let (date, start, end) = window_around(now_ms(), 5_400_000);
    let schedule = |request_id: &str| {
        city.json(&[
            "session",
            "schedule",
            "--date",
            &date,
            "--start",
            &start,
            "--end",
            &end,
            "--invite",
            "530602",
            "--leader",
            "王市长",
            "--slots",
            "5",
            "--request-id",
            request_id,
        ])
    };
    let first = schedule("rid-schedule");
    let again = schedule("rid-schedule");
    assert_eq!(first, again, "the first answer, again");
    let listed = city.json(&["session", "list"]);
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1, "{listed}");
    let session = first["id"].as_str().unwrap().to_string();
    wait_for(&county, &session, "the county's invitation", |_| true);
    county.ok(&[
        "session",
        "answer",
        &session,
        "--accept",
        "--leader",
        "张县长",
    ]);

    let book = |n: u64, request_id: &str| {
        county.json(&[
            "session",
            "book",
            &session,
            "--petitioner-id",
            &common::id_number(n),
            "--name",
            "陈七",
            "--request-id",
            request_id,
        ])
    };
    let booked = book(1, "rid-book");
    assert_eq!(part(&booked, "530602")["booked"], 1);
    book(2, "rid-book-2");
    // The first booking retried: its first answer (one booked then), no third slot taken.
    let retried = book(1, "rid-book");
    assert_eq!(retried, booked, "the first answer, again");
    let shown = county.json(&["session", "show", &session]);
    assert_eq!(part(&shown, "530602")["booked"], 2, "{shown}");

    // The id for another command, an over-long id: refused, nothing changed.
    let reused = county.fails(&[
        "session",
        "answer",
        &session,
        "--decline",
        "--leader",
        "张县长",
        "--request-id",
        "rid-book",
    ]);
    assert!(reused.contains("request_id_reused"), "{reused}");
    let long = "x".repeat(65);
    let refused = county.fails(&[
        "session",
        "book",
        &session,
        "--petitioner-id",
        &common::id_number(3),
        "--name",
        "王五",
        "--request-id",
        &long,
    ]);
    assert!(refused.contains("request id"), "{refused}");
    let shown = county.json(&["session", "show", &session]);
    assert_eq!(part(&shown, "530602")["booked"], 2, "{shown}");
    assert_eq!(part(&shown, "530602")["answer"]["accept"], true, "{shown}");
}

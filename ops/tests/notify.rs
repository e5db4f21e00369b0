//! SMS to the petitioner from the outside: a federation initialised with `--sms-gateway
//! file:PATH`, real hosts, the file gateway's lines. A filed, accepted and replied case makes
//! exactly three messages (received, accepted, result), also when the office's leader is
//! SIGKILLed between the steps and when a leader dies right after the gateway took a message
//! and before its sending was committed (the drill hook `DIR/run/crash-after-sms`). The webhook
//! gateway retries a message its platform refused, with the same `OutId`. A transferred case is
//! told by the office that holds it.

mod common;

use std::path::{Path, PathBuf};

use common::{id_number, wait_until, Fed};
use serde_json::Value;

const OFFICE: &str = "5306";
const PHONE: &str = "13912345678";

/// One office (three replicas on three hosts) sending through a file gateway at `path`.
fn office_with_file_gateway(path: &Path) -> Fed {
    office_with_gateway(&format!("file:{}", path.display()))
}

/// One office (three replicas on three hosts) sending through `gateway`, up.
fn office_with_gateway(gateway: &str) -> Fed {
    let fed = Fed::init(
        &[
            "--region",
            "5306",
            "--max-children",
            "0",
            "--replicas",
            "3",
            "--sms-gateway",
            gateway,
        ],
        3,
    );
    fed.ok(&["up"]);
    fed
}

fn file_with_phone(fed: &Fed, n: u64) -> String {
    let case = fed.at(OFFICE).json(&[
        "case",
        "file",
        "--office",
        OFFICE,
        "--channel",
        "online",
        "--petitioner-id",
        &id_number(n),
        "--name",
        "王五",
        "--category",
        "housing",
        "--summary",
        &format!("petition {n}"),
        "--phone",
        PHONE,
    ]);
    case["case_id"].as_str().unwrap().to_string()
}

/// The file gateway's messages about `case_id`, in file order.
fn messages(path: &Path, case_id: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("every line is one JSON message"))
        .filter(|message| message["case_id"] == case_id)
        .collect()
}

fn stages(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["stage"].as_str().unwrap().to_string())
        .collect()
}

/// The office's SMS figures as `status --json` shows them (Null while no leader answers).
fn sms_status(fed: &Fed) -> Value {
    let out = fed.run(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    status["offices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["code"] == OFFICE)
        .map(|o| o["sms"].clone())
        .unwrap_or(Value::Null)
}

/// Every notice made has been sent and its sending committed: nothing more can be sent.
fn drained(fed: &Fed, sent: u64) -> bool {
    let sms = sms_status(fed);
    sms["pending"] == 0 && sms["sent"] == sent
}

fn sms_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sms.jsonl");
    (dir, path)
}

/// Issue 13's acceptance: filed, accepted, replied → exactly three SMS through the file
/// adapter, each naming the case, the stage and the phone; `status` shows the gateway and the
/// figures; a malformed number is refused at intake and sends nothing.
#[test]
fn a_filed_accepted_replied_case_gets_exactly_three_sms() {
    let (_dir, path) = sms_path();
    let fed = office_with_file_gateway(&path);
    let officer = fed.at(OFFICE);
    let case_id = file_with_phone(&fed, 1);
    officer.ok(&["case", "accept", &case_id]);
    officer.ok(&[
        "case",
        "reply",
        &case_id,
        "--opinion",
        "explain",
        "--text",
        "explained",
    ]);
    wait_until(&fed, "three SMS sent and committed", || drained(&fed, 3));
    let sent = messages(&path, &case_id);
    assert_eq!(
        stages(&sent),
        ["received", "accepted", "result"],
        "{sent:?}"
    );
    for message in &sent {
        assert_eq!(message["phone"], PHONE);
        assert_eq!(message["office"], OFFICE);
        assert!(
            message["text"].as_str().unwrap().contains(&case_id),
            "{message}"
        );
        assert!(message["sent_at_ms"].as_i64().unwrap() > 0);
    }
    let ids: std::collections::BTreeSet<&str> =
        sent.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert!(sent[2]["text"].as_str().unwrap().contains("查看办理结果"));
    // The registration message tells the verification code `case show` gives the officer, and
    // the result message links the petitioner's status page (on the sending leader's host).
    let shown = officer.json(&["case", "show", &case_id]);
    let code = shown["verification_code"]
        .as_str()
        .expect("a verification code");
    let page = format!("/status/{case_id}?code={code}");
    assert!(
        sent[0]["text"].as_str().unwrap().contains(code),
        "{}",
        sent[0]
    );
    assert!(
        sent[2]["text"].as_str().unwrap().contains(&page),
        "{}",
        sent[2]
    );

    let status = fed.json(&["status"]);
    assert_eq!(
        status["sms"]["gateway"],
        format!("file:{}", path.display()),
        "{}",
        status["sms"]
    );
    assert_eq!(status["sms"]["sent"], 3);
    assert_eq!(status["sms"]["pending"], 0);
    let text = fed.ok(&["status"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("sms: gateway file:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("0 pending, 3 sent"), "{line}");
    assert!(
        !text.contains(PHONE) && !status.to_string().contains(PHONE),
        "the phone stays out of status"
    );

    // A malformed number: one clear error, no case, no message.
    let refused = officer.fails(&[
        "case",
        "file",
        "--office",
        OFFICE,
        "--channel",
        "visit",
        "--petitioner-id",
        &id_number(2),
        "--name",
        "王五",
        "--category",
        "housing",
        "--summary",
        "s",
        "--phone",
        "139-1234",
    ]);
    assert!(refused.contains("phone"), "{refused}");
    assert_eq!(fed.json(&["status"])["sms"]["pending"], 0);
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert_eq!(lines, 3);
}

/// The same three SMS when the office's leader is SIGKILLed right after the acceptance, and
/// when the next leader aborts right after the gateway took the result message and before its
/// sending was committed: the leader after it sends the message again, with the same id, and
/// the file gateway takes no repeat.
#[test]
fn exactly_three_sms_across_leader_crashes() {
    let (_dir, path) = sms_path();
    let fed = office_with_file_gateway(&path);
    let officer = fed.at(OFFICE);
    let case_id = file_with_phone(&fed, 3);
    wait_until(&fed, "the received SMS", || {
        !messages(&path, &case_id).is_empty()
    });

    officer.ok(&["case", "accept", &case_id]);
    fed.json(&["drill", "kill", "--office", OFFICE, "--leader"]);
    wait_until(&fed, "the accepted SMS, from whichever leader", || {
        messages(&path, &case_id).len() >= 2 && drained(&fed, 2)
    });
    fed.ok(&["drill", "restart", "--office", OFFICE]);

    // The next message sent aborts its sender between the gateway and the commit.
    let marker = fed.dir().join("run").join("crash-after-sms");
    std::fs::write(&marker, b"").unwrap();
    officer.ok(&[
        "case",
        "reply",
        &case_id,
        "--opinion",
        "support",
        "--text",
        "granted",
    ]);
    let fired = fed.dir().join("run").join("crash-after-sms.fired");
    wait_until(&fed, "a leader aborted after sending", || fired.exists());
    // The host that took the file aborted (it stays down until restarted below).
    wait_until(&fed, "the aborted host to be seen down", || {
        fed.json(&["status"])["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|host| host["alive"] == false)
    });
    assert!(
        fed.logs_tail()
            .contains("drill: aborting after the SMS gateway took a message"),
        "{}",
        fed.logs_tail()
    );
    wait_until(&fed, "the result SMS sent again and committed", || {
        drained(&fed, 3)
    });
    let sent = messages(&path, &case_id);
    assert_eq!(
        stages(&sent),
        ["received", "accepted", "result"],
        "{sent:?}"
    );
    let status = sms_status(&fed);
    assert_eq!(status["sent"], 3, "{status}");
    assert_eq!(status["dropped"], 0, "{status}");

    // The aborted host comes back and catches up; the replicas agree.
    fed.ok(&["drill", "restart", "--office", OFFICE]);
    common::verified(&fed);
    assert_eq!(messages(&path, &case_id).len(), 3);
}

/// Serves `answers.len()` HTTP requests on `listener`, one per connection, answering each with
/// the next status line; returns the bodies it received.
fn sms_platform(
    listener: std::net::TcpListener,
    answers: Vec<&'static str>,
) -> std::thread::JoinHandle<Vec<Value>> {
    use std::io::{BufRead, BufReader, Read, Write};
    std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for status in answers {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            bodies.push(serde_json::from_slice(&body).unwrap());
            let reply =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            reader.get_mut().write_all(reply.as_bytes()).unwrap();
        }
        bodies
    })
}

/// The webhook gateway: the platform's shape, a refusal counted as a failed attempt (shown in
/// `status` with its reason, never the phone) and retried with the same `OutId` until the
/// platform takes it.
#[test]
fn the_webhook_retries_a_refused_message_with_the_same_out_id() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("webhook:http://{}/sms/send", listener.local_addr().unwrap());
    let platform = sms_platform(listener, vec!["503 Service Unavailable", "200 OK"]);
    let fed = office_with_gateway(&url);
    let case_id = file_with_phone(&fed, 4);
    wait_until(&fed, "the message taken on the second attempt", || {
        drained(&fed, 1)
    });
    let bodies = platform.join().unwrap();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0], bodies[1], "the retry is the same message");
    assert_eq!(bodies[0]["PhoneNumbers"], PHONE);
    assert_eq!(bodies[0]["TemplateCode"], "LIANDONG_RECEIVED");
    assert_eq!(bodies[0]["TemplateParam"]["case_id"], case_id.as_str());
    assert_eq!(
        bodies[0]["OutId"],
        format!("{OFFICE}/{case_id}/received/0").as_str()
    );
    let status = fed.json(&["status"]);
    let sms = &status["sms"];
    assert_eq!(sms["gateway"], url.as_str());
    assert!(sms["failed_attempts"].as_u64().unwrap() >= 1, "{sms}");
    assert!(sms["last_error"].as_str().unwrap().contains("503"), "{sms}");
    assert!(
        !status.to_string().contains(PHONE),
        "the phone stays out of status"
    );
}

/// Across offices: a case filed at a township and transferred to its county gets its
/// `received` from the township, then from the county (which now holds the phone, sealed under
/// its own key) a `handling` message for the transfer, its `accepted`, and a `handling` message
/// for an extension with its reason.
#[test]
fn a_transferred_case_is_told_by_the_office_that_holds_it() {
    let (_dir, path) = sms_path();
    let gateway = format!("file:{}", path.display());
    let fed = Fed::init(
        &[
            "--region",
            "5306",
            "--max-children",
            "1",
            "--replicas",
            "3",
            "--sms-gateway",
            &gateway,
        ],
        9,
    );
    fed.ok(&["up"]);
    let (township, county) = ("530602001", "530602");
    let case = fed.at(township).json(&[
        "case",
        "file",
        "--office",
        township,
        "--channel",
        "visit",
        "--petitioner-id",
        &id_number(5),
        "--name",
        "王五",
        "--category",
        "land",
        "--summary",
        "boundary",
        "--phone",
        PHONE,
    ]);
    let case_id = case["case_id"].as_str().unwrap().to_string();
    wait_until(&fed, "the received SMS", || {
        !messages(&path, &case_id).is_empty()
    });
    fed.at(township)
        .ok(&["case", "transfer", &case_id, "--to", county]);
    wait_until(&fed, "the transfer's SMS from the county", || {
        messages(&path, &case_id).len() >= 2
    });
    fed.at(county).ok(&["case", "accept", &case_id]);
    fed.at(county).ok(&[
        "case",
        "extend",
        &case_id,
        "--days",
        "10",
        "--reason",
        "site survey",
    ]);
    wait_until(&fed, "four SMS", || messages(&path, &case_id).len() >= 4);
    wait_until(&fed, "every office drained", || {
        let status = fed.json(&["status"]);
        status["sms"]["pending"] == 0 && status["sms"]["sent"] == 4
    });
    let sent = messages(&path, &case_id);
    let seen: Vec<(String, String)> = sent
        .iter()
        .map(|m| {
            (
                m["office"].as_str().unwrap().to_string(),
                m["stage"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        (township, "received"),
        (county, "handling"),
        (county, "accepted"),
        (county, "handling"),
    ]
    .map(|(office, stage)| (office.to_string(), stage.to_string()));
    assert_eq!(seen, expected, "{sent:?}");
    assert!(sent.iter().all(|m| m["phone"] == PHONE));
    assert!(
        sent[1]["text"].as_str().unwrap().contains("转送"),
        "{}",
        sent[1]
    );
    assert!(
        sent[3]["text"].as_str().unwrap().contains("site survey"),
        "{}",
        sent[3]
    );
}

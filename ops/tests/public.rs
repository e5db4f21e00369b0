//! The public surface from outside: an unmodified Open311 GeoReport v2 client from PyPI
//! (`three` 0.8.0, installed into a fresh virtual environment) lists the services, files a
//! petition and reads it back, and a second one (`georeport` 0.3.1, which only reads) reads the
//! same request; the petitioner's status page shows the same; a wrong code and an unknown case get one answer; bad filings are refused in Open311's
//! error format and file nothing; a transferred case is followed; a 12345 hotline ticket is
//! routed to the office of its location and filed once, and its result is posted back to the
//! hotline platform once (the file callback; no SMS gateway, so the SMS wait). Real hosts, real HTTPS (the
//! federation's CA), real Python.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{id_number, small_federation, verified, Fed};
use serde_json::Value;

const TOWNSHIP: &str = "530602001";

/// The Open311 clients the tests run, as published on PyPI.
const CLIENTS: [&str; 2] = ["three==0.8.0", "georeport==0.3.1"];

/// A virtual environment under `dir` with the [`CLIENTS`] (and their `requests`); fails with a
/// clear message when pip cannot reach the package index.
fn venv_with_clients(dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("python3 is needed to run an Open311 client");
    assert!(
        made.status.success(),
        "python3 -m venv failed (install python3-venv): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(CLIENTS)
        .output()
        .expect("running pip");
    assert!(
        pip.status.success(),
        "pip could not install {CLIENTS:?} (this test needs the Python package index): {}",
        String::from_utf8_lossy(&pip.stderr)
    );
    venv.join("bin/python")
}

/// Runs a Python script in the venv with the federation's CA trusted; its stdout as JSON.
fn python(fed: &Fed, python: &Path, script: &str, args: &[&str]) -> Value {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .env("REQUESTS_CA_BUNDLE", fed.dir.join("pki/ca.pem"))
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "python failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        fed.logs_tail()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The clients' part: `three` lists the services, files the petition (`POST requests.json`) and
/// reads it back, by its id and in a list; `georeport` reads the same request. Both run as
/// published. `three` 0.8 was written for Python 2: its import needs `itertools.ifilter`,
/// which Python 3 calls `filter`, and nothing else of Python 2 on these calls; the script gives
/// that one name back before importing it (no Python 2 runs on Debian 12).
const CLIENT: &str = r#"
import itertools, json, sys
itertools.ifilter = filter
import three
from georeport import GeoReport

root, jurisdiction, id_number = sys.argv[1], sys.argv[2], sys.argv[3]
client = three.Three(root, jurisdiction=jurisdiction)
services = client.services()
created = client.post("housing", name="三 张", phone="13800000000",
                      description="the roof leaks", address="昭阳区 1 号",
                      **{"attribute[id_number]": id_number})[0]
status = client.post_response.status_code
one = client.request(created["service_request_id"])[0]
listed = client.requests(service_request_id=created["service_request_id"])
read = GeoReport(root, jurisdiction=jurisdiction).get_service_request(
    created["service_request_id"])
print(json.dumps({"services": services, "status": status, "created": created,
                  "one": one, "listed": listed, "read": read}))
"#;

/// One HTTP call: method, URL, form fields (JSON object); status and body.
const CALL: &str = r#"
import json, sys
import requests
method, url, form = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
r = requests.request(method, url, data=form or None)
print(json.dumps({"status": r.status_code, "type": r.headers.get("content-type", ""),
                  "body": r.text}))
"#;

fn call(fed: &Fed, py: &Path, method: &str, url: &str, form: Value) -> (u64, String) {
    let out = python(fed, py, CALL, &[method, url, &form.to_string()]);
    (
        out["status"].as_u64().unwrap(),
        out["body"].as_str().unwrap().to_string(),
    )
}

/// The petitioner's status page of `case_id` at `base` as an IVR reads it: (HTTP status, body).
fn status_text(fed: &Fed, py: &Path, base: &str, case_id: &str, code: &str) -> (u64, String) {
    let url = format!("{base}/status/{case_id}?code={code}&format=text");
    call(fed, py, "GET", &url, Value::Null)
}

/// The public address of a host carrying the township, from `status --json`.
fn township_url(fed: &Fed) -> String {
    let status = fed.json(&["status"]);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fed.dir.join("manifest.json")).unwrap())
            .unwrap();
    let carrier = manifest["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| {
            h["offices"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == TOWNSHIP)
        })
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let host = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == carrier.as_str())
        .unwrap();
    host["http_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no http_url in status: {host}"))
        .to_string()
}

#[test]
fn an_open311_client_files_and_follows_a_petition_and_the_status_page_shows_the_same() {
    let temp = tempfile::tempdir().unwrap();
    let py = venv_with_clients(temp.path());
    let fed = small_federation();
    let base = township_url(&fed);
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let root = format!("{base}/open311/v2");
    let id = id_number(311_001);

    let out = python(&fed, &py, CLIENT, &[&root, TOWNSHIP, &id]);
    let services = out["services"].as_array().unwrap();
    assert!(
        services.iter().any(|s| s["service_code"] == "housing"),
        "{out}"
    );
    assert_eq!(out["status"], 200, "{out}");
    let created = &out["created"];
    let request_id = created["service_request_id"].as_str().unwrap();
    let case_id = created["case_id"].as_str().unwrap().to_string();
    let code = created["verification_code"].as_str().unwrap().to_string();
    assert!(case_id.starts_with("530602001-"), "{created}");
    assert_eq!(request_id, format!("{case_id}-{code}"));
    assert!(code.len() >= 6 && code.bytes().all(|b| b.is_ascii_digit()));
    // Read back through the client: the same request, open, at the township; the other client
    // reads the same.
    let one = &out["one"];
    assert_eq!(out["read"], *one, "{out}");
    assert_eq!(one["service_request_id"], request_id, "{one}");
    assert_eq!(one["status"], "open");
    assert_eq!(one["service_code"], "housing");
    assert!(one["requested_datetime"]
        .as_str()
        .unwrap()
        .ends_with("+08:00"));
    assert_eq!(out["listed"][0]["service_request_id"], request_id);
    let township = fed.at(TOWNSHIP);
    let shown = township.json(&["case", "show", &case_id]);
    assert!(!one["agency_responsible"].as_str().unwrap().is_empty());
    assert_eq!(
        created["status_url"].as_str().unwrap(),
        format!("{base}/status/{case_id}?code={code}")
    );
    assert_eq!(shown["status"], "registered");
    assert_eq!(shown["channel"], "online");
    assert_eq!(shown["category"], "housing");
    assert_eq!(shown["petitioner"]["name"], "张三");
    assert_eq!(shown["petitioner"]["id_number"], id.as_str());
    // `address_string` is the petitioner's address, sealed like the name: shown to the office's
    // officers, never in the summary, the Open311 answers or the petitioner's page.
    assert_eq!(shown["petitioner"]["address"], "昭阳区 1 号", "{shown}");
    assert_eq!(shown["summary"], "the roof leaks");
    assert!(!out.to_string().contains("昭阳区"), "{out}");

    // The petitioner's page shows the same status, as plain text for an IVR and as HTML.
    let page = format!("{base}/status/{case_id}?code={code}");
    let (status, text) = call(
        &fed,
        &py,
        "GET",
        &format!("{page}&format=text"),
        Value::Null,
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(&format!("Case {case_id}")), "{text}");
    assert!(text.contains("Status: registered"), "{text}");
    let (status, html) = call(&fed, &py, "GET", &page, Value::Null);
    assert_eq!(status, 200);
    assert!(html.contains("<html"), "{html}");
    assert!(
        !text.contains("昭阳区") && !html.contains("昭阳区"),
        "{text}"
    );

    // A wrong code and an unknown case get the same answer.
    let wrong_code = if code.starts_with('0') { "1" } else { "0" };
    let wrong = format!("{wrong_code}{}", &code[1..]);
    let (s1, wrong_body) = status_text(&fed, &py, &base, &case_id, &wrong);
    let unknown_case = format!("{TOWNSHIP}-2026-999999");
    let (s2, unknown_body) = status_text(&fed, &py, &base, &unknown_case, &code);
    assert_eq!((s1, &wrong_body), (s2, &unknown_body));
    assert_eq!(s1, 404);
    assert!(!wrong_body.contains(&case_id));
    let (s1, open311_wrong) = call(
        &fed,
        &py,
        "GET",
        &format!("{root}/requests/{case_id}-{wrong}.json"),
        Value::Null,
    );
    let (s2, open311_unknown) = call(
        &fed,
        &py,
        "GET",
        &format!("{root}/requests/{unknown_case}-{code}.json"),
        Value::Null,
    );
    assert_eq!((s1, &open311_wrong), (s2, &open311_unknown));
    assert_eq!(s1, 404);

    // The office accepts and replies: the client sees it closed with the reply, the page too.
    township.ok(&["case", "accept", &case_id]);
    let (_, text) = call(
        &fed,
        &py,
        "GET",
        &format!("{page}&format=text"),
        Value::Null,
    );
    assert!(text.contains("Status: accepted"), "{text}");
    township.ok(&[
        "case",
        "reply",
        &case_id,
        "--opinion",
        "support",
        "--text",
        "the roof is repaired",
    ]);
    let (_, text) = call(
        &fed,
        &py,
        "GET",
        &format!("{page}&format=text"),
        Value::Null,
    );
    assert!(text.contains("Status: replied"), "{text}");
    assert!(text.contains("Reply: the roof is repaired"), "{text}");
    let (status, body) = call(
        &fed,
        &py,
        "GET",
        &format!("{root}/requests/{request_id}.json"),
        Value::Null,
    );
    assert_eq!(status, 200);
    let request: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(request[0]["status"], "closed", "{request}");
    assert!(request[0]["status_notes"]
        .as_str()
        .unwrap()
        .contains("the roof is repaired"));

    // The petitioner's evaluation through the page's form (the link the result SMS carries).
    let (status, body) = call(
        &fed,
        &py,
        "POST",
        &format!("{base}/status/{case_id}/evaluate"),
        serde_json::json!({"code": wrong, "satisfaction": "satisfied", "format": "text"}),
    );
    assert_eq!((status, body.as_str()), (404, unknown_body.as_str()));
    let (status, body) = call(
        &fed,
        &py,
        "POST",
        &format!("{base}/status/{case_id}/evaluate"),
        serde_json::json!({"code": code, "satisfaction": "satisfied", "format": "text"}),
    );
    assert_eq!(status, 200, "{body}");
    let shown = township.json(&["case", "show", &case_id]);
    assert_eq!(shown["status"], "evaluated", "{shown}");
    assert_eq!(shown["satisfaction"], "satisfied");
    verified(&fed);
}

#[test]
fn bad_filings_file_nothing_moved_cases_are_followed_and_hotline_tickets_route_once() {
    let temp = tempfile::tempdir().unwrap();
    let py = venv_with_clients(temp.path());
    let callbacks = temp.path().join("hotline-callbacks.jsonl");
    let spec = format!("file:{}", callbacks.display());
    let fed = Fed::init(
        &[
            "--region",
            "5306",
            "--max-children",
            "1",
            "--replicas",
            "3",
            "--hotline-callback",
            &spec,
        ],
        9,
    );
    fed.ok(&["up"]);
    let base = township_url(&fed);
    let requests = format!("{base}/open311/v2/requests.json");
    let id = id_number(311_002);
    let form = |service: &str| {
        serde_json::json!({
            "jurisdiction_id": TOWNSHIP,
            "service_code": service,
            "description": "the well is dry",
            "last_name": "李四",
            "attribute[id_number]": id,
        })
    };

    // An officer files the township's first case; `case file` tells the verification code.
    let township = fed.at(TOWNSHIP);
    let filed = township.json(&[
        "case",
        "file",
        "--office",
        TOWNSHIP,
        "--channel",
        "visit",
        "--petitioner-id",
        &id_number(311_003),
        "--name",
        "王五",
        "--category",
        "land",
        "--summary",
        "a boundary",
    ]);
    let first = filed["case_id"].as_str().unwrap().to_string();
    assert!(first.ends_with("-000001"), "{filed}");
    let code = filed["verification_code"].as_str().unwrap();
    assert_eq!(
        filed["status_url"].as_str().unwrap(),
        format!("{base}/status/{first}?code={code}")
    );
    let (status, text) = status_text(&fed, &py, &base, &first, code);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Status: registered"), "{text}");

    // An unknown service code, and missing fields: 400, Open311's error array.
    let (status, body) = call(&fed, &py, "POST", &requests, form("potholes"));
    assert_eq!(status, 400, "{body}");
    let errors: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(errors[0]["code"], 400, "{errors}");
    assert!(errors[0]["description"]
        .as_str()
        .unwrap()
        .contains("potholes"));
    let (status, body) = call(
        &fed,
        &py,
        "POST",
        &requests,
        serde_json::json!({"service_code": "land"}),
    );
    assert_eq!(status, 400, "{body}");
    let errors: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(errors.as_array().unwrap().len(), 3, "{errors}");
    // A malformed ID number, and an office outside the federation.
    let mut bad_id = form("land");
    bad_id["attribute[id_number]"] = Value::String("530602198001010013".into());
    let (status, body) = call(&fed, &py, "POST", &requests, bad_id);
    assert_eq!(status, 400, "{body}");
    let mut elsewhere = form("land");
    elsewhere["jurisdiction_id"] = Value::String("530699".into());
    let (status, body) = call(&fed, &py, "POST", &requests, elsewhere);
    assert_eq!(status, 400, "{body}");

    // Nothing was filed: the next filing is the township's second case, and a retry of it
    // (the same form again) is the same case.
    let (status, body) = call(&fed, &py, "POST", &requests, form("land"));
    assert_eq!(status, 200, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let second = created[0]["case_id"].as_str().unwrap();
    assert_eq!(
        second,
        first.replace("-000001", "-000002"),
        "a refused filing filed something: {created}"
    );
    let (status, body) = call(&fed, &py, "POST", &requests, form("land"));
    assert_eq!(status, 200, "{body}");
    let retried: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(retried[0]["case_id"], second, "{retried}");
    township.fails(&["case", "show", &first.replace("-000001", "-000003")]);

    // A case transferred to the county: the township's page points there, where the same code
    // shows it.
    township.ok(&["case", "transfer", &first, "--to", "530602"]);
    verified(&fed);
    let (status, text) = status_text(&fed, &py, &base, &first, code);
    assert_eq!(status, 200, "{text}");
    // This host carries the county too: it follows the stub there.
    assert!(text.contains("Office: 530602 "), "{text}");
    assert!(text.contains("Status: registered"), "{text}");
    // The city's hosts carry neither: they point to the county.
    let city_url = fed.json(&["status"])["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"].as_str().unwrap().starts_with("h5306-"))
        .unwrap()["http_url"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, text) = status_text(&fed, &py, &city_url, &first, code);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("is held by office 530602001"), "{text}");
    let pointed = text
        .split_whitespace()
        .find(|word| word.starts_with("(https://"))
        .map(|word| word.trim_matches(|c| c == '(' || c == ')').to_string())
        .unwrap_or_else(|| panic!("no address in {text}"));
    let (status, text) = call(
        &fed,
        &py,
        "GET",
        &format!("{pointed}?code={code}&format=text"),
        Value::Null,
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Office: 530602 "), "{text}");
    assert!(text.contains("Status: registered"), "{text}");

    // The 12345 hotline posts a ticket to a city host: it is routed to the township of its
    // location (redirected to a host carrying it) and filed there on the phone channel, once.
    let ticket = serde_json::json!({
        "ticket_id": "HL-2026-000123",
        "location": TOWNSHIP,
        "category": "labour",
        "summary": "wages unpaid since May",
        "name": "赵六",
        "id_number": id_number(311_004),
        "phone": "13800000000",
    });
    let hotline = format!("{city_url}/hotline/12345");
    let first_post = python(&fed, &py, HOTLINE, &[&hotline, &ticket.to_string()]);
    assert_eq!(first_post["status"], 200, "{first_post}");
    let answer: Value = serde_json::from_str(first_post["body"].as_str().unwrap()).unwrap();
    let hotline_case = answer["case_id"].as_str().unwrap().to_string();
    assert!(hotline_case.starts_with("530602001-"), "{answer}");
    assert_eq!(answer["office"], TOWNSHIP);
    let again = python(&fed, &py, HOTLINE, &[&hotline, &ticket.to_string()]);
    let again: Value = serde_json::from_str(again["body"].as_str().unwrap()).unwrap();
    assert_eq!(again["case_id"], hotline_case.as_str(), "{again}");
    let shown = township.json(&["case", "show", &hotline_case]);
    assert_eq!(shown["channel"], "phone");
    assert_eq!(shown["category"], "labour");
    assert_eq!(shown["first_officer"], "hotline12345/HL-2026-000123");
    // Its result goes back to the hotline platform, once, naming the ticket.
    assert!(callback_lines(&callbacks).is_empty(), "no result yet");
    township.ok(&["case", "accept", &hotline_case]);
    let reply = "wages paid on 1 December";
    township.ok(&[
        "case",
        "reply",
        &hotline_case,
        "--opinion",
        "support",
        "--text",
        reply,
    ]);
    common::wait_until(&fed, "the hotline callback", || {
        !callback_lines(&callbacks).is_empty()
    });
    let lines = callback_lines(&callbacks);
    let callback = &lines[0]["callback"];
    assert_eq!(callback["ticket_id"], "HL-2026-000123", "{callback}");
    assert_eq!(callback["case_id"], hotline_case.as_str());
    assert_eq!(callback["result"], "replied");
    assert_eq!(callback["opinion"], "support");
    assert_eq!(callback["text"], reply);
    assert_eq!(lines[0]["stage"], "callback");
    assert_eq!(lines[0]["phone"], "", "the phone stays with the office");
    assert!(callback["status_url"]
        .as_str()
        .is_some_and(|url| url.contains(&format!("/status/{hotline_case}?code="))));
    let status = fed.json(&["status"]);
    assert_eq!(status["sms"]["hotline_callback"], spec.as_str());
    let bad = python(
        &fed,
        &py,
        HOTLINE,
        &[&hotline, r#"{"ticket_id": "HL-2", "category": "potholes"}"#],
    );
    assert_eq!(bad["status"], 400, "{bad}");
    assert!(bad["body"].as_str().unwrap().contains("potholes"), "{bad}");
    verified(&fed);
    assert_eq!(
        callback_lines(&callbacks).len(),
        1,
        "one callback per result"
    );
}

fn callback_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A hotline platform's POST of a ticket (JSON), following a redirect with the same body.
const HOTLINE: &str = r#"
import json, sys
import requests
r = requests.post(sys.argv[1], data=sys.argv[2].encode(), headers={"content-type": "application/json"})
print(json.dumps({"status": r.status_code, "body": r.text}))
"#;

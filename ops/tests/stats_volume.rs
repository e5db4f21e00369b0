//! `stats` exact at volume (issue 11, "Done means"): more than 10,000 cases in the subtree of
//! city 5306 (seven offices on real host processes, RocksDB, mTLS), filed through the officer
//! API in bulk, many at once, at every office. The city's `stats --json` totals equal the sums
//! of its per-office rows, and each row equals a count made by listing that office alone with
//! `query --office`, page by page. The old `stats` stopped at 10,000 cases (one page of a
//! query); a count of listed cases at this volume crosses that line.

mod common;

use std::collections::BTreeMap;

use common::{wait_until, Fed};
use federation_proto::v1::cases_client::CasesClient;
use federation_proto::v1::FileRequest;
use serde_json::Value;

/// Cases filed in the subtree: past the 10,000 where `stats` used to stop.
const CASES: u64 = 10_500;
/// Filings in flight at once per office.
const IN_FLIGHT: usize = 24;

/// The city, two counties, four townships; one replica each, on seven hosts.
fn seven_offices() -> (Fed, Vec<String>) {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "2", "--replicas", "1"],
        7,
    );
    fed.ok(&["up"]);
    let manifest =
        liandong_node::manifest::Manifest::load(&fed.dir().join("manifest.json")).unwrap();
    let codes = manifest.offices.iter().map(|o| o.code.clone()).collect();
    (fed, codes)
}

/// Files sample petitions `numbers` at `office` through the officer API, `IN_FLIGHT` at a time,
/// as the signed-in officer of that office (its token from `fed.at(office)`).
async fn file_many(fed: &Fed, office: &str, numbers: std::ops::Range<u64>) {
    let token = fed.dir().join(format!("{office}-officer.token"));
    let session = liandong_ops::client::Session::load(&token)
        .unwrap()
        .expect("signed in");
    liandong_ops::client::remember_token(office, &session.token);
    let manifest =
        liandong_node::manifest::Manifest::load(&fed.dir().join("manifest.json")).unwrap();
    let entry = manifest.office(office).unwrap();
    let addr = manifest
        .host(&entry.members[0].host)
        .unwrap()
        .api_addr
        .clone();
    let channel = liandong_ops::client::officer_channel(&addr, office)
        .await
        .unwrap();
    let numbers: Vec<u64> = numbers.collect();
    let chunk = numbers.len().div_ceil(IN_FLIGHT);
    let workers = numbers.chunks(chunk).map(|mine| {
        let mut cases = CasesClient::new(channel.clone());
        let office = office.to_string();
        let mine = mine.to_vec();
        async move {
            for n in mine {
                let request = FileRequest {
                    office: office.clone(),
                    registration: Some(liandong_ops::sample::registration(n)),
                    request_id: format!("volume-{n}"),
                    ..FileRequest::default()
                };
                // A request id makes a retry safe: it is answered, not filed again.
                let mut tries = 0;
                while let Err(status) = cases.file(request.clone()).await {
                    tries += 1;
                    assert!(
                        tries < 20 && liandong_ops::client::retryable(&status),
                        "filing {n} at {office}: {status}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    futures::future::join_all(workers).await;
}

/// Every case `query --as <city> [--office <office>]` lists, page by page (the maximum page is
/// 10,000): their count by status.
fn listed_by_status(fed: &Fed, city: &str, office: Option<&str>) -> BTreeMap<String, u64> {
    let mut by_status = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["query", "--as", city, "--limit", "10000"];
        if let Some(office) = office {
            args.extend(["--office", office]);
        }
        if let Some(cursor) = &cursor {
            args.extend(["--cursor", cursor.as_str()]);
        }
        let page = fed.at(city).json(&args);
        for case in page["cases"].as_array().unwrap() {
            *by_status
                .entry(case["status"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return by_status,
        }
    }
}

/// Without counters kept per office the city's figures would stop at 10,000 or need a listing;
/// without their rows adding up, the totals would disagree with the listing of each office.
#[test]
fn stats_over_ten_thousand_cases_add_up_and_match_each_office_listed_alone() {
    let (fed, offices) = seven_offices();
    let city = offices[0].clone();
    assert_eq!(city, "5306");
    // Everyone signed in first (the CLI, one process each).
    for office in &offices {
        fed.at(office);
    }
    let per_office = CASES.div_ceil(offices.len() as u64);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        liandong_ops::client::use_federation_tls(&liandong_ops::layout::Layout::new(fed.dir()))
            .unwrap();
        let filings = offices.iter().enumerate().map(|(i, office)| {
            let from = i as u64 * per_office;
            file_many(&fed, office, from..from + per_office)
        });
        futures::future::join_all(filings).await;
    });
    let filed = per_office * offices.len() as u64;
    assert!(filed > 10_000);

    // The city's index catches up with every office's filings.
    let stats = || fed.at(&city).json(&["stats", "--as", &city]);
    wait_until(&fed, "the city counts every case filed", || {
        stats()["total"].as_u64() == Some(filed)
    });
    let stats = stats();
    let rows = stats["offices"].as_array().unwrap();
    let row_sum = |figure: &str| -> u64 { rows.iter().map(|r| r[figure].as_u64().unwrap()).sum() };
    assert_eq!(stats["total"].as_u64(), Some(filed));
    for figure in ["total", "overdue", "backlog", "warned", "skip_level"] {
        assert_eq!(stats[figure].as_u64(), Some(row_sum(figure)), "{figure}");
    }
    let table_sum = |table: &str| -> u64 {
        stats[table]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum()
    };
    for table in ["by_status", "by_level", "by_category", "by_channel"] {
        assert_eq!(table_sum(table), filed, "{table}: {}", stats[table]);
    }

    // Each office listed alone: as many cases as its row, status by status.
    let mut listed_total = 0;
    for office in &offices {
        let row: &Value = rows
            .iter()
            .find(|r| r["code"] == office.as_str())
            .unwrap_or_else(|| panic!("no row for {office}: {stats}"));
        let listed = listed_by_status(&fed, &city, Some(office));
        let count: u64 = listed.values().sum();
        assert_eq!(row["total"].as_u64(), Some(count), "{office}");
        assert_eq!(count, per_office, "{office}");
        listed_total += count;
        for (status, n) in &listed {
            let counted: u64 = fed.at(&city).json(&[
                "query", "--as", &city, "--office", office, "--status", status, "--limit", "10000",
            ])["cases"]
                .as_array()
                .unwrap()
                .len() as u64;
            assert_eq!(counted, *n, "{office} {status}");
        }
    }
    assert_eq!(listed_total, filed);
    // The whole subtree listed: more than one page, every case once.
    let everything: u64 = listed_by_status(&fed, &city, None).values().sum();
    assert_eq!(everything, filed);
    let by_status: u64 = stats["by_status"]["registered"].as_u64().unwrap_or(0);
    assert_eq!(by_status, filed, "every case filed is registered");
}

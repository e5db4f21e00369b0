//! Scheduled supervision reports from the outside (issue 11, item 4): the `liandong` command
//! line against seven offices (city 5306, counties 530602 and 530621, four townships) on real
//! host processes (RocksDB, mTLS). Cases are filed in county 530602's subtree and at its
//! sibling; then every host's clock jumps past the next midnight in China time (the drill's
//! clock skew, `liandong drill skew`), and the county's leader makes the day's report by itself.
//! `report list` shows it, `report show --format csv` adds up to what `stats` says of the same
//! subtree, the HTML is a well-formed page with SVG charts, and the sibling county's officer is
//! refused, as is bad input, each with one clear line.

mod common;

use common::{file_case, verified, wait_until, Fed};
use liandong_domain::figures::day_name;
use liandong_domain::reports::next_report_at;
use liandong_domain::Date;
use serde_json::Value;

const COUNTY: &str = "530602";
const SIBLING: &str = "530621";

fn seven_offices() -> Fed {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "2", "--replicas", "1"],
        7,
    );
    fed.ok(&["up"]);
    fed
}

/// The CSV's sections: the table rows (section, office, total, overdue, backlog, score) and the
/// trend rows (day, registered, replied, overdue), each with its header line checked.
fn csv_sections(csv: &str) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let (tables, trend) = csv.split_once("\n\n").expect("two sections");
    let rows = |text: &str, header: &str| -> Vec<Vec<String>> {
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(header), "{csv}");
        lines
            .map(|line| line.split(',').map(str::to_string).collect())
            .collect()
    };
    (
        rows(tables, "section,office,total,overdue,backlog,score"),
        rows(trend, "day,registered,replied,overdue"),
    )
}

/// Checks that `html` is one well-formed page: every element closed in order (void and
/// self-closing ones aside), `html` holding `head` then `body`, and the names of the elements
/// met, in order.
fn parse_page(html: &str) -> Vec<String> {
    const VOID: [&str; 4] = ["meta", "br", "img", "hr"];
    let mut stack: Vec<String> = Vec::new();
    let mut met = Vec::new();
    let mut rest = html.trim();
    let doctype = "<!DOCTYPE html>";
    assert!(rest.starts_with(doctype), "no doctype: {html}");
    rest = &rest[doctype.len()..];
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        assert!(
            !text.contains('>'),
            "a stray '>' in text {text:?} (unescaped data?)"
        );
        let close = rest[open..].find('>').expect("a tag closes") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(top, name, "</{name}> closes <{top}>");
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(!name.is_empty(), "a tag without a name: <{tag}>");
        assert!(
            tag.matches('"').count().is_multiple_of(2),
            "unbalanced quotes: <{tag}>"
        );
        if stack.is_empty() {
            assert!(met.is_empty() && name == "html", "the page is one <html>");
        }
        met.push(name.clone());
        if !(tag.ends_with('/') || VOID.contains(&name.as_str())) {
            stack.push(name);
        }
    }
    assert!(rest.trim().is_empty(), "text after </html>: {rest:?}");
    assert!(stack.is_empty(), "left open: {stack:?}");
    let head = met.iter().position(|n| n == "head").expect("a head");
    let body = met.iter().position(|n| n == "body").expect("a body");
    assert!(head < body);
    met
}

/// Without the tick making reports, `report list` would stay empty past midnight; without the
/// counters read for the subtree, the CSV's totals would not be `stats`'s; without the office's
/// check, the sibling's officer would read the county's report.
#[test]
fn the_county_makes_its_daily_report_at_midnight_and_serves_it_to_its_own_officers_only() {
    let fed = seven_offices();
    let county = fed.at(COUNTY);
    let township = format!("{COUNTY}001");
    file_case(&fed, COUNTY, 1, "housing");
    file_case(&fed, COUNTY, 2, "land");
    file_case(&fed, &township, 3, "housing");
    file_case(&fed, SIBLING, 4, "labour");
    // The township's summaries have reached the county's index.
    verified(&fed);
    wait_until(&fed, "the county counts its subtree's three cases", || {
        county.json(&["stats", "--as", COUNTY])["total"] == 3
    });
    // At start each office made the last whole period's reports (yesterday's daily): not today's.
    let now = liandong_node::clock::wall_ms();
    let today = day_name(Date::from_millis(now));
    let listed = county.json(&["report", "list", "--office", COUNTY, "--kind", "daily"]);
    let periods = |listed: &Value| -> Vec<String> {
        listed["reports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["period"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!periods(&listed).contains(&today), "{listed}");

    // Every host's clock jumps a minute past the next midnight in China time.
    let skew = next_report_at(now) - now + 60_000;
    let manifest =
        liandong_node::manifest::Manifest::load(&fed.dir().join("manifest.json")).unwrap();
    for host in &manifest.hosts {
        fed.ok(&[
            "drill",
            "skew",
            "--host",
            &host.name,
            "--ms",
            &skew.to_string(),
        ]);
    }
    wait_until(&fed, "the county makes today's daily report", || {
        periods(&county.json(&["report", "list", "--office", COUNTY, "--kind", "daily"])).first()
            == Some(&today)
    });
    let text = county.ok(&["report", "list", "--office", COUNTY]);
    assert!(text.contains(&format!("daily    {today}")), "{text}");
    assert!(
        text.contains("weekly") && text.contains("monthly"),
        "{text}"
    );

    // The CSV's totals and rows are `stats`'s for the same subtree (nothing moved since).
    let csv = county.ok(&[
        "report", "show", "--office", COUNTY, "--kind", "daily", "--period", &today, "--format",
        "csv",
    ]);
    let stats = county.json(&["stats", "--as", COUNTY]);
    let (tables, trend) = csv_sections(&csv);
    let totals = tables
        .iter()
        .find(|row| row[0] == "totals")
        .expect("totals");
    assert_eq!(totals[1], COUNTY);
    for (column, figure) in [(2, "total"), (3, "overdue"), (4, "backlog")] {
        assert_eq!(
            totals[column],
            stats[figure].to_string(),
            "{figure}: {csv}\n{stats}"
        );
    }
    assert_eq!(totals[2], "3");
    for office in stats["offices"].as_array().unwrap() {
        let code = office["code"].as_str().unwrap();
        let row = tables
            .iter()
            .find(|row| row[0] == "ranking" && row[1] == code)
            .unwrap_or_else(|| panic!("{code} ranked: {csv}"));
        assert_eq!(row[2], office["total"].to_string(), "{code}: {csv}");
    }
    assert!(
        !csv.contains(SIBLING),
        "the sibling is not in the county's report: {csv}"
    );
    // Its one day's trend: the three registrations, as `stats --trend` counts them.
    assert_eq!(trend.len(), 1, "{csv}");
    assert_eq!(trend[0][0], today);
    let by_day = county.json(&[
        "stats", "--as", COUNTY, "--trend", "day", "--from", &today, "--to", &today,
    ]);
    let registered = by_day["buckets"][0]["registered"].clone();
    assert_eq!(trend[0][1], registered.to_string(), "{by_day}");
    assert_eq!(trend[0][1], "3");

    // The latest daily without --period is the same report; JSON names it.
    let shown = county.json(&["report", "show", "--office", COUNTY, "--kind", "daily"]);
    assert_eq!(shown["report"]["period"], today.as_str(), "{shown}");
    let body: Value = serde_json::from_str(shown["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&body["office"], &body["total"]),
        (&Value::from(COUNTY), &Value::from(3))
    );

    // The HTML page, into a file: well formed, with its SVG charts.
    let page = fed.dir().join("county-daily.html");
    county.ok(&[
        "report",
        "show",
        "--office",
        COUNTY,
        "--kind",
        "daily",
        "--format",
        "html",
        "--out",
        page.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&page).unwrap();
    let elements = parse_page(&html);
    assert!(
        elements.iter().filter(|name| *name == "svg").count() >= 2,
        "{html}"
    );
    assert!(
        html.contains(&format!("{COUNTY} daily report {today}")),
        "{html}"
    );

    // The sibling county's supervisor is refused by the county, in one line; so is the city's
    // (it reads its own office's reports, which cover the county).
    for office in [SIBLING, "5306"] {
        let refused = fed
            .at(office)
            .fails(&["report", "show", "--office", COUNTY, "--kind", "daily"]);
        assert!(
            refused.contains("acts only for its own office"),
            "{refused}"
        );
        fed.at(office)
            .fails(&["report", "list", "--office", COUNTY]);
    }
    // The sibling's own report has its own case only. Its leader makes today's report on its
    // own tick, which may come after the county's: wait for it (until then, the latest is
    // yesterday's, made at start, which has no case).
    let sibling_listed = || {
        periods(
            &fed.at(SIBLING)
                .json(&["report", "list", "--office", SIBLING, "--kind", "daily"]),
        )
    };
    wait_until(&fed, "the sibling makes today's daily report", || {
        sibling_listed().first() == Some(&today)
    });
    let sibling = fed.at(SIBLING).json(&[
        "report", "show", "--office", SIBLING, "--kind", "daily", "--period", &today,
    ]);
    let body: Value = serde_json::from_str(sibling["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["total"], 1, "{body}");

    // Bad input: one clear line each.
    for (args, says) in [
        (vec!["--kind", "hourly"], "daily, weekly, monthly"),
        (
            vec!["--kind", "daily", "--format", "pdf"],
            "json, csv, html",
        ),
        (
            vec!["--kind", "daily", "--period", "2026-13-01"],
            "--period",
        ),
        (
            vec!["--kind", "weekly", "--period", "2026-03-04"],
            "its Monday",
        ),
        (vec!["--kind", "monthly", "--period", "2026-1"], "YYYY-MM"),
        (
            vec!["--kind", "daily", "--period", "1999-01-01"],
            "keeps no daily report",
        ),
    ] {
        let mut all = vec!["report", "show", "--office", COUNTY];
        all.extend(args.iter().copied());
        let refused = county.fails(&all);
        assert!(refused.contains(says), "{all:?}: {refused}");
    }
    let refused = county.fails(&["report", "list", "--office", COUNTY, "--kind", "yearly"]);
    assert!(refused.contains("daily, weekly, monthly"), "{refused}");
}

//! A federation spread over sites, as county IT runs one: `federation init --inventory` makes
//! one bundle per host; each host runs as its own `liandong-node` process from its own copy of
//! its bundle, on its own loopback address (a random block of 127.0.0.0/8, fixed ports), never
//! through `liandong up`. Cases flow between a township, its county, the city and the other
//! county's township; a new township is added while everything runs and takes a case from its
//! county. Plus the bad inputs: inventories, bundles with a missing or foreign key, add-office of
//! codes that cannot be added.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{file_case, Fed};
use serde_json::Value;

/// The offices of the test federation: a city, two counties, one township of each.
const CITY: &str = "5306";
const ZHAOYANG: &str = "530602";
const FENGHUANG: &str = "530602001";
const LUDIAN: &str = "530621";
const WENPING: &str = "530621001";
/// The township added while the federation runs.
const LONGQUAN: &str = "530602002";

/// A random block of loopback addresses, `127.X.Y.0/24` with X above 63: parallel runs (and
/// the other tests' 127.0.0.1) do not collide, and every host keeps the default ports.
fn block() -> String {
    let x = 64 + rand::random::<u8>() % 190;
    let y = 1 + rand::random::<u8>() % 250;
    format!("127.{x}.{y}")
}

/// The inventory: three city hosts, three per county (each carrying its county and one
/// township), every host on its own address.
/// Writes the inventory of `block`'s addresses beside the federation folder; its path.
fn inventory_file(fed: &Fed, block: &str) -> String {
    let path = fed.dir.with_file_name("zhaotong.toml");
    std::fs::write(&path, inventory(block)).unwrap();
    path.to_str().unwrap().to_string()
}

fn inventory(block: &str) -> String {
    let mut text = String::from("region = \"5306\"\nreplicas = 3\n");
    let groups = [
        ("city", "zhaotong-city", vec![CITY]),
        ("zy", "zhaoyang", vec![ZHAOYANG, FENGHUANG]),
        ("ld", "ludian", vec![LUDIAN, WENPING]),
    ];
    let mut n = 2;
    for (prefix, site, offices) in groups {
        for i in 1..=3 {
            let offices: Vec<String> = offices.iter().map(|o| format!("\"{o}\"")).collect();
            text.push_str(&format!(
                "\n[[host]]\nname = \"{prefix}-{i}\"\nsite = \"{site}\"\naddress = \"{block}.{n}\"\noffices = [{}]\n",
                offices.join(", ")
            ));
            n += 1;
        }
    }
    text
}

/// The `liandong-node` binary of this build.
fn node_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("liandong-node");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(files(&entry.path()));
        } else {
            out.push((entry.path(), std::fs::read(entry.path()).unwrap()));
        }
    }
    out
}

/// The host processes, each in its own folder (a copy of its bundle); stopped when dropped.
struct Machines {
    root: tempfile::TempDir,
    running: BTreeMap<String, Child>,
}

impl Machines {
    fn new() -> Machines {
        Machines {
            root: tempfile::Builder::new()
                .prefix("liandong-sites-")
                .tempdir()
                .unwrap(),
            running: BTreeMap::new(),
        }
    }

    /// Copies host `name`'s bundle to a folder of its own ("its machine") and starts it there.
    fn install_and_start(&mut self, fed: &Fed, name: &str) {
        let machine = self.root.path().join(name);
        copy_dir(&fed.dir.join("bundles").join(name), &machine);
        self.start(name);
    }

    /// The folder of host `name`'s machine.
    fn machine(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Starts host `name` again from its folder (installed before).
    fn start(&mut self, name: &str) {
        let machine = self.machine(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(machine.join("run").join("host.log"))
            .unwrap();
        let child = Command::new(node_bin())
            .arg("--config")
            .arg(machine.join("host.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.running.insert(name.to_string(), child);
    }

    /// Stops host `name` (SIGTERM), and waits until its process is gone.
    fn stop(&mut self, name: &str) {
        let mut child = self.running.remove(name).expect("a running host");
        terminate(&child);
        reap(&mut child, Duration::from_secs(20));
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for name in self.running.keys() {
            let path = self.root.path().join(name).join("run").join("host.log");
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            out.push_str(&format!("\n--- {name}\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Waits until `done` holds (a minute and a half is a hang).
    fn wait(&self, what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "never happened: {what}{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Machines {
    fn drop(&mut self) {
        for child in self.running.values() {
            terminate(child);
        }
        for child in self.running.values_mut() {
            reap(child, Duration::from_secs(10));
        }
    }
}

/// Asks a host we started to stop (SIGTERM).
fn terminate(child: &std::process::Child) {
    // SAFETY: kill only signals the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// Waits up to `limit` for a host to exit, then kills it.
fn reap(child: &mut std::process::Child, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `liandong status` says every office has a leader that commits.
fn healthy(fed: &Fed) -> bool {
    let out = fed.run(&["--json", "status"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    status["verdict"]["ok"] == true
}

/// The case as `office`'s officer sees it, if it is there (and owned there).
fn owned_at(fed: &Fed, office: &str, case_id: &str) -> bool {
    let out = fed.at(office).run(&["--json", "case", "show", case_id]);
    let case: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    out.status.success() && case["office"] == office
}

#[test]
fn a_federation_of_sites_runs_from_per_host_bundles_and_takes_a_new_township_while_it_runs() {
    let block = block();
    let fed = Fed::empty();
    let made = fed.json(&[
        "federation",
        "init",
        "--inventory",
        &inventory_file(&fed, &block),
    ]);
    assert_eq!(made["hosts"], 9, "{made}");
    assert_eq!(made["sites"], 3, "{made}");

    // A bundle holds its host's key and no other's, never the CA's, and only its offices'
    // secrets.
    let bundles = fed.dir.join("bundles");
    let hosts: Vec<String> = made["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["host"].as_str().unwrap().to_string())
        .collect();
    let ca_key = std::fs::read(fed.dir.join("pki").join("ca.key")).unwrap();
    let keys: BTreeMap<&str, Vec<u8>> = hosts
        .iter()
        .map(|h| {
            let key = bundles.join(h).join("pki").join(format!("{h}.key"));
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
            (h.as_str(), std::fs::read(key).unwrap())
        })
        .collect();
    for host in &hosts {
        let bundle = bundles.join(host);
        for name in ["host.toml", "manifest.json", "pki/ca.pem"] {
            assert!(bundle.join(name).exists(), "{host}'s bundle lacks {name}");
        }
        for (path, bytes) in files(&bundle) {
            assert_ne!(bytes, ca_key, "the CA key in {}", path.display());
            for (other, key) in &keys {
                if other != host {
                    assert_ne!(&bytes, key, "{other}'s key in {}", path.display());
                }
            }
        }
        let offices: Vec<String> = std::fs::read_dir(bundle.join("secrets"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        let carried = if host.starts_with("city") {
            vec![CITY]
        } else if host.starts_with("zy") {
            vec![ZHAOYANG, FENGHUANG]
        } else {
            vec![LUDIAN, WENPING]
        };
        let mut offices = offices;
        offices.sort();
        assert_eq!(offices, carried, "{host}'s secrets");
    }

    // Each host on its own machine (folder), started on its own.
    let mut machines = Machines::new();
    for host in &hosts {
        machines.install_and_start(&fed, host);
    }
    machines.wait("every office has a leader that commits", || healthy(&fed));
    let status = fed.json(&["status"]);
    let listening: Vec<&str> = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["api_addr"].as_str().unwrap())
        .collect();
    assert!(
        listening
            .iter()
            .all(|a| a.starts_with(&format!("{block}.")) && a.ends_with(":7101")),
        "{listening:?}"
    );

    // A township's case goes up to its county, then the city, then down to the other
    // county's township.
    let case_id = file_case(&fed, FENGHUANG, 1, "housing");
    fed.at(FENGHUANG)
        .ok(&["case", "transfer", &case_id, "--to", ZHAOYANG]);
    machines.wait("the county owns the case", || {
        owned_at(&fed, ZHAOYANG, &case_id)
    });
    fed.at(ZHAOYANG)
        .ok(&["case", "transfer", &case_id, "--to", CITY]);
    machines.wait("the city owns the case", || owned_at(&fed, CITY, &case_id));
    fed.at(CITY).ok(&[
        "case",
        "assign",
        &case_id,
        "--to",
        WENPING,
        "--due-days",
        "10",
    ]);
    machines.wait("the other county's township owns the case", || {
        owned_at(&fed, WENPING, &case_id)
    });
    fed.at(WENPING).ok(&["case", "accept", &case_id]);

    // A new township while everything runs: its bundles, the new directory on every host.
    let mut args = vec![
        "federation".to_string(),
        "add-office".to_string(),
        "--office".to_string(),
        LONGQUAN.to_string(),
        "--site".to_string(),
        "longquan".to_string(),
    ];
    for i in 1..=3 {
        args.extend([
            "--host".to_string(),
            format!("lq-{i}"),
            "--address".to_string(),
            format!("{block}.{}", 10 + i),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let added = fed.json(&args);
    assert_eq!(added["added"], true, "{added}");
    assert_eq!(added["generation"], 1, "{added}");
    assert_eq!(added["reached"].as_array().unwrap().len(), 9, "{added}");
    assert!(added["missed"].as_array().unwrap().is_empty(), "{added}");
    // Again: nothing changes, every host already has it.
    let again = fed.json(&args);
    assert_eq!(again["added"], false, "{again}");
    assert!(
        again["reached"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["changed"] == false && r["generation"] == 1),
        "{again}"
    );
    // Each running host wrote the new manifest into its own folder.
    let copy = machines.root.path().join("zy-2").join("manifest.json");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(copy).unwrap()).unwrap();
    assert_eq!(written["generation"], 1);

    // The public surface of the hosts that already ran knows the new township at once: a
    // filing for it and a hotline ticket from it are sent to its hosts' public address (before,
    // the filing was refused as of no office and the ticket went to its county).
    let new_public: Vec<String> = (1..=3)
        .map(|i| format!("https://{block}.{}:7103", 10 + i))
        .collect();
    let ca = fed.dir.join("pki").join("ca.pem");
    let county_url = format!("https://{block}.5:7103");
    let filing = [
        format!("jurisdiction_id={LONGQUAN}"),
        "service_code=housing".to_string(),
        "description=the+roof+leaks".to_string(),
        "first_name=%E4%B8%89".to_string(),
        "last_name=%E5%BC%A0".to_string(),
        format!("attribute%5Bid_number%5D={}", common::id_number(77_001)),
    ]
    .join("&");
    let (code, location) = public_post(
        &ca,
        &format!("{county_url}/open311/v2/requests.json"),
        "application/x-www-form-urlencoded",
        &filing,
    );
    assert_eq!(
        code, 307,
        "an Open311 filing for the new township at {county_url}"
    );
    assert!(
        new_public
            .iter()
            .any(|url| location == format!("{url}/open311/v2/requests.json")),
        "sent to {location:?}, not to the new township's hosts {new_public:?}"
    );
    let ticket = serde_json::json!({
        "ticket_id": "HL-LQ-1",
        "location": LONGQUAN,
        "category": "labour",
        "summary": "wages unpaid",
        "name": "赵六",
        "id_number": common::id_number(77_002),
        "phone": "13800000000",
    });
    let city_url = format!("https://{block}.2:7103");
    let (code, location) = public_post(
        &ca,
        &format!("{city_url}/hotline/12345"),
        "application/json",
        &ticket.to_string(),
    );
    assert_eq!(
        code, 307,
        "a hotline ticket from the new township at {city_url}"
    );
    assert!(
        new_public
            .iter()
            .any(|url| location == format!("{url}/hotline/12345")),
        "sent to {location:?}, not to the new township's hosts {new_public:?}"
    );

    for i in 1..=3 {
        machines.install_and_start(&fed, &format!("lq-{i}"));
    }
    machines.wait("the new township has a leader that commits", || {
        healthy(&fed)
    });
    // Status shows each host's site and the manifest generation it runs with.
    let status = fed.json(&["status"]);
    for host in status["hosts"].as_array().unwrap() {
        assert_eq!(host["manifest_generation"], 1, "{host}");
        let site = host["site"].as_str().unwrap();
        let name = host["name"].as_str().unwrap();
        let expected = match &name[..2] {
            "ci" => "zhaotong-city",
            "zy" => "zhaoyang",
            "ld" => "ludian",
            _ => "longquan",
        };
        assert_eq!(site, expected, "{host}");
    }
    let text = fed.ok(&["status"]);
    assert!(
        text.contains("longquan 3/3 hosts up")
            && text.contains("manifest generation 1 on every host"),
        "{text}"
    );

    // Its county assigns it a case; it takes it; the city's query sees it.
    let county_case = file_case(&fed, ZHAOYANG, 2, "land");
    fed.at(ZHAOYANG).ok(&[
        "case",
        "assign",
        &county_case,
        "--to",
        LONGQUAN,
        "--due-days",
        "10",
    ]);
    machines.wait("the new township owns the case", || {
        owned_at(&fed, LONGQUAN, &county_case)
    });
    fed.at(LONGQUAN).ok(&["case", "accept", &county_case]);
    machines.wait("the city's query sees the new township's case", || {
        let out = fed
            .at(CITY)
            .run(&["--json", "query", "--as", CITY, "--fresh"]);
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains(&county_case)
            && String::from_utf8_lossy(&out.stdout).contains(LONGQUAN)
    });
    // A fresh query of the county asks the new township itself.
    machines.wait("the county's fresh query asks the new township", || {
        let out = fed
            .at(ZHAOYANG)
            .run(&["--json", "query", "--as", ZHAOYANG, "--fresh"]);
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        out.status.success() && !answer["answered"][LONGQUAN].is_null()
    });
    // And a case flows back up from the new township to its county.
    let township_case = file_case(&fed, LONGQUAN, 3, "housing");
    fed.at(LONGQUAN)
        .ok(&["case", "transfer", &township_case, "--to", ZHAOYANG]);
    machines.wait("the county owns the new township's case", || {
        owned_at(&fed, ZHAOYANG, &township_case)
    });
}

/// The supervision orders in the history of `case_id` at `office`.
fn orders_in(fed: &Fed, office: &str, case_id: &str) -> usize {
    let out = fed.at(office).run(&["--json", "case", "show", case_id]);
    let case: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    case["history"]
        .as_array()
        .map(|history| {
            history
                .iter()
                .filter(|entry| entry["kind"] == "supervision_ordered")
                .count()
        })
        .unwrap_or(0)
}

/// How often `case_id` is in the city's index.
fn in_city_index(fed: &Fed, case_id: &str) -> usize {
    let out = fed.at(CITY).run(&["--json", "query", "--as", CITY]);
    let index: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    index["cases"]
        .as_array()
        .map(|cases| cases.iter().filter(|c| c["case_id"] == case_id).count())
        .unwrap_or(0)
}

/// The city is restored at its own site: the CA holder's folder there names where the city's
/// hosts keep their data (`hosts/<host>.toml`) and holds nothing of the counties' hosts, which
/// run from their own folders. The restore learns the counties' side of their links with the
/// city from their running hosts, names the one county host that is down, and afterwards a new
/// message on each link (an order down, a summary up) is applied exactly once.
#[test]
fn an_office_restored_away_from_its_peers_asks_them_over_the_network() {
    let block = block();
    let fed = Fed::empty();
    let made = fed.json(&[
        "federation",
        "init",
        "--inventory",
        &inventory_file(&fed, &block),
    ]);
    let hosts: Vec<String> = made["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["host"].as_str().unwrap().to_string())
        .collect();
    let mut machines = Machines::new();
    for host in &hosts {
        machines.install_and_start(&fed, host);
    }
    machines.wait("every office has a leader that commits", || healthy(&fed));

    // Before the backup: a case at the city, one at each county (its summary goes up).
    file_case(&fed, CITY, 1, "housing");
    let zy_case = file_case(&fed, ZHAOYANG, 2, "land");
    let ld_case = file_case(&fed, LUDIAN, 3, "land");
    machines.wait("the city's index has both counties' cases", || {
        in_city_index(&fed, &zy_case) == 1 && in_city_index(&fed, &ld_case) == 1
    });
    let backup = fed.dir.with_file_name("city.backup");
    let saved = fed.json(&[
        "snapshot",
        "save",
        "--office",
        CITY,
        "--out",
        backup.to_str().unwrap(),
    ]);
    assert_eq!(saved["office"], CITY, "{saved}");

    // After it: the city orders each county (messages the restored city will not have sent).
    for case in [&zy_case, &ld_case] {
        fed.at(CITY).ok(&[
            "supervise",
            case,
            "--due-days",
            "5",
            "--text",
            "report by Friday",
        ]);
    }
    machines.wait("both orders arrived", || {
        orders_in(&fed, ZHAOYANG, &zy_case) == 1 && orders_in(&fed, LUDIAN, &ld_case) == 1
    });

    // The city's hosts lose their data; one county host is down too.
    for i in 1..=3 {
        let name = format!("city-{i}");
        machines.stop(&name);
        std::fs::remove_dir_all(machines.machine(&name).join("data")).unwrap();
        // The CA holder's folder on this machine names where the city's hosts keep their data.
        let machine = machines.machine(&name);
        let config = format!(
            "host = \"{name}\"\nmanifest = \"{}\"\ndata_dir = \"{}\"\nlog_dir = \"{}\"\nlog_level = \"info\"\n",
            machine.join("manifest.json").display(),
            machine.join("data").display(),
            machine.join("run").display()
        );
        std::fs::create_dir_all(fed.dir.join("hosts")).unwrap();
        std::fs::write(fed.dir.join("hosts").join(format!("{name}.toml")), config).unwrap();
    }
    machines.stop("ld-3");
    for host in &hosts {
        assert!(
            !fed.dir.join("data").join(host).exists(),
            "{host}'s data is readable from the CA holder's folder"
        );
    }

    let restored = fed.json(&[
        "snapshot",
        "restore",
        "--office",
        CITY,
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert_eq!(
        restored["unsynced_peers"].as_array().unwrap().len(),
        0,
        "{restored}"
    );
    assert_eq!(
        restored["hosts_unanswered"],
        serde_json::json!(["ld-3"]),
        "{restored}"
    );
    let told = restored["peers_told_by"]["network"].as_array().unwrap();
    assert_eq!(told.len(), 5, "the counties' running hosts: {restored}");
    for county in [ZHAOYANG, LUDIAN] {
        let link = restored["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|link| link["peer"] == county)
            .cloned()
            .unwrap_or_else(|| panic!("no repair of the link with {county}: {restored}"));
        assert!(
            link["sent_after_backup"]["last"].as_u64().is_some(),
            "the order to {county} after the backup: {restored}"
        );
    }

    for i in 1..=3 {
        machines.start(&format!("city-{i}"));
    }
    machines.start("ld-3");
    machines.wait("every office has a leader that commits again", || {
        healthy(&fed)
    });

    // A new message on each link, applied exactly once: a case summary up from each county,
    // then an order down to each on that case.
    let zy_new = file_case(&fed, ZHAOYANG, 4, "water");
    let ld_new = file_case(&fed, LUDIAN, 5, "water");
    machines.wait("the new summaries reached the city", || {
        in_city_index(&fed, &zy_new) == 1 && in_city_index(&fed, &ld_new) == 1
    });
    for (county, case) in [(ZHAOYANG, &zy_new), (LUDIAN, &ld_new)] {
        fed.at(CITY)
            .ok(&["supervise", case, "--due-days", "5", "--text", "again"]);
        machines.wait("the new order arrived", || {
            orders_in(&fed, county, case) == 1
        });
    }
    // The summaries of the orders' effect went up after the backup and are lost at the city
    // (the restore said so): the city's index catches up as those cases change again.
    fed.at(ZHAOYANG).ok(&["case", "accept", &zy_case]);
    fed.at(LUDIAN).ok(&["case", "accept", &ld_case]);
    let report = common::verified(&fed);
    assert_eq!(report["ok"], true, "{report}");
    for (county, case) in [
        (ZHAOYANG, &zy_case),
        (LUDIAN, &ld_case),
        (ZHAOYANG, &zy_new),
        (LUDIAN, &ld_new),
    ] {
        assert_eq!(orders_in(&fed, county, case), 1, "{case}");
    }
}

/// A POST to a host's public surface, redirects not followed: the status and the `Location`.
fn public_post(ca: &Path, url: &str, content_type: &str, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
        .args(["-H", &format!("content-type: {content_type}")])
        .args(["--data-binary", body, url])
        .output()
        .expect("curl is needed to reach the public surface");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl {url}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, location) = text.split_once(' ').unwrap_or((&text, ""));
    (code.parse().unwrap_or(0), location.trim().to_string())
}

/// `federation init`'s report is stdout alone, `--json` as before; where stderr is not a
/// terminal (here, a pipe) its progress is one summary line there.
#[test]
fn init_reports_on_stdout_alone_and_sums_its_progress_up_in_one_line_on_stderr() {
    let fed = Fed::empty();
    let port = common::free_base_port(36).to_string();
    let out = fed.run(&[
        "federation",
        "init",
        "--region",
        CITY,
        "--max-children",
        "2",
        "--base-port",
        &port,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let mut keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "dir",
            "hosts",
            "hotline_callback",
            "offices",
            "region",
            "replicas",
            "sms_gateway"
        ],
        "{report}"
    );
    assert_eq!(
        (report["offices"].as_u64(), report["hosts"].as_u64()),
        (Some(7), Some(9))
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("federation init: 7 offices' keys and admin passwords, 10 certificates"),
        "{stderr}"
    );

    let fed = Fed::empty();
    let inventory_path = inventory_file(&fed, &block());
    let out = fed.run(&[
        "federation",
        "init",
        "--inventory",
        &inventory_path,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bundles",
            "dir",
            "generation",
            "hosts",
            "offices",
            "region",
            "replicas",
            "sites"
        ],
        "{report}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "federation init: 5 offices' keys and admin passwords, 9 host certificates and bundles"
        ),
        "{stderr}"
    );
}

/// The CA holder's folder of a federation of three hosts (not started).
fn small_sites(block: &str) -> Fed {
    let fed = Fed::empty();
    let path = fed.dir.with_file_name("inventory.toml");
    let mut text = String::from("region = \"530602\"\nreplicas = 1\n");
    text.push_str(&format!(
        "[[host]]\nname = \"zy-1\"\nsite = \"zhaoyang\"\naddress = \"{block}.2\"\noffices = [\"530602\"]\n"
    ));
    text.push_str(&format!(
        "[[host]]\nname = \"fh-1\"\nsite = \"fenghuang\"\naddress = \"{block}.3\"\noffices = [\"530602001\"]\n"
    ));
    std::fs::write(&path, text).unwrap();
    fed.ok(&["federation", "init", "--inventory", path.to_str().unwrap()]);
    fed
}

/// Runs `liandong-node` on a bundle that must not start: its one line of stderr.
fn refuses_to_start(config: &Path) -> String {
    let out = Command::new(node_bin())
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the host started");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn bad_inventories_bundles_and_additions_are_refused_with_one_line_and_change_nothing() {
    let block = block();
    // Inventories: duplicate addresses, unknown offices. Nothing is written.
    let fed = Fed::empty();
    let path = fed.dir.with_file_name("bad.toml");
    let two = |a: &str, b: &str, office: &str| {
        format!(
            "region = \"530602\"\nreplicas = 1\n[[host]]\nname = \"a\"\nsite = \"s\"\naddress = \"{a}\"\noffices = [\"530602\"]\n[[host]]\nname = \"b\"\nsite = \"s\"\naddress = \"{b}\"\noffices = [\"{office}\"]\n"
        )
    };
    let here = format!("{block}.2");
    for (text, expected) in [
        (two(&here, &here, "530602001"), "duplicate address"),
        (
            two(&here, &format!("{block}.3"), "530602999"),
            "unknown office 530602999",
        ),
        (
            two(&here, &format!("{block}.3"), "530621001"),
            "not in region 530602",
        ),
        (two(&here, "not-an-ip", "530602001"), "not an IP address"),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = fed.fails(&["federation", "init", "--inventory", path.to_str().unwrap()]);
        assert!(err.contains(expected), "{expected}: {err}");
        assert!(!fed.dir.exists(), "nothing written after: {err}");
    }

    // Bundles: a missing key, another host's key, a certificate of another CA.
    let fed = small_sites(&block);
    let other = small_sites(&block);
    let machines = Machines::new();
    let install = |name: &str, from: &Fed| {
        let machine = machines
            .root
            .path()
            .join(format!("{name}-{}", rand::random::<u32>()));
        copy_dir(&from.dir.join("bundles").join(name), &machine);
        machine
    };
    let missing = install("zy-1", &fed);
    std::fs::remove_file(missing.join("pki").join("zy-1.key")).unwrap();
    let err = refuses_to_start(&missing.join("host.toml"));
    assert!(err.contains("zy-1.key"), "{err}");
    assert!(!missing.join("data").exists(), "nothing made: {err}");

    let foreign = install("zy-1", &fed);
    std::fs::copy(
        fed.dir
            .join("bundles")
            .join("fh-1")
            .join("pki")
            .join("fh-1.key"),
        foreign.join("pki").join("zy-1.key"),
    )
    .unwrap();
    let err = refuses_to_start(&foreign.join("host.toml"));
    assert!(err.contains("does not belong to the certificate"), "{err}");

    let other_ca = install("zy-1", &fed);
    for file in ["zy-1.pem", "zy-1.key"] {
        std::fs::copy(
            other
                .dir
                .join("bundles")
                .join("zy-1")
                .join("pki")
                .join(file),
            other_ca.join("pki").join(file),
        )
        .unwrap();
    }
    let err = refuses_to_start(&other_ca.join("host.toml"));
    assert!(err.contains("not signed by this federation's CA"), "{err}");

    // Additions: an unknown code, a code whose parent is not in the federation, one already
    // there, a host that already runs. The manifest stays as it was, no bundle is made.
    let manifest = std::fs::read(fed.dir.join("manifest.json")).unwrap();
    let add = |office: &str, host: &str| {
        fed.fails(&[
            "federation",
            "add-office",
            "--office",
            office,
            "--host",
            host,
            "--address",
            &format!("{block}.9"),
        ])
    };
    for (office, host, expected) in [
        ("530602999", "new-1", "unknown office 530602999"),
        (
            "530621001",
            "new-1",
            "parent 530621 is not in this federation",
        ),
        ("530602001", "new-1", "already in this federation"),
        ("530602002", "fh-1", "already runs"),
    ] {
        let err = add(office, host);
        assert!(err.contains(expected), "{office}: {expected}: {err}");
        assert_eq!(
            std::fs::read(fed.dir.join("manifest.json")).unwrap(),
            manifest,
            "the manifest changed: {err}"
        );
        assert!(!fed.dir.join("bundles").join("new-1").exists(), "{err}");
    }
    // A bundle made again for an unknown host is refused too.
    let err = fed.fails(&["federation", "bundle", "--host", "nobody"]);
    assert!(err.contains("no host nobody"), "{err}");
}

//! Drives the real `liandong` binary against real host processes on 127.0.0.1.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Fed {
    pub dir: PathBuf,
    _temp: tempfile::TempDir,
}

pub fn liandong_bin() -> &'static str {
    env!("CARGO_BIN_EXE_liandong")
}

/// The port ranges this test process has handed out, `[start, end)`: two tests running at once
/// (the test threads) never get overlapping ranges. The check that the ports are free cannot
/// tell alone: the first test's hosts may not listen yet when the second test looks.
static HANDED_OUT: Mutex<Vec<(u16, u16)>> = Mutex::new(Vec::new());

/// A base port with `count` free consecutive ports after it, overlapping no range handed out
/// before in this process.
pub fn free_base_port(count: u16) -> u16 {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..200 {
        // Below Linux's ephemeral range (32768-60999 by default): a host restarted by a test
        // gets its port back, never finding it taken by some outgoing connection meanwhile.
        let base: u16 = 20_000 + rand::random::<u16>() % 12_000;
        let end = base + count;
        if handed_out
            .iter()
            .any(|&(start, stop)| base < stop && start < end)
        {
            continue;
        }
        let listeners: Vec<_> = (0..count)
            .map(|i| TcpListener::bind(("127.0.0.1", base + i)))
            .collect();
        if listeners.iter().all(Result::is_ok) {
            handed_out.push((base, end));
            return base;
        }
    }
    panic!("no free port range found");
}

impl Fed {
    /// A federation folder not made yet (`DIR` of a temporary folder): for `federation init`
    /// with flags of the test's own (`--inventory`).
    pub fn empty() -> Fed {
        let temp = tempfile::Builder::new()
            .prefix("liandong-test-")
            .tempdir()
            .unwrap();
        let dir = temp.path().join("federation");
        Fed { dir, _temp: temp }
    }

    /// `liandong federation init` with these flags (plus a free base port), not started.
    pub fn init(flags: &[&str], hosts: u16) -> Fed {
        let temp = tempfile::Builder::new()
            .prefix("liandong-test-")
            .tempdir()
            .unwrap();
        let dir = temp.path().join("federation");
        let fed = Fed { dir, _temp: temp };
        let port = free_base_port(hosts * 4).to_string();
        let mut args = vec!["federation", "init", "--base-port", &port];
        args.extend_from_slice(flags);
        fed.ok(&args);
        fed
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(liandong_bin())
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("running liandong")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "liandong {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs_tail()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command with `--json` that must succeed; returns its document.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let text = self.ok(&with_json);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("liandong {args:?} printed no JSON ({e}): {text}"))
    }

    /// Runs a command that must fail; returns its one-line stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "liandong {args:?} should have failed"
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "one line expected: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    pub fn logs_tail(&self) -> String {
        let run = self.dir.join("run");
        let mut out = String::new();
        for entry in std::fs::read_dir(&run).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("\n--- {}\n", path.display()));
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The roles of the officer each test acts as at an office: every officer role but admin.
pub const WORKING_ROLES: &str = "registrar,handler,leader,supervisor,auditor";

/// `liandong` run as the officer of one office (`--token-file` of its session).
pub struct As<'a> {
    fed: &'a Fed,
    token: PathBuf,
}

impl As<'_> {
    fn with_token<'b>(&'b self, args: &[&'b str]) -> Vec<&'b str> {
        let mut all = vec!["--token-file", self.token.to_str().unwrap()];
        all.extend_from_slice(args);
        all
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.fed.run(&self.with_token(args))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.fed.ok(&self.with_token(args))
    }

    pub fn json(&self, args: &[&str]) -> Value {
        self.fed.json(&self.with_token(args))
    }

    pub fn fails(&self, args: &[&str]) -> String {
        self.fed.fails(&self.with_token(args))
    }
}

impl Fed {
    /// The officer `user` of `office` with `roles` (comma separated), made by the office's
    /// initial admin (its password from `DIR/secrets/<office>/admin.password`) and signed in:
    /// commands run through it act as that officer.
    pub fn officer(&self, office: &str, user: &str, roles: &str) -> As<'_> {
        let token = self.dir.join(format!("{office}-{user}.token"));
        if !token.exists() {
            let admin = self.dir.join(format!("{office}-admin.token"));
            let admin_password = self.dir.join("secrets").join(office).join("admin.password");
            if !admin.exists() {
                self.ok(&[
                    "--token-file",
                    admin.to_str().unwrap(),
                    "login",
                    "--office",
                    office,
                    "--user",
                    "admin",
                    "--password-file",
                    admin_password.to_str().unwrap(),
                ]);
            }
            let password = self.dir.join(format!("{office}-{user}.password"));
            std::fs::write(
                &password,
                format!("{user}-password-{}\n", rand::random::<u32>()),
            )
            .unwrap();
            self.ok(&[
                "--token-file",
                admin.to_str().unwrap(),
                "officer",
                "add",
                "--office",
                office,
                "--user",
                user,
                "--role",
                roles,
                "--password-file",
                password.to_str().unwrap(),
            ]);
            self.ok(&[
                "--token-file",
                token.to_str().unwrap(),
                "login",
                "--office",
                office,
                "--user",
                user,
                "--password-file",
                password.to_str().unwrap(),
            ]);
        }
        As { fed: self, token }
    }

    /// The officer every test acts as at `office` (all roles but admin).
    pub fn at(&self, office: &str) -> As<'_> {
        self.officer(office, "officer", WORKING_ROLES)
    }
}

impl Drop for Fed {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

/// A valid sample resident ID number (with its check character), distinct per `n`.
pub fn id_number(n: u64) -> String {
    liandong_ops::sample::id_number(n)
}

/// Files a petition at `office` as its officer (petitioner `n`, on `category`); the case id.
pub fn file_case(fed: &Fed, office: &str, n: u64, category: &str) -> String {
    let id = id_number(n);
    let summary = format!("petition {n}");
    let case = fed.at(office).json(&[
        "case",
        "file",
        "--office",
        office,
        "--channel",
        "online",
        "--petitioner-id",
        &id,
        "--name",
        "陈七",
        "--category",
        category,
        "--summary",
        &summary,
    ]);
    case["case_id"].as_str().unwrap().to_string()
}

/// Waits until `liandong verify` passes (the federation is quiescent and consistent); its report.
pub fn verified(fed: &Fed) -> Value {
    let start = std::time::Instant::now();
    loop {
        let out = fed.run(&["verify", "--json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if out.status.success() && report["ok"] == true {
            return report;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "never verified: {report}{}",
            fed.logs_tail()
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// A connection to `addr` presenting `identity` (a certificate of `fed`'s CA).
pub async fn connect(
    fed: &Fed,
    addr: &str,
    identity: liandong_node::tls::HostIdentity,
) -> tonic::transport::Channel {
    use liandong_node::tls;
    let pki = tls::Pki::load(&fed.dir.join("pki")).unwrap();
    let files = tls::TlsFiles {
        ca_pem: pki.ca_cert_pem,
        identity,
    };
    tonic::transport::Endpoint::from_shared(tls::https_uri(addr))
        .unwrap()
        .tls_config(tls::client_config(&files))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A city, one county and one township (three replicas each, on six hosts), up.
/// `federation init` of `region` (not started) with its clock 100,000 times the wall clock's, so
/// limits of days pass in seconds.
pub fn fast_federation(region: &str, max_children: &str, replicas: &str, hosts: u16) -> Fed {
    Fed::init(
        &[
            "--region",
            region,
            "--max-children",
            max_children,
            "--replicas",
            replicas,
            "--time-scale",
            "100000",
        ],
        hosts,
    )
}

/// A fast federation of one office per level from `region` down to a township, one replica
/// each, up: its office codes, root first.
pub fn fast_chain<const N: usize>(region: &str) -> (Fed, [String; N]) {
    let fed = fast_federation(region, "1", "1", N as u16);
    let manifest =
        liandong_node::manifest::Manifest::load(&fed.dir().join("manifest.json")).unwrap();
    let codes: Vec<String> = manifest.offices.iter().map(|o| o.code.clone()).collect();
    assert_eq!(codes.len(), N, "{codes:?}");
    fed.ok(&["up"]);
    (fed, codes.try_into().unwrap())
}

pub fn small_federation() -> Fed {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "1", "--replicas", "3"],
        9,
    );
    fed.ok(&["up"]);
    fed
}

/// (host, pid) of every host as `status` reports them.
pub fn host_pids(fed: &Fed) -> Vec<(String, Value)> {
    let status = fed.json(&["status"]);
    status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["name"].as_str().unwrap().to_string(), h["pid"].clone()))
        .collect()
}

/// An officer writing all along while a test does something to the federation: files cases at
/// `office` and transfers every other one to `to` (a federation message between offices),
/// through the real command line, recording every failure.
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    results: std::sync::Arc<std::sync::Mutex<Vec<Result<(), String>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(fed: std::sync::Arc<Fed>, office: &'static str, to: &'static str) -> Writer {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, results) = (stop.clone(), results.clone());
            std::thread::spawn(move || {
                let mut n = 1;
                while !stop.load(Ordering::SeqCst) {
                    let result = write_once(&fed, office, to, n);
                    results.lock().unwrap().push(result);
                    n += 1;
                }
            })
        };
        Writer {
            stop,
            results,
            thread: Some(thread),
        }
    }

    /// Waits until `count` more writes have been tried.
    pub fn wait_writes(&self, count: usize) {
        let start = std::time::Instant::now();
        let target = self.results.lock().unwrap().len() + count;
        while self.results.lock().unwrap().len() < target {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(180),
                "the writer stalled"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Stops the writer: (writes tried, the failures).
    pub fn stop(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        let results = self.results.lock().unwrap();
        let failed = results.iter().filter_map(|r| r.clone().err()).collect();
        (results.len(), failed)
    }
}

fn write_once(fed: &Fed, office: &str, to: &str, n: u64) -> Result<(), String> {
    let officer = fed.at(office);
    let id = id_number(n);
    let out = officer.run(&[
        "--json",
        "case",
        "file",
        "--office",
        office,
        "--channel",
        "visit",
        "--petitioner-id",
        &id,
        "--name",
        "李四",
        "--category",
        "land",
        "--summary",
        &format!("boundary dispute {n}"),
    ]);
    if !out.status.success() {
        return Err(format!(
            "file {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let case: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let case_id = case["case_id"].as_str().unwrap_or_default().to_string();
    if n.is_multiple_of(2) {
        let out = officer.run(&["case", "transfer", &case_id, "--to", to]);
        if !out.status.success() {
            return Err(format!(
                "transfer {case_id}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(())
}

/// Waits until `done` holds (a federation settles in seconds; a minute is a hang).
pub fn wait_until(fed: &Fed, what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "never happened: {what}{}",
            fed.logs_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Rewrites the stored history of `case_id` at `office` in the host database `db` (its hosts
/// stopped): `officer` in entry `seq`, every hash from there on recomputed and the header's
/// chain head with them. With `resign`, every entry that carried a signature is signed again
/// with that key (an insider holding the office's own key); without, the signatures stay as they
/// were (an attacker with the disk, not the key).
pub fn rewrite_history(
    db: &Path,
    office: &str,
    case_id: &str,
    seq: u32,
    officer: &str,
    resign: Option<&liandong_node::machine::seal::OfficeSigner>,
) {
    use liandong_domain::codec::{decode, encode};
    use liandong_domain::{Case, ChainHead, HistoryEntry};
    use liandong_node::machine::keys;
    use liandong_node::store::keys::{office_prefix, CF_SM};

    let db = liandong_node::store::HostDb::open(db).unwrap();
    let raw = db.raw();
    let cf = raw.cf_handle(CF_SM).unwrap();
    let key = |relative: Vec<u8>| [office_prefix(office), relative].concat();
    let header_key = key(keys::case(case_id));
    let mut header = Case::from_bytes(&raw.get_cf(cf, &header_key).unwrap().unwrap()).unwrap();
    let len = header.history_start.entries;
    let mut entries: Vec<HistoryEntry> = (1..=len)
        .map(|n| {
            decode(
                &raw.get_cf(cf, key(keys::history(case_id, n)))
                    .unwrap()
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    let index = (seq - 1) as usize;
    assert!(
        entries[index].detail.get("officer").is_some(),
        "{:?}",
        entries[index]
    );
    entries[index].detail["officer"] = officer.into();
    for i in index..entries.len() {
        if i > 0 {
            entries[i].prev_hash = entries[i - 1].hash.clone();
        }
        entries[i].hash = entries[i].compute_hash();
        if let Some(signer) = resign.filter(|_| entries[i].signature.is_some()) {
            entries[i].sign(signer);
        }
    }
    for entry in &entries {
        raw.put_cf(cf, key(keys::history(case_id, entry.seq)), encode(entry))
            .unwrap();
    }
    header.history_start = ChainHead::after(entries.last().unwrap());
    raw.put_cf(cf, &header_key, encode(&header)).unwrap();
    raw.flush_cf(cf).unwrap();
}

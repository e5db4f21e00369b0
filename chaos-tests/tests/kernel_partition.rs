//! Proves, with a partition made by the kernel rather than by our own code: the leader's host
//! isolated by nftables rules (no TCP packet leaves it or reaches it over loopback) is replaced by
//! the other two replicas, which keep acknowledging writes; after the rules are deleted the
//! isolated replica catches up (every replica at one applied index and state hash), nothing
//! acknowledged is lost, nothing is registered twice and the history is linearizable.
//!
//! Needs root and `nft` (scripts/setup.sh installs Debian's `nftables` when it runs as root);
//! otherwise the test prints `kernel_partition: skipped: <reason>` and passes.
//!
//! **Why port rules on loopback, plus a cgroup, and not network namespaces.** Every host of a
//! test federation listens on 127.0.0.1 (the manifest's addresses), so hosts cannot be moved into
//! namespaces of their own without rewriting their addresses and routing between namespaces; the
//! test would then no longer run the federation as deployed. On one loopback interface a host is
//! told apart by its ports, but only on the connections it *accepts*: its own outgoing
//! connections (a leader's appends to its followers, a follower's vote requests) leave from
//! ephemeral ports any process may use, so rules on its raft and API ports alone would leave an
//! isolated leader replicating. Hence three rules in one dedicated table, `inet liandong_chaos`,
//! on the output hook (every loopback packet passes it once):
//!
//! 1. TCP to or from the host's listening ports (raft, API, metrics) is dropped;
//! 2. TCP to or from the local ports of the sockets the host already has (its outgoing
//!    connections, read from `/proc`) is dropped;
//! 3. TCP from any socket the host opens from now on is dropped: the host is moved into a cgroup
//!    of its own first, and nftables matches a socket's cgroup (`socket cgroupv2`), fixed when
//!    the socket is created (which is why rule 2 is needed for the older ones).
//!
//! The table, the cgroup and the host's membership in it are removed by a guard's `Drop`, so
//! also when the test fails.

mod common;
mod fault_helpers;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{heal_and_check, ms_summary, require_history, seed, start_loaded, OFFICE};
use fault_helpers::host_of;
use serde_json::json;

const TABLE: &str = "liandong_chaos";
const ISOLATION_HOLD: Duration = Duration::from_secs(6);
const MIN_OPERATIONS: usize = 2_000;

/// Why the test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (nftables rules need CAP_NET_ADMIN)".to_string());
    }
    match Command::new("nft").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`nft --version` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(error) => Some(format!(
            "nft is not available ({error}); scripts/setup.sh installs nftables as root"
        )),
    }
}

fn nft(args: &[&str], script: Option<&str>) -> Result<(), String> {
    let mut command = Command::new("nft");
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| format!("nft: {e}"))?;
    if let (Some(script), Some(mut stdin)) = (script, child.stdin.take()) {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The cgroup v2 hierarchy's mount point, if it is under /sys/fs/cgroup (nftables names a
/// cgroup by its path below /sys/fs/cgroup).
fn cgroup2_mount() -> Result<PathBuf, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    for line in info.lines() {
        let mut halves = line.split(" - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2") {
            if let Some(mount) = left.split_whitespace().nth(4) {
                if mount.starts_with("/sys/fs/cgroup") {
                    return Ok(PathBuf::from(mount));
                }
            }
        }
    }
    Err("no cgroup v2 hierarchy under /sys/fs/cgroup".to_string())
}

/// The local TCP ports of every socket process `pid` holds now.
fn local_ports(pid: i32) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().to_string();
            target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(inode)) = (fields.get(1), fields.get(9)) else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            if let Some(port) = local
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok())
            {
                ports.insert(port);
            }
        }
    }
    ports
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

/// A host isolated by the kernel; everything undone on drop.
struct Isolation {
    pid: i32,
    cgroup: PathBuf,
    root_procs: PathBuf,
    ports: BTreeSet<u16>,
}

impl Isolation {
    fn start(pid: i32, listening: &[u16]) -> Result<Isolation, String> {
        let mount = cgroup2_mount()?;
        let name = format!("liandong_chaos_{}", std::process::id());
        let cgroup = mount.join(&name);
        std::fs::create_dir_all(&cgroup).map_err(|e| format!("{}: {e}", cgroup.display()))?;
        let mut isolation = Isolation {
            pid,
            cgroup: cgroup.clone(),
            root_procs: mount.join("cgroup.procs"),
            ports: BTreeSet::new(),
        };
        // First into the cgroup (sockets opened from now on match rule 3), then read the ports
        // of the sockets it had before (rule 2): no socket escapes both.
        std::fs::write(cgroup.join("cgroup.procs"), pid.to_string())
            .map_err(|e| format!("moving host {pid} into {}: {e}", cgroup.display()))?;
        let mut ports = local_ports(pid);
        ports.extend(listening.iter().copied());
        let relative = cgroup
            .strip_prefix("/sys/fs/cgroup")
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .to_string();
        let elements = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let script = format!(
            "table inet {TABLE} {{\n\
             \tset isolated_ports {{ type inet_service; elements = {{ {elements} }} }}\n\
             \tchain output {{\n\
             \t\ttype filter hook output priority 0; policy accept;\n\
             \t\ttcp sport @isolated_ports drop\n\
             \t\ttcp dport @isolated_ports drop\n\
             \t\tmeta l4proto tcp socket cgroupv2 level 1 \"{relative}\" drop\n\
             \t}}\n\
             }}\n"
        );
        isolation.ports = ports;
        nft(&["-f", "-"], Some(&script))?;
        Ok(isolation)
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        if let Err(error) = nft(&["delete", "table", "inet", TABLE], None) {
            eprintln!("kernel_partition: deleting the nftables table: {error}");
        }
        let _ = std::fs::write(&self.root_procs, self.pid.to_string());
        if let Err(error) = std::fs::remove_dir(&self.cgroup) {
            eprintln!(
                "kernel_partition: removing {}: {error}",
                self.cgroup.display()
            );
        }
    }
}

fn table_exists() -> bool {
    nft(&["list", "table", "inet", TABLE], None).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_isolated_by_nftables_is_replaced_and_catches_up() {
    if let Some(reason) = skip_reason() {
        chaos_tests::figures!("kernel_partition: skipped: {reason}");
        return;
    }
    // A table left by a run that was killed outright.
    let _ = nft(&["delete", "table", "inet", TABLE], None);
    let seed = seed();
    let (cluster, running) = start_loaded(seed, 200).await;
    let (workload, recorder) = (&running.workload, running.recorder.clone());
    let progress = workload.progress();

    let old = cluster
        .wait_for_leader(OFFICE, None, Duration::from_secs(15))
        .await
        .expect("a leader");
    let host_name = host_of(&cluster, OFFICE, old);
    let host = cluster.manifest.host(&host_name).expect("the host").clone();
    let layout = liandong_ops::layout::Layout::new(&cluster.dir);
    let pid = liandong_ops::process::running_pid(&layout, &host_name).expect("the host's pid");
    let listening = [
        port_of(&host.raft_addr),
        port_of(&host.api_addr),
        port_of(&host.metrics_addr),
    ];
    let isolation = Isolation::start(pid, &listening).expect("isolating the leader's host");
    let isolated_at = Instant::now();
    let isolated_ports = isolation.ports.len();
    let writes_at = progress.writes();
    let new = cluster
        .wait_for_leader(OFFICE, Some(old), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the isolated leader kept its office: {e}{}",
                cluster.logs_tail(20)
            )
        });
    let new_leader_after = isolated_at.elapsed();
    assert!(
        workload
            .wait_for_more_writes(100, Duration::from_secs(30))
            .await,
        "the two other replicas acknowledged no write{}",
        cluster.logs_tail(20)
    );
    let first_writes_after = isolated_at.elapsed();
    tokio::time::sleep(ISOLATION_HOLD.saturating_sub(isolated_at.elapsed())).await;
    let writes_while_isolated = progress.writes() - writes_at;
    let (_, replicas) = cluster.office_status(OFFICE).await.expect("status");
    let unreachable: Vec<u64> = replicas
        .iter()
        .filter(|r| r.last_applied.is_none())
        .map(|r| r.id)
        .collect();
    assert!(
        unreachable.contains(&old),
        "the isolated host still answered status: {replicas:?}"
    );
    drop(isolation);
    assert!(!table_exists(), "the nftables table is gone after the heal");
    workload
        .wait_for_more_ops(300, Duration::from_secs(30))
        .await;
    require_history(&recorder, MIN_OPERATIONS, Duration::from_secs(40)).await;
    let figures = json!({
        "isolated_replica": old,
        "isolated_host": host_name,
        "isolated_ports": isolated_ports,
        "new_leader": new,
        "new_leader_ms": ms_summary(&[new_leader_after]),
        "first_writes_after_isolation_ms": ms_summary(&[first_writes_after]),
        "writes_acknowledged_while_isolated": writes_while_isolated,
        "unanswered_status_while_isolated": unreachable,
    });
    heal_and_check("kernel_partition", &cluster, running, seed, figures).await;
}

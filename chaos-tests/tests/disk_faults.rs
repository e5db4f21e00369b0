//! Proves: when a replica's disk fills up, the replica stops cleanly and the office does not.
//! First a follower's disk, then the leader's: each time the faulted replica stops (`Shutdown` in
//! `liandong status`, one error line in its host's log naming the office and the cause, its
//! applied index frozen), the other two keep acknowledging writes (after the leader's disk, under
//! a new leader), and once the disk has room again and the host is restarted (SIGKILL, then
//! `drill restart`: recovery from whatever RocksDB last wrote) the replica catches up and agrees
//! on the state hash. No acknowledged write is lost, nothing is applied twice, every copy is
//! intact, and the client history is linearizable.
//!
//! The disk is real when the test runs as root: every host's data directory is moved onto a
//! 64 MiB tmpfs of its own, and a filler file takes all the room left. 64 MiB is smaller than
//! RocksDB's WAL preallocation (1.1 x the 64 MiB memtable), so the WAL cannot reserve its space
//! up front and a full disk bites at the next write, as it would on a busy disk. Without root (or
//! where mounting is refused) the storage failpoint stands in for the disk (a marker file in the
//! host's data directory, `liandong_node::store::failpoint`), and the figures say so;
//! `LIANDONG_CHAOS_DISK=failpoint` chooses the failpoint as root too.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chaos_tests::cluster::{Cluster, Target};
use common::{heal_and_check, ms_summary, require_history, seed, start, start_workload, OFFICE};
use liandong_node::store::failpoint;
use serde_json::json;

/// The size of each host's tmpfs.
const TMPFS_BYTES: u64 = 64 * 1024 * 1024;
/// The filler's name, in the host's data directory.
const FILLER: &str = "filler.bin";
/// How long a faulted replica may take to stop, and a restarted one to catch up.
const OBSERVE: Duration = Duration::from_secs(30);
/// Set to `failpoint` to use the failpoint even as root (to test the failpoint itself).
const FORCE_FAILPOINT_ENV: &str = "LIANDONG_CHAOS_DISK";
/// Operations the history must hold before healing, so the checks are not vacuous.
const MIN_OPERATIONS: usize = 2_000;

/// How the disk is made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disk {
    /// A real full file system: a tmpfs per host, filled up.
    Tmpfs,
    /// The storage failpoint (not root, or mounting refused).
    Failpoint,
}

/// The tmpfs mounts made by this test, unmounted on drop (after the hosts have stopped: declare
/// it before the cluster, so the cluster drops first), whatever happened in between.
#[derive(Default)]
struct Mounts {
    points: Vec<PathBuf>,
}

impl Mounts {
    /// Mounts a tmpfs at `point` (an empty directory).
    fn mount(&mut self, point: &Path) -> Result<(), String> {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_BYTES}"), "tmpfs"])
            .arg(point)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        self.points.push(point.to_path_buf());
        Ok(())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for point in self.points.drain(..).rev() {
            let unmounted = Command::new("umount")
                .arg(&point)
                .status()
                .is_ok_and(|s| s.success());
            if !unmounted {
                // Something still holds a file open: detach it now, the kernel frees it later.
                let _ = Command::new("umount").arg("-l").arg(&point).status();
            }
            let _ = std::fs::remove_dir_all(&point);
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The host carrying `replica` of the office.
fn host_of(cluster: &Cluster, replica: u64) -> String {
    cluster
        .manifest
        .office(OFFICE)
        .and_then(|office| office.members.iter().find(|m| m.id == replica))
        .map(|m| m.host.clone())
        .expect("the office has that replica")
}

fn data_dir(cluster: &Cluster, replica: u64) -> PathBuf {
    liandong_ops::layout::Layout::new(&cluster.dir).data_dir(&host_of(cluster, replica))
}

/// Moves every host's data directory onto a tmpfs of its own: all hosts killed, each directory
/// copied onto its new file system, all restarted. Falls back to the failpoint (and says why)
/// when not root or when mounting is refused.
async fn move_onto_tmpfs(cluster: &Cluster, mounts: &mut Mounts) -> (Disk, String) {
    if std::env::var(FORCE_FAILPOINT_ENV).is_ok_and(|v| v == "failpoint") {
        return (
            Disk::Failpoint,
            format!("{FORCE_FAILPOINT_ENV}=failpoint: the storage failpoint"),
        );
    }
    if !is_root() {
        return (
            Disk::Failpoint,
            "not root: the storage failpoint".to_string(),
        );
    }
    for replica in 1..=3 {
        cluster
            .drill("kill", OFFICE, Target::Replica(replica))
            .await
            .expect("drill kill");
    }
    let mut refused = None;
    for replica in 1..=3 {
        let dir = data_dir(cluster, replica);
        let saved = dir.with_extension("on-disk");
        std::fs::rename(&dir, &saved).expect("moving the data directory aside");
        std::fs::create_dir_all(&dir).expect("a mount point");
        if let Err(reason) = mounts.mount(&dir) {
            refused = Some(reason);
        }
        copy_tree(&saved, &dir).expect("copying the data directory");
        std::fs::remove_dir_all(&saved).expect("removing the old copy");
    }
    cluster
        .drill("restart", OFFICE, Target::All)
        .await
        .expect("drill restart");
    cluster
        .wait_for_leader(OFFICE, None, Duration::from_secs(30))
        .await
        .expect("a leader on the tmpfs data directories");
    match refused {
        Some(reason) => (
            Disk::Failpoint,
            format!("mounting a tmpfs was refused ({reason}): the storage failpoint"),
        ),
        None => (
            Disk::Tmpfs,
            format!("a real full disk: one {TMPFS_BYTES}-byte tmpfs per host, filled up"),
        ),
    }
}

/// Makes the disk of `replica`'s host fail. Returns the filler's size (0 for the failpoint).
async fn fill(cluster: &Cluster, disk: Disk, replica: u64) -> u64 {
    let dir = data_dir(cluster, replica);
    match disk {
        Disk::Failpoint => {
            std::fs::write(failpoint::marker(&dir), b"disk_faults test\n").expect("the marker");
            0
        }
        Disk::Tmpfs => tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::create(dir.join(FILLER)).expect("the filler");
            let mut written = 0u64;
            // Big chunks while they fit, then pages, until not one more byte fits.
            for chunk in [1 << 20, 4096, 1] {
                let buffer = vec![0xa5u8; chunk];
                while file.write_all(&buffer).is_ok() {
                    written += chunk as u64;
                }
            }
            // Whatever the page cache holds goes to tmpfs pages too; a failure here is the
            // full disk itself.
            let _ = file.sync_all();
            written
        })
        .await
        .expect("the filler thread"),
    }
}

/// Gives the disk of `replica`'s host its room back.
fn clear(cluster: &Cluster, disk: Disk, replica: u64) {
    let dir = data_dir(cluster, replica);
    let path = match disk {
        Disk::Failpoint => failpoint::marker(&dir),
        Disk::Tmpfs => dir.join(FILLER),
    };
    std::fs::remove_file(path).expect("clearing the disk fault");
}

/// (state, last_applied) of one replica as `status` shows it.
async fn replica_state(cluster: &Cluster, replica: u64) -> Option<(String, u64)> {
    let (_, replicas) = cluster.office_status(OFFICE).await.ok()?;
    replicas
        .into_iter()
        .find(|r| r.id == replica)
        .and_then(|r| Some((r.state?, r.last_applied?)))
}

/// Waits until `status` shows the replica stopped; how long that took.
async fn wait_stopped(cluster: &Cluster, replica: u64) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < OBSERVE {
        if replica_state(cluster, replica)
            .await
            .is_some_and(|(state, _)| state == "Shutdown")
        {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The host log's lines saying a replica of the office stopped, with the escape codes removed.
fn stop_lines(cluster: &Cluster, replica: u64) -> Vec<String> {
    let log = cluster
        .dir
        .join("run")
        .join(format!("{}.log", host_of(cluster, replica)));
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut plain = String::new();
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                } else {
                    plain.push(c);
                }
            }
            plain
        })
        .filter(|line| {
            line.contains("replica stopped") && line.contains(&format!("office={OFFICE}"))
        })
        .collect()
}

/// What one fault did.
struct Fault {
    replica: u64,
    role: &'static str,
    filler_bytes: u64,
    stopped_after: Duration,
    /// Writes the office acknowledged while the replica was stopped.
    writes_while_stopped: u64,
    /// The replica's applied index when it stopped, and a moment later.
    applied_frozen: (u64, u64),
    new_leader_after: Option<Duration>,
    caught_up_after: Duration,
    log_line: String,
}

/// One disk fault on `replica`, from filling its disk to its catching up after the restart.
async fn disk_fault(
    cluster: &Cluster,
    running: &common::Running,
    disk: Disk,
    replica: u64,
    role: &'static str,
) -> Fault {
    let progress = running.workload.progress();
    let lines_before = stop_lines(cluster, replica).len();
    let at = Instant::now();
    let filler_bytes = fill(cluster, disk, replica).await;
    let stopped_after = wait_stopped(cluster, replica).await.unwrap_or_else(|| {
        panic!(
            "replica {replica} ({role}) did not stop after its disk filled up{}",
            cluster.logs_tail(20)
        )
    });
    let new_leader_after = if role == "leader" {
        let leader = cluster
            .wait_for_leader(OFFICE, Some(replica), Duration::from_secs(15))
            .await
            .expect("a new leader after the leader's disk filled up");
        assert_ne!(leader, replica);
        Some(at.elapsed())
    } else {
        None
    };
    let applied_at_stop = replica_state(cluster, replica)
        .await
        .map_or(0, |(_, applied)| applied);
    // The other two keep serving.
    let writes_before = progress.writes();
    assert!(
        running
            .workload
            .wait_for_more_writes(50, Duration::from_secs(20))
            .await,
        "the office stopped acknowledging writes when replica {replica}'s ({role}) disk filled up{}",
        cluster.logs_tail(20)
    );
    let writes_while_stopped = progress.writes() - writes_before;
    // The stopped replica applies (and acknowledges) nothing more.
    let (state, applied_later) = replica_state(cluster, replica)
        .await
        .expect("the stopped replica's host answers status");
    assert_eq!(state, "Shutdown", "replica {replica} came back on its own");
    assert_eq!(
        applied_at_stop, applied_later,
        "stopped replica {replica} kept applying entries"
    );
    let lines = stop_lines(cluster, replica);
    assert!(
        lines.len() > lines_before,
        "host of replica {replica} logged no line naming office {OFFICE} as stopped{}",
        cluster.logs_tail(20)
    );
    let log_line = lines.last().cloned().unwrap_or_default();
    assert!(
        log_line.contains("No space left on device"),
        "the stop line does not name the cause: {log_line}"
    );

    // Room again; the host restarted from a crash (SIGKILL: no graceful flush to hide behind).
    clear(cluster, disk, replica);
    let (leader, replicas) = cluster.office_status(OFFICE).await.expect("status");
    let target = leader
        .and_then(|l| replicas.iter().find(|r| r.id == l))
        .and_then(|r| r.last_applied)
        .unwrap_or(0);
    cluster
        .drill("kill", OFFICE, Target::Replica(replica))
        .await
        .expect("drill kill");
    let restart = Instant::now();
    cluster
        .drill("restart", OFFICE, Target::Replica(replica))
        .await
        .expect("drill restart");
    loop {
        if let Some((state, applied)) = replica_state(cluster, replica).await {
            if state != "Shutdown" && applied >= target {
                break;
            }
        }
        assert!(
            restart.elapsed() < OBSERVE,
            "replica {replica} did not catch up to {target} after its restart{}",
            cluster.logs_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Fault {
        replica,
        role,
        filler_bytes,
        stopped_after,
        writes_while_stopped,
        applied_frozen: (applied_at_stop, applied_later),
        new_leader_after,
        caught_up_after: restart.elapsed(),
        log_line,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_replica_never_the_office() {
    let seed = seed();
    // Declared before the cluster: dropped after it, once its hosts have stopped.
    let mut mounts = Mounts::default();
    let cluster = start().await;
    let (disk, how) = move_onto_tmpfs(&cluster, &mut mounts).await;
    chaos_tests::figures!("disk_faults: {how}");
    let running = start_workload(&cluster, seed);
    assert!(
        running
            .workload
            .wait_for_more_ops(200, Duration::from_secs(30))
            .await,
        "the workload made no progress before any fault{}",
        cluster.logs_tail(20)
    );

    let leader = cluster
        .wait_for_leader(OFFICE, None, Duration::from_secs(15))
        .await
        .expect("a leader");
    let follower = (1..=3).find(|&r| r != leader).expect("a follower");
    let mut faults = vec![disk_fault(&cluster, &running, disk, follower, "follower").await];
    running
        .workload
        .wait_for_more_ops(300, Duration::from_secs(30))
        .await;
    let leader = cluster
        .wait_for_leader(OFFICE, None, Duration::from_secs(15))
        .await
        .expect("a leader");
    faults.push(disk_fault(&cluster, &running, disk, leader, "leader").await);

    let recorder = running.recorder.clone();
    require_history(&recorder, MIN_OPERATIONS, Duration::from_secs(60)).await;
    let figures = json!({
        "disk": match disk { Disk::Tmpfs => "tmpfs", Disk::Failpoint => "failpoint" },
        "how": how,
        "faults_injected": faults.len(),
        "faulted": faults.iter().map(|f| json!({
            "replica": f.replica,
            "role": f.role,
            "filler_bytes": f.filler_bytes,
            "stopped_after_ms": f.stopped_after.as_millis() as u64,
            "new_leader_after_ms": f.new_leader_after.map(|d| d.as_millis() as u64),
            "writes_acknowledged_while_stopped": f.writes_while_stopped,
            "applied_index_while_stopped": [f.applied_frozen.0, f.applied_frozen.1],
            "caught_up_after_restart_ms": f.caught_up_after.as_millis() as u64,
            "log_line": f.log_line.split("ERROR").nth(1).unwrap_or(&f.log_line).trim(),
        })).collect::<Vec<_>>(),
        "stopped_after_ms": ms_summary(&faults.iter().map(|f| f.stopped_after).collect::<Vec<_>>()),
        "caught_up_after_restart_ms": ms_summary(&faults.iter().map(|f| f.caught_up_after).collect::<Vec<_>>()),
    });
    let checks = heal_and_check("disk_faults", &cluster, running, seed, figures.clone()).await;
    chaos_tests::figures!(
        "{}",
        json!({
            "test": "disk_faults",
            "seed": seed,
            "disk": figures["disk"],
            "faults_injected": faults.len(),
            "operations_in_history": recorder.len(),
            "invariants_ok": checks.iter().filter(|c| c.ok).count(),
            "invariants": checks.len(),
            "stopped_after_ms": figures["stopped_after_ms"],
            "caught_up_after_restart_ms": figures["caught_up_after_restart_ms"],
        })
    );
}

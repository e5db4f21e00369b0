//! Host processes on this machine: start (detached, logs and pid files under `DIR/run/`), stop,
//! kill, pause, resume, and tell whether one is alive.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use liandong_node::manifest::Manifest;

use crate::layout::Layout;

/// Environment variable naming the `liandong-node` binary (else: beside `liandong`, else PATH).
pub const NODE_BIN_ENV: &str = "LIANDONG_NODE_BIN";
/// How long `down` waits for a host to finish its graceful shutdown before SIGKILL.
pub const STOP_GRACE_MS: u64 = 10_000;

/// The command that runs a host: the program named by the environment; else this very
/// `liandong` program's hidden `node` subcommand (the command line and its hosts are then always
/// the same build); else a `liandong` or `liandong-node` beside this program (benchmarks and
/// tests run from target/<profile>/ or its deps/); else `liandong-node` from PATH.
pub fn node_command() -> (PathBuf, Vec<&'static str>) {
    if let Some(path) = std::env::var_os(NODE_BIN_ENV) {
        return (PathBuf::from(path), Vec::new());
    }
    let Ok(exe) = std::env::current_exe() else {
        return (PathBuf::from("liandong-node"), Vec::new());
    };
    if exe.file_name().is_some_and(|name| name == "liandong") {
        return (exe, vec!["node"]);
    }
    let dirs = [exe.parent(), exe.parent().and_then(Path::parent)];
    for dir in dirs.into_iter().flatten() {
        if dir.join("liandong").exists() {
            return (dir.join("liandong"), vec!["node"]);
        }
        if dir.join("liandong-node").exists() {
            return (dir.join("liandong-node"), Vec::new());
        }
    }
    (PathBuf::from("liandong-node"), Vec::new())
}

/// The pid recorded for `host`, if its process is still a running liandong-node.
pub fn running_pid(layout: &Layout, host: &str) -> Option<i32> {
    let text = fs::read_to_string(layout.pid_file(host)).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    is_alive(pid).then_some(pid)
}

/// True if `pid` is a live (not zombie) liandong host process. Reaps it if it is our own child.
pub fn is_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the parenthesised command name.
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next());
    if state == Some("Z") {
        return !zombie_is_done(pid);
    }
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| String::from_utf8_lossy(&cmdline).contains("liandong"))
        .unwrap_or(false)
}

/// Whether a process whose main thread shows `Z` has wholly ended. A killed multi-threaded
/// process shows its main thread as a zombie while its other threads are still exiting (one
/// in the middle of an fsync finishes it first) and still hold its open files, RocksDB's
/// lock among them: a restart in that window cannot open the store. So it has ended only
/// when it is reaped (our child: `waitpid` returns it, which the kernel allows only after
/// every thread has gone) or, not being our child, when no thread but the main one is left.
fn zombie_is_done(pid: i32) -> bool {
    // SAFETY: waitpid with WNOHANG on a specific pid has no memory-safety preconditions.
    let reaped = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    if reaped == pid {
        return true;
    }
    if reaped == 0 {
        // Our child, and the kernel is still waiting for its threads.
        return false;
    }
    only_main_thread_left(pid)
}

/// True if `/proc/<pid>/task` lists no thread but `pid` itself (or the process is gone).
fn only_main_thread_left(pid: i32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks
        .filter_map(Result::ok)
        .all(|task| task.file_name().to_str() == Some(pid.to_string().as_str()))
}

/// Starts `host` in the background unless it is already running; returns its pid.
pub fn start_host(
    layout: &Layout,
    host: &str,
    extra_env: &[(String, String)],
) -> anyhow::Result<i32> {
    if let Some(pid) = running_pid(layout, host) {
        return Ok(pid);
    }
    fs::create_dir_all(layout.run_dir())?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.log_file(host))
        .with_context(|| format!("opening {}", layout.log_file(host).display()))?;
    let (binary, prefix) = node_command();
    let mut command = Command::new(&binary);
    command
        .args(prefix)
        .arg("--config")
        .arg(layout.host_config(host))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    // A process group of its own: the host outlives this command and ignores its terminal.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .spawn()
        .with_context(|| format!("starting {} (set {NODE_BIN_ENV})", binary.display()))?;
    let pid = i32::try_from(child.id()).map_err(|_| anyhow!("pid out of range"))?;
    fs::write(layout.pid_file(host), format!("{pid}\n"))?;
    Ok(pid)
}

pub fn signal(pid: i32, signal: i32) -> anyhow::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let result = unsafe { libc::kill(pid, signal) };
    if result != 0 {
        bail!(
            "signal {signal} to pid {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// SIGKILLs `host` (a crash, for drills) and waits until it is gone.
pub fn kill_host(layout: &Layout, host: &str) -> anyhow::Result<Option<i32>> {
    let Some(pid) = running_pid(layout, host) else {
        return Ok(None);
    };
    signal(pid, libc::SIGKILL)?;
    wait_gone(pid, Duration::from_secs(5));
    Ok(Some(pid))
}

/// SIGTERMs `host`, waits for its graceful shutdown, SIGKILLs it after the grace period.
pub fn stop_host(layout: &Layout, host: &str) -> anyhow::Result<Option<i32>> {
    let Some(pid) = running_pid(layout, host) else {
        let _ = fs::remove_file(layout.pid_file(host));
        return Ok(None);
    };
    signal(pid, libc::SIGTERM)?;
    if !wait_gone(pid, Duration::from_millis(STOP_GRACE_MS)) {
        signal(pid, libc::SIGKILL)?;
        wait_gone(pid, Duration::from_secs(5));
    }
    let _ = fs::remove_file(layout.pid_file(host));
    Ok(Some(pid))
}

fn wait_gone(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !is_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    !is_alive(pid)
}

/// The hosts that carry `office`, by replica id.
pub fn office_hosts(manifest: &Manifest, office: &str) -> anyhow::Result<Vec<(u64, String)>> {
    let entry = manifest
        .office(office)
        .ok_or_else(|| anyhow!("no office {office} in this federation"))?;
    Ok(entry
        .members
        .iter()
        .map(|member| (member.id, member.host.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process whose main thread has exited while another thread still runs shows `Z`
    /// in `/proc/<pid>/stat`; it still holds its files, so it is not gone until that
    /// thread ends too.
    #[test]
    fn a_zombie_main_thread_with_a_live_thread_is_still_alive() {
        // bash's main thread cannot exit alone, so a tiny program does it: the main thread
        // calls pthread_exit while a second thread sleeps, then exits the process.
        let dir = std::env::temp_dir().join(format!("liandong-zombie-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let source = dir.join("leader_exits.c");
        fs::write(
            &source,
            r#"#include <pthread.h>
#include <unistd.h>
#include <stdlib.h>
static void *worker(void *arg) { (void)arg; usleep(800000); exit(0); }
int main(void) { pthread_t t; pthread_create(&t, 0, worker, 0); pthread_exit(0); }
"#,
        )
        .unwrap();
        let binary = dir.join("liandong_leader_exits");
        // A C compiler is there wherever this builds: RocksDB's C++ needs one.
        let status = Command::new("cc")
            .arg("-pthread")
            .arg("-o")
            .arg(&binary)
            .arg(&source)
            .status()
            .expect("running cc");
        assert!(status.success(), "compiling the helper program");
        let mut child = Command::new(&binary).spawn().unwrap();
        let pid = child.id() as i32;
        // Wait until the main thread shows as a zombie.
        let start = Instant::now();
        loop {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let state = stat.rsplit(')').next().unwrap().split_whitespace().next();
            if state == Some("Z") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "never became a zombie"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            !zombie_is_done(pid),
            "a zombie main thread with a live thread counts as gone"
        );
        assert!(!only_main_thread_left(pid));
        // Once the other thread exits, it is reaped and gone.
        let start = Instant::now();
        while !zombie_is_done(pid) {
            assert!(start.elapsed() < Duration::from_secs(5), "never reaped");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Reaped by `zombie_is_done`: nothing is left for the handle to wait for.
        assert!(child.try_wait().is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}

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
        // SAFETY: waitpid with WNOHANG on a specific pid has no memory-safety preconditions.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        return false;
    }
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| String::from_utf8_lossy(&cmdline).contains("liandong"))
        .unwrap_or(false)
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

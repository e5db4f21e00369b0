//! The processes a benchmark starts itself (etcd members, PostgreSQL servers): each held by a
//! guard that stops it when dropped, so an error, a panic or an interruption
//! ([`until_interrupted`]) leaves nothing running.

use std::fs::File;
use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

/// How long a stopped process may take to exit before it is killed.
pub const STOP_GRACE_MS: u64 = 10_000;
/// How often a stopping process, or a server coming up, is checked.
pub const POLL_INTERVAL_MS: u64 = 20;

/// A child process, stopped with `stop_signal` (then SIGKILL after [`STOP_GRACE_MS`]) on drop.
pub struct ChildGuard {
    name: String,
    child: Child,
    stop_signal: libc::c_int,
}

impl ChildGuard {
    /// Starts `command` with its output appended to `log`.
    pub fn spawn(
        name: &str,
        command: &mut Command,
        log: &Path,
        stop_signal: libc::c_int,
    ) -> anyhow::Result<ChildGuard> {
        let output = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(ChildGuard {
            name: name.to_string(),
            child,
            stop_signal,
        })
    }

    /// An error naming the process and its log if it has exited.
    pub fn check_running(&mut self, log: &Path) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(anyhow!(
                "{} exited ({status}); its log: {}",
                self.name,
                log.display()
            )),
        }
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; it cannot have been reaped (try_wait above).
        unsafe { libc::kill(pid, self.stop_signal) };
        let deadline = Instant::now() + Duration::from_millis(STOP_GRACE_MS);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
        eprintln!(
            "{} did not stop within {STOP_GRACE_MS} ms: killed",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `work` until it ends or the process receives SIGINT, SIGTERM or SIGHUP. On a signal,
/// `work` is dropped (its guards stop whatever it started) and an error is returned.
pub async fn until_interrupted<T>(
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        outcome = work => outcome,
        _ = interrupt.recv() => Err(anyhow!("interrupted (SIGINT); everything started was stopped")),
        _ = terminate.recv() => Err(anyhow!("terminated (SIGTERM); everything started was stopped")),
        _ = hangup.recv() => Err(anyhow!("hung up (SIGHUP); everything started was stopped")),
    }
}

/// Polls `probe` every [`POLL_INTERVAL_MS`] until it answers `Ok(true)`, or fails after
/// `timeout` with the last error seen.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("not yet");
    loop {
        match probe().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => last = format!("{error:#}"),
        }
        if Instant::now() >= deadline {
            return Err(anyhow!("{what}: not ready after {timeout:?} ({last})"));
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// The first program called `name` on PATH.
pub fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The first line `program args` prints (a version string), or an empty string.
pub fn first_line_of(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// The machine's 1-minute load average (`/proc/loadavg`): how busy a shared machine was.
pub fn load_average_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

//! How far a long command is, on stderr: the one helper every long command of `liandong`
//! shows its progress with (`verify` keeps its own, shown from a timer while it reads
//! concurrently).

use std::io::{IsTerminal, Write};

/// Shows how far a long task is (a backup's copy, a restore's replicas, `federation init`'s
/// keys and certificates), on a terminal only (stderr): one line, rewritten. Where stderr is
/// not a terminal, [`Progress::summary`] gives one line at the end instead.
pub struct Progress {
    shown: bool,
    what: String,
    total: u64,
    last_percent: Option<u64>,
    /// Counts bytes (shown in MiB), else items.
    bytes: bool,
}

impl Progress {
    pub fn new(what: String, total: u64, bytes: bool) -> Progress {
        Progress {
            shown: std::io::stderr().is_terminal(),
            what,
            total,
            last_percent: None,
            bytes,
        }
    }

    pub fn at(&mut self, done: u64) {
        if !self.shown {
            return;
        }
        let percent = (done.saturating_mul(100))
            .checked_div(self.total)
            .unwrap_or(100);
        if self.last_percent == Some(percent) {
            return;
        }
        self.last_percent = Some(percent);
        if self.bytes {
            let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
            eprint!(
                "\r{}: {:.1} of {:.1} MiB ({percent}%)",
                self.what,
                mib(done),
                mib(self.total)
            );
        } else {
            eprint!("\r{}: {done} of {} ({percent}%)", self.what, self.total);
        }
        let _ = std::io::stderr().flush();
    }

    pub fn done(&self) {
        if self.shown && self.last_percent.is_some() {
            eprintln!();
        }
    }

    /// The line that sums the task up, on stderr when it is not a terminal (a log, a script):
    /// there the progress line was not shown.
    pub fn summary(&self, line: &str) {
        if !self.shown {
            eprintln!("{line}");
        }
    }
}

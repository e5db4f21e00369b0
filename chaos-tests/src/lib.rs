//! Liandong's chaos tests: real `liandong-node` processes on loopback, a concurrent client
//! workload that records its history, faults injected with `liandong drill`, and checkers for the
//! invariants of docs/design.md over the history and the replicas' final state.
//!
//! - [`history`]: the recorded client history (invoke/complete times, outcomes ok/fail/unknown)
//! - [`linearizability`]: a Wing & Gong / Lowe checker, per case (P-compositionality)
//! - [`cluster`]: a federation in a temporary folder; drills; every replica's copy of a case
//! - [`workload`]: concurrent officer clients straight to the hosts' API ports
//! - [`invariants`]: durability, no duplicates, integrity, linearizability: `{name, ok, detail}`
//! - [`sim`]: the deterministic simulation of offices and the federation protocol, one seed per run
pub mod cluster;
pub mod history;
pub mod invariants;
pub mod linearizability;
pub mod sim;
pub mod workload;

/// Prints one line of a test's figures where `cargo test` shows it even for a passing test:
/// straight to the process's stderr, past libtest's output capture (which takes only what the
/// `print!` family writes).
pub fn report_figures(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// `println!` for figures: see [`report_figures`].
#[macro_export]
macro_rules! figures {
    ($($arg:tt)*) => {
        $crate::report_figures(format_args!($($arg)*))
    };
}

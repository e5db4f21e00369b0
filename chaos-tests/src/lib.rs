//! Liandong's chaos tests: real `liandong-node` processes on loopback, a concurrent client
//! workload that records its history, faults injected with `liandong drill`, and checkers for the
//! invariants of shared/DESIGN.md over the history and the replicas' final state.
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

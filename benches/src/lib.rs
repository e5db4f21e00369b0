//! Benchmarks against real processes on loopback: Liandong (a temporary federation of
//! `liandong-node` hosts) and, beside it in the same run, the anchors it is measured against:
//! a 3-member etcd cluster and a PostgreSQL primary with a synchronous standby. Every system
//! gets the same closed-loop load ([`load`]); each run writes a [`report::RunReport`], and
//! `bench-report` compares a set of runs. Speed is measured here, never asserted in tests.

pub mod documents;
pub mod etcd;
pub mod liandong;
pub mod load;
pub mod postgres;
pub mod process;
pub mod report;

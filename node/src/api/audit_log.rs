//! The audit records of calls that wrote nothing (reads of personal data, refusals, logins,
//! operators' status calls), waiting per office to be appended to its log in batches: one Raft
//! entry per office per flush, not one per call. A write's own record rides in the write's entry
//! (`Operation::Audited`) and never waits here.
//!
//! Bounded: at most [`AUDIT_PENDING_MAX`] records wait per office. Past that, an authenticated
//! call is refused (UNAVAILABLE) rather than served unrecorded; calls without any credential
//! stop being recorded one by one at [`AUDIT_PENDING_ANONYMOUS_MAX`] and are counted into one
//! record instead, so nobody can fill the log without signing in.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use liandong_domain::OfficeCode;
use tonic::Status;

use super::propose::Proposer;
use crate::clock::wall_ms;
use crate::machine::audit::AUDIT_BATCH_MAX;
use crate::raft::types::{AuditRecord, Operation};
use crate::worker::{Step, Worker};

/// Records waiting per office at most.
pub const AUDIT_PENDING_MAX: usize = 10_000;
/// Above this many waiting records, refusals of calls without credentials are only counted.
pub const AUDIT_PENDING_ANONYMOUS_MAX: usize = 1_000;
/// How often waiting records are appended.
pub const AUDIT_FLUSH_MS: u64 = 1_000;

#[derive(Default)]
struct Pending {
    records: VecDeque<AuditRecord>,
    /// Refusals without credentials not recorded one by one (see the module doc).
    anonymous_uncounted: u64,
}

/// Every office's waiting records on this host.
#[derive(Default)]
pub struct AuditLog {
    pending: Mutex<BTreeMap<OfficeCode, Pending>>,
}

impl AuditLog {
    fn with<R>(&self, office: &OfficeCode, f: impl FnOnce(&mut Pending) -> R) -> R {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(pending.entry(office.clone()).or_default())
    }

    /// Queues `record`; an identical call just queued is counted into it instead.
    pub fn record(&self, office: &OfficeCode, record: AuditRecord) -> Result<(), Status> {
        let record = record.bounded();
        self.with(office, |pending| {
            if let Some(last) = pending.records.back_mut() {
                if last.same_call(&record) {
                    last.count = last.count.saturating_add(1);
                    return Ok(());
                }
            }
            if pending.records.len() >= AUDIT_PENDING_MAX {
                return Err(Status::unavailable(format!(
                    "office {office}'s audit log cannot keep up ({AUDIT_PENDING_MAX} records \
                     waiting): try again shortly"
                )));
            }
            pending.records.push_back(record);
            Ok(())
        })
    }

    /// Queues the record of a refused call; a refusal without credentials beyond
    /// [`AUDIT_PENDING_ANONYMOUS_MAX`] waiting records is only counted.
    pub fn record_refusal(&self, office: &OfficeCode, record: AuditRecord, anonymous: bool) {
        let crowded = self.with(office, |pending| {
            let crowded = pending.records.len() >= AUDIT_PENDING_ANONYMOUS_MAX;
            if anonymous && crowded {
                pending.anonymous_uncounted += 1;
            }
            crowded
        });
        if !(anonymous && crowded) && self.record(office, record).is_err() {
            self.with(office, |pending| pending.anonymous_uncounted += 1);
        }
    }

    /// Takes up to [`AUDIT_BATCH_MAX`] waiting records of every office that has some.
    fn take_round(&self) -> Vec<(OfficeCode, Vec<AuditRecord>)> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut round = Vec::new();
        for (office, waiting) in pending.iter_mut() {
            if waiting.records.is_empty() && waiting.anonymous_uncounted == 0 {
                continue;
            }
            let take = waiting.records.len().min(AUDIT_BATCH_MAX);
            let mut batch: Vec<AuditRecord> = waiting.records.drain(..take).collect();
            if waiting.anonymous_uncounted > 0 && batch.len() < AUDIT_BATCH_MAX {
                batch.push(AuditRecord {
                    at_ms: wall_ms(),
                    user: "-".into(),
                    office: office.to_string(),
                    rpc: "*".into(),
                    case_id: String::new(),
                    request_id: String::new(),
                    result: "unauthenticated: calls without credentials, counted not listed".into(),
                    detail: String::new(),
                    count: u32::try_from(waiting.anonymous_uncounted).unwrap_or(u32::MAX),
                });
                waiting.anonymous_uncounted = 0;
            }
            round.push((office.clone(), batch));
        }
        round
    }

    /// Puts a batch that could not be appended back at the front (order kept).
    fn put_back(&self, office: &OfficeCode, batch: Vec<AuditRecord>) {
        self.with(office, |pending| {
            for record in batch.into_iter().rev() {
                pending.records.push_front(record);
            }
            while pending.records.len() > AUDIT_PENDING_MAX {
                pending.records.pop_back();
                pending.anonymous_uncounted += 1;
            }
        });
    }

    /// Whether any office has records waiting.
    pub fn is_empty(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .all(|p| p.records.is_empty() && p.anonymous_uncounted == 0)
    }
}

/// Appends every office's waiting records, one batch per office per round.
pub struct AuditFlusher {
    trust: std::sync::Arc<super::auth::Trust>,
    proposer: Proposer,
}

impl AuditFlusher {
    pub fn new(trust: std::sync::Arc<super::auth::Trust>, proposer: Proposer) -> AuditFlusher {
        AuditFlusher { trust, proposer }
    }
}

impl Worker for AuditFlusher {
    fn name(&self) -> String {
        "audit log".into()
    }

    async fn work(&mut self) -> Result<Step, String> {
        let log = &self.trust.audit;
        let mut errors = Vec::new();
        let mut more = false;
        for (office, records) in log.take_round() {
            more |= records.len() >= AUDIT_BATCH_MAX;
            let op = Operation::Audit {
                records: records.clone(),
            };
            if let Err(status) = self.proposer.propose(&office, op).await {
                errors.push(format!("{office}: {}", status.message()));
                log.put_back(&office, records);
            }
        }
        if errors.is_empty() {
            // A full batch: more may be waiting, append it now rather than in a second.
            Ok(if more { Step::Busy } else { Step::Idle })
        } else {
            Err(format!(
                "audit records not appended yet: {}",
                errors.join("; ")
            ))
        }
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(Duration::from_millis(AUDIT_FLUSH_MS)).await;
    }
}

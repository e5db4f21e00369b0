//! The audit records of calls that wrote nothing (reads of personal data, refusals, logins,
//! operators' status calls), waiting per office to be appended to its log in batches: one Raft
//! entry per office per flush, not one per call. A write's own record rides in the write's entry
//! (`Operation::Audited`) and never waits here.
//!
//! Operators' status calls read no case and no personal data; their records wait until the
//! office has another record to append, or at most [`AUDIT_OBSERVATION_FLUSH_MS`]. Appending
//! one is a Raft write, which wakes a quiesced office: a monitor polling `liandong status` must
//! not keep every office of an idle federation awake. The hops of an ancestor office's fresh
//! query are recorded the same way: they read only index summaries, and the supervisor who
//! asked is recorded at once where they signed in.
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
/// How long a call refused because too many records wait is told to wait before trying again
/// (about the time one flush of a full batch takes).
pub const AUDIT_RETRY_AFTER_MS: u64 = 200;
/// Above this many waiting records, refusals of calls without credentials are only counted.
pub const AUDIT_PENDING_ANONYMOUS_MAX: usize = 1_000;
/// How often waiting records are appended.
pub const AUDIT_FLUSH_MS: u64 = 1_000;
/// How long the records of status calls may wait when nothing else is waiting.
pub const AUDIT_OBSERVATION_FLUSH_MS: u64 = 600_000;

#[derive(Default)]
struct Pending {
    records: VecDeque<AuditRecord>,
    /// Whether a record other than a status call's is waiting (appended at the next flush).
    urgent: bool,
    /// When the oldest waiting record was queued (wall ms).
    oldest_ms: Option<i64>,
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
        self.queue(office, record, true)
    }

    /// Queues the record of a status call (see the module doc).
    pub fn record_observation(
        &self,
        office: &OfficeCode,
        record: AuditRecord,
    ) -> Result<(), Status> {
        self.queue(office, record, false)
    }

    fn queue(&self, office: &OfficeCode, record: AuditRecord, urgent: bool) -> Result<(), Status> {
        let record = record.bounded();
        self.with(office, |pending| {
            pending.urgent |= urgent;
            pending.oldest_ms.get_or_insert_with(wall_ms);
            if let Some(last) = pending.records.back_mut() {
                if last.same_call(&record) {
                    last.count = last.count.saturating_add(1);
                    return Ok(());
                }
            }
            if pending.records.len() >= AUDIT_PENDING_MAX {
                return Err(federation_proto::retry_later(
                    format!(
                        "office {office}'s audit log cannot keep up ({AUDIT_PENDING_MAX} records \
                         waiting): try again shortly"
                    ),
                    AUDIT_RETRY_AFTER_MS,
                ));
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
    fn take_round(&self, now_ms: i64) -> Vec<(OfficeCode, Vec<AuditRecord>)> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut round = Vec::new();
        for (office, waiting) in pending.iter_mut() {
            if waiting.records.is_empty() && waiting.anonymous_uncounted == 0 {
                continue;
            }
            let overdue = waiting.oldest_ms.is_some_and(|oldest| {
                now_ms.saturating_sub(oldest) >= AUDIT_OBSERVATION_FLUSH_MS as i64
            });
            if !waiting.urgent && waiting.anonymous_uncounted == 0 && !overdue {
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
            if waiting.records.is_empty() {
                waiting.urgent = false;
                waiting.oldest_ms = None;
            }
            round.push((office.clone(), batch));
        }
        round
    }

    /// Puts a batch that could not be appended back at the front (order kept).
    fn put_back(&self, office: &OfficeCode, batch: Vec<AuditRecord>) {
        self.with(office, |pending| {
            pending.urgent = true;
            pending.oldest_ms.get_or_insert_with(wall_ms);
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
        for (office, records) in log.take_round(wall_ms()) {
            more |= records.len() >= AUDIT_BATCH_MAX;
            let op = Operation::Audit {
                records: records.clone(),
            };
            if let Err(status) = self.proposer.propose(&office, op).await {
                // Reads wait on this (refused once too many records wait): say why, at most
                // once per pause.
                tracing::warn!(%office, waiting = records.len(), reason = %status.message(),
                    "audit records not appended yet; retrying");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status_call(user: &str) -> AuditRecord {
        AuditRecord {
            at_ms: 0,
            user: user.into(),
            office: "530602".into(),
            rpc: "Admin.Status".into(),
            case_id: String::new(),
            request_id: String::new(),
            result: "ok".into(),
            detail: String::new(),
            count: 1,
        }
    }

    /// Status calls alone wait (an idle office is not woken by a monitor's polling), counted
    /// into one record; another record, or the observation limit, appends them.
    #[test]
    fn status_records_wait_for_the_next_append() {
        let log = AuditLog::default();
        let office: OfficeCode = "530602".parse().unwrap();
        for _ in 0..100 {
            log.record_observation(&office, status_call("operator:ops"))
                .unwrap();
        }
        let now = wall_ms();
        assert!(log.take_round(now).is_empty(), "status calls alone wait");
        let later = now + AUDIT_OBSERVATION_FLUSH_MS as i64 + 1;
        let round = log.take_round(later);
        assert_eq!(round.len(), 1, "appended once they waited the limit");
        assert_eq!(round[0].1.len(), 1, "identical polls are one record");
        assert_eq!(round[0].1[0].count, 100);
        assert!(log.is_empty());

        log.record_observation(&office, status_call("operator:ops"))
            .unwrap();
        let mut read = status_call("clerk");
        read.rpc = "Cases.Show".into();
        log.record(&office, read).unwrap();
        let round = log.take_round(wall_ms());
        assert_eq!(
            round[0].1.len(),
            2,
            "another record takes the status call along"
        );
        assert!(log.take_round(wall_ms()).is_empty());
    }

    /// A full log refuses further reads with a signal to try again shortly (the office is
    /// healthy, only catching up), and takes them again once a flush made room.
    #[test]
    fn a_full_log_asks_callers_to_retry_and_takes_records_again_after_a_flush() {
        let log = AuditLog::default();
        let office: OfficeCode = "530602".parse().unwrap();
        let read = |n: usize| {
            let mut read = status_call("clerk");
            read.rpc = "Cases.Show".into();
            read.case_id = format!("530602-2026-{n:06}");
            read
        };
        for n in 0..AUDIT_PENDING_MAX {
            log.record(&office, read(n)).unwrap();
        }
        let refused = log.record(&office, read(AUDIT_PENDING_MAX)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert_eq!(
            federation_proto::retry_after(&refused),
            Some(Duration::from_millis(AUDIT_RETRY_AFTER_MS)),
            "the refusal says when to try again: {refused:?}"
        );
        let round = log.take_round(wall_ms());
        assert_eq!(round[0].1.len(), AUDIT_BATCH_MAX);
        log.record(&office, read(AUDIT_PENDING_MAX)).unwrap();
    }
}

//! The sender: one worker per host, working for every office this host leads. It takes the
//! oldest notices waiting in the office's notification outbox (at most [`SEND_BATCH_MAX`] per
//! office and round; a failure ends the office's round), opens the phone (sealed under the office's data key: it is clear only in
//! memory, on its way to the gateway), hands the message to the gateway, then commits
//! `NotificationSent`, which removes the notice. A failed attempt backs off exponentially
//! ([`BACKOFF_FIRST_MS`] doubling to [`BACKOFF_MAX_MS`], with jitter) and is counted; it is
//! retried for as long as it waits.
//!
//! A hotline callback (stage `callback`) goes the same way to the federation's hotline
//! callback gateway instead, with the ticket and the case's result in its body and no phone. A
//! notice whose gateway the federation has not set waits (the sender looks past such notices, up
//! to [`crate::machine::notify::HEAD_SCAN_MAX`]).
//!
//! Exactly once: a notice leaves the outbox only after its gateway took it, and a leader reads
//! the notices waiting only once it has applied everything committed (a read barrier: a new
//! leader does not resend what its predecessor sent and committed). A leader that dies
//! after the gateway took a message and before its `NotificationSent` committed leaves the
//! notice waiting; the next leader sends it again, with the same message id, and the gateway
//! does not send a repeat (the file gateway finds the id in its file; an SMS platform
//! deduplicates by `OutId`).
//!
//! The drill hook [`CRASH_AFTER_SMS_FILE`]: while that file exists in the host's run folder
//! (`DIR/run/`), the first host to send a message takes it (renames it to `….fired`) and aborts
//! right after the gateway took the message, before committing: the crash this design must
//! survive, on demand.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use liandong_domain::notify::{hotline_ticket, sms_text, Follow, Stage};
use liandong_domain::{OfficeCode, Personal};
use rand::Rng;
use tokio::time::Instant;

use super::gateway::{Gateway, Message};
use crate::machine::notify::Notification;
use crate::personal::{Field, OfficeSeal};
use crate::raft::types::Operation;
use crate::replica::{Replica, Replicas};
use crate::worker::{Step, Worker};

/// Notices one office sends at most per round.
pub const SEND_BATCH_MAX: usize = 16;
/// How often the sender looks for notices.
pub const NOTIFY_POLL_MS: u64 = 200;
/// The first backoff after a failed attempt; it doubles with each failure of the same notice.
pub const BACKOFF_FIRST_MS: u64 = 500;
/// The longest backoff.
pub const BACKOFF_MAX_MS: u64 = 60_000;
/// The drill hook's file, in the host's run folder.
pub const CRASH_AFTER_SMS_FILE: &str = "crash-after-sms";

/// What this host's sender did for each office it led, since the host started (the counts that
/// matter across failovers, pending and sent, are the office's own, in its state machine).
#[derive(Default)]
pub struct NotifyStats {
    offices: Mutex<BTreeMap<OfficeCode, OfficeStats>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfficeStats {
    /// Attempts that failed (the gateway refused or did not answer, the phone did not open).
    pub failed_attempts: u64,
    /// Why the last one failed (never the phone).
    pub last_error: Option<String>,
}

impl NotifyStats {
    pub fn of(&self, office: &OfficeCode) -> OfficeStats {
        self.offices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(office)
            .cloned()
            .unwrap_or_default()
    }

    fn failed(&self, office: &OfficeCode, error: String) {
        let mut offices = self
            .offices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stats = offices.entry(office.clone()).or_default();
        stats.failed_attempts += 1;
        stats.last_error = Some(error);
    }
}

/// A notice's failed attempts and when it may be tried again.
struct Retry {
    failures: u32,
    next: Instant,
}

/// The backoff after `failures` failed attempts (1 or more), before jitter.
pub fn backoff_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(32);
    BACKOFF_FIRST_MS
        .saturating_mul(1u64 << doublings)
        .min(BACKOFF_MAX_MS)
}

/// Where a host's notices go: SMS to the petitioner's phone, hotline callbacks to the hotline
/// platform. Either may be absent (its notices wait).
#[derive(Clone, Default)]
pub struct Gateways {
    pub sms: Option<Arc<dyn Gateway>>,
    pub callback: Option<Arc<dyn Gateway>>,
}

impl Gateways {
    fn of(&self, stage: Stage) -> Option<&Arc<dyn Gateway>> {
        if stage.is_sms() {
            self.sms.as_ref()
        } else {
            self.callback.as_ref()
        }
    }
}

pub struct Notifier {
    replicas: Replicas,
    gateways: Gateways,
    stats: Arc<NotifyStats>,
    run_dir: PathBuf,
    /// This host's public surface, named in the messages (the status page and evaluation).
    public_url: Option<String>,
    retries: HashMap<String, Retry>,
    /// Per office: the outbox's last notice number when a look found nothing this host has a
    /// gateway for. Until a new notice is made, there is nothing to look for (the look scans up
    /// to `HEAD_SCAN_MAX` notices).
    unsendable: HashMap<OfficeCode, u64>,
}

impl Notifier {
    pub fn new(
        replicas: Replicas,
        gateways: Gateways,
        stats: Arc<NotifyStats>,
        run_dir: PathBuf,
        public_url: Option<String>,
    ) -> Notifier {
        Notifier {
            public_url,
            replicas,
            gateways,
            stats,
            run_dir,
            retries: HashMap::new(),
            unsendable: HashMap::new(),
        }
    }

    /// Sends one notice and commits that it was sent. `Err(Some(reason))`: a failed attempt;
    /// `Err(None)`: sent, but the commit did not happen here (the next round, or the next
    /// leader, sends it again: the gateway takes no repeat).
    async fn send_one(
        &self,
        replica: &Replica,
        notification: &Notification,
    ) -> Result<(), Option<String>> {
        let Some(gateway) = self.gateways.of(notification.stage) else {
            return Err(Some("no gateway for this notice".into()));
        };
        let office = &replica.office;
        let code = replica.seal.status_code(&notification.case_id.to_string());
        let (phone, callback) = if notification.stage.is_sms() {
            (open_phone(&replica.seal, notification).map_err(Some)?, None)
        } else {
            (
                String::new(),
                Some(self.callback_body(replica, notification, &code)?),
            )
        };
        let message = Message {
            id: notification.id.clone(),
            office: office.to_string(),
            case_id: notification.case_id.to_string(),
            stage: notification.stage.to_string(),
            phone,
            text: sms_text(
                notification.stage,
                &notification.case_id,
                office,
                &notification.cause,
                Follow {
                    code: &code,
                    public_url: self.public_url.as_deref(),
                },
            ),
            sent_at_ms: crate::clock::wall_ms(),
            callback,
        };
        let sent = gateway.send(&message).await.map_err(Some)?;
        drop(message);
        self.crash_if_asked();
        let op = Operation::NotificationSent {
            id: notification.id.clone(),
        };
        match replica.write(op).await {
            Ok(_) => {
                tracing::debug!(%office, id = %notification.id, repeat = matches!(sent, super::gateway::Sent::Before), "SMS sent");
                Ok(())
            }
            Err(error) => {
                tracing::debug!(%office, id = %notification.id, %error, "SMS sent, not yet committed");
                Err(None)
            }
        }
    }

    /// A hotline callback's body: the case as this office holds it now (its reply's text).
    fn callback_body(
        &self,
        replica: &Replica,
        notification: &Notification,
        code: &str,
    ) -> Result<serde_json::Value, Option<String>> {
        let case = replica
            .state_machine
            .case(&notification.case_id)
            .map_err(Some)?
            .ok_or_else(|| Some(format!("case {} is not here", notification.case_id)))?;
        let ticket = hotline_ticket(&case).unwrap_or_default();
        let status_url = self
            .public_url
            .as_deref()
            .map(|url| format!("{url}/status/{}?code={code}", case.id));
        Ok(crate::public::hotline::callback_body(
            &notification.id,
            ticket,
            &case,
            &notification.cause,
            status_url,
        ))
    }

    /// The notices waiting at `replica`'s office, as of everything committed: a leader that was
    /// just elected may not have applied the `NotificationSent` of notices its predecessor
    /// sent, and would send them again. Only when some wait (a read barrier is a round trip to
    /// a majority, and would wake an idle office).
    async fn head(&mut self, replica: &Replica) -> Result<Vec<Notification>, String> {
        let machine = &replica.state_machine;
        let made = machine.notify_state()?.last;
        if self.unsendable.get(&replica.office) == Some(&made) {
            return Ok(Vec::new());
        }
        let gateways = self.gateways.clone();
        let wanted = move |stage: Stage| gateways.of(stage).is_some();
        if machine.notify_head_of(1, &wanted)?.is_empty() {
            self.unsendable.insert(replica.office.clone(), made);
            return Ok(Vec::new());
        }
        self.unsendable.remove(&replica.office);
        if let Err(error) = replica.read_barrier().await {
            // No longer the leader, or not yet confirmed: the next round (or leader) sends.
            tracing::debug!(office = %replica.office, %error, "SMS round skipped");
            return Ok(Vec::new());
        }
        machine.notify_head_of(SEND_BATCH_MAX, &wanted)
    }

    /// The drill hook: abort now if the crash file is there and this host took it.
    fn crash_if_asked(&self) {
        let file = self.run_dir.join(CRASH_AFTER_SMS_FILE);
        if !file.exists() {
            return;
        }
        let fired = self.run_dir.join(format!("{CRASH_AFTER_SMS_FILE}.fired"));
        if std::fs::rename(&file, &fired).is_ok() {
            tracing::error!(
                "drill: aborting after the SMS gateway took a message, before its commit"
            );
            std::process::abort();
        }
    }

    fn failed(&mut self, office: &OfficeCode, id: &str, reason: String) {
        tracing::debug!(%office, %id, %reason, "SMS attempt failed");
        let retry = self.retries.entry(id.to_string()).or_insert(Retry {
            failures: 0,
            next: Instant::now(),
        });
        retry.failures = retry.failures.saturating_add(1);
        let delay = backoff_ms(retry.failures);
        let jitter = rand::thread_rng().gen_range(0..=delay / 4);
        retry.next = Instant::now() + Duration::from_millis(delay + jitter);
        if retry.failures.is_power_of_two() && retry.failures >= 8 {
            tracing::warn!(%office, %id, failures = retry.failures, %reason, "an SMS keeps failing; it waits in the notification outbox");
        }
        self.stats.failed(office, reason);
    }
}

/// The clear phone of a notice: opened under the office's data key.
fn open_phone(seal: &OfficeSeal, notification: &Notification) -> Result<String, String> {
    match &notification.phone {
        Personal::Clear(phone) => Ok(phone.clone()),
        Personal::Sealed(sealed) => seal
            .open(&notification.petitioner_key, Field::Phone, sealed)
            .map_err(|error| format!("the phone does not open: {error}")),
    }
}

impl Worker for Notifier {
    fn name(&self) -> String {
        "sms sender".into()
    }

    async fn work(&mut self) -> Result<Step, String> {
        let replicas = self.replicas.clone();
        let mut waiting = HashSet::new();
        let mut errors = Vec::new();
        // An office sent a whole batch: more may wait, the next round starts at once.
        let mut busy = false;
        for replica in replicas.iter() {
            if !replica.is_leader() {
                continue;
            }
            let head = match self.head(replica).await {
                Ok(head) => head,
                Err(error) => {
                    errors.push(format!("{}: {error}", replica.office));
                    continue;
                }
            };
            let full_batch = head.len() == SEND_BATCH_MAX;
            let mut sent_all = true;
            waiting.extend(head.iter().map(|notification| notification.id.clone()));
            for notification in head {
                let due = self
                    .retries
                    .get(&notification.id)
                    .is_none_or(|retry| retry.next <= Instant::now());
                if !due || !replica.is_leader() {
                    sent_all = false;
                    continue;
                }
                match self.send_one(replica, &notification).await {
                    Ok(()) => {
                        self.retries.remove(&notification.id);
                    }
                    Err(Some(reason)) => {
                        // The gateway is likely down: this office's other notices wait for the
                        // next round rather than each waiting out a timeout now.
                        self.failed(&replica.office, &notification.id, reason);
                        sent_all = false;
                        break;
                    }
                    Err(None) => sent_all = false,
                }
            }
            busy |= full_batch && sent_all;
        }
        // Only notices still waiting keep their backoff: the table stays bounded.
        self.retries.retain(|id, _| waiting.contains(id));
        if errors.is_empty() {
            Ok(if busy { Step::Busy } else { Step::Idle })
        } else {
            Err(errors.join("; "))
        }
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(Duration::from_millis(NOTIFY_POLL_MS)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        assert_eq!(backoff_ms(1), BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(2), 2 * BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(4), 8 * BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(40), BACKOFF_MAX_MS);
        assert_eq!(backoff_ms(u32::MAX), BACKOFF_MAX_MS);
    }
}

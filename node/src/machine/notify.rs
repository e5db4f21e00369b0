//! The notification outbox: the SMS notices a case change makes ([`liandong_domain::notify`])
//! commit in the same batch as the change, like federation messages; the office's leader sends
//! them through its gateway (`crate::notify`) and then commits [`Operation::NotificationSent`],
//! which removes them.
//!
//! - `notify/<number, u64 big-endian>`: a notice not yet sent ([`Notification`]), in the order
//!   made.
//! - `notified/<message id>`: the notice's number, kept after it is sent: a key made once is never
//!   made again (a replayed or repeated change finds it).
//! - `notify-state`: the counters ([`NotifyState`]).
//!
//! Bounded: at most [`PENDING_ITEMS_MAX`] notices and [`PENDING_BYTES_MAX`] bytes wait; a notice
//! made beyond either is dropped and counted (`dropped`), never refusing the case change: an
//! unreachable SMS gateway must not stop an office's case work.
//!
//! [`Operation::NotificationSent`]: crate::raft::types::Operation::NotificationSent

use liandong_domain::notify::{self, Cause, Stage};
use liandong_domain::{CaseId, Millis, Personal};
use serde::{Deserialize, Serialize};

use super::apply::{ApplyError, Applying};
use super::cases::Change;
use super::{get_or_default, keys, Read};
use crate::store::codec::{decode, encode};

/// Notices that may wait unsent at an office; more are dropped (counted).
pub const PENDING_ITEMS_MAX: u64 = 100_000;
/// Bytes (stored form) of the notices that may wait unsent at an office; more are dropped.
pub const PENDING_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// The stored form's version of a [`Notification`].
pub const NOTIFICATION_VERSION: u16 = 1;

/// One SMS notice waiting to be sent. The phone stays as the case keeps it (sealed under the
/// office's data key): the sender opens it just before it hands the message to the gateway. A
/// hotline callback ([`Stage::Callback`]) has an empty clear phone: it goes to the hotline
/// platform, not to the petitioner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// [`NOTIFICATION_VERSION`].
    pub v: u16,
    /// The message id ([`notify::message_id`]): the gateway's deduplication key.
    pub id: String,
    pub case_id: CaseId,
    pub stage: Stage,
    pub seq: u32,
    pub cause: Cause,
    /// The case's petitioner key: what the phone's seal is bound to.
    pub petitioner_key: String,
    pub phone: Personal,
    /// The stamped time of the change that made it.
    pub made_at: Millis,
}

/// The notification outbox's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyState {
    /// The last notice number given out.
    pub last: u64,
    /// Notices waiting, and their stored bytes.
    pub pending: u64,
    pub pending_bytes: u64,
    /// Notices sent (their `NotificationSent` committed).
    pub sent: u64,
    /// Notices made while the outbox was full: dropped, never sent.
    pub dropped: u64,
}

/// Puts the notices `change` makes into this entry's batch; a key made before is skipped.
pub(super) fn made(apply: &mut Applying<'_, '_>, change: &Change<'_>) -> Result<(), ApplyError> {
    let notices = notify::notices(change.before, &change.after, &change.events);
    if notices.is_empty() {
        return Ok(());
    }
    let phone = change
        .after
        .petitioner
        .as_ref()
        .and_then(|petitioner| petitioner.phone.clone());
    let mut state: NotifyState = get_or_default(apply.txn, keys::NOTIFY_STATE)?;
    let office = apply.context.office.clone();
    for notice in notices {
        // An SMS needs the phone; a hotline callback carries none (an empty clear one).
        let phone = match (&phone, notice.stage.is_sms()) {
            (Some(phone), _) => phone.clone(),
            (None, false) => Personal::Clear(String::new()),
            (None, true) => continue,
        };
        let case_id = change.after.id.clone();
        let id = notify::message_id(&office, &case_id, notice.stage, notice.seq);
        let marker = keys::notified(&id);
        if apply.txn.get(&marker)?.is_some() {
            continue;
        }
        let notification = Notification {
            v: NOTIFICATION_VERSION,
            id,
            case_id,
            stage: notice.stage,
            seq: notice.seq,
            cause: notice.cause,
            petitioner_key: change.after.petitioner_key.clone(),
            phone,
            made_at: apply.now,
        };
        let bytes = encode(&notification);
        let size = bytes.len() as u64;
        if state.pending >= PENDING_ITEMS_MAX
            || state.pending_bytes.saturating_add(size) > PENDING_BYTES_MAX
        {
            state.dropped += 1;
            tracing::warn!(office = %office, case_id = %notification.case_id, stage = %notification.stage, "notification outbox full: notice dropped");
            continue;
        }
        state.last += 1;
        state.pending += 1;
        state.pending_bytes += size;
        apply.txn.put(keys::notify(state.last), bytes);
        apply.txn.put(marker, encode(&state.last));
    }
    apply.txn.put(keys::NOTIFY_STATE.to_vec(), encode(&state));
    Ok(())
}

/// The notice `id` was handed to the gateway: it leaves the outbox. Sending it again (a second
/// leader's, a retry's) changes nothing.
pub(super) fn sent(apply: &mut Applying<'_, '_>, id: &str) -> Result<bool, ApplyError> {
    let Some(number) = apply.txn.get(&keys::notified(id))? else {
        return Ok(false);
    };
    let number: u64 = decode(&number)?;
    let key = keys::notify(number);
    let Some(bytes) = apply.txn.get(&key)? else {
        return Ok(false);
    };
    let mut state: NotifyState = get_or_default(apply.txn, keys::NOTIFY_STATE)?;
    state.pending = state.pending.saturating_sub(1);
    state.pending_bytes = state.pending_bytes.saturating_sub(bytes.len() as u64);
    state.sent += 1;
    apply.txn.delete(key);
    apply.txn.put(keys::NOTIFY_STATE.to_vec(), encode(&state));
    Ok(true)
}

/// The counters.
pub(crate) fn state(reader: &impl Read) -> Result<NotifyState, ApplyError> {
    get_or_default(reader, keys::NOTIFY_STATE)
}

/// The first `limit` notices waiting, oldest first.
pub(crate) fn head(reader: &impl Read, limit: usize) -> Result<Vec<Notification>, ApplyError> {
    head_of(reader, limit, usize::MAX, |_| true)
}

/// Notices waiting the sender looks at, at most, to find `limit` of the stages it has a gateway
/// for (an office with a hotline callback and no SMS gateway keeps its SMS waiting in front).
pub const HEAD_SCAN_MAX: usize = 4_096;

/// The first `limit` notices waiting whose stage `wanted` takes, oldest first, among the first
/// `scan` waiting.
pub(crate) fn head_of(
    reader: &impl Read,
    limit: usize,
    scan: usize,
    wanted: impl Fn(Stage) -> bool,
) -> Result<Vec<Notification>, ApplyError> {
    let end = crate::store::keys::prefix_end(keys::NOTIFY);
    let mut start = keys::NOTIFY.to_vec();
    let mut notices = Vec::new();
    let mut scanned = 0;
    while notices.len() < limit && scanned < scan {
        let chunk = reader.scan(&start, &end, limit.min(scan - scanned).max(1))?;
        let Some((last, _)) = chunk.last() else {
            break;
        };
        start = [last.as_slice(), &[0]].concat();
        scanned += chunk.len();
        for (_, value) in chunk.iter() {
            let notification: Notification = decode(value)?;
            if wanted(notification.stage) && notices.len() < limit {
                notices.push(notification);
            }
        }
    }
    Ok(notices)
}

#[cfg(test)]
mod tests {
    use liandong_domain::notify::Stage;
    use liandong_domain::{CaseCommand, Opinion};

    use super::*;
    use crate::machine::tests::{case_of, registration, Office};
    use crate::raft::types::{Operation, Response};
    use crate::store::Txn;

    const PHONE: &str = "+8613800138000";

    fn file_with_phone(office: &mut Office, request_id: &str) -> Response {
        let mut registration = registration();
        registration.phone = Some(PHONE.into());
        office.apply(Operation::File {
            registration,
            request_id: Some(request_id.into()),
            caller: "li".into(),
        })
    }

    fn act(office: &mut Office, case_id: &CaseId, command: CaseCommand, request_id: &str) {
        let response = office.apply(Operation::Act {
            case_id: case_id.clone(),
            command,
            request_id: Some(request_id.into()),
            caller: "li".into(),
        });
        assert!(matches!(response, Response::Case { .. }), "{response:?}");
    }

    fn pending(office: &Office) -> Vec<Notification> {
        head(
            &Txn::new(&office.db, office.context.office.as_str()),
            usize::MAX,
        )
        .unwrap()
    }

    fn counters(office: &Office) -> NotifyState {
        state(&Txn::new(&office.db, office.context.office.as_str())).unwrap()
    }

    /// Filed, accepted and replied: three notices, each once, even when every request is
    /// applied twice (a client's retry) and a sent notice's change is made again; a
    /// `NotificationSent` removes its notice, once.
    #[test]
    fn each_change_makes_its_notice_once_and_sent_removes_it() {
        let mut office = Office::new("530602", Some("5306"));
        let case = case_of(file_with_phone(&mut office, "f1"));
        file_with_phone(&mut office, "f1");
        let made = pending(&office);
        assert_eq!(made.len(), 1, "{made:?}");
        assert_eq!(made[0].stage, Stage::Received);
        assert_eq!(made[0].id, format!("530602/{}/received/0", case.id));
        assert_eq!(made[0].phone, Personal::Clear(PHONE.into()));

        act(
            &mut office,
            &case.id,
            CaseCommand::Accept {
                officer: "li".into(),
            },
            "a1",
        );
        act(
            &mut office,
            &case.id,
            CaseCommand::Accept {
                officer: "li".into(),
            },
            "a1",
        );
        assert_eq!(pending(&office).len(), 2);

        // The received notice sent: it leaves; sent again, nothing changes.
        let received = made[0].id.clone();
        office.apply(Operation::NotificationSent {
            id: received.clone(),
        });
        let after_sent = counters(&office);
        assert_eq!((after_sent.pending, after_sent.sent), (1, 1));
        office.apply(Operation::NotificationSent {
            id: received.clone(),
        });
        office.apply(Operation::NotificationSent {
            id: "530602/nothing/result/0".into(),
        });
        assert_eq!(counters(&office), after_sent);
        assert_eq!(pending(&office)[0].stage, Stage::Accepted);

        let reply = CaseCommand::Reply {
            opinion: Opinion::Explain,
            text: "explained".into(),
            officer: "li".into(),
        };
        act(&mut office, &case.id, reply.clone(), "r1");
        act(&mut office, &case.id, reply, "r1");
        let stages: Vec<Stage> = pending(&office).iter().map(|n| n.stage).collect();
        assert_eq!(stages, [Stage::Accepted, Stage::Result]);

        // The filing's change made again (a replay of the same change): its key is spent.
        let whole = office.case_whole(&case.id);
        let mut txn = Txn::new(&office.db, office.context.office.as_str());
        let mut state = office.state_clone();
        let mut apply = Applying {
            txn: &mut txn,
            context: &office.context,
            now: 0,
            state: &mut state,
        };
        super::made(&mut apply, &Change::new_case(whole)).unwrap();
        let batch = txn.into_batch();
        office.db.write(batch, false).unwrap();
        assert_eq!(pending(&office).len(), 2, "no second received notice");
        let totals = counters(&office);
        assert_eq!(
            (totals.pending, totals.sent, totals.dropped, totals.last),
            (2, 1, 0, 3)
        );
        assert_eq!(
            totals.pending_bytes,
            pending(&office)
                .iter()
                .map(|n| encode(n).len() as u64)
                .sum::<u64>()
        );
    }

    /// A full outbox drops the new notice and counts it; the case change still commits.
    #[test]
    fn a_full_outbox_drops_and_counts() {
        let mut office = Office::new("530602", Some("5306"));
        let full = NotifyState {
            pending: PENDING_ITEMS_MAX,
            ..NotifyState::default()
        };
        let mut txn = Txn::new(&office.db, office.context.office.as_str());
        txn.put(keys::NOTIFY_STATE.to_vec(), encode(&full));
        office.db.write(txn.into_batch(), false).unwrap();
        let case = case_of(file_with_phone(&mut office, "f1"));
        assert!(office.case_whole(&case.id).history_len() > 0);
        assert!(pending(&office).is_empty());
        assert_eq!(counters(&office).dropped, 1);
    }

    /// No phone, no notice.
    #[test]
    fn a_case_without_a_phone_makes_none() {
        let mut office = Office::new("530602", Some("5306"));
        let case = case_of(office.apply(Operation::File {
            registration: registration(),
            request_id: None,
            caller: String::new(),
        }));
        act(
            &mut office,
            &case.id,
            CaseCommand::Accept {
                officer: "li".into(),
            },
            "a1",
        );
        assert!(pending(&office).is_empty());
        assert_eq!(counters(&office), NotifyState::default());
    }

    /// A hotline case without a phone makes no SMS and one callback at its result, with no
    /// phone in it; the sender finds it past SMS waiting in front (an office with no SMS
    /// gateway), and only among the stages it asks for.
    #[test]
    fn a_hotline_case_makes_one_callback_found_past_waiting_sms() {
        let mut office = Office::new("530602", Some("5306"));
        let sms_case = case_of(file_with_phone(&mut office, "f0"));
        let mut registration = registration();
        registration.officer = liandong_domain::notify::hotline_officer("HL-7");
        let case = case_of(office.apply(Operation::File {
            registration,
            request_id: Some("hotline-HL-7".into()),
            caller: crate::raft::types::PUBLIC_CALLER.into(),
        }));
        act(
            &mut office,
            &case.id,
            CaseCommand::Accept {
                officer: "li".into(),
            },
            "a1",
        );
        let reply = CaseCommand::Reply {
            opinion: Opinion::Support,
            text: "paid".into(),
            officer: "li".into(),
        };
        act(&mut office, &case.id, reply.clone(), "r1");
        act(&mut office, &case.id, reply, "r1");
        let all = pending(&office);
        let stages: Vec<(Stage, &CaseId)> = all.iter().map(|n| (n.stage, &n.case_id)).collect();
        assert_eq!(
            stages,
            [(Stage::Received, &sms_case.id), (Stage::Callback, &case.id)]
        );
        assert_eq!(all[1].phone, Personal::Clear(String::new()));
        let txn = Txn::new(&office.db, office.context.office.as_str());
        let callbacks = head_of(&txn, 16, HEAD_SCAN_MAX, |stage| !stage.is_sms()).unwrap();
        assert_eq!(callbacks, all[1..].to_vec());
        let sms = head_of(&txn, 16, HEAD_SCAN_MAX, Stage::is_sms).unwrap();
        assert_eq!(sms, all[..1].to_vec());
        assert!(
            head_of(&txn, 16, 1, |stage| !stage.is_sms())
                .unwrap()
                .is_empty(),
            "the scan is bounded"
        );
    }

    /// A snapshot (and so a backup) carries the notification outbox.
    #[test]
    fn snapshots_carry_the_notification_outbox() {
        let mut office = Office::new("530602", Some("5306"));
        file_with_phone(&mut office, "f1");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        let prefix = crate::store::keys::office_prefix("530602");
        super::super::snapshot::write(&office.db, &prefix, &path).unwrap();
        let mut found = Vec::new();
        super::super::snapshot::for_each_record(std::fs::File::open(&path).unwrap(), |key, _| {
            if key.starts_with(keys::NOTIFY)
                || key.starts_with(keys::NOTIFIED)
                || key == keys::NOTIFY_STATE
            {
                found.push(String::from_utf8_lossy(&key[..key.len().min(9)]).to_string());
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(found.len(), 3, "{found:?}");
    }
}

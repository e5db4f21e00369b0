//! Escalating notices (三级抄告) and red cards (红牌) in the state machine.
//!
//! - The office's notice policy (`notice-policy`), set by its admin ([`set_policy`]).
//! - The tick ([`tick`]) walks the cases this office holds, a bounded slice per tick, and sends
//!   each unresolved case's due notices ([`notice::notices_due`]) through the outbox, advancing
//!   the case's notice counter (`notice-sent/<case id>`) in the same batch: each level is sent
//!   once, through partitions and restarts, like every federation message. When no tick has
//!   work the walk rests until the next notice can be due ([`next_at`]).
//! - A notice climbs one link at a time: to the office's parent, which keeps it when it is the
//!   office at the notice's level and passes it on to its own parent otherwise (an office knows
//!   only its parent; a level above the federation's root ends there, kept by no one).
//! - A received notice is kept in the office's worklist (`notice-in/<n>`), newest last, the
//!   oldest dropped past [`NOTICES_KEPT_MAX`].
//! - A supervision order on a case held here that passes its due date unanswered earns this
//!   office one red card ([`missed_order`], from the case change that marks the order's clock
//!   overdue), against its lead department too; the card is kept here and sent to the order's
//!   issuer, which keeps it among the cards of its subtree (`red-card-log/<n>`), with counts per
//!   office (`red-card-count/<office>`) and, at the office that earned it, per department
//!   (`red-card-dept/<department>`).

use liandong_domain::message::Body;
use liandong_domain::notice::{self, Notice, NoticePolicy, RedCard, StoredPolicy, NOTICE_VERSION};
use liandong_domain::{Case, ClockKind, Event, Millis, OfficeCode, DAY_MS};
use serde::{Deserialize, Serialize};

use super::apply::{refused, ApplyError, Applying, Outcome, Refused};
use super::cases::Change;
use super::outbox::Outgoing;
use super::{get_or_default, keys, Read};
use crate::raft::types::{RejectKind, Response};
use crate::store::codec::{decode, encode};
use crate::store::keys::prefix_end;

/// The office's notice policy ([`StoredPolicy`]); absent: no notices.
pub const NOTICE_POLICY: &[u8] = b"notice-policy";
/// Where the tick's walk over the office's cases stands ([`NoticeScan`]).
pub const NOTICE_SCAN: &[u8] = b"notice-scan";
/// `notice-sent/<case id>`: how many levels of notices the case has sent (u8).
pub const NOTICE_SENT: &[u8] = b"notice-sent/";
/// The worklist of received notices: its bounds ([`LogBounds`]).
pub const NOTICE_IN_BOUNDS: &[u8] = b"notice-in-bounds";
/// `notice-in/<n, u64 big-endian>`: a received notice ([`ReceivedNotice`]).
pub const NOTICE_IN: &[u8] = b"notice-in/";
/// `red-card-made/<card id>`: this office earned the card (one per order).
pub const RED_CARD_MADE: &[u8] = b"red-card-made/";
/// The red card log's bounds ([`LogBounds`]).
pub const RED_CARD_BOUNDS: &[u8] = b"red-card-bounds";
/// `red-card-log/<n, u64 big-endian>`: a card earned here or received ([`LoggedCard`]).
pub const RED_CARD_LOG: &[u8] = b"red-card-log/";
/// `red-card-count/<office>`: red cards counted against that office here (u64).
pub const RED_CARD_COUNT: &[u8] = b"red-card-count/";
/// `red-card-dept/<department>`: red cards earned here against that department (u64).
pub const RED_CARD_DEPT: &[u8] = b"red-card-dept/";

/// Cases one tick examines at most; the walk resumes there at the next tick.
pub const TICK_NOTICE_CASES_MAX: usize = 256;
/// Notices one tick makes at most; the rest are made by the next tick.
pub const TICK_NOTICES_MAX: usize = 128;
/// Received notices an office keeps (the oldest go first).
pub const NOTICES_KEPT_MAX: u64 = 10_000;
/// Red cards (earned and received) an office keeps listed; the counts keep every one.
pub const RED_CARDS_KEPT_MAX: u64 = 10_000;
/// Offices and departments a count read returns at most.
pub const COUNTS_READ_MAX: usize = 10_000;

/// The tick's walk over the cases held here. A pass walks every case once, a slice per tick;
/// the next pass starts when the earliest notice it saw can be due, or when a case registered
/// since the pass started can first be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeScan {
    pub v: u16,
    /// The last case key the pass in progress examined; None between passes.
    pub cursor: Option<Vec<u8>>,
    pub pass_started: Millis,
    /// The earliest next notice the pass in progress found.
    pub pass_min: Option<Millis>,
    /// When the next pass starts (between passes).
    pub next_at: Option<Millis>,
    /// The earliest notice of a case that came here (registered or received) since the pass
    /// in progress started: the walk may have passed its key already.
    pub poke: Option<Millis>,
}

/// The first and the next number of a kept list: entries `first..next` are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBounds {
    pub first: u64,
    pub next: u64,
}

/// A notice as the receiving office keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedNotice {
    pub v: u16,
    pub notice: Notice,
    pub received_at: Millis,
}

/// A red card as an office keeps it: one it earned, or one from its subtree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedCard {
    pub v: u16,
    pub card: RedCard,
    pub earned: bool,
    pub logged_at: Millis,
}

fn sent_key(case_id: &str) -> Vec<u8> {
    [NOTICE_SENT, case_id.as_bytes()].concat()
}

fn numbered(prefix: &[u8], n: u64) -> Vec<u8> {
    [prefix, &n.to_be_bytes()].concat()
}

pub fn count_key(office: &OfficeCode) -> Vec<u8> {
    [RED_CARD_COUNT, office.as_str().as_bytes()].concat()
}

pub fn dept_key(department: &str) -> Vec<u8> {
    [RED_CARD_DEPT, department.as_bytes()].concat()
}

fn made_key(id: &str) -> Vec<u8> {
    [RED_CARD_MADE, id.as_bytes()].concat()
}

fn load<T: serde::de::DeserializeOwned>(
    reader: &impl Read,
    key: &[u8],
) -> Result<Option<T>, ApplyError> {
    match reader.get(key)? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// The office's notice policy, if it set one.
pub(crate) fn policy(reader: &impl Read) -> Result<Option<StoredPolicy>, ApplyError> {
    load(reader, NOTICE_POLICY)
}

/// Appends `value` to the kept list under `prefix`, dropping its oldest entry past `max`.
fn append<T: Serialize>(
    apply: &mut Applying<'_, '_>,
    bounds_key: &[u8],
    prefix: &[u8],
    max: u64,
    value: &T,
) -> Result<(), ApplyError> {
    let mut bounds: LogBounds = get_or_default(apply.txn, bounds_key)?;
    apply.txn.put(numbered(prefix, bounds.next), encode(value));
    bounds.next += 1;
    while bounds.next - bounds.first > max {
        apply.txn.delete(numbered(prefix, bounds.first));
        bounds.first += 1;
    }
    apply.txn.put(bounds_key.to_vec(), encode(&bounds));
    Ok(())
}

/// The newest `limit` entries of a kept list, newest first, and whether older ones are kept.
fn newest<T: serde::de::DeserializeOwned>(
    reader: &impl Read,
    bounds_key: &[u8],
    prefix: &[u8],
    limit: usize,
) -> Result<(Vec<T>, bool), ApplyError> {
    let bounds: LogBounds = get_or_default(reader, bounds_key)?;
    let mut found = Vec::new();
    let mut n = bounds.next;
    while n > bounds.first && found.len() < limit {
        n -= 1;
        if let Some(value) = load(reader, &numbered(prefix, n))? {
            found.push(value);
        }
    }
    Ok((found, n > bounds.first))
}

/// Received notices, newest first, at most `limit`; true when there are more.
pub(crate) fn received(
    reader: &impl Read,
    limit: usize,
) -> Result<(Vec<ReceivedNotice>, bool), ApplyError> {
    newest(reader, NOTICE_IN_BOUNDS, NOTICE_IN, limit)
}

/// Where a noticed case stands now, as this office knows it: its own copy when it holds the
/// case, else the summary its subtree sent up (as `query` answers it). None when it knows
/// nothing of it (a summary not yet arrived).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeNow {
    pub status: String,
    pub holder: OfficeCode,
    /// The office has answered the matter (replied, declined, reviewed or final): the notice is
    /// resolved.
    pub resolved: bool,
}

/// [`NoticeNow`] of one case.
pub(crate) fn now_of(
    reader: &impl Read,
    case_id: &liandong_domain::CaseId,
) -> Result<Option<NoticeNow>, ApplyError> {
    use super::stats;
    let effective = stats::effective(
        stats::own_summary(reader, case_id)?,
        stats::indexed_summary(reader, case_id)?,
    );
    Ok(effective.map(|summary| {
        let summary = summary.summary;
        NoticeNow {
            resolved: crate::federation::query::CLOSED_STATUSES.contains(&summary.status.as_str()),
            status: summary.status,
            holder: summary.owner,
        }
    }))
}

/// Red cards earned here and received from the subtree, newest first, at most `limit`; true
/// when there are more.
pub(crate) fn cards(
    reader: &impl Read,
    limit: usize,
) -> Result<(Vec<LoggedCard>, bool), ApplyError> {
    newest(reader, RED_CARD_BOUNDS, RED_CARD_LOG, limit)
}

fn counts(reader: &impl Read, prefix: &[u8]) -> Result<Vec<(String, u64)>, ApplyError> {
    reader
        .scan(prefix, &prefix_end(prefix), COUNTS_READ_MAX)?
        .iter()
        .map(|(key, value)| {
            let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            Ok((name, decode::<u64>(value)?))
        })
        .collect()
}

/// Red cards per office (this one and its subtree), as counted here.
pub(crate) fn office_counts(reader: &impl Read) -> Result<Vec<(String, u64)>, ApplyError> {
    counts(reader, RED_CARD_COUNT)
}

/// Red cards per department of this office.
pub(crate) fn department_counts(reader: &impl Read) -> Result<Vec<(String, u64)>, ApplyError> {
    counts(reader, RED_CARD_DEPT)
}

fn add_one(apply: &mut Applying<'_, '_>, key: Vec<u8>) -> Result<(), ApplyError> {
    let count: u64 = get_or_default(apply.txn, &key)?;
    apply.txn.put(key, encode(&count.saturating_add(1)));
    Ok(())
}

/// Sets (`Some`) or clears (`None`) the office's notice policy; the policy after it as JSON
/// (`null` when cleared). A bad policy is refused and changes nothing.
pub(super) fn set_policy(
    apply: &mut Applying<'_, '_>,
    ages_days: &Option<Vec<u32>>,
    caller: &str,
) -> Outcome<Response> {
    if apply.context.parent.is_none() {
        return Ok(Err(refused(
            RejectKind::Invalid,
            "no_level_above",
            format!(
                "{} is the federation's root: there is no level above it to copy cases to",
                apply.context.office
            ),
        )));
    }
    let Some(ages) = ages_days else {
        apply.txn.delete(NOTICE_POLICY.to_vec());
        apply.txn.delete(NOTICE_SCAN.to_vec());
        return Ok(Ok(Response::Notice {
            document: b"null".to_vec(),
        }));
    };
    let policy = match NoticePolicy::new(ages.clone()) {
        Ok(policy) => policy,
        Err(error) => return Ok(Err(Refused::from(error))),
    };
    let stored = StoredPolicy {
        v: NOTICE_VERSION,
        policy,
        set_by: caller.to_string(),
        set_at: apply.now,
    };
    apply.txn.put(NOTICE_POLICY.to_vec(), encode(&stored));
    // A new walk starts at the next tick: every case is looked at under the new ages.
    let scan = NoticeScan {
        v: NOTICE_VERSION,
        next_at: Some(apply.now),
        ..NoticeScan::default()
    };
    apply.txn.put(NOTICE_SCAN.to_vec(), encode(&scan));
    Ok(Ok(Response::Notice {
        document: serde_json::to_vec(&stored).unwrap_or_default(),
    }))
}

/// When the tick next has notice work: at once while a walk is in progress, else when the next
/// walk starts. None without a policy.
pub(crate) fn next_at(reader: &impl Read) -> Result<Option<Millis>, ApplyError> {
    if reader.get(NOTICE_POLICY)?.is_none() {
        return Ok(None);
    }
    let Some(scan) = load::<NoticeScan>(reader, NOTICE_SCAN)? else {
        return Ok(None);
    };
    if scan.cursor.is_some() {
        return Ok(Some(Millis::MIN));
    }
    Ok(scan.next_at.into_iter().chain(scan.poke).min())
}

/// The instant `case`'s next notice can be due, `sent` levels sent; None when none is left.
fn next_due(policy: &NoticePolicy, case: &Case, here: &OfficeCode, sent: usize) -> Option<Millis> {
    if !notice::unresolved(case, here) {
        return None;
    }
    (sent..notice::levels(policy))
        .find(|level| notice::target(here, level + 1).is_some())
        .map(|level| {
            case.registered_at
                .saturating_add(i64::from(policy.ages_days[level]).saturating_mul(DAY_MS))
        })
}

/// The tick's notice work: a slice of the walk over the cases held here, sending what is due.
/// Returns how many notices it made.
pub(super) fn tick(apply: &mut Applying<'_, '_>) -> Result<u32, ApplyError> {
    let (Some(stored), Some(parent)) = (policy(apply.txn)?, apply.context.parent.clone()) else {
        return Ok(0);
    };
    let mut scan: NoticeScan = get_or_default(apply.txn, NOTICE_SCAN)?;
    let now = apply.now;
    if scan.cursor.is_none() {
        let waiting = scan.next_at.into_iter().chain(scan.poke).min();
        if waiting.is_none_or(|at| at > now) {
            return Ok(0);
        }
        scan = NoticeScan {
            v: NOTICE_VERSION,
            cursor: None,
            pass_started: now,
            pass_min: None,
            next_at: None,
            poke: None,
        };
    }
    let start = match &scan.cursor {
        Some(last) => [last.as_slice(), b"\0"].concat(),
        None => keys::CASE.to_vec(),
    };
    let end = prefix_end(keys::CASE);
    let slice = apply.txn.scan(&start, &end, TICK_NOTICE_CASES_MAX)?;
    let here = apply.context.office.clone();
    let policy = &stored.policy;
    let mut made = 0usize;
    let mut finished = slice.len() < TICK_NOTICE_CASES_MAX;
    for (key, value) in &slice {
        if made >= TICK_NOTICES_MAX {
            finished = false;
            break;
        }
        let case = Case::from_bytes(value).map_err(|source| ApplyError::Case {
            key: String::from_utf8_lossy(key).into_owned(),
            source,
        })?;
        let id = case.id.to_string();
        let sent = usize::from(get_or_default::<u8>(apply.txn, &sent_key(&id))?);
        let due = notice::notices_due(policy, &case, &here, now, sent);
        let crossed = policy.due(case.registered_at, now, sent).last().copied();
        let mut sent_now = sent;
        if let (Some(level), true) = (crossed, notice::unresolved(&case, &here)) {
            let messages: Vec<(OfficeCode, Body)> = due
                .into_iter()
                .map(|notice| (parent.clone(), Body::Notice { notice }))
                .collect();
            let count = messages.len();
            let outgoing = Outgoing::prepare(apply, messages)?;
            if let Err(refusal) = outgoing.check() {
                // A notice is small: only a full outbox refuses it. Tried again next pass.
                tracing::warn!(case_id = %id, code = %refusal.code, "notices not sent");
                scan.pass_min = scan.pass_min.into_iter().chain([now]).min();
                scan.cursor = Some(key.clone());
                continue;
            }
            outgoing.put(apply);
            made += count;
            sent_now = level;
            apply.txn.put(sent_key(&id), encode(&(level as u8)));
        }
        if let Some(at) = next_due(policy, &case, &here, sent_now) {
            scan.pass_min = Some(scan.pass_min.map_or(at, |min| min.min(at)));
        }
        scan.cursor = Some(key.clone());
    }
    if finished {
        let first_age = policy.ages_days.first().copied().unwrap_or(1);
        let newcomer = scan
            .pass_started
            .saturating_add(i64::from(first_age).saturating_mul(DAY_MS));
        scan.next_at = [Some(newcomer), scan.pass_min, scan.poke]
            .into_iter()
            .flatten()
            .min()
            // A notice due "now" that a full outbox held back: the next pass waits a day.
            .map(|at| {
                if at <= now {
                    now.saturating_add(DAY_MS)
                } else {
                    at
                }
            });
        scan.cursor = None;
        scan.pass_min = None;
        scan.poke = None;
    }
    apply.txn.put(NOTICE_SCAN.to_vec(), encode(&scan));
    Ok(u32::try_from(made).unwrap_or(u32::MAX))
}

/// A case change committed here: a case that came to this office unresolved (registered,
/// received, given back) may owe a notice before the walk's next pass; the walk learns when.
pub(super) fn touched(apply: &mut Applying<'_, '_>, change: &Change<'_>) -> Result<(), ApplyError> {
    let here = &apply.context.office;
    let was_held = change
        .before
        .is_some_and(|case| notice::unresolved(case, here));
    if was_held || !notice::unresolved(&change.after, here) {
        return Ok(());
    }
    let Some(stored) = policy(apply.txn)? else {
        return Ok(());
    };
    let id = change.after.id.to_string();
    let sent = usize::from(get_or_default::<u8>(apply.txn, &sent_key(&id))?);
    let Some(at) = next_due(&stored.policy, &change.after, here, sent) else {
        return Ok(());
    };
    let mut scan: NoticeScan = get_or_default(apply.txn, NOTICE_SCAN)?;
    scan.poke = Some(scan.poke.map_or(at, |poke| poke.min(at)));
    apply.txn.put(NOTICE_SCAN.to_vec(), encode(&scan));
    Ok(())
}

/// The red card a case change earns this office: the change marks the open supervision order's
/// clock overdue (its due date passed unanswered), and no card was made for that order yet.
pub(super) fn missed_order(
    apply: &Applying<'_, '_>,
    change: &Change<'_>,
) -> Result<Option<RedCard>, ApplyError> {
    let missed = change.events.iter().find_map(|event| match event {
        Event::Overdue {
            clock: ClockKind::Supervision,
            at,
            ..
        } => Some(*at),
        _ => None,
    });
    let Some(at) = missed else {
        return Ok(None);
    };
    let Some(order) = change
        .before
        .and_then(|case| case.supervision.as_ref())
        .or(change.after.supervision.as_ref())
    else {
        return Ok(None);
    };
    let here = &apply.context.office;
    if !order.from.is_ancestor_of(here) {
        return Ok(None);
    }
    let department = super::departments::tasks(apply.txn, &change.after.id)?
        .and_then(|tasks| tasks.lead().map(|task| task.department.clone()));
    let card = RedCard {
        v: NOTICE_VERSION,
        case_id: change.after.id.clone(),
        office: here.clone(),
        department,
        issuer: order.from.clone(),
        ordered_at: order.ordered_at,
        due_by: order.due_by,
        at,
    };
    if apply.txn.get(&made_key(&card.id()))?.is_some() {
        return Ok(None);
    }
    Ok(Some(card))
}

/// A red card this office earned, recorded with the change that earned it (its message to the
/// issuer is in the same change's outbox batch).
pub(super) fn record_earned(
    apply: &mut Applying<'_, '_>,
    card: &RedCard,
) -> Result<(), ApplyError> {
    apply.txn.put(made_key(&card.id()), Vec::new());
    add_one(apply, count_key(&card.office))?;
    if let Some(department) = &card.department {
        add_one(apply, dept_key(department))?;
    }
    let logged = LoggedCard {
        v: NOTICE_VERSION,
        card: card.clone(),
        earned: true,
        logged_at: apply.now,
    };
    append(
        apply,
        RED_CARD_BOUNDS,
        RED_CARD_LOG,
        RED_CARDS_KEPT_MAX,
        &logged,
    )
}

fn misrouted(error: liandong_domain::DomainError) -> Refused {
    refused(RejectKind::Forbidden, error.code(), error.to_string())
}

/// A notice from `from`: from the office holding the case or one on its way up, for this
/// office or one above it. Kept in the worklist when it is for this office, else passed on to
/// the parent (none at the federation's root: its level lies above the federation).
pub(super) fn receive_notice(
    apply: &mut Applying<'_, '_>,
    from: &OfficeCode,
    notice: &Notice,
) -> Result<Result<(), Refused>, ApplyError> {
    let here = match notice
        .validate()
        .and_then(|()| notice.check_route(from, &apply.context.office))
    {
        Ok(here) => here,
        Err(error) => return Ok(Err(misrouted(error))),
    };
    if !here {
        let up = apply.context.parent.iter().map(|parent| {
            let body = Body::Notice {
                notice: notice.clone(),
            };
            (parent.clone(), body)
        });
        let outgoing = Outgoing::prepare(apply, up.collect())?;
        if let Err(refusal) = outgoing.check() {
            return Ok(Err(refusal));
        }
        outgoing.put(apply);
        return Ok(Ok(()));
    }
    let kept = ReceivedNotice {
        v: NOTICE_VERSION,
        notice: notice.clone(),
        received_at: apply.now,
    };
    append(apply, NOTICE_IN_BOUNDS, NOTICE_IN, NOTICES_KEPT_MAX, &kept)?;
    Ok(Ok(()))
}

/// A red card from `from`, which earned it on an order this office issued: counted against
/// `from` and kept in the list.
pub(super) fn receive_card(
    apply: &mut Applying<'_, '_>,
    from: &OfficeCode,
    card: &RedCard,
) -> Result<Result<(), Refused>, ApplyError> {
    if let Err(error) = card
        .validate()
        .and_then(|()| card.check_route(from, &apply.context.office))
    {
        return Ok(Err(misrouted(error)));
    }
    add_one(apply, count_key(&card.office))?;
    let logged = LoggedCard {
        v: NOTICE_VERSION,
        card: card.clone(),
        earned: false,
        logged_at: apply.now,
    };
    append(
        apply,
        RED_CARD_BOUNDS,
        RED_CARD_LOG,
        RED_CARDS_KEPT_MAX,
        &logged,
    )?;
    Ok(Ok(()))
}

#[cfg(test)]
pub(crate) mod tests {
    use liandong_domain::message::Envelope;
    use liandong_domain::{CaseCommand, CaseId, Opinion};

    use super::*;
    use crate::machine::records::LinkIn;
    use crate::machine::tests::{case_of, registration, Office, START_MS};
    use crate::raft::types::Operation;
    use crate::store::Txn;

    pub(crate) fn sample_notice(case_id: &CaseId) -> Notice {
        Notice {
            v: NOTICE_VERSION,
            case_id: case_id.clone(),
            origin: code("530602"),
            level: 1,
            age_days: 31,
            category: "housing".into(),
            status: "accepted".into(),
            registered_at: START_MS,
            due: Some(START_MS + 60 * DAY_MS),
        }
    }

    pub(crate) fn sample_card(case_id: &CaseId) -> RedCard {
        RedCard {
            v: NOTICE_VERSION,
            case_id: case_id.clone(),
            office: code("530602"),
            department: Some("housing".into()),
            issuer: code("5306"),
            ordered_at: START_MS,
            due_by: START_MS + 5 * DAY_MS,
            at: START_MS + 6 * DAY_MS,
        }
    }

    fn code(text: &str) -> OfficeCode {
        text.parse().unwrap()
    }

    fn reader(office: &Office) -> Txn<'_> {
        Txn::new(&office.db, office.context.office.as_str())
    }

    fn set_policy(office: &mut Office, ages: Option<Vec<u32>>) -> Response {
        office.apply(Operation::NoticePolicy {
            ages_days: ages,
            caller: "admin".into(),
        })
    }

    fn file(office: &mut Office) -> Case {
        case_of(office.apply(Operation::File {
            registration: registration(),
            request_id: None,
            caller: String::new(),
        }))
    }

    fn act(office: &mut Office, case_id: &CaseId, command: CaseCommand) {
        let response = office.apply(Operation::Act {
            case_id: case_id.clone(),
            command,
            request_id: None,
            caller: String::new(),
        });
        case_of(response);
    }

    /// Ticks at `day` days after `since`.
    fn tick_at(office: &mut Office, since: Millis, day: i64) {
        office.advance_to(since + day * DAY_MS);
        office.apply(Operation::Tick);
    }

    /// Every message of `kind` waiting in `office`'s outbox, with the office it goes to.
    fn sent(office: &Office, kind: &str) -> Vec<Envelope> {
        let start = keys::OUTBOX;
        reader(office)
            .scan(start, &prefix_end(start), usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, value)| decode::<Envelope>(&value).unwrap())
            .filter(|envelope| envelope.body.kind() == kind)
            .collect()
    }

    /// The notices sent, with the office each is for (all go to the parent first).
    fn levels_sent(office: &Office) -> Vec<(String, u8)> {
        sent(office, "notice")
            .into_iter()
            .map(|envelope| match envelope.body {
                Body::Notice { notice } => {
                    assert_eq!(Some(&envelope.to), office.context.parent.as_ref());
                    let target = notice::target(&notice.origin, notice.level.into()).unwrap();
                    (target.to_string(), notice.level)
                }
                _ => unreachable!(),
            })
            .collect()
    }

    /// Delivers `body` as the next message from `from`; the refusal code, if any.
    fn deliver(office: &mut Office, from: &str, body: Body) -> Option<String> {
        let from = code(from);
        let inbox: LinkIn = get_or_default(&reader(office), &keys::inbox(&from)).unwrap();
        let envelope = Envelope {
            from: from.clone(),
            to: office.context.office.clone(),
            seq: inbox.applied_through + 1,
            sent_at: START_MS,
            body,
        };
        match office.apply(Operation::Receive {
            from,
            envelopes: vec![envelope],
        }) {
            Response::Delivered { mut refused, .. } => refused.pop().map(|r| r.code),
            other => panic!("Receive answered {other:?}"),
        }
    }

    /// Everything but the inbox, refusal and audit records.
    fn footprint(office: &Office) -> Vec<(Vec<u8>, Vec<u8>)> {
        reader(office)
            .scan(b"", b"\xff", usize::MAX)
            .unwrap()
            .into_iter()
            .filter(|(key, _)| !key.starts_with(keys::INBOX) && !key.starts_with(keys::REFUSED))
            .collect()
    }

    fn township() -> Office {
        Office::new("530602001", Some("530602"))
    }

    #[test]
    fn a_case_sends_one_notice_per_level_as_it_crosses_each_age() {
        let mut office = township();
        set_policy(&mut office, Some(vec![30, 60, 90]));
        let case = file(&mut office);
        let since = case.registered_at;
        tick_at(&mut office, since, 29);
        assert!(levels_sent(&office).is_empty(), "not 30 days old yet");
        // The walk rests until the case can first be due.
        assert_eq!(
            next_at(&reader(&office)).unwrap(),
            Some(since + 30 * DAY_MS)
        );
        tick_at(&mut office, since, 30);
        assert_eq!(levels_sent(&office), vec![("530602".into(), 1)]);
        tick_at(&mut office, since, 45);
        assert_eq!(levels_sent(&office).len(), 1, "each level once");
        tick_at(&mut office, since, 61);
        tick_at(&mut office, since, 91);
        tick_at(&mut office, since, 400);
        let mut levels = levels_sent(&office);
        levels.sort();
        assert_eq!(
            levels,
            vec![("53".into(), 3), ("5306".into(), 2), ("530602".into(), 1)]
        );
        let first = sent(&office, "notice")
            .into_iter()
            .find(|envelope| matches!(&envelope.body, Body::Notice { notice } if notice.level == 1))
            .unwrap();
        let Body::Notice { notice } = &first.body else {
            unreachable!()
        };
        assert_eq!(notice.case_id, case.id);
        assert_eq!(notice.origin, code("530602001"));
        assert_eq!(notice.age_days, 30);
        assert_eq!(notice.category, "housing");
        assert_eq!(notice.status, "registered");
        assert_eq!(notice.registered_at, since);
        assert_eq!(notice.due, case.deadlines.accept_by);
        // Nothing more can be due: the walk rests until a case registered since could be.
        let rest = next_at(&reader(&office)).unwrap().unwrap();
        assert!(rest > since + 400 * DAY_MS, "{rest}");
    }

    #[test]
    fn a_late_tick_sends_every_level_crossed_at_once() {
        let mut office = township();
        set_policy(&mut office, Some(vec![30, 60, 90]));
        let case = file(&mut office);
        tick_at(&mut office, case.registered_at, 95);
        let mut levels = levels_sent(&office);
        levels.sort();
        assert_eq!(
            levels,
            vec![("53".into(), 3), ("5306".into(), 2), ("530602".into(), 1)]
        );
        tick_at(&mut office, case.registered_at, 96);
        assert_eq!(levels_sent(&office).len(), 3);
    }

    #[test]
    fn a_replied_or_declined_case_sends_no_notice() {
        let mut office = township();
        set_policy(&mut office, Some(vec![30, 60, 90]));
        let replied = file(&mut office);
        act(
            &mut office,
            &replied.id,
            CaseCommand::Accept {
                officer: "li".into(),
            },
        );
        tick_at(&mut office, replied.registered_at, 31);
        assert_eq!(levels_sent(&office).len(), 1, "accepted is still open");
        act(
            &mut office,
            &replied.id,
            CaseCommand::Reply {
                opinion: Opinion::Support,
                text: "fixed".into(),
                officer: "li".into(),
            },
        );
        tick_at(&mut office, replied.registered_at, 200);
        assert_eq!(levels_sent(&office).len(), 1, "none after the reply");
    }

    #[test]
    fn without_a_policy_the_tick_does_nothing_for_notices() {
        let mut office = township();
        let case = file(&mut office);
        assert_eq!(next_at(&reader(&office)).unwrap(), None);
        tick_at(&mut office, case.registered_at, 100);
        assert!(levels_sent(&office).is_empty());
        // A policy set late finds the old case at the next tick; clearing it stops the walk.
        set_policy(&mut office, Some(vec![30]));
        office.apply(Operation::Tick);
        assert_eq!(levels_sent(&office), vec![("530602".into(), 1)]);
        set_policy(&mut office, None);
        assert_eq!(next_at(&reader(&office)).unwrap(), None);
        assert!(policy(&reader(&office)).unwrap().is_none());
    }

    #[test]
    fn a_bad_policy_is_refused_and_changes_nothing() {
        let mut office = township();
        set_policy(&mut office, Some(vec![30, 60]));
        for (ages, expected) in [
            (vec![], "out_of_range"),
            (vec![0], "out_of_range"),
            (vec![1, 2, 3, 4], "out_of_range"),
            (vec![60, 30], "field_invalid"),
            (vec![30, 30], "field_invalid"),
            (vec![3_651], "out_of_range"),
        ] {
            let before = footprint(&office);
            match set_policy(&mut office, Some(ages.clone())) {
                Response::Rejected { code, .. } => assert_eq!(code, expected, "{ages:?}"),
                other => panic!("{ages:?} answered {other:?}"),
            }
            assert_eq!(footprint(&office), before, "{ages:?} changed nothing");
        }
        assert_eq!(
            policy(&reader(&office)).unwrap().unwrap().policy.ages_days,
            vec![30, 60]
        );
    }

    #[test]
    fn a_notice_is_kept_only_from_the_office_its_level_below() {
        let mut city = Office::new("5306", Some("53"));
        let case_id: CaseId = "530602001-2026-000001".parse().unwrap();
        let mut notice = sample_notice(&case_id);
        notice.origin = code("530602001");
        notice.level = 2;
        assert_eq!(
            deliver(
                &mut city,
                "530602001",
                Body::Notice {
                    notice: notice.clone()
                }
            ),
            None
        );
        let refusals = [
            ("530602001", 1, "field_invalid", "wrong level"),
            ("530621", 2, "field_invalid", "not on the case's way up"),
            ("53", 2, "notice_not_upward", "from above"),
        ];
        for (from, level, expected, why) in refusals {
            let mut bad = notice.clone();
            bad.level = level;
            let before = footprint(&city);
            assert_eq!(
                deliver(&mut city, from, Body::Notice { notice: bad }).as_deref(),
                Some(expected),
                "{why}"
            );
            assert_eq!(footprint(&city), before, "{why}: nothing kept");
        }
        let mut long = notice.clone();
        long.category = "x".repeat(65);
        assert!(Body::Notice { notice: long }.validate().is_err());
        let (kept, more) = received(&reader(&city), 10).unwrap();
        assert_eq!(kept.len(), 1);
        assert!(!more);
        assert_eq!(kept[0].notice, notice);
    }

    /// The county passes a notice for the city on, keeping nothing; the federation's root lets
    /// a notice for a level above it end there.
    #[test]
    fn a_notice_for_a_level_above_is_passed_on_up() {
        let mut county = Office::new("530602", Some("5306"));
        let case_id: CaseId = "530602001-2026-000001".parse().unwrap();
        let mut notice = sample_notice(&case_id);
        notice.origin = code("530602001");
        notice.level = 2;
        assert_eq!(
            deliver(
                &mut county,
                "530602001",
                Body::Notice {
                    notice: notice.clone()
                }
            ),
            None
        );
        assert!(received(&reader(&county), 10).unwrap().0.is_empty());
        let passed = sent(&county, "notice");
        assert_eq!(passed.len(), 1);
        assert_eq!(passed[0].to, code("5306"));
        assert_eq!(
            passed[0].body,
            Body::Notice {
                notice: notice.clone()
            }
        );

        let mut root = Office::new("5306", None);
        notice.level = 3;
        let before = footprint(&root);
        assert_eq!(deliver(&mut root, "530602", Body::Notice { notice }), None);
        assert_eq!(footprint(&root), before, "kept by no one");
        // The root has no level above it: a policy there is refused.
        match set_policy(&mut root, Some(vec![30])) {
            Response::Rejected { code, .. } => assert_eq!(code, "no_level_above"),
            other => panic!("{other:?}"),
        }
        assert_eq!(footprint(&root), before);
    }

    #[test]
    fn the_worklist_lists_newest_first_and_says_when_there_is_more() {
        let mut county = Office::new("530602", Some("5306"));
        for seq in 1..=5 {
            let case_id: CaseId = format!("530602001-2026-00000{seq}").parse().unwrap();
            let mut notice = sample_notice(&case_id);
            notice.origin = code("530602001");
            assert_eq!(
                deliver(&mut county, "530602001", Body::Notice { notice }),
                None
            );
        }
        let (first, more) = received(&reader(&county), 2).unwrap();
        assert!(more);
        assert_eq!(
            first
                .iter()
                .map(|n| n.notice.case_id.seq)
                .collect::<Vec<_>>(),
            vec![5, 4]
        );
        let (all, more) = received(&reader(&county), 10).unwrap();
        assert_eq!(all.len(), 5);
        assert!(!more);
    }

    /// A supervision order left unanswered past its due date: one red card, against the office
    /// and its lead department, sent to the issuer; another tick makes none.
    #[test]
    fn a_missed_supervision_order_earns_one_red_card() {
        use liandong_domain::department::{DeskChange, Routing};
        let mut county = Office::new("530602", Some("5306"));
        let case = file(&mut county);
        for department in ["housing", "land"] {
            county.apply(Operation::Desk {
                change: DeskChange::AddDepartment {
                    code: department.into(),
                    name: department.into(),
                },
                request_id: None,
                caller: "admin".into(),
            });
        }
        let routed = county.apply(Operation::Desk {
            change: DeskChange::Route {
                case_id: case.id.clone(),
                routing: Routing {
                    lead: Some("housing".into()),
                    cooperate: vec!["land".into()],
                    due_days: 5,
                    text: "joint handling".into(),
                },
                officer: "li".into(),
            },
            request_id: None,
            caller: "li".into(),
        });
        assert!(matches!(routed, Response::Desk { .. }), "{routed:?}");
        let order = Body::SupervisionOrder {
            case_id: case.id.clone(),
            order_id: "5306-1".into(),
            text: "Report progress.".into(),
            due_days: 3,
        };
        assert_eq!(deliver(&mut county, "5306", order), None);
        let ordered = county.case_whole(&case.id).supervision.unwrap();
        // Stamped a minute after this: before the due date.
        county.advance_to(ordered.due_by - 2 * 60_000);
        county.apply(Operation::Tick);
        assert!(sent(&county, "red_card").is_empty(), "not past due yet");
        county.advance_to(ordered.due_by + DAY_MS);
        county.apply(Operation::Tick);
        county.advance_to(ordered.due_by + 20 * DAY_MS);
        county.apply(Operation::Tick);
        let cards = sent(&county, "red_card");
        assert_eq!(cards.len(), 1, "one card per order");
        assert_eq!(cards[0].to, code("5306"));
        let Body::RedCard { card } = &cards[0].body else {
            unreachable!()
        };
        assert_eq!(card.office, code("530602"));
        assert_eq!(card.department.as_deref(), Some("housing"));
        assert_eq!(card.due_by, ordered.due_by);
        let (logged, _) = super::cards(&reader(&county), 10).unwrap();
        assert_eq!(logged.len(), 1);
        assert!(logged[0].earned);
        assert_eq!(
            office_counts(&reader(&county)).unwrap(),
            vec![("530602".to_string(), 1)]
        );
        assert_eq!(
            department_counts(&reader(&county)).unwrap(),
            vec![("housing".to_string(), 1)]
        );

        // The issuer counts it against the county; a card from elsewhere changes nothing.
        let mut city = Office::new("5306", Some("53"));
        assert_eq!(deliver(&mut city, "530602", cards[0].body.clone()), None);
        let before = footprint(&city);
        let mut forged = card.clone();
        forged.office = code("530621");
        assert_eq!(
            deliver(&mut city, "530602", Body::RedCard { card: forged }).as_deref(),
            Some("field_invalid")
        );
        let mut early = card.clone();
        early.at = early.due_by - 1;
        assert!(Body::RedCard { card: early }.validate().is_err());
        assert_eq!(footprint(&city), before);
        assert_eq!(
            office_counts(&reader(&city)).unwrap(),
            vec![("530602".to_string(), 1)]
        );
        let (logged, _) = super::cards(&reader(&city), 10).unwrap();
        assert_eq!(logged.len(), 1);
        assert!(!logged[0].earned);
    }

    #[test]
    fn an_order_answered_in_time_earns_no_red_card() {
        let mut county = Office::new("530602", Some("5306"));
        let case = file(&mut county);
        let order = Body::SupervisionOrder {
            case_id: case.id.clone(),
            order_id: "5306-1".into(),
            text: "Report progress.".into(),
            due_days: 3,
        };
        assert_eq!(deliver(&mut county, "5306", order), None);
        act(
            &mut county,
            &case.id,
            CaseCommand::AnswerSupervision {
                text: "Done.".into(),
                officer: "li".into(),
            },
        );
        county.advance_to(START_MS + 30 * DAY_MS);
        county.apply(Operation::Tick);
        assert!(sent(&county, "red_card").is_empty());
        assert!(office_counts(&reader(&county)).unwrap().is_empty());
    }
}

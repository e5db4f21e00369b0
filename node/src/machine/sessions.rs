//! Joint video reception sessions (视频联动接访) in the state machine: the host's record and the
//! invited offices' copies, bookings (personal fields sealed, kept at the office where the
//! petitioner booked), the cases registered in a session, and the two messages that carry the
//! record: [`Body::SessionRecord`] down from the host to every invited office whenever the record
//! changes, [`Body::SessionReport`] up from an invited office whenever its part changes. Both go
//! through the outbox committed with the change, like every federation message.

use liandong_domain::message::Body;
use liandong_domain::session::{self, Part, Recording, Session, SessionCommand, SessionError};
use liandong_domain::{CaseId, Millis, OfficeCode, Personal};
use serde::{Deserialize, Serialize};

use super::apply::{refused, ApplyContext, ApplyError, Applying, Outcome, Refused};
use super::outbox::{self, Outgoing};
use super::{get_or_default, AppliedState, Read};

use crate::raft::types::{Operation, RejectKind, Response};
use crate::store::codec::{decode, encode};
use crate::store::Txn;

/// `session/<id>`: a session's record (the host's) or an invited office's copy ([`Session`]).
pub const SESSION: &[u8] = b"session/";
/// The last session sequence number this office gave out.
pub const SESSION_SEQ: &[u8] = b"session-seq";
/// How many sessions this office keeps (hosted and invited).
pub const SESSION_COUNT: &[u8] = b"session-count";
/// `session-booking/<id>/<n, u32 big-endian>`: a booking at this office ([`Booking`]).
pub const SESSION_BOOKING: &[u8] = b"session-booking/";
/// `session-end/<ends_at, u64 big-endian><id>`: the sessions this office keeps, by their end
/// (the running ones are found from the stamp time).
pub const SESSION_END: &[u8] = b"session-end/";
/// Running sessions a filing looks at, at most.
pub const RUNNING_SCAN_MAX: usize = 64;
/// `session-case/<case id>`: the session a case registered here was registered in.
pub const SESSION_CASE: &[u8] = b"session-case/";
/// Sessions one office keeps at most (hosted and invited); older ones are not pruned: a new
/// session beyond this is refused, so every list read is bounded.
pub const SESSIONS_MAX: usize = 10_000;

pub fn session_key(id: &str) -> Vec<u8> {
    [SESSION, id.as_bytes()].concat()
}

pub fn booking_key(id: &str, number: u32) -> Vec<u8> {
    [SESSION_BOOKING, id.as_bytes(), b"/", &number.to_be_bytes()].concat()
}

pub fn end_key(ends_at: Millis, id: &str) -> Vec<u8> {
    let ends_at = ends_at.max(0) as u64;
    [SESSION_END, &ends_at.to_be_bytes(), id.as_bytes()].concat()
}

pub fn case_key(case_id: &CaseId) -> Vec<u8> {
    [SESSION_CASE, case_id.to_string().as_bytes()].concat()
}

/// A petitioner's booking, kept at the office where they booked. Its personal fields are sealed
/// under that office's data key, as a case's are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    pub session: String,
    pub number: u32,
    pub petitioner_key: String,
    pub petitioner_id: Personal,
    pub name: Personal,
    pub booked_at: Millis,
    pub officer: String,
}

/// This office's copy of session `id`.
pub(crate) fn load(reader: &impl Read, id: &str) -> Result<Option<Session>, ApplyError> {
    match reader.get(&session_key(id))? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// The session a case was registered in here, if any.
pub(crate) fn of_case(reader: &impl Read, case_id: &CaseId) -> Result<Option<String>, ApplyError> {
    match reader.get(&case_key(case_id))? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// The id of the session a session answer's document (JSON) holds.
pub(crate) fn id_of(document: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Named {
        id: String,
    }
    serde_json::from_slice::<Named>(document)
        .ok()
        .map(|named| named.id)
}

fn refusal(error: SessionError) -> Refused {
    let kind = if error.invalid {
        RejectKind::Invalid
    } else {
        RejectKind::Forbidden
    };
    refused(kind, error.code, error.message)
}

fn unknown(id: &str, office: &OfficeCode) -> Refused {
    refused(
        RejectKind::NotFound,
        "session_unknown",
        format!("office {office} has no session {id} (not hosted here, nor invited)"),
    )
}

fn response(session: &Session) -> Response {
    Response::Session {
        document: serde_json::to_vec(session).unwrap_or_default(),
    }
}

/// An officer's session command at this office.
pub(super) fn apply(
    apply: &mut Applying<'_, '_>,
    command: &SessionCommand,
    caller: &str,
) -> Outcome<Response> {
    if let Some(full) = outbox::full(apply.state) {
        return Ok(Err(full));
    }
    let here = apply.context.office.clone();
    let now = apply.now;
    let mut session = match command.session() {
        None => None,
        Some(id) => match load(apply.txn, id)? {
            Some(session) => Some(session),
            None => return Ok(Err(unknown(id, &here))),
        },
    };
    let outcome = match (command, session.as_mut()) {
        (SessionCommand::Schedule(input), _) => {
            let seq: u64 = get_or_default::<u64>(apply.txn, SESSION_SEQ)? + 1;
            let id = format!("{here}-S{seq}");
            match session::schedule(id, &here, input.clone(), caller, now) {
                Ok(made) => {
                    session = Some(made);
                    Ok(())
                }
                Err(error) => Err(error),
            }
        }
        (SessionCommand::Answer { accept, leader, .. }, Some(session)) => {
            session.answer(&here, *accept, leader, now).map(drop)
        }
        (SessionCommand::Book { petitioner_key, .. }, Some(session)) => {
            // One booking per petitioner and session at an office: a retry of the booking (or
            // a second one) answers the session as it is and books nothing more.
            if booked(apply.txn, &session.id, petitioner_key)? {
                return Ok(Ok(response(session)));
            }
            session.book(&here, now).map(drop)
        }
        (
            SessionCommand::Recording {
                reference,
                sha256,
                bytes,
                ..
            },
            Some(session),
        ) => {
            if session.host != here {
                return Ok(Err(refused(
                    RejectKind::Forbidden,
                    "not_host",
                    format!(
                        "session {} is hosted by {}: its recording is kept there",
                        session.id, session.host
                    ),
                )));
            }
            session.record(Recording {
                reference: reference.clone(),
                sha256: sha256.clone(),
                bytes: *bytes,
                at: now,
                officer: caller.to_string(),
            })
        }
        (_, None) => unreachable!("a command naming a session loaded it above"),
    };
    if let Err(error) = outcome {
        return Ok(Err(refusal(error)));
    }
    let Some(mut session) = session else {
        unreachable!("every command leaves a session")
    };
    let bump = command.session().is_some();
    let outgoing = match outgoing(apply, &mut session, bump)? {
        Ok(outgoing) => outgoing,
        Err(refused) => return Ok(Err(refused)),
    };
    // Checked: from here on the change is written whole.
    if let SessionCommand::Schedule(_) = command {
        if let Err(refused) = one_more(apply)? {
            return Ok(Err(refused));
        }
        let seq: u64 = get_or_default::<u64>(apply.txn, SESSION_SEQ)? + 1;
        apply.txn.put(SESSION_SEQ.to_vec(), encode(&seq));
    }
    if let SessionCommand::Book {
        petitioner_key,
        petitioner_id,
        name,
        ..
    } = command
    {
        let number = session.part(&here).map(|part| part.booked).unwrap_or(0);
        let booking = Booking {
            session: session.id.clone(),
            number,
            petitioner_key: petitioner_key.clone(),
            petitioner_id: petitioner_id.clone(),
            name: name.clone(),
            booked_at: now,
            officer: caller.to_string(),
        };
        apply
            .txn
            .put(booking_key(&session.id, number), encode(&booking));
    }
    write(apply, &session, outgoing);
    Ok(Ok(response(&session)))
}

/// Whether the petitioner with `petitioner_key` booked session `id` at this office (at most
/// [`liandong_domain::session::SLOTS_MAX`] bookings are read).
fn booked(reader: &impl Read, id: &str, petitioner_key: &str) -> Result<bool, ApplyError> {
    let start = [SESSION_BOOKING, id.as_bytes(), b"/"].concat();
    let end = crate::store::keys::prefix_end(&start);
    let bookings = reader.scan(&start, &end, liandong_domain::session::SLOTS_MAX as usize)?;
    for (_, value) in bookings {
        let booking: Booking = decode(&value)?;
        if booking.petitioner_key == petitioner_key {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Counts one more session kept here; refused at [`SESSIONS_MAX`] (every list read is bounded).
fn one_more(apply: &mut Applying<'_, '_>) -> Outcome<()> {
    let count: u64 = get_or_default(apply.txn, SESSION_COUNT)?;
    if count >= SESSIONS_MAX as u64 {
        return Ok(Err(refused(
            RejectKind::Forbidden,
            "too_many_sessions",
            format!(
                "office {} keeps at most {SESSIONS_MAX} sessions",
                apply.context.office
            ),
        )));
    }
    apply.txn.put(SESSION_COUNT.to_vec(), encode(&(count + 1)));
    Ok(Ok(()))
}

/// Stores this office's changed copy and tells the others ([`outgoing`]).
fn changed(apply: &mut Applying<'_, '_>, session: &mut Session, bump: bool) -> Outcome<()> {
    match outgoing(apply, session, bump)? {
        Ok(outgoing) => {
            write(apply, session, outgoing);
            Ok(Ok(()))
        }
        Err(refused) => Ok(Err(refused)),
    }
}

fn write(apply: &mut Applying<'_, '_>, session: &Session, outgoing: Outgoing) {
    apply.txn.put(session_key(&session.id), encode(session));
    apply
        .txn
        .put(end_key(session.ends_at, &session.id), encode(&session.id));
    outgoing.put(apply);
}

/// What a change of this office's copy sends, checked, nothing written yet: the host sends its
/// record down to every invited office (its revision raised when `bump`); an invited office
/// reports its part up to the host.
fn outgoing(apply: &mut Applying<'_, '_>, session: &mut Session, bump: bool) -> Outcome<Outgoing> {
    let here = &apply.context.office;
    let messages = if session.host == *here {
        if bump {
            session.revision += 1;
        }
        session
            .invitees()
            .map(|office| {
                let body = Body::SessionRecord {
                    session: session.clone(),
                };
                (office.clone(), body)
            })
            .collect()
    } else {
        let Some(part) = session.part(here) else {
            return Ok(Err(unknown(&session.id, here)));
        };
        let body = Body::SessionReport {
            session_id: session.id.clone(),
            part: part.clone(),
        };
        vec![(session.host.clone(), body)]
    };
    let outgoing = Outgoing::prepare(apply, messages)?;
    if let Err(refused) = outgoing.check() {
        return Ok(Err(refused));
    }
    Ok(Ok(outgoing))
}

/// The host's record, arriving at an office it invited: kept as this office's copy (its own
/// part as this office wrote it).
pub(super) fn receive_record(
    apply: &mut Applying<'_, '_>,
    from: &OfficeCode,
    record: &Session,
) -> Outcome<()> {
    let context = apply.context;
    let here = &context.office;
    if record.host != *from {
        return Ok(Err(refused(
            RejectKind::Forbidden,
            "not_host",
            format!("{from} does not host session {}", record.id),
        )));
    }
    if record.part(here).is_none() || record.host == *here {
        return Ok(Err(refused(
            RejectKind::Forbidden,
            "not_invited",
            format!("session {} does not invite {here}", record.id),
        )));
    }
    let held = load(apply.txn, &record.id)?;
    if held.is_none() {
        if let Err(refused) = one_more(apply)? {
            return Ok(Err(refused));
        }
    }
    let merged = Session::merge_record(held.as_ref(), here, record.clone());
    apply.txn.put(session_key(&merged.id), encode(&merged));
    apply
        .txn
        .put(end_key(merged.ends_at, &merged.id), encode(&merged.id));
    Ok(Ok(()))
}

/// An invited office's part, arriving at the host: merged when newer, and the record sent down
/// again.
pub(super) fn receive_report(
    apply: &mut Applying<'_, '_>,
    from: &OfficeCode,
    session_id: &str,
    part: &Part,
) -> Outcome<()> {
    let here = apply.context.office.clone();
    let Some(mut session) = load(apply.txn, session_id)? else {
        return Ok(Err(unknown(session_id, &here)));
    };
    if session.host != here {
        return Ok(Err(unknown(session_id, &here)));
    }
    if part.office != *from {
        return Ok(Err(refused(
            RejectKind::Forbidden,
            "not_own_part",
            format!("{from} reports only its own part of session {session_id}"),
        )));
    }
    match session.merge_part(part.clone()) {
        Ok(true) => changed(apply, &mut session, true),
        Ok(false) => Ok(Ok(())),
        Err(error) => Ok(Err(refusal(error))),
    }
}

/// A filing in session `id` ([`Operation::SessionFile`]): checked first (a filing the session
/// cannot take is refused and changes nothing), then filed, then linked.
pub(super) fn file_in_session(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    state: &mut AppliedState,
    at: Millis,
    id: &str,
    op: &Operation,
) -> Result<Response, ApplyError> {
    let here = &context.office;
    let now = at.max(state.last_at);
    let Some(session) = load(txn, id)? else {
        return Ok(unknown(id, here).into());
    };
    if let Err(error) = session.check_link(here, now) {
        return Ok(refusal(error).into());
    }
    if !matches!(
        op,
        Operation::File { .. } | Operation::FileSealed { .. } | Operation::FileGroup { .. }
    ) {
        return Ok(refused(
            RejectKind::Invalid,
            "not_a_filing",
            "only a filing is made in a session",
        )
        .into());
    }
    let response = super::apply::apply_operation(txn, context, state, at, op)?;
    let Response::Case { document } = &response else {
        return Ok(response);
    };
    let case_id = liandong_domain::Case::from_bytes(document)
        .map(|case| case.id)
        .map_err(|source| ApplyError::Case {
            key: "a case just filed".to_string(),
            source,
        })?;
    let mut apply = Applying {
        txn,
        context,
        now: state.last_at,
        state,
    };
    // Filed while the session runs, it was linked as it was filed.
    if of_case(apply.txn, &case_id)?.as_deref() != Some(id) {
        let session = load(apply.txn, id)?.unwrap_or(session);
        drop(link(&mut apply, session, &case_id)?);
    }
    Ok(response)
}

/// A case just filed here, linked to a session that runs at the stamp time and that this
/// office takes part in (the host, or invited and not declined), if there is one.
pub(super) fn link_running(apply: &mut Applying<'_, '_>, case_id: &CaseId) -> Outcome<()> {
    let now = apply.now;
    let start = end_key(now.saturating_add(1), "");
    let end = end_key(now.saturating_add(session::SESSION_MS_MAX + 1), "");
    let here = apply.context.office.clone();
    for (_, value) in apply.txn.scan(&start, &end, RUNNING_SCAN_MAX)? {
        let id: String = decode(&value)?;
        let Some(session) = load(apply.txn, &id)? else {
            continue;
        };
        if session.running_at(now) && session.check_link(&here, now).is_ok() {
            return link(apply, session, case_id);
        }
    }
    Ok(Ok(()))
}

/// `case_id`, just filed here, linked to `session` (checked before the filing).
fn link(apply: &mut Applying<'_, '_>, mut session: Session, case_id: &CaseId) -> Outcome<()> {
    let here = apply.context.office.clone();
    if let Err(error) = session.link(&here, Some(case_id), apply.now) {
        tracing::error!(session = %session.id, %case_id, code = error.code, "a checked session link failed");
        return Ok(Err(refusal(error)));
    }
    apply.txn.put(case_key(case_id), encode(&session.id));
    let outcome = changed(apply, &mut session, true)?;
    if let Err(refused) = &outcome {
        tracing::error!(session = %session.id, %case_id, code = %refused.code, "session link not sent");
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use liandong_domain::message::Envelope;
    use liandong_domain::session::Schedule;
    use liandong_domain::Registration;

    use super::*;
    use crate::machine::keys;
    use crate::machine::tests::{case_of, Office};

    const HOUR: Millis = 3_600_000;

    fn code(text: &str) -> OfficeCode {
        text.parse().unwrap()
    }

    /// The messages waiting in `office`'s outbox for `to`.
    fn outbox(office: &Office, to: &str) -> Vec<Envelope> {
        let txn = Txn::new(&office.db, office.context.office.as_str());
        let start = keys::outbox_link(&code(to));
        txn.scan(&start, &crate::store::keys::prefix_end(&start), usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, value)| decode(&value).unwrap())
            .collect()
    }

    /// Delivers `envelopes` (in order) to `office`; the refusal codes.
    fn deliver(office: &mut Office, from: &str, envelopes: Vec<Envelope>) -> Vec<String> {
        match office.apply(Operation::Receive {
            from: code(from),
            envelopes,
        }) {
            Response::Delivered { refused, .. } => refused.into_iter().map(|r| r.code).collect(),
            other => panic!("Receive answered {other:?}"),
        }
    }

    fn session_of(response: Response) -> Session {
        match response {
            Response::Session { document } => serde_json::from_slice(&document).unwrap(),
            other => panic!("expected a session, got {other:?}"),
        }
    }

    fn refusal_of(response: Response) -> String {
        match response {
            Response::Rejected { code, .. } => code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn command(office: &mut Office, command: SessionCommand) -> Response {
        office.apply(Operation::Session {
            command,
            caller: "li".into(),
        })
    }

    fn stored(office: &Office, id: &str) -> Option<Session> {
        load(&Txn::new(&office.db, office.context.office.as_str()), id).unwrap()
    }

    /// Schedule at the city, the invitation down, the answer, a booking and a filing in the
    /// session up, the merged record down again: each step through the outbox, once.
    #[test]
    fn a_session_travels_down_and_its_parts_come_back_up() {
        let mut city = Office::new("5306", None);
        let mut county = Office::new("530602", Some("5306"));
        let schedule = Schedule {
            starts_at: crate::machine::tests::START_MS,
            ends_at: crate::machine::tests::START_MS + 20 * HOUR,
            invite: vec![code("530602")],
            leader: "王市长".into(),
            slots: 1,
        };
        let session = session_of(command(&mut city, SessionCommand::Schedule(schedule)));
        assert_eq!(session.id, "5306-S1");
        let invitations = outbox(&city, "530602");
        assert_eq!(invitations.len(), 1);
        assert_eq!(invitations[0].body.kind(), "session_record");

        // The invitation, delivered twice (a replay), makes one copy.
        assert!(deliver(&mut county, "5306", invitations.clone()).is_empty());
        assert!(deliver(&mut county, "5306", invitations).is_empty());
        assert_eq!(stored(&county, "5306-S1").unwrap().revision, 1);

        let answer = SessionCommand::Answer {
            session: "5306-S1".into(),
            accept: true,
            leader: "张县长".into(),
        };
        session_of(command(&mut county, answer));
        // A booking, retried: one booking (the session has one slot), the same answer.
        let book = |key: &str| SessionCommand::Book {
            session: "5306-S1".into(),
            petitioner_key: key.into(),
            petitioner_id: "530602198001010012".into(),
            name: "Zhang".into(),
        };
        let first = session_of(command(&mut county, book("key-1")));
        let again = session_of(command(&mut county, book("key-1")));
        assert_eq!(first, again);
        assert_eq!(first.part(&code("530602")).unwrap().booked, 1);
        let other = command(&mut county, book("key-2"));
        assert_eq!(refusal_of(other), "session_full");
        let registration = || Registration {
            channel: liandong_domain::Channel::Video,
            petitioner_id: "530602198001010012".into(),
            name: "Zhang".into(),
            phone: None,
            category: "land".into(),
            summary: "s".into(),
            location: None,
            officer: "li".into(),
            address: None,
        };
        let filing = Operation::SessionFile {
            session: "5306-S1".into(),
            op: Box::new(Operation::File {
                registration: registration(),
                request_id: None,
                caller: "li".into(),
            }),
        };
        // Filed while the session runs (the stamp time): linked without asking.
        let ordinary = case_of(county.apply(Operation::File {
            registration: registration(),
            request_id: None,
            caller: "li".into(),
        }));
        let case = case_of(county.apply(filing));
        let txn = Txn::new(&county.db, "530602");
        assert_eq!(of_case(&txn, &case.id).unwrap().as_deref(), Some("5306-S1"));
        let reports: Vec<Envelope> = outbox(&county, "5306")
            .into_iter()
            .filter(|e| e.body.kind() == "session_report")
            .collect();
        assert_eq!(
            reports.len(),
            4,
            "the answer, the booking, then each linked case"
        );

        // At the city, in order: the part merges; the record goes down again each time.
        let before = outbox(&city, "530602").len();
        let all = outbox(&county, "5306");
        assert!(deliver(&mut city, "530602", all).is_empty());
        let record = stored(&city, "5306-S1").unwrap();
        let part = record.part(&code("530602")).unwrap();
        assert!(part.answer.as_ref().unwrap().accept);
        assert_eq!(part.cases, vec![ordinary.id.clone(), case.id.clone()]);
        assert_eq!(outbox(&city, "530602").len(), before + 4);

        // After the session ends, a filing links to nothing.
        let mut late = Office::new("530602", Some("5306"));
        let invitation = outbox(&city, "530602").remove(0);
        assert!(deliver(&mut late, "5306", vec![invitation]).is_empty());
        for _ in 0..20 * 60 {
            late.apply(Operation::Tick);
        }
        let after = case_of(late.apply(Operation::File {
            registration: registration(),
            request_id: None,
            caller: "li".into(),
        }));
        let txn = Txn::new(&late.db, "530602");
        assert_eq!(of_case(&txn, &after.id).unwrap(), None);
    }

    fn once(office: &mut Office, command: SessionCommand, request_id: &str) -> Response {
        office.apply(Operation::SessionOnce {
            command,
            request_id: request_id.into(),
            caller: "li".into(),
        })
    }

    /// A session write retried with its request id (after a lost answer) is answered with the
    /// first answer and applied once: one session scheduled, one slot booked, even when the
    /// session changed in between. The id for another command or session, or for a case, is
    /// refused; an over-long one too; each refusal changes nothing.
    #[test]
    fn a_session_write_retried_with_its_request_id_is_applied_once() {
        let mut city = Office::new("5306", None);
        let mut county = Office::new("530602", Some("5306"));
        let schedule = SessionCommand::Schedule(Schedule {
            starts_at: crate::machine::tests::START_MS,
            ends_at: crate::machine::tests::START_MS + 20 * HOUR,
            invite: vec![code("530602")],
            leader: "王市长".into(),
            slots: 3,
        });
        let first = session_of(once(&mut city, schedule.clone(), "r-schedule"));
        let again = session_of(once(&mut city, schedule.clone(), "r-schedule"));
        assert_eq!(first, again, "the first answer, again");
        assert_eq!(outbox(&city, "530602").len(), 1, "one invitation sent");
        assert!(stored(&city, "5306-S2").is_none(), "no second session");
        let count: u64 = get_or_default(&Txn::new(&city.db, "5306"), SESSION_COUNT).unwrap();
        assert_eq!(count, 1);

        assert!(deliver(&mut county, "5306", outbox(&city, "530602")).is_empty());
        let answer = SessionCommand::Answer {
            session: first.id.clone(),
            accept: true,
            leader: "张县长".into(),
        };
        session_of(once(&mut county, answer, "r-answer"));
        let book = |key: &str| SessionCommand::Book {
            session: first.id.clone(),
            petitioner_key: key.into(),
            petitioner_id: "530602198001010012".into(),
            name: "Zhang".into(),
        };
        let booked = session_of(once(&mut county, book("key-1"), "r-book"));
        assert_eq!(booked.part(&code("530602")).unwrap().booked, 1);
        // Another petitioner books in between; the retry still gets the first answer.
        session_of(once(&mut county, book("key-2"), "r-book-2"));
        let retried = session_of(once(&mut county, book("key-1"), "r-book"));
        assert_eq!(retried, booked, "the first answer, again");
        let held = stored(&county, &first.id).unwrap();
        assert_eq!(held.part(&code("530602")).unwrap().booked, 2);
        let reports = outbox(&county, "5306");
        assert_eq!(reports.len(), 3, "the answer and two bookings, each once");

        // Refusals: the id for another command, another session, a case; an over-long id.
        let before = stored(&county, &first.id).unwrap();
        let recording = SessionCommand::Recording {
            session: first.id.clone(),
            reference: "a.mp4".into(),
            sha256: "ab".repeat(32),
            bytes: 1,
        };
        let reused = once(&mut county, recording, "r-book");
        match &reused {
            Response::Rejected { kind, code, .. } => {
                assert_eq!(code, "request_id_reused");
                assert_eq!(*kind, RejectKind::AlreadyExists);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let elsewhere = SessionCommand::Book {
            session: "5306-S7".into(),
            petitioner_key: "key-1".into(),
            petitioner_id: "530602198001010012".into(),
            name: "Zhang".into(),
        };
        assert_eq!(
            refusal_of(once(&mut county, elsewhere, "r-book")),
            "request_id_reused"
        );
        assert_eq!(
            refusal_of(once(&mut county, book("key-3"), &"x".repeat(65))),
            "bad_request_id"
        );
        let filing = county.apply(Operation::File {
            registration: crate::machine::tests::registration(),
            request_id: Some("r-book".into()),
            caller: "li".into(),
        });
        assert_eq!(refusal_of(filing), "request_id_reused");
        assert_eq!(stored(&county, &first.id).unwrap(), before);
        assert_eq!(outbox(&county, "5306").len(), 3, "nothing more sent");
        let filed = case_of(county.apply(Operation::File {
            registration: crate::machine::tests::registration(),
            request_id: Some("r-file".into()),
            caller: "li".into(),
        }));
        assert_eq!(
            refusal_of(once(&mut county, book("key-3"), "r-file")),
            "request_id_reused"
        );
        let after = stored(&county, &first.id).unwrap();
        assert_eq!(after.part(&code("530602")).unwrap().booked, 2);
        let txn = Txn::new(&county.db, "530602");
        assert_eq!(
            of_case(&txn, &filed.id).unwrap().as_deref(),
            Some("5306-S1")
        );
    }

    /// A case registered in a session and then handed on (transferred to a sibling county):
    /// the registering office keeps its link, the host's record keeps listing the case under
    /// the office that registered it, and the receiving office's copy names no session.
    #[test]
    fn a_handed_on_case_stays_in_the_session_record_where_it_was_registered() {
        let mut city = Office::new("5306", None);
        let mut county = Office::new("530602", Some("5306"));
        let mut sibling = Office::new("530621", Some("5306"));
        let schedule = Schedule {
            starts_at: crate::machine::tests::START_MS,
            ends_at: crate::machine::tests::START_MS + 20 * HOUR,
            invite: vec![code("530602")],
            leader: "王市长".into(),
            slots: 1,
        };
        let session = session_of(command(&mut city, SessionCommand::Schedule(schedule)));
        assert!(deliver(&mut county, "5306", outbox(&city, "530602")).is_empty());
        let case = case_of(county.apply(Operation::File {
            registration: crate::machine::tests::registration(),
            request_id: None,
            caller: "li".into(),
        }));
        let transfer = county.apply(Operation::Act {
            case_id: case.id.clone(),
            command: liandong_domain::CaseCommand::Transfer {
                to: code("530621"),
                officer: "li".into(),
            },
            request_id: None,
            caller: "li".into(),
        });
        assert!(matches!(transfer, Response::Case { .. }), "{transfer:?}");
        assert!(deliver(&mut sibling, "530602", outbox(&county, "530621")).is_empty());
        assert!(deliver(&mut city, "530602", outbox(&county, "5306")).is_empty());

        let at = |office: &Office| {
            let txn = Txn::new(&office.db, office.context.office.as_str());
            of_case(&txn, &case.id).unwrap()
        };
        assert_eq!(at(&county).as_deref(), Some(session.id.as_str()));
        assert_eq!(
            at(&sibling),
            None,
            "the link stays where the case was registered"
        );
        let record = stored(&city, &session.id).unwrap();
        assert_eq!(record.part(&code("530602")).unwrap().cases, vec![case.id]);
    }

    /// Records only from the host to an office it invited, parts only from their own office to
    /// the host; an office not invited answers nothing: each refused, nothing changed.
    #[test]
    fn session_messages_and_commands_out_of_place_are_refused() {
        let mut city = Office::new("5306", None);
        let schedule = Schedule {
            starts_at: crate::machine::tests::START_MS,
            ends_at: crate::machine::tests::START_MS + 20 * HOUR,
            invite: vec![code("530602")],
            leader: "王市长".into(),
            slots: 1,
        };
        let session = session_of(command(&mut city, SessionCommand::Schedule(schedule)));
        let record = |from: &str, to: &str, seq: u64| Envelope {
            from: code(from),
            to: code(to),
            seq,
            sent_at: 0,
            body: Body::SessionRecord {
                session: session.clone(),
            },
        };
        // Not invited: a sibling county gets no copy.
        let mut sibling = Office::new("530621", Some("5306"));
        assert_eq!(
            deliver(&mut sibling, "5306", vec![record("5306", "530621", 1)]),
            ["not_invited"]
        );
        assert!(stored(&sibling, &session.id).is_none());
        // Not from the host, and not from above.
        let mut township = Office::new("530602001", Some("530602"));
        assert_eq!(
            deliver(
                &mut township,
                "530602",
                vec![record("530602", "530602001", 1)]
            ),
            ["not_host"]
        );
        let mut county = Office::new("530602", Some("5306"));
        assert_eq!(
            deliver(
                &mut county,
                "530602001",
                vec![record("530602001", "530602", 1)]
            ),
            ["session_not_downward"]
        );
        // A part of another office, or of an unknown session.
        let mut part = session.parts[1].clone();
        part.revision = 1;
        let report = |from: &str, id: &str, part: &Part, seq: u64| Envelope {
            from: code(from),
            to: code("5306"),
            seq,
            sent_at: 0,
            body: Body::SessionReport {
                session_id: id.into(),
                part: part.clone(),
            },
        };
        assert_eq!(
            deliver(
                &mut city,
                "530621",
                vec![report("530621", &session.id, &part, 1)]
            ),
            ["not_own_part"]
        );
        assert_eq!(
            deliver(
                &mut city,
                "530602",
                vec![report("530602", "5306-S9", &part, 1)]
            ),
            ["session_unknown"]
        );
        assert_eq!(stored(&city, &session.id).unwrap(), session);
        // An office without the invitation cannot answer; the host answers nothing.
        let answer = SessionCommand::Answer {
            session: session.id.clone(),
            accept: true,
            leader: "x".into(),
        };
        assert_eq!(
            refusal_of(command(&mut sibling, answer.clone())),
            "session_unknown"
        );
        assert_eq!(refusal_of(command(&mut city, answer)), "host_answers_not");
        assert_eq!(stored(&city, &session.id).unwrap(), session);
    }
}

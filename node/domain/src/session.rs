//! Joint video reception sessions (视频联动接访): an office schedules a session at which its
//! leaders and those of invited offices below it receive petitioners at the same time, each at
//! their own office, by video. The host office keeps the session's record; every invited office
//! keeps a copy. Pure rules: the node stores the record, carries it through the federation and
//! stamps the time.
//!
//! The record is split into parts, one per participating office (the host's first): an office
//! writes only its own part (its answer, its bookings, the cases registered in the session
//! there) and tells the host; the host merges the parts and sends the whole record down again.
//! Each part carries a revision its own office raises, so a part that arrives late never
//! overwrites a newer one.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::validate::{self, OFFICER_CHARS_MAX};
use crate::{CaseId, Millis, OfficeCode, Personal};

/// Offices one session may invite.
pub const INVITEES_MAX: usize = 32;
/// Booking slots one office may offer in one session.
pub const SLOTS_MAX: u32 = 200;
/// Cases one office may link to one session (its record stays small enough for one message).
pub const CASES_PER_OFFICE_MAX: usize = 200;
/// Longest session id (`<office>-S<seq>`).
pub const SESSION_ID_CHARS_MAX: usize = 40;
/// Longest recording reference (a path or URI in the host office's media storage).
pub const RECORDING_REF_CHARS_MAX: usize = 500;
/// Longest session: a reception day.
pub const SESSION_MS_MAX: Millis = 24 * 60 * 60 * 1000;
/// The stored form's version.
pub const SESSION_VERSION: u16 = 1;

/// A session's record, as the host keeps it and every invited office holds a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub v: u16,
    pub id: String,
    pub host: OfficeCode,
    pub starts_at: Millis,
    pub ends_at: Millis,
    /// The host's leader receiving.
    pub leader: String,
    /// Booking slots each participating office offers.
    pub slots: u32,
    pub scheduled_at: Millis,
    pub scheduled_by: String,
    /// One per participating office: the host's first, then the invited offices in order.
    pub parts: Vec<Part>,
    pub recording: Option<Recording>,
    /// Raised by the host at every change of its record (a copy keeps the highest it saw).
    pub revision: u32,
}

/// One participating office's part of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub office: OfficeCode,
    pub answer: Option<Answer>,
    /// Petitioners booked at this office (their names stay in this office, sealed).
    pub booked: u32,
    /// Cases registered in the session at this office.
    pub cases: Vec<CaseId>,
    /// Raised by this office at every change of its part.
    pub revision: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub accept: bool,
    /// The leader who will receive at this office (or who declined).
    pub leader: String,
    pub at: Millis,
}

/// The session's recording: where it lies in the host office's media storage, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    pub reference: String,
    /// Lowercase hex SHA-256 of the media file.
    pub sha256: String,
    pub bytes: u64,
    pub at: Millis,
    pub officer: String,
}

/// What scheduling asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub invite: Vec<OfficeCode>,
    pub leader: String,
    pub slots: u32,
}

/// What an officer asks of a session at its own office.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionCommand {
    /// Schedule a session hosted by this office.
    Schedule(Schedule),
    /// This office's answer to its invitation.
    Answer {
        session: String,
        accept: bool,
        leader: String,
    },
    /// A petitioner books a slot at this office (personal fields sealed by the office).
    Book {
        session: String,
        petitioner_key: String,
        petitioner_id: Personal,
        name: Personal,
    },
    /// The recording's reference, checksum and size (the host only).
    Recording {
        session: String,
        reference: String,
        sha256: String,
        bytes: u64,
    },
}

impl SessionCommand {
    pub fn name(&self) -> &'static str {
        match self {
            SessionCommand::Schedule(_) => "schedule",
            SessionCommand::Answer { .. } => "answer",
            SessionCommand::Book { .. } => "book",
            SessionCommand::Recording { .. } => "recording",
        }
    }

    /// The session it names (None: a new one).
    pub fn session(&self) -> Option<&str> {
        match self {
            SessionCommand::Schedule(_) => None,
            SessionCommand::Answer { session, .. }
            | SessionCommand::Book { session, .. }
            | SessionCommand::Recording { session, .. } => Some(session),
        }
    }
}

/// Why a session rule refused: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionError {
    pub code: &'static str,
    pub message: String,
    /// The input was malformed (otherwise a rule forbids the change).
    pub invalid: bool,
}

impl SessionError {
    fn forbidden(code: &'static str, message: impl Into<String>) -> SessionError {
        SessionError {
            code,
            message: message.into(),
            invalid: false,
        }
    }

    fn invalid(code: &'static str, message: impl Into<String>) -> SessionError {
        SessionError {
            code,
            message: message.into(),
            invalid: true,
        }
    }
}

impl From<DomainError> for SessionError {
    fn from(error: DomainError) -> SessionError {
        SessionError {
            code: error.code(),
            message: error.to_string(),
            invalid: true,
        }
    }
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A session id as offices give them: one short line.
pub fn validate_id(id: &str) -> Result<(), DomainError> {
    validate::line("session", id, SESSION_ID_CHARS_MAX)
}

fn validate_leader(leader: &str) -> Result<(), DomainError> {
    validate::line("leader", leader, OFFICER_CHARS_MAX)
}

/// A new session at `host`, scheduled at `now` by `officer`: invited offices are distinct
/// descendants of the host (at most [`INVITEES_MAX`]), it ends after it starts, within a day, and
/// not before `now`.
pub fn schedule(
    id: String,
    host: &OfficeCode,
    input: Schedule,
    officer: &str,
    now: Millis,
) -> Result<Session, SessionError> {
    validate_id(&id)?;
    validate_leader(&input.leader)?;
    if input.invite.is_empty() {
        return Err(SessionError::invalid(
            "no_invitees",
            "a session invites at least one office below the host",
        ));
    }
    if input.invite.len() > INVITEES_MAX {
        return Err(SessionError::invalid(
            "too_many_invitees",
            format!("a session invites at most {INVITEES_MAX} offices"),
        ));
    }
    for (n, office) in input.invite.iter().enumerate() {
        if !host.is_ancestor_of(office) {
            return Err(SessionError::forbidden(
                "not_descendant",
                format!("{host} may invite only offices below it, not {office}"),
            ));
        }
        if input.invite[..n].contains(office) {
            return Err(SessionError::invalid(
                "duplicate_invitee",
                format!("{office} is invited twice"),
            ));
        }
    }
    if !(1..=SLOTS_MAX).contains(&input.slots) {
        return Err(DomainError::OutOfRange {
            field: "slots",
            min: 1,
            max: SLOTS_MAX,
        }
        .into());
    }
    if input.ends_at <= input.starts_at || input.ends_at - input.starts_at > SESSION_MS_MAX {
        return Err(SessionError::invalid(
            "bad_times",
            "a session ends after it starts, on the same day (at most 24 hours)",
        ));
    }
    if input.ends_at <= now {
        return Err(SessionError::forbidden(
            "session_past",
            "a session cannot be scheduled to end in the past",
        ));
    }
    let part = |office: &OfficeCode| Part {
        office: office.clone(),
        answer: None,
        booked: 0,
        cases: Vec::new(),
        revision: 0,
    };
    let mut parts = vec![part(host)];
    parts.extend(input.invite.iter().map(part));
    Ok(Session {
        v: SESSION_VERSION,
        id,
        host: host.clone(),
        starts_at: input.starts_at,
        ends_at: input.ends_at,
        leader: input.leader,
        slots: input.slots,
        scheduled_at: now,
        scheduled_by: officer.to_string(),
        parts,
        recording: None,
        revision: 1,
    })
}

impl Session {
    /// The invited offices (every participant but the host).
    pub fn invitees(&self) -> impl Iterator<Item = &OfficeCode> {
        self.parts.iter().skip(1).map(|part| &part.office)
    }

    pub fn part(&self, office: &OfficeCode) -> Option<&Part> {
        self.parts.iter().find(|part| part.office == *office)
    }

    fn part_mut(&mut self, office: &OfficeCode) -> Option<&mut Part> {
        self.parts.iter_mut().find(|part| part.office == *office)
    }

    /// Whether `now` is within the session's hours.
    pub fn running_at(&self, now: Millis) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// `office`'s part, if it takes part: the host, or an invited office that has not declined.
    fn taking_part(&mut self, office: &OfficeCode) -> Result<&mut Part, SessionError> {
        let id = self.id.clone();
        let host = self.host.clone();
        let part = self.part_mut(office).ok_or_else(|| {
            SessionError::forbidden(
                "not_invited",
                format!("session {id} did not invite office {office}"),
            )
        })?;
        if *office != host && part.answer.as_ref().is_some_and(|a| !a.accept) {
            return Err(SessionError::forbidden(
                "declined",
                format!("office {office} declined session {id}"),
            ));
        }
        Ok(part)
    }

    /// `office`'s answer to its invitation (it may change its answer until the session ends).
    pub fn answer(
        &mut self,
        office: &OfficeCode,
        accept: bool,
        leader: &str,
        now: Millis,
    ) -> Result<&Part, SessionError> {
        validate_leader(leader)?;
        if *office == self.host {
            return Err(SessionError::forbidden(
                "host_answers_not",
                format!("office {office} hosts session {}", self.id),
            ));
        }
        if now >= self.ends_at {
            return Err(self.past());
        }
        let id = self.id.clone();
        let part = self.part_mut(office).ok_or_else(|| {
            SessionError::forbidden(
                "not_invited",
                format!("session {id} did not invite office {office}"),
            )
        })?;
        part.answer = Some(Answer {
            accept,
            leader: leader.to_string(),
            at: now,
        });
        part.revision += 1;
        Ok(part)
    }

    /// A petitioner booked at `office`: refused once the session has ended or the office's slots
    /// are taken.
    pub fn book(&mut self, office: &OfficeCode, now: Millis) -> Result<&Part, SessionError> {
        if now >= self.ends_at {
            return Err(self.past());
        }
        let (id, slots) = (self.id.clone(), self.slots);
        let part = self.taking_part(office)?;
        if part.booked >= slots {
            return Err(SessionError::forbidden(
                "session_full",
                format!("all {slots} slots of session {id} at office {office} are booked"),
            ));
        }
        part.booked += 1;
        part.revision += 1;
        Ok(part)
    }

    /// Whether a case registered at `office` at `now` may be linked to this session.
    pub fn check_link(&self, office: &OfficeCode, now: Millis) -> Result<(), SessionError> {
        self.clone().link(office, None, now).map(|_| ())
    }

    /// `case_id`, registered at `office`, linked to the session (None: only checked).
    pub fn link(
        &mut self,
        office: &OfficeCode,
        case_id: Option<&CaseId>,
        now: Millis,
    ) -> Result<&Part, SessionError> {
        if now >= self.ends_at {
            return Err(self.past());
        }
        let id = self.id.clone();
        let part = self.taking_part(office)?;
        if part.cases.len() >= CASES_PER_OFFICE_MAX {
            return Err(SessionError::forbidden(
                "session_cases_full",
                format!("session {id} holds at most {CASES_PER_OFFICE_MAX} cases per office"),
            ));
        }
        if let Some(case_id) = case_id {
            if !part.cases.contains(case_id) {
                part.cases.push(case_id.clone());
                part.revision += 1;
            }
        }
        Ok(part)
    }

    /// The recording's reference, checksum and size, recorded by the host.
    pub fn record(&mut self, recording: Recording) -> Result<(), SessionError> {
        validate::line("recording", &recording.reference, RECORDING_REF_CHARS_MAX)?;
        validate::line("officer", &recording.officer, OFFICER_CHARS_MAX)?;
        let hex = recording.sha256.len() == 64
            && recording
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(SessionError::invalid(
                "bad_checksum",
                "a recording's checksum is 64 lowercase hex characters (SHA-256)",
            ));
        }
        if recording.at < self.starts_at {
            return Err(SessionError::forbidden(
                "not_started",
                format!(
                    "session {} has not started: nothing is recorded yet",
                    self.id
                ),
            ));
        }
        self.recording = Some(recording);
        Ok(())
    }

    /// `part`, reported by its office, merged into the host's record: kept if newer than the
    /// part held. Whether it changed the record.
    pub fn merge_part(&mut self, part: Part) -> Result<bool, SessionError> {
        if part.office == self.host {
            return Err(SessionError::forbidden(
                "host_part",
                "only the host writes its own part",
            ));
        }
        let id = self.id.clone();
        let office = part.office.clone();
        let held = self.part_mut(&office).ok_or_else(|| {
            SessionError::forbidden(
                "not_invited",
                format!("session {id} did not invite office {office}"),
            )
        })?;
        if part.revision <= held.revision {
            return Ok(false);
        }
        *held = part;
        Ok(true)
    }

    /// The host's record arriving at the copy held by `office`: newer records replace the copy,
    /// but `office`'s own part stays as this office wrote it (the host may not have it yet).
    pub fn merge_record(
        held: Option<&Session>,
        office: &OfficeCode,
        mut record: Session,
    ) -> Session {
        let Some(held) = held else {
            return record;
        };
        if record.revision < held.revision {
            return held.clone();
        }
        if let (Some(own), Some(slot)) = (held.part(office), record.part_mut(office)) {
            if own.revision > slot.revision {
                *slot = own.clone();
            }
        }
        record
    }

    /// Every field as the engine makes them: what a receiver checks of a record it is sent.
    pub fn validate(&self) -> Result<(), SessionError> {
        validate_id(&self.id)?;
        validate_leader(&self.leader)?;
        if self.parts.is_empty() || self.parts.len() > INVITEES_MAX + 1 {
            return Err(SessionError::invalid(
                "bad_parts",
                "a session's parts: 2 to 33",
            ));
        }
        if self.parts[0].office != self.host {
            return Err(SessionError::invalid(
                "bad_parts",
                "the host's part comes first",
            ));
        }
        for part in &self.parts {
            validate_part(part)?;
        }
        if let Some(recording) = &self.recording {
            self.clone().record(recording.clone())?;
        }
        Ok(())
    }

    fn past(&self) -> SessionError {
        SessionError::forbidden("session_past", format!("session {} has ended", self.id))
    }
}

/// A part's bounds (a reported part is checked before it is merged).
pub fn validate_part(part: &Part) -> Result<(), SessionError> {
    if part.cases.len() > CASES_PER_OFFICE_MAX || part.booked > SLOTS_MAX {
        return Err(SessionError::invalid("bad_part", "a part over its bounds"));
    }
    if let Some(answer) = &part.answer {
        validate_leader(&answer.leader)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Millis = 3_600_000;
    const NOW: Millis = 1_796_000_000_000;

    fn code(text: &str) -> OfficeCode {
        text.parse().unwrap()
    }

    fn input() -> Schedule {
        Schedule {
            starts_at: NOW + 24 * HOUR,
            ends_at: NOW + 26 * HOUR,
            invite: vec![code("530602"), code("530621"), code("530602001")],
            leader: "王市长".into(),
            slots: 2,
        }
    }

    fn session() -> Session {
        schedule("5306-S1".into(), &code("5306"), input(), "li", NOW).unwrap()
    }

    #[test]
    fn a_session_invites_distinct_descendants_and_ends_in_the_future() {
        let session = session();
        assert_eq!(session.parts.len(), 4);
        assert_eq!(session.parts[0].office, code("5306"));
        let city = code("5306");
        let mut sibling = input();
        sibling.invite.push(code("5325"));
        let error = schedule("5306-S1".into(), &city, sibling, "li", NOW).unwrap_err();
        assert_eq!(error.code, "not_descendant");
        let mut twice = input();
        twice.invite.push(code("530602"));
        assert_eq!(
            schedule("x".into(), &city, twice, "li", NOW)
                .unwrap_err()
                .code,
            "duplicate_invitee"
        );
        let mut none = input();
        none.invite.clear();
        assert_eq!(
            schedule("x".into(), &city, none, "li", NOW)
                .unwrap_err()
                .code,
            "no_invitees"
        );
        let mut past = input();
        past.starts_at = NOW - 3 * HOUR;
        past.ends_at = NOW - HOUR;
        assert_eq!(
            schedule("x".into(), &city, past, "li", NOW)
                .unwrap_err()
                .code,
            "session_past"
        );
        let mut backwards = input();
        backwards.ends_at = backwards.starts_at;
        assert_eq!(
            schedule("x".into(), &city, backwards, "li", NOW)
                .unwrap_err()
                .code,
            "bad_times"
        );
        let mut no_slots = input();
        no_slots.slots = 0;
        assert_eq!(
            schedule("x".into(), &city, no_slots, "li", NOW)
                .unwrap_err()
                .code,
            "out_of_range"
        );
    }

    #[test]
    fn only_an_invited_office_answers_until_the_session_ends() {
        let mut session = session();
        let part = session
            .answer(&code("530602"), true, "张县长", NOW)
            .unwrap();
        assert_eq!(part.revision, 1);
        assert!(part.answer.as_ref().unwrap().accept);
        let error = session.answer(&code("530623"), true, "x", NOW).unwrap_err();
        assert_eq!(error.code, "not_invited");
        let error = session.answer(&code("5306"), true, "x", NOW).unwrap_err();
        assert_eq!(error.code, "host_answers_not");
        let error = session
            .answer(&code("530621"), true, "x", session.ends_at)
            .unwrap_err();
        assert_eq!(error.code, "session_past");
    }

    #[test]
    fn bookings_stop_when_full_past_or_declined() {
        let mut session = session();
        let township = code("530602001");
        session.book(&township, NOW).unwrap();
        session.book(&township, NOW).unwrap();
        let before = session.clone();
        assert_eq!(
            session.book(&township, NOW).unwrap_err().code,
            "session_full"
        );
        assert_eq!(session, before, "a refused booking changes nothing");
        assert_eq!(
            session
                .book(&code("530602"), session.ends_at)
                .unwrap_err()
                .code,
            "session_past"
        );
        session
            .answer(&code("530621"), false, "李县长", NOW)
            .unwrap();
        assert_eq!(
            session.book(&code("530621"), NOW).unwrap_err().code,
            "declined"
        );
        assert_eq!(session.book(&code("5306"), NOW).unwrap().booked, 1);
    }

    #[test]
    fn cases_link_once_per_office_and_parts_merge_by_revision() {
        let mut host = session();
        let mut township = host.clone();
        let office = code("530602001");
        let case: CaseId = "530602001-2026-000001".parse().unwrap();
        township.link(&office, Some(&case), NOW).unwrap();
        township.link(&office, Some(&case), NOW).unwrap();
        let part = township.part(&office).unwrap().clone();
        assert_eq!(part.cases, vec![case]);
        assert!(host.merge_part(part.clone()).unwrap());
        assert!(
            !host.merge_part(part.clone()).unwrap(),
            "a replay changes nothing"
        );
        let mut stale = part.clone();
        stale.revision = 0;
        assert!(!host.merge_part(stale).unwrap());
        let mut forged = part;
        forged.office = code("5306");
        assert_eq!(host.merge_part(forged).unwrap_err().code, "host_part");

        // The host's record does not overwrite a newer own part at the copy.
        let mut record = session();
        record.revision = 5;
        township
            .link(
                &office,
                Some(&"530602001-2026-000002".parse().unwrap()),
                NOW,
            )
            .unwrap();
        let merged = Session::merge_record(Some(&township), &office, record.clone());
        assert_eq!(merged.revision, 5);
        assert_eq!(merged.part(&office).unwrap().cases.len(), 2);
        let mut older = record;
        older.revision = 0;
        assert_eq!(Session::merge_record(Some(&merged), &office, older), merged);
    }

    #[test]
    fn a_recording_has_a_checksum_and_comes_after_the_start() {
        let mut session = session();
        let recording = Recording {
            reference: "media/5306-S1.mp4".into(),
            sha256: "ab".repeat(32),
            bytes: 1024,
            at: session.starts_at + HOUR,
            officer: "li".into(),
        };
        session.record(recording.clone()).unwrap();
        assert_eq!(session.validate(), Ok(()));
        let mut bad = recording.clone();
        bad.sha256 = "XY".repeat(32);
        assert_eq!(session.record(bad).unwrap_err().code, "bad_checksum");
        let mut early = recording;
        early.at = session.starts_at - 1;
        assert_eq!(session.record(early).unwrap_err().code, "not_started");
    }
}

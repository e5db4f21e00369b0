//! Liandong's pure case engine: `(case, command, stamped time) -> events`, deterministic, no IO, no
//! clock, no async (openraft's engine style). The node stamps every log entry with its leader's
//! clock and every replica applies the same events, so every replica reaches the same case.
//!
//! - `ids`: office division codes and case ids
//! - `calendar`: China-time dates, the holiday calendar as data, RFC 3339
//! - `rules`: the statute's limits in numbers, and how a limit is counted
//! - `model`: the case and its words; `command`: what may be asked of it
//! - `engine`: `register`, `decide`, `tick`, `receive`
//! - `case`: `Case::apply` and the stored form; `event`: events and the hash chain;
//!   `canonical`: the canonical JSON a state hash is taken of
//! - `clock`: deadline clocks and their thresholds; `validate`: input limits, ID numbers, keys
//! - `personal`: personal fields, clear or sealed by the office (opaque here)
//! - `codec`: the versioned binary codec of every stored value and case document
//! - `notify`: which SMS notices a case change makes for the petitioner, and their text
//! - `department`: an office's departments, their tasks on cases, joint meetings;
//!   `proxy`: intake points, proxy agents and proxy filings
//! - `group`: group petitions (集体访) and petitioners identified by other documents
//! - `session`: joint video reception sessions across levels (视频联动接访)
//! - `notice`: escalating notices (三级抄告) and red cards: the rules only, not wired in yet
#![forbid(unsafe_code)]

pub mod anchor;
mod calendar;
mod canonical;
mod case;
mod clock;
pub mod codec;
mod command;
pub mod department;
mod engine;
mod error;
mod event;
pub mod figures;
pub mod group;
mod ids;
pub mod message;
mod model;
pub mod notice;
pub mod notify;
mod personal;
pub mod proxy;
pub mod reports;
pub mod rules;
pub mod session;
mod validate;

pub use calendar::{
    china_day, format_rfc3339, parse_rfc3339, Calendar, Date, DayKind, Millis, CALENDAR_HEADER,
    CALENDAR_NAME_CHARS_MAX, CALENDAR_ROWS_MAX, CHINA_OFFSET_MS, DAY_MS, HOUR_MS, MINUTE_MS,
    SECOND_MS,
};
pub use case::{personal_data_sha256, SealCount};
pub use clock::{threshold_at, ClockKind, ClockRun, Clocks, Deadlines};
pub use command::CaseCommand;
pub use engine::{decide, receive, register, register_with_group, tick, Context};
pub use error::{echo, DomainError, ERROR_ECHO_CHARS_MAX};
pub use event::{
    canonical_json, ChainHead, EntrySigner, Event, HistoryEntry, SealError, EVENT_VERSION,
    GENESIS_HASH, SEALED_ENTRY_VERSION,
};
pub use ids::{CaseId, Level, OfficeCode, CASE_SEQ_DIGITS_MIN};
pub use model::{
    Case, CaseKind, Channel, DeclineRoute, Grade, GradeInfo, HandoffKind, Opinion, Petitioner,
    Receipt, Registration, ReviewLevel, Satisfaction, Status, Supervision, CASE_VERSION,
    CASE_VERSION_MIN,
};
pub use model::{
    CaseExtra, FollowUpRecord, IdType, PetitionerExtra, CASE_VERSION_ADDRESS, CASE_VERSION_EXTRA,
    CASE_VERSION_GROUP, CASE_VERSION_SINGLE, REGISTRATION_VERSION_ADDRESS,
};
pub use personal::{Personal, Sealed, SEALED_BYTES_MAX, SEALED_MARK};
pub use validate::{document as validate_document, document_key};
pub use validate::{
    id_number as validate_id_number, normalise_id_number, petitioner_key, ADDRESS_BYTES_MAX,
    CATEGORY_CHARS_MAX, DEPARTMENT_CHARS_MAX, ID_NUMBER_LEN, NAME_CHARS_MAX, OFFICER_CHARS_MAX,
    PHONE_DIGITS_MAX, PHONE_DIGITS_MIN, REASON_CHARS_MAX, SUMMARY_CHARS_MAX, TEXT_CHARS_MAX,
};

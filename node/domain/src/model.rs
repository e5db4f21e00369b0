//! The case and the words it is made of. The engine (engine.rs) decides, `Case::apply` (case.rs)
//! folds; this file only says what a case holds and how its words are spelled.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::calendar::Millis;
use crate::clock::{Clocks, Deadlines};
use crate::codec::tagged_enum;
use crate::error::{echo, DomainError};
use crate::event::{ChainHead, HistoryEntry};
use crate::group::Group;
use crate::ids::{CaseId, OfficeCode};
use crate::personal::Personal;
use crate::validate;

/// A closed set of words, spelled as the CLI types them. Serialises as the word; parsing is
/// case-insensitive; `reserved` words deserialise but are refused from people by `FromStr`.
macro_rules! words {
    (
        $(#[$meta:meta])* $name:ident, $error:ident, reserved [$($reserved:ident),*],
        { $($(#[$variant_meta:meta])* $variant:ident => $word:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$variant_meta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            fn from_word(word: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|value| value.as_str().eq_ignore_ascii_case(word))
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(input: &str) -> Result<$name, DomainError> {
                match $name::from_word(input.trim()) {
                    $(Some($name::$reserved) => Err(DomainError::$error { input: echo(input) }),)*
                    Some(value) => Ok(value),
                    None => Err(DomainError::$error { input: echo(input) }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let word = String::deserialize(deserializer)?;
                $name::from_word(&word).ok_or_else(|| serde::de::Error::custom(DomainError::$error { input: echo(&word) }))
            }
        }
    };
}

words!(
    /// How the petition came in (登记渠道).
    Channel, InvalidChannel, reserved [], {
        /// Walk-in visit (走访).
        Visit => "visit",
        Letter => "letter",
        /// Phone, including the 12345 hotline.
        Phone => "phone",
        Online => "online",
        /// Video reception (视频接访).
        Video => "video",
    }
);

words!(
    /// The statutory route a petitioner is pointed to when a petition is not accepted: the matter
    /// belongs to another legal procedure.
    DeclineRoute, InvalidDeclineRoute, reserved [], {
        Litigation => "litigation",
        Arbitration => "arbitration",
        /// Administrative review (行政复议).
        AdminReview => "admin-review",
        /// Discipline inspection (纪检监察).
        Discipline => "discipline",
    }
);

words!(
    /// The identity document a petitioner registers with: a PRC resident ID (居民身份证, the
    /// default) or, for a petitioner who has none, another document (see
    /// [`crate::validate::document`] for each one's format).
    IdType, InvalidIdType, reserved [], {
        /// PRC resident ID (居民身份证): 18 characters, GB 11643 checksum.
        Resident => "resident",
        /// A passport, of any country.
        Passport => "passport",
        /// Mainland travel permit for Hong Kong and Macao residents (港澳居民来往内地通行证).
        HkMacao => "hk-macao",
        /// Mainland travel permit for Taiwan residents (台湾居民来往大陆通行证).
        Taiwan => "taiwan",
        /// Foreign permanent resident ID card (外国人永久居留身份证).
        ForeignPermanent => "foreign-permanent",
    }
);

words!(
    /// The reply's opinion (处理意见).
    Opinion, InvalidOpinion, reserved [], {
        Support => "support",
        Explain => "explain",
        NotSupport => "not-support",
    }
);

words!(
    /// The petitioner's evaluation of the reply.
    Satisfaction, InvalidSatisfaction, reserved [NotEvaluated], {
        Satisfied => "satisfied",
        /// Basically satisfied.
        Basic => "basic",
        Dissatisfied => "dissatisfied",
        /// Set by the engine alone, when the evaluation window lapses.
        NotEvaluated => "not-evaluated",
    }
);

words!(
    /// Grade of a major case (A most serious).
    Grade, InvalidGrade, reserved [], {
        A => "A",
        B => "B",
        C => "C",
    }
);

/// Which escalation a review request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewLevel {
    /// 复查: of an original case's reply, one level up.
    Review,
    /// 复核: of a review decision, one more level up; its result is final.
    ReReview,
}

impl ReviewLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewLevel::Review => "review",
            ReviewLevel::ReReview => "re_review",
        }
    }
}

tagged_enum! {
    /// Where a case stands in the statute: an original petition, or a review / re-review of another
    /// case's reply (registered one level up, linked to the case it reviews).
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub enum CaseKind tagged "type" {
        Original,
        Review { of: CaseId },
        ReReview { of: CaseId },
    }
}

impl CaseKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            CaseKind::Original => "original",
            CaseKind::Review { .. } => "review",
            CaseKind::ReReview { .. } => "re_review",
        }
    }

    /// Review and re-review cases are decided within 30 days, without extension.
    pub fn is_review(&self) -> bool {
        !matches!(self, CaseKind::Original)
    }
}

tagged_enum! {
    /// How ownership moves in a handoff.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub enum HandoffKind tagged "type" {
        /// 转送: to the competent office.
        Transfer,
        /// 交办: down the tree, with a report-back deadline.
        Assign { due_by: Millis },
        /// 退回: the receiver hands the case back to the office it came from.
        Return,
    }
}

impl HandoffKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            HandoffKind::Transfer => "transfer",
            HandoffKind::Assign { .. } => "assign",
            HandoffKind::Return => "return",
        }
    }
}

tagged_enum! {
    /// Where a case stands. Copies at different offices can differ: the sender's copy of a handed-off
    /// case is `InTransit` and then a `Forwarded` stub, while the receiver's copy carries on.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub enum Status tagged "state" {
        /// Registered (or received): awaiting the 15-day decision.
        Registered,
        /// Accepted (受理): being handled, the reply clock running.
        Accepted,
        /// Handed off, not yet acknowledged by the receiver: read-only here.
        InTransit { to: OfficeCode, kind: HandoffKind },
        /// The receiver owns it now; this copy is a stub pointing there.
        Forwarded { to: OfficeCode },
        /// Not accepted (不予受理), with the route the petitioner was told.
        Declined { route: DeclineRoute },
        /// Replied: evaluation and review windows open.
        Replied,
        /// Replied and evaluated by the petitioner; the review window may still be open.
        Evaluated,
        /// The petitioner asked for review; the linked review case carries on one level up.
        ReviewRequested,
        /// The matter is closed: no review window is left.
        Final,
        /// An original case whose review decision came back from the level above; a re-review
        /// may still be asked of the review case (its decision, when it comes, makes this final).
        Reviewed,
    }
}

impl Status {
    /// Stable snake_case word for APIs, queries and stats.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Registered => "registered",
            Status::Accepted => "accepted",
            Status::InTransit { .. } => "in_transit",
            Status::Forwarded { .. } => "forwarded",
            Status::Declined { .. } => "declined",
            Status::Replied => "replied",
            Status::Evaluated => "evaluated",
            Status::ReviewRequested => "review_requested",
            Status::Final => "final",
            Status::Reviewed => "reviewed",
        }
    }

    /// Every status word, for validating query filters.
    pub const WORDS: [&'static str; 10] = [
        "registered",
        "accepted",
        "in_transit",
        "forwarded",
        "declined",
        "replied",
        "evaluated",
        "review_requested",
        "final",
        "reviewed",
    ];
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an officer types at intake.
///
/// **Stored form** (it is in every filing's log entry): a registration without an address is
/// written exactly as before addresses existed, its fields in order. One with an address is
/// written in the binary format as an empty string where the channel was (no channel word is
/// empty, so a build that does not know addresses refuses it rather than misreads it), then
/// [`REGISTRATION_VERSION_ADDRESS`], the same fields, and the address last. In JSON the address
/// is one more optional field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub channel: Channel,
    /// PRC resident ID number (18 characters, GB 11643 checksum). Personal fields are clear as
    /// typed; the office seals them before they reach its log.
    pub petitioner_id: Personal,
    pub name: Personal,
    pub phone: Option<Personal>,
    pub category: String,
    pub summary: String,
    /// Where the matter arose, if it names a division.
    pub location: Option<OfficeCode>,
    /// The first-contact officer (首办责任人).
    pub officer: String,
    /// Where the petitioner lives or can be reached (optional; personal, sealed like the name;
    /// at most [`validate::ADDRESS_BYTES_MAX`] bytes, one line).
    pub address: Option<Personal>,
}

/// The version a registration with an address is written at in the binary format (after its
/// empty-channel mark); one without is written at version 1's layout, as before.
pub const REGISTRATION_VERSION_ADDRESS: u16 = 2;

/// [`Registration`]'s fields as the derived serde forms write them: the JSON form, and the
/// binary form of a registration without an address (the address is skipped when None).
#[derive(Serialize, Deserialize)]
struct RegistrationForm {
    channel: Channel,
    petitioner_id: Personal,
    name: Personal,
    phone: Option<Personal>,
    category: String,
    summary: String,
    location: Option<OfficeCode>,
    officer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<Personal>,
}

impl From<RegistrationForm> for Registration {
    fn from(form: RegistrationForm) -> Registration {
        Registration {
            channel: form.channel,
            petitioner_id: form.petitioner_id,
            name: form.name,
            phone: form.phone,
            category: form.category,
            summary: form.summary,
            location: form.location,
            officer: form.officer,
            address: form.address,
        }
    }
}

impl Serialize for Registration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let address = match &self.address {
            Some(address) if !serializer.is_human_readable() => address,
            _ => {
                return RegistrationForm {
                    channel: self.channel,
                    petitioner_id: self.petitioner_id.clone(),
                    name: self.name.clone(),
                    phone: self.phone.clone(),
                    category: self.category.clone(),
                    summary: self.summary.clone(),
                    location: self.location.clone(),
                    officer: self.officer.clone(),
                    address: self.address.clone(),
                }
                .serialize(serializer)
            }
        };
        let mut tuple = serializer.serialize_tuple(REGISTRATION_BINARY_ITEMS)?;
        tuple.serialize_element("")?;
        tuple.serialize_element(&REGISTRATION_VERSION_ADDRESS)?;
        tuple.serialize_element(&self.channel)?;
        tuple.serialize_element(&self.petitioner_id)?;
        tuple.serialize_element(&self.name)?;
        tuple.serialize_element(&self.phone)?;
        tuple.serialize_element(&self.category)?;
        tuple.serialize_element(&self.summary)?;
        tuple.serialize_element(&self.location)?;
        tuple.serialize_element(&self.officer)?;
        tuple.serialize_element(address)?;
        tuple.end()
    }
}

/// Items of a registration's binary form at most: mark, version, eight fields, address.
const REGISTRATION_BINARY_ITEMS: usize = 11;

impl<'de> Deserialize<'de> for Registration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Registration, D::Error> {
        if deserializer.is_human_readable() {
            return RegistrationForm::deserialize(deserializer).map(Registration::from);
        }
        deserializer.deserialize_tuple(REGISTRATION_BINARY_ITEMS, RegistrationVisitor)
    }
}

/// Reads a registration's binary form (see [`Registration`]): version 1's fields, or the mark,
/// the version, the fields and the address.
struct RegistrationVisitor;

impl<'de> serde::de::Visitor<'de> for RegistrationVisitor {
    type Value = Registration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a registration")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Registration, A::Error> {
        use serde::de::Error;
        fn next<'de, T: Deserialize<'de>, A: serde::de::SeqAccess<'de>>(
            seq: &mut A,
        ) -> Result<T, A::Error> {
            seq.next_element()?
                .ok_or_else(|| A::Error::custom("a registration ends early"))
        }
        let first: String = next(&mut seq)?;
        let versioned = first.is_empty();
        let channel = if versioned {
            let version: u16 = next(&mut seq)?;
            if version != REGISTRATION_VERSION_ADDRESS {
                return Err(A::Error::custom(DomainError::UnsupportedVersion {
                    found: u64::from(version),
                    supported: REGISTRATION_VERSION_ADDRESS,
                }));
            }
            next(&mut seq)?
        } else {
            Channel::from_word(&first).ok_or_else(|| {
                A::Error::custom(DomainError::InvalidChannel {
                    input: echo(&first),
                })
            })?
        };
        let mut registration = Registration {
            channel,
            petitioner_id: next(&mut seq)?,
            name: next(&mut seq)?,
            phone: next(&mut seq)?,
            category: next(&mut seq)?,
            summary: next(&mut seq)?,
            location: next(&mut seq)?,
            officer: next(&mut seq)?,
            address: None,
        };
        if versioned {
            registration.address = Some(next(&mut seq)?);
        }
        Ok(registration)
    }
}

impl Registration {
    /// Every field within its named limit (see the `*_CHARS_MAX` constants); the first failure.
    pub fn validate(&self) -> Result<(), DomainError> {
        self.validate_as(IdType::Resident)
    }

    /// [`Registration::validate`] for a petitioner identified by a document of `id_type`.
    pub fn validate_as(&self, id_type: IdType) -> Result<(), DomainError> {
        validate_personal_as(
            id_type,
            &self.petitioner_id,
            &self.name,
            self.phone.as_ref(),
        )?;
        if let Some(address) = &self.address {
            address.check(validate::address)?;
        }
        validate::line("category", &self.category, validate::CATEGORY_CHARS_MAX)?;
        validate::text("summary", &self.summary, validate::SUMMARY_CHARS_MAX)?;
        validate::line("officer", &self.officer, validate::OFFICER_CHARS_MAX)
    }
}

/// The personal fields of a registration or a case, for a petitioner identified by a document of
/// `id_type`: each clear value within its limits (sealed values were checked before they were
/// sealed).
pub(crate) fn validate_personal_as(
    id_type: IdType,
    id_number: &Personal,
    name: &Personal,
    phone: Option<&Personal>,
) -> Result<(), DomainError> {
    id_number.check(|number| validate::document(id_type, number))?;
    name.check(|name| validate::line("name", name, validate::NAME_CHARS_MAX))?;
    if let Some(phone) = phone {
        phone.check(validate::phone)?;
    }
    Ok(())
}

impl Case {
    /// The petitioner's and the group's clear fields in their formats (the petitioner's number by
    /// the group's document type), and the group within its bounds.
    pub fn validate_petitioners(&self) -> Result<(), DomainError> {
        let mut id_type = IdType::Resident;
        if let Some(group) = &self.group {
            group.validate()?;
            id_type = group.representative_id_type()?.unwrap_or(IdType::Resident);
        }
        if let Some(petitioner) = &self.petitioner {
            validate_personal_as(
                id_type,
                &petitioner.id_number,
                &petitioner.name,
                petitioner.phone.as_ref(),
            )?;
        }
        if let Some(address) = self.address() {
            address.check(validate::address)?;
        }
        Ok(())
    }

    /// The petitioner's address (None when none was filed, and on a stub).
    pub fn address(&self) -> Option<&Personal> {
        self.petitioner_extra.as_ref()?.address.as_ref()
    }

    /// The petitioner's address, to seal or open it where it lies.
    pub fn address_mut(&mut self) -> Option<&mut Personal> {
        self.petitioner_extra.as_mut()?.address.as_mut()
    }
}

/// Personal data: stays at the owning office, moves only with ownership, never in summaries.
/// Sealed at rest by the office that holds the case; clear on the wire (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Petitioner {
    pub name: Personal,
    /// Normalised (a check 'x' made uppercase) before it is sealed.
    pub id_number: Personal,
    pub phone: Option<Personal>,
}

/// A major case's grade with the four fixed points (四定): who leads, which department, what plan,
/// by when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradeInfo {
    pub grade: Grade,
    pub leader: String,
    pub department: String,
    pub plan: String,
    pub deadline: Millis,
}

/// How this copy came to its current owner: needed to return it, and to whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub from: OfficeCode,
    pub handoff: HandoffKind,
    pub at: Millis,
}

/// An ancestor's open supervision order (督办) on this case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervision {
    pub from: OfficeCode,
    pub text: String,
    pub ordered_at: Millis,
    pub due_by: Millis,
}

/// The newest version of the case's stored form, which this build writes for a case with a
/// [`Group`] (several petitioners, or one without a resident ID): version 2's layout followed by
/// the group. A case without one is written at version 2, which the previous build reads too.
/// Version 2 is the binary codec's, where a stored case is a header (this struct without its
/// history entries) and each history entry is stored apart; version 1 was one JSON document with
/// the whole history. Versions 1 and 2 read with no group.
pub const CASE_VERSION: u16 = 5;
/// The version a case is written at once it has the petitioner's address
/// ([`PetitionerExtra`]): version 4's layout (the extension always there) with the petitioner's
/// extension between the extension and the group.
pub const CASE_VERSION_ADDRESS: u16 = 5;
/// The version a case is written at once it has the extension ([`CaseExtra`]): version 3's
/// layout with the extension between the history and the group.
pub const CASE_VERSION_EXTRA: u16 = 4;
/// The version a case with a group and no extension is written at.
pub const CASE_VERSION_GROUP: u16 = 3;
/// The version a case without a group is written at.
pub const CASE_VERSION_SINGLE: u16 = 2;
/// The oldest version `Case::from_bytes` reads; it refuses any other.
pub const CASE_VERSION_MIN: u16 = 1;

/// A petition (信访件) as one office's copy sees it. Built by `register` / `receive`, changed only by
/// `Case::apply`, encoded with `to_bytes` (the versioned binary codec).
///
/// A copy may carry its whole history or only part of it: `history` follows the chain
/// `history_start`, which is the empty chain for a whole history (`case show`, a handoff). A
/// stored case header carries no entries (its `history_start` is the whole chain); a write's
/// reply carries the entries the write added. The engine decides from the header alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// Stored-format version, [`CASE_VERSION_MIN`] to [`CASE_VERSION`]; deserialising another
    /// version fails.
    #[serde(deserialize_with = "crate::case::deserialize_case_version")]
    pub v: u16,
    #[serde(rename = "case_id")]
    pub id: CaseId,
    pub kind: CaseKind,
    /// The current owner as this copy knows it (for a stub: the office it was forwarded to).
    pub office: OfficeCode,
    pub status: Status,
    /// When the status last changed: the age of a backlog.
    pub status_since: Millis,
    pub channel: Channel,
    pub category: String,
    pub summary: String,
    pub location: Option<OfficeCode>,
    /// Personal data; None on a forwarded stub.
    pub petitioner: Option<Petitioner>,
    /// Finds repeat petitions without personal data.
    pub petitioner_key: String,
    pub registered_at: Millis,
    /// First-contact officer (首办责任).
    pub first_officer: String,
    /// The officer who accepted the case, and when.
    pub handler: Option<String>,
    pub accepted_at: Option<Millis>,
    /// Set when this copy was received in a handoff.
    pub received: Option<Receipt>,
    pub grade: Option<GradeInfo>,
    pub opinion: Option<Opinion>,
    pub reply_text: Option<String>,
    pub replied_at: Option<Millis>,
    pub satisfaction: Option<Satisfaction>,
    pub supervision: Option<Supervision>,
    /// When each running limit ends (None where it is not running).
    pub deadlines: Deadlines,
    /// When each statutory clock started and which threshold it has reached.
    pub clocks: Clocks,
    /// The one extension of the reply limit was used.
    pub extended: bool,
    /// A statutory clock of this office's reached 100 % (sticky; reset when a new office receives
    /// the case).
    pub overdue: bool,
    /// The chain before the first entry `history` carries: the empty chain when it carries the
    /// whole history (absent from version-1 documents, which always did).
    #[serde(default)]
    pub history_start: ChainHead,
    /// Applied events, hash-chained, from `history_start` on.
    pub history: Vec<HistoryEntry>,
    /// The version-4 extension ([`CaseExtra`]): written after the history, before the group,
    /// only on cases of version 4 (a plain deserialise leaves it None; [`Case::from_bytes`]
    /// reads it).
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub extra: Option<CaseExtra>,
    /// The version-5 extension ([`PetitionerExtra`], personal data): written after the
    /// extension, before the group, only on cases of version 5 (read by [`Case::from_bytes`]).
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub petitioner_extra: Option<PetitionerExtra>,
    /// The petitioners beyond one with a resident ID (personal data, None on a stub and on cases
    /// of versions 1 and 2). Written last, after the history (and the extension), and only when
    /// there is one: a case without a group encodes exactly as version 2 did. Read by
    /// [`Case::from_bytes`] from version 3 on (a plain deserialise leaves it None); a case is
    /// always the whole of its encoded value, so what follows its history can only be its
    /// extension (version 4) and its group.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub group: Option<Group>,
}

/// What a case carries from version 4 on: the clocks that are not statutory limits. Present
/// (Some) exactly on cases of version 4: once made it stays, even with every clock stopped, so
/// the stored form's layout follows from the version alone. A later addition comes with a new
/// version that reads this shape first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseExtra {
    /// The grade's deadline clock (its due instant is [`GradeInfo::deadline`]); None when the
    /// case is not graded or the grade's matter is replied.
    pub grade: Option<crate::clock::ClockRun>,
    /// The follow-up (回访) a dissatisfied evaluation opened, until it is recorded.
    pub follow_up: Option<crate::clock::ClockRun>,
    /// When the open follow-up is due.
    pub follow_up_by: Option<Millis>,
    /// The last follow-up recorded: when, by whom, what the petitioner said.
    pub followed_up: Option<FollowUpRecord>,
}

/// A recorded follow-up (回访) of a dissatisfied petitioner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpRecord {
    pub at: Millis,
    pub officer: String,
    pub note: String,
}

/// What a case's petitioner carries from version 5 on: personal data beyond the fields of
/// [`Petitioner`], sealed at rest like them, carried where ownership moves, withheld wherever
/// they are. Present (Some) exactly on cases of version 5, whose extension ([`CaseExtra`]) is
/// always there too: once made it stays (a stub keeps it, emptied), so the stored form's layout
/// follows from the version alone. A case filed without an address has none and is written as
/// before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PetitionerExtra {
    /// Where the petitioner lives or can be reached: one line, at most
    /// [`validate::ADDRESS_BYTES_MAX`] bytes when clear.
    pub address: Option<Personal>,
}

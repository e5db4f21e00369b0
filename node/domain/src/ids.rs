//! Identifiers: offices (division codes) and cases. Both are validated on every way in (parsing and
//! deserialising), so a value of these types is always well-formed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{echo, DomainError};

/// An office's administrative level, read from the length of its division code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Province,
    City,
    County,
    Township,
}

impl Level {
    /// Digits in a division code of this level (2, 4, 6, 9).
    pub fn code_len(self) -> usize {
        match self {
            Level::Province => 2,
            Level::City => 4,
            Level::County => 6,
            Level::Township => 9,
        }
    }

    /// Stable lower-case word, as the CLI and stats print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Province => "province",
            Level::City => "city",
            Level::County => "county",
            Level::Township => "township",
        }
    }

    fn from_code_len(len: usize) -> Option<Level> {
        match len {
            2 => Some(Level::Province),
            4 => Some(Level::City),
            6 => Some(Level::County),
            9 => Some(Level::Township),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An office's official division code: 2 (province), 4 (city), 6 (county) or 9 (township) ASCII
/// digits. It is the office's id everywhere, and its prefixes are its ancestors.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OfficeCode(String);

impl OfficeCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn level(&self) -> Level {
        // The constructor admits only the four lengths; Township is the only 9-digit level.
        Level::from_code_len(self.0.len()).unwrap_or(Level::Township)
    }

    /// The office one level up (9 -> 6 -> 4 -> 2 digits), or None for a province.
    pub fn parent_code(&self) -> Option<OfficeCode> {
        let len = match self.level() {
            Level::Province => return None,
            Level::City => 2,
            Level::County => 4,
            Level::Township => 6,
        };
        Some(OfficeCode(self.0[..len].to_string()))
    }

    /// Strict ancestry: `self` is a proper prefix of `other` (an office is not its own ancestor).
    /// Use [`OfficeCode::covers`] for "in my subtree, myself included".
    pub fn is_ancestor_of(&self, other: &OfficeCode) -> bool {
        other.0.len() > self.0.len() && other.0.starts_with(&self.0)
    }

    /// `other` is `self` or one of its descendants: the subtree a supervisor may query.
    pub fn covers(&self, other: &OfficeCode) -> bool {
        self == other || self.is_ancestor_of(other)
    }

    /// The nearest office whose subtree holds both (either one itself if it is the other's
    /// ancestor); None when they lie in different provinces.
    pub fn common_ancestor(&self, other: &OfficeCode) -> Option<OfficeCode> {
        let mut candidate = Some(self.clone());
        while let Some(code) = candidate {
            if code.covers(other) {
                return Some(code);
            }
            candidate = code.parent_code();
        }
        None
    }
}

impl FromStr for OfficeCode {
    type Err = DomainError;

    fn from_str(input: &str) -> Result<OfficeCode, DomainError> {
        let well_formed = Level::from_code_len(input.len()).is_some()
            && input.bytes().all(|byte| byte.is_ascii_digit());
        if well_formed {
            Ok(OfficeCode(input.to_string()))
        } else {
            Err(DomainError::InvalidOfficeCode { input: echo(input) })
        }
    }
}

impl TryFrom<&str> for OfficeCode {
    type Error = DomainError;
    fn try_from(input: &str) -> Result<OfficeCode, DomainError> {
        input.parse()
    }
}

impl TryFrom<String> for OfficeCode {
    type Error = DomainError;
    fn try_from(input: String) -> Result<OfficeCode, DomainError> {
        input.parse()
    }
}

impl fmt::Display for OfficeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for OfficeCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A case's federation-wide id, `<office>-<year>-<seq>` (e.g. `530602-2026-000123`): unique without
/// coordination because the registering office allocates its own sequence per year.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CaseId {
    /// The office that registered the case (it stays in the id when ownership moves).
    pub office: OfficeCode,
    /// Year of registration, four digits.
    pub year: u16,
    /// Per office and year; printed with at least 6 digits.
    pub seq: u32,
}

/// Digits the sequence number is zero-padded to.
pub const CASE_SEQ_DIGITS_MIN: usize = 6;

impl CaseId {
    pub fn new(office: OfficeCode, year: u16, seq: u32) -> CaseId {
        CaseId { office, year, seq }
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{:04}-{:0width$}",
            self.office,
            self.year,
            self.seq,
            width = CASE_SEQ_DIGITS_MIN
        )
    }
}

impl FromStr for CaseId {
    type Err = DomainError;

    /// Accepts only the canonical spelling, so one case has exactly one id string.
    fn from_str(input: &str) -> Result<CaseId, DomainError> {
        let fail = |reason| DomainError::InvalidCaseId {
            input: echo(input),
            reason,
        };
        let mut parts = input.split('-');
        let (Some(office), Some(year), Some(seq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(fail("expected three parts separated by '-'"));
        };
        let office: OfficeCode = office
            .parse()
            .map_err(|_| fail("the office code is not 2, 4, 6 or 9 digits"))?;
        if year.len() != 4 || !year.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(fail("the year is not 4 digits"));
        }
        let year: u16 = year.parse().map_err(|_| fail("the year is not 4 digits"))?;
        if seq.len() < CASE_SEQ_DIGITS_MIN || !seq.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(fail("the sequence number is not at least 6 digits"));
        }
        let seq: u32 = seq
            .parse()
            .map_err(|_| fail("the sequence number is too large"))?;
        let id = CaseId { office, year, seq };
        if id.to_string() != input {
            return Err(fail("the sequence number has superfluous leading zeros"));
        }
        Ok(id)
    }
}

impl TryFrom<&str> for CaseId {
    type Error = DomainError;
    fn try_from(input: &str) -> Result<CaseId, DomainError> {
        input.parse()
    }
}

/// Serialises as its string form and validates on the way back in.
macro_rules! serde_as_string {
    ($type:ty) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_string!(OfficeCode);
serde_as_string!(CaseId);

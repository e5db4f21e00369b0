//! Group petitions (集体访) and petitioners without a PRC resident ID.
//!
//! A case's petitioner ([`crate::Petitioner`]) is the group's representative: the one the
//! office's SMS go to, whose petitioner key the case carries and the federation's index finds.
//! Everything a case knows beyond that one resident-ID petitioner is its [`Group`]: the
//! representative's document type (and nationality) and the other petitioners (co-petitioners),
//! each with their own document. It is personal data, all of it: sealed at rest by the office
//! that holds the case like the petitioner's fields, carried with the case when ownership moves,
//! never in summaries, notices or public views.
//!
//! A case without a group is a case as before: one petitioner with a resident ID. A case with one
//! is stored at case version 3 ([`crate::CASE_VERSION`]); older versions read with none.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::DomainError;
use crate::model::IdType;
use crate::personal::Personal;
use crate::validate;

/// Petitioners of one case at most, the representative included.
pub const PETITIONERS_MAX: usize = 200;
/// Bytes of a group as stored (sealed fields included) at most: 200 petitioners with long names
/// fit; a federation message carrying the case stays far below its bound.
pub const GROUP_BYTES_MAX: usize = 160 * 1024;

/// One petitioner as an officer types them: what the API turns into the case's petitioner (the
/// representative) and its group's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub id_type: IdType,
    pub id_number: String,
    pub name: String,
    pub phone: Option<String>,
    pub nationality: Option<String>,
}

impl Party {
    /// Each field in its format (the document number by its type); the number normalised.
    pub fn checked(mut self) -> Result<Party, DomainError> {
        validate::document(self.id_type, &self.id_number)?;
        self.id_number = validate::normalise_id_number(&self.id_number);
        validate::line("name", &self.name, validate::NAME_CHARS_MAX)?;
        if let Some(phone) = &self.phone {
            validate::phone(phone)?;
        }
        if let Some(nationality) = &mut self.nationality {
            validate::nationality(nationality)?;
            *nationality = nationality.trim().to_ascii_uppercase();
        }
        Ok(self)
    }

    /// The document that identifies this petitioner: type and normalised number.
    fn document(&self) -> (IdType, String) {
        (self.id_type, validate::normalise_id_number(&self.id_number))
    }
}

/// The petitioners of a filing, checked and ordered: the representative first. `parties` are as
/// typed (the first the main petitioner), `representative` which of them represents the group
/// (1-based; 0 for the default, the first). Refused whole, naming the first problem: a member
/// out of format, more than [`PETITIONERS_MAX`], the same document twice, a representative out
/// of range.
pub fn arrange(parties: Vec<Party>, representative: usize) -> Result<Vec<Party>, DomainError> {
    if parties.is_empty() {
        return Err(DomainError::GroupInvalid {
            reason: "no petitioner".into(),
        });
    }
    if parties.len() > PETITIONERS_MAX {
        return Err(DomainError::GroupInvalid {
            reason: format!(
                "{} petitioners; a case has at most {PETITIONERS_MAX}",
                parties.len()
            ),
        });
    }
    if representative > parties.len() {
        return Err(DomainError::GroupInvalid {
            reason: format!(
                "representative {representative} is out of range: petitioners are numbered 1 to {}",
                parties.len()
            ),
        });
    }
    let mut checked = Vec::with_capacity(parties.len());
    let mut seen = BTreeSet::new();
    for (index, party) in parties.into_iter().enumerate() {
        // Which petitioner; the errors never repeat a number.
        let party = party.checked().map_err(|error| DomainError::GroupInvalid {
            reason: format!("petitioner {}: {error}", index + 1),
        })?;
        if !seen.insert(party.document()) {
            return Err(DomainError::GroupInvalid {
                reason: format!(
                    "petitioner {} has the same document as an earlier one",
                    index + 1
                ),
            });
        }
        checked.push(party);
    }
    if representative > 1 {
        let chosen = checked.remove(representative - 1);
        checked.insert(0, chosen);
    }
    Ok(checked)
}

/// A co-petitioner of a group petition: each field personal, sealed by the office holding the
/// case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The document type's word ([`IdType`]).
    pub id_type: Personal,
    /// Normalised as [`validate::normalise_id_number`] does.
    pub id_number: Personal,
    pub name: Personal,
    pub phone: Option<Personal>,
    /// ISO 3166 alpha-3, for a foreign document.
    pub nationality: Option<Personal>,
}

impl Member {
    pub fn of(party: &Party) -> Member {
        Member {
            id_type: Personal::from(party.id_type.as_str()),
            id_number: Personal::from(party.id_number.as_str()),
            name: Personal::from(party.name.as_str()),
            phone: party.phone.as_deref().map(Personal::from),
            nationality: party.nationality.as_deref().map(Personal::from),
        }
    }

    fn check(&self) -> Result<(), DomainError> {
        let id_type = check_id_type(&self.id_type)?;
        if let Some(id_type) = id_type {
            self.id_number
                .check(|number| validate::document(id_type, number))?;
        }
        self.name
            .check(|name| validate::line("name", name, validate::NAME_CHARS_MAX))?;
        if let Some(phone) = &self.phone {
            phone.check(validate::phone)?;
        }
        if let Some(nationality) = &self.nationality {
            nationality.check(validate::nationality)?;
        }
        Ok(())
    }
}

/// What a case knows of its petitioners beyond one resident-ID petitioner (see the module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The representative's document type's word ([`IdType`]); their number is the case
    /// petitioner's `id_number`.
    pub id_type: Personal,
    /// The representative's nationality (ISO 3166 alpha-3), for a foreign document.
    pub nationality: Option<Personal>,
    /// The other petitioners, in the order they were registered.
    pub members: Vec<Member>,
}

impl Group {
    /// The group of `parties` as [`arrange`] ordered them (the representative first); None when
    /// there is one petitioner with a resident ID and no nationality: a case as before.
    pub fn of(parties: &[Party]) -> Option<Group> {
        let (first, rest) = parties.split_first()?;
        if rest.is_empty() && first.id_type == IdType::Resident && first.nationality.is_none() {
            return None;
        }
        Some(Group {
            id_type: Personal::from(first.id_type.as_str()),
            nationality: first.nationality.as_deref().map(Personal::from),
            members: rest.iter().map(Member::of).collect(),
        })
    }

    /// Petitioners of the case: the representative and the members.
    pub fn petitioners(&self) -> usize {
        self.members.len() + 1
    }

    /// The representative's document type, None while sealed.
    pub fn representative_id_type(&self) -> Result<Option<IdType>, DomainError> {
        check_id_type(&self.id_type)
    }

    /// The group's bounds, and each clear field in its format (sealed ones were checked before
    /// they were sealed): what the engine checks before a case takes a group.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.petitioners() > PETITIONERS_MAX {
            return Err(DomainError::GroupInvalid {
                reason: format!(
                    "{} petitioners; a case has at most {PETITIONERS_MAX}",
                    self.petitioners()
                ),
            });
        }
        let bytes = codec::encoded_len(self);
        if bytes > GROUP_BYTES_MAX {
            return Err(DomainError::GroupInvalid {
                reason: format!("the group takes {bytes} bytes; at most {GROUP_BYTES_MAX}"),
            });
        }
        check_id_type(&self.id_type)?;
        if let Some(nationality) = &self.nationality {
            nationality.check(validate::nationality)?;
        }
        let mut seen = BTreeSet::new();
        for (index, member) in self.members.iter().enumerate() {
            member.check().map_err(|error| DomainError::GroupInvalid {
                reason: format!("petitioner {}: {error}", index + 2),
            })?;
            if let (Some(id_type), Some(number)) =
                (member.id_type.clear(), member.id_number.clear())
            {
                let document = (id_type.to_string(), validate::normalise_id_number(number));
                if !seen.insert(document) {
                    return Err(DomainError::GroupInvalid {
                        reason: format!(
                            "petitioner {} has the same document as an earlier one",
                            index + 2
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A clear document type's word parsed (None when sealed).
fn check_id_type(value: &Personal) -> Result<Option<IdType>, DomainError> {
    match value.clear() {
        Some(word) => word.parse().map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(id_type: IdType, number: &str, name: &str) -> Party {
        Party {
            id_type,
            id_number: number.into(),
            name: name.into(),
            phone: None,
            nationality: None,
        }
    }

    fn resident(number: &str) -> Party {
        party(IdType::Resident, number, "张三")
    }

    #[test]
    fn a_single_resident_petitioner_has_no_group() {
        let parties = arrange(vec![resident("11010519491231002x")], 0).unwrap();
        assert_eq!(parties[0].id_number, "11010519491231002X");
        assert_eq!(Group::of(&parties), None);
        let mut foreign = party(IdType::Passport, "e12345678", "John Smith");
        foreign.nationality = Some("usa".into());
        let parties = arrange(vec![foreign], 0).unwrap();
        let group = Group::of(&parties).unwrap();
        assert_eq!(group.id_type, "passport");
        assert_eq!(group.nationality, Some(Personal::from("USA")));
        assert_eq!(group.petitioners(), 1);
        assert_eq!(group.validate(), Ok(()));
    }

    #[test]
    fn the_representative_comes_first_and_the_rest_keep_their_order() {
        let parties = vec![
            resident("11010519491231002X"),
            party(IdType::Passport, "E12345678", "Ann"),
            party(IdType::HkMacao, "H12345678", "陈大文"),
        ];
        let arranged = arrange(parties.clone(), 3).unwrap();
        let names: Vec<&str> = arranged.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["陈大文", "张三", "Ann"]);
        assert_eq!(arrange(parties.clone(), 0).unwrap()[0].name, "张三");
        assert_eq!(arrange(parties.clone(), 1).unwrap()[0].name, "张三");
        let group = Group::of(&arranged).unwrap();
        assert_eq!(group.id_type, "hk-macao");
        assert_eq!(group.members.len(), 2);
        assert_eq!(group.members[1].id_type, "passport");
        assert_eq!(group.validate(), Ok(()));
        // Out of range.
        let error = arrange(parties, 4).unwrap_err();
        assert_eq!(error.code(), "group_invalid");
        assert!(error.to_string().contains("representative 4"), "{error}");
    }

    #[test]
    fn bad_groups_are_refused_with_the_first_problem() {
        // The same document twice (the case of a check X does not matter).
        let error = arrange(
            vec![
                resident("11010519491231002X"),
                party(IdType::Resident, "11010519491231002x", "李四"),
            ],
            0,
        )
        .unwrap_err();
        assert!(error.to_string().contains("petitioner 2"), "{error}");
        // The same number under two document types is two documents.
        arrange(
            vec![
                party(IdType::Passport, "12345678", "A"),
                party(IdType::Taiwan, "12345678", "B"),
            ],
            0,
        )
        .unwrap();
        // A malformed number for its type: which petitioner, never the number.
        let error = arrange(
            vec![
                resident("11010519491231002X"),
                party(IdType::HkMacao, "Z99999999", "B"),
            ],
            0,
        )
        .unwrap_err();
        assert_eq!(error.code(), "group_invalid");
        assert!(error.to_string().contains("petitioner 2"), "{error}");
        assert!(!error.to_string().contains("Z99999999"), "{error}");
        // Too many.
        let many: Vec<Party> = (0..=PETITIONERS_MAX)
            .map(|i| party(IdType::Passport, &format!("P{i:08}"), "N"))
            .collect();
        assert_eq!(
            arrange(many.clone(), 0).unwrap_err().code(),
            "group_invalid"
        );
        // Exactly the bound is fine, and within the byte bound.
        let most = arrange(many[..PETITIONERS_MAX].to_vec(), 0).unwrap();
        assert_eq!(Group::of(&most).unwrap().validate(), Ok(()));
        assert_eq!(arrange(Vec::new(), 0).unwrap_err().code(), "group_invalid");
        // An unknown document type stored in a group is refused by the engine's check.
        let mut group = Group::of(&most).unwrap();
        group.members[3].id_type = Personal::from("visa");
        assert_eq!(group.validate().unwrap_err().code(), "group_invalid");
        let mut group = Group::of(&most).unwrap();
        group.members.push(group.members[0].clone());
        assert_eq!(group.validate().unwrap_err().code(), "group_invalid");
    }

    #[test]
    fn a_group_round_trips_in_both_formats() {
        let parties = arrange(
            vec![
                party(IdType::Passport, "E12345678", "John"),
                resident("11010519491231002X"),
            ],
            0,
        )
        .unwrap();
        let group = Group::of(&parties).unwrap();
        assert_eq!(
            codec::decode::<Group>(&codec::encode(&group)).unwrap(),
            group
        );
        let json = serde_json::to_string(&group).unwrap();
        assert_eq!(serde_json::from_str::<Group>(&json).unwrap(), group);
    }
}

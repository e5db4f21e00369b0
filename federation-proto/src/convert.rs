//! Conversions between the officer API's protobuf messages and the case engine's types, both
//! ways, with round-trip tests. Parsing words (channel, route, opinion...) is the engine's job:
//! these conversions only call its parsers, so the API and the CLI accept exactly the same words.

use liandong_domain::{CaseCommand, DomainError, Grade, Registration};

use crate::v1::{self, case_command::Command as Proto};

impl TryFrom<v1::Registration> for Registration {
    type Error = DomainError;

    fn try_from(proto: v1::Registration) -> Result<Registration, DomainError> {
        Ok(Registration {
            channel: proto.channel.parse()?,
            petitioner_id: proto.petitioner_id.into(),
            name: proto.name.into(),
            phone: proto.phone.map(Into::into),
            category: proto.category,
            summary: proto.summary,
            location: proto.location.map(|code| code.parse()).transpose()?,
            officer: proto.officer,
            address: None,
        })
    }
}

/// A registration as a client sends it: clear (a sealed field, which no client holds, would go
/// as `(sealed)` and be refused as malformed).
impl From<&Registration> for v1::Registration {
    fn from(registration: &Registration) -> v1::Registration {
        v1::Registration {
            channel: registration.channel.as_str().to_string(),
            petitioner_id: registration.petitioner_id.to_string(),
            name: registration.name.to_string(),
            phone: registration.phone.as_ref().map(ToString::to_string),
            category: registration.category.clone(),
            summary: registration.summary.clone(),
            location: registration.location.as_ref().map(|code| code.to_string()),
            officer: registration.officer.clone(),
        }
    }
}

fn grade_word(grade: Grade) -> &'static str {
    match grade {
        Grade::A => "A",
        Grade::B => "B",
        Grade::C => "C",
    }
}

impl TryFrom<v1::CaseCommand> for CaseCommand {
    type Error = DomainError;

    fn try_from(proto: v1::CaseCommand) -> Result<CaseCommand, DomainError> {
        let command = proto
            .command
            .ok_or(DomainError::FieldEmpty { field: "command" })?;
        Ok(match command {
            Proto::Accept(c) => CaseCommand::Accept { officer: c.officer },
            Proto::Decline(c) => CaseCommand::Decline {
                route: c.route.parse()?,
                officer: c.officer,
            },
            Proto::Transfer(c) => CaseCommand::Transfer {
                to: c.to.parse()?,
                officer: c.officer,
            },
            Proto::Assign(c) => CaseCommand::Assign {
                to: c.to.parse()?,
                due_days: c.due_days,
                officer: c.officer,
            },
            Proto::Return(c) => CaseCommand::Return {
                reason: c.reason,
                officer: c.officer,
            },
            Proto::Extend(c) => CaseCommand::Extend {
                days: c.days,
                reason: c.reason,
                officer: c.officer,
            },
            Proto::Reply(c) => CaseCommand::Reply {
                opinion: c.opinion.parse()?,
                text: c.text,
                officer: c.officer,
            },
            Proto::Evaluate(c) => CaseCommand::Evaluate {
                satisfaction: c.satisfaction.parse()?,
            },
            Proto::RequestReview(_) => CaseCommand::RequestReview,
            Proto::SetGrade(c) => CaseCommand::SetGrade {
                grade: c.grade.parse()?,
                leader: c.leader,
                department: c.department,
                plan: c.plan,
                deadline: c.deadline_ms,
            },
            Proto::AnswerSupervision(c) => CaseCommand::AnswerSupervision {
                text: c.text,
                officer: c.officer,
            },
            Proto::FollowUp(c) => CaseCommand::FollowUp {
                note: c.note,
                officer: c.officer,
            },
        })
    }
}

/// The officer API's form of a command; `None` for the federation's own bookkeeping commands,
/// which no officer sends.
pub fn command_to_proto(command: &CaseCommand) -> Option<v1::CaseCommand> {
    let proto = match command {
        CaseCommand::Accept { officer } => Proto::Accept(v1::Accept {
            officer: officer.clone(),
        }),
        CaseCommand::Decline { route, officer } => Proto::Decline(v1::Decline {
            route: route.as_str().to_string(),
            officer: officer.clone(),
        }),
        CaseCommand::Transfer { to, officer } => Proto::Transfer(v1::Transfer {
            to: to.to_string(),
            officer: officer.clone(),
        }),
        CaseCommand::Assign {
            to,
            due_days,
            officer,
        } => Proto::Assign(v1::Assign {
            to: to.to_string(),
            due_days: *due_days,
            officer: officer.clone(),
        }),
        CaseCommand::Return { reason, officer } => Proto::Return(v1::Return {
            reason: reason.clone(),
            officer: officer.clone(),
        }),
        CaseCommand::Extend {
            days,
            reason,
            officer,
        } => Proto::Extend(v1::Extend {
            days: *days,
            reason: reason.clone(),
            officer: officer.clone(),
        }),
        CaseCommand::Reply {
            opinion,
            text,
            officer,
        } => Proto::Reply(v1::Reply {
            opinion: opinion.as_str().to_string(),
            text: text.clone(),
            officer: officer.clone(),
        }),
        CaseCommand::Evaluate { satisfaction } => Proto::Evaluate(v1::Evaluate {
            satisfaction: satisfaction.as_str().to_string(),
        }),
        CaseCommand::RequestReview => Proto::RequestReview(v1::RequestReview {}),
        CaseCommand::SetGrade {
            grade,
            leader,
            department,
            plan,
            deadline,
        } => Proto::SetGrade(v1::SetGrade {
            grade: grade_word(*grade).to_string(),
            leader: leader.clone(),
            department: department.clone(),
            plan: plan.clone(),
            deadline_ms: *deadline,
        }),
        CaseCommand::AnswerSupervision { text, officer } => {
            Proto::AnswerSupervision(v1::AnswerSupervision {
                text: text.clone(),
                officer: officer.clone(),
            })
        }
        CaseCommand::FollowUp { note, officer } => Proto::FollowUp(v1::FollowUp {
            note: note.clone(),
            officer: officer.clone(),
        }),
        _ => return None,
    };
    Some(v1::CaseCommand {
        command: Some(proto),
    })
}

#[cfg(test)]
mod tests {
    use liandong_domain::{Channel, DeclineRoute, Opinion, Satisfaction};

    use super::*;

    fn registration() -> Registration {
        Registration {
            channel: Channel::Phone,
            petitioner_id: "11010519491231002X".into(),
            name: "张三".into(),
            phone: Some("+8613800000000".into()),
            category: "housing".to_string(),
            summary: "漏水".to_string(),
            location: Some("530602".parse().unwrap()),
            address: None,
            officer: "registrar".to_string(),
        }
    }

    #[test]
    fn a_registration_round_trips_through_protobuf() {
        let original = registration();
        let back = Registration::try_from(v1::Registration::from(&original)).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn every_officer_command_round_trips_through_protobuf() {
        let commands = vec![
            CaseCommand::Accept {
                officer: "a".into(),
            },
            CaseCommand::Decline {
                route: DeclineRoute::AdminReview,
                officer: "b".into(),
            },
            CaseCommand::Transfer {
                to: "530621".parse().unwrap(),
                officer: "c".into(),
            },
            CaseCommand::Assign {
                to: "530621001".parse().unwrap(),
                due_days: 10,
                officer: "d".into(),
            },
            CaseCommand::Return {
                reason: "not ours".into(),
                officer: "e".into(),
            },
            CaseCommand::Extend {
                days: 30,
                reason: "survey".into(),
                officer: "f".into(),
            },
            CaseCommand::Reply {
                opinion: Opinion::NotSupport,
                text: "t".into(),
                officer: "g".into(),
            },
            CaseCommand::Evaluate {
                satisfaction: Satisfaction::Basic,
            },
            CaseCommand::RequestReview,
            CaseCommand::AnswerSupervision {
                text: "done".into(),
                officer: "h".into(),
            },
            CaseCommand::FollowUp {
                note: "called back".into(),
                officer: "h".into(),
            },
            CaseCommand::SetGrade {
                grade: Grade::B,
                leader: "l".into(),
                department: "d".into(),
                plan: "p".into(),
                deadline: 1_800_000_000_000,
            },
        ];
        for command in commands {
            let proto = command_to_proto(&command).expect("officer command");
            assert_eq!(CaseCommand::try_from(proto).unwrap(), command);
        }
    }

    #[test]
    fn an_unknown_channel_word_is_refused_with_the_engine_error() {
        let mut proto = v1::Registration::from(&registration());
        proto.channel = "fax".to_string();
        assert!(matches!(
            Registration::try_from(proto),
            Err(DomainError::InvalidChannel { .. })
        ));
    }

    #[test]
    fn a_command_message_without_a_command_is_refused() {
        let error = CaseCommand::try_from(v1::CaseCommand { command: None }).unwrap_err();
        assert_eq!(error, DomainError::FieldEmpty { field: "command" });
    }
}

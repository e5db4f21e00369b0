//! Conversions between federation envelopes and their protobuf form, with round-trip tests.

use liandong_domain::message::{Body, CaseDocument, Envelope, Facts, Summary, SummaryV2};
use liandong_domain::{codec, ClockKind, DomainError, ReviewLevel};

use crate::v1::{self, envelope::Body as Proto};

fn level_word(level: ReviewLevel) -> &'static str {
    match level {
        ReviewLevel::Review => "review",
        ReviewLevel::ReReview => "re_review",
    }
}

fn parse_level(word: &str) -> Result<ReviewLevel, DomainError> {
    match word {
        "review" => Ok(ReviewLevel::Review),
        "re_review" => Ok(ReviewLevel::ReReview),
        _ => Err(DomainError::FieldInvalid {
            field: "level",
            reason: "expected review or re_review",
        }),
    }
}

/// A session record or part the domain codec does not decode.
fn corrupt(error: codec::CodecError) -> DomainError {
    DomainError::Corrupt {
        reason: error.to_string(),
    }
}

fn parse_clock(word: &str) -> Result<ClockKind, DomainError> {
    ClockKind::ALL
        .into_iter()
        .find(|clock| clock.as_str() == word)
        .ok_or(DomainError::FieldInvalid {
            field: "clock",
            reason: "not a clock name",
        })
}

impl From<&Summary> for v1::IndexUpdate {
    fn from(summary: &Summary) -> v1::IndexUpdate {
        v1::IndexUpdate {
            case_id: summary.case_id.to_string(),
            owner: summary.owner.to_string(),
            status: summary.status.clone(),
            category: summary.category.clone(),
            petitioner_key: summary.petitioner_key.clone(),
            overdue: summary.overdue,
            changed_ms: summary.changed_at,
            location: summary.location.as_ref().map(|code| code.to_string()),
            kind: summary.kind.clone(),
            registered_ms: summary.registered_at,
            version: summary.version,
            grade: summary.grade.clone(),
            repeat_of: None,
            satisfaction: summary.satisfaction.clone(),
            stale: false,
            skip_level: summary.is_skip_level(),
            ..v1::IndexUpdate::default()
        }
    }
}

impl From<&SummaryV2> for v1::IndexUpdate {
    fn from(summary: &SummaryV2) -> v1::IndexUpdate {
        let facts = &summary.facts;
        v1::IndexUpdate {
            summary_version: 2,
            channel: facts.channel.clone(),
            due_ms: facts.due_at,
            accepted_ms: facts.accepted_at,
            replied_ms: facts.replied_at,
            accepted_in_time: facts.accepted_in_time,
            replied_on_time: facts.replied_on_time,
            warned: u32::from(facts.warned),
            overdue_ms: facts.overdue_at,
            opinion: facts.opinion.clone(),
            skip_level: summary.is_skip_level(),
            ..v1::IndexUpdate::from(&summary.summary)
        }
    }
}

impl TryFrom<v1::IndexUpdate> for SummaryV2 {
    type Error = DomainError;

    fn try_from(proto: v1::IndexUpdate) -> Result<SummaryV2, DomainError> {
        let facts = Facts {
            channel: proto.channel.clone(),
            due_at: proto.due_ms,
            accepted_at: proto.accepted_ms,
            replied_at: proto.replied_ms,
            accepted_in_time: proto.accepted_in_time,
            replied_on_time: proto.replied_on_time,
            warned: u8::try_from(proto.warned).map_err(|_| DomainError::FieldInvalid {
                field: "warned",
                reason: "a percentage of a limit, at most 100",
            })?,
            overdue_at: proto.overdue_ms,
            opinion: proto.opinion.clone(),
        };
        Ok(SummaryV2 {
            summary: proto.try_into()?,
            facts,
        })
    }
}

impl TryFrom<v1::IndexUpdate> for Summary {
    type Error = DomainError;

    fn try_from(proto: v1::IndexUpdate) -> Result<Summary, DomainError> {
        Ok(Summary {
            case_id: proto.case_id.parse()?,
            owner: proto.owner.parse()?,
            status: proto.status,
            kind: proto.kind,
            category: proto.category,
            petitioner_key: proto.petitioner_key,
            location: proto.location.map(|code| code.parse()).transpose()?,
            overdue: proto.overdue,
            registered_at: proto.registered_ms,
            changed_at: proto.changed_ms,
            version: proto.version,
            grade: proto.grade,
            satisfaction: proto.satisfaction,
        })
    }
}

impl From<&Envelope> for v1::Envelope {
    fn from(envelope: &Envelope) -> v1::Envelope {
        let body = match &envelope.body {
            Body::Handoff { case } => Proto::Handoff(v1::Handoff {
                case_document: case.bytes().to_vec(),
            }),
            Body::Escalation { level, case } => Proto::Escalation(v1::Escalation {
                level: level_word(*level).to_string(),
                case_document: case.bytes().to_vec(),
            }),
            Body::SupervisionOrder {
                case_id,
                order_id,
                text,
                due_days,
            } => Proto::SupervisionOrder(v1::SupervisionOrder {
                case_id: case_id.to_string(),
                order_id: order_id.clone(),
                text: text.clone(),
                due_days: *due_days,
            }),
            Body::SupervisionAnswer {
                case_id,
                order_id,
                text,
                officer,
            } => Proto::SupervisionAnswer(v1::SupervisionAnswer {
                case_id: case_id.to_string(),
                order_id: order_id.clone(),
                text: text.clone(),
                officer: officer.clone(),
            }),
            Body::IndexUpdate { summary } => Proto::IndexUpdate(summary.into()),
            Body::IndexUpdateV2 { summary } => Proto::IndexUpdate(summary.into()),
            Body::ReviewOpened {
                case_id,
                review_id,
                level,
            } => Proto::ReviewOpened(v1::ReviewOpened {
                case_id: case_id.to_string(),
                review_id: review_id.to_string(),
                level: level_word(*level).to_string(),
            }),
            Body::ReviewDecision {
                case_id,
                review_id,
                level,
                opinion,
                text,
                decided_at,
                is_final,
            } => Proto::ReviewDecision(v1::ReviewDecision {
                case_id: case_id.to_string(),
                review_id: review_id.to_string(),
                level: level_word(*level).to_string(),
                opinion: opinion.as_str().to_string(),
                text: text.clone(),
                decided_ms: *decided_at,
                is_final: *is_final,
            }),
            Body::SupervisionRelay {
                case_id,
                order_id,
                issuer,
                text,
                ordered_at,
                due_by,
            } => Proto::SupervisionRelay(v1::SupervisionRelay {
                case_id: case_id.to_string(),
                order_id: order_id.clone(),
                issuer: issuer.to_string(),
                text: text.clone(),
                ordered_ms: *ordered_at,
                due_ms: *due_by,
            }),
            Body::Breach {
                case_id,
                office,
                clock,
            } => Proto::Breach(v1::Breach {
                case_id: case_id.to_string(),
                office: office.to_string(),
                clock: clock.as_str().to_string(),
            }),
            Body::SessionRecord { session } => Proto::SessionRecord(v1::SessionRecord {
                session_document: codec::encode(session),
            }),
            Body::SessionReport { session_id, part } => Proto::SessionReport(v1::SessionReport {
                session_id: session_id.clone(),
                part_document: codec::encode(part),
            }),
            Body::Notice { notice } => Proto::Notice(v1::Notice {
                notice_document: codec::encode(notice),
            }),
            Body::RedCard { card } => Proto::RedCard(v1::RedCard {
                card_document: codec::encode(card),
            }),
            Body::Anchor { part } => Proto::Anchor(v1::Anchor {
                anchor_document: codec::encode(part),
            }),
        };
        v1::Envelope {
            from: envelope.from.to_string(),
            to: envelope.to.to_string(),
            seq: envelope.seq,
            sent_ms: envelope.sent_at,
            body: Some(body),
        }
    }
}

impl TryFrom<v1::Envelope> for Envelope {
    type Error = DomainError;

    fn try_from(proto: v1::Envelope) -> Result<Envelope, DomainError> {
        let body = match proto
            .body
            .ok_or(DomainError::FieldEmpty { field: "body" })?
        {
            // Carried as received: the receiver's batch check decodes and validates it.
            Proto::Handoff(handoff) => Body::Handoff {
                case: CaseDocument::from_bytes(handoff.case_document),
            },
            Proto::Escalation(escalation) => Body::Escalation {
                level: parse_level(&escalation.level)?,
                case: CaseDocument::from_bytes(escalation.case_document),
            },
            Proto::SupervisionOrder(order) => Body::SupervisionOrder {
                case_id: order.case_id.parse()?,
                order_id: order.order_id,
                text: order.text,
                due_days: order.due_days,
            },
            Proto::SupervisionAnswer(answer) => Body::SupervisionAnswer {
                case_id: answer.case_id.parse()?,
                order_id: answer.order_id,
                text: answer.text,
                officer: answer.officer,
            },
            // A summary of version 2 carries its version; one without was made by an earlier
            // build and is received as it was sent.
            Proto::IndexUpdate(update) if update.summary_version >= 2 => Body::IndexUpdateV2 {
                summary: update.try_into()?,
            },
            Proto::IndexUpdate(update) => Body::IndexUpdate {
                summary: update.try_into()?,
            },
            Proto::ReviewOpened(opened) => Body::ReviewOpened {
                case_id: opened.case_id.parse()?,
                review_id: opened.review_id.parse()?,
                level: parse_level(&opened.level)?,
            },
            Proto::ReviewDecision(decision) => Body::ReviewDecision {
                case_id: decision.case_id.parse()?,
                review_id: decision.review_id.parse()?,
                level: parse_level(&decision.level)?,
                opinion: decision.opinion.parse()?,
                text: decision.text,
                decided_at: decision.decided_ms,
                is_final: decision.is_final,
            },
            Proto::SupervisionRelay(relay) => Body::SupervisionRelay {
                case_id: relay.case_id.parse()?,
                order_id: relay.order_id,
                issuer: relay.issuer.parse()?,
                text: relay.text,
                ordered_at: relay.ordered_ms,
                due_by: relay.due_ms,
            },
            Proto::Breach(breach) => Body::Breach {
                case_id: breach.case_id.parse()?,
                office: breach.office.parse()?,
                clock: parse_clock(&breach.clock)?,
            },
            Proto::SessionRecord(record) => Body::SessionRecord {
                session: codec::decode(&record.session_document).map_err(corrupt)?,
            },
            Proto::SessionReport(report) => Body::SessionReport {
                session_id: report.session_id,
                part: codec::decode(&report.part_document).map_err(corrupt)?,
            },
            Proto::Notice(notice) => Body::Notice {
                notice: codec::decode(&notice.notice_document).map_err(corrupt)?,
            },
            Proto::RedCard(card) => Body::RedCard {
                card: codec::decode(&card.card_document).map_err(corrupt)?,
            },
            Proto::Anchor(anchor) => Body::Anchor {
                part: codec::decode(&anchor.anchor_document).map_err(corrupt)?,
            },
        };
        Ok(Envelope {
            from: proto.from.parse()?,
            to: proto.to.parse()?,
            seq: proto.seq,
            sent_at: proto.sent_ms,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use liandong_domain::{
        register, Calendar, Case, CaseId, CaseKind, Channel, Context, OfficeCode, Registration,
    };

    use super::*;

    fn case() -> Case {
        let office: OfficeCode = "530602".parse().unwrap();
        let calendar = Calendar::china();
        let ctx = Context {
            office: &office,
            now: 1_790_000_000_000,
            calendar: &calendar,
        };
        let registration = Registration {
            channel: Channel::Letter,
            petitioner_id: "530602198001010012".into(),
            name: "李四".into(),
            phone: None,
            category: "land".into(),
            summary: "boundary".into(),
            location: None,
            officer: "o".into(),
            address: None,
        };
        let id = CaseId {
            office: office.clone(),
            year: 2026,
            seq: 9,
        };
        register(id, registration, "ab".repeat(32), CaseKind::Original, &ctx).unwrap()
    }

    #[test]
    fn every_envelope_body_round_trips_through_protobuf() {
        let case = case();
        let bodies = vec![
            Body::Handoff {
                case: CaseDocument::of(&case),
            },
            Body::Escalation {
                level: ReviewLevel::ReReview,
                case: CaseDocument::of(&case),
            },
            Body::SupervisionOrder {
                case_id: case.id.clone(),
                order_id: "5306-1".into(),
                text: "report".into(),
                due_days: 7,
            },
            Body::SupervisionAnswer {
                case_id: case.id.clone(),
                order_id: "5306-1".into(),
                text: "done".into(),
                officer: "o".into(),
            },
            Body::IndexUpdate {
                summary: Summary::of(&case),
            },
            Body::IndexUpdateV2 {
                summary: SummaryV2::of(&case),
            },
            Body::ReviewOpened {
                case_id: case.id.clone(),
                review_id: "5306-2026-000003".parse().unwrap(),
                level: ReviewLevel::Review,
            },
            Body::ReviewDecision {
                case_id: case.id.clone(),
                review_id: "5306-2026-000003".parse().unwrap(),
                level: ReviewLevel::ReReview,
                opinion: liandong_domain::Opinion::NotSupport,
                text: "upheld".into(),
                decided_at: 99,
                is_final: true,
            },
            Body::SupervisionRelay {
                case_id: case.id.clone(),
                order_id: "5306-4".into(),
                issuer: "5306".parse().unwrap(),
                text: "report".into(),
                ordered_at: 5,
                due_by: 9,
            },
            Body::Breach {
                case_id: case.id.clone(),
                office: "530602".parse().unwrap(),
                clock: ClockKind::Reply,
            },
            Body::SessionRecord {
                session: sample_session(),
            },
            Body::SessionReport {
                session_id: "5306-S1".into(),
                part: sample_session().parts[1].clone(),
            },
            Body::Notice {
                notice: liandong_domain::notice::Notice {
                    v: 1,
                    case_id: case.id.clone(),
                    origin: "530602".parse().unwrap(),
                    level: 1,
                    age_days: 31,
                    category: "land".into(),
                    status: "accepted".into(),
                    registered_at: 5,
                    due: Some(9),
                },
            },
            Body::RedCard {
                card: liandong_domain::notice::RedCard {
                    v: 1,
                    case_id: case.id.clone(),
                    office: "530602".parse().unwrap(),
                    department: Some("housing".into()),
                    issuer: "5306".parse().unwrap(),
                    ordered_at: 5,
                    due_by: 9,
                    at: 10,
                },
            },
            Body::Anchor {
                part: liandong_domain::anchor::AnchorPart {
                    office: "530602".parse().unwrap(),
                    seq: 3,
                    at: 11,
                    leaves: vec![liandong_domain::anchor::Leaf {
                        case_id: case.id.clone(),
                        entries: 2,
                        hash: liandong_domain::anchor::EMPTY_ROOT.into(),
                    }],
                    priors: vec![liandong_domain::anchor::Leaf {
                        case_id: case.id.clone(),
                        entries: 1,
                        hash: liandong_domain::anchor::EMPTY_ROOT.into(),
                    }],
                    removed: vec![],
                    end: Some(liandong_domain::anchor::AnchorEnd {
                        root: liandong_domain::anchor::EMPTY_ROOT.into(),
                        count: 1,
                    }),
                },
            },
        ];
        for body in bodies {
            let envelope = Envelope {
                from: "530602".parse().unwrap(),
                to: "5306".parse().unwrap(),
                seq: 42,
                sent_at: 7,
                body,
            };
            let back = Envelope::try_from(v1::Envelope::from(&envelope)).unwrap();
            assert_eq!(back, envelope);
        }
    }

    fn sample_session() -> liandong_domain::session::Session {
        let input = liandong_domain::session::Schedule {
            starts_at: 1_000,
            ends_at: 2_000,
            invite: vec!["530602".parse().unwrap()],
            leader: "王市长".into(),
            slots: 3,
        };
        liandong_domain::session::schedule(
            "5306-S1".into(),
            &"5306".parse().unwrap(),
            input,
            "li",
            0,
        )
        .unwrap()
    }

    /// A message kind added after this build (a `oneof` case it does not know) decodes as an
    /// envelope whose link and number are read and whose body is empty: what the receiver
    /// commits as refused (`unknown_message_kind`) instead of failing the whole batch.
    #[test]
    fn a_kind_this_build_does_not_know_decodes_without_a_body() {
        use prost::Message;
        let header = v1::Envelope {
            from: "530602".into(),
            to: "5306".into(),
            seq: 7,
            sent_ms: 9,
            body: None,
        };
        let mut bytes = header.encode_to_vec();
        // Field 99 of the `body` oneof, length-delimited: a kind from a newer build.
        prost::encoding::encode_key(99, prost::encoding::WireType::LengthDelimited, &mut bytes);
        prost::encoding::encode_varint(3, &mut bytes);
        bytes.extend_from_slice(b"new");
        let decoded = v1::Envelope::decode(bytes.as_slice()).expect("it decodes");
        assert_eq!(decoded, header);
    }

    #[test]
    fn an_envelope_without_a_body_or_with_a_bad_office_is_refused() {
        let empty = v1::Envelope {
            from: "5306".into(),
            to: "530602".into(),
            seq: 1,
            sent_ms: 0,
            body: None,
        };
        assert!(Envelope::try_from(empty).is_err());
        let summary = Summary::of(&case());
        let mut bad = v1::Envelope::from(&Envelope {
            from: "530602".parse().unwrap(),
            to: "5306".parse().unwrap(),
            seq: 1,
            sent_at: 0,
            body: Body::IndexUpdate { summary },
        });
        bad.from = "53X6".into();
        assert!(matches!(
            Envelope::try_from(bad),
            Err(DomainError::InvalidOfficeCode { .. })
        ));
    }
}

//! Folding events into a case, its alarms, its chain and its stored form.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::calendar::Millis;
use crate::clock::{self, ClockKind};
use crate::error::DomainError;
use crate::event::{self, Event, HistoryEntry};
use crate::ids::OfficeCode;
use crate::model::{
    Case, GradeInfo, HandoffKind, Receipt, Satisfaction, Status, Supervision, CASE_VERSION,
};

impl Case {
    /// Folds one event: status, deadlines, clocks and flags, then a hash-chained history entry.
    /// Deterministic and total: it trusts the event (the engine made it) and never fails.
    pub fn apply(&mut self, event: &Event) {
        let status_before = self.status.clone();
        self.fold(event);
        if self.status != status_before {
            self.status_since = event.at();
        }
        let entry = HistoryEntry::next(self.history.last(), event);
        self.history.push(entry);
    }

    fn fold(&mut self, event: &Event) {
        match event {
            Event::Registered {
                at,
                accept_by,
                reply_by,
                ..
            } => {
                self.status = Status::Registered;
                self.registered_at = *at;
                self.start_clock(ClockKind::Accept, *at, *accept_by);
                if let Some(reply_by) = reply_by {
                    self.start_clock(ClockKind::Reply, *at, *reply_by);
                }
            }
            Event::Accepted {
                at,
                officer,
                reply_by,
                ..
            } => {
                self.status = Status::Accepted;
                self.handler = Some(officer.clone());
                self.accepted_at = Some(*at);
                self.stop_clock(ClockKind::Accept);
                self.stop_clock(ClockKind::Return);
                if self.clocks.reply.is_some() {
                    self.move_clock(ClockKind::Reply, *reply_by);
                } else {
                    self.start_clock(ClockKind::Reply, *at, *reply_by);
                }
            }
            Event::Declined { route, .. } => {
                self.status = Status::Declined { route: *route };
                for clock in [
                    ClockKind::Accept,
                    ClockKind::Reply,
                    ClockKind::Return,
                    ClockKind::Report,
                ] {
                    self.stop_clock(clock);
                }
            }
            Event::HandoffStarted { to, handoff, .. } => {
                self.status = Status::InTransit {
                    to: to.clone(),
                    kind: handoff.clone(),
                };
            }
            Event::Returned { to, .. } => {
                self.status = Status::InTransit {
                    to: to.clone(),
                    kind: HandoffKind::Return,
                };
            }
            Event::HandoffCompleted { to, .. } => {
                // A stub: it points at the owner and keeps no personal data and no clocks.
                self.status = Status::Forwarded { to: to.clone() };
                self.office = to.clone();
                self.petitioner = None;
                self.supervision = None;
                self.deadlines = Default::default();
                self.clocks = Default::default();
            }
            Event::HandoffReverted { .. } => {
                // Handoffs start only from Registered; the clocks were frozen, not stopped.
                self.status = Status::Registered;
            }
            Event::Received {
                at,
                office,
                from,
                handoff,
                accept_by,
                return_by,
                report_by,
            } => {
                self.office = office.clone();
                self.status = Status::Registered;
                self.received = Some(Receipt {
                    from: from.clone(),
                    handoff: handoff.clone(),
                    at: *at,
                });
                // The breaches on record were the sender's; this office starts clean.
                self.overdue = false;
                self.supervision = None;
                for clock in [ClockKind::Return, ClockKind::Report, ClockKind::Supervision] {
                    self.stop_clock(clock);
                }
                self.start_clock(ClockKind::Accept, *at, *accept_by);
                if let Some(return_by) = return_by {
                    self.start_clock(ClockKind::Return, *at, *return_by);
                }
                if let Some(report_by) = report_by {
                    self.start_clock(ClockKind::Report, *at, *report_by);
                }
            }
            Event::Extended { reply_by, .. } => {
                self.extended = true;
                self.move_clock(ClockKind::Reply, *reply_by);
            }
            Event::Replied {
                at,
                opinion,
                text,
                review_by,
                evaluate_by,
                ..
            } => {
                self.status = Status::Replied;
                self.opinion = Some(*opinion);
                self.reply_text = Some(text.clone());
                self.replied_at = Some(*at);
                self.stop_clock(ClockKind::Reply);
                self.stop_clock(ClockKind::Report);
                self.deadlines.review_by = *review_by;
                self.deadlines.evaluate_by = Some(*evaluate_by);
            }
            Event::Evaluated { satisfaction, .. } => {
                self.satisfaction = Some(*satisfaction);
                self.deadlines.evaluate_by = None;
                if self.status == Status::Replied {
                    self.status = Status::Evaluated;
                }
            }
            Event::ReviewRequested { .. } => {
                self.status = Status::ReviewRequested;
                self.deadlines.review_by = None;
            }
            Event::Graded {
                grade,
                leader,
                department,
                plan,
                deadline,
                ..
            } => {
                self.grade = Some(GradeInfo {
                    grade: *grade,
                    leader: leader.clone(),
                    department: department.clone(),
                    plan: plan.clone(),
                    deadline: *deadline,
                });
            }
            Event::SupervisionOrdered {
                at,
                from,
                text,
                due_by,
                ..
            } => {
                self.supervision = Some(Supervision {
                    from: from.clone(),
                    text: text.clone(),
                    ordered_at: *at,
                    due_by: *due_by,
                });
                self.start_clock(ClockKind::Supervision, *at, *due_by);
            }
            Event::SupervisionAnswered { .. } => {
                self.supervision = None;
                self.stop_clock(ClockKind::Supervision);
            }
            Event::Warned { clock, percent, .. } => self.mark_reached(*clock, *percent),
            Event::Overdue { clock, .. } => {
                self.mark_reached(*clock, 100);
                self.overdue = true;
            }
            Event::ReturnWindowLapsed { .. } => self.stop_clock(ClockKind::Return),
            Event::EvaluationLapsed { .. } => {
                self.satisfaction = Some(Satisfaction::NotEvaluated);
                self.deadlines.evaluate_by = None;
            }
            Event::Finalised { .. } => {
                self.status = Status::Final;
                self.deadlines.review_by = None;
                self.deadlines.evaluate_by = None;
            }
        }
    }

    /// The earliest instant at which `tick` would produce an event (it may already have passed if
    /// a tick is late); None when nothing is pending. The node keys its alarm index with it.
    pub fn next_alarm(&self) -> Option<Millis> {
        clock::alarms(self).first().map(|alarm| alarm.at)
    }

    /// Checks the history's hash chain: a modified, removed or reordered entry is found.
    pub fn verify_chain(&self) -> Result<(), DomainError> {
        event::verify(&self.history)
    }

    /// Versioned JSON: `{"v":1,"case_id":...}`.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these types cannot fail: every map key is a string.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads [`Case::to_bytes`]' form; refuses other versions and malformed fields.
    pub fn from_bytes(bytes: &[u8]) -> Result<Case, DomainError> {
        let value = versioned_json(bytes, CASE_VERSION)?;
        serde_json::from_value(value).map_err(|error| DomainError::Corrupt {
            reason: error.to_string(),
        })
    }

    /// Whether `office` may change this copy: it owns it, and the case is neither in transit nor a
    /// forwarding stub.
    pub fn is_mutable_by(&self, office: &OfficeCode) -> bool {
        self.office == *office
            && !matches!(
                self.status,
                Status::InTransit { .. } | Status::Forwarded { .. }
            )
    }
}

/// Parses stored JSON and checks its `v` before anything else is read.
pub(crate) fn versioned_json(bytes: &[u8], supported: u16) -> Result<Value, DomainError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|error| DomainError::Corrupt {
        reason: error.to_string(),
    })?;
    match value.get("v").map(Value::as_u64) {
        Some(Some(found)) if found == u64::from(supported) => Ok(value),
        Some(Some(found)) => Err(DomainError::UnsupportedVersion { found, supported }),
        _ => Err(DomainError::Corrupt {
            reason: "no version field \"v\"".to_string(),
        }),
    }
}

/// Serde guard on `Case::v`: a plain deserialise refuses other versions too.
pub(crate) fn deserialize_case_version<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<u16, D::Error> {
    let version = u16::deserialize(deserializer)?;
    if version == CASE_VERSION {
        Ok(version)
    } else {
        Err(serde::de::Error::custom(DomainError::UnsupportedVersion {
            found: u64::from(version),
            supported: CASE_VERSION,
        }))
    }
}

//! SMS to the petitioner (短信告知): which notices a case change produces, and their text. Pure,
//! like the rest of the engine: the node commits the notices with the change that made them
//! (its notification outbox) and sends them later through a gateway.
//!
//! The offices send at three points (告知受理情况、办理情况、提醒查看办理结果) and answer an online
//! filing automatically. A notice's stage:
//!
//! | stage | made by | says |
//! | --- | --- | --- |
//! | `received` | a registration here (filing, or a review registered at the level above) | the case id, decision on acceptance by |
//! | `accepted` | acceptance (受理) | reply by |
//! | `handling` | during handling: an extension (with its reason), the case received by this office in a transfer, assignment or return | what happened, the new date or office |
//! | `result` | the reply (答复), or a decline (不予受理) with its route | read the result and evaluate it by |
//!
//! So a case filed, accepted and replied gets exactly three: `received`, `accepted`, `result`.
//! Only a case whose petitioner gave a phone gets any SMS.
//!
//! A case the 12345 hotline handed over (its first-contact officer is [`hotline_officer`] of the
//! ticket) also makes one `callback` at its result, phone or not: the hotline platform is told
//! the result of its ticket (the sender posts it to the federation's hotline callback). `received`, `accepted` and `result` are
//! made once per case at an office (`seq` 0); `handling` once per change (`seq` is the case's
//! history length after it).

use serde::{Deserialize, Serialize};

use crate::calendar::{Date, Millis};
use crate::event::Event;
use crate::ids::{CaseId, OfficeCode};
use crate::model::{Case, DeclineRoute, HandoffKind, Opinion};

/// Characters of free text (an extension's reason) a notice carries at most: an SMS is short.
pub const NOTICE_DETAIL_CHARS_MAX: usize = 120;

/// When in a case's life a notice is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Received,
    Accepted,
    Handling,
    Result,
    /// The result told to the 12345 hotline platform that handed the case over (not an SMS).
    Callback,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Received,
        Stage::Accepted,
        Stage::Handling,
        Stage::Result,
        Stage::Callback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Received => "received",
            Stage::Accepted => "accepted",
            Stage::Handling => "handling",
            Stage::Result => "result",
            Stage::Callback => "callback",
        }
    }

    /// Whether this stage is an SMS to the petitioner (every stage but [`Stage::Callback`]).
    pub fn is_sms(self) -> bool {
        self != Stage::Callback
    }
}

/// The first-contact "officer" of every case the 12345 hotline hands over, before the ticket id.
pub const HOTLINE_OFFICER: &str = "hotline12345";

/// The first-contact officer of the case filed for hotline ticket `ticket_id`: the hotline and
/// its ticket (`hotline12345/HL-2026-000123`), which the result's callback names.
pub fn hotline_officer(ticket_id: &str) -> String {
    format!("{HOTLINE_OFFICER}/{ticket_id}")
}

/// The hotline ticket a case was filed for, if the hotline handed it over.
pub fn hotline_ticket(case: &Case) -> Option<&str> {
    case.first_officer
        .strip_prefix(HOTLINE_OFFICER)?
        .strip_prefix('/')
        .filter(|ticket| !ticket.is_empty())
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What made a notice: the facts its text names. New variants go at the end (stored, binary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Registered here; acceptance is decided by `accept_by`.
    Registered { accept_by: Option<Millis> },
    /// Accepted; the reply is due by `reply_by`.
    Accepted { reply_by: Millis },
    /// The reply limit extended to `reply_by`, for `reason` (cut to [`NOTICE_DETAIL_CHARS_MAX`]).
    Extended { reason: String, reply_by: Millis },
    /// This office received the case from `from` in a transfer, assignment or return (the
    /// handoff's word).
    Handed { from: OfficeCode, handoff: String },
    /// Not accepted: the statutory route to take.
    Declined { route: DeclineRoute },
    /// Replied; the petitioner may evaluate until `evaluate_by`.
    Replied {
        opinion: Opinion,
        evaluate_by: Millis,
    },
}

/// One notice a change makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub stage: Stage,
    /// 0 for `received`, `accepted` and `result`; the case's history length after the change
    /// for `handling`.
    pub seq: u32,
    pub cause: Cause,
}

/// The notices a case change makes at the office that commits it: `before` is the stored
/// header (None for a case new here), `after` the case after the change, `events` what
/// happened between (empty for a case registered or received whole). No SMS without a phone; a
/// [`Stage::Callback`] beside the result of a case the hotline handed over.
pub fn notices(before: Option<&Case>, after: &Case, events: &[Event]) -> Vec<Notice> {
    let has_phone = after
        .petitioner
        .as_ref()
        .is_some_and(|petitioner| petitioner.phone.is_some());
    let from_hotline = hotline_ticket(after).is_some();
    if !has_phone && !from_hotline {
        return Vec::new();
    }
    let sms = sms_notices(before, after, events);
    let callbacks: Vec<Notice> = sms
        .iter()
        .filter(|notice| from_hotline && notice.stage == Stage::Result)
        .map(|notice| Notice {
            stage: Stage::Callback,
            ..notice.clone()
        })
        .collect();
    let mut notices = if has_phone { sms } else { Vec::new() };
    notices.extend(callbacks);
    notices
}

/// The SMS notices of a change, phone or not.
fn sms_notices(before: Option<&Case>, after: &Case, events: &[Event]) -> Vec<Notice> {
    let mut notices = Vec::new();
    let handling_seq = after.history_len();
    let newly_received = after.received.is_some()
        && before.and_then(|case| case.received.as_ref()) != after.received.as_ref();
    if before.is_none() && after.received.is_none() {
        notices.push(Notice {
            stage: Stage::Received,
            seq: 0,
            cause: Cause::Registered {
                accept_by: after.deadlines.accept_by,
            },
        });
    } else if let (true, Some(receipt)) = (newly_received, &after.received) {
        notices.push(Notice {
            stage: Stage::Handling,
            seq: handling_seq,
            cause: Cause::Handed {
                from: receipt.from.clone(),
                handoff: handoff_word(&receipt.handoff).to_string(),
            },
        });
    }
    for event in events {
        let notice = match event {
            Event::Accepted { reply_by, .. } => Notice {
                stage: Stage::Accepted,
                seq: 0,
                cause: Cause::Accepted {
                    reply_by: *reply_by,
                },
            },
            Event::Extended {
                reason, reply_by, ..
            } => Notice {
                stage: Stage::Handling,
                seq: handling_seq,
                cause: Cause::Extended {
                    reason: reason.chars().take(NOTICE_DETAIL_CHARS_MAX).collect(),
                    reply_by: *reply_by,
                },
            },
            Event::Declined { route, .. } => Notice {
                stage: Stage::Result,
                seq: 0,
                cause: Cause::Declined { route: *route },
            },
            Event::Replied {
                opinion,
                evaluate_by,
                ..
            } => Notice {
                stage: Stage::Result,
                seq: 0,
                cause: Cause::Replied {
                    opinion: *opinion,
                    evaluate_by: *evaluate_by,
                },
            },
            _ => continue,
        };
        if !notices
            .iter()
            .any(|n: &Notice| (n.stage, n.seq) == (notice.stage, notice.seq))
        {
            notices.push(notice);
        }
    }
    notices
}

fn handoff_word(kind: &HandoffKind) -> &'static str {
    kind.as_str()
}

/// The message id of a notice: unique across the federation (office, case, stage, seq), the
/// gateway's deduplication key.
pub fn message_id(office: &OfficeCode, case_id: &CaseId, stage: Stage, seq: u32) -> String {
    format!("{office}/{case_id}/{stage}/{seq}")
}

fn date(ms: Millis) -> String {
    Date::from_millis(ms).to_string()
}

fn route_words(route: DeclineRoute) -> &'static str {
    match route {
        DeclineRoute::Litigation => "诉讼",
        DeclineRoute::Arbitration => "仲裁",
        DeclineRoute::AdminReview => "行政复议",
        DeclineRoute::Discipline => "纪检监察",
    }
}

/// How the petitioner follows the case on the office's public surface: the verification code
/// given with the case and, where the office's hosts serve one, the status page's address.
#[derive(Debug, Clone, Copy)]
pub struct Follow<'a> {
    pub code: &'a str,
    /// `https://HOST:PORT` of a host of the office (no trailing slash).
    pub public_url: Option<&'a str>,
}

/// The SMS text of a notice: the one place it is written. The registration notice tells the
/// verification code (and the status page); the result notice points to the page where the
/// petitioner reads the result and evaluates it.
pub fn sms_text(
    stage: Stage,
    case_id: &CaseId,
    office: &OfficeCode,
    cause: &Cause,
    follow: Follow<'_>,
) -> String {
    let head = "【信访】";
    let body = match cause {
        Cause::Registered { accept_by } => match accept_by {
            Some(by) => format!(
                "您的信访事项已登记，编号{case_id}。{office}将于{}前告知是否受理。",
                date(*by)
            ),
            None => format!("您的信访事项已登记，编号{case_id}。"),
        },
        Cause::Accepted { reply_by } => format!(
            "您的信访事项{case_id}已受理，{office}将于{}前答复。",
            date(*reply_by)
        ),
        Cause::Extended { reason, reply_by } => format!(
            "您的信访事项{case_id}办理期限延长至{}，理由：{reason}。",
            date(*reply_by)
        ),
        Cause::Handed { from, handoff } => {
            let how = match handoff.as_str() {
                "assign" => "交办",
                "return" => "退回",
                _ => "转送",
            };
            format!("您的信访事项{case_id}已由{from}{how}至{office}办理。")
        }
        Cause::Declined { route } => format!(
            "您的信访事项{case_id}不予受理，请依法通过{}途径解决。",
            route_words(*route)
        ),
        Cause::Replied { evaluate_by, .. } => format!(
            "您的信访事项{case_id}已办结答复，请查看办理结果，并于{}前作出满意度评价。",
            date(*evaluate_by)
        ),
    };
    debug_assert!(matches!(
        (stage, cause),
        (Stage::Received, Cause::Registered { .. })
            | (Stage::Accepted, Cause::Accepted { .. })
            | (
                Stage::Handling,
                Cause::Extended { .. } | Cause::Handed { .. }
            )
            | (
                Stage::Result | Stage::Callback,
                Cause::Declined { .. } | Cause::Replied { .. }
            )
    ));
    let page = follow
        .public_url
        .map(|url| format!("{url}/status/{case_id}?code={}", follow.code));
    let tail = match (stage, page) {
        (Stage::Received, Some(page)) => {
            format!(
                "查询码{}，可凭编号和查询码查询办理进度：{page}",
                follow.code
            )
        }
        (Stage::Received, None) => format!("查询码{}，可凭编号和查询码查询办理进度。", follow.code),
        (Stage::Result, Some(page)) => format!("查看结果并评价：{page}"),
        (Stage::Result, None) => format!("查询码{}。", follow.code),
        _ => String::new(),
    };
    format!("{head}{body}{tail}")
}

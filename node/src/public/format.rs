//! How the public surface writes times, statuses and the petitioner's page (HTML, plain text for
//! an IVR, JSON).

use liandong_domain::{Case, Date, Millis, Status};
use serde_json::{json, Value};

const CHINA_OFFSET_MS: i64 = 8 * 3_600_000;

/// An instant in China time, W3C form (`2026-12-06T15:04:05+08:00`), as Open311 writes it.
pub fn datetime(ms: Millis) -> String {
    let date = Date::from_millis(ms);
    let of_day = (ms + CHINA_OFFSET_MS).rem_euclid(86_400_000) / 1_000;
    format!(
        "{date}T{:02}:{:02}:{:02}+08:00",
        of_day / 3_600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// The China-time date of an instant.
pub fn date(ms: Millis) -> String {
    Date::from_millis(ms).to_string()
}

/// What a status means to a petitioner.
pub fn status_text(status: &Status) -> &'static str {
    match status {
        Status::Registered => "registered: the office decides within 15 days whether to accept it",
        Status::Accepted => "accepted: the office is handling it",
        Status::InTransit { .. } => "being handed to another office",
        Status::Forwarded { .. } => "handed to another office",
        Status::Declined { .. } => "not accepted: the matter belongs to another legal procedure",
        Status::Replied => "replied: you may evaluate the reply",
        Status::Evaluated => "replied and evaluated",
        Status::ReviewRequested => "a review was requested at the level above",
        Status::Final => "closed",
        Status::Reviewed => "reviewed by the level above",
    }
}

/// The petitioner's own view of a case (no personal data: the petitioner knows it).
#[derive(Debug, Clone)]
pub struct View {
    pub case_id: String,
    pub office: String,
    pub office_name: String,
    pub status: String,
    pub status_text: String,
    pub registered: String,
    pub accepted: Option<String>,
    pub deadline: Option<String>,
    pub reply: Option<(String, String)>,
    pub evaluation: Option<String>,
    pub may_evaluate: bool,
}

impl View {
    pub fn of(case: &Case, office_name: &str) -> View {
        View {
            case_id: case.id.to_string(),
            office: case.office.to_string(),
            office_name: office_name.to_string(),
            status: case.status.as_str().to_string(),
            status_text: status_text(&case.status).to_string(),
            registered: date(case.registered_at),
            accepted: case.accepted_at.map(date),
            deadline: case
                .deadlines
                .reply_by
                .or(case.deadlines.accept_by)
                .map(date),
            reply: match (&case.reply_text, case.replied_at) {
                (Some(text), Some(at)) => Some((date(at), text.clone())),
                _ => None,
            },
            evaluation: case.satisfaction.as_ref().map(|s| s.as_str().to_string()),
            may_evaluate: matches!(case.status, Status::Replied) && case.satisfaction.is_none(),
        }
    }

    /// Plain text, one fact a line: what an IVR reads out.
    pub fn text(&self) -> String {
        let mut out = format!("Case {}\n", self.case_id);
        out.push_str(&format!("Office: {} {}\n", self.office, self.office_name));
        out.push_str(&format!("Status: {} ({})\n", self.status, self.status_text));
        out.push_str(&format!("Registered: {}\n", self.registered));
        if let Some(accepted) = &self.accepted {
            out.push_str(&format!("Accepted: {accepted}\n"));
        }
        if let Some(deadline) = &self.deadline {
            out.push_str(&format!("Due by: {deadline}\n"));
        }
        if let Some((at, text)) = &self.reply {
            out.push_str(&format!("Replied: {at}\nReply: {text}\n"));
        }
        if let Some(evaluation) = &self.evaluation {
            out.push_str(&format!("Evaluation: {evaluation}\n"));
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "case_id": self.case_id,
            "office": self.office,
            "office_name": self.office_name,
            "status": self.status,
            "status_text": self.status_text,
            "registered": self.registered,
            "accepted": self.accepted,
            "due_by": self.deadline,
            "replied": self.reply.as_ref().map(|(at, _)| at),
            "reply": self.reply.as_ref().map(|(_, text)| text),
            "evaluation": self.evaluation,
        })
    }

    /// The HTML page: the text, and the evaluation form when the reply awaits one.
    pub fn html(&self, code: &str) -> String {
        let mut body = String::new();
        for line in self.text().lines() {
            body.push_str(&format!("<p>{}</p>\n", escape(line)));
        }
        if self.may_evaluate {
            body.push_str(&format!(
                "<form method=\"post\" action=\"/status/{id}/evaluate\">\n\
                 <input type=\"hidden\" name=\"code\" value=\"{code}\">\n\
                 <label><input type=\"radio\" name=\"satisfaction\" value=\"satisfied\"> satisfied (满意)</label>\n\
                 <label><input type=\"radio\" name=\"satisfaction\" value=\"basic\"> basically satisfied (基本满意)</label>\n\
                 <label><input type=\"radio\" name=\"satisfaction\" value=\"dissatisfied\"> dissatisfied (不满意)</label>\n\
                 <button type=\"submit\">Evaluate (评价)</button>\n</form>\n",
                id = escape(&self.case_id),
                code = escape(code),
            ));
        }
        page(&format!("Case {}", self.case_id), &body)
    }
}

/// A minimal HTML page.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"zh\"><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n{body}</body></html>\n",
        escape(title)
    )
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_china_time() {
        // 2026-01-01T00:00:00Z is 08:00 in China.
        assert_eq!(datetime(1_767_225_600_000), "2026-01-01T08:00:00+08:00");
        assert_eq!(
            datetime(1_767_225_600_000 + 16 * 3_600_000 + 61_000),
            "2026-01-02T00:01:01+08:00"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}

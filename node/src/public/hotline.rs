//! The 12345 hotline intake: a hotline platform posts a ticket (JSON); it is routed to the
//! competent office by its location and filed there on the channel `phone`, once per ticket id.
//! Pure: the mapping and the routing; the handler in [`super`] files.

use liandong_domain::notify::hotline_officer;
pub use liandong_domain::notify::HOTLINE_OFFICER;
use liandong_domain::{Channel, OfficeCode, Personal, Registration};
use serde_json::Value;

use super::open311::service;

/// The longest ticket id (it becomes the filing's request id).
pub const TICKET_CHARS_MAX: usize = 48;

/// A ticket as Liandong files it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub ticket_id: String,
    /// The division code where the matter arose: it chooses the office.
    pub location: OfficeCode,
    pub registration: Registration,
}

fn text<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// Reads a ticket: `ticket_id`, `location` (a division code), `category` (a service code of
/// `services.json`), `summary`, `name`, `id_number` (PRC resident ID), `phone` and `address`
/// (the petitioner's, sealed like the name; both optional).
/// Every problem is reported; nothing is filed.
pub fn ticket(body: &Value) -> Result<Ticket, Vec<String>> {
    let mut errors = Vec::new();
    if !body.is_object() {
        return Err(vec!["the body is a JSON object".into()]);
    }
    let ticket_id = text(body, "ticket_id");
    match ticket_id {
        None => errors.push("ticket_id is required".to_string()),
        Some(id)
            if id.chars().count() > TICKET_CHARS_MAX
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            errors.push(format!(
                "ticket_id: 1 to {TICKET_CHARS_MAX} letters, digits, '-', '_' or '.'"
            ))
        }
        Some(_) => {}
    }
    let location = match text(body, "location").map(str::parse::<OfficeCode>) {
        None => {
            errors.push("location is required: the division code where the matter arose".into());
            None
        }
        Some(Err(error)) => {
            errors.push(format!("location: {error}"));
            None
        }
        Some(Ok(code)) => Some(code),
    };
    let category = text(body, "category");
    match category {
        None => errors.push("category is required (a service_code of services.json)".into()),
        Some(code) if service(code).is_none() => errors.push(format!(
            "category {:?} is not a service (see /open311/v2/services.json)",
            code.chars().take(64).collect::<String>()
        )),
        Some(_) => {}
    }
    for name in ["summary", "name", "id_number"] {
        if text(body, name).is_none() {
            errors.push(format!("{name} is required"));
        }
    }
    let (Some(ticket_id), Some(location), Some(category), true) =
        (ticket_id, location, category, errors.is_empty())
    else {
        return Err(errors);
    };
    let registration = Registration {
        channel: Channel::Phone,
        petitioner_id: Personal::from(text(body, "id_number").unwrap_or_default()),
        name: Personal::from(text(body, "name").unwrap_or_default()),
        phone: text(body, "phone").map(Personal::from),
        category: category.to_string(),
        summary: text(body, "summary").unwrap_or_default().to_string(),
        location: Some(location.clone()),
        officer: hotline_officer(ticket_id),
        address: text(body, "address").map(Personal::from),
    };
    registration
        .validate()
        .map_err(|error| vec![error.to_string()])?;
    Ok(Ticket {
        ticket_id: ticket_id.to_string(),
        location,
        registration,
    })
}

/// What the hotline platform is told when a case it handed over has its result (the
/// `callback` notice, posted to `--hotline-callback`): its ticket, the case, the office that
/// answered, the result (`replied` with the opinion and the reply's text, or `declined` with the
/// statutory route) and the petitioner's status page. `id` is the callback's own id: the same on
/// every resend, for the platform to deduplicate.
pub fn callback_body(
    id: &str,
    ticket_id: &str,
    case: &liandong_domain::Case,
    cause: &liandong_domain::notify::Cause,
    status_url: Option<String>,
) -> Value {
    use liandong_domain::notify::Cause;
    let mut body = serde_json::json!({
        "callback_id": id,
        "ticket_id": ticket_id,
        "case_id": case.id.to_string(),
        "office": case.office.to_string(),
        "status_url": status_url,
    });
    let result = match cause {
        Cause::Replied {
            opinion,
            evaluate_by,
        } => serde_json::json!({
            "result": "replied",
            "opinion": opinion.as_str(),
            "text": case.reply_text,
            "replied_at_ms": case.replied_at,
            "evaluate_by_ms": evaluate_by,
        }),
        Cause::Declined { route } => serde_json::json!({
            "result": "declined",
            "route": route.as_str(),
        }),
        _ => serde_json::json!({ "result": "unknown" }),
    };
    if let (Value::Object(body), Value::Object(result)) = (&mut body, result) {
        body.extend(result);
    }
    body
}

/// The competent office for `location` among the federation's `offices`: the office of that
/// division, else the nearest one above it (division codes nest by prefix). None when the
/// location is outside the federation.
pub fn competent_office<'a>(offices: &'a [String], location: &str) -> Option<&'a str> {
    offices
        .iter()
        .filter(|code| location.starts_with(code.as_str()))
        .max_by_key(|code| code.len())
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn offices() -> Vec<String> {
        ["5306", "530602", "530602001", "530621"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn a_ticket_goes_to_the_office_of_its_location_or_the_nearest_above() {
        let offices = offices();
        assert_eq!(competent_office(&offices, "530602001"), Some("530602001"));
        assert_eq!(competent_office(&offices, "530602002"), Some("530602"));
        assert_eq!(competent_office(&offices, "530621100"), Some("530621"));
        assert_eq!(competent_office(&offices, "530699"), Some("5306"));
        assert_eq!(competent_office(&offices, "5301"), None);
    }

    #[test]
    fn a_ticket_maps_to_a_phone_registration_and_bad_ones_list_every_problem() {
        let good = json!({
            "ticket_id": "HL-2026-000123",
            "location": "530602001",
            "category": "labour",
            "summary": "wages unpaid since May",
            "name": "赵六",
            "id_number": "530602198001010012",
            "phone": "13800000000",
        });
        let ticket = ticket(&good).unwrap();
        assert_eq!(ticket.ticket_id, "HL-2026-000123");
        assert_eq!(ticket.location.as_str(), "530602001");
        assert_eq!(ticket.registration.channel, Channel::Phone);
        assert_eq!(ticket.registration.officer, "hotline12345/HL-2026-000123");
        assert_eq!(ticket.registration.address, None);
        // The caller's address, when the platform has one, is the petitioner's (sealed later).
        let mut addressed = good.clone();
        addressed["address"] = json!("昭阳区海楼路 88 号");
        let ticket = super::ticket(&addressed).unwrap();
        assert_eq!(
            ticket.registration.address,
            Some(Personal::from("昭阳区海楼路 88 号"))
        );
        addressed["address"] = json!("x".repeat(257));
        let errors = super::ticket(&addressed).unwrap_err();
        assert!(errors[0].starts_with("address"), "{errors:?}");
        let errors =
            super::ticket(&json!({"ticket_id": "a b", "category": "potholes"})).unwrap_err();
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(super::ticket(&json!([1])).is_err());
    }
}

//! Open311 GeoReport v2 as Liandong speaks it: the services (a petition's categories), a
//! request's fields mapped to a registration, and a case shown as a service request. Pure: the
//! handlers in [`super`] read and write; this module only translates, and is unit-tested.

use liandong_domain::{Case, Channel, OfficeCode, Personal, Registration, Status};
use serde_json::{json, Value};

use super::format::{datetime, status_text};

/// One service: a petition category a 311 client may file under.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// The service code, which is the case's category.
    pub code: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub group: &'static str,
}

/// The services every office offers: each `service_code` is the category the case is filed
/// under (`liandong case file --category`).
pub const SERVICES: &[Service] = &[
    Service {
        code: "housing",
        name: "Housing, demolition and resettlement (住房与征收拆迁)",
        description:
            "Housing conditions, expropriation, demolition, resettlement and property management.",
        group: "livelihood",
    },
    Service {
        code: "land",
        name: "Land and rural affairs (土地与农村)",
        description: "Land use, land contracts, rural collective matters.",
        group: "livelihood",
    },
    Service {
        code: "labour",
        name: "Labour and social security (劳动与社保)",
        description: "Unpaid wages, labour contracts, pensions and social insurance.",
        group: "livelihood",
    },
    Service {
        code: "environment",
        name: "Environment (生态环境)",
        description: "Pollution, noise, waste and other environmental harm.",
        group: "public",
    },
    Service {
        code: "transport",
        name: "Transport and roads (交通)",
        description: "Roads, public transport and traffic management.",
        group: "public",
    },
    Service {
        code: "health",
        name: "Health care (医疗卫生)",
        description: "Hospitals, medical disputes, public health.",
        group: "public",
    },
    Service {
        code: "education",
        name: "Education (教育)",
        description: "Schools, enrolment and fees.",
        group: "public",
    },
    Service {
        code: "law",
        name: "Law enforcement and justice (政法)",
        description:
            "Public security, courts' and prosecutors' conduct, administrative enforcement.",
        group: "governance",
    },
    Service {
        code: "other",
        name: "Other matters (其他)",
        description: "Anything not listed above.",
        group: "governance",
    },
];

/// The most fields a request may carry (the body is bounded in bytes too).
pub const FIELDS_MAX: usize = 64;
/// The first-contact "officer" written into a case filed on the public surface.
pub const PUBLIC_OFFICER: &str = "open311";

/// The service of `code`, if Liandong offers it.
pub fn service(code: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|service| service.code == code)
}

/// `GET services.json`.
pub fn services_json() -> Value {
    Value::Array(
        SERVICES
            .iter()
            .map(|s| {
                json!({
                    "service_code": s.code,
                    "service_name": s.name,
                    "description": s.description,
                    "metadata": false,
                    "type": "realtime",
                    "keywords": s.code,
                    "group": s.group,
                })
            })
            .collect(),
    )
}

/// An Open311 error: `[{"code": N, "description": "..."}]` with that HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open311Error {
    pub code: u16,
    pub description: String,
}

impl Open311Error {
    pub fn new(code: u16, description: impl Into<String>) -> Open311Error {
        Open311Error {
            code,
            description: description.into(),
        }
    }

    pub fn bad(description: impl Into<String>) -> Open311Error {
        Open311Error::new(400, description)
    }

    pub fn json(errors: &[Open311Error]) -> Value {
        Value::Array(
            errors
                .iter()
                .map(|e| json!({"code": e.code, "description": e.description}))
                .collect(),
        )
    }
}

/// A `POST requests.json` turned into what Liandong files: the office asked for (the
/// `jurisdiction_id`, None for the host's first office) and the registration (clear; the
/// handler seals it).
#[derive(Debug, Clone, PartialEq)]
pub struct Filing {
    pub jurisdiction: Option<String>,
    pub registration: Registration,
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// A petitioner's name from Open311's `first_name` and `last_name`: Chinese names are written
/// family name first without a space, others given name first.
pub fn name_of(first: Option<&str>, last: Option<&str>) -> Option<String> {
    match (first, last) {
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => Some(one.to_string()),
        (Some(first), Some(last)) => {
            if first.is_ascii() && last.is_ascii() {
                Some(format!("{first} {last}"))
            } else {
                Some(format!("{last}{first}"))
            }
        }
    }
}

/// Maps a `POST requests.json` form. Required: a known `service_code`, a `description`, the
/// petitioner's name (`first_name` and/or `last_name`) and PRC resident ID number
/// (`attribute[id_number]`). Optional: `phone`, `address_string` (the petitioner's address,
/// sealed like the name),
/// `attribute[location]` (the division code where the matter arose), `jurisdiction_id` (the
/// office). Every problem is reported, and nothing is filed.
pub fn filing(fields: &[(String, String)]) -> Result<Filing, Vec<Open311Error>> {
    let mut errors = Vec::new();
    if fields.len() > FIELDS_MAX {
        return Err(vec![Open311Error::bad(format!(
            "a request has at most {FIELDS_MAX} fields"
        ))]);
    }
    let service_code = field(fields, "service_code");
    match service_code {
        None => errors.push(Open311Error::bad("service_code is required")),
        Some(code) if service(code).is_none() => errors.push(Open311Error::bad(format!(
            "service_code {:?} is not a service of this jurisdiction (see services.json)",
            code.chars().take(64).collect::<String>()
        ))),
        Some(_) => {}
    }
    let description = field(fields, "description");
    if description.is_none() {
        errors.push(Open311Error::bad(
            "description is required: what the petition is about",
        ));
    }
    let name = name_of(field(fields, "first_name"), field(fields, "last_name"));
    if name.is_none() {
        errors.push(Open311Error::bad(
            "first_name or last_name is required: the petitioner's name",
        ));
    }
    let id_number = field(fields, "attribute[id_number]");
    if id_number.is_none() {
        errors.push(Open311Error::bad(
            "attribute[id_number] is required: the petitioner's PRC resident ID number",
        ));
    }
    let location = match field(fields, "attribute[location]") {
        None => None,
        Some(code) => match code.parse::<OfficeCode>() {
            Ok(code) => Some(code),
            Err(error) => {
                errors.push(Open311Error::bad(format!("attribute[location]: {error}")));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let summary = description.unwrap_or_default().to_string();
    let registration = Registration {
        channel: Channel::Online,
        petitioner_id: Personal::from(id_number.unwrap_or_default()),
        name: Personal::from(name.unwrap_or_default()),
        phone: field(fields, "phone").map(Personal::from),
        category: service_code.unwrap_or_default().to_string(),
        summary,
        location,
        officer: PUBLIC_OFFICER.to_string(),
        // The petitioner's address: personal data, sealed like the name (never in the summary).
        address: field(fields, "address_string").map(Personal::from),
    };
    registration
        .validate()
        .map_err(|error| vec![Open311Error::bad(error.to_string())])?;
    Ok(Filing {
        jurisdiction: field(fields, "jurisdiction_id").map(str::to_string),
        registration,
    })
}

/// The Open311 id of a case: its case id and its verification code, so that only whoever filed
/// it (or was told the code) can follow it.
pub fn request_id(case_id: &str, code: &str) -> String {
    format!("{case_id}-{code}")
}

/// A `service_request_id` split into the case id and the code (None: not of that shape).
pub fn split_request_id(id: &str) -> Option<(&str, &str)> {
    let (case_id, code) = id.rsplit_once('-')?;
    (!case_id.is_empty() && !code.is_empty()).then_some((case_id, code))
}

/// Whether a case counts as closed for Open311: the office answered it (declined, replied, or
/// finished).
pub fn is_closed(status: &Status) -> bool {
    matches!(
        status,
        Status::Declined { .. }
            | Status::Replied
            | Status::Evaluated
            | Status::Final
            | Status::Reviewed
    )
}

/// A case as an Open311 service request. `holder_name` names the office holding it.
pub fn service_request(case: &Case, request_id: &str, holder_name: &str) -> Value {
    let updated = case.status_since.max(case.registered_at);
    let mut notes = status_text(&case.status).to_string();
    if let (Some(text), Some(at)) = (&case.reply_text, case.replied_at) {
        notes.push_str(&format!("; reply of {}: {text}", datetime(at)));
    }
    let expected = case
        .deadlines
        .reply_by
        .or(case.deadlines.accept_by)
        .map(datetime);
    json!({
        "service_request_id": request_id,
        "status": if is_closed(&case.status) { "closed" } else { "open" },
        "status_notes": notes,
        "service_name": service(&case.category).map(|s| s.name).unwrap_or(case.category.as_str()),
        "service_code": case.category,
        "description": Value::Null,
        "agency_responsible": holder_name,
        "service_notice": "",
        "requested_datetime": datetime(case.registered_at),
        "updated_datetime": datetime(updated),
        "expected_datetime": expected,
        "address": "",
        "address_id": "",
        "zipcode": "",
        "lat": Value::Null,
        "long": Value::Null,
        "media_url": "",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ID: &str = "530602198001010012";

    #[test]
    fn a_complete_request_maps_to_an_online_registration() {
        let filing = filing(&form(&[
            ("service_code", "housing"),
            ("description", "roof leaks"),
            ("first_name", "三"),
            ("last_name", "张"),
            ("phone", "13800000000"),
            ("attribute[id_number]", ID),
            ("address_string", "昭阳区 1 号"),
            ("jurisdiction_id", "530602001"),
            ("api_key", "ignored"),
        ]))
        .unwrap();
        assert_eq!(filing.jurisdiction.as_deref(), Some("530602001"));
        let r = filing.registration;
        assert_eq!(r.channel, Channel::Online);
        assert_eq!(r.name, "张三");
        assert_eq!(r.petitioner_id, ID);
        assert_eq!(r.phone, Some(Personal::from("13800000000")));
        assert_eq!(r.category, "housing");
        // The address is the petitioner's, sealed like the name: never in the summary.
        assert_eq!(r.summary, "roof leaks");
        assert_eq!(r.address, Some(Personal::from("昭阳区 1 号")));
        assert_eq!(r.officer, PUBLIC_OFFICER);
    }

    /// An address beyond its bound files nothing, and the error does not repeat it.
    #[test]
    fn a_long_address_is_refused() {
        let long = "路".repeat(86);
        let errors = filing(&form(&[
            ("service_code", "housing"),
            ("description", "roof leaks"),
            ("first_name", "三"),
            ("attribute[id_number]", ID),
            ("address_string", &long),
        ]))
        .unwrap_err();
        assert!(errors[0].description.starts_with("address"), "{errors:?}");
        assert!(!errors[0].description.contains("路路"), "{errors:?}");
    }

    #[test]
    fn names_follow_their_script() {
        assert_eq!(name_of(Some("Li"), Some("Wei")).unwrap(), "Li Wei");
        assert_eq!(name_of(Some("伟"), Some("李")).unwrap(), "李伟");
        assert_eq!(name_of(None, Some("李伟")).unwrap(), "李伟");
        assert_eq!(name_of(None, None), None);
    }

    #[test]
    fn unknown_services_and_missing_fields_are_all_reported() {
        let errors = filing(&form(&[("service_code", "potholes")])).unwrap_err();
        let text: Vec<&str> = errors.iter().map(|e| e.description.as_str()).collect();
        assert_eq!(errors.len(), 4, "{text:?}");
        assert!(errors.iter().all(|e| e.code == 400));
        assert!(text[0].contains("potholes"));
        assert!(text.iter().any(|t| t.contains("description")));
        assert!(text.iter().any(|t| t.contains("attribute[id_number]")));
        // A malformed ID number is the engine's own refusal.
        let errors = filing(&form(&[
            ("service_code", "land"),
            ("description", "x"),
            ("last_name", "张三"),
            ("attribute[id_number]", "530602198001010013"),
        ]))
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        let json = Open311Error::json(&errors);
        assert_eq!(json[0]["code"], 400);
        assert!(json[0]["description"].as_str().unwrap().len() > 5);
    }

    #[test]
    fn request_ids_carry_the_code() {
        let id = request_id("530602001-2026-000001", "01234567");
        assert_eq!(id, "530602001-2026-000001-01234567");
        assert_eq!(
            split_request_id(&id),
            Some(("530602001-2026-000001", "01234567"))
        );
        assert_eq!(split_request_id("nodash"), None);
        assert_eq!(split_request_id("x-"), None);
    }

    #[test]
    fn services_are_the_categories() {
        let list = services_json();
        assert_eq!(list.as_array().unwrap().len(), SERVICES.len());
        assert_eq!(list[0]["service_code"], "housing");
        assert_eq!(list[0]["metadata"], false);
        assert!(service("other").is_some());
        assert!(service("potholes").is_none());
    }
}

//! The public surface: HTTPS on each host that has an `http_addr` in the manifest, for
//! petitioners, voice platforms (IVR) and Open311 clients. No sign-in: a petitioner proves a case
//! is theirs with its verification code ([`crate::personal::status_code`]), which `case file`
//! prints and an Open311 filing returns.
//!
//! - `/open311/v2/services.json`, `requests.json` (POST files, GET reads), `requests/{id}.json`:
//!   Open311 GeoReport v2 ([`open311`]). A request's id is `CASEID-CODE`.
//! - `/status/{case_id}?code=CODE[&format=text|json]`: the petitioner's own view;
//!   `POST /status/{case_id}/evaluate` (form `code`, `satisfaction`): the evaluation of a reply.
//! - `POST /hotline/12345`: a 12345 hotline ticket (JSON), routed to the competent office by its
//!   location ([`hotline`]), filed once per ticket id.
//!
//! Bounds: [`CONNECTIONS_MAX`] connections, [`BODY_BYTES_MAX`] per body, [`REQUEST_TIMEOUT_MS`]
//! per request, [`HEADER_READ_TIMEOUT_MS`] for a request's headers. A wrong code and an unknown
//! case get the same answer and count against the client's address and the case
//! ([`FAILURES`]); filings count against the client's address ([`FILINGS`]).
//!
//! Reads answer from this host's replica of the office (a follower may be a heartbeat behind),
//! following forwarding stubs through the offices this host carries; a case held by an office
//! it does not carry is answered with that office and its public address (the code stays valid
//! there). Writes go through the office's leader ([`Proposer`]).

pub mod format;
pub mod hotline;
pub mod limiter;
pub mod open311;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, Form, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use liandong_domain::{Case, CaseCommand, CaseId, OfficeCode, Satisfaction, Status};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::api::propose::Proposer;
use crate::federation::directory::Directory;
use crate::manifest::Manifest;
use crate::raft::types::{Operation, Response as Applied, PUBLIC_CALLER};
use crate::replica::Replicas;
use format::View;
use limiter::{Limit, Limiter};
use open311::Open311Error;

/// Connections served at once; more are closed at once.
pub const CONNECTIONS_MAX: usize = 256;
/// The largest request body (an Open311 filing is a few hundred bytes).
pub const BODY_BYTES_MAX: usize = 16 * 1024;
/// The longest a request may take, a write through the leader included.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// The longest a client may take to send a request's headers, and its TLS handshake.
pub const HEADER_READ_TIMEOUT_MS: u64 = 5_000;
/// The longest one connection stays open.
pub const CONNECTION_MAX_MS: u64 = 60_000;
/// Wrong codes or unknown cases: per client address and per case, in a window.
pub const FAILURES: Limit = Limit {
    max: 10,
    window_ms: 10 * 60_000,
    keys: 10_000,
};
/// Open311 filings per client address, in a window.
pub const FILINGS: Limit = Limit {
    max: 30,
    window_ms: 60 * 60_000,
    keys: 10_000,
};
/// Forwarding stubs followed at most through the offices one host carries.
pub const STUB_HOPS_MAX: usize = 16;
/// Service requests one `GET requests.json` may ask for.
pub const REQUEST_IDS_MAX: usize = 20;
/// How long a filing waits for this host's replica to hold the new case, so that the client's
/// next read here finds it.
pub const READ_YOUR_WRITE_MS: u64 = 2_000;

/// The client's address, put on each request by the server.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// What the handlers share.
pub struct Public {
    /// The offices this host carries, in the manifest's order: the first is the default
    /// jurisdiction of an Open311 filing.
    pub offices: Vec<String>,
    /// This host's own public address.
    pub url: String,
    pub replicas: Replicas,
    pub proposer: Proposer,
    /// The federation's offices, their names and public addresses (where a moved case is
    /// followed), as the manifest the host follows now gives them: an office added while the
    /// host runs is named and reached at once.
    pub directory: Arc<Directory>,
    failures: Mutex<Limiter>,
    filings: Mutex<Limiter>,
    epoch: std::time::Instant,
}

/// The public address of a listen address.
pub fn url_of(http_addr: &str) -> String {
    format!("https://{http_addr}")
}

impl Public {
    pub fn new(
        manifest: &Manifest,
        host: &str,
        replicas: Replicas,
        proposer: Proposer,
        directory: Arc<Directory>,
    ) -> Public {
        let offices = manifest
            .host(host)
            .map(|h| h.offices.clone())
            .unwrap_or_default();
        let url = manifest
            .host(host)
            .and_then(|h| h.http_addr.as_deref())
            .map(url_of)
            .unwrap_or_default();
        Public {
            offices,
            url,
            replicas,
            proposer,
            directory,
            failures: Mutex::new(Limiter::new(FAILURES)),
            filings: Mutex::new(Limiter::new(FILINGS)),
            epoch: std::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn name_of(&self, office: &str) -> String {
        self.directory.name(office)
    }

    fn code_matches(&self, case_id: &str, code: &str) -> bool {
        self.replicas
            .iter()
            .next()
            .is_some_and(|replica| replica.seal.status_code_matches(case_id, code))
    }

    fn code_of(&self, case_id: &str) -> Option<String> {
        self.replicas
            .iter()
            .next()
            .map(|replica| replica.seal.status_code(case_id))
    }

    /// A case by its id and code: rate-limited; a wrong code and an unknown case alike are
    /// `Unknown`, and count as failures.
    fn lookup(&self, ip: IpAddr, case_id: &str, code: &str) -> Lookup {
        let now = self.now_ms();
        let ip_key = format!("ip:{ip}");
        let case_key = format!("case:{}", case_id.chars().take(64).collect::<String>());
        {
            let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if !failures.allows(&ip_key, now) || !failures.allows(&case_key, now) {
                return Lookup::TooMany;
            }
        }
        let found = self.find(case_id, code);
        if matches!(found, Lookup::Unknown) {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            failures.count(&ip_key, now);
            failures.count(&case_key, now);
        }
        found
    }

    fn find(&self, case_id: &str, code: &str) -> Lookup {
        let Ok(id) = case_id.parse::<CaseId>() else {
            return Lookup::Unknown;
        };
        // The code is checked before anything is read: an unknown case costs the same.
        if !self.code_matches(case_id, code) {
            return Lookup::Unknown;
        }
        // Follow forwarding stubs through the offices this host carries.
        let mut office = id.office.clone();
        let mut hops = 0;
        while let Some(replica) = self.replicas.get(&office) {
            match replica.case(&id) {
                Ok(Some(case)) => match &case.status {
                    Status::Forwarded { to } if hops < STUB_HOPS_MAX => {
                        office = to.clone();
                        hops += 1;
                    }
                    _ => return self.found(case),
                },
                Ok(None) => return Lookup::Unknown,
                Err(error) => return Lookup::Unavailable(error.to_string()),
            }
        }
        // A case moved here from an office this host does not carry.
        for replica in self.replicas.iter() {
            if let Ok(Some(case)) = replica.case(&id) {
                if !matches!(case.status, Status::Forwarded { .. }) {
                    return self.found(case);
                }
            }
        }
        let office = office.to_string();
        let url = self.directory.public_url(&office);
        if hops == 0 {
            Lookup::Elsewhere { office, url }
        } else {
            Lookup::Moved { office, url }
        }
    }

    fn found(&self, case: Case) -> Lookup {
        let name = self.name_of(case.office.as_str());
        Lookup::Found {
            case: Box::new(case),
            name,
        }
    }
}

enum Lookup {
    Found {
        case: Box<Case>,
        name: String,
    },
    /// The case moved to an office this host does not carry: followed at its address.
    Moved {
        office: String,
        url: Option<String>,
    },
    /// The case's office is not carried here: it is followed at that office's address.
    Elsewhere {
        office: String,
        url: Option<String>,
    },
    /// No such case, or a wrong code: the same answer.
    Unknown,
    TooMany,
    Unavailable(String),
}

/// The routes of the public surface.
pub fn router(public: Arc<Public>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/open311/v2/services.json", get(services))
        .route("/open311/v2/services/{file}", get(service_definition))
        .route("/open311/v2/requests.json", post(file).get(requests))
        .route("/open311/v2/requests/{file}", get(one_request))
        .route("/status/{case_id}", get(status_page))
        .route("/status/{case_id}/evaluate", post(evaluate))
        .route("/hotline/12345", post(hotline_ticket))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(middleware::from_fn(time_limit))
        .with_state(public)
}

async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), next.run(request)).await {
        Ok(response) => response,
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the office did not answer in time; try again\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn open311_error(error: Open311Error) -> Response {
    open311_errors(vec![error])
}

fn open311_errors(errors: Vec<Open311Error>) -> Response {
    let status = errors
        .first()
        .and_then(|e| StatusCode::from_u16(e.code).ok())
        .unwrap_or(StatusCode::BAD_REQUEST);
    json_response(status, Open311Error::json(&errors))
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "no such page\n".into())
}

async fn index() -> Response {
    html(
        StatusCode::OK,
        format::page(
            "Liandong",
            "<p>Petition status: /status/CASE-ID?code=CODE (add &amp;format=text for plain text).</p>\n\
             <p>Open311 GeoReport v2: /open311/v2/services.json</p>\n",
        ),
    )
}

/// A `.json` file name's stem; None for another format (only JSON is spoken).
fn json_stem(file: &str) -> Result<&str, Open311Error> {
    match file.rsplit_once('.') {
        Some((stem, "json")) => Ok(stem),
        Some((_, other)) => Err(Open311Error::bad(format!(
            "format {:?} is not offered: use .json",
            other.chars().take(16).collect::<String>()
        ))),
        None => Err(Open311Error::new(404, "no such resource")),
    }
}

async fn services() -> Response {
    json_response(StatusCode::OK, open311::services_json())
}

async fn service_definition(Path(file): Path<String>) -> Response {
    let code = match json_stem(&file) {
        Ok(code) => code,
        Err(error) => return open311_error(error),
    };
    match open311::service(code) {
        // No service has attributes beyond the common ones (`metadata` is false).
        Some(service) => json_response(
            StatusCode::OK,
            json!({"service_code": service.code, "attributes": []}),
        ),
        None => open311_error(Open311Error::new(404, "no such service_code")),
    }
}

fn pairs<T>(extracted: Result<T, impl std::fmt::Display>) -> Result<T, Open311Error> {
    extracted.map_err(|e| Open311Error::bad(format!("the request does not parse: {e}")))
}

/// An idempotency key of a filing: the same petitioner filing the same text under the same
/// service at the same office (a client's retry) files once.
fn filing_request_id(office: &str, fields: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(office.as_bytes());
    for name in [
        "service_code",
        "description",
        "attribute[id_number]",
        "first_name",
        "last_name",
        "phone",
        "address_string",
        "attribute[location]",
    ] {
        hasher.update([0]);
        if let Some((_, value)) = fields.iter().find(|(key, _)| key == name) {
            hasher.update(value.trim().as_bytes());
        }
    }
    format!("open311-{}", &hex::encode(hasher.finalize())[..32])
}

/// Files `registration` at `office` (carried here) with `request_id`, through its leader, and
/// waits until this host's replica holds the case; the case id.
async fn file_at(
    public: &Public,
    office: &OfficeCode,
    mut registration: liandong_domain::Registration,
    request_id: String,
) -> Result<String, Open311Error> {
    let Some(replica) = public.replicas.get(office) else {
        return Err(Open311Error::bad(format!(
            "office {office} is not served at this address"
        )));
    };
    let petitioner_key = replica
        .seal
        .seal_registration(&mut registration)
        .map_err(|error| Open311Error::bad(error.to_string()))?;
    let op = Operation::FileSealed {
        registration: Box::new(registration),
        petitioner_key,
        request_id: Some(request_id),
        caller: PUBLIC_CALLER.to_string(),
    };
    let document = match public.proposer.propose(office, op).await {
        Ok(Applied::Case { document }) => document,
        Ok(Applied::Rejected { kind, message, .. }) => {
            let code = match kind {
                crate::raft::types::RejectKind::AlreadyExists => 409,
                _ => 400,
            };
            return Err(Open311Error::new(code, message));
        }
        Ok(other) => {
            return Err(Open311Error::new(
                500,
                format!("the office answered {other:?}"),
            ))
        }
        Err(status) => return Err(Open311Error::new(503, status.message().to_string())),
    };
    let case = Case::from_bytes(&document).map_err(|e| Open311Error::new(500, e.to_string()))?;
    // Read-your-write on this host: its replica may be a heartbeat behind the leader.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(READ_YOUR_WRITE_MS);
    while !matches!(replica.case(&case.id), Ok(Some(_))) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(case.id.to_string())
}

async fn file(
    State(public): State<Arc<Public>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match pairs(form) {
        Ok(Form(fields)) => fields,
        Err(error) => return open311_error(error),
    };
    let now = public.now_ms();
    let key = format!("file:{ip}");
    {
        let mut filings = public.filings.lock().unwrap_or_else(|e| e.into_inner());
        if !filings.allows(&key, now) {
            return open311_error(Open311Error::new(
                429,
                "too many requests from this address; try again later",
            ));
        }
        filings.count(&key, now);
    }
    let filing = match open311::filing(&fields) {
        Ok(filing) => filing,
        Err(errors) => return open311_errors(errors),
    };
    let office_code = filing
        .jurisdiction
        .clone()
        .or_else(|| public.offices.first().cloned())
        .unwrap_or_default();
    let office: OfficeCode = match office_code.parse() {
        Ok(office) => office,
        Err(_) => return open311_error(Open311Error::bad("jurisdiction_id is not an office code")),
    };
    if public.replicas.get(&office).is_none() {
        // An office of the federation that other hosts carry: the client posts there.
        if let Some(url) = public.directory.public_url(office.as_str()) {
            return (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, format!("{url}/open311/v2/requests.json"))],
            )
                .into_response();
        }
        return open311_error(Open311Error::bad(format!(
            "jurisdiction_id {office} is not an office of this federation"
        )));
    }
    let request_id = filing_request_id(office.as_str(), &fields);
    let case_id = match file_at(&public, &office, filing.registration, request_id).await {
        Ok(case_id) => case_id,
        Err(error) => return open311_error(error),
    };
    let code = public.code_of(&case_id).unwrap_or_default();
    let status_url = format!("{}/status/{case_id}?code={code}", public.url);
    json_response(
        StatusCode::OK,
        json!([{
            "service_request_id": open311::request_id(&case_id, &code),
            "service_notice": format!(
                "Registered as case {case_id} at office {office} ({}). Verification code {code}: \
                 keep it to follow the case at {status_url}.",
                public.name_of(office.as_str())
            ),
            "account_id": Value::Null,
            "case_id": case_id,
            "verification_code": code,
            "status_url": status_url,
        }]),
    )
}

fn service_request_of(
    public: &Public,
    ip: IpAddr,
    request_id: &str,
) -> Result<Value, Open311Error> {
    let unknown = || Open311Error::new(404, "no service request with this id");
    let Some((case_id, code)) = open311::split_request_id(request_id) else {
        return Err(unknown());
    };
    match public.lookup(ip, case_id, code) {
        Lookup::Found { case, name } => Ok(open311::service_request(&case, request_id, &name)),
        Lookup::Moved { office, url } | Lookup::Elsewhere { office, url } => {
            Err(Open311Error::new(
                404,
                format!(
                    "this service request is held by office {office}{}",
                    url.map(|u| format!(": ask at {u}/open311/v2/requests/{request_id}.json"))
                        .unwrap_or_default()
                ),
            ))
        }
        Lookup::Unknown => Err(unknown()),
        Lookup::TooMany => Err(Open311Error::new(
            429,
            "too many failed look-ups; try again later",
        )),
        Lookup::Unavailable(reason) => Err(Open311Error::new(503, reason)),
    }
}

async fn requests(
    State(public): State<Arc<Public>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let params = match pairs(query) {
        Ok(Query(params)) => params,
        Err(error) => return open311_error(error),
    };
    let Some((_, ids)) = params.iter().find(|(k, _)| k == "service_request_id") else {
        return open311_error(Open311Error::bad(
            "service_request_id is required: petitions are not listed publicly",
        ));
    };
    let ids: Vec<&str> = ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if ids.len() > REQUEST_IDS_MAX {
        return open311_error(Open311Error::bad(format!(
            "at most {REQUEST_IDS_MAX} service_request_id at once"
        )));
    }
    let mut found = Vec::new();
    for id in ids {
        match service_request_of(&public, ip, id) {
            Ok(request) => found.push(request),
            Err(error) if error.code == 404 => {}
            Err(error) => return open311_error(error),
        }
    }
    json_response(StatusCode::OK, Value::Array(found))
}

async fn one_request(
    State(public): State<Arc<Public>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Path(file): Path<String>,
) -> Response {
    let id = match json_stem(&file) {
        Ok(id) => id,
        Err(error) => return open311_error(error),
    };
    match service_request_of(&public, ip, id) {
        Ok(request) => json_response(StatusCode::OK, Value::Array(vec![request])),
        Err(error) => open311_error(error),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Html,
    Text,
    Json,
}

fn shape_of(params: &[(String, String)]) -> Shape {
    match params
        .iter()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.as_str())
    {
        Some("text") | Some("txt") => Shape::Text,
        Some("json") => Shape::Json,
        _ => Shape::Html,
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// The one answer to a wrong code and to an unknown case.
const UNKNOWN: &str = "No case matches this case number and verification code.";

fn petitioner_answer(shape: Shape, status: StatusCode, message: &str) -> Response {
    match shape {
        Shape::Text => text(status, format!("{message}\n")),
        Shape::Json => json_response(status, json!({"error": message})),
        Shape::Html => html(
            status,
            format::page("Liandong", &format!("<p>{}</p>\n", format::escape(message))),
        ),
    }
}

/// The answer to a lookup that found nothing to show here: an unknown case or a wrong code
/// (alike), too many failed attempts, an office that cannot answer now.
fn lookup_failed(shape: Shape, lookup: &Lookup) -> Response {
    let (status, message) = match lookup {
        Lookup::TooMany => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed attempts; try again later.",
        ),
        Lookup::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The office cannot answer now; try again later.",
        ),
        _ => (StatusCode::NOT_FOUND, UNKNOWN),
    };
    petitioner_answer(shape, status, message)
}

async fn status_page(
    State(public): State<Arc<Public>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Path(case_id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let params = query.map(|Query(p)| p).unwrap_or_default();
    let shape = shape_of(&params);
    let code = param(&params, "code");
    let view = match public.lookup(ip, &case_id, code) {
        Lookup::Found { case, name } => View::of(&case, &name),
        Lookup::Moved { office, url } | Lookup::Elsewhere { office, url } => {
            let message = format!(
                "Case {case_id} is held by office {office} {}: ask there{}",
                public.name_of(&office),
                url.map(|u| format!(" ({u}/status/{case_id})"))
                    .unwrap_or_default()
            );
            return petitioner_answer(shape, StatusCode::OK, &message);
        }
        failed => return lookup_failed(shape, &failed),
    };
    match shape {
        Shape::Text => text(StatusCode::OK, view.text()),
        Shape::Json => json_response(StatusCode::OK, view.json()),
        Shape::Html => html(StatusCode::OK, view.html(code)),
    }
}

async fn evaluate(
    State(public): State<Arc<Public>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Path(case_id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match form {
        Ok(Form(fields)) => fields,
        Err(error) => return text(StatusCode::BAD_REQUEST, format!("{error}\n")),
    };
    let shape = shape_of(&fields);
    let code = param(&fields, "code");
    let satisfaction = match param(&fields, "satisfaction") {
        "basically" | "basically-satisfied" => Ok(Satisfaction::Basic),
        word => word.parse::<Satisfaction>(),
    };
    let satisfaction = match satisfaction {
        Ok(Satisfaction::NotEvaluated) | Err(_) => {
            return petitioner_answer(
                shape,
                StatusCode::BAD_REQUEST,
                "satisfaction must be satisfied, basic or dissatisfied.",
            )
        }
        Ok(satisfaction) => satisfaction,
    };
    let case = match public.lookup(ip, &case_id, code) {
        Lookup::Found { case, .. } => case,
        Lookup::Moved { .. } | Lookup::Elsewhere { .. } => {
            return petitioner_answer(
                shape,
                StatusCode::CONFLICT,
                "This case is held by another office: evaluate it on its status page there.",
            )
        }
        failed => return lookup_failed(shape, &failed),
    };
    let op = Operation::Act {
        case_id: case.id.clone(),
        command: CaseCommand::Evaluate { satisfaction },
        request_id: None,
        caller: PUBLIC_CALLER.to_string(),
    };
    match public.proposer.propose(&case.office, op).await {
        Ok(Applied::Case { .. }) => petitioner_answer(
            shape,
            StatusCode::OK,
            &format!(
                "Thank you: your evaluation ({}) of case {case_id} is recorded.",
                satisfaction.as_str()
            ),
        ),
        Ok(Applied::Rejected { message, .. }) => {
            petitioner_answer(shape, StatusCode::CONFLICT, &message)
        }
        Ok(_) | Err(_) => petitioner_answer(
            shape,
            StatusCode::SERVICE_UNAVAILABLE,
            "The office cannot answer now; try again later.",
        ),
    }
}

/// The TLS configuration of the public surface: the host's own certificate (reloaded with it),
/// no client certificate asked for, HTTP/1.1.
pub fn tls_config(live: &Arc<crate::live_tls::LiveTls>) -> anyhow::Result<rustls::ServerConfig> {
    let mut config = live.public_server_config()?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves the public surface on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    config: rustls::ServerConfig,
    public: Arc<Public>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let app = router(public);
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let (socket, peer): (_, SocketAddr) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "public surface: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "public surface: too many connections; connection closed");
            continue;
        };
        let (acceptor, app, mut stop) = (acceptor.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = tokio::time::timeout(
                Duration::from_millis(HEADER_READ_TIMEOUT_MS),
                acceptor.accept(socket),
            );
            let Ok(Ok(tls)) = handshake.await else {
                return;
            };
            let ip = ClientIp(peer.ip());
            let service =
                hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ip);
                    let app = app.clone();
                    async move {
                        let request = request.map(Body::new);
                        let mut response = tower::ServiceExt::oneshot(app, request).await?;
                        response
                            .headers_mut()
                            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS))
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            tokio::select! {
                _ = tokio::time::timeout(Duration::from_millis(CONNECTION_MAX_MS), connection) => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        });
    }
}

fn hotline_error(status: StatusCode, errors: Vec<String>) -> Response {
    json_response(status, json!({ "errors": errors }))
}

/// `POST /hotline/12345`: a hotline ticket, filed at the competent office once per ticket id
/// (within the 24-hour retry horizon); a ticket for an office another host carries is
/// redirected there (307: the platform posts the same body again).
async fn hotline_ticket(
    State(public): State<Arc<Public>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    body: Result<axum::Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let body = match body {
        Ok(axum::Json(body)) => body,
        Err(error) => return hotline_error(StatusCode::BAD_REQUEST, vec![error.body_text()]),
    };
    let now = public.now_ms();
    let key = format!("file:{ip}");
    {
        let mut filings = public.filings.lock().unwrap_or_else(|e| e.into_inner());
        if !filings.allows(&key, now) {
            return hotline_error(
                StatusCode::TOO_MANY_REQUESTS,
                vec!["too many requests from this address; try again later".into()],
            );
        }
        filings.count(&key, now);
    }
    let ticket = match hotline::ticket(&body) {
        Ok(ticket) => ticket,
        Err(errors) => return hotline_error(StatusCode::BAD_REQUEST, errors),
    };
    let offices: Vec<String> = public.directory.offices();
    let Some(competent) = hotline::competent_office(&offices, ticket.location.as_str()) else {
        return hotline_error(
            StatusCode::BAD_REQUEST,
            vec![format!(
                "location {} is outside this federation",
                ticket.location
            )],
        );
    };
    let office: OfficeCode = match competent.parse() {
        Ok(office) => office,
        Err(_) => return hotline_error(StatusCode::INTERNAL_SERVER_ERROR, vec![]),
    };
    if public.replicas.get(&office).is_none() {
        return match public.directory.public_url(competent) {
            Some(url) => (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, format!("{url}/hotline/12345"))],
            )
                .into_response(),
            None => hotline_error(
                StatusCode::SERVICE_UNAVAILABLE,
                vec![format!("office {competent} has no public address")],
            ),
        };
    }
    let request_id = format!("hotline-{}", ticket.ticket_id);
    let case_id = match file_at(&public, &office, ticket.registration, request_id).await {
        Ok(case_id) => case_id,
        Err(error) => {
            let status =
                StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return hotline_error(status, vec![error.description]);
        }
    };
    let code = public.code_of(&case_id).unwrap_or_default();
    json_response(
        StatusCode::OK,
        json!({
            "ticket_id": ticket.ticket_id,
            "case_id": case_id,
            "office": competent,
            "office_name": public.name_of(competent),
            "verification_code": code,
            "status_url": format!("{}/status/{case_id}?code={code}", public.url),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_of_one_filing_share_a_request_id() {
        let form = |summary: &str| {
            vec![
                ("service_code".to_string(), "land".to_string()),
                ("description".to_string(), summary.to_string()),
                ("api_key".to_string(), "k".to_string()),
            ]
        };
        let one = filing_request_id("530602001", &form("a"));
        assert_eq!(one, filing_request_id("530602001", &form("a ")));
        assert_ne!(one, filing_request_id("530602001", &form("b")));
        assert_ne!(one, filing_request_id("530602002", &form("a")));
        assert!(crate::machine::check_request_id(&one, PUBLIC_CALLER).is_none());
    }

    /// The Propose RPC (host to leader) takes the public surface's filings and evaluations, and
    /// still no officer's case work (that is forwarded with the officer's token).
    #[test]
    fn only_public_writes_are_proposed_through_another_replica() {
        let form: Vec<(String, String)> = [
            ("service_code", "land"),
            ("description", "x"),
            ("last_name", "张三"),
            ("attribute[id_number]", "530602198001010012"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let registration = open311::filing(&form).unwrap().registration;
        let file = |caller: &str| Operation::FileSealed {
            registration: Box::new(registration.clone()),
            petitioner_key: "k".into(),
            request_id: None,
            caller: caller.into(),
        };
        assert!(file(PUBLIC_CALLER).forwardable());
        assert!(!file("li").forwardable());
        let case_id: CaseId = "530602001-2026-000001".parse().unwrap();
        let act = |command: CaseCommand, caller: &str| Operation::Act {
            case_id: case_id.clone(),
            command,
            request_id: None,
            caller: caller.into(),
        };
        let evaluate = || CaseCommand::Evaluate {
            satisfaction: Satisfaction::Satisfied,
        };
        assert!(act(evaluate(), PUBLIC_CALLER).forwardable());
        assert!(!act(evaluate(), "li").forwardable());
        let accept = CaseCommand::Accept {
            officer: "li".into(),
        };
        assert!(!act(accept, PUBLIC_CALLER).forwardable());
    }
}

//! Helpers shared by the integration tests: offices, instants, a valid registration, and a tiny
//! driver that decides and applies like the node does.
#![allow(dead_code)]

use liandong_domain::*;

/// An instant written in RFC 3339 (tests only write valid ones).
pub fn t(text: &str) -> Millis {
    parse_rfc3339(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

pub fn days(n: i64) -> Millis {
    n * DAY_MS
}

pub fn office(code: &str) -> OfficeCode {
    code.parse()
        .unwrap_or_else(|error| panic!("{code}: {error}"))
}

pub const SECRET: &[u8] = b"federation secret";
/// A valid resident ID number (GB 11643 check digit 5).
pub const ID_NUMBER: &str = "530602199003071235";
/// Zhaotong city, Zhaoyang district, one of its townships, and a sibling district.
pub const CITY: &str = "5306";
pub const COUNTY: &str = "530602";
pub const TOWNSHIP: &str = "530602001";
pub const OTHER_COUNTY: &str = "530621";
/// Monday 2026-03-02, 09:00 China time.
pub const MONDAY: &str = "2026-03-02T09:00:00+08:00";

pub fn registration(channel: Channel) -> Registration {
    Registration {
        channel,
        petitioner_id: ID_NUMBER.into(),
        name: "张三".into(),
        phone: Some("+8613800138000".into()),
        category: "land".to_string(),
        summary: "Compensation for requisitioned land not paid.".to_string(),
        location: Some(office(TOWNSHIP)),
        officer: "Officer Li".to_string(),
        address: None,
    }
}

/// One office's view: its code and calendar, and the case it holds.
pub struct Desk {
    pub office: OfficeCode,
    pub calendar: Calendar,
}

impl Desk {
    pub fn new(code: &str) -> Desk {
        Desk {
            office: office(code),
            calendar: Calendar::china(),
        }
    }

    pub fn ctx(&self, now: Millis) -> Context<'_> {
        Context {
            office: &self.office,
            now,
            calendar: &self.calendar,
        }
    }

    pub fn register_kind(&self, now: Millis, seq: u32, kind: CaseKind) -> Case {
        let id = CaseId {
            office: self.office.clone(),
            year: 2026,
            seq,
        };
        let key = petitioner_key(SECRET, ID_NUMBER);
        register(id, registration(Channel::Visit), key, kind, &self.ctx(now))
            .unwrap_or_else(|error| panic!("register: {error}"))
    }

    pub fn register(&self, now: Millis) -> Case {
        self.register_kind(now, 123, CaseKind::Original)
    }

    /// Decides and, if allowed, applies: what the node does with an officer's command.
    pub fn act(
        &self,
        case: &mut Case,
        now: Millis,
        command: CaseCommand,
    ) -> Result<Vec<Event>, DomainError> {
        let events = decide(case, &command, &self.ctx(now))?;
        for event in &events {
            case.apply(event);
        }
        Ok(events)
    }

    /// Like `act`, for commands the test expects to succeed.
    pub fn ok(&self, case: &mut Case, now: Millis, command: CaseCommand) -> Vec<Event> {
        let name = command.name();
        self.act(case, now, command)
            .unwrap_or_else(|error| panic!("{name}: {error}"))
    }

    /// Ticks and applies.
    pub fn tick(&self, case: &mut Case, now: Millis) -> Vec<Event> {
        let events = tick(case, &self.ctx(now));
        for event in &events {
            case.apply(event);
        }
        events
    }

    /// The receiver's copy of a case in transit to this desk.
    pub fn receive(&self, sent: &Case, now: Millis) -> Case {
        let Status::InTransit { kind, .. } = &sent.status else {
            panic!("not in transit: {:?}", sent.status)
        };
        receive(sent, kind.clone(), &self.ctx(now))
            .unwrap_or_else(|error| panic!("receive: {error}"))
    }
}

pub fn accept() -> CaseCommand {
    CaseCommand::Accept {
        officer: "Officer Wang".to_string(),
    }
}

pub fn reply(opinion: Opinion) -> CaseCommand {
    CaseCommand::Reply {
        opinion,
        text: "Compensation will be paid by 30 June.".to_string(),
        officer: "Officer Wang".to_string(),
    }
}

pub fn transfer(to: &str) -> CaseCommand {
    CaseCommand::Transfer {
        to: office(to),
        officer: "Officer Li".to_string(),
    }
}

pub fn assign(to: &str, due_days: u32) -> CaseCommand {
    CaseCommand::Assign {
        to: office(to),
        due_days,
        officer: "Officer Li".to_string(),
    }
}

pub fn return_case() -> CaseCommand {
    CaseCommand::Return {
        reason: "The land lies in another county.".to_string(),
        officer: "Officer Zhao".to_string(),
    }
}

pub fn extend(days: u32, reason: &str) -> CaseCommand {
    CaseCommand::Extend {
        days,
        reason: reason.to_string(),
        officer: "Officer Wang".to_string(),
    }
}

pub fn evaluate(satisfaction: Satisfaction) -> CaseCommand {
    CaseCommand::Evaluate { satisfaction }
}

/// The kinds (event names) of a list of events.
pub fn names(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::name).collect()
}

/// Error code of a refused command.
pub fn code<T: std::fmt::Debug>(result: Result<T, DomainError>) -> &'static str {
    match result {
        Ok(value) => panic!("expected a refusal, got {value:?}"),
        Err(error) => error.code(),
    }
}

pub fn rfc(ms: Option<Millis>) -> Option<String> {
    ms.map(format_rfc3339)
}

/// An office's signing key, as the node holds it.
pub struct Key {
    pub office: OfficeCode,
    pub pair: ring::signature::Ed25519KeyPair,
}

impl Key {
    pub fn new(code: &str) -> Key {
        use ring::signature::Ed25519KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("a key");
        Key {
            office: office(code),
            pair: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key"),
        }
    }

    pub fn public(&self) -> Vec<u8> {
        use ring::signature::KeyPair;
        self.pair.public_key().as_ref().to_vec()
    }
}

impl EntrySigner for Key {
    fn office(&self) -> &OfficeCode {
        &self.office
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

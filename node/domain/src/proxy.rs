//! Proxy handling (代办): an office's intake points (one district centre 代办中心, street stations
//! 代办站, community points 代办点, each community point under a street station, each station
//! under the centre), the proxy agents (代办员) registered at them, and a case a proxy files for a
//! petitioner with the petitioner's recorded consent. Pure, like the rest of the engine.

use serde::{Deserialize, Serialize};

use crate::calendar::Millis;
use crate::department::{check_code, check_line, invalid, refuse, DeskError, DESK_VERSION};
use crate::ids::CaseId;

/// Intake points one office keeps at most (94 community points, 10 stations and a centre fit).
pub const INTAKE_POINTS_PER_OFFICE_MAX: usize = 512;
/// Proxy agents one office keeps at most.
pub const PROXIES_PER_OFFICE_MAX: usize = 2_048;
/// Longest intake point or agent name.
pub const NAME_CHARS_MAX: usize = 64;
/// Longest consent record (what the petitioner signed, and where the signed form is kept).
pub const CONSENT_CHARS_MAX: usize = 500;

/// The level of an intake point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    /// The district centre (区信访代办中心): no parent.
    Centre,
    /// A street station (街道代办站): under the centre, if there is one.
    Street,
    /// A community point (社区代办点): under a street station.
    Community,
}

impl PointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PointKind::Centre => "centre",
            PointKind::Street => "street",
            PointKind::Community => "community",
        }
    }

    pub fn parse(word: &str) -> Result<PointKind, DeskError> {
        match word.trim().to_ascii_lowercase().as_str() {
            "centre" | "center" => Ok(PointKind::Centre),
            "street" => Ok(PointKind::Street),
            "community" => Ok(PointKind::Community),
            _ => Err(invalid(
                "bad_kind",
                format!(
                    "intake point kind {:?}: centre, street or community",
                    crate::error::echo(word)
                ),
            )),
        }
    }

    /// The kind a parent of this kind must be (None: it has no parent).
    fn parent_kind(self) -> Option<PointKind> {
        match self {
            PointKind::Centre => None,
            PointKind::Street => Some(PointKind::Centre),
            PointKind::Community => Some(PointKind::Street),
        }
    }
}

/// An intake point of the office (`intake-point/<code>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakePoint {
    pub v: u16,
    pub code: String,
    pub name: String,
    pub kind: PointKind,
    pub parent: Option<String>,
    pub added_at: Millis,
}

/// A new intake point. A community point names its street station; a street station names the
/// centre or nothing (an office without a centre); a centre names nothing. A retried request
/// for the same point answers the point.
#[allow(clippy::too_many_arguments)]
pub fn add_point(
    existing: Option<&IntakePoint>,
    count: usize,
    code: &str,
    name: &str,
    kind: PointKind,
    parent: Option<&IntakePoint>,
    parent_code: Option<&str>,
    now: Millis,
) -> Result<IntakePoint, DeskError> {
    check_code("intake point", code)?;
    check_line("name", name, NAME_CHARS_MAX)?;
    let parent_code = parent_code.map(str::trim).filter(|p| !p.is_empty());
    if let Some(code) = parent_code {
        check_code("intake point", code)?;
    }
    let wanted = PointKind::parent_kind(kind);
    match (wanted, parent_code, parent) {
        (None, Some(_), _) => {
            return Err(invalid(
                "bad_parent",
                "the district centre has no parent point",
            ))
        }
        (Some(PointKind::Street), None, _) => {
            return Err(invalid(
                "bad_parent",
                "a community point belongs to a street station (`--parent STATION`)",
            ))
        }
        (Some(_), Some(code), None) => {
            return Err(refuse(
                "unknown_point",
                format!(
                    "no intake point {:?} at this office",
                    crate::error::echo(code)
                ),
            ))
        }
        (Some(want), Some(_), Some(parent)) if parent.kind != want => {
            return Err(invalid(
                "bad_parent",
                format!(
                    "a {} point's parent is a {} point; {} is a {} point",
                    kind.as_str(),
                    want.as_str(),
                    parent.code,
                    parent.kind.as_str()
                ),
            ))
        }
        _ => {}
    }
    let point = IntakePoint {
        v: DESK_VERSION,
        code: code.to_string(),
        name: name.to_string(),
        kind,
        parent: parent_code.map(str::to_string),
        added_at: now,
    };
    match existing {
        Some(old) if old.name == point.name && old.kind == kind && old.parent == point.parent => {
            Ok(old.clone())
        }
        Some(_) => Err(refuse(
            "point_exists",
            format!("intake point {code} exists already"),
        )),
        None if count >= INTAKE_POINTS_PER_OFFICE_MAX => Err(refuse(
            "too_many_points",
            format!("an office has at most {INTAKE_POINTS_PER_OFFICE_MAX} intake points"),
        )),
        None => Ok(point),
    }
}

/// A proxy agent (代办员) at an intake point (`proxy/<code>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyAgent {
    pub v: u16,
    pub code: String,
    pub name: String,
    pub point: String,
    /// The officer account the agent signs in with, if the agent has one.
    pub officer: Option<String>,
    pub added_at: Millis,
}

/// A new proxy agent at the existing intake point `point`.
#[allow(clippy::too_many_arguments)]
pub fn add_agent(
    existing: Option<&ProxyAgent>,
    count: usize,
    code: &str,
    name: &str,
    point: Option<&IntakePoint>,
    point_code: &str,
    officer: Option<&str>,
    now: Millis,
) -> Result<ProxyAgent, DeskError> {
    check_code("proxy", code)?;
    check_line("name", name, NAME_CHARS_MAX)?;
    check_code("intake point", point_code)?;
    let Some(point) = point else {
        return Err(refuse(
            "unknown_point",
            format!("no intake point {point_code} at this office"),
        ));
    };
    let officer = officer.map(str::trim).filter(|o| !o.is_empty());
    if let Some(officer) = officer {
        check_line("officer", officer, crate::validate::OFFICER_CHARS_MAX)?;
    }
    let agent = ProxyAgent {
        v: DESK_VERSION,
        code: code.to_string(),
        name: name.to_string(),
        point: point.code.clone(),
        officer: officer.map(str::to_string),
        added_at: now,
    };
    match existing {
        Some(old)
            if old.name == agent.name
                && old.point == agent.point
                && old.officer == agent.officer =>
        {
            Ok(old.clone())
        }
        Some(_) => Err(refuse(
            "proxy_exists",
            format!("proxy agent {code} exists already"),
        )),
        None if count >= PROXIES_PER_OFFICE_MAX => Err(refuse(
            "too_many_proxies",
            format!("an office has at most {PROXIES_PER_OFFICE_MAX} proxy agents"),
        )),
        None => Ok(agent),
    }
}

/// A case a proxy filed for a petitioner (`proxied/<case id>`): who, where, the chain of intake
/// points above (community → street → centre) that follows it, and the consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyFiling {
    pub v: u16,
    pub case_id: CaseId,
    pub agent: String,
    pub point: String,
    /// The agent's point first, then each parent up to the centre.
    pub chain: Vec<String>,
    /// The petitioner's recorded consent: what was signed and where the form is kept.
    pub consent: String,
    pub filed_at: Millis,
}

/// Whether `agent` may file with `consent`, and the chain of points the case is seen by
/// (`point_of` reads a point; the chain stops at a missing parent or after three levels).
pub fn check_filing(
    agent: Option<&ProxyAgent>,
    agent_code: &str,
    consent: &str,
    point_of: &dyn Fn(&str) -> Option<IntakePoint>,
) -> Result<Vec<String>, DeskError> {
    check_code("proxy", agent_code)?;
    let consent = consent.trim();
    if consent.is_empty() {
        return Err(invalid(
            "no_consent",
            "a proxy files only with the petitioner's recorded consent (`--consent \"signed \
             form, date, where it is kept\"`)",
        ));
    }
    check_line("consent", consent, CONSENT_CHARS_MAX)?;
    let Some(agent) = agent else {
        return Err(refuse(
            "unknown_proxy",
            format!(
                "no proxy agent {:?} at this office (`liandong proxy list`)",
                crate::error::echo(agent_code)
            ),
        ));
    };
    let mut chain = vec![agent.point.clone()];
    let mut at = point_of(&agent.point);
    while let Some(point) = at {
        let Some(parent) = point.parent else { break };
        if chain.len() >= 3 || chain.contains(&parent) {
            break;
        }
        chain.push(parent.clone());
        at = point_of(&parent);
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(code: &str) -> Option<IntakePoint> {
        let (kind, parent) = match code {
            "gongshu" => (PointKind::Centre, None),
            "mishixiang" => (PointKind::Street, Some("gongshu")),
            "daguan" => (PointKind::Community, Some("mishixiang")),
            _ => return None,
        };
        Some(IntakePoint {
            v: DESK_VERSION,
            code: code.into(),
            name: code.into(),
            kind,
            parent: parent.map(str::to_string),
            added_at: 0,
        })
    }

    #[test]
    fn a_community_point_belongs_to_a_street_station() {
        let centre = points("gongshu");
        let street = points("mishixiang");
        let add = |kind, parent: Option<&IntakePoint>, code: Option<&str>| {
            add_point(None, 0, "p1", "点", kind, parent, code, 0)
        };
        assert!(add(PointKind::Community, street.as_ref(), Some("mishixiang")).is_ok());
        assert_eq!(
            add(PointKind::Community, None, None).unwrap_err().code,
            "bad_parent"
        );
        assert_eq!(
            add(PointKind::Community, centre.as_ref(), Some("gongshu"))
                .unwrap_err()
                .code,
            "bad_parent"
        );
        assert_eq!(
            add(PointKind::Community, None, Some("nowhere"))
                .unwrap_err()
                .code,
            "unknown_point"
        );
        assert!(add(PointKind::Street, centre.as_ref(), Some("gongshu")).is_ok());
        assert!(add(PointKind::Centre, None, None).is_ok());
    }

    #[test]
    fn consent_is_required_and_the_chain_runs_up_to_the_centre() {
        let agent = add_agent(
            None,
            0,
            "wang",
            "王代办",
            points("daguan").as_ref(),
            "daguan",
            None,
            0,
        )
        .unwrap();
        assert_eq!(
            check_filing(Some(&agent), "wang", "  ", &points)
                .unwrap_err()
                .code,
            "no_consent"
        );
        assert_eq!(
            check_filing(None, "li", "signed", &points)
                .unwrap_err()
                .code,
            "unknown_proxy"
        );
        assert_eq!(
            check_filing(Some(&agent), "wang", "signed form 2026-12-06 #17", &points).unwrap(),
            ["daguan", "mishixiang", "gongshu"]
        );
    }
}

//! China's administrative divisions (province → city → county → township) and the federation
//! manifest built from a region of them (`liandong federation init`).
//!
//! The data is the four CSV files under `ops/data/topology/` (see its README for the source and
//! licence), compiled into the binary with `include_str!` so `init` works offline and every build
//! sees the same codes.
//!
//! Quirks of the data this module copes with: the municipalities (Beijing 11, Tianjin 12, Shanghai
//! 31, Chongqing 50) have city rows named "市辖区" (or "县"); their names are kept as in the data,
//! the code tells them apart. A county may have no townships; it is then a leaf office.

use std::collections::HashMap;

use liandong_node::manifest::{
    HostEntry, Manifest, ManifestError, Member, OfficeEntry, MANIFEST_VERSION,
};

const PROVINCES_CSV: &str = include_str!("../data/topology/provinces.csv");
const CITIES_CSV: &str = include_str!("../data/topology/cities.csv");
const AREAS_CSV: &str = include_str!("../data/topology/areas.csv");
const STREETS_CSV: &str = include_str!("../data/topology/streets.csv");

/// The level of an administrative division (and of its office).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Province,
    City,
    County,
    Township,
}

impl Level {
    /// The level's name as written in the manifest (`"Province"`, `"City"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Province => "Province",
            Level::City => "City",
            Level::County => "County",
            Level::Township => "Township",
        }
    }

    /// The level of a division code, from its length (2, 4, 6 or 9 digits); `None` for anything
    /// else, including codes with non-digits.
    pub fn of_code(code: &str) -> Option<Level> {
        if code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match code.len() {
            2 => Some(Level::Province),
            4 => Some(Level::City),
            6 => Some(Level::County),
            9 => Some(Level::Township),
            _ => None,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One administrative division.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Division {
    /// Official statistical division code.
    pub code: String,
    /// Official name.
    pub name: String,
    /// Level, implied by the code's length.
    pub level: Level,
    /// The code of the division one level up; `None` for a province.
    pub parent: Option<String>,
}

/// Everything that can go wrong parsing topology data or building a manifest from it.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A row of the CSV data is malformed or inconsistent (only possible with data other than the
    /// embedded files, which the tests check).
    #[error("topology data {file} line {line}: {message}")]
    Data {
        file: &'static str,
        line: usize,
        message: String,
    },
    /// The region code is not in the topology data.
    #[error("unknown region {0:?}: expected a province (2 digits, e.g. 53), city (4 digits, e.g. 5306) or county (6 digits, e.g. 530602) code")]
    UnknownRegion(String),
    /// The region is a township: a federation needs at least a county at its root.
    #[error("region {0} is a township; choose a province, city or county code")]
    TownshipRegion(String),
    /// Replica count other than 1, 3 or 5.
    #[error("replicas must be 1, 3 or 5, not {0}")]
    Replicas(u8),
    /// Time scale not a positive finite number.
    #[error("time scale must be a positive number, not {0}")]
    TimeScale(f64),
    /// The hosts need more ports than fit between the base port and 65535.
    #[error("{hosts} hosts need 4 ports each from base port {base_port}, past 65535; choose a lower base port or fewer offices")]
    Ports { base_port: u16, hosts: usize },
    /// The base port is 0 (which would mean "any free port" and cannot be written to the
    /// manifest).
    #[error("base port must be between 1 and 65535")]
    ZeroBasePort,
    /// The built manifest failed validation (e.g. a malformed secret).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// All divisions with parent/child links. Children are kept in code order.
#[derive(Clone, Debug)]
pub struct Topology {
    divisions: HashMap<String, Division>,
    children: HashMap<String, Vec<String>>,
    provinces: Vec<String>,
}

/// The embedded topology; see [`Topology::load`].
pub fn load() -> Topology {
    Topology::load()
}

impl Topology {
    /// Parses the topology embedded in the binary.
    ///
    /// This cannot fail on user input: the data is fixed at compile time and the unit tests parse
    /// it, so a parse error here would be a build defect. Hence the `expect`, which never fires in
    /// a tested build.
    pub fn load() -> Topology {
        Topology::parse(PROVINCES_CSV, CITIES_CSV, AREAS_CSV, STREETS_CSV)
            .expect("embedded topology data is checked by the unit tests")
    }

    /// Parses the four CSV files (with their header rows) into a topology, checking that every
    /// code has the right length, is unique, and starts with its parent's code, and that every
    /// parent exists.
    pub fn parse(
        provinces: &str,
        cities: &str,
        areas: &str,
        streets: &str,
    ) -> Result<Topology, TopologyError> {
        let mut t = Topology {
            divisions: HashMap::new(),
            children: HashMap::new(),
            provinces: Vec::new(),
        };
        // (file name, text, header, level, column holding the parent code)
        let files: [(&'static str, &str, &str, Level, Option<usize>); 4] = [
            (
                "provinces.csv",
                provinces,
                "code,name",
                Level::Province,
                None,
            ),
            (
                "cities.csv",
                cities,
                "code,name,provinceCode",
                Level::City,
                Some(2),
            ),
            (
                "areas.csv",
                areas,
                "code,name,cityCode,provinceCode",
                Level::County,
                Some(2),
            ),
            (
                "streets.csv",
                streets,
                "code,name,areaCode,provinceCode,cityCode",
                Level::Township,
                Some(2),
            ),
        ];
        for (file, text, header, level, parent_col) in files {
            let mut lines = text.lines().enumerate();
            let err = |line: usize, message: String| TopologyError::Data {
                file,
                line: line + 1,
                message,
            };
            match lines.next() {
                Some((_, h)) if h.trim_end_matches('\r') == header => {}
                _ => return Err(err(0, format!("expected header {header:?}"))),
            }
            for (n, raw) in lines {
                let line = raw.trim_end_matches('\r');
                if line.trim().is_empty() {
                    continue;
                }
                let fields = split_csv(line).map_err(|m| err(n, m))?;
                let want = header.split(',').count();
                if fields.len() != want {
                    return Err(err(n, format!("{} fields, expected {want}", fields.len())));
                }
                let code = fields[0].trim().to_string();
                let name = fields[1].trim().to_string();
                if Level::of_code(&code) != Some(level) {
                    return Err(err(n, format!("{code:?} is not a {level} code")));
                }
                if name.is_empty() {
                    return Err(err(n, format!("{code} has an empty name")));
                }
                let parent = match parent_col {
                    None => None,
                    Some(col) => {
                        let p = fields[col].trim().to_string();
                        if !t.divisions.contains_key(&p) {
                            return Err(err(n, format!("{code}: parent {p} is unknown")));
                        }
                        if !code.starts_with(&p) {
                            return Err(err(n, format!("{code} does not start with parent {p}")));
                        }
                        Some(p)
                    }
                };
                if t.divisions.contains_key(&code) {
                    return Err(err(n, format!("{code} is listed twice")));
                }
                match &parent {
                    Some(p) => t.children.entry(p.clone()).or_default().push(code.clone()),
                    None => t.provinces.push(code.clone()),
                }
                t.divisions.insert(
                    code.clone(),
                    Division {
                        code,
                        name,
                        level,
                        parent,
                    },
                );
            }
        }
        for kids in t.children.values_mut() {
            kids.sort();
        }
        t.provinces.sort();
        Ok(t)
    }

    /// The division with this code.
    pub fn get(&self, code: &str) -> Option<&Division> {
        self.divisions.get(code)
    }

    /// The direct children of `code` in code order: a province's cities, a city's counties, a
    /// county's townships. Empty for a township or an unknown code.
    pub fn children<'a>(&'a self, code: &str) -> impl Iterator<Item = &'a Division> + 'a {
        self.children
            .get(code)
            .into_iter()
            .flatten()
            .filter_map(|c| self.divisions.get(c))
    }

    /// All provinces in code order.
    pub fn provinces(&self) -> impl Iterator<Item = &Division> + '_ {
        self.provinces.iter().filter_map(|c| self.divisions.get(c))
    }

    /// Number of divisions at all levels.
    pub fn len(&self) -> usize {
        self.divisions.len()
    }

    /// Whether there are no divisions at all.
    pub fn is_empty(&self) -> bool {
        self.divisions.is_empty()
    }
}

/// Splits one CSV line into fields. Fields may be quoted (`"name"`), with `""` for a literal quote
/// inside quotes. Lines are single-line records (the data has no embedded newlines).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                    // After a closing quote only a separator (or the end) may follow.
                    match chars.peek() {
                        None | Some(',') => {}
                        Some(other) => {
                            return Err(format!("unexpected {other:?} after a closing quote"))
                        }
                    }
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut cur));
                at_field_start = true;
                continue;
            }
            '"' if at_field_start => quoted = true,
            '"' => return Err("a quote inside an unquoted field".into()),
            _ => cur.push(c),
        }
        at_field_start = false;
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// The choices of `liandong federation init`.
#[derive(Clone, Debug, PartialEq)]
pub struct InitOptions {
    /// Division code of the root office: a province (2 digits), city (4) or county (6).
    pub region: String,
    /// Keep only the first N children (in code order) of every office; `None` keeps all.
    pub max_children: Option<usize>,
    /// Replicas per office: 1, 3 or 5.
    pub replicas: u8,
    /// Deadline clock speed-up (1.0 = real time).
    pub time_scale: f64,
    /// First port; each host takes three consecutive ports (raft, api, metrics).
    pub base_port: u16,
    /// Federation HMAC secret, 32 bytes as 64 hex digits.
    pub secret_hex: String,
}

/// Builds the manifest for a region.
///
/// Offices: the region's division, then its descendants depth-first in code order (so each
/// office comes after its parent and a county's townships follow it), each level cut to the
/// first `max_children` children.
///
/// Hosts: every office that is not a township gets its own `replicas` hosts `h<code>-<i>`; a
/// township's replica `i` lives on host `h<county>-<i>` of its county. So a federation of a city
/// with k counties runs `replicas × (1 + k)` processes whatever its township count, and losing
/// one host costs every office on it at most one replica. Member ids are `1..=replicas`, member
/// `i` on host `i`.
///
/// Ports: host number k (in host order, from 0) listens on `base_port + 3k` (raft), `+1` (api)
/// and `+2` (metrics), all on 127.0.0.1.
///
/// `clock_origin_ms` is left at 0 for the caller to stamp. The result has passed
/// [`Manifest::validate`].
pub fn build_manifest(topology: &Topology, opts: &InitOptions) -> Result<Manifest, TopologyError> {
    if !matches!(opts.replicas, 1 | 3 | 5) {
        return Err(TopologyError::Replicas(opts.replicas));
    }
    if !(opts.time_scale.is_finite() && opts.time_scale > 0.0) {
        return Err(TopologyError::TimeScale(opts.time_scale));
    }
    if opts.base_port == 0 {
        return Err(TopologyError::ZeroBasePort);
    }
    let region = opts.region.trim();
    let root = topology
        .get(region)
        .ok_or_else(|| TopologyError::UnknownRegion(opts.region.clone()))?;
    if root.level == Level::Township {
        return Err(TopologyError::TownshipRegion(root.code.clone()));
    }

    // Offices, depth-first pre-order; an explicit stack so depth never matters.
    let limit = opts.max_children.unwrap_or(usize::MAX);
    let mut chosen: Vec<&Division> = Vec::new();
    let mut stack: Vec<&Division> = vec![root];
    while let Some(d) = stack.pop() {
        chosen.push(d);
        let kids: Vec<&Division> = topology.children(&d.code).take(limit).collect();
        stack.extend(kids.into_iter().rev());
    }

    let replicas = u64::from(opts.replicas);
    let host_name = |code: &str, i: u64| format!("h{code}-{i}");
    let mut offices = Vec::with_capacity(chosen.len());
    let mut hosts: Vec<HostEntry> = Vec::new();
    let mut host_index: HashMap<String, usize> = HashMap::new();
    for d in chosen {
        // The office whose hosts carry this one: a township rides on its county's hosts.
        let carrier = match (&d.parent, d.level) {
            (Some(p), Level::Township) => p.as_str(),
            _ => d.code.as_str(),
        };
        let mut members = Vec::with_capacity(usize::from(opts.replicas));
        for i in 1..=replicas {
            let name = host_name(carrier, i);
            let idx = *host_index.entry(name.clone()).or_insert_with(|| {
                hosts.push(HostEntry {
                    name: name.clone(),
                    raft_addr: String::new(),
                    api_addr: String::new(),
                    metrics_addr: String::new(),
                    http_addr: None,
                    offices: Vec::new(),
                    site: None,
                });
                hosts.len() - 1
            });
            hosts[idx].offices.push(d.code.clone());
            members.push(Member { id: i, host: name });
        }
        offices.push(OfficeEntry {
            code: d.code.clone(),
            name: d.name.clone(),
            level: d.level.as_str().to_string(),
            parent: if d.code == root.code {
                None
            } else {
                d.parent.clone()
            },
            members,
        });
    }

    // Three ports a host from the base port, then every host's public HTTPS port after them
    // (so the first three keep the places they had before the public surface).
    let count = u32::try_from(hosts.len()).unwrap_or(u32::MAX / 5);
    let last = u32::from(opts.base_port) + 4 * count;
    if last - 1 > u32::from(u16::MAX) {
        return Err(TopologyError::Ports {
            base_port: opts.base_port,
            hosts: hosts.len(),
        });
    }
    for (k, h) in hosts.iter_mut().enumerate() {
        let port = u32::from(opts.base_port) + 3 * k as u32;
        h.raft_addr = format!("127.0.0.1:{port}");
        h.api_addr = format!("127.0.0.1:{}", port + 1);
        h.metrics_addr = format!("127.0.0.1:{}", port + 2);
        h.http_addr = Some(format!(
            "127.0.0.1:{}",
            u32::from(opts.base_port) + 3 * count + k as u32
        ));
    }

    let manifest = Manifest {
        version: MANIFEST_VERSION,
        region: root.code.clone(),
        replicas: opts.replicas,
        time_scale: opts.time_scale,
        // The caller (`federation init`) stamps the wall time when it creates the federation;
        // building stays a pure function of the topology and the options.
        clock_origin_ms: 0,
        secret_hex: opts.secret_hex.clone(),
        sms_gateway: None,
        hotline_callback: None,
        offices,
        hosts,
        generation: 0,
    };
    manifest.validate()?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn topo() -> &'static Topology {
        static T: OnceLock<Topology> = OnceLock::new();
        T.get_or_init(Topology::load)
    }

    fn opts(region: &str, max_children: Option<usize>, replicas: u8) -> InitOptions {
        InitOptions {
            region: region.into(),
            max_children,
            replicas,
            time_scale: 1.0,
            base_port: 20000,
            secret_hex: "5a".repeat(32),
        }
    }

    fn build(region: &str, max_children: Option<usize>, replicas: u8) -> Manifest {
        build_manifest(topo(), &opts(region, max_children, replicas)).unwrap()
    }

    #[test]
    fn embedded_data_parses_with_expected_counts() {
        let t = topo();
        assert_eq!(t.provinces().count(), 31);
        assert_eq!(t.len(), 31 + 342 + 2978 + 41352);
        let zt = t.get("5306").unwrap();
        assert_eq!(zt.level, Level::City);
        assert_eq!(zt.name, "昭通市");
        assert_eq!(zt.parent.as_deref(), Some("53"));
        assert_eq!(t.children("5306").count(), 11);
        assert_eq!(t.children("530602").next().unwrap().code, "530602001");
        assert_eq!(t.children("530602001").count(), 0);
        assert_eq!(t.children("nope").count(), 0);
        // Children come in code order.
        let codes: Vec<_> = t.children("53").map(|d| d.code.clone()).collect();
        let mut sorted = codes.clone();
        sorted.sort();
        assert_eq!(codes, sorted);
    }

    #[test]
    fn csv_quoting_and_bad_rows() {
        assert_eq!(split_csv(r#"1,"a,b",c"#).unwrap(), ["1", "a,b", "c"]);
        assert_eq!(split_csv(r#""say ""hi""","#).unwrap(), [r#"say "hi""#, ""]);
        assert!(split_csv(r#"1,"open"#).is_err());
        assert!(split_csv(r#"1,"a"b"#).is_err());
        assert!(split_csv(r#"1,a"b"#).is_err());

        let p = "code,name\n53,\"云南省\"\n";
        let c = "code,name,provinceCode\n5306,\"昭通市\",53\n";
        let a = "code,name,cityCode,provinceCode\n530602,\"昭阳区\",5306,53\n";
        let s = "code,name,areaCode,provinceCode,cityCode\n";
        let t = Topology::parse(p, c, a, s).unwrap();
        assert_eq!(t.len(), 3);
        // A county without townships is a leaf office.
        let m = build_manifest(&t, &opts("530602", None, 1)).unwrap();
        assert_eq!(m.offices.len(), 1);

        let bad_parent = "code,name,cityCode,provinceCode\n530602,\"昭阳区\",5307,53\n";
        let e = Topology::parse(p, c, bad_parent, s).unwrap_err();
        assert!(e.to_string().contains("areas.csv line 2"), "{e}");
        let bad_header = "id,name\n53,x\n";
        assert!(Topology::parse(bad_header, c, a, s).is_err());
        let bad_code = "code,name\n5x,\"云南省\"\n";
        assert!(Topology::parse(bad_code, c, a, s).is_err());
    }

    #[test]
    fn max_children_zero_is_just_the_root() {
        let m = build("5306", Some(0), 3);
        assert_eq!(m.offices.len(), 1);
        assert_eq!(m.hosts.len(), 3);
        let root = &m.offices[0];
        assert_eq!((root.code.as_str(), root.level.as_str()), ("5306", "City"));
        assert_eq!(root.parent, None);
        let names: Vec<_> = m.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["h5306-1", "h5306-2", "h5306-3"]);
        assert_eq!(m.hosts[0].raft_addr, "127.0.0.1:20000");
        assert_eq!(m.hosts[0].api_addr, "127.0.0.1:20001");
        assert_eq!(m.hosts[0].metrics_addr, "127.0.0.1:20002");
        assert_eq!(m.hosts[2].metrics_addr, "127.0.0.1:20008");
    }

    #[test]
    fn max_children_two_layout() {
        let m = build("5306", Some(2), 3);
        m.validate().unwrap();
        let codes: Vec<_> = m.offices.iter().map(|o| o.code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "5306",
                "530602",
                "530602001",
                "530602002",
                "530621",
                "530621001",
                "530621002"
            ]
        );
        assert_eq!(m.hosts.len(), 9);
        let county = m.host("h530602-2").unwrap();
        assert_eq!(county.offices, ["530602", "530602001", "530602002"]);
        assert_eq!(m.member_host("530602002", 2).unwrap().name, "h530602-2");
        assert_eq!(m.member_host("530621002", 3).unwrap().name, "h530621-3");
        assert_eq!(m.office("530602001").unwrap().level, "Township");
        assert_eq!(m.office("530602001").unwrap().name, "凤凰街道");
        assert_eq!(
            m.office("530602001").unwrap().parent.as_deref(),
            Some("530602")
        );
        let kids: Vec<_> = m.children("5306").map(|o| o.code.as_str()).collect();
        assert_eq!(kids, ["530602", "530621"]);
        // Ports are consecutive in host order.
        assert_eq!(m.hosts[8].metrics_addr, "127.0.0.1:20026");
    }

    #[test]
    fn full_regions_have_the_documented_office_counts() {
        for (region, offices, top_hosts) in [
            ("5306", 162, 1 + 11),
            ("5133", 308, 1 + 18),
            ("53", 1_607, 1 + 16 + 129),
        ] {
            let m = build(region, None, 3);
            assert_eq!(m.offices.len(), offices, "{region}");
            assert_eq!(m.hosts.len(), 3 * top_hosts, "{region}");
            assert_eq!(m.offices[0].code, region);
            // Parent before child, every office once.
            let mut seen = std::collections::HashSet::new();
            for o in &m.offices {
                if let Some(p) = &o.parent {
                    assert!(seen.contains(p.as_str()), "{} before {p}", o.code);
                }
                assert!(seen.insert(o.code.as_str()));
            }
        }
        let m = build("53", None, 1);
        assert_eq!(m.offices[0].level, "Province");
        assert_eq!(m.offices[0].name, "云南省");
        assert_eq!(m.hosts.len(), 146);
    }

    #[test]
    fn county_region_and_five_replicas() {
        let m = build("530602", None, 5);
        assert_eq!(m.offices[0].level, "County");
        assert_eq!(m.offices[0].parent, None);
        assert_eq!(m.offices.len(), 1 + topo().children("530602").count());
        assert_eq!(m.hosts.len(), 5);
        assert!(m.hosts.iter().all(|h| h.offices.len() == m.offices.len()));
    }

    #[test]
    fn municipalities() {
        let m = build("11", None, 3);
        assert_eq!(m.offices.len(), 367);
        assert_eq!(m.office("1101").unwrap().name, "市辖区");
        assert_eq!(m.office("1101").unwrap().parent.as_deref(), Some("11"));

        // Chongqing has two city-level rows, "市辖区" and "县".
        let m = build("50", Some(2), 1);
        let codes: Vec<_> = m.offices.iter().map(|o| o.code.as_str()).collect();
        assert_eq!(codes[..3], ["50", "5001", "500101"]);
        assert_eq!(m.office("5002").unwrap().name, "县");
        assert_eq!(m.offices.len(), 1 + 2 + 4 + 8);
        assert_eq!(build("50", None, 1).offices.len(), 1_072);
    }

    #[test]
    fn bad_options_are_refused() {
        let t = topo();
        for region in ["99", "5399", "", "abc", "5306021", "530602999"] {
            let e = build_manifest(t, &opts(region, None, 3)).unwrap_err();
            assert!(
                matches!(e, TopologyError::UnknownRegion(_)),
                "{region}: {e}"
            );
            assert!(e.to_string().contains("unknown region"));
        }
        let e = build_manifest(t, &opts("530602001", None, 3)).unwrap_err();
        assert!(matches!(e, TopologyError::TownshipRegion(_)), "{e}");

        for r in [0, 2, 4, 7] {
            let e = build_manifest(t, &opts("5306", Some(1), r)).unwrap_err();
            assert!(matches!(e, TopologyError::Replicas(_)), "{e}");
            assert!(e.to_string().contains("1, 3 or 5"));
        }

        let mut o = opts("5306", Some(0), 3);
        o.time_scale = 0.0;
        assert!(matches!(
            build_manifest(t, &o),
            Err(TopologyError::TimeScale(_))
        ));
        o.time_scale = f64::NAN;
        assert!(build_manifest(t, &o).is_err());

        let mut o = opts("5306", Some(0), 3);
        o.secret_hex = "not hex".into();
        let e = build_manifest(t, &o).unwrap_err();
        assert!(e.to_string().contains("secret_hex"), "{e}");
    }

    #[test]
    fn base_port_overflow_is_refused() {
        let t = topo();
        // 3 hosts need 12 ports: base .. base+11, the public ones last.
        let mut o = opts("5306", Some(0), 3);
        o.base_port = 65535 - 11;
        let m = build_manifest(t, &o).unwrap();
        assert_eq!(m.hosts[2].metrics_addr, "127.0.0.1:65532");
        assert_eq!(m.hosts[2].http_addr.as_deref(), Some("127.0.0.1:65535"));
        o.base_port = 65535 - 10;
        let e = build_manifest(t, &o).unwrap_err();
        assert!(matches!(e, TopologyError::Ports { hosts: 3, .. }), "{e}");
        o.base_port = 0;
        assert!(matches!(
            build_manifest(t, &o),
            Err(TopologyError::ZeroBasePort)
        ));
        // Yunnan with 5 replicas: 730 hosts, 2,190 ports; too many from 64000.
        let mut o = opts("53", None, 5);
        o.base_port = 64000;
        assert!(matches!(
            build_manifest(t, &o),
            Err(TopologyError::Ports { .. })
        ));
    }

    #[test]
    fn manifest_validates_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        for (region, max) in [("5306", Some(2)), ("5306", None), ("53", None)] {
            let m = build(region, max, 3);
            m.validate().unwrap();
            let path = dir.path().join(format!("{region}.json"));
            m.save(&path).unwrap();
            assert_eq!(Manifest::load(&path).unwrap(), m);
        }
    }
}

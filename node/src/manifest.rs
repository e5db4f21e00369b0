//! The federation manifest: which offices exist, how they nest, which hosts carry their replicas,
//! and where those hosts listen; plus the small per-host TOML config given to `liandong-node
//! --config`.
//!
//! This module is pure data with load/save and validation. It does no networking and touches no
//! database, so both the node and the `liandong` command line can use it.
//!
//! The manifest is written once by `liandong federation init` and read by every host at start-up.
//! It is JSON (easy to inspect and diff); the host config is TOML (easy to hand-edit).
//! Both are saved atomically (temporary file, fsync, rename) so a crash mid-write never leaves a
//! half-written file where a host would read it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The only manifest format version this build understands. A manifest with another version is
/// refused at load rather than half-understood.
pub const MANIFEST_VERSION: u32 = 1;

/// Office level names, from the top down. A child office is always exactly one level below its
/// parent.
pub const LEVELS: [&str; 4] = ["Province", "City", "County", "Township"];

/// The division-code length of each level in [`LEVELS`] (2, 4, 6 and 9 digits).
pub const CODE_LENGTHS: [usize; 4] = [2, 4, 6, 9];

/// The number of random bytes in the federation HMAC secret.
pub const SECRET_BYTES: usize = 32;

/// Rank of a level name in [`LEVELS`] (0 = Province … 3 = Township), or `None` if unknown.
pub fn level_rank(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

/// Everything that can go wrong reading, writing or checking a manifest or host config.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not well-formed JSON/TOML of the expected shape.
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// The manifest was written by a different (newer or older) format version.
    #[error("unsupported manifest version {0} (this build reads version {MANIFEST_VERSION})")]
    UnsupportedVersion(u32),
    /// The content parsed but is inconsistent (a dangling host, a duplicate id, a bad address…).
    #[error("invalid manifest: {0}")]
    Invalid(String),
}

/// The whole federation: offices, their replica placement and the hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version; always [`MANIFEST_VERSION`] for manifests this build writes.
    pub version: u32,
    /// The division code of the root office (`53`, `5306`, `530602`…).
    pub region: String,
    /// Replicas per office: 1, 3 or 5.
    pub replicas: u8,
    /// How many times faster than real time the deadline clocks run (1.0 = real time).
    pub time_scale: f64,
    /// Wall time (Unix ms) from which a scaled clock runs faster: the federation's creation.
    #[serde(default)]
    pub clock_origin_ms: i64,
    /// The federation HMAC secret (petitioner keys), [`SECRET_BYTES`] random bytes as hex: only
    /// in manifests of federations made before the secret moved to its own 0600 file
    /// (`secrets/petitioner.key`, [`crate::secrets`]); empty (and not written) otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret_hex: String,
    /// Every office, parent before child, root first.
    pub offices: Vec<OfficeEntry>,
    /// Every host process.
    pub hosts: Vec<HostEntry>,
    /// Where the offices' SMS to petitioners go: `file:PATH` or `webhook:URL`
    /// ([`crate::notify::GatewaySpec`]); absent: none, the notices wait in each office's
    /// notification outbox (bounded) until a gateway is set. Absent from older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_gateway: Option<String>,
    /// Where the results of cases the 12345 hotline handed over are posted back: `file:PATH` or
    /// `webhook:URL`, as for SMS; absent: the callbacks wait in the offices' notification outboxes.
    /// Absent from older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotline_callback: Option<String>,
    /// The manifest's generation: 0 for a federation made in one go; `liandong federation
    /// add-office` writes each new manifest with a greater one, and a host takes a manifest only
    /// from a greater generation ([`Manifest::check_successor`]). Absent (0) in older manifests.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One office (an administrative unit with its own Raft group).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OfficeEntry {
    /// Division code: the office's id everywhere.
    pub code: String,
    /// Official name (from the topology data).
    pub name: String,
    /// `"Province"`, `"City"`, `"County"` or `"Township"`.
    pub level: String,
    /// The parent office's code; `None` only for the region root.
    pub parent: Option<String>,
    /// The office's Raft group members.
    pub members: Vec<Member>,
}

/// One replica of an office.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The openraft node id inside this office, `1..=replicas`.
    pub id: u64,
    /// The name of the host carrying this replica.
    pub host: String,
}

/// One `liandong-node` process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostEntry {
    /// Host name, e.g. `h5306-1`.
    pub name: String,
    /// Raft transport listen address, `"127.0.0.1:PORT"`.
    pub raft_addr: String,
    /// Client and federation API listen address.
    pub api_addr: String,
    /// Prometheus-style metrics listen address.
    pub metrics_addr: String,
    /// The public HTTPS surface's listen address (Open311, the petitioner's status page); None
    /// in manifests made before it existed: such a host serves no public surface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
    /// Codes of the offices this host carries a replica of.
    pub offices: Vec<String>,
    /// The site (machine room, county data centre) the host runs at, from the inventory of a
    /// federation made with `federation init --inventory`; None for one made on one machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

/// The per-host TOML file given to `liandong-node --config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostConfig {
    /// This host's name in the manifest.
    pub host: String,
    /// Path of the federation manifest (JSON).
    pub manifest: PathBuf,
    /// Where this host keeps its data (RocksDB).
    pub data_dir: PathBuf,
    /// Where this host writes its logs.
    pub log_dir: PathBuf,
    /// A `tracing` filter, e.g. `"info"` or `"liandong_node=debug,info"`.
    pub log_level: String,
}

impl OfficeEntry {
    /// The member with openraft node id `id`, if any.
    pub fn member(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
}

impl Manifest {
    /// Reads and validates a manifest (JSON).
    ///
    /// The version is checked before the rest of the document is interpreted, so a manifest from
    /// another format version gets [`ManifestError::UnsupportedVersion`] rather than a confusing
    /// field error. The result has passed [`Manifest::validate`], so a host never starts from an
    /// inconsistent manifest.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = read(path)?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| parse(path, e))?;
        let version = match value.get("version") {
            None => return Err(parse(path, "missing field `version`")),
            Some(v) => match v.as_u64() {
                Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
                None => return Err(parse(path, "field `version` is not a whole number")),
            },
        };
        if version != MANIFEST_VERSION {
            return Err(ManifestError::UnsupportedVersion(version));
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| parse(path, e))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The SMS gateway, if one is set.
    pub fn sms_gateway_spec(&self) -> Result<Option<crate::notify::GatewaySpec>, String> {
        self.sms_gateway
            .as_deref()
            .map(crate::notify::GatewaySpec::parse)
            .transpose()
    }

    /// The hotline callback, if one is set.
    pub fn hotline_callback_spec(&self) -> Result<Option<crate::notify::GatewaySpec>, String> {
        self.hotline_callback
            .as_deref()
            .map(crate::notify::GatewaySpec::parse)
            .transpose()
    }

    /// Writes the manifest as pretty JSON, atomically (temporary file in the same folder, fsync,
    /// rename), so readers see either the old or the new manifest, never a torn one.
    pub fn save(&self, path: &Path) -> Result<(), ManifestError> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| ManifestError::Invalid(format!("cannot serialise manifest: {e}")))?;
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }

    /// Checks that the manifest is self-consistent:
    /// - the version is [`MANIFEST_VERSION`], replicas is 1, 3 or 5, the time scale is a positive
    ///   finite number, the clock origin is not negative and the secret, if any, is
    ///   [`SECRET_BYTES`] bytes of hex;
    /// - office codes are unique digit strings whose length fits their level; exactly one office
    ///   (the first, whose code is `region`) has no parent; every other office's parent is listed
    ///   earlier and is exactly one level up;
    /// - every office has exactly `replicas` members with ids `1..=replicas`, on distinct hosts
    ///   that exist and list the office;
    /// - host names are unique, every address parses as a socket address and no two listeners
    ///   share one, and every office a host lists exists and has a member on that host.
    ///
    /// The first problem found is reported.
    pub fn validate(&self) -> Result<(), ManifestError> {
        fn bad(msg: String) -> Result<(), ManifestError> {
            Err(ManifestError::Invalid(msg))
        }
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::UnsupportedVersion(self.version));
        }
        if !matches!(self.replicas, 1 | 3 | 5) {
            return bad(format!("replicas is {}, must be 1, 3 or 5", self.replicas));
        }
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return bad(format!(
                "time_scale is {}, must be a positive number",
                self.time_scale
            ));
        }
        if self.clock_origin_ms < 0 {
            return bad(format!(
                "clock_origin_ms is {}, must not be negative",
                self.clock_origin_ms
            ));
        }
        if !self.secret_hex.is_empty()
            && (self.secret_hex.len() != SECRET_BYTES * 2
                || !self.secret_hex.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return bad(format!(
                "secret_hex must be {} hex digits ({SECRET_BYTES} bytes)",
                SECRET_BYTES * 2
            ));
        }

        if let Err(error) = self.sms_gateway_spec() {
            return bad(format!("sms_gateway: {error}"));
        }
        if let Err(error) = self.hotline_callback_spec() {
            return bad(format!("hotline_callback: {error}"));
        }

        // Hosts: unique names, parseable and distinct addresses.
        let mut hosts: HashMap<&str, &HostEntry> = HashMap::new();
        let mut addrs: HashMap<SocketAddr, String> = HashMap::new();
        for h in &self.hosts {
            if h.name.is_empty() {
                return bad("a host has an empty name".into());
            }
            if hosts.insert(&h.name, h).is_some() {
                return bad(format!("host {} is listed twice", h.name));
            }
            let listeners = [
                ("raft_addr", Some(&h.raft_addr)),
                ("api_addr", Some(&h.api_addr)),
                ("metrics_addr", Some(&h.metrics_addr)),
                ("http_addr", h.http_addr.as_ref()),
            ];
            for (what, addr) in listeners
                .into_iter()
                .filter_map(|(what, addr)| Some((what, addr?)))
            {
                let sa: SocketAddr = match addr.parse() {
                    Ok(sa) => sa,
                    Err(_) => {
                        return bad(format!(
                            "host {}: {what} {addr:?} is not an IP:port address",
                            h.name
                        ))
                    }
                };
                if sa.port() == 0 {
                    return bad(format!("host {}: {what} {addr} has port 0", h.name));
                }
                let label = format!("host {} {what}", h.name);
                if let Some(prev) = addrs.insert(sa, label.clone()) {
                    return bad(format!("{label} and {prev} both use {sa}"));
                }
            }
        }

        // Offices: codes, levels, tree shape, members.
        let mut seen: HashMap<&str, usize> = HashMap::new(); // code -> level rank
        let mut placed: BTreeSet<(&str, &str)> = BTreeSet::new(); // (host, office)
        if self.offices.is_empty() {
            return bad("no offices".into());
        }
        for (i, o) in self.offices.iter().enumerate() {
            let Some(rank) = level_rank(&o.level) else {
                return bad(format!(
                    "office {}: unknown level {:?} (expected one of {})",
                    o.code,
                    o.level,
                    LEVELS.join(", ")
                ));
            };
            if o.code.len() != CODE_LENGTHS[rank] || !o.code.bytes().all(|b| b.is_ascii_digit()) {
                return bad(format!(
                    "office {:?}: a {} code must be {} digits",
                    o.code, o.level, CODE_LENGTHS[rank]
                ));
            }
            if seen.contains_key(o.code.as_str()) {
                return bad(format!("office {} is listed twice", o.code));
            }
            match (&o.parent, i) {
                (None, 0) => {
                    if o.code != self.region {
                        return bad(format!(
                            "the root office is {} but region is {}",
                            o.code, self.region
                        ));
                    }
                }
                (None, _) => {
                    return bad(format!(
                        "office {} has no parent but is not the first (root) office",
                        o.code
                    ))
                }
                (Some(p), 0) => {
                    return bad(format!(
                        "the first office {} must be the root, but has parent {p}",
                        o.code
                    ))
                }
                (Some(p), _) => match seen.get(p.as_str()) {
                    None => {
                        return bad(format!(
                            "office {}: parent {p} is not listed before it",
                            o.code
                        ))
                    }
                    Some(&prank) if prank + 1 != rank => {
                        return bad(format!(
                            "office {} ({}) cannot have parent {p} ({})",
                            o.code, o.level, LEVELS[prank]
                        ))
                    }
                    Some(_) => {}
                },
            }
            seen.insert(&o.code, rank);

            if o.members.len() != usize::from(self.replicas) {
                return bad(format!(
                    "office {} has {} members, replicas is {}",
                    o.code,
                    o.members.len(),
                    self.replicas
                ));
            }
            let mut ids = BTreeSet::new();
            let mut on_hosts = BTreeSet::new();
            for m in &o.members {
                if m.id == 0 || m.id > u64::from(self.replicas) {
                    return bad(format!(
                        "office {}: member id {} is outside 1..={}",
                        o.code, m.id, self.replicas
                    ));
                }
                if !ids.insert(m.id) {
                    return bad(format!("office {}: member id {} twice", o.code, m.id));
                }
                if !on_hosts.insert(m.host.as_str()) {
                    return bad(format!("office {}: two members on host {}", o.code, m.host));
                }
                let Some(h) = hosts.get(m.host.as_str()) else {
                    return bad(format!(
                        "office {} member {}: host {} does not exist",
                        o.code, m.id, m.host
                    ));
                };
                if !h.offices.contains(&o.code) {
                    return bad(format!(
                        "office {} member {}: host {} does not list the office",
                        o.code, m.id, m.host
                    ));
                }
                placed.insert((m.host.as_str(), o.code.as_str()));
            }
        }

        // Every office a host lists exists and has a member there.
        for h in &self.hosts {
            let mut listed = BTreeSet::new();
            for c in &h.offices {
                if !listed.insert(c.as_str()) {
                    return bad(format!("host {} lists office {c} twice", h.name));
                }
                if !seen.contains_key(c.as_str()) {
                    return bad(format!("host {} lists unknown office {c}", h.name));
                }
                if !placed.contains(&(h.name.as_str(), c.as_str())) {
                    return bad(format!(
                        "host {} lists office {c} but carries none of its members",
                        h.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The office with this division code.
    pub fn office(&self, code: &str) -> Option<&OfficeEntry> {
        self.offices.iter().find(|o| o.code == code)
    }

    /// The host with this name.
    pub fn host(&self, name: &str) -> Option<&HostEntry> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The host carrying member `id` of `office`.
    pub fn member_host(&self, office: &str, id: u64) -> Option<&HostEntry> {
        let m = self.office(office)?.member(id)?;
        self.host(&m.host)
    }

    /// The direct children of `code`, in manifest order.
    pub fn children<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a OfficeEntry> + 'a {
        self.offices
            .iter()
            .filter(move |o| o.parent.as_deref() == Some(code))
    }

    /// The root office (the region), i.e. the one without a parent.
    pub fn root(&self) -> Option<&OfficeEntry> {
        self.offices.iter().find(|o| o.parent.is_none())
    }

    /// The ancestors of `code`, nearest first (parent, grandparent, …, root). Empty for the root
    /// or an unknown code. Stops if the chain is broken or loops, so a bad manifest cannot hang it.
    pub fn ancestors(&self, code: &str) -> Vec<&OfficeEntry> {
        let by_code: BTreeMap<&str, &OfficeEntry> =
            self.offices.iter().map(|o| (o.code.as_str(), o)).collect();
        let mut out = Vec::new();
        let mut cur = by_code.get(code).and_then(|o| o.parent.as_deref());
        while let Some(p) = cur {
            let Some(o) = by_code.get(p) else { break };
            if out.len() > self.offices.len() {
                break;
            }
            out.push(*o);
            cur = o.parent.as_deref();
        }
        out
    }

    /// Whether `ancestor` is a strict ancestor of `code` (the parent, its parent, …).
    pub fn is_ancestor(&self, ancestor: &str, code: &str) -> bool {
        self.ancestors(code).iter().any(|o| o.code == ancestor)
    }

    /// The offices carried by host `name` (in manifest office order).
    pub fn offices_on_host<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a OfficeEntry, &'a Member)> + 'a {
        self.offices
            .iter()
            .filter_map(move |o| o.members.iter().find(|m| m.host == name).map(|m| (o, m)))
    }
}

impl Manifest {
    /// Whether `next` may replace this manifest on a running host (`liandong federation
    /// add-office`): it is valid, of the same region, replicas, time scale and clock origin, of a
    /// greater generation, and only adds: every office and host of this manifest is in `next`
    /// unchanged (same parent, members, addresses and offices). New offices and new hosts are all
    /// it may bring; an office carried by a host that already runs needs that host's restart and
    /// is refused here. The first problem found is reported.
    pub fn check_successor(&self, next: &Manifest) -> Result<(), ManifestError> {
        fn bad(msg: String) -> Result<(), ManifestError> {
            Err(ManifestError::Invalid(msg))
        }
        next.validate()?;
        if next.region != self.region {
            return bad(format!(
                "the new manifest is of region {}, this federation is {}",
                next.region, self.region
            ));
        }
        if next.replicas != self.replicas
            || next.time_scale != self.time_scale
            || next.clock_origin_ms != self.clock_origin_ms
        {
            return bad("the new manifest changes replicas, time scale or clock origin".into());
        }
        if next.generation <= self.generation {
            return bad(format!(
                "the new manifest's generation {} is not greater than the current {}",
                next.generation, self.generation
            ));
        }
        for office in &self.offices {
            match next.office(&office.code) {
                None => return bad(format!("the new manifest removes office {}", office.code)),
                Some(o) if o != office => {
                    return bad(format!(
                        "the new manifest moves or changes office {}",
                        office.code
                    ))
                }
                Some(_) => {}
            }
        }
        for host in &self.hosts {
            match next.host(&host.name) {
                None => return bad(format!("the new manifest removes host {}", host.name)),
                Some(h) if h != host => {
                    return bad(format!("the new manifest changes host {}", host.name))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

impl HostConfig {
    /// Reads a host config (TOML). Paths are returned as written; see [`HostConfig::resolved`].
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = read(path)?;
        toml::from_str(&text).map_err(|e| parse(path, e.message()))
    }

    /// Writes the host config as TOML, atomically.
    pub fn save(&self, path: &Path) -> Result<(), ManifestError> {
        let text = toml::to_string_pretty(self)
            .map_err(|e| ManifestError::Invalid(format!("cannot serialise host config: {e}")))?;
        write_atomic(path, text.as_bytes())
    }

    /// This config with relative paths taken relative to `base` (normally the folder holding the
    /// config file), so a federation folder can be moved as a whole.
    pub fn resolved(&self, base: &Path) -> HostConfig {
        let join = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        HostConfig {
            host: self.host.clone(),
            manifest: join(&self.manifest),
            data_dir: join(&self.data_dir),
            log_dir: join(&self.log_dir),
            log_level: self.log_level.clone(),
        }
    }
}

fn read(path: &Path) -> Result<String, ManifestError> {
    fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse(path: &Path, message: impl ToString) -> ManifestError {
    ManifestError::Parse {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Writes `bytes` to a temporary sibling of `path`, syncs it and renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ManifestError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ManifestError::Io { path: p, source }
    };
    let Some(file_name) = path.file_name() else {
        return Err(ManifestError::Invalid(format!(
            "{} is not a file path",
            path.display()
        )));
    };
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable; a failure here is not worth failing the save for.
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, port: u16, offices: &[&str]) -> HostEntry {
        HostEntry {
            name: name.into(),
            raft_addr: format!("127.0.0.1:{port}"),
            api_addr: format!("127.0.0.1:{}", port + 1),
            metrics_addr: format!("127.0.0.1:{}", port + 2),
            http_addr: None,
            offices: offices.iter().map(|s| s.to_string()).collect(),
            site: None,
        }
    }

    fn office(code: &str, level: &str, parent: Option<&str>, hosts: &[&str]) -> OfficeEntry {
        OfficeEntry {
            code: code.into(),
            name: format!("office {code}"),
            level: level.into(),
            parent: parent.map(String::from),
            members: hosts
                .iter()
                .enumerate()
                .map(|(i, h)| Member {
                    id: i as u64 + 1,
                    host: h.to_string(),
                })
                .collect(),
        }
    }

    /// A city with one county and one township, one replica each.
    fn sample() -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            region: "5306".into(),
            replicas: 1,
            time_scale: 1.0,
            clock_origin_ms: 0,
            sms_gateway: None,
            hotline_callback: None,
            generation: 0,
            secret_hex: "ab".repeat(32),
            offices: vec![
                office("5306", "City", None, &["h5306-1"]),
                office("530602", "County", Some("5306"), &["h530602-1"]),
                office("530602001", "Township", Some("530602"), &["h530602-1"]),
            ],
            hosts: vec![
                host("h5306-1", 7000, &["5306"]),
                host("h530602-1", 7003, &["530602", "530602001"]),
            ],
        }
    }

    fn invalid(m: &Manifest) -> String {
        match m.validate() {
            Err(ManifestError::Invalid(s)) => s,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn sample_is_valid_and_lookups_work() {
        let m = sample();
        m.validate().unwrap();
        assert_eq!(m.office("530602").unwrap().level, "County");
        assert_eq!(m.host("h5306-1").unwrap().api_addr, "127.0.0.1:7001");
        assert_eq!(m.member_host("530602001", 1).unwrap().name, "h530602-1");
        assert!(m.member_host("530602001", 2).is_none());
        assert!(m.member_host("nope", 1).is_none());
        let kids: Vec<_> = m.children("5306").map(|o| o.code.as_str()).collect();
        assert_eq!(kids, ["530602"]);
        assert_eq!(m.children("530602001").count(), 0);
        assert_eq!(m.root().unwrap().code, "5306");
        let anc: Vec<_> = m
            .ancestors("530602001")
            .iter()
            .map(|o| o.code.as_str())
            .collect();
        assert_eq!(anc, ["530602", "5306"]);
        assert!(m.is_ancestor("5306", "530602001"));
        assert!(!m.is_ancestor("530602001", "5306"));
        assert_eq!(m.offices_on_host("h530602-1").count(), 2);
    }

    #[test]
    fn validate_catches_inconsistencies() {
        let mut m = sample();
        m.offices[2].members[0].host = "ghost".into();
        assert!(invalid(&m).contains("does not exist"));

        let mut m = sample();
        m.hosts[1].offices.retain(|c| c != "530602001");
        assert!(invalid(&m).contains("does not list"));

        let mut m = sample();
        m.offices[1].parent = Some("5307".into());
        assert!(invalid(&m).contains("parent 5307"));

        let mut m = sample();
        m.offices.swap(1, 2);
        assert!(invalid(&m).contains("not listed before"));

        let mut m = sample();
        m.hosts[0].api_addr = "localhost".into();
        assert!(invalid(&m).contains("api_addr"));

        let mut m = sample();
        m.hosts[1].raft_addr = m.hosts[0].raft_addr.clone();
        assert!(invalid(&m).contains("both use"));

        let mut m = sample();
        m.replicas = 3;
        assert!(invalid(&m).contains("members"));

        let mut m = sample();
        m.replicas = 2;
        assert!(invalid(&m).contains("1, 3 or 5"));

        let mut m = sample();
        m.offices.push(m.offices[2].clone());
        assert!(invalid(&m).contains("listed twice"));

        let mut m = sample();
        m.offices[2].members[0].id = 2;
        assert!(invalid(&m).contains("outside 1..=1"));

        let mut m = sample();
        m.secret_hex = "xyz".into();
        assert!(invalid(&m).contains("secret_hex"));

        let mut m = sample();
        m.offices[2].level = "Village".into();
        assert!(invalid(&m).contains("unknown level"));

        let mut m = sample();
        m.offices[1].parent = None;
        assert!(invalid(&m).contains("no parent"));

        let mut m = sample();
        m.hosts[0].offices.push("530602".into());
        assert!(invalid(&m).contains("carries none"));
    }

    #[test]
    fn save_load_round_trip_and_version_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let m = sample();
        m.save(&path).unwrap();
        assert_eq!(Manifest::load(&path).unwrap(), m);
        // No temporary file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let mut v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        v["version"] = 2.into();
        v["offices"] = "changed shape".into();
        fs::write(&path, v.to_string()).unwrap();
        let err = Manifest::load(&path).unwrap_err();
        assert!(matches!(err, ManifestError::UnsupportedVersion(2)), "{err}");
        assert!(err.to_string().contains("version 2"));

        fs::write(&path, "{ not json").unwrap();
        assert!(matches!(
            Manifest::load(&path),
            Err(ManifestError::Parse { .. })
        ));
        assert!(matches!(
            Manifest::load(&dir.path().join("missing.json")),
            Err(ManifestError::Io { .. })
        ));
    }

    #[test]
    fn host_config_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h5306-1.toml");
        let c = HostConfig {
            host: "h5306-1".into(),
            manifest: "../manifest.json".into(),
            data_dir: "/tmp/data/h5306-1".into(),
            log_dir: "logs".into(),
            log_level: "info".into(),
        };
        c.save(&path).unwrap();
        assert_eq!(HostConfig::load(&path).unwrap(), c);
        let r = c.resolved(Path::new("/fed/hosts"));
        assert_eq!(r.manifest, Path::new("/fed/hosts/../manifest.json"));
        assert_eq!(r.data_dir, Path::new("/tmp/data/h5306-1"));
        fs::write(&path, "host = 3").unwrap();
        let err = HostConfig::load(&path).unwrap_err();
        assert!(matches!(err, ManifestError::Parse { .. }), "{err}");
    }

    /// The sample with one more township (on a host of its own) at generation `generation`.
    fn with_township(generation: u64) -> Manifest {
        let mut m = sample();
        m.generation = generation;
        m.offices.push(office(
            "530602002",
            "Township",
            Some("530602"),
            &["h530602002-1"],
        ));
        m.hosts.push(host("h530602002-1", 7010, &["530602002"]));
        m
    }

    #[test]
    fn a_successor_manifest_only_adds_at_a_greater_generation() {
        let old = sample();
        let next = with_township(1);
        old.check_successor(&next).unwrap();
        // Not again, and not backwards.
        let err = next.check_successor(&next).unwrap_err().to_string();
        assert!(err.contains("not greater"), "{err}");
        assert!(next.check_successor(&old).is_err());
        assert!(old.check_successor(&with_township(0)).is_err());

        let mut moved = with_township(2);
        moved.offices[2].members[0].host = "h5306-1".into();
        moved.hosts[0].offices.push("530602001".into());
        moved.hosts[1].offices.retain(|c| c != "530602001");
        let err = old.check_successor(&moved).unwrap_err().to_string();
        assert!(err.contains("530602001"), "{err}");

        let mut removed = with_township(2);
        removed.offices.retain(|o| o.code != "530602001");
        removed.hosts[1].offices.retain(|c| c != "530602001");
        let err = old.check_successor(&removed).unwrap_err().to_string();
        assert!(err.contains("removes office 530602001"), "{err}");

        let mut readdressed = with_township(2);
        readdressed.hosts[0].api_addr = "127.0.0.1:7099".into();
        let err = old.check_successor(&readdressed).unwrap_err().to_string();
        assert!(err.contains("changes host h5306-1"), "{err}");

        let mut other_region = with_township(2);
        other_region.region = "5307".into();
        assert!(old.check_successor(&other_region).is_err());

        let mut invalid = with_township(2);
        invalid.offices[3].parent = Some("530699".into());
        assert!(old.check_successor(&invalid).is_err());
    }

    #[test]
    fn generation_and_site_are_optional_in_older_manifests() {
        let mut v = serde_json::to_value(sample()).unwrap();
        assert!(v.get("generation").is_none(), "generation 0 is not written");
        assert!(v["hosts"][0].get("site").is_none());
        v["generation"] = 4.into();
        v["hosts"][0]["site"] = "city-dc".into();
        let m: Manifest = serde_json::from_value(v).unwrap();
        assert_eq!(m.generation, 4);
        assert_eq!(m.hosts[0].site.as_deref(), Some("city-dc"));
    }
}

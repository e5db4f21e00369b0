//! A federation spread over machines: `federation init --inventory` (hosts, their sites,
//! addresses and offices from an inventory), `federation bundle` (one host's folder, to copy to
//! its machine) and `federation add-office` (an office added to a running federation).
//!
//! The folder given to `init --inventory` (`--out`, or `--dir`) is the CA holder's: the manifest,
//! the CA's key and certificate, the command line's certificate, every office's secrets, and
//! `bundles/<host>/` for each host. A bundle holds only what its host needs: its config
//! (`host.toml`, paths relative to the bundle), the manifest, the CA certificate, its own key and
//! certificate, the petitioner-key secret and the keys of the offices it carries. Never another
//! host's key, never the CA's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use liandong_node::manifest::{HostConfig, HostEntry, Manifest, Member, OfficeEntry};
use liandong_node::secrets::{self, Secrets};
use liandong_node::tls::{self, Pki};
use serde::Deserialize;
use serde_json::json;

use crate::cli::{AddOfficeArgs, BundleArgs, InitArgs};
use crate::commands::Report;
use crate::layout::Layout;
use crate::progress::Progress;
use crate::topology::{Level, Topology};

/// The ports a host listens on when the inventory gives none: the same on every machine.
pub const DEFAULT_RAFT_PORT: u16 = 7100;
pub const DEFAULT_API_PORT: u16 = 7101;
pub const DEFAULT_METRICS_PORT: u16 = 7102;
pub const DEFAULT_HTTP_PORT: u16 = 7103;
/// The largest inventory file read.
pub const INVENTORY_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// The most hosts an inventory may list (a province's federation has a few hundred).
pub const INVENTORY_HOSTS_MAX: usize = 5_000;
/// How long `add-office` waits for one host to take the new manifest.
pub const APPLY_TIMEOUT_MS: u64 = 10_000;
/// A bundle's config file.
pub const BUNDLE_CONFIG: &str = "host.toml";

/// An inventory: the hosts of a federation, where they run and what they carry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// The region's division code (the root office); `--region` may give it instead.
    #[serde(default)]
    pub region: Option<String>,
    /// Replicas per office: 1, 3 or 5.
    #[serde(default = "three")]
    pub replicas: u8,
    /// The ports of every host that names none of its own.
    #[serde(default)]
    pub ports: Ports,
    /// The hosts (`[[host]]` in TOML).
    #[serde(rename = "host", alias = "hosts", default)]
    pub hosts: Vec<InventoryHost>,
}

fn three() -> u8 {
    3
}

/// The four ports of a host.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    #[serde(default = "raft_port")]
    pub raft: u16,
    #[serde(default = "api_port")]
    pub api: u16,
    #[serde(default = "metrics_port")]
    pub metrics: u16,
    #[serde(default = "http_port")]
    pub http: u16,
}

fn raft_port() -> u16 {
    DEFAULT_RAFT_PORT
}
fn api_port() -> u16 {
    DEFAULT_API_PORT
}
fn metrics_port() -> u16 {
    DEFAULT_METRICS_PORT
}
fn http_port() -> u16 {
    DEFAULT_HTTP_PORT
}

impl Default for Ports {
    fn default() -> Ports {
        Ports {
            raft: DEFAULT_RAFT_PORT,
            api: DEFAULT_API_PORT,
            metrics: DEFAULT_METRICS_PORT,
            http: DEFAULT_HTTP_PORT,
        }
    }
}

/// One host of an inventory.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryHost {
    pub name: String,
    pub site: String,
    /// The IP address the host listens on and is reached at.
    pub address: String,
    /// The offices it carries a replica of.
    pub offices: Vec<String>,
    /// Ports of this host, where they differ from the inventory's `[ports]`.
    #[serde(default)]
    pub raft_port: Option<u16>,
    #[serde(default)]
    pub api_port: Option<u16>,
    #[serde(default)]
    pub metrics_port: Option<u16>,
    #[serde(default)]
    pub http_port: Option<u16>,
}

impl Inventory {
    /// Reads an inventory: TOML, or JSON when the file name ends in `.json`.
    pub fn load(path: &Path) -> anyhow::Result<Inventory> {
        let size = std::fs::metadata(path)
            .map_err(|e| anyhow!("inventory {}: {e}", path.display()))?
            .len();
        if size > INVENTORY_BYTES_MAX {
            bail!(
                "inventory {}: {size} bytes; at most {INVENTORY_BYTES_MAX}",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("inventory {}: {e}", path.display()))?;
        let inventory = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| anyhow!("inventory {}: {e}", path.display()))?
        } else {
            toml::from_str(&text).map_err(|e| {
                anyhow!(
                    "inventory {}: {}",
                    path.display(),
                    e.message().replace('\n', " ")
                )
            })?
        };
        Ok(inventory)
    }
}

/// The host entry an inventory host becomes: its address with its ports.
fn host_entry(host: &InventoryHost, ports: &Ports) -> anyhow::Result<HostEntry> {
    let ip: IpAddr = host.address.trim().parse().map_err(|_| {
        anyhow!(
            "host {}: address {:?} is not an IP address",
            host.name,
            host.address
        )
    })?;
    let at = |port: u16| match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    Ok(HostEntry {
        name: host.name.clone(),
        raft_addr: at(host.raft_port.unwrap_or(ports.raft)),
        api_addr: at(host.api_port.unwrap_or(ports.api)),
        metrics_addr: at(host.metrics_port.unwrap_or(ports.metrics)),
        http_addr: Some(at(host.http_port.unwrap_or(ports.http))),
        offices: host.offices.clone(),
        site: Some(host.site.clone()),
    })
}

/// An office of the topology as the manifest lists it, with no members yet.
fn office_entry(topology: &Topology, code: &str, region: &str) -> anyhow::Result<OfficeEntry> {
    let division = topology
        .get(code)
        .ok_or_else(|| anyhow!("unknown office {code}: no such division code"))?;
    Ok(OfficeEntry {
        code: division.code.clone(),
        name: division.name.clone(),
        level: division.level.as_str().to_string(),
        parent: if division.code == region {
            None
        } else {
            division.parent.clone()
        },
        members: Vec::new(),
    })
}

/// Whether `code` is `region` or below it in the topology.
fn within(topology: &Topology, region: &str, code: &str) -> bool {
    let mut current = Some(code.to_string());
    while let Some(c) = current {
        if c == region {
            return true;
        }
        current = topology.get(&c).and_then(|d| d.parent.clone());
    }
    false
}

/// The manifest an inventory describes (`clock_origin_ms` and the gateways left for the caller),
/// checked whole: the first problem found is the error, and nothing is written.
pub fn manifest_from_inventory(
    topology: &Topology,
    inventory: &Inventory,
    region_flag: Option<&str>,
    time_scale: f64,
) -> anyhow::Result<Manifest> {
    let region = match (region_flag, inventory.region.as_deref()) {
        (Some(flag), Some(listed)) if flag.trim() != listed.trim() => {
            bail!("--region {flag} and the inventory's region {listed} differ")
        }
        (Some(region), _) | (None, Some(region)) => region.trim().to_string(),
        (None, None) => {
            bail!("the inventory names no region (region = \"CODE\"), nor does --region")
        }
    };
    let root = topology
        .get(&region)
        .ok_or_else(|| anyhow!("unknown region {region}: no such division code"))?;
    if root.level == Level::Township {
        bail!("region {region} is a township: a federation's region is a county or above");
    }
    if !matches!(inventory.replicas, 1 | 3 | 5) {
        bail!("replicas is {}, must be 1, 3 or 5", inventory.replicas);
    }
    if inventory.hosts.is_empty() {
        bail!("the inventory lists no host ([[host]] with name, site, address, offices)");
    }
    if inventory.hosts.len() > INVENTORY_HOSTS_MAX {
        bail!(
            "the inventory lists {} hosts; at most {INVENTORY_HOSTS_MAX}",
            inventory.hosts.len()
        );
    }
    let mut names = BTreeSet::new();
    let mut listeners: HashMap<String, String> = HashMap::new();
    let mut hosts = Vec::new();
    // Members of each office, in inventory order.
    let mut placed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for host in &inventory.hosts {
        tls::check_host_name(&host.name).map_err(|e| anyhow!("host {:?}: {e}", host.name))?;
        if !names.insert(host.name.clone()) {
            bail!("host {} is listed twice", host.name);
        }
        if host.site.trim().is_empty() {
            bail!("host {}: empty site", host.name);
        }
        if host.offices.is_empty() {
            bail!("host {} carries no office (offices = [...])", host.name);
        }
        let entry = host_entry(host, &inventory.ports)?;
        let addrs = [
            ("raft", &entry.raft_addr),
            ("api", &entry.api_addr),
            ("metrics", &entry.metrics_addr),
        ]
        .into_iter()
        .chain(entry.http_addr.as_ref().map(|a| ("http", a)));
        let mut own = BTreeSet::new();
        for (what, addr) in addrs {
            if !own.insert(addr.clone()) {
                bail!("host {}: two of its ports are the same ({addr})", host.name);
            }
            if let Some(other) = listeners.insert(addr.clone(), host.name.clone()) {
                bail!(
                    "hosts {other} and {} both listen on {addr} ({what} port): duplicate address",
                    host.name
                );
            }
        }
        for code in &host.offices {
            if topology.get(code).is_none() {
                bail!(
                    "host {}: unknown office {code}: no such division code",
                    host.name
                );
            }
            if !within(topology, &region, code) {
                bail!(
                    "host {}: office {code} is not in region {region}",
                    host.name
                );
            }
            let members = placed.entry(code.clone()).or_default();
            if members.contains(&host.name) {
                bail!("host {} lists office {code} twice", host.name);
            }
            members.push(host.name.clone());
        }
        hosts.push(entry);
    }
    if !placed.contains_key(&region) {
        bail!("no host carries the region's own office {region}");
    }
    // Parents before children: a shorter code is a higher level.
    let mut codes: Vec<&String> = placed.keys().collect();
    codes.sort_by_key(|code| (code.len(), code.to_string()));
    let mut offices = Vec::new();
    for code in codes {
        let mut entry = office_entry(topology, code, &region)?;
        if let Some(parent) = &entry.parent {
            if !placed.contains_key(parent) {
                bail!("office {code}'s parent {parent} is carried by no host");
            }
        }
        let members = &placed[code];
        if members.len() != usize::from(inventory.replicas) {
            bail!(
                "office {code} is on {} hosts ({}); replicas is {}",
                members.len(),
                members.join(", "),
                inventory.replicas
            );
        }
        entry.members = members
            .iter()
            .enumerate()
            .map(|(i, host)| Member {
                id: i as u64 + 1,
                host: host.clone(),
            })
            .collect();
        offices.push(entry);
    }
    let manifest = Manifest {
        version: liandong_node::manifest::MANIFEST_VERSION,
        region,
        replicas: inventory.replicas,
        time_scale,
        clock_origin_ms: 0,
        secret_hex: String::new(),
        offices,
        hosts,
        sms_gateway: None,
        hotline_callback: None,
        generation: 0,
    };
    manifest.validate()?;
    Ok(manifest)
}

/// `liandong federation init --inventory FILE`: the CA holder's folder and one bundle per host.
pub fn init(layout: &Layout, args: &InitArgs, inventory_path: &Path) -> anyhow::Result<Report> {
    let root = args
        .out
        .clone()
        .unwrap_or_else(|| layout.root().to_path_buf());
    let layout = Layout::new(&root);
    if layout.manifest().exists() && !args.force {
        bail!(
            "a federation already exists at {} (use another --out, or --force)",
            root.display()
        );
    }
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        bail!(
            "--time-scale must be a positive number, not {}",
            args.time_scale
        );
    }
    let inventory = Inventory::load(inventory_path)?;
    let mut manifest = manifest_from_inventory(
        &Topology::load(),
        &inventory,
        args.region.as_deref(),
        args.time_scale,
    )?;
    manifest.clock_origin_ms = liandong_node::clock::wall_ms();
    manifest.sms_gateway = args
        .sms_gateway
        .as_deref()
        .map(|spec| crate::commands::gateway("--sms-gateway", spec))
        .transpose()?;
    manifest.hotline_callback = args
        .hotline_callback
        .as_deref()
        .map(|spec| crate::commands::gateway("--hotline-callback", spec))
        .transpose()?;
    // Everything is checked: now the folder.
    secrets::private_dir(&root)?;
    let root = std::fs::canonicalize(&root)?;
    let layout = Layout::new(&root);
    manifest.save(&layout.manifest())?;
    let pki_dir = liandong_node::host::pki_dir(&layout.manifest());
    let pki = Pki::generate(&format!("liandong-{}", manifest.region))?;
    pki.write(&pki_dir)?;
    let root_office: Vec<String> = vec![manifest.region.clone()];
    pki.issue_operator(
        crate::client::CLI_IDENTITY,
        &root_office,
        crate::client::CERT_VALIDITY_DAYS,
    )?
    .write(&pki_dir, crate::client::CLI_IDENTITY)?;
    // A province takes a while: how far it is, on stderr (stdout stays the report).
    let started = std::time::Instant::now();
    let codes: Vec<String> = manifest.offices.iter().map(|o| o.code.clone()).collect();
    let mut progress = Progress::new(
        "federation init: offices' keys and admin passwords".to_string(),
        codes.len() as u64,
        false,
    );
    layout
        .secrets()
        .generate_with(&codes, "", |done| progress.at(done as u64))?;
    progress.done();
    layout.publish_office_keys(&codes)?;
    let mut bundles = Vec::new();
    let mut progress = Progress::new(
        "federation init: host certificates and bundles".to_string(),
        manifest.hosts.len() as u64,
        false,
    );
    for (n, host) in manifest.hosts.iter().enumerate() {
        let dir = bundle_dir(&layout, &host.name);
        write_bundle(&layout, &manifest, &pki, &host.name, &dir)?;
        bundles.push(
            json!({"host": host.name, "site": host.site, "bundle": dir.display().to_string()}),
        );
        progress.at(n as u64 + 1);
    }
    progress.done();
    progress.summary(&format!(
        "federation init: {} offices' keys and admin passwords, {} host certificates and bundles \
         in {:.1} s",
        codes.len(),
        manifest.hosts.len(),
        started.elapsed().as_secs_f64()
    ));
    let sites: BTreeSet<&str> = manifest
        .hosts
        .iter()
        .filter_map(|h| h.site.as_deref())
        .collect();
    let json = json!({
        "dir": root.display().to_string(),
        "region": manifest.region,
        "offices": manifest.offices.len(),
        "hosts": manifest.hosts.len(),
        "sites": sites.len(),
        "replicas": manifest.replicas,
        "generation": manifest.generation,
        "bundles": bundles,
    });
    let text = format!(
        "federation for {}: {} offices, {} hosts at {} sites, {} replicas each, in {}; one bundle per host in {} (copy each to its machine; the CA key stays in {})",
        manifest.region,
        manifest.offices.len(),
        manifest.hosts.len(),
        sites.len(),
        manifest.replicas,
        root.display(),
        root.join("bundles").display(),
        pki_dir.join(tls::CA_KEY_FILE).display(),
    );
    Ok(Report::new(json, text))
}

/// Where `init --inventory` and `bundle` put a host's bundle by default.
pub fn bundle_dir(layout: &Layout, host: &str) -> PathBuf {
    layout.root().join("bundles").join(host)
}

/// Writes host `host`'s bundle into `dir`: a new key and certificate (naming its offices and its
/// address) from the CA, the CA certificate, the manifest, its config and the secrets of the
/// offices it carries. Whatever else is in `dir` (its data) is left alone.
pub fn write_bundle(
    layout: &Layout,
    manifest: &Manifest,
    pki: &Pki,
    host: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let entry = manifest
        .host(host)
        .ok_or_else(|| anyhow!("no host {host} in this federation"))?;
    let addresses: Vec<IpAddr> = [&entry.raft_addr, &entry.api_addr]
        .into_iter()
        .filter_map(|addr| addr.parse::<std::net::SocketAddr>().ok())
        .map(|addr| addr.ip())
        .collect();
    secrets::private_dir(dir)?;
    let pki_dir = dir.join("pki");
    let identity = pki.issue_host_at(
        host,
        &entry.offices,
        crate::client::CERT_VALIDITY_DAYS,
        &addresses,
    )?;
    identity.write(&pki_dir, host)?;
    write_public(&pki_dir.join(tls::CA_CERT_FILE), &pki.ca_cert_pem)?;
    let revoked = liandong_node::host::pki_dir(&layout.manifest())
        .join(liandong_node::live_tls::REVOKED_FILE);
    if revoked.exists() {
        let text = std::fs::read_to_string(&revoked)
            .with_context(|| format!("reading {}", revoked.display()))?;
        write_public(&pki_dir.join(liandong_node::live_tls::REVOKED_FILE), &text)?;
    }
    manifest.save(&dir.join("manifest.json"))?;
    // Only the secrets this host needs: the petitioner-key secret and its offices' keys.
    let from = layout.secrets();
    let to = Secrets::for_manifest(&dir.join("manifest.json"));
    secrets::private_dir(to.dir())?;
    copy_secret(
        &from.dir().join(secrets::PETITIONER_KEY_FILE),
        &to.dir().join(secrets::PETITIONER_KEY_FILE),
    )?;
    for office in &entry.offices {
        for file in [
            secrets::OFFICE_KEY_FILE,
            secrets::DATA_KEY_FILE,
            secrets::ADMIN_HASH_FILE,
        ] {
            copy_secret(
                &from.office_dir(office).join(file),
                &to.office_dir(office).join(file),
            )?;
        }
    }
    std::fs::create_dir_all(dir.join("run"))?;
    let config = HostConfig {
        host: host.to_string(),
        manifest: PathBuf::from("manifest.json"),
        data_dir: PathBuf::from("data"),
        log_dir: PathBuf::from("run"),
        log_level: "info".to_string(),
    };
    config.save(&dir.join(BUNDLE_CONFIG))?;
    Ok(())
}

fn write_public(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

fn copy_secret(from: &Path, to: &Path) -> anyhow::Result<()> {
    let bytes = secrets::read_private(from)?;
    secrets::write_private(to, &bytes)?;
    Ok(())
}

/// `liandong federation bundle --host NAME [--out DIR]`: the host's bundle made again, with a
/// new key and certificate from the CA.
pub fn bundle(layout: &Layout, args: &BundleArgs) -> anyhow::Result<Report> {
    let manifest = layout.load_manifest()?;
    if manifest.host(&args.host).is_none() {
        bail!(
            "no host {} in this federation (hosts: {})",
            args.host,
            host_names(&manifest)
        );
    }
    let pki_dir = liandong_node::host::pki_dir(&layout.manifest());
    let pki = Pki::load(&pki_dir).map_err(|e| {
        anyhow!(
            "the CA ({}): {e}; bundles are made where the CA key is kept",
            pki_dir.display()
        )
    })?;
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| bundle_dir(layout, &args.host));
    write_bundle(layout, &manifest, &pki, &args.host, &dir)?;
    Ok(Report::new(
        json!({"host": args.host, "bundle": dir.display().to_string(), "generation": manifest.generation}),
        format!(
            "bundle of host {} in {} (config {}; a new key and certificate)",
            args.host,
            dir.display(),
            dir.join(BUNDLE_CONFIG).display()
        ),
    ))
}

fn host_names(manifest: &Manifest) -> String {
    manifest
        .hosts
        .iter()
        .map(|h| h.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The manifest with office `code` added on new hosts `hosts` (name, address), at the next
/// generation; or, when the office is already there on exactly those hosts, the manifest as it
/// is (a re-run, to reach hosts that missed it).
pub fn with_office(
    topology: &Topology,
    manifest: &Manifest,
    code: &str,
    hosts: &[(String, String)],
    site: &str,
    ports: &Ports,
) -> anyhow::Result<(Manifest, bool)> {
    let code = code.trim();
    if topology.get(code).is_none() {
        bail!("unknown office {code}: no such division code");
    }
    if let Some(office) = manifest.office(code) {
        let same = office.members.len() == hosts.len()
            && office
                .members
                .iter()
                .zip(hosts)
                .all(|(member, (name, address))| {
                    member.host == *name
                        && manifest.host(name).is_some_and(|h| {
                            h.api_addr
                                .parse::<std::net::SocketAddr>()
                                .is_ok_and(|a| a.ip().to_string() == address.trim())
                        })
                });
        if same {
            return Ok((manifest.clone(), false));
        }
        bail!(
            "office {code} is already in this federation (on {})",
            office
                .members
                .iter()
                .map(|m| m.host.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let entry = office_entry(topology, code, &manifest.region)?;
    let Some(parent) = entry.parent.clone() else {
        bail!("office {code} is the region itself");
    };
    if manifest.office(&parent).is_none() {
        bail!("office {code}'s parent {parent} is not in this federation: add {parent} first");
    }
    if hosts.len() != usize::from(manifest.replicas) {
        bail!(
            "office {code} needs {} hosts (--host NAME --address IP, once per replica), not {}",
            manifest.replicas,
            hosts.len()
        );
    }
    let mut next = manifest.clone();
    let mut entry = entry;
    for (i, (name, address)) in hosts.iter().enumerate() {
        if manifest.host(name).is_some() {
            bail!("host {name} already runs in this federation: a new office takes new hosts");
        }
        let inventory_host = InventoryHost {
            name: name.clone(),
            site: site.to_string(),
            address: address.clone(),
            offices: vec![code.to_string()],
            raft_port: None,
            api_port: None,
            metrics_port: None,
            http_port: None,
        };
        tls::check_host_name(name).map_err(|e| anyhow!("host {name:?}: {e}"))?;
        next.hosts.push(host_entry(&inventory_host, ports)?);
        entry.members.push(Member {
            id: i as u64 + 1,
            host: name.clone(),
        });
    }
    // After its parent's last descendant would do too; the end keeps every older index.
    next.offices.push(entry);
    next.generation = manifest.generation + 1;
    manifest
        .check_successor(&next)
        .map_err(|e| anyhow!("office {code}: {e}"))?;
    Ok((next, true))
}

/// `liandong federation add-office --office CODE --host NAME --address IP ...`.
pub async fn add_office(layout: &Layout, args: &AddOfficeArgs) -> anyhow::Result<Report> {
    let manifest = layout.load_manifest()?;
    if args.host.len() != args.address.len() {
        bail!(
            "give one --address per --host ({} hosts, {} addresses)",
            args.host.len(),
            args.address.len()
        );
    }
    let hosts: Vec<(String, String)> = args
        .host
        .iter()
        .cloned()
        .zip(args.address.iter().cloned())
        .collect();
    let code = args.office.trim().to_string();
    let site = args.site.clone().unwrap_or_else(|| code.clone());
    let (next, changed) = with_office(
        &Topology::load(),
        &manifest,
        &code,
        &hosts,
        &site,
        &Ports::default(),
    )?;
    let pki_dir = liandong_node::host::pki_dir(&layout.manifest());
    let pki = Pki::load(&pki_dir).map_err(|e| {
        anyhow!(
            "the CA ({}): {e}; offices are added where the CA key is kept",
            pki_dir.display()
        )
    })?;
    let mut bundles = Vec::new();
    if changed {
        // Secrets and bundles first, the manifest last: a failure before leaves the federation
        // as it was (a re-run makes them again).
        let codes = std::slice::from_ref(&code);
        layout.secrets().generate(codes, "")?;
        layout.publish_office_keys(codes)?;
        for (name, _) in &hosts {
            let dir = bundle_dir(layout, name);
            write_bundle(layout, &next, &pki, name, &dir)?;
            bundles.push(dir.display().to_string());
        }
        next.save(&layout.manifest())?;
        // The CA holder's copies of the other bundles follow, for a host set up again later.
        for host in &manifest.hosts {
            let dir = bundle_dir(layout, &host.name);
            if dir.join("manifest.json").exists() {
                next.save(&dir.join("manifest.json"))?;
            }
        }
    } else {
        bundles.extend(
            hosts
                .iter()
                .map(|(name, _)| bundle_dir(layout, name).display().to_string()),
        );
    }
    // Every host that ran before takes the new manifest now; the new hosts start with it.
    crate::client::use_federation_tls(layout)?;
    let text = serde_json::to_vec(&next)?;
    let new_hosts: BTreeSet<&str> = hosts.iter().map(|(name, _)| name.as_str()).collect();
    let asks = next
        .hosts
        .iter()
        .filter(|h| !new_hosts.contains(h.name.as_str()))
        .map(|host| {
            let text = text.clone();
            async move {
                let call = async {
                    let channel = crate::client::channel(&host.api_addr).await?;
                    federation_proto::v1::sites_client::SitesClient::new(channel)
                        .max_encoding_message_size(federation_proto::MESSAGE_BYTES_MAX)
                        .apply_manifest(federation_proto::v1::ApplyManifestRequest {
                            manifest: text,
                        })
                        .await
                        .map(|reply| reply.into_inner())
                };
                let outcome =
                    tokio::time::timeout(Duration::from_millis(APPLY_TIMEOUT_MS), call).await;
                let outcome = match outcome {
                    Ok(Ok(reply)) => Ok(reply),
                    Ok(Err(status)) => Err(status.message().to_string()),
                    Err(_) => Err(format!("no answer within {APPLY_TIMEOUT_MS} ms")),
                };
                (host.name.clone(), outcome)
            }
        });
    let answers = futures::future::join_all(asks).await;
    let mut reached = Vec::new();
    let mut missed = Vec::new();
    for (name, outcome) in answers {
        match outcome {
            Ok(reply) => reached.push(
                json!({"host": name, "generation": reply.generation, "changed": reply.changed}),
            ),
            Err(why) => missed.push(json!({"host": name, "error": why})),
        }
    }
    let json = json!({
        "office": code,
        "generation": next.generation,
        "added": changed,
        "bundles": bundles,
        "reached": reached,
        "missed": missed,
    });
    let mut text = format!(
        "office {} {} at generation {}; {} of {} running hosts have it",
        code,
        if changed { "added" } else { "already added" },
        next.generation,
        reached.len(),
        reached.len() + missed.len(),
    );
    for miss in &missed {
        text.push_str(&format!(
            "\n  not reached: {} ({}): run this command again once it is up",
            miss["host"].as_str().unwrap_or(""),
            miss["error"].as_str().unwrap_or("")
        ));
    }
    text.push_str(&format!(
        "\nnext: copy each new bundle to its machine and start it: {}",
        bundles.join(", ")
    ));
    let mut report = Report::new(json, text);
    report.ok = missed.is_empty();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(text: &str) -> Inventory {
        toml::from_str(text).unwrap()
    }

    /// A city, one county and two of its townships, three replicas, on six hosts at two sites.
    const GOOD: &str = r#"
region = "5306"
replicas = 3
[[host]]
name = "city-1"
site = "city"
address = "10.1.0.1"
offices = ["5306"]
[[host]]
name = "city-2"
site = "city"
address = "10.1.0.2"
offices = ["5306"]
[[host]]
name = "city-3"
site = "city"
address = "10.1.0.3"
offices = ["5306"]
[[host]]
name = "zy-1"
site = "zhaoyang"
address = "10.2.0.1"
offices = ["530602", "530602001", "530602002"]
[[host]]
name = "zy-2"
site = "zhaoyang"
address = "10.2.0.2"
offices = ["530602", "530602001", "530602002"]
[[host]]
name = "zy-3"
site = "zhaoyang"
address = "10.2.0.3"
offices = ["530602", "530602001", "530602002"]
api_port = 9101
"#;

    fn error(text: &str) -> String {
        manifest_from_inventory(&Topology::load(), &inventory(text), None, 1.0)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_inventory_becomes_a_manifest_with_its_sites_addresses_and_ports() {
        let m = manifest_from_inventory(&Topology::load(), &inventory(GOOD), None, 1.0).unwrap();
        let codes: Vec<&str> = m.offices.iter().map(|o| o.code.as_str()).collect();
        assert_eq!(codes, ["5306", "530602", "530602001", "530602002"]);
        let zy3 = m.host("zy-3").unwrap();
        assert_eq!(zy3.site.as_deref(), Some("zhaoyang"));
        assert_eq!(zy3.raft_addr, "10.2.0.3:7100");
        assert_eq!(zy3.api_addr, "10.2.0.3:9101");
        assert_eq!(zy3.http_addr.as_deref(), Some("10.2.0.3:7103"));
        let township = m.office("530602002").unwrap();
        assert_eq!(township.parent.as_deref(), Some("530602"));
        let hosts: Vec<&str> = township.members.iter().map(|m| m.host.as_str()).collect();
        assert_eq!(hosts, ["zy-1", "zy-2", "zy-3"]);
        assert_eq!(m.generation, 0);
        // --region agrees, or is refused.
        assert!(
            manifest_from_inventory(&Topology::load(), &inventory(GOOD), Some("5306"), 1.0).is_ok()
        );
        assert!(
            manifest_from_inventory(&Topology::load(), &inventory(GOOD), Some("5307"), 1.0)
                .unwrap_err()
                .to_string()
                .contains("differ")
        );
    }

    #[test]
    fn a_bad_inventory_is_refused_with_its_first_problem() {
        let err = error(&GOOD.replace("10.2.0.2", "10.2.0.1"));
        assert!(err.contains("duplicate address"), "{err}");
        let err = error(&GOOD.replace("\"530602002\"]", "\"530602999\"]"));
        assert!(err.contains("unknown office 530602999"), "{err}");
        let err = error(&GOOD.replace("name = \"zy-2\"", "name = \"zy-1\""));
        assert!(err.contains("listed twice"), "{err}");
        let err = error(&GOOD.replacen("offices = [\"5306\"]", "offices = []", 1));
        assert!(err.contains("carries no office"), "{err}");
        // An office on two hosts where three replicas are asked.
        let err = error(&GOOD.replacen("offices = [\"5306\"]", "offices = [\"530602\"]", 1));
        assert!(err.contains("replicas is 3"), "{err}");
        let err = error(&GOOD.replace("\"530602\", ", ""));
        assert!(err.contains("parent 530602 is carried by no host"), "{err}");
        let err = error(&GOOD.replace("\"530602002\"]", "\"530621001\"]"));
        assert!(err.contains("530621001"), "{err}");
        let err = error(&GOOD.replace("10.1.0.1", "ten.one"));
        assert!(err.contains("not an IP address"), "{err}");
        let err = error(&GOOD.replace("region = \"5306\"", "region = \"5307\""));
        assert!(err.contains("not in region 5307"), "{err}");
        let err = error(&GOOD.replace("replicas = 3", "replicas = 2"));
        assert!(err.contains("1, 3 or 5"), "{err}");
        let err = error(&GOOD.replace("city-1", "city_1"));
        assert!(err.contains("city_1"), "{err}");
        let err = error(
            &GOOD
                .replace("10.2.0.3", "10.1.0.1")
                .replace("api_port = 9101", "api_port = 7101"),
        );
        assert!(err.contains("duplicate address"), "{err}");
        let unknown_field: Result<Inventory, _> =
            toml::from_str(&GOOD.replace("site = \"city\"", "sight = \"city\""));
        assert!(unknown_field.is_err());
    }

    #[test]
    fn an_office_is_added_under_a_parent_of_the_federation_only() {
        let topology = Topology::load();
        let m = manifest_from_inventory(&topology, &inventory(GOOD), None, 1.0).unwrap();
        let hosts = |prefix: &str| -> Vec<(String, String)> {
            (1..=3)
                .map(|i| (format!("{prefix}-{i}"), format!("10.3.0.{i}")))
                .collect()
        };
        let (next, changed) = with_office(
            &topology,
            &m,
            "530602003",
            &hosts("t3"),
            "taiping",
            &Ports::default(),
        )
        .unwrap();
        assert!(changed);
        assert_eq!(next.generation, 1);
        assert_eq!(
            next.office("530602003").unwrap().parent.as_deref(),
            Some("530602")
        );
        assert_eq!(next.host("t3-2").unwrap().api_addr, "10.3.0.2:7101");
        m.check_successor(&next).unwrap();
        // The same again changes nothing; other hosts for it are refused.
        let (again, changed) = with_office(
            &topology,
            &next,
            "530602003",
            &hosts("t3"),
            "taiping",
            &Ports::default(),
        )
        .unwrap();
        assert!(!changed);
        assert_eq!(again, next);
        let err = with_office(
            &topology,
            &next,
            "530602003",
            &hosts("t4"),
            "x",
            &Ports::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("already in this federation"), "{err}");
        let err = with_office(
            &topology,
            &m,
            "530602999",
            &hosts("t4"),
            "x",
            &Ports::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown office"), "{err}");
        let err = with_office(
            &topology,
            &m,
            "530621001",
            &hosts("t4"),
            "x",
            &Ports::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("parent 530621 is not in this federation"),
            "{err}"
        );
        let err = with_office(
            &topology,
            &m,
            "530602003",
            &hosts("zy")[..1],
            "x",
            &Ports::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs 3 hosts"), "{err}");
        let err = with_office(
            &topology,
            &m,
            "530602003",
            &hosts("zy"),
            "x",
            &Ports::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("already runs"), "{err}");
        // A new host on an address already in use.
        let clash: Vec<(String, String)> = (1..=3)
            .map(|i| (format!("t5-{i}"), format!("10.2.0.{i}")))
            .collect();
        assert!(with_office(&topology, &m, "530602003", &clash, "x", &Ports::default()).is_err());
    }
}

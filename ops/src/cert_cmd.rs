//! `liandong cert rotate|revoke|list`: host certificates while the federation runs
//! (docs/operations.md, "Certificates").
//!
//! Rotate issues each host a new certificate (same host, same offices) from the federation CA in
//! `DIR/pki/` and writes it over the old one; every running host reloads it within a second or
//! two and presents it from then on, without a restart. With `--revoke-old` the command waits
//! until every answering host serves its new certificate, then revokes the old ones. Revoke
//! writes `DIR/pki/revoked.pem`, a revocation list signed by the CA; every host refuses a
//! revoked certificate within seconds, on new connections and on open ones.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use liandong_node::live_tls::{self, read_crl, serial_bytes, serial_text, write_crl};
use liandong_node::tls::{HostIdentity, Pki};
use serde_json::{json, Value};

use crate::client::{Federation, CERT_VALIDITY_DAYS, CLI_IDENTITY};
use crate::commands::Report;
use crate::layout::Layout;

/// `status` warns when a certificate expires within this many days.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
/// How long `rotate --revoke-old` waits for every answering host to serve its new certificate.
pub const ROTATE_WAIT_SECS: u64 = 30;
const DAY_MS: i64 = 86_400_000;

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Issue new certificates for hosts (all by default); running hosts reload them within
    /// seconds, without a restart.
    Rotate(RotateArgs),
    /// Revoke certificates by serial: every host refuses them within seconds.
    Revoke(RevokeArgs),
    /// Every certificate in the PKI folder: holder, serial, expiry, days left, revoked or not.
    List,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// Only this host (repeatable); default every host and the command line's own certificate.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Days the new certificates are valid.
    #[arg(long, default_value_t = CERT_VALIDITY_DAYS)]
    pub days: u32,
    /// Once every answering host serves its new certificate, revoke the old ones.
    #[arg(long)]
    pub revoke_old: bool,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// A certificate serial as `cert list` prints it (repeatable).
    #[arg(long = "serial", required = true)]
    pub serials: Vec<String>,
    /// Revoke even a certificate a host or the command line holds now (it is cut off at once).
    #[arg(long)]
    pub force: bool,
}

pub async fn run(layout: &Layout, command: CertCommand) -> anyhow::Result<Report> {
    match command {
        CertCommand::Rotate(args) => rotate(layout, &args).await,
        CertCommand::Revoke(args) => revoke(layout, &args).await,
        CertCommand::List => list(layout),
    }
}

fn pki_dir(layout: &Layout) -> std::path::PathBuf {
    liandong_node::host::pki_dir(&layout.manifest())
}

/// The federation CA, whose key `doing` (rotating, revoking) needs.
fn ca(dir: &Path, doing: &str) -> anyhow::Result<Pki> {
    Pki::load(dir).with_context(|| {
        format!(
            "{doing} needs the federation CA's key ({}/ca.key)",
            dir.display()
        )
    })
}

/// Serial and expiry (Unix ms) of holder `name`'s certificate in `dir`.
fn current(dir: &Path, name: &str) -> anyhow::Result<(String, i64)> {
    let identity = HostIdentity::load(dir, name)?;
    Ok(live_tls::serial_and_expiry(&identity.cert_pem)?)
}

async fn rotate(layout: &Layout, args: &RotateArgs) -> anyhow::Result<Report> {
    let manifest = liandong_node::manifest::Manifest::load(&layout.manifest())?;
    let dir = pki_dir(layout);
    let pki = ca(&dir, "rotating")?;
    let everyone = args.hosts.is_empty();
    for name in &args.hosts {
        if manifest.hosts.iter().all(|h| &h.name != name) {
            bail!("no host {name:?} in this federation (see `liandong status`)");
        }
    }
    // Issue every certificate first, so a bad request changes nothing.
    let mut issued = Vec::new();
    for host in manifest
        .hosts
        .iter()
        .filter(|h| everyone || args.hosts.contains(&h.name))
    {
        let (old, _) = current(&dir, &host.name)?;
        let identity = pki.issue_host(&host.name, &host.offices, args.days)?;
        issued.push((host.name.clone(), old, identity, false));
    }
    if everyone {
        let (old, _) = current(&dir, CLI_IDENTITY)?;
        let root: Vec<String> = manifest
            .root()
            .map(|o| o.code.clone())
            .into_iter()
            .collect();
        let identity = pki.issue_operator(CLI_IDENTITY, &root, args.days)?;
        issued.push((CLI_IDENTITY.to_string(), old, identity, true));
    }
    let mut rows = Vec::new();
    for (name, old, identity, _) in &issued {
        identity.write(&dir, name)?;
        let (new, not_after) = live_tls::serial_and_expiry(&identity.cert_pem)?;
        rows.push((name.clone(), old.clone(), new, not_after));
    }
    // Wait until every answering host serves its new certificate.
    let wanted: BTreeMap<String, String> = rows
        .iter()
        .filter(|(name, ..)| name != CLI_IDENTITY)
        .map(|(name, _, new, _)| (name.clone(), new.clone()))
        .collect();
    let federation = Federation::open(layout.clone())?;
    let deadline = Instant::now() + Duration::from_secs(ROTATE_WAIT_SECS);
    let (serving, not_answering) = loop {
        let mut serving = Vec::new();
        let mut not_answering = Vec::new();
        let mut behind = Vec::new();
        for (host, reply) in federation.statuses().await {
            let Some(new) = wanted.get(&host.name) else {
                continue;
            };
            match reply {
                None => not_answering.push(host.name.clone()),
                Some(reply) if &reply.certificate_serial == new => serving.push(host.name),
                Some(_) => behind.push(host.name.clone()),
            }
        }
        if behind.is_empty() {
            break (serving, not_answering);
        }
        if Instant::now() >= deadline {
            bail!(
                "new certificates written, but after {ROTATE_WAIT_SECS}s these hosts still serve \
                 their old ones: {} (see their logs in {}); nothing was revoked",
                behind.join(", "),
                layout.run_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut revoked = Vec::new();
    if args.revoke_old {
        let olds: Vec<String> = rows.iter().map(|(_, old, ..)| old.clone()).collect();
        let (_, number) = add_revocations(&dir, &pki, &olds)?;
        wait_for_revocations(&federation, number).await?;
        revoked = olds;
    }
    let json = json!({
        "rotated": rows.iter().map(|(name, old, new, not_after)| json!({
            "holder": name,
            "old_serial": old,
            "serial": new,
            "expires": liandong_domain::format_rfc3339(*not_after),
        })).collect::<Vec<Value>>(),
        "serving_new": serving,
        "not_answering": not_answering,
        "revoked": revoked,
    });
    let mut lines = vec![format!(
        "{} certificates rotated; {} running hosts serve their new one{}",
        rows.len(),
        serving.len(),
        if not_answering.is_empty() {
            String::new()
        } else {
            format!(
                " (not answering, will load it at start: {})",
                not_answering.join(", ")
            )
        }
    )];
    let mut table = vec![["HOLDER", "OLD SERIAL", "NEW SERIAL", "EXPIRES"]
        .map(String::from)
        .to_vec()];
    for (name, old, new, not_after) in &rows {
        table.push(vec![
            name.clone(),
            old.clone(),
            new.clone(),
            liandong_domain::format_rfc3339(*not_after),
        ]);
    }
    lines.extend(crate::view::table(&table));
    if args.revoke_old {
        lines.push(format!(
            "{} old certificates revoked; every running host refuses them now",
            revoked.len()
        ));
    }
    Ok(Report::new(json, lines.join("\n")))
}

/// Adds `serials` to the revocation list and writes it: how many were new, and the list's
/// number.
fn add_revocations(dir: &Path, pki: &Pki, serials: &[String]) -> anyhow::Result<(usize, u64)> {
    let (mut all, number) = read_crl(dir, &pki.ca_cert_pem)?;
    let before = all.len();
    for serial in serials {
        let bytes = serial_bytes(serial).ok_or_else(|| {
            anyhow!(
                "{serial:?} is not a certificate serial (hex, as `liandong cert list` prints it)"
            )
        })?;
        if !all.contains(&bytes) {
            all.push(bytes);
        }
    }
    all.sort();
    let crl = live_tls::make_crl(pki, &all, number + 1)?;
    write_crl(dir, &crl)?;
    Ok((all.len() - before, number + 1))
}

/// Waits until every answering host honours revocation list `number`; the hosts that do.
async fn wait_for_revocations(federation: &Federation, number: u64) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(ROTATE_WAIT_SECS);
    loop {
        let mut honouring = Vec::new();
        let mut behind = Vec::new();
        for (host, reply) in federation.statuses().await {
            match reply {
                Some(reply) if reply.revocation_list_number >= number => honouring.push(host.name),
                Some(_) => behind.push(host.name),
                None => {}
            }
        }
        if behind.is_empty() {
            return Ok(honouring);
        }
        if Instant::now() >= deadline {
            bail!(
                "the revocation list is written, but after {ROTATE_WAIT_SECS}s these hosts have                  not loaded it: {} (see their logs in {})",
                behind.join(", "),
                federation.layout.run_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn revoke(layout: &Layout, args: &RevokeArgs) -> anyhow::Result<Report> {
    let dir = pki_dir(layout);
    let pki = ca(&dir, "revoking")?;
    let held = holders(&dir)?;
    let mut serials = Vec::new();
    for serial in &args.serials {
        let bytes = serial_bytes(serial).ok_or_else(|| {
            anyhow!(
                "{serial:?} is not a certificate serial (hex, as `liandong cert list` prints it)"
            )
        })?;
        let canonical = serial_text(&bytes);
        if let Some((holder, ..)) = held.iter().find(|(_, s, ..)| *s == canonical) {
            if !args.force {
                bail!(
                    "{canonical} is {holder}'s current certificate: revoking it cuts {holder} off \
                     now. Rotate first (liandong cert rotate --host {holder} --revoke-old), or add \
                     --force"
                );
            }
        }
        serials.push(canonical);
    }
    let (added, number) = add_revocations(&dir, &pki, &serials)?;
    let own = current(&dir, CLI_IDENTITY)?.0;
    let honouring = if serials.contains(&own) {
        // The command line's own certificate is revoked: it cannot ask the hosts any more.
        Vec::new()
    } else {
        wait_for_revocations(&Federation::open(layout.clone())?, number).await?
    };
    let json = json!({
        "revoked": serials,
        "newly_revoked": added,
        "list_number": number,
        "hosts_honouring": honouring,
    });
    Ok(Report::new(
        json,
        format!(
            "{} serials revoked ({added} new, list {number}); {} running hosts refuse them now",
            serials.len(),
            honouring.len()
        ),
    ))
}

/// (holder, serial, expiry ms, kind) of every certificate in the PKI folder.
fn holders(dir: &Path) -> anyhow::Result<Vec<(String, String, i64)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pem"))
        else {
            continue;
        };
        if name == "ca" || name == "revoked" || !path.with_extension("key").exists() {
            continue;
        }
        let (serial, not_after) = current(dir, name)?;
        out.push((name.to_string(), serial, not_after));
    }
    out.sort();
    Ok(out)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whole days from now to `not_after_ms` (negative once expired).
pub fn days_left(not_after_ms: i64) -> i64 {
    (not_after_ms - now_ms()).div_euclid(DAY_MS)
}

fn list(layout: &Layout) -> anyhow::Result<Report> {
    let dir = pki_dir(layout);
    let ca_pem = std::fs::read_to_string(dir.join(liandong_node::tls::CA_CERT_FILE))
        .with_context(|| format!("reading {}/ca.pem", dir.display()))?;
    let (revoked, _) = read_crl(&dir, &ca_pem)?;
    let revoked: Vec<String> = revoked.iter().map(|s| serial_text(s)).collect();
    let held = holders(&dir)?;
    let json = json!({
        "certificates": held.iter().map(|(name, serial, not_after)| json!({
            "holder": name,
            "serial": serial,
            "expires": liandong_domain::format_rfc3339(*not_after),
            "days_left": days_left(*not_after),
            "revoked": revoked.contains(serial),
        })).collect::<Vec<Value>>(),
        "revoked": revoked,
    });
    let mut table = vec![["HOLDER", "SERIAL", "EXPIRES", "DAYS LEFT", "STATE"]
        .map(String::from)
        .to_vec()];
    for (name, serial, not_after) in &held {
        let days = days_left(*not_after);
        let state = if revoked.contains(serial) {
            "REVOKED"
        } else if days < 0 {
            "EXPIRED"
        } else if days < EXPIRY_WARNING_DAYS {
            "expires soon: rotate"
        } else {
            "ok"
        };
        table.push(vec![
            name.clone(),
            serial.clone(),
            liandong_domain::format_rfc3339(*not_after),
            days.to_string(),
            state.to_string(),
        ]);
    }
    let mut lines = crate::view::table(&table);
    lines.push(format!("{} serials revoked", revoked.len()));
    Ok(Report::new(json, lines.join("\n")))
}

//! Faults for drills and chaos tests, named in `DIR/run/faults.json`; every host polls it.
//!
//! - **Office cuts** (`partitioned`, `one_way`): a partitioned office keeps its own Raft group
//!   whole (replication is not touched) but sends and accepts no federation message, as if its
//!   links to every other office were cut; a one-way cut `{from, to}` fails only deliveries from
//!   `from` to `to`, while `to` keeps delivering to `from`. Hosts carry several offices (a county
//!   and its townships), so links between offices are cut per office here, in the protocol layer,
//!   rather than per host in the kernel.
//! - **Host links** (`links`): a one-way fault on the link from one host to another (cut, a drop
//!   probability, a delay), applied by the *sender* to the requests it sends over that link: the
//!   raft client ([`crate::raft::network`]) and the outbox pump's deliveries
//!   ([`super::pump`]). A user-space fault needs no root, and this kernel has no netem; applying
//!   it where the request is made (rather than in a proxy) keeps one TLS connection per host
//!   pair, exactly as in production. Every fault is a bounded sleep or an early error inside the
//!   call that was going to be made anyway: no queue is added.
//! - **Clock skew** (`clock_skew_ms`): an offset per host, on top of the `LIANDONG_CLOCK_SKEW_MS`
//!   knob read at start, so a running host's clock can jump forward or back
//!   ([`crate::clock::Clock::set_runtime_skew`]).
//!
//! Every field defaults to empty, so a file written by an older build still reads. A file that
//! does not parse or validate is ignored by the hosts (they keep the faults they had and log
//! why); the command line validates before it writes, and writes atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::manifest::Manifest;
pub use crate::raft::network::{LinkAction, LinkOutcome};

/// How often a host re-reads the fault file.
pub const FAULTS_POLL_MS: u64 = 100;
/// The longest delay a link fault may add to one request: longer would only hold tasks (openraft
/// and the pump time calls out well before).
pub const LINK_DELAY_MAX_MS: u64 = 10_000;
/// The largest clock offset a drill may set, either way (a year): far beyond any drill, far from
/// overflowing a millisecond timestamp.
pub const CLOCK_SKEW_MAX_MS: i64 = 366 * 24 * 3_600 * 1_000;

/// A one-way cut between two offices: deliveries from `from` to `to` fail.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OfficeCut {
    pub from: String,
    pub to: String,
}

/// A one-way fault on the link from one host to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkFault {
    pub from_host: String,
    pub to_host: String,
    /// Every request from `from_host` to `to_host` fails (replies to requests the other way
    /// still flow: the host can receive but not send).
    #[serde(default)]
    pub cut: bool,
    /// The probability, 0 to 1, that one request is lost: with equal chance before the receiver
    /// sees it, or after (its reply is lost), as a lossy link loses either half of an exchange.
    #[serde(default)]
    pub drop: f64,
    /// Added before every request is sent, at most [`LINK_DELAY_MAX_MS`].
    #[serde(default)]
    pub delay_ms: u64,
}

impl LinkFault {
    /// True when the fault does nothing (drop 0, no delay, not cut).
    pub fn is_noop(&self) -> bool {
        !self.cut && self.drop == 0.0 && self.delay_ms == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// Offices cut off every other office.
    #[serde(default)]
    pub partitioned: BTreeSet<String>,
    /// One-way cuts between two offices.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub one_way: BTreeSet<OfficeCut>,
    /// One-way faults on host-to-host links (raft replication and federation deliveries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkFault>,
    /// A clock offset per host name, in milliseconds, applied while the host runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clock_skew_ms: BTreeMap<String, i64>,
}

impl FaultSpec {
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("faults.json")
    }

    /// The faults in the file; none when it is missing, unreadable or invalid (see
    /// [`FaultSpec::read`] for the reason).
    pub fn load(run_dir: &Path) -> FaultSpec {
        FaultSpec::read(run_dir).unwrap_or_default()
    }

    /// The faults in the file (none when it does not exist), or why it cannot be used.
    pub fn read(run_dir: &Path) -> Result<FaultSpec, String> {
        let path = FaultSpec::path(run_dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FaultSpec::default())
            }
            Err(error) => return Err(format!("reading {}: {error}", path.display())),
        };
        let spec: FaultSpec = serde_json::from_slice(&bytes)
            .map_err(|e| format!("parsing {}: {e}", path.display()))?;
        spec.validate(None)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(spec)
    }

    /// Checks every bound, and with a manifest that every office and host named exists.
    pub fn validate(&self, manifest: Option<&Manifest>) -> Result<(), String> {
        let office = |code: &str| match manifest {
            Some(m) if m.office(code).is_none() => {
                Err(format!("no office {code} in this federation"))
            }
            _ => Ok(()),
        };
        let host = |name: &str| match manifest {
            Some(m) if m.host(name).is_none() => Err(format!("no host {name} in this federation")),
            _ => Ok(()),
        };
        for code in &self.partitioned {
            office(code)?;
        }
        for cut in &self.one_way {
            office(&cut.from)?;
            office(&cut.to)?;
            if cut.from == cut.to {
                return Err(format!("a one-way cut from office {} to itself", cut.from));
            }
        }
        let mut seen = BTreeSet::new();
        for link in &self.links {
            host(&link.from_host)?;
            host(&link.to_host)?;
            if link.from_host == link.to_host {
                return Err(format!("a link from host {} to itself", link.from_host));
            }
            if !seen.insert((&link.from_host, &link.to_host)) {
                return Err(format!(
                    "link {} -> {} is named twice",
                    link.from_host, link.to_host
                ));
            }
            if !(link.drop.is_finite() && (0.0..=1.0).contains(&link.drop)) {
                return Err(format!(
                    "link {} -> {}: drop {} is not a probability from 0 to 1",
                    link.from_host, link.to_host, link.drop
                ));
            }
            if link.delay_ms > LINK_DELAY_MAX_MS {
                return Err(format!(
                    "link {} -> {}: delay {} ms is over {LINK_DELAY_MAX_MS} ms",
                    link.from_host, link.to_host, link.delay_ms
                ));
            }
        }
        for (name, skew) in &self.clock_skew_ms {
            host(name)?;
            if skew.unsigned_abs() > CLOCK_SKEW_MAX_MS.unsigned_abs() {
                return Err(format!(
                    "clock skew {skew} ms of host {name} is beyond ±{CLOCK_SKEW_MAX_MS} ms"
                ));
            }
        }
        Ok(())
    }

    /// Writes the file atomically (a reader sees the old faults or the new ones, never half).
    pub fn save(&self, run_dir: &Path) -> std::io::Result<()> {
        let path = FaultSpec::path(run_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, path)
    }

    /// True if deliveries from office `from` to office `to` fail.
    pub fn office_cut(&self, from: &str, to: &str) -> bool {
        self.partitioned.contains(from)
            || self.partitioned.contains(to)
            || self.one_way.contains(&OfficeCut {
                from: from.to_string(),
                to: to.to_string(),
            })
    }

    /// The fault on the link from host `from` to host `to`, if any.
    pub fn link(&self, from: &str, to: &str) -> Option<&LinkFault> {
        self.links
            .iter()
            .find(|l| l.from_host == from && l.to_host == to)
    }

    /// Sets (or, with a no-op fault, removes) the fault on one link.
    pub fn set_link(&mut self, fault: LinkFault) {
        self.links
            .retain(|l| !(l.from_host == fault.from_host && l.to_host == fault.to_host));
        if !fault.is_noop() {
            self.links.push(fault);
        }
        self.links
            .sort_by(|a, b| (&a.from_host, &a.to_host).cmp(&(&b.from_host, &b.to_host)));
    }
}

/// Decides what to do with one request on a link with this fault; `roll` is a uniform draw
/// from [0, 1) and `coin` a fair coin (random in production, fixed in tests).
pub fn decide(fault: Option<&LinkFault>, roll: f64, coin: bool) -> LinkAction {
    let Some(fault) = fault else {
        return LinkAction::Send;
    };
    if fault.cut {
        return LinkAction::Cut;
    }
    let then = if roll < fault.drop {
        if coin {
            LinkOutcome::DropRequest
        } else {
            LinkOutcome::DropReply
        }
    } else {
        LinkOutcome::Send
    };
    match (fault.delay_ms.min(LINK_DELAY_MAX_MS), then) {
        (0, LinkOutcome::Send) => LinkAction::Send,
        (0, LinkOutcome::DropRequest) => LinkAction::DropRequest,
        (0, LinkOutcome::DropReply) => LinkAction::DropReply,
        (ms, then) => LinkAction::Delay { ms, then },
    }
}

/// The faults in force on this host, refreshed from the fault file.
#[derive(Clone, Default)]
pub struct Faults {
    spec: Arc<RwLock<FaultSpec>>,
    /// This host's name (link faults and clock skew are per host); empty: none apply.
    host: Arc<str>,
    /// The clock that takes this host's runtime skew.
    clock: Option<Arc<Clock>>,
    /// The last reason the fault file was ignored, to log it once rather than every poll.
    last_error: Arc<RwLock<Option<String>>>,
    /// What the link faults did since the faults last changed (logged at each change).
    applied: Arc<Applied>,
}

/// Requests a host's link faults acted on: the evidence (in the host's log) that a drill's
/// faults really reached the traffic.
#[derive(Debug, Default)]
struct Applied {
    cut: AtomicU64,
    delayed: AtomicU64,
    dropped_requests: AtomicU64,
    dropped_replies: AtomicU64,
}

impl Applied {
    fn count(&self, action: LinkAction) {
        let counter = match action {
            LinkAction::Send => return,
            LinkAction::Cut => &self.cut,
            LinkAction::DropRequest => &self.dropped_requests,
            LinkAction::DropReply => &self.dropped_replies,
            LinkAction::Delay { then, .. } => {
                match then {
                    LinkOutcome::DropRequest => self.dropped_requests.fetch_add(1, Relaxed),
                    LinkOutcome::DropReply => self.dropped_replies.fetch_add(1, Relaxed),
                    LinkOutcome::Send => 0,
                };
                &self.delayed
            }
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Logs the counts (if any) and starts again from zero.
    fn report(&self, host: &str) {
        let taken = [
            self.cut.swap(0, Relaxed),
            self.delayed.swap(0, Relaxed),
            self.dropped_requests.swap(0, Relaxed),
            self.dropped_replies.swap(0, Relaxed),
        ];
        if taken.iter().any(|&n| n > 0) {
            let [cut, delayed, dropped_requests, dropped_replies] = taken;
            tracing::info!(
                host,
                cut,
                delayed,
                dropped_requests,
                dropped_replies,
                "link faults applied since the faults last changed"
            );
        }
    }
}

impl Faults {
    /// The faults of host `host`, whose clock takes the skew the file names for it.
    pub fn for_host(host: &str, clock: Arc<Clock>) -> Faults {
        Faults {
            host: Arc::from(host),
            clock: Some(clock),
            ..Faults::default()
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, FaultSpec> {
        self.spec
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True if deliveries from office `from` to office `to` are cut (both ways for a
    /// partitioned office, one way for a one-way cut).
    pub fn cut(&self, from: &str, to: &str) -> bool {
        self.read().office_cut(from, to)
    }

    /// What to do with one request this host is about to send to host `to_host`.
    pub fn link_action(&self, to_host: impl AsRef<str>) -> LinkAction {
        crate::raft::network::LinkFaults::link_action(self, to_host.as_ref())
    }

    /// Applies the faults in `spec` from now on.
    pub fn set(&self, spec: FaultSpec) {
        if let Some(clock) = &self.clock {
            let skew = spec.clock_skew_ms.get(&*self.host).copied().unwrap_or(0);
            clock.set_runtime_skew(skew);
        }
        let mut current = self
            .spec
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current != spec {
            self.applied.report(&self.host);
            *current = spec;
        }
    }

    /// Re-reads the fault file: applies it when valid, keeps the faults in force otherwise
    /// (logging why once).
    pub fn refresh(&self, run_dir: &Path) {
        match FaultSpec::read(run_dir) {
            Ok(spec) => {
                self.set(spec);
                *self
                    .last_error
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
            }
            Err(error) => {
                let mut last = self
                    .last_error
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if last.as_deref() != Some(error.as_str()) {
                    tracing::warn!(%error, "fault file ignored; the faults in force stay");
                    *last = Some(error);
                }
            }
        }
    }
}

impl crate::raft::network::LinkFaults for Faults {
    fn link_action(&self, to_host: &str) -> LinkAction {
        let spec = self.read();
        let fault = spec.link(&self.host, to_host);
        if fault.is_none() {
            return LinkAction::Send;
        }
        let roll = rand::random::<f64>();
        let coin = rand::random::<bool>();
        let action = decide(fault, roll, coin);
        self.applied.count(action);
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(drop: f64, delay_ms: u64, cut: bool) -> LinkFault {
        LinkFault {
            from_host: "a".into(),
            to_host: "b".into(),
            cut,
            drop,
            delay_ms,
        }
    }

    #[test]
    fn an_old_file_still_reads() {
        let spec: FaultSpec = serde_json::from_str(r#"{"partitioned":["5306"]}"#).unwrap();
        assert!(spec.office_cut("5306", "530602"));
        assert!(spec.office_cut("530602", "5306"));
        assert!(spec.links.is_empty() && spec.one_way.is_empty());
        assert_eq!(
            serde_json::to_string(&FaultSpec::default()).unwrap(),
            r#"{"partitioned":[]}"#
        );
    }

    #[test]
    fn a_one_way_cut_cuts_one_direction() {
        let mut spec = FaultSpec::default();
        spec.one_way.insert(OfficeCut {
            from: "530602001".into(),
            to: "530602".into(),
        });
        assert!(spec.office_cut("530602001", "530602"));
        assert!(!spec.office_cut("530602", "530602001"));
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            link(1.5, 0, false),
            link(-0.1, 0, false),
            link(f64::NAN, 0, false),
            link(0.0, LINK_DELAY_MAX_MS + 1, false),
        ] {
            let spec = FaultSpec {
                links: vec![bad],
                ..FaultSpec::default()
            };
            assert!(spec.validate(None).is_err(), "{spec:?}");
        }
        let mut same = link(0.1, 0, false);
        same.to_host = "a".into();
        let spec = FaultSpec {
            links: vec![same],
            ..FaultSpec::default()
        };
        assert!(spec.validate(None).is_err());
        let spec = FaultSpec {
            clock_skew_ms: [("a".to_string(), i64::MIN)].into(),
            ..FaultSpec::default()
        };
        assert!(spec.validate(None).is_err());
        let spec: Result<FaultSpec, _> = serde_json::from_str(r#"{"links":[{"drop":0.5}]}"#);
        assert!(spec.is_err(), "a link names both hosts");
    }

    #[test]
    fn an_invalid_file_is_refused_and_a_missing_one_is_no_fault() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(FaultSpec::read(dir.path()).unwrap(), FaultSpec::default());
        std::fs::write(
            FaultSpec::path(dir.path()),
            r#"{"links":[{"from_host":"a","to_host":"b","drop":7}]}"#,
        )
        .unwrap();
        assert!(FaultSpec::read(dir.path()).unwrap_err().contains("drop"));
        let faults = Faults::default();
        let good = FaultSpec {
            partitioned: ["5306".to_string()].into(),
            ..FaultSpec::default()
        };
        faults.set(good.clone());
        faults.refresh(dir.path());
        assert!(faults.cut("5306", "530602"), "the faults in force stay");
    }

    #[test]
    fn decisions_follow_the_fault() {
        assert_eq!(decide(None, 0.0, true), LinkAction::Send);
        assert_eq!(
            decide(Some(&link(0.0, 0, true)), 0.9, true),
            LinkAction::Cut
        );
        assert_eq!(
            decide(Some(&link(0.3, 0, false)), 0.2, true),
            LinkAction::DropRequest
        );
        assert_eq!(
            decide(Some(&link(0.3, 0, false)), 0.2, false),
            LinkAction::DropReply
        );
        assert_eq!(
            decide(Some(&link(0.3, 0, false)), 0.3, true),
            LinkAction::Send
        );
        assert_eq!(
            decide(Some(&link(0.3, 80, false)), 0.9, true),
            LinkAction::Delay {
                ms: 80,
                then: LinkOutcome::Send
            }
        );
    }

    #[test]
    fn setting_a_no_op_link_removes_it() {
        let mut spec = FaultSpec::default();
        spec.set_link(link(0.2, 10, false));
        spec.set_link(link(0.3, 0, false));
        assert_eq!(spec.links.len(), 1);
        assert_eq!(spec.links[0].drop, 0.3);
        spec.set_link(link(0.0, 0, false));
        assert!(spec.links.is_empty());
    }

    #[test]
    fn the_host_clock_takes_its_skew() {
        let clock = Arc::new(Clock::new(crate::clock::wall_ms(), 1.0, 0));
        let faults = Faults::for_host("h1", clock.clone());
        let before = clock.now();
        faults.set(FaultSpec {
            clock_skew_ms: [("h1".to_string(), 3_600_000)].into(),
            ..FaultSpec::default()
        });
        assert!(clock.now() >= before + 3_600_000);
        faults.set(FaultSpec::default());
        assert!(clock.now() < before + 3_600_000);
    }
}

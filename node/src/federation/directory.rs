//! Where each office's hosts answer (from the manifest), and which of them led last time: the
//! pump sends to the last known leader first.
//!
//! The directory follows the manifest while the host runs: `liandong federation add-office`
//! sends every host the new manifest (the `Sites.ApplyManifest` RPC) and [`Directory::update`]
//! takes its offices and hosts, so the pump reaches a new office, the federation service accepts
//! its batches, queries ask it and the public surface names it and sends its petitioners to it,
//! without a restart. Nothing else on a host keeps its own copy of the federation's offices: the
//! office API's membership slots are only of the offices the host carries, which a new manifest
//! never changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};

use crate::manifest::Manifest;

/// The offices' hosts and the hosts' names, as one manifest gives them.
#[derive(Default)]
struct Places {
    hosts: HashMap<String, Vec<String>>,
    /// The host name behind each API address (link faults are named by host).
    host_names: HashMap<String, String>,
    /// Office code → its name, for every office.
    names: BTreeMap<String, String>,
    /// Office code → the public address of a host carrying it (the first of its hosts that has
    /// one), where the public surface sends a petitioner of an office it does not carry.
    public_urls: BTreeMap<String, String>,
    /// The manifest's generation these places come from.
    generation: u64,
}

impl Places {
    fn of(manifest: &Manifest) -> Places {
        let hosts = manifest
            .offices
            .iter()
            .map(|office| {
                let addrs = office
                    .members
                    .iter()
                    .filter_map(|member| {
                        manifest
                            .host(&member.host)
                            .map(|host| host.api_addr.clone())
                    })
                    .collect();
                (office.code.clone(), addrs)
            })
            .collect();
        let host_names = manifest
            .hosts
            .iter()
            .map(|host| (host.api_addr.clone(), host.name.clone()))
            .collect();
        let names = manifest
            .offices
            .iter()
            .map(|office| (office.code.clone(), office.name.clone()))
            .collect();
        let public_urls = manifest
            .offices
            .iter()
            .filter_map(|office| {
                office.members.iter().find_map(|member| {
                    manifest
                        .host(&member.host)
                        .and_then(|host| host.http_addr.as_deref())
                        .map(|addr| (office.code.clone(), crate::public::url_of(addr)))
                })
            })
            .collect();
        Places {
            hosts,
            host_names,
            names,
            public_urls,
            generation: manifest.generation,
        }
    }
}

/// Where each office's hosts answer, and which of them led last time.
pub struct Directory {
    places: RwLock<Places>,
    leaders: Mutex<HashMap<String, String>>,
}

impl Directory {
    pub fn new(manifest: &Manifest) -> Directory {
        Directory {
            places: RwLock::new(Places::of(manifest)),
            leaders: Mutex::new(HashMap::new()),
        }
    }

    fn places(&self) -> std::sync::RwLockReadGuard<'_, Places> {
        self.places.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the offices and hosts of `manifest` (a successor of the one it was made from,
    /// checked by the caller). The leaders remembered stay: no office moved.
    pub fn update(&self, manifest: &Manifest) {
        let places = Places::of(manifest);
        *self.places.write().unwrap_or_else(|p| p.into_inner()) = places;
    }

    /// The generation of the manifest the directory follows.
    pub fn generation(&self) -> u64 {
        self.places().generation
    }

    /// The name of the host answering at `addr` (a leader hint may name an address the
    /// manifest does not know: no host link fault applies to it).
    pub fn host_name(&self, addr: &str) -> String {
        self.places()
            .host_names
            .get(addr)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `office` is in this federation.
    pub fn knows(&self, office: &str) -> bool {
        self.places().hosts.contains_key(office)
    }

    /// The office's name; empty for an office not in this federation.
    pub fn name(&self, office: &str) -> String {
        self.places().names.get(office).cloned().unwrap_or_default()
    }

    /// Every office of this federation, in code order.
    pub fn offices(&self) -> Vec<String> {
        self.places().names.keys().cloned().collect()
    }

    /// The public address of a host carrying `office`, if any of its hosts has one.
    pub fn public_url(&self, office: &str) -> Option<String> {
        self.places().public_urls.get(office).cloned()
    }

    /// The office's hosts, the last known leader first.
    pub fn candidates(&self, office: &str) -> Vec<String> {
        let mut addrs = self.places().hosts.get(office).cloned().unwrap_or_default();
        let leaders = self.leaders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(leader) = leaders.get(office) {
            addrs.retain(|addr| addr != leader);
            addrs.insert(0, leader.clone());
        }
        addrs
    }

    /// The offices of this federation whose parent is `office`, in code order.
    pub fn children(
        &self,
        office: &liandong_domain::OfficeCode,
    ) -> Vec<liandong_domain::OfficeCode> {
        let mut children: Vec<liandong_domain::OfficeCode> = self
            .places()
            .hosts
            .keys()
            .filter_map(|code| code.parse::<liandong_domain::OfficeCode>().ok())
            .filter(|code| code.parent_code().as_ref() == Some(office))
            .collect();
        children.sort();
        children
    }

    pub fn remember_leader(&self, office: &str, addr: &str) {
        let mut leaders = self.leaders.lock().unwrap_or_else(|p| p.into_inner());
        leaders.insert(office.to_string(), addr.to_string());
    }
}

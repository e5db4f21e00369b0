//! Where each office's hosts answer (from the manifest), and which of them led last time: the
//! pump sends to the last known leader first.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::manifest::Manifest;

/// Where each office's hosts answer, and which of them led last time.
pub struct Directory {
    hosts: HashMap<String, Vec<String>>,
    /// The host name behind each API address (link faults are named by host).
    host_names: HashMap<String, String>,
    leaders: Mutex<HashMap<String, String>>,
}

impl Directory {
    pub fn new(manifest: &Manifest) -> Directory {
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
        Directory {
            hosts,
            host_names,
            leaders: Mutex::new(HashMap::new()),
        }
    }

    /// The name of the host answering at `addr` (a leader hint may name an address the
    /// manifest does not know: no host link fault applies to it).
    pub fn host_name(&self, addr: &str) -> &str {
        self.host_names.get(addr).map(String::as_str).unwrap_or("")
    }

    /// Whether `office` is in this federation.
    pub fn knows(&self, office: &str) -> bool {
        self.hosts.contains_key(office)
    }

    /// The office's hosts, the last known leader first.
    pub fn candidates(&self, office: &str) -> Vec<String> {
        let mut addrs = self.hosts.get(office).cloned().unwrap_or_default();
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

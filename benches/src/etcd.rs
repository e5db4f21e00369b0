//! The etcd anchor: a 3-member etcd cluster (Debian's `etcd-server`, 3.4) on loopback, every
//! member with its own data folder and etcd's defaults (every write fsynced on a quorum),
//! written to with puts of Liandong's case documents through a Rust etcd client.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use etcdv3client::{pb, EtcdClient};
use serde_json::Value;

use crate::documents::Documents;
use crate::load::{Recorded, Session};
use crate::process::{find_on_path, first_line_of, wait_until, ChildGuard};

/// Members of the cluster.
pub const MEMBERS: u16 = 3;
/// How long a fresh cluster may take to elect a leader and take a write.
pub const READY_TIMEOUT_MS: u64 = 30_000;

/// A running etcd cluster in a temporary folder; every member stopped when dropped.
pub struct EtcdCluster {
    members: Vec<ChildGuard>,
    client_urls: Vec<String>,
    logs: Vec<PathBuf>,
    version: String,
    temp: tempfile::TempDir,
}

fn etcd_program() -> anyhow::Result<PathBuf> {
    find_on_path("etcd").ok_or_else(|| {
        anyhow!("etcd is missing: install Debian's etcd-server (apt-get install etcd-server etcd-client)")
    })
}

impl EtcdCluster {
    /// Starts [`MEMBERS`] members on 127.0.0.1, ports from `base_port` (two per member), and
    /// waits until the cluster takes a write.
    pub async fn start(base_port: u16) -> anyhow::Result<EtcdCluster> {
        let program = etcd_program()?;
        let temp = tempfile::Builder::new()
            .prefix("liandong-bench-etcd-")
            .tempdir()?;
        let client_url = |member: u16| format!("http://127.0.0.1:{}", base_port + 2 * member);
        let peer_url = |member: u16| format!("http://127.0.0.1:{}", base_port + 2 * member + 1);
        let initial_cluster = (0..MEMBERS)
            .map(|member| format!("m{member}={}", peer_url(member)))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            client_urls: (0..MEMBERS).map(client_url).collect(),
            logs: Vec::new(),
            version: first_line_of(&program, &["--version"]),
            temp,
        };
        for member in 0..MEMBERS {
            let root = cluster.temp.path();
            let log = root.join(format!("m{member}.log"));
            let mut command = Command::new(&program);
            command
                .arg(format!("--name=m{member}"))
                .arg(format!(
                    "--data-dir={}",
                    root.join(format!("m{member}")).display()
                ))
                .arg(format!("--listen-client-urls={}", client_url(member)))
                .arg(format!("--advertise-client-urls={}", client_url(member)))
                .arg(format!("--listen-peer-urls={}", peer_url(member)))
                .arg(format!(
                    "--initial-advertise-peer-urls={}",
                    peer_url(member)
                ))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=liandong-bench")
                .arg("--logger=zap")
                .arg("--log-level=warn");
            cluster.members.push(ChildGuard::spawn(
                &format!("etcd member m{member}"),
                &mut command,
                &log,
                libc::SIGTERM,
            )?);
            cluster.logs.push(log);
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let urls = self.client_urls.clone();
        let timeout = Duration::from_millis(READY_TIMEOUT_MS);
        wait_until("etcd cluster", timeout, || {
            let urls = urls.clone();
            let exited = self.check_members();
            async move {
                exited?;
                let mut client = EtcdClient::new(urls, None).await?;
                let put = pb::PutRequest {
                    key: b"bench/ready".to_vec(),
                    value: b"1".to_vec(),
                    ..Default::default()
                };
                client.kv.put(put).await?;
                Ok(true)
            }
        })
        .await
    }

    fn check_members(&mut self) -> anyhow::Result<()> {
        for (member, log) in self.members.iter_mut().zip(&self.logs) {
            member.check_running(log)?;
        }
        Ok(())
    }

    /// The leader's client URL, as `etcdctl endpoint status` reports it; the first member's
    /// when etcdctl is missing.
    pub fn leader_url(&self) -> anyhow::Result<String> {
        let Some(etcdctl) = find_on_path("etcdctl") else {
            eprintln!("etcdctl is missing (Debian's etcd-client): writing to the first member");
            return Ok(self.client_urls[0].clone());
        };
        let output = Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client_urls.join(",")))
            .args(["endpoint", "status", "-w", "json"])
            .output()
            .context("running etcdctl endpoint status")?;
        leader_from_status(&output.stdout)
    }

    pub fn setup(&self, leader: &str) -> String {
        format!(
            "{} ({MEMBERS} members on loopback, defaults: every write fsynced on a quorum; clients write to the leader {leader}, no TLS)",
            self.version
        )
    }
}

/// The leader's endpoint from `etcdctl endpoint status -w json`: the member whose id is the
/// leader id it reports.
fn leader_from_status(json: &[u8]) -> anyhow::Result<String> {
    let statuses: Vec<Value> = serde_json::from_slice(json).context("etcdctl's status JSON")?;
    statuses
        .iter()
        .find(|entry| {
            let status = &entry["Status"];
            status["leader"].as_u64().is_some()
                && status["leader"].as_u64() == status["header"]["member_id"].as_u64()
        })
        .and_then(|entry| entry["Endpoint"].as_str())
        .map(|endpoint| {
            if endpoint.starts_with("http") {
                endpoint.to_string()
            } else {
                format!("http://{endpoint}")
            }
        })
        .ok_or_else(|| anyhow!("no leader in etcdctl's status"))
}

/// One client putting case documents under unique keys.
pub struct EtcdSession {
    pub client: EtcdClient,
    pub documents: Arc<Documents>,
}

impl EtcdSession {
    /// One session per client, all sharing one connection to `url` (as Liandong's clients
    /// share one connection to its leader).
    pub async fn connect(
        url: &str,
        clients: usize,
        documents: &Arc<Documents>,
    ) -> anyhow::Result<Vec<EtcdSession>> {
        let client = EtcdClient::new(vec![url.to_string()], None).await?;
        Ok((0..clients)
            .map(|_| EtcdSession {
                client: client.clone(),
                documents: documents.clone(),
            })
            .collect())
    }
}

impl Session for EtcdSession {
    async fn write(&mut self, sequence: u64) -> anyhow::Result<Recorded> {
        let put = pb::PutRequest {
            key: format!("cases/{sequence:016x}").into_bytes(),
            value: self.documents.get(sequence).as_bytes().to_vec(),
            ..Default::default()
        };
        self.client.kv.put(put).await?;
        Ok(Recorded::ROUND_TRIP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leader is the member whose own id equals the leader id it reports (fails if a
    /// follower, or a member that knows no leader, were taken).
    #[test]
    fn leader_is_the_member_reporting_itself_as_leader() {
        let json = br#"[
          {"Endpoint":"127.0.0.1:2379","Status":{"header":{"member_id":11},"leader":0}},
          {"Endpoint":"127.0.0.1:2381","Status":{"header":{"member_id":12},"leader":13}},
          {"Endpoint":"127.0.0.1:2383","Status":{"header":{"member_id":13},"leader":13}}
        ]"#;
        assert_eq!(leader_from_status(json).unwrap(), "http://127.0.0.1:2383");
        assert!(
            leader_from_status(br#"[{"Endpoint":"a","Status":{"header":{"member_id":1}}}]"#)
                .is_err()
        );
    }
}

//! `liandong cert rotate|revoke|list` on real hosts: certificates rotated and the old ones
//! revoked while an officer keeps filing and moving cases (no write fails, no host restarts);
//! a revoked certificate refused on new connections and on a connection opened before it was
//! revoked; expiry warned by `status`; bad input refused with nothing changed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{verified, Fed, Writer};
use federation_proto::v1::admin_client::AdminClient;
use federation_proto::v1::StatusRequest;
use liandong_node::tls::{self, HostIdentity, Pki};
use serde_json::Value;

const TOWNSHIP: &str = "530602001";
const COUNTY: &str = "530602";

async fn status_over(
    fed: &Fed,
    addr: &str,
    identity: HostIdentity,
) -> Result<AdminClient<tonic::transport::Channel>, String> {
    let pki = Pki::load(&fed.dir.join("pki")).unwrap();
    let files = tls::TlsFiles {
        ca_pem: pki.ca_cert_pem,
        identity,
    };
    let channel = tonic::transport::Endpoint::from_shared(tls::https_uri(addr))
        .unwrap()
        .tls_config(tls::client_config(&files))
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut client = AdminClient::new(channel);
    client
        .status(StatusRequest::default())
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(client)
}

#[test]
fn certificates_rotate_and_old_ones_are_revoked_under_a_writer_without_a_failed_write() {
    let fed = Arc::new(common::small_federation());
    let pki_dir = fed.dir.join("pki");
    let manifest = liandong_node::manifest::Manifest::load(&fed.dir.join("manifest.json")).unwrap();
    let first_host = manifest.hosts[0].clone();
    // The command line's operator certificate: it may call Admin.Status, so a refusal after
    // rotation can only be the revocation.
    let old_identity = HostIdentity::load(&pki_dir, liandong_ops::client::CLI_IDENTITY).unwrap();
    let pids_before = common::host_pids(&fed);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(status_over(
            &fed,
            &first_host.api_addr,
            old_identity.clone(),
        ))
        .expect("the command line's certificate works before it is rotated");

    // An officer writes all along: files cases and moves half of them to the county.
    let writer = Writer::start(fed.clone(), TOWNSHIP, COUNTY);
    writer.wait_writes(3);

    let rotated = fed.json(&["cert", "rotate", "--revoke-old"]);
    let rows = rotated["rotated"].as_array().unwrap();
    assert_eq!(rows.len(), manifest.hosts.len() + 1, "{rotated}");
    assert_eq!(
        rotated["serving_new"].as_array().unwrap().len(),
        manifest.hosts.len(),
        "{rotated}"
    );
    assert_eq!(rotated["revoked"].as_array().unwrap().len(), rows.len());
    for row in rows {
        assert_ne!(row["old_serial"], row["serial"], "{row}");
    }
    writer.wait_writes(6);
    let (tried, failed) = writer.stop();
    assert!(
        failed.is_empty(),
        "{} of {tried} writes failed: {failed:?}",
        failed.len()
    );
    // No host restarted, and each serves the certificate rotate issued it.
    assert_eq!(common::host_pids(&fed), pids_before);
    let status = fed.json(&["status"]);
    for host in status["hosts"].as_array().unwrap() {
        let issued = rows
            .iter()
            .find(|row| row["holder"] == host["name"])
            .unwrap();
        assert_eq!(host["certificate"]["serial"], issued["serial"], "{host}");
        assert_eq!(host["certificate"]["expires_soon"], false, "{host}");
    }
    let listed = fed.json(&["cert", "list"]);
    assert_eq!(
        listed["revoked"].as_array().unwrap().len(),
        rows.len(),
        "{listed}"
    );
    verified(&fed);

    // The old certificate (valid dates, the CA's signature, an operator's: it worked above)
    // is refused now: it is revoked. (The client sees the TLS alert or a closed connection,
    // depending on when the server's refusal reaches it.)
    let refused = runtime.block_on(status_over(&fed, &first_host.api_addr, old_identity));
    assert!(refused.is_err(), "a revoked certificate was accepted");
}

#[test]
fn a_revoked_certificate_is_refused_on_a_connection_opened_before_and_on_new_ones() {
    let fed = common::small_federation();
    let pki_dir = fed.dir.join("pki");
    let manifest = liandong_node::manifest::Manifest::load(&fed.dir.join("manifest.json")).unwrap();
    let addr = manifest.hosts[0].api_addr.clone();
    let pki = Pki::load(&pki_dir).unwrap();
    let extra = pki
        .issue_operator("night-shift", &["5306".to_string()], 1)
        .unwrap();
    let (serial, _) = liandong_node::live_tls::serial_and_expiry(&extra.cert_pem).unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A second connection with the same certificate is checked in full again (no resumption
    // that would skip the revocation check or hide who calls).
    runtime
        .block_on(status_over(&fed, &addr, extra.clone()))
        .unwrap_or_else(|e| panic!("{e}{}", fed.logs_tail()));
    let mut open = runtime
        .block_on(status_over(&fed, &addr, extra.clone()))
        .expect("a valid operator certificate works before it is revoked");

    let revoked = fed.json(&["cert", "revoke", "--serial", &serial]);
    assert_eq!(revoked["newly_revoked"], 1, "{revoked}");

    // The open connection's next calls are refused within seconds.
    let start = Instant::now();
    let refusal = loop {
        match runtime.block_on(open.status(StatusRequest::default())) {
            Err(status) => break status,
            Ok(_) => {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "an open connection with a revoked certificate still works after 10 s"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(refusal.code(), tonic::Code::Unauthenticated, "{refusal:?}");
    assert!(refusal.message().contains("revoked"), "{refusal:?}");
    // And a new connection fails its handshake.
    let refused = runtime.block_on(status_over(&fed, &addr, extra));
    assert!(
        refused.is_err(),
        "a revoked certificate opened a new connection"
    );
    // Everyone else carries on.
    fed.ok(&["status"]);
}

#[test]
fn status_warns_of_a_certificate_near_expiry_and_bad_revocations_change_nothing() {
    let fed = common::small_federation();
    let pki_dir = fed.dir.join("pki");
    let manifest = liandong_node::manifest::Manifest::load(&fed.dir.join("manifest.json")).unwrap();
    let host = manifest.hosts[1].name.clone();

    let rotated = fed.json(&["cert", "rotate", "--host", &host, "--days", "10"]);
    assert_eq!(rotated["rotated"].as_array().unwrap().len(), 1, "{rotated}");
    let text = fed.ok(&["status"]);
    assert!(
        text.contains(&format!("WARNING: host {host}'s certificate")),
        "{text}"
    );
    let status = fed.json(&["status"]);
    let warned: Vec<&Value> = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["certificate"]["expires_soon"] == true)
        .collect();
    assert_eq!(warned.len(), 1, "{status}");
    assert_eq!(warned[0]["name"], host.as_str());

    // Revoking a certificate a host serves now, a malformed serial, an unknown host: refused,
    // and no revocation list appears.
    let current = HostIdentity::load(&pki_dir, &host).unwrap();
    let (serial, _) = liandong_node::live_tls::serial_and_expiry(&current.cert_pem).unwrap();
    let err = fed.fails(&["cert", "revoke", "--serial", &serial]);
    assert!(err.contains("current certificate"), "{err}");
    let err = fed.fails(&["cert", "revoke", "--serial", "not-hex"]);
    assert!(err.contains("not a certificate serial"), "{err}");
    let err = fed.fails(&["cert", "rotate", "--host", "no-such-host"]);
    assert!(err.contains("no host"), "{err}");
    assert!(!pki_dir.join("revoked.pem").exists());
    fed.ok(&["status"]);
}

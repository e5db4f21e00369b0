//! Mutual TLS between real tonic servers and clients: a host certificate from the federation CA
//! gets in and is identified by the offices it names; no certificate, a foreign CA's certificate
//! and an expired certificate are refused at the handshake, and a client refuses a server whose
//! certificate is not from its CA.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use federation_proto::v1::admin_client::AdminClient;
use federation_proto::v1::admin_server::{Admin, AdminServer};
use federation_proto::v1::{DumpReply, DumpRequest, StatusReply, StatusRequest};
use liandong_node::tls::{
    client_config, https_uri, peer_offices, server_config, HostIdentity, Pki, TlsFiles,
    OFFICES_PER_CERTIFICATE_MAX, TLS_DOMAIN,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Server};
use tonic::{Request, Response, Status};

/// Long enough for a handshake on a loaded machine, short enough that a hang fails the test.
const CALL_TIMEOUT_MS: u64 = 5_000;
const DAY: Duration = Duration::from_secs(86_400);

/// Answers `status` with the offices the caller's certificate names, joined by ','.
struct PeerEcho;

#[tonic::async_trait]
impl Admin for PeerEcho {
    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let peer = peer_offices(&request)?;
        Ok(Response::new(StatusReply {
            certificate_serial: String::new(),
            certificate_not_after_ms: 0,
            revocation_list_number: 0,
            manifest_generation: 0,
            host: peer.offices.join(","),
            pid: 0,
            replicas: vec![],
        }))
    }

    async fn dump(&self, _request: Request<DumpRequest>) -> Result<Response<DumpReply>, Status> {
        Err(Status::unimplemented("not part of this test"))
    }
}

struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl TestServer {
    async fn start(files: &TlsFiles) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = Server::builder()
            .tls_config(server_config(files))
            .unwrap()
            .add_service(AdminServer::new(PeerEcho))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async {
                    let _ = stopped.await;
                },
            );
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(tokio::spawn(serve)),
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

fn offices(codes: &[&str]) -> Vec<String> {
    codes.iter().map(|c| c.to_string()).collect()
}

fn files(pki: &Pki, identity: HostIdentity) -> TlsFiles {
    TlsFiles {
        ca_pem: pki.ca_cert_pem.clone(),
        identity,
    }
}

fn host_files(pki: &Pki, host: &str, codes: &[&str]) -> TlsFiles {
    files(pki, pki.issue_host(host, &offices(codes), 30).unwrap())
}

/// One `status` call over a fresh TLS channel: the offices the server saw, or why it failed.
async fn status(addr: SocketAddr, tls: ClientTlsConfig) -> Result<String, String> {
    let channel = Endpoint::from_shared(https_uri(&addr.to_string()))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_millis(CALL_TIMEOUT_MS))
        .timeout(Duration::from_millis(CALL_TIMEOUT_MS))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    AdminClient::new(channel)
        .status(StatusRequest::default())
        .await
        .map(|reply| reply.into_inner().host)
        .map_err(|status| format!("call: {status}"))
}

/// The TLS handshake failed for `reason` (a rustls alert or error name), as opposed to a
/// service answering with an error status.
fn assert_handshake_failed(result: Result<String, String>, reason: &str) {
    match result {
        Ok(seen) => panic!("the handshake succeeded (server saw offices {seen:?})"),
        Err(e) => assert!(e.contains(reason), "expected {reason}, got: {e}"),
    }
}

/// `bad` is refused by a server of `pki` during the handshake for `reason`, and the server still
/// serves a good client afterwards.
async fn assert_refused(pki: &Pki, bad: ClientTlsConfig, reason: &str) {
    let server = TestServer::start(&host_files(pki, "server", &["5306"])).await;
    assert_handshake_failed(status(server.addr, bad).await, reason);
    let good = client_config(&host_files(pki, "good", &["530602"]));
    assert_eq!(status(server.addr, good).await.unwrap(), "530602");
    server.stop().await;
}

#[tokio::test]
async fn a_host_of_the_federation_gets_in_and_is_known_by_its_offices() {
    let pki = Pki::generate("test federation").unwrap();
    let server = TestServer::start(&host_files(&pki, "h5306-1", &["5306"])).await;
    let client = client_config(&host_files(&pki, "h530602-1", &["530602001", "530602"]));
    assert_eq!(
        status(server.addr, client).await.unwrap(),
        "530602,530602001"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let pki = Pki::generate("test federation").unwrap();
    let anonymous = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_cert_pem))
        .domain_name(TLS_DOMAIN);
    assert_refused(&pki, anonymous, "CertificateRequired").await;
}

#[tokio::test]
async fn a_client_with_a_foreign_ca_certificate_is_refused() {
    let pki = Pki::generate("test federation").unwrap();
    let foreign = Pki::generate("foreign federation").unwrap();
    // It trusts our CA (so the server side is fine) but presents a certificate of another CA.
    let impostor = files(
        &pki,
        foreign
            .issue_host("h530602-1", &offices(&["530602"]), 30)
            .unwrap(),
    );
    assert_refused(&pki, client_config(&impostor), "UnknownCA").await;
}

#[tokio::test]
async fn a_client_with_an_expired_certificate_is_refused() {
    let pki = Pki::generate("test federation").unwrap();
    let now = SystemTime::now();
    let expired = pki
        .issue_host_with_validity(
            "h530602-1",
            &offices(&["530602"]),
            now - 30 * DAY,
            now - DAY,
        )
        .unwrap();
    assert_refused(
        &pki,
        client_config(&files(&pki, expired)),
        "CertificateExpired",
    )
    .await;
}

#[tokio::test]
async fn a_plaintext_client_is_refused() {
    let pki = Pki::generate("test federation").unwrap();
    let server = TestServer::start(&host_files(&pki, "server", &["5306"])).await;
    let result = async {
        let channel = Endpoint::from_shared(format!("http://{}", server.addr))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_millis(CALL_TIMEOUT_MS))
            .timeout(Duration::from_millis(CALL_TIMEOUT_MS))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        AdminClient::new(channel)
            .status(StatusRequest::default())
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    assert!(result.is_err(), "plaintext client got in: {result:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_refuses_a_server_whose_certificate_is_from_a_foreign_ca() {
    let pki = Pki::generate("test federation").unwrap();
    let foreign = Pki::generate("foreign federation").unwrap();
    // The impostor server would accept our client (it trusts our CA), but it cannot prove itself.
    let impostor = files(
        &pki,
        foreign
            .issue_host("h5306-1", &offices(&["5306"]), 30)
            .unwrap(),
    );
    let server = TestServer::start(&impostor).await;
    let client = client_config(&host_files(&pki, "h530602-1", &["530602"]));
    assert_handshake_failed(status(server.addr, client).await, "UnknownIssuer");
    server.stop().await;
}

#[tokio::test]
async fn a_client_refuses_a_server_whose_certificate_has_expired() {
    let pki = Pki::generate("test federation").unwrap();
    let now = SystemTime::now();
    let expired = pki
        .issue_host_with_validity("h5306-1", &offices(&["5306"]), now - 30 * DAY, now - DAY)
        .unwrap();
    let server = TestServer::start(&files(&pki, expired)).await;
    let client = client_config(&host_files(&pki, "h530602-1", &["530602"]));
    assert_handshake_failed(status(server.addr, client).await, "Expired");
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_naming_the_most_offices_allowed_still_fits_a_handshake() {
    let pki = Pki::generate("test federation").unwrap();
    let many: Vec<String> = (0..OFFICES_PER_CERTIFICATE_MAX)
        .map(|i| format!("53{i:07}"))
        .collect();
    let big = files(&pki, pki.issue_host("h53-big", &many, 30).unwrap());
    // Both directions: the big certificate as a server's and as a client's.
    let server = TestServer::start(&big).await;
    let seen = status(server.addr, client_config(&big)).await.unwrap();
    assert_eq!(seen.split(',').count(), OFFICES_PER_CERTIFICATE_MAX);
    server.stop().await;
}

#[tokio::test]
async fn a_request_without_tls_has_no_peer_identity() {
    let status = peer_offices(&Request::new(())).unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

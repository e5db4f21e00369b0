//! Certificates a running host reloads without a restart, and the revocations it honours.
//!
//! `liandong cert rotate` writes new `<host>.pem` / `<host>.key` files into the PKI folder, and
//! `liandong cert revoke` writes `revoked.pem`, a certificate revocation list signed by the
//! federation CA. A host polls those files every [`RELOAD_POLL_MS`]:
//!
//! - **Its own certificate.** A new pair that checks out ([`TlsFiles::check`]: the key is the
//!   certificate's, the CA signed it, it is valid now) is served to the next TLS handshake (a
//!   rustls certificate resolver, [`LiveTls`]) and presented on the host's next outgoing
//!   connections (the [`Transport`] drops its connections and dials again). A pair that does
//!   not check out (half written, foreign, expired) is refused with a warning, and the host
//!   keeps serving the certificate it has.
//! - **Revocations.** A CRL whose signature the CA's key verifies replaces the revoked serials.
//!   A revoked certificate fails every new handshake ([`RevocationAwareVerifier`]) and every
//!   request on a connection opened before the revocation ([`crate::tls::peer_offices`] asks
//!   [`is_revoked`] on each call), so revocation takes effect within one poll.
//!
//! The CA itself is not reloaded: a new CA means a new federation (docs/operations.md).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::raft::network::Transport;
use crate::tls::{self, HostIdentity, TlsError, TlsFiles, CA_CERT_FILE, HANDSHAKE_TIMEOUT_MS};

/// How often a host looks at its certificate files and the revocation list.
pub const RELOAD_POLL_MS: u64 = 1_000;
/// The revocation list's file name in the PKI folder (a PEM `X509 CRL` signed by the CA).
pub const REVOKED_FILE: &str = "revoked.pem";
/// The most serials a revocation list may hold (a federation issues a few per host and year).
pub const REVOKED_SERIALS_MAX: usize = 100_000;
/// TLS handshakes one listener runs at once; connections beyond are closed at once, so a flood
/// of sockets that never finish a handshake cannot grow a host without bound.
pub const HANDSHAKES_IN_FLIGHT_MAX: usize = 256;
/// Finished handshakes waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// The revoked serials this process honours (lowercase hex, colon-separated as
/// [`serial_of_der`] prints them).
fn revoked() -> &'static RwLock<Arc<HashSet<String>>> {
    static REVOKED: OnceLock<RwLock<Arc<HashSet<String>>>> = OnceLock::new();
    REVOKED.get_or_init(RwLock::default)
}

/// Whether this process holds certificate serial `serial` revoked.
pub fn is_revoked(serial: &str) -> bool {
    revoked()
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .contains(serial)
}

fn set_revoked(serials: HashSet<String>) {
    *revoked()
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(serials);
}

/// The serial of a DER certificate, as `liandong cert list` prints it (`3a:0f:...`).
pub fn serial_of_der(der: &[u8]) -> Option<String> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, cert)| cert.tbs_certificate.raw_serial_as_string())
}

/// The serial and end of validity (Unix ms) of the first certificate of a PEM file.
pub fn serial_and_expiry(pem: &str) -> Result<(String, i64), TlsError> {
    let bad = |reason: String| TlsError::BadCertificate {
        what: "certificate".into(),
        reason,
    };
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let cert = block.parse_x509().map_err(|e| bad(e.to_string()))?;
    Ok((
        cert.tbs_certificate.raw_serial_as_string(),
        cert.validity().not_after.timestamp().saturating_mul(1000),
    ))
}

/// The serials a CRL (PEM) revokes, once its signature checks against the CA certificate.
pub fn parse_crl(crl_pem: &str, ca_pem: &str) -> Result<HashSet<String>, TlsError> {
    let bad = |reason: String| TlsError::BadCertificate {
        what: REVOKED_FILE.into(),
        reason,
    };
    let (_, block) =
        x509_parser::pem::parse_x509_pem(crl_pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    if block.label != "X509 CRL" {
        return Err(bad(format!("a {} block, not an X509 CRL", block.label)));
    }
    let (_, crl) = x509_parser::parse_x509_crl(&block.contents).map_err(|e| bad(e.to_string()))?;
    let (_, ca_block) =
        x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let ca = ca_block.parse_x509().map_err(|e| bad(e.to_string()))?;
    crl.verify_signature(ca.public_key())
        .map_err(|_| bad("not signed by the federation CA".into()))?;
    let serials: HashSet<String> = crl
        .iter_revoked_certificates()
        .map(|revoked| revoked.raw_serial_as_string())
        .collect();
    if serials.len() > REVOKED_SERIALS_MAX {
        return Err(bad(format!(
            "{} serials, more than {REVOKED_SERIALS_MAX}",
            serials.len()
        )));
    }
    Ok(serials)
}

/// The bytes of a serial as `liandong cert list` prints it (`3a:0f:...`, colons optional), or
/// None when it is not one (empty, not hex, longer than the 20 bytes RFC 5280 allows).
pub fn serial_bytes(text: &str) -> Option<Vec<u8>> {
    let hex_digits: String = text.trim().chars().filter(|c| *c != ':').collect();
    if hex_digits.is_empty() || hex_digits.len() > 40 {
        return None;
    }
    let padded = if hex_digits.len() % 2 == 1 {
        format!("0{hex_digits}")
    } else {
        hex_digits
    };
    hex::decode(padded.to_ascii_lowercase()).ok()
}

/// The serial's canonical text (lowercase hex pairs joined by colons).
pub fn serial_text(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A revocation list (PEM) signed by the federation CA revoking `serials` (each a serial's
/// bytes), numbered `number` (each new list one more than the last).
pub fn make_crl(pki: &tls::Pki, serials: &[Vec<u8>], number: u64) -> Result<String, TlsError> {
    let bad = |reason: String| TlsError::BadCertificate {
        what: REVOKED_FILE.into(),
        reason,
    };
    if serials.len() > REVOKED_SERIALS_MAX {
        return Err(bad(format!("more than {REVOKED_SERIALS_MAX} serials")));
    }
    let key = rcgen::KeyPair::from_pem(&pki.ca_key_pem).map_err(|e| TlsError::BadKey {
        what: tls::CA_KEY_FILE.into(),
        reason: e.to_string(),
    })?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&pki.ca_cert_pem, key).map_err(|e| {
        TlsError::BadCertificate {
            what: CA_CERT_FILE.into(),
            reason: e.to_string(),
        }
    })?;
    let now = time::OffsetDateTime::now_utc();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: now + time::Duration::days(i64::from(tls::CA_VALIDITY_DAYS)),
        crl_number: rcgen::SerialNumber::from(number.to_be_bytes().to_vec()),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|serial| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(serial.clone()),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer).map_err(|e| bad(e.to_string()))?;
    crl.pem().map_err(|e| bad(e.to_string()))
}

/// The serials (as bytes) and number of the revocation list in `dir`, if there is one.
pub fn read_crl(dir: &Path, ca_pem: &str) -> Result<(Vec<Vec<u8>>, u64), TlsError> {
    let path = dir.join(REVOKED_FILE);
    if !path.exists() {
        return Ok((Vec::new(), 0));
    }
    let text = tls::read_pem(&path)?;
    let serials = parse_crl(&text, ca_pem)?;
    let number = crl_number(&text);
    let mut bytes: Vec<Vec<u8>> = serials.iter().filter_map(|s| serial_bytes(s)).collect();
    bytes.sort();
    Ok((bytes, number))
}

/// The number of a revocation list (PEM) already checked by [`parse_crl`]; 0 if it has none.
fn crl_number(crl_pem: &str) -> u64 {
    x509_parser::pem::parse_x509_pem(crl_pem.as_bytes())
        .ok()
        .and_then(|(_, block)| {
            let (_, crl) = x509_parser::parse_x509_crl(&block.contents).ok()?;
            match crl.crl_number()?.to_u64_digits().as_slice() {
                [] => Some(0),
                [one] => Some(*one),
                _ => None,
            }
        })
        .unwrap_or(0)
}

/// Writes the revocation list (0644: it is public) atomically.
pub fn write_crl(dir: &Path, crl_pem: &str) -> Result<(), TlsError> {
    tls::write_atomic(&dir.join(REVOKED_FILE), crl_pem, 0o644)
}

/// What a host serves now.
struct Current {
    identity: HostIdentity,
    key: Arc<CertifiedKey>,
    serial: String,
    not_after_ms: i64,
}

/// A host's certificate as it is now, reloaded from the PKI folder while the host runs.
pub struct LiveTls {
    dir: PathBuf,
    host: String,
    ca_pem: String,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Current>>,
    /// The revocation list last read (its text), to apply it once.
    crl_seen: RwLock<Option<String>>,
    /// The number of the revocation list in force (0: none).
    crl_number: std::sync::atomic::AtomicU64,
    /// The last refused file contents, to warn once per distinct refusal.
    refused: RwLock<Option<String>>,
}

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTls")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl LiveTls {
    /// The host's certificate as [`TlsFiles::load`] read it at start, and the revocation list if
    /// there is one (a list that does not check out stops the start: a host must not come up
    /// honouring fewer revocations than the operator made).
    pub fn start(dir: &Path, host: &str, files: &TlsFiles) -> Result<Arc<LiveTls>, TlsError> {
        tls::install_crypto_provider();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = current_of(&provider, &files.identity)?;
        let live = Arc::new(LiveTls {
            dir: dir.to_path_buf(),
            host: host.to_string(),
            ca_pem: files.ca_pem.clone(),
            provider,
            current: RwLock::new(Arc::new(current)),
            crl_seen: RwLock::new(None),
            crl_number: std::sync::atomic::AtomicU64::new(0),
            refused: RwLock::new(None),
        });
        live.load_revocations()?;
        Ok(live)
    }

    fn now(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The serial of the certificate served now.
    pub fn serial(&self) -> String {
        self.now().serial.clone()
    }

    /// When the certificate served now expires (Unix ms).
    pub fn not_after_ms(&self) -> i64 {
        self.now().not_after_ms
    }

    /// The number of the revocation list this host honours (0: none yet).
    pub fn revocation_list_number(&self) -> u64 {
        self.crl_number.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The TLS files as they are now: the client side's configuration is made from them.
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            ca_pem: self.ca_pem.clone(),
            identity: self.now().identity.clone(),
        }
    }

    /// Server side of mutual TLS, reloading: the certificate comes from this host's current
    /// one at every handshake; clients must present a certificate the CA signed, valid now and
    /// not revoked.
    /// The configuration of the host's public surface (`crate::public`): this certificate,
    /// reloaded as above, and no client certificate asked for.
    pub fn public_server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        Ok(
            rustls::ServerConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::BadCertificate {
                    what: "TLS versions".into(),
                    reason: e.to_string(),
                })?
                .with_no_client_auth()
                .with_cert_resolver(self.clone()),
        )
    }

    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            let der = der.map_err(|e| TlsError::BadCertificate {
                what: CA_CERT_FILE.into(),
                reason: e.to_string(),
            })?;
            roots.add(der).map_err(|e| TlsError::BadCertificate {
                what: CA_CERT_FILE.into(),
                reason: e.to_string(),
            })?;
        }
        let webpki =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| TlsError::BadCertificate {
                    what: CA_CERT_FILE.into(),
                    reason: e.to_string(),
                })?;
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::BadCertificate {
                what: "TLS versions".into(),
                reason: e.to_string(),
            })?
            .with_client_cert_verifier(Arc::new(RevocationAwareVerifier { inner: webpki }))
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        // No session resumption: a resumed session skips the client certificate's checks (a
        // certificate revoked since would get back in) and rustls gives no peer certificate for
        // it, so the services could not tell who calls. Connections are long-lived; the cost
        // is one full handshake per connection.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(config)
    }

    /// Reads the certificate files and the revocation list once; returns whether the served
    /// certificate changed. Refusals are logged (once per distinct content) and change nothing.
    pub fn poll(&self) -> bool {
        if let Err(e) = self.load_revocations() {
            self.warn_once(format!(
                "revocation list refused, keeping the last one: {e}"
            ));
        }
        let identity = match HostIdentity::load(&self.dir, &self.host) {
            Ok(identity) => identity,
            Err(e) => {
                self.warn_once(format!(
                    "certificate files unreadable, keeping the served one: {e}"
                ));
                return false;
            }
        };
        if identity.cert_pem == self.now().identity.cert_pem
            && identity.key_pem == self.now().identity.key_pem
        {
            return false;
        }
        let files = TlsFiles {
            ca_pem: self.ca_pem.clone(),
            identity: identity.clone(),
        };
        let checked = files
            .check(SystemTime::now())
            .and_then(|()| current_of(&self.provider, &identity));
        let next = match checked {
            Ok(next) => next,
            Err(e) => {
                self.warn_once(format!(
                    "new certificate refused, keeping the served one: {e}"
                ));
                return false;
            }
        };
        if is_revoked(&next.serial) {
            self.warn_once(format!(
                "new certificate {} is revoked, keeping the served one",
                next.serial
            ));
            return false;
        }
        let was = self.serial();
        tracing::info!(host = %self.host, was = %was, now = %next.serial, "certificate reloaded");
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
        true
    }

    fn load_revocations(&self) -> Result<(), TlsError> {
        let path = self.dir.join(REVOKED_FILE);
        if !path.exists() {
            return Ok(());
        }
        let text = tls::read_pem(&path)?;
        if self
            .crl_seen
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_deref()
            == Some(text.as_str())
        {
            return Ok(());
        }
        let serials = parse_crl(&text, &self.ca_pem)?;
        let number = crl_number(&text);
        tracing::info!(host = %self.host, revoked = serials.len(), number, "revocation list loaded");
        set_revoked(serials);
        self.crl_number
            .store(number, std::sync::atomic::Ordering::SeqCst);
        *self
            .crl_seen
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(text);
        Ok(())
    }

    fn warn_once(&self, message: String) {
        let mut refused = self
            .refused
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if refused.as_deref() != Some(message.as_str()) {
            tracing::warn!(host = %self.host, "{message}");
            *refused = Some(message);
        }
    }

    /// Polls once and, when the certificate changed, hands it to `transport`, which dials its
    /// peers again presenting it (run every [`RELOAD_POLL_MS`] by the host).
    pub fn reload(&self, transport: &Transport) {
        if self.poll() {
            transport.reload_tls(tls::client_config(&self.files()));
        }
    }
}

fn current_of(provider: &CryptoProvider, identity: &HostIdentity) -> Result<Current, TlsError> {
    let bad_key = |reason: String| TlsError::BadKey {
        what: "host key".into(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::BadCertificate {
                what: "host certificate".into(),
                reason: e.to_string(),
            })?;
    let key_der = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| bad_key(e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| bad_key(e.to_string()))?;
    let (serial, not_after_ms) = serial_and_expiry(&identity.cert_pem)?;
    Ok(Current {
        identity: identity.clone(),
        key: Arc::new(CertifiedKey::new(chain, signing)),
        serial,
        not_after_ms,
    })
}

impl ResolvesServerCert for LiveTls {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.now().key.clone())
    }
}

/// The CA's verification, then the revocation list.
#[derive(Debug)]
struct RevocationAwareVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for RevocationAwareVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match serial_of_der(end_entity) {
            Some(serial) if is_revoked(&serial) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            )),
            _ => Ok(verified),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// TLS connections accepted on `listener` with `config`: each handshake runs on its own task,
/// within [`HANDSHAKE_TIMEOUT_MS`] and at most [`HANDSHAKES_IN_FLIGHT_MAX`] at once; failed
/// handshakes are dropped (rustls has told the peer why). The accepting task ends when the
/// server drops the stream.
pub fn incoming(
    listener: TcpListener,
    config: rustls::ServerConfig,
) -> impl futures::Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    let permits = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT_MAX));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tx.closed() => return,
            };
            let (socket, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "too many TLS handshakes in flight; connection closed");
                continue;
            };
            let _ = socket.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(
                    Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
                    acceptor.accept(socket),
                )
                .await;
                match handshake {
                    Ok(Ok(stream)) => {
                        // The permit is held until the server takes the connection, so
                        // finished handshakes waiting for it are bounded too.
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
                drop(permit);
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::Pki;

    fn offices() -> Vec<String> {
        vec!["5306".to_string()]
    }

    fn serial_of(identity: &HostIdentity) -> String {
        serial_and_expiry(&identity.cert_pem).unwrap().0
    }

    #[test]
    fn a_revocation_list_carries_its_serials_and_only_the_federation_ca_may_sign_one() {
        let pki = Pki::generate("test").unwrap();
        let host = pki.issue_host("h1", &offices(), 30).unwrap();
        let serial = serial_of(&host);
        let crl = make_crl(&pki, &[serial_bytes(&serial).unwrap()], 1).unwrap();
        let serials = parse_crl(&crl, &pki.ca_cert_pem).unwrap();
        assert_eq!(serials, HashSet::from([serial]));

        let other = Pki::generate("other").unwrap();
        assert!(parse_crl(&crl, &other.ca_cert_pem).is_err());
        let foreign = make_crl(&other, &[vec![1, 2, 3]], 1).unwrap();
        assert!(parse_crl(&foreign, &pki.ca_cert_pem).is_err());
        assert!(parse_crl(&pki.ca_cert_pem, &pki.ca_cert_pem).is_err());
    }

    #[test]
    fn serials_parse_with_or_without_colons_and_bad_ones_are_refused() {
        assert_eq!(serial_bytes("3a:0f"), Some(vec![0x3a, 0x0f]));
        assert_eq!(serial_bytes("3A0F"), Some(vec![0x3a, 0x0f]));
        assert_eq!(serial_bytes("a0f"), Some(vec![0x0a, 0x0f]));
        assert_eq!(serial_text(&[0x3a, 0x0f]), "3a:0f");
        for bad in ["", ":", "xyz", "12:zz", &"1".repeat(41)] {
            assert_eq!(serial_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_host_reloads_a_good_new_certificate_and_keeps_its_own_when_the_new_one_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate("test").unwrap();
        pki.write(dir.path()).unwrap();
        let first = pki.issue_host("h1", &offices(), 30).unwrap();
        first.write(dir.path(), "h1").unwrap();
        let files = TlsFiles::load(dir.path(), "h1").unwrap();
        let live = LiveTls::start(dir.path(), "h1", &files).unwrap();
        assert_eq!(live.serial(), serial_of(&first));
        assert!(!live.poll(), "nothing changed");

        let second = pki.issue_host("h1", &offices(), 30).unwrap();
        second.write(dir.path(), "h1").unwrap();
        assert!(live.poll());
        assert_eq!(live.serial(), serial_of(&second));
        assert_eq!(live.files().identity.cert_pem, second.cert_pem);

        // A certificate with another certificate's key (a half-finished copy): refused.
        let third = pki.issue_host("h1", &offices(), 30).unwrap();
        HostIdentity {
            cert_pem: third.cert_pem.clone(),
            key_pem: second.key_pem.clone(),
        }
        .write(dir.path(), "h1")
        .unwrap();
        assert!(!live.poll());
        assert_eq!(live.serial(), serial_of(&second));

        // One from a foreign CA: refused.
        let foreign = Pki::generate("other")
            .unwrap()
            .issue_host("h1", &offices(), 30)
            .unwrap();
        foreign.write(dir.path(), "h1").unwrap();
        assert!(!live.poll());
        assert_eq!(live.serial(), serial_of(&second));

        // A revoked one: refused, even though the CA signed it.
        let crl = make_crl(&pki, &[serial_bytes(&serial_of(&third)).unwrap()], 1).unwrap();
        write_crl(dir.path(), &crl).unwrap();
        third.write(dir.path(), "h1").unwrap();
        assert!(!live.poll());
        assert!(is_revoked(&serial_of(&third)));
        assert_eq!(live.serial(), serial_of(&second));

        // The numbered list reads back.
        let (serials, number) = read_crl(dir.path(), &pki.ca_cert_pem).unwrap();
        assert_eq!(number, 1);
        assert_eq!(serials, vec![serial_bytes(&serial_of(&third)).unwrap()]);
    }
}

//! The federation's PKI and mutual TLS: one CA per federation, one certificate per host.
//!
//! Every Liandong port speaks gRPC over mutual TLS (docs/design.md, "Federation protocol"). The
//! `liandong` CLI makes the federation CA and the host certificates here with rcgen; a host
//! certificate names the host (`liandong://host/<name>`) and every office the host carries
//! (`liandong://office/<code>`) as URI SANs, so a receiving service can refuse a peer that speaks
//! for an office its certificate does not name. Expired, foreign-CA and client-less connections are
//! refused by rustls during the handshake, before any service sees a request.
//!
//! Files (all PEM) in the federation's PKI folder: `ca.pem` and `ca.key` (the key only the CLI
//! reads, mode 0600), and `<host>.pem` / `<host>.key` (mode 0600) for each host.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use liandong_domain::OfficeCode;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

/// The CA certificate's file name in the PKI folder.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key's file name: only `liandong` (which issues certificates) reads it.
pub const CA_KEY_FILE: &str = "ca.key";
/// How long a federation CA is valid: the federation's lifetime; hosts rotate their own
/// certificates many times within it.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// The longest a host certificate may be valid: never longer than the CA that signs it.
pub const HOST_VALIDITY_DAYS_MAX: u32 = CA_VALIDITY_DAYS;
/// The name every client checks the server certificate against. Every host listens on
/// 127.0.0.1 and every host certificate names `localhost`, so one name serves all hosts; which
/// host answered is then read from its certificate's `liandong://host/` URI, not from DNS.
pub const TLS_DOMAIN: &str = "localhost";
/// Certificates start this long before the moment they are made, so a peer whose clock runs a
/// little behind does not refuse a brand-new certificate as "not yet valid".
pub const CLOCK_SKEW_ALLOWANCE_SECS: u64 = 3_600;
/// How long a TLS handshake may take on either side: a peer that opens a socket and stalls must
/// not hold a server task (or a client call) forever.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// The most offices one host certificate may name. rustls refuses handshake messages over 64 KiB
/// and each office URI SAN costs about 29 bytes: a certificate naming 2,000 nine-digit offices is
/// 58.5 KiB (DER), under that limit with about 6 KiB to spare (tested in `tests/mtls.rs`).
pub const OFFICES_PER_CERTIFICATE_MAX: usize = 2_000;
/// The longest PEM file read from disk: a certificate or key is a few KiB (a host certificate
/// with [`OFFICES_PER_CERTIFICATE_MAX`] offices about 80 KiB); anything far larger is not ours.
pub const PEM_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Reads of a certificate and key that do not match before that is an error (see
/// [`TlsFiles::load`]).
pub const PAIR_READ_ATTEMPTS: u32 = 20;
/// The pause between two such reads.
pub const PAIR_READ_PAUSE_MS: u64 = 50;
/// The longest federation name put in the CA's subject (X.520 upper bound for an organisation).
pub const FEDERATION_NAME_CHARS_MAX: usize = 64;

/// URI SAN prefix naming an office the certificate's host carries.
const OFFICE_URI_PREFIX: &str = "liandong://office/";
/// URI SAN prefix naming the certificate's host.
const HOST_URI_PREFIX: &str = "liandong://host/";
/// URI SAN prefix naming an office (with its subtree) an operator certificate may operate:
/// status, drills, membership, dumps. It never speaks for the office as a host does.
const OPERATOR_URI_PREFIX: &str = "liandong://operator/";
/// URI SAN prefix naming the person or team an operator certificate belongs to (audit log).
const OPERATOR_NAME_URI_PREFIX: &str = "liandong://operator-name/";

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateKind {
    /// A host: Raft traffic and federation messages for the offices it carries.
    Host,
    /// An operator: operations (status, drills, membership, dumps) on the offices it names and
    /// their subtrees. Never officer work, never a host's.
    Operator,
}

/// Everything that can go wrong making, saving, loading or checking certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: larger than {PEM_FILE_BYTES_MAX} bytes, not a PEM certificate or key")]
    FileTooLarge { path: PathBuf },
    #[error("{what}: not a valid PEM certificate ({reason})")]
    BadCertificate { what: String, reason: String },
    #[error("{what}: not a valid PEM private key ({reason})")]
    BadKey { what: String, reason: String },
    #[error("{what}: the private key does not belong to the certificate")]
    KeyMismatch { what: String },
    #[error("{what}: not a CA certificate")]
    NotCa { what: String },
    #[error("{what}: not signed by this federation's CA")]
    NotSignedByCa { what: String },
    #[error("{what}: not valid now (valid from {not_before} to {not_after})")]
    NotValidNow {
        what: String,
        not_before: String,
        not_after: String,
    },
    #[error("bad host name {0:?}: use letters, digits and '-' (DNS labels), at most 63 per label")]
    BadHostName(String),
    #[error("bad office code {0:?}: a division code has 2, 4, 6 or 9 digits")]
    BadOfficeCode(String),
    #[error(
        "too many offices for one certificate: {count} (at most {OFFICES_PER_CERTIFICATE_MAX})"
    )]
    TooManyOffices { count: usize },
    #[error("bad federation name {0:?}: 1 to {FEDERATION_NAME_CHARS_MAX} characters, no control characters")]
    BadFederationName(String),
    #[error("bad validity: {0}")]
    BadValidity(String),
}

/// The federation CA: its certificate (given to every host and client as the only trust anchor)
/// and its private key (kept by the operator's `liandong` to issue host certificates).
#[derive(Clone)]
pub struct Pki {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
}

impl std::fmt::Debug for Pki {
    /// The key stays out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

/// The validity of a certificate of `what` ("a host", "an operator") valid from now for
/// `valid_days`: refused outside 1 to [`HOST_VALIDITY_DAYS_MAX`].
fn checked_validity(
    what: &str,
    valid_days: u32,
) -> Result<(OffsetDateTime, OffsetDateTime), TlsError> {
    if valid_days == 0 || valid_days > HOST_VALIDITY_DAYS_MAX {
        return Err(TlsError::BadValidity(format!(
            "{what} certificate is valid for 1 to {HOST_VALIDITY_DAYS_MAX} days, not {valid_days}"
        )));
    }
    validity_from_now(valid_days)
}

impl Pki {
    /// A new federation CA named after the federation (its subject's organisation), valid for
    /// [`CA_VALIDITY_DAYS`]. It may sign host certificates only (path length 0), so a stolen host
    /// key cannot mint further certificates.
    pub fn generate(federation_name: &str) -> Result<Pki, TlsError> {
        let chars = federation_name.chars().count();
        if chars == 0
            || chars > FEDERATION_NAME_CHARS_MAX
            || federation_name.chars().any(char::is_control)
        {
            return Err(TlsError::BadFederationName(federation_name.to_string()));
        }
        let (not_before, not_after) = validity_from_now(CA_VALIDITY_DAYS)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Liandong federation CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, federation_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Pki {
            ca_cert_pem: cert.pem(),
            ca_key_pem: key.serialize_pem(),
        })
    }

    /// A certificate for host `host` carrying `offices`, valid from now (less
    /// [`CLOCK_SKEW_ALLOWANCE_SECS`]) for `valid_days` (1 to [`HOST_VALIDITY_DAYS_MAX`]).
    pub fn issue_host(
        &self,
        host: &str,
        offices: &[String],
        valid_days: u32,
    ) -> Result<HostIdentity, TlsError> {
        self.issue_host_at(host, offices, valid_days, &[])
    }

    /// An operator certificate for `name`, operating `offices` (each with its subtree), valid
    /// from now for `valid_days`. `liandong federation init` gives the command line one for the
    /// federation's root office.
    pub fn issue_operator(
        &self,
        name: &str,
        offices: &[String],
        valid_days: u32,
    ) -> Result<HostIdentity, TlsError> {
        let (not_before, not_after) = checked_validity("an operator", valid_days)?;
        self.issue(
            name,
            offices,
            CertificateKind::Operator,
            not_before,
            not_after,
        )
    }

    /// A certificate for host `host` carrying `offices` that also names the IP `addresses` the
    /// host listens on (a host of a federation spread over machines, `federation init
    /// --inventory`), valid from now for `valid_days`.
    pub fn issue_host_at(
        &self,
        host: &str,
        offices: &[String],
        valid_days: u32,
        addresses: &[IpAddr],
    ) -> Result<HostIdentity, TlsError> {
        let (not_before, not_after) = checked_validity("a host", valid_days)?;
        self.issue_naming(
            host,
            offices,
            CertificateKind::Host,
            not_before,
            not_after,
            addresses,
        )
    }

    /// A host certificate valid exactly from `not_before` to `not_after`: for tests and drills
    /// that need a certificate already expired or not yet valid.
    pub fn issue_host_with_validity(
        &self,
        host: &str,
        offices: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<HostIdentity, TlsError> {
        if not_after <= not_before {
            return Err(TlsError::BadValidity(
                "not_after must come after not_before".into(),
            ));
        }
        self.issue(
            host,
            offices,
            CertificateKind::Host,
            OffsetDateTime::from(not_before),
            OffsetDateTime::from(not_after),
        )
    }

    /// Leaf certificate: `localhost`, the host name and 127.0.0.1 (so TLS name checks pass on a
    /// single machine), one URI per office plus one for the host (or, for an operator, one
    /// `operator` URI per office and its name), and both server and client authentication,
    /// because every host both serves and calls its peers.
    fn issue(
        &self,
        host: &str,
        offices: &[String],
        kind: CertificateKind,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<HostIdentity, TlsError> {
        self.issue_naming(host, offices, kind, not_before, not_after, &[])
    }

    /// [`Pki::issue`], with IP SANs for `addresses` besides 127.0.0.1.
    fn issue_naming(
        &self,
        host: &str,
        offices: &[String],
        kind: CertificateKind,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        addresses: &[IpAddr],
    ) -> Result<HostIdentity, TlsError> {
        check_host_name(host)?;
        let offices = checked_offices(offices)?;
        let ca_key = parse_key(&self.ca_key_pem, CA_KEY_FILE)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key).map_err(|e| {
            TlsError::BadCertificate {
                what: CA_CERT_FILE.into(),
                reason: e.to_string(),
            }
        })?;

        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, host);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let mut sans = vec![
            SanType::DnsName(ia5(TLS_DOMAIN)?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        if host != TLS_DOMAIN {
            sans.push(SanType::DnsName(ia5(host)?));
        }
        for address in addresses {
            if *address != IpAddr::V4(Ipv4Addr::LOCALHOST) {
                sans.push(SanType::IpAddress(*address));
            }
        }
        let (name_prefix, office_prefix) = match kind {
            CertificateKind::Host => (HOST_URI_PREFIX, OFFICE_URI_PREFIX),
            CertificateKind::Operator => (OPERATOR_NAME_URI_PREFIX, OPERATOR_URI_PREFIX),
        };
        sans.push(SanType::URI(ia5(&format!("{name_prefix}{host}"))?));
        for office in &offices {
            sans.push(SanType::URI(ia5(&format!("{office_prefix}{office}"))?));
        }
        params.subject_alt_names = sans;

        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(HostIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Saves `ca.pem` (0644) and `ca.key` (0600) in `dir` (created if missing), each atomically.
    pub fn write(&self, dir: &Path) -> Result<(), TlsError> {
        create_dir(dir)?;
        write_atomic(&dir.join(CA_CERT_FILE), &self.ca_cert_pem, 0o644)?;
        write_atomic(&dir.join(CA_KEY_FILE), &self.ca_key_pem, 0o600)
    }

    /// Reads `ca.pem` and `ca.key` from `dir` and checks that the certificate is a CA and that the
    /// key is its own (a mismatched pair would sign certificates nobody accepts).
    pub fn load(dir: &Path) -> Result<Pki, TlsError> {
        let pki = Pki {
            ca_cert_pem: read_pem(&dir.join(CA_CERT_FILE))?,
            ca_key_pem: read_pem(&dir.join(CA_KEY_FILE))?,
        };
        with_cert(&pki.ca_cert_pem, CA_CERT_FILE, |ca| {
            if !ca.is_ca() {
                return Err(TlsError::NotCa {
                    what: CA_CERT_FILE.into(),
                });
            }
            check_key_matches(ca, &pki.ca_key_pem, CA_CERT_FILE)
        })?;
        Ok(pki)
    }
}

/// A host's certificate and private key: it presents them as a server and as a client.
#[derive(Clone)]
pub struct HostIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for HostIdentity {
    /// The key stays out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostIdentity").finish_non_exhaustive()
    }
}

impl HostIdentity {
    /// Saves `<host>.pem` and `<host>.key` in `dir` (created if missing), atomically, both 0600:
    /// the pair is one host's secret.
    pub fn write(&self, dir: &Path, host: &str) -> Result<(), TlsError> {
        check_host_name(host)?;
        create_dir(dir)?;
        write_atomic(&dir.join(format!("{host}.pem")), &self.cert_pem, 0o600)?;
        write_atomic(&dir.join(format!("{host}.key")), &self.key_pem, 0o600)
    }

    /// Reads `<host>.pem` and `<host>.key` from `dir` and checks that they belong together.
    pub fn load(dir: &Path, host: &str) -> Result<HostIdentity, TlsError> {
        check_host_name(host)?;
        let what = format!("{host}.pem");
        let identity = HostIdentity {
            cert_pem: read_pem(&dir.join(&what))?,
            key_pem: read_pem(&dir.join(format!("{host}.key")))?,
        };
        with_cert(&identity.cert_pem, &what, |cert| {
            check_key_matches(cert, &identity.key_pem, &what)
        })?;
        Ok(identity)
    }

    /// Who this certificate says it is: the host and offices in its URI SANs.
    pub fn peer_identity(&self) -> Result<PeerIdentity, TlsError> {
        with_cert(&self.cert_pem, "host certificate", |cert| {
            Ok(PeerIdentity::from_certificate(cert))
        })
    }
}

/// What a host (or the CLI) loads at start: the federation's CA certificate, its only trust
/// anchor, and its own identity.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_pem: String,
    pub identity: HostIdentity,
}

impl TlsFiles {
    /// Reads `ca.pem` and host `host`'s identity from `dir`, then [`TlsFiles::check`]s them now,
    /// so a host with an expired or foreign certificate fails at start with a clear reason rather
    /// than at every handshake.
    ///
    /// `liandong cert rotate` replaces a certificate and its key one file after the other: a
    /// pair read in between does not match, so a mismatch is read again a few times
    /// ([`PAIR_READ_ATTEMPTS`], [`PAIR_READ_PAUSE_MS`] apart) before it is an error.
    pub fn load(dir: &Path, host: &str) -> Result<TlsFiles, TlsError> {
        let mut attempt = 1;
        loop {
            // The identity's own load finds a torn pair first: it is read again as well.
            let loaded = HostIdentity::load(dir, host).and_then(|identity| {
                let files = TlsFiles {
                    ca_pem: read_pem(&dir.join(CA_CERT_FILE))?,
                    identity,
                };
                files.check(SystemTime::now()).map(|()| files)
            });
            match loaded {
                Err(TlsError::KeyMismatch { .. }) if attempt < PAIR_READ_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(PAIR_READ_PAUSE_MS));
                }
                other => return other,
            }
        }
    }

    /// The CA certificate is a CA; the identity's key is its certificate's; the certificate is
    /// signed by the CA and valid at `at`.
    pub fn check(&self, at: SystemTime) -> Result<(), TlsError> {
        with_cert(&self.ca_pem, CA_CERT_FILE, |ca| {
            if !ca.is_ca() {
                return Err(TlsError::NotCa {
                    what: CA_CERT_FILE.into(),
                });
            }
            let what = "host certificate";
            with_cert(&self.identity.cert_pem, what, |cert| {
                check_key_matches(cert, &self.identity.key_pem, what)?;
                if cert.verify_signature(Some(ca.public_key())).is_err() {
                    return Err(TlsError::NotSignedByCa { what: what.into() });
                }
                check_valid_at(cert, what, at)
            })
        })
    }
}

/// Server side of mutual TLS: presents the host's identity and accepts only clients presenting a
/// certificate signed by the federation CA (and currently valid). Anything else fails the
/// handshake. PEM errors surface from `Server::tls_config`; [`TlsFiles::load`] catches them first.
pub fn server_config(files: &TlsFiles) -> ServerTlsConfig {
    install_crypto_provider();
    ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &files.identity.cert_pem,
            &files.identity.key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&files.ca_pem))
        .client_auth_optional(false)
        .timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS))
}

/// Client side of mutual TLS: trusts only the federation CA (no system roots), checks the server
/// certificate against [`TLS_DOMAIN`] and presents the host's identity. Use with an
/// `https://` URI ([`https_uri`]).
pub fn client_config(files: &TlsFiles) -> ClientTlsConfig {
    install_crypto_provider();
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&files.ca_pem))
        .identity(Identity::from_pem(
            &files.identity.cert_pem,
            &files.identity.key_pem,
        ))
        .domain_name(TLS_DOMAIN)
        .timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS))
}

/// The URI a client dials for `addr` ("127.0.0.1:7001") under TLS.
pub fn https_uri(addr: &str) -> String {
    format!("https://{addr}")
}

/// Selects rustls's ring provider for the whole process (idempotent; a provider installed
/// earlier wins). rustls would pick it from crate features alone, but only while exactly one
/// provider is compiled in; naming it keeps a new dependency from turning that into a panic.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing the same provider is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Who the peer of a request is, as its client certificate says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerIdentity {
    /// The host named by the certificate's `liandong://host/` URI, if any.
    pub host: Option<String>,
    /// The offices named by its `liandong://office/` URIs (well-formed codes only), sorted.
    pub offices: Vec<String>,
    /// An operator certificate's name (`liandong://operator-name/`), if any.
    pub operator: Option<String>,
    /// The offices an operator certificate may operate, each with its subtree (its
    /// `liandong://operator/` URIs, well-formed codes only), sorted.
    pub operates: Vec<String>,
}

impl PeerIdentity {
    /// The peer's certificate names `office` itself (not an ancestor or a descendant of it): a
    /// peer may speak only for offices it carries.
    pub fn speaks_for(&self, office: &str) -> bool {
        self.offices.iter().any(|o| o == office)
    }

    /// An operator certificate naming `office` or one of its ancestors.
    pub fn operates_office(&self, office: &OfficeCode) -> bool {
        self.operates.iter().any(|code| {
            code.parse::<OfficeCode>()
                .is_ok_and(|named| named.covers(office))
        })
    }

    /// The identity in a DER certificate (the first of a peer's chain).
    pub fn from_der(der: &[u8]) -> Result<PeerIdentity, TlsError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::BadCertificate {
                what: "peer certificate".into(),
                reason: e.to_string(),
            })?;
        Ok(PeerIdentity::from_certificate(&cert))
    }

    fn from_certificate(cert: &X509Certificate<'_>) -> PeerIdentity {
        let mut identity = PeerIdentity::default();
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return identity;
        };
        for name in &san.value.general_names {
            let GeneralName::URI(uri) = name else {
                continue;
            };
            if let Some(code) = uri.strip_prefix(OFFICE_URI_PREFIX) {
                if OfficeCode::from_str(code).is_ok() {
                    identity.offices.push(code.to_string());
                }
            } else if let Some(code) = uri.strip_prefix(OPERATOR_URI_PREFIX) {
                if OfficeCode::from_str(code).is_ok() {
                    identity.operates.push(code.to_string());
                }
            } else if let Some(host) = uri.strip_prefix(HOST_URI_PREFIX) {
                if identity.host.is_none() && check_host_name(host).is_ok() {
                    identity.host = Some(host.to_string());
                }
            } else if let Some(name) = uri.strip_prefix(OPERATOR_NAME_URI_PREFIX) {
                if identity.operator.is_none() && check_host_name(name).is_ok() {
                    identity.operator = Some(name.to_string());
                }
            }
        }
        for list in [&mut identity.offices, &mut identity.operates] {
            list.sort();
            list.dedup();
        }
        identity
    }
}

/// Why a request carries no usable client identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// No client certificate (plaintext, or a server not requiring one), or one that cannot be
    /// read.
    #[error("{0}")]
    Missing(String),
    /// A certificate revoked after its connection was opened (the handshake refuses revoked
    /// certificates on new connections): refused on its next call.
    #[error("certificate {0} is revoked")]
    Revoked(String),
}

impl From<PeerError> for Status {
    fn from(error: PeerError) -> Status {
        Status::unauthenticated(error.to_string())
    }
}

/// The identity in the client certificate of `request` (which the TLS handshake has already
/// verified against the federation CA), read with one parse of the certificate, unless it has
/// been revoked since.
pub fn peer<T>(request: &Request<T>) -> Result<PeerIdentity, PeerError> {
    let missing = || PeerError::Missing("no client certificate".into());
    let certs = request.peer_certs().ok_or_else(missing)?;
    let first = certs.first().ok_or_else(missing)?;
    let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref())
        .map_err(|e| PeerError::Missing(format!("peer certificate: {e}")))?;
    let serial = cert.tbs_certificate.raw_serial_as_string();
    if crate::live_tls::is_revoked(&serial) {
        return Err(PeerError::Revoked(serial));
    }
    Ok(PeerIdentity::from_certificate(&cert))
}

/// [`peer`], refusals as `unauthenticated`.
pub fn peer_offices<T>(request: &Request<T>) -> Result<PeerIdentity, Status> {
    peer(request).map_err(Status::from)
}

/// A host name is used as a DNS SAN and as a file name: DNS labels only, so neither a TLS
/// library nor a path (`../`) can be surprised by it.
pub fn check_host_name(host: &str) -> Result<(), TlsError> {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(TlsError::BadHostName(host.to_string()));
    }
    Ok(())
}

/// Well-formed, distinct, sorted office codes, at most [`OFFICES_PER_CERTIFICATE_MAX`].
fn checked_offices(offices: &[String]) -> Result<Vec<String>, TlsError> {
    let mut codes = Vec::with_capacity(offices.len());
    for office in offices {
        OfficeCode::from_str(office).map_err(|_| TlsError::BadOfficeCode(office.clone()))?;
        codes.push(office.clone());
    }
    codes.sort();
    codes.dedup();
    if codes.len() > OFFICES_PER_CERTIFICATE_MAX {
        return Err(TlsError::TooManyOffices { count: codes.len() });
    }
    Ok(codes)
}

fn ia5(text: &str) -> Result<rcgen::string::Ia5String, TlsError> {
    Ok(rcgen::string::Ia5String::try_from(text)?)
}

/// (now - skew allowance, now + days).
fn validity_from_now(days: u32) -> Result<(OffsetDateTime, OffsetDateTime), TlsError> {
    let now = OffsetDateTime::now_utc();
    let skew = time::Duration::seconds(CLOCK_SKEW_ALLOWANCE_SECS as i64);
    let span = time::Duration::days(i64::from(days));
    match (now.checked_sub(skew), now.checked_add(span)) {
        (Some(not_before), Some(not_after)) => Ok((not_before, not_after)),
        _ => Err(TlsError::BadValidity(format!(
            "{days} days from now is out of range"
        ))),
    }
}

fn parse_key(pem: &str, what: &str) -> Result<KeyPair, TlsError> {
    KeyPair::from_pem(pem).map_err(|e| TlsError::BadKey {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// Runs `f` on the first certificate of `pem`.
fn with_cert<R>(
    pem: &str,
    what: &str,
    f: impl FnOnce(&X509Certificate<'_>) -> Result<R, TlsError>,
) -> Result<R, TlsError> {
    let bad = |reason: String| TlsError::BadCertificate {
        what: what.to_string(),
        reason,
    };
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    if block.label != "CERTIFICATE" {
        return Err(bad(format!("a {} block", block.label)));
    }
    let cert = block.parse_x509().map_err(|e| bad(e.to_string()))?;
    f(&cert)
}

fn check_key_matches(
    cert: &X509Certificate<'_>,
    key_pem: &str,
    what: &str,
) -> Result<(), TlsError> {
    let key = parse_key(key_pem, what)?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(TlsError::KeyMismatch {
            what: what.to_string(),
        });
    }
    Ok(())
}

fn check_valid_at(cert: &X509Certificate<'_>, what: &str, at: SystemTime) -> Result<(), TlsError> {
    let secs = match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let validity = cert.validity();
    let valid = ASN1Time::from_timestamp(secs).is_ok_and(|t| validity.is_valid_at(t));
    if !valid {
        return Err(TlsError::NotValidNow {
            what: what.to_string(),
            not_before: validity.not_before.to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Reads a PEM file of at most [`PEM_FILE_BYTES_MAX`] bytes.
pub(crate) fn read_pem(path: &Path) -> Result<String, TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(PEM_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(TlsError::FileTooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

/// Temporary file (created with `mode`), fsync, rename: a crash leaves the old file or the new
/// one, never half a key, and a key is never readable by others even for a moment.
pub(crate) fn write_atomic(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    // The umask may have narrowed `mode`; set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offices(codes: &[&str]) -> Vec<String> {
        codes.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn a_certificate_speaks_only_for_the_offices_it_names() {
        let pki = Pki::generate("test").unwrap();
        let id = pki
            .issue_host("h530602-1", &offices(&["530602001", "530602"]), 30)
            .unwrap();
        let peer = id.peer_identity().unwrap();
        assert_eq!(peer.host.as_deref(), Some("h530602-1"));
        assert_eq!(peer.offices, offices(&["530602", "530602001"]));
        assert!(peer.speaks_for("530602"));
        assert!(peer.speaks_for("530602001"));
        assert!(!peer.speaks_for("5306"), "an ancestor is not named");
        assert!(!peer.speaks_for("530602002"), "a sibling is not named");
        assert!(!peer.speaks_for(""));
    }

    #[test]
    fn an_operator_certificate_operates_subtrees_and_speaks_for_no_office() {
        let pki = Pki::generate("test").unwrap();
        let id = pki
            .issue_operator("county-it", &offices(&["530602"]), 30)
            .unwrap();
        let peer = id.peer_identity().unwrap();
        assert_eq!(peer.operator.as_deref(), Some("county-it"));
        assert_eq!(peer.host, None);
        assert!(peer.offices.is_empty(), "an operator carries no office");
        assert!(!peer.speaks_for("530602"));
        let code = |c: &str| c.parse::<OfficeCode>().unwrap();
        assert!(peer.operates_office(&code("530602")));
        assert!(peer.operates_office(&code("530602001")), "its subtree");
        assert!(!peer.operates_office(&code("5306")), "not its ancestor");
        assert!(!peer.operates_office(&code("530621")), "not a sibling");
        let host = pki.issue_host("h1", &offices(&["530602"]), 30).unwrap();
        let host = host.peer_identity().unwrap();
        assert!(host.operates.is_empty() && host.operator.is_none());
        assert!(
            !host.operates_office(&code("530602")),
            "a host operates nothing"
        );
    }

    #[test]
    fn bad_names_codes_and_validity_are_refused() {
        let pki = Pki::generate("test").unwrap();
        for host in ["", "../etc", "a b", "-h", "h_1", "h/1", &"x".repeat(64)] {
            assert!(
                matches!(pki.issue_host(host, &[], 1), Err(TlsError::BadHostName(_))),
                "{host:?}"
            );
        }
        for code in ["5", "53x6", "5306020", ""] {
            assert!(matches!(
                pki.issue_host("h1", &offices(&[code]), 1),
                Err(TlsError::BadOfficeCode(_))
            ));
        }
        assert!(matches!(
            pki.issue_host("h1", &[], 0),
            Err(TlsError::BadValidity(_))
        ));
        assert!(matches!(
            pki.issue_host("h1", &[], HOST_VALIDITY_DAYS_MAX + 1),
            Err(TlsError::BadValidity(_))
        ));
        let now = SystemTime::now();
        assert!(matches!(
            pki.issue_host_with_validity("h1", &[], now, now),
            Err(TlsError::BadValidity(_))
        ));
        let too_many: Vec<String> = (0..=OFFICES_PER_CERTIFICATE_MAX)
            .map(|i| format!("53{:07}", i))
            .collect();
        assert!(matches!(
            pki.issue_host("h1", &too_many, 1),
            Err(TlsError::TooManyOffices { .. })
        ));
        for name in ["", "a\nb", &"x".repeat(FEDERATION_NAME_CHARS_MAX + 1)] {
            assert!(matches!(
                Pki::generate(name),
                Err(TlsError::BadFederationName(_))
            ));
        }
        assert!(Pki::generate("昭通市联动").is_ok());
    }

    #[test]
    fn files_round_trip_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate("test").unwrap();
        pki.write(dir.path()).unwrap();
        let id = pki.issue_host("h1", &offices(&["5306"]), 30).unwrap();
        id.write(dir.path(), "h1").unwrap();

        let mode = |name: &str| {
            fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(CA_KEY_FILE), 0o600);
        assert_eq!(mode("h1.key"), 0o600);
        assert_eq!(mode(CA_CERT_FILE), 0o644);

        let loaded = Pki::load(dir.path()).unwrap();
        assert_eq!(loaded.ca_cert_pem, pki.ca_cert_pem);
        // A reloaded CA still issues certificates its own certificate verifies.
        loaded
            .issue_host("h2", &[], 1)
            .unwrap()
            .write(dir.path(), "h2")
            .unwrap();
        TlsFiles::load(dir.path(), "h2").unwrap();
        let files = TlsFiles::load(dir.path(), "h1").unwrap();
        assert_eq!(files.identity.cert_pem, id.cert_pem);
    }

    #[test]
    fn bad_files_give_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        assert!(matches!(Pki::load(path), Err(TlsError::Io { .. })));

        let pki = Pki::generate("test").unwrap();
        let other = Pki::generate("other").unwrap();
        // Garbage, a key where a certificate belongs, and a key that is not the CA's.
        for (cert, key) in [
            ("garbage", pki.ca_key_pem.as_str()),
            (pki.ca_key_pem.as_str(), pki.ca_key_pem.as_str()),
            (pki.ca_cert_pem.as_str(), "garbage"),
            (pki.ca_cert_pem.as_str(), other.ca_key_pem.as_str()),
        ] {
            fs::write(path.join(CA_CERT_FILE), cert).unwrap();
            fs::write(path.join(CA_KEY_FILE), key).unwrap();
            let err = Pki::load(path).unwrap_err();
            assert!(!err.to_string().contains('\n'), "{err}");
        }
        // A host certificate where the CA belongs.
        let id = pki.issue_host("h1", &[], 1).unwrap();
        fs::write(path.join(CA_CERT_FILE), &id.cert_pem).unwrap();
        fs::write(path.join(CA_KEY_FILE), &id.key_pem).unwrap();
        assert!(matches!(Pki::load(path), Err(TlsError::NotCa { .. })));

        // Oversized file.
        fs::write(
            path.join("h1.pem"),
            "x".repeat(PEM_FILE_BYTES_MAX as usize + 1),
        )
        .unwrap();
        fs::write(path.join("h1.key"), &id.key_pem).unwrap();
        assert!(matches!(
            HostIdentity::load(path, "h1"),
            Err(TlsError::FileTooLarge { .. })
        ));
        assert!(matches!(
            HostIdentity::load(path, "../h1"),
            Err(TlsError::BadHostName(_))
        ));
        // Corrupt PEM in memory goes nowhere near a panic either.
        let broken = HostIdentity {
            cert_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            key_pem: String::new(),
        };
        assert!(broken.peer_identity().is_err());
        assert!(PeerIdentity::from_der(b"\x30\x03\x02\x01\x00").is_err());
    }

    #[test]
    fn check_refuses_foreign_expired_and_mismatched_identities() {
        let pki = Pki::generate("test").unwrap();
        let other = Pki::generate("other").unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let good = pki.issue_host("h1", &[], 1).unwrap();
        let files = |identity: HostIdentity| TlsFiles {
            ca_pem: pki.ca_cert_pem.clone(),
            identity,
        };
        files(good.clone()).check(now).unwrap();
        assert!(matches!(
            files(good.clone()).check(now + 3 * day),
            Err(TlsError::NotValidNow { .. })
        ));
        assert!(matches!(
            files(other.issue_host("h1", &[], 1).unwrap()).check(now),
            Err(TlsError::NotSignedByCa { .. })
        ));
        let expired = pki
            .issue_host_with_validity("h1", &[], now - 2 * day, now - day)
            .unwrap();
        assert!(matches!(
            files(expired).check(now),
            Err(TlsError::NotValidNow { .. })
        ));
        let other_key = pki.issue_host("h1", &[], 1).unwrap().key_pem;
        assert!(matches!(
            files(HostIdentity {
                cert_pem: good.cert_pem,
                key_pem: other_key,
            })
            .check(now),
            Err(TlsError::KeyMismatch { .. })
        ));
    }

    /// A pair torn by a rotation (the new certificate written, the old key still there) is read
    /// again until the key arrives; a pair that stays torn is an error.
    #[test]
    fn a_pair_torn_by_a_rotation_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate("liandong-test").unwrap();
        pki.write(dir.path()).unwrap();
        let old = pki.issue_host("h1", &[], 30).unwrap();
        old.write(dir.path(), "h1").unwrap();
        let new = pki.issue_host("h1", &[], 30).unwrap();
        write_atomic(&dir.path().join("h1.pem"), &new.cert_pem, 0o600).unwrap();
        let path = dir.path().to_path_buf();
        let key = new.key_pem.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(3 * PAIR_READ_PAUSE_MS));
            write_atomic(&path.join("h1.key"), &key, 0o600).unwrap();
        });
        let files = TlsFiles::load(dir.path(), "h1").unwrap();
        writer.join().unwrap();
        assert_eq!(files.identity.key_pem, new.key_pem);
        write_atomic(&dir.path().join("h1.key"), &old.key_pem, 0o600).unwrap();
        assert!(matches!(
            TlsFiles::load(dir.path(), "h1"),
            Err(TlsError::KeyMismatch { .. })
        ));
    }
}

//! SMS gateways behind one small trait: `file:PATH` appends one JSON line per message (tests,
//! demos, a platform that picks messages up from a file), `webhook:URL` posts each message to an
//! SMS platform over HTTP. Both are idempotent by the message id: the file gateway never appends
//! an id already in its file, and the webhook passes the id as `OutId`, the key SMS platforms
//! deduplicate by. The phone is in the message and nowhere else: never in an error, a log line
//! or `Debug`.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Message ids the file gateway keeps in memory to find repeats; a file holding more is refused
/// (move it away: the gateway starts a new one).
pub const FILE_IDS_MAX: usize = 1_000_000;
/// How long one webhook call may take, connection included.
pub const WEBHOOK_TIMEOUT_MS: u64 = 5_000;
/// The longest gateway spec (`file:PATH` or `webhook:URL`).
pub const SPEC_CHARS_MAX: usize = 1_024;

/// Where an office's SMS go, as `federation init --sms-gateway` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewaySpec {
    /// Appends one JSON line per message to this file.
    File(PathBuf),
    /// Posts each message to this `http://` URL.
    Webhook(String),
}

impl GatewaySpec {
    /// `file:PATH` (an absolute path) or `webhook:http://HOST:PORT/PATH`.
    pub fn parse(spec: &str) -> Result<GatewaySpec, String> {
        if spec.chars().count() > SPEC_CHARS_MAX {
            return Err(format!(
                "an SMS gateway spec has at most {SPEC_CHARS_MAX} characters"
            ));
        }
        if let Some(path) = spec.strip_prefix("file:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!(
                    "the file gateway needs an absolute path, not {:?}",
                    path.display().to_string()
                ));
            }
            return Ok(GatewaySpec::File(path));
        }
        if let Some(url) = spec.strip_prefix("webhook:") {
            Webhook::target(url)?;
            return Ok(GatewaySpec::Webhook(url.to_string()));
        }
        Err(format!(
            "unknown SMS gateway {:?}: expected file:PATH or webhook:URL",
            liandong_domain::echo(spec)
        ))
    }

    pub fn open(&self) -> Arc<dyn Gateway> {
        match self {
            GatewaySpec::File(path) => Arc::new(FileGateway::new(path)),
            GatewaySpec::Webhook(url) => {
                Arc::new(Webhook::new(url).expect("a webhook spec is checked when it is parsed"))
            }
        }
    }
}

impl std::fmt::Display for GatewaySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewaySpec::File(path) => write!(f, "file:{}", path.display()),
            GatewaySpec::Webhook(url) => write!(f, "webhook:{url}"),
        }
    }
}

/// One SMS as a gateway sends it (and as the file gateway writes it, one JSON line).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `<office>/<case id>/<stage>/<seq>`: unique, the deduplication key.
    pub id: String,
    pub office: String,
    pub case_id: String,
    pub stage: String,
    pub phone: String,
    pub text: String,
    pub sent_at_ms: i64,
    /// A hotline callback's body (stage `callback`, no phone): what the hotline platform is
    /// told about its ticket's result ([`crate::public::hotline::callback_body`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<serde_json::Value>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The phone stays out of every log line.
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

/// What a gateway answers: the message was sent now, or had been sent before (a repeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Now,
    Before,
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Sent, String>> + Send + 'a>>;

/// An SMS gateway. `send` is idempotent by the message id where the gateway can be; an error
/// never names the phone.
pub trait Gateway: Send + Sync {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a>;
}

/// Appends one JSON line per message to a file, under an exclusive `flock`, synced before it
/// answers. A message whose id is already in the file is not appended again: a leader that
/// crashed between sending and committing, and the next leader's resend, make one line. Every
/// host of an office must see the same file (one machine, or a shared file system with
/// working `flock`).
pub struct FileGateway {
    path: PathBuf,
    index: Mutex<FileIndex>,
}

/// The ids in the file up to `offset` (read incrementally: other processes append too).
#[derive(Default)]
struct FileIndex {
    offset: u64,
    ids: HashSet<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

impl FileGateway {
    pub fn new(path: &Path) -> FileGateway {
        FileGateway {
            path: path.to_path_buf(),
            index: Mutex::default(),
        }
    }

    /// Appends `message` unless its id is in the file.
    pub fn append(&self, message: &Message) -> Result<Sent, String> {
        let io = |what: &str, error: std::io::Error| {
            format!("SMS file {}: {what}: {error}", self.path.display())
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| io("opening", e))?;
        let _lock = Flock::exclusive(&file).map_err(|e| io("locking", e))?;
        let mut index = self
            .index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let len = file.metadata().map_err(|e| io("reading", e))?.len();
        if len < index.offset {
            // The file was moved away or cut: start over with what it holds now.
            *index = FileIndex::default();
        }
        let mut needs_newline = false;
        if len > index.offset {
            file.seek(SeekFrom::Start(index.offset))
                .map_err(|e| io("reading", e))?;
            let mut reader = BufReader::new((&mut file).take(len - index.offset));
            let mut line = Vec::new();
            loop {
                line.clear();
                let read = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| io("reading", e))?;
                if read == 0 {
                    break;
                }
                if line.last() != Some(&b'\n') {
                    // A line cut short by a crash: never counted, ended before the next one.
                    needs_newline = true;
                    break;
                }
                if let Ok(IdOnly { id }) = serde_json::from_slice(&line) {
                    index.ids.insert(id);
                }
            }
            index.offset = len;
        }
        if index.ids.contains(&message.id) {
            return Ok(Sent::Before);
        }
        if index.ids.len() >= FILE_IDS_MAX {
            return Err(format!(
                "SMS file {} holds {FILE_IDS_MAX} messages: move it away",
                self.path.display()
            ));
        }
        let mut line = Vec::with_capacity(256);
        if needs_newline {
            line.push(b'\n');
        }
        serde_json::to_writer(&mut line, message).map_err(|e| e.to_string())?;
        line.push(b'\n');
        file.write_all(&line).map_err(|e| io("writing", e))?;
        file.sync_data().map_err(|e| io("syncing", e))?;
        index.offset = len + line.len() as u64;
        index.ids.insert(message.id.clone());
        Ok(Sent::Now)
    }
}

impl Gateway for FileGateway {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            // File IO and fsync off the runtime's other tasks where the runtime allows it.
            let multi_thread = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
                runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
            });
            if multi_thread {
                tokio::task::block_in_place(|| self.append(message))
            } else {
                self.append(message)
            }
        })
    }
}

/// An exclusive `flock` on an open file, released when dropped (or when the process dies). The
/// file must outlive it (declare it after the file).
struct Flock(std::os::unix::io::RawFd);

impl Flock {
    fn exclusive(file: &File) -> std::io::Result<Flock> {
        let fd = file.as_raw_fd();
        // SAFETY: flock on a file descriptor this process holds open; no memory is shared.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Flock(fd))
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        // SAFETY: as above; the file is still open (it outlives the lock).
        unsafe { libc::flock(self.0, libc::LOCK_UN) };
    }
}

/// Posts each message as JSON to an SMS platform (`http://` only: put a TLS-terminating proxy
/// in front of an `https://` platform). The body has the shape Chinese SMS platforms take
/// (Alibaba Cloud's `SendSms` names): `PhoneNumbers`, `SignName`, `TemplateCode` (one per
/// stage: `LIANDONG_RECEIVED`, `LIANDONG_ACCEPTED`, `LIANDONG_HANDLING`, `LIANDONG_RESULT`),
/// `TemplateParam` (case id, office, stage, the whole text) and `OutId` (the message id, which
/// the platform deduplicates by). Any 2xx answer is sent; anything else, or no answer within
/// [`WEBHOOK_TIMEOUT_MS`], is a failed attempt (retried).
pub struct Webhook {
    authority: String,
    path: String,
    timeout: Duration,
}

/// The sign (签名) every message carries.
pub const SIGN_NAME: &str = "信访";

impl Webhook {
    /// `(host:port, path)` of an `http://` URL.
    fn target(url: &str) -> Result<(String, String), String> {
        let uri: hyper::Uri = url.parse().map_err(|_| {
            format!(
                "the webhook URL {:?} does not parse",
                liandong_domain::echo(url)
            )
        })?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "the webhook URL {:?} must start with http:// (https is not built in: put a TLS proxy in front)",
                liandong_domain::echo(url)
            ));
        }
        let Some(authority) = uri.authority() else {
            return Err("the webhook URL names no host".to_string());
        };
        let authority = if authority.port().is_some() {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        Ok((authority, path))
    }

    pub fn new(url: &str) -> Result<Webhook, String> {
        let (authority, path) = Webhook::target(url)?;
        Ok(Webhook {
            authority,
            path,
            timeout: Duration::from_millis(WEBHOOK_TIMEOUT_MS),
        })
    }

    /// The JSON body of `message`: a hotline callback's own body, or an SMS in the shape SMS
    /// platforms take.
    pub fn body(message: &Message) -> serde_json::Value {
        if let Some(callback) = &message.callback {
            return callback.clone();
        }
        serde_json::json!({
            "PhoneNumbers": message.phone,
            "SignName": SIGN_NAME,
            "TemplateCode": format!("LIANDONG_{}", message.stage.to_uppercase()),
            "TemplateParam": {
                "case_id": message.case_id,
                "office": message.office,
                "stage": message.stage,
                "text": message.text,
            },
            "OutId": message.id,
        })
    }

    async fn post(&self, message: &Message) -> Result<Sent, String> {
        use hyper_util::rt::TokioIo;
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("webhook {}: {e}", self.authority))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("webhook {}: {e}", self.authority))?;
        let driver = tokio::spawn(connection);
        let request = hyper::Request::post(self.path.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Webhook::body(message).to_string())
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await;
        driver.abort();
        let status = response
            .map_err(|e| format!("webhook {}: {e}", self.authority))?
            .status();
        if status.is_success() {
            Ok(Sent::Now)
        } else {
            Err(format!("webhook {} answered {status}", self.authority))
        }
    }
}

impl Gateway for Webhook {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.post(message)).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "webhook {} did not answer within {} ms",
                    self.authority,
                    self.timeout.as_millis()
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> Message {
        Message {
            id: id.to_string(),
            office: "5306".into(),
            case_id: "5306-2026-000001".into(),
            stage: "accepted".into(),
            phone: "+8613800138000".into(),
            text: "t".into(),
            sent_at_ms: 1,
            callback: None,
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A resend of an id already in the file (by this gateway, or by another process's: a new
    /// gateway reads the file) adds no line; a line cut short by a crash is ended, not joined.
    #[test]
    fn the_file_gateway_is_idempotent_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sms.jsonl");
        let gateway = FileGateway::new(&path);
        assert_eq!(gateway.append(&message("a")).unwrap(), Sent::Now);
        assert_eq!(gateway.append(&message("a")).unwrap(), Sent::Before);
        assert_eq!(gateway.append(&message("b")).unwrap(), Sent::Now);
        // Another host's gateway (a new leader after a crash) sees what the first wrote.
        let other = FileGateway::new(&path);
        assert_eq!(other.append(&message("b")).unwrap(), Sent::Before);
        assert_eq!(other.append(&message("c")).unwrap(), Sent::Now);
        assert_eq!(gateway.append(&message("c")).unwrap(), Sent::Before);
        assert_eq!(lines(&path).len(), 3);
        // A crash mid-line: the torn line does not count, the next message starts a line.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"id":"d","off"#).unwrap();
        assert_eq!(other.append(&message("d")).unwrap(), Sent::Now);
        assert_eq!(gateway.append(&message("d")).unwrap(), Sent::Before);
        let all = lines(&path);
        assert_eq!(all.len(), 5, "{all:?}");
        let parsed: Vec<Message> = all
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let ids: Vec<&str> = parsed.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert_eq!(parsed[0], message("a"));
    }

    #[test]
    fn specs_parse_or_say_why_not() {
        assert_eq!(
            GatewaySpec::parse("file:/tmp/sms.jsonl").unwrap(),
            GatewaySpec::File("/tmp/sms.jsonl".into())
        );
        assert_eq!(
            GatewaySpec::parse("webhook:http://127.0.0.1:9000/sms")
                .unwrap()
                .to_string(),
            "webhook:http://127.0.0.1:9000/sms"
        );
        for bad in [
            "file:relative.jsonl",
            "webhook:https://sms.example.com/send",
            "webhook:not a url",
            "smtp:x",
            "",
        ] {
            assert!(GatewaySpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Webhook::new("http://sms.example.com").unwrap().authority,
            "sms.example.com:80"
        );
    }

    #[test]
    fn the_phone_stays_out_of_debug() {
        let shown = format!("{:?}", message("a"));
        assert!(!shown.contains("13800138000"), "{shown}");
    }

    /// The webhook posts the platform's shape and takes any 2xx as sent; another status is a
    /// failed attempt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_webhook_posts_json_and_reads_the_status() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    let n = stream.read(&mut buffer).await.unwrap();
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap();
                        if body.len() >= length {
                            bodies.push(body.to_string());
                            break;
                        }
                    }
                }
                let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                stream.write_all(reply.as_bytes()).await.unwrap();
            }
            bodies
        });
        let hook = Webhook::new(&format!("http://{addr}/sms/send")).unwrap();
        assert_eq!(hook.send(&message("a")).await, Ok(Sent::Now));
        let failed = hook.send(&message("b")).await.unwrap_err();
        assert!(failed.contains("503"), "{failed}");
        let bodies = server.await.unwrap();
        let first: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(first["OutId"], "a");
        assert_eq!(first["PhoneNumbers"], "+8613800138000");
        assert_eq!(first["TemplateCode"], "LIANDONG_ACCEPTED");
    }
}

//! The PostgreSQL anchor, the central database a province would otherwise buy: Debian's
//! PostgreSQL (15), a primary and a synchronous standby on loopback with
//! `synchronous_commit = remote_apply` (a commit returns once the standby has applied it),
//! fsync on, in temporary data folders; each client inserts Liandong's case documents as jsonb
//! rows over its own connection (tokio-postgres).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio_postgres::{Client, NoTls, Statement};

use crate::documents::Documents;
use crate::load::{Recorded, Session};
use crate::process::{find_on_path, first_line_of, wait_until, ChildGuard};

/// The role the bench creates and connects as.
pub const USER: &str = "bench";
/// How long a server may take to accept connections, and the standby to become synchronous.
pub const READY_TIMEOUT_MS: u64 = 60_000;
/// Connections the primary accepts (the clients, the set-up and the standby's).
pub const MAX_CONNECTIONS: usize = 300;

const INSERT: &str = "INSERT INTO cases (id, document) VALUES ($1, $2::text::jsonb)";

/// The folder of PostgreSQL's programs: Debian's newest `/usr/lib/postgresql/N/bin`, else the
/// folder of `postgres` on PATH.
fn program_dir() -> anyhow::Result<PathBuf> {
    let debian = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    find_on_path("postgres")
        .and_then(|program| program.canonicalize().ok()?.parent().map(Path::to_path_buf))
        .ok_or_else(|| {
            anyhow!(
                "PostgreSQL is missing: install Debian's postgresql (apt-get install postgresql)"
            )
        })
}

/// The user the servers run as: `postgres` when we are root (PostgreSQL refuses to run as
/// root), else ourselves.
fn server_user() -> anyhow::Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres")?;
    // SAFETY: getpwnam reads a NUL-terminated name; the result is copied out at once, and the
    // bench calls it from one thread at set-up.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(anyhow!(
            "running as root and there is no `postgres` user to run PostgreSQL as (Debian's postgresql package creates it)"
        ));
    }
    // SAFETY: non-null, points to a passwd record valid until the next getpw* call.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some((uid, gid)))
}

/// A primary and its synchronous standby in a temporary folder; both stopped when dropped
/// (fast shutdown), the standby first.
pub struct PostgresPair {
    _standby: ChildGuard,
    _primary: ChildGuard,
    port: u16,
    version: String,
    _temp: tempfile::TempDir,
}

struct Launcher {
    bin: PathBuf,
    user: Option<(u32, u32)>,
    root: PathBuf,
}

impl Launcher {
    fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(&self.root).env("LC_ALL", "C");
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Runs `program` to its end; its output goes to `name.log`.
    fn run(&self, name: &str, command: &mut Command) -> anyhow::Result<()> {
        let log = self.root.join(format!("{name}.log"));
        let output = command
            .output()
            .with_context(|| format!("running {command:?}"))?;
        std::fs::write(&log, [output.stdout, output.stderr].concat())?;
        if !output.status.success() {
            return Err(anyhow!(
                "{name} failed ({}); its output: {}",
                output.status,
                log.display()
            ));
        }
        Ok(())
    }

    fn server(
        &self,
        name: &str,
        data: &Path,
        port: u16,
        settings: &[&str],
    ) -> anyhow::Result<ChildGuard> {
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-c")
            .arg("listen_addresses=127.0.0.1")
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.root.display()));
        for setting in settings {
            command.arg("-c").arg(setting);
        }
        // SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for every client to leave).
        ChildGuard::spawn(
            name,
            &mut command,
            &self.root.join(format!("{name}.log")),
            libc::SIGINT,
        )
    }
}

async fn connect(port: u16) -> anyhow::Result<Client> {
    let config = format!("host=127.0.0.1 port={port} user={USER} dbname=postgres");
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl PostgresPair {
    /// Creates, starts and joins the primary (`port`) and the standby (`port + 1`), and the
    /// `cases` table.
    pub async fn start(port: u16) -> anyhow::Result<PostgresPair> {
        let bin = program_dir()?;
        let user = server_user()?;
        let temp = tempfile::Builder::new()
            .prefix("liandong-bench-postgres-")
            .tempdir()?;
        let root = temp.path().to_path_buf();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))?;
        }
        let launcher = Launcher { bin, user, root };
        let primary_data = launcher.root.join("primary");
        let standby_data = launcher.root.join("standby");
        launcher.run(
            "initdb",
            launcher
                .command("initdb")
                .arg("-D")
                .arg(&primary_data)
                .args(["-U", USER, "--auth=trust", "--encoding=UTF8", "--no-locale"]),
        )?;
        let max_connections = format!("max_connections={MAX_CONNECTIONS}");
        let mut primary = launcher.server(
            "primary",
            &primary_data,
            port,
            &[
                &max_connections,
                "synchronous_commit=remote_apply",
                "synchronous_standby_names=*",
            ],
        )?;
        let log = launcher.root.join("primary.log");
        let timeout = Duration::from_millis(READY_TIMEOUT_MS);
        wait_until("PostgreSQL primary", timeout, || {
            let exited = primary.check_running(&log);
            async move {
                exited?;
                connect(port).await.map(|_| true)
            }
        })
        .await?;
        launcher.run(
            "pg_basebackup",
            launcher
                .command("pg_basebackup")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER])
                .arg("-D")
                .arg(&standby_data)
                .args(["-R", "-X", "stream", "--checkpoint=fast"]),
        )?;
        let standby = launcher.server(
            "standby",
            &standby_data,
            port + 1,
            &[&max_connections, "hot_standby=on"],
        )?;
        let pair = PostgresPair {
            _standby: standby,
            _primary: primary,
            port,
            version: first_line_of(&launcher.bin.join("postgres"), &["--version"]),
            _temp: temp,
        };
        let admin = connect(port).await?;
        wait_until("PostgreSQL synchronous standby", timeout, || {
            let admin = &admin;
            async move {
                let rows = admin
                    .query("SELECT sync_state FROM pg_stat_replication", &[])
                    .await?;
                Ok(rows.iter().any(|row| row.get::<_, &str>(0) == "sync"))
            }
        })
        .await?;
        admin
            .batch_execute("CREATE TABLE cases (id text PRIMARY KEY, document jsonb NOT NULL)")
            .await?;
        Ok(pair)
    }

    pub fn setup(&self) -> String {
        format!(
            "{} (a primary and a synchronous standby on loopback, synchronous_commit = remote_apply, fsync on; one connection per client, INSERT of a jsonb row)",
            self.version
        )
    }
}

/// One client inserting case documents over its own connection.
pub struct PostgresSession {
    client: Client,
    insert: Statement,
    documents: Arc<Documents>,
}

impl PostgresSession {
    pub async fn connect(
        pair: &PostgresPair,
        documents: &Arc<Documents>,
    ) -> anyhow::Result<PostgresSession> {
        let client = connect(pair.port).await?;
        let insert = client.prepare(INSERT).await?;
        Ok(PostgresSession {
            client,
            insert,
            documents: documents.clone(),
        })
    }
}

impl Session for PostgresSession {
    async fn write(&mut self, sequence: u64) -> anyhow::Result<Recorded> {
        let id = format!("bench-{sequence:016x}");
        let document = self.documents.get(sequence);
        self.client
            .execute(&self.insert, &[&id.as_str(), &document])
            .await?;
        Ok(Recorded::ROUND_TRIP)
    }
}

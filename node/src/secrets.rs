//! The federation's secrets on disk, beside the manifest in `secrets/` (a 0700 folder, every file
//! 0600), and what is made from them:
//!
//! - `petitioner.key`: the HMAC secret behind petitioner keys (hex). Hosts need it to register
//!   cases; nobody else does. Older federations kept it in the manifest's `secret_hex`, which is
//!   still read when the file is missing.
//! - `<office>/office.key`: the office's Ed25519 key (PKCS#8), made at init. Its replicas sign
//!   officers' tokens with it and verify them with its public half.
//! - `<office>/admin.password`: the first `admin`'s initial password, for the people who run
//!   the office; `<office>/admin.phc`: its argon2id hash, all a host needs to create the account
//!   on the first login. The password stays valid until an admin changes it.
//! - `<office>/data.key`: the office's data key (32 random bytes, hex), under which its hosts
//!   seal personal data at rest ([`crate::personal`]). Made at init, or by the first host of the
//!   office that starts without one (an older federation). Never in RocksDB, the manifest or a
//!   message.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// The folder of secrets beside a manifest.
pub fn secrets_dir(manifest: &Path) -> PathBuf {
    manifest.parent().unwrap_or(Path::new(".")).join("secrets")
}

/// The petitioner-key secret's file.
pub const PETITIONER_KEY_FILE: &str = "petitioner.key";
/// An office's signing key's file (in the office's folder).
pub const OFFICE_KEY_FILE: &str = "office.key";
/// The initial admin password's file (in the office's folder).
pub const ADMIN_PASSWORD_FILE: &str = "admin.password";
/// The initial admin password's hash (in the office's folder).
pub const ADMIN_HASH_FILE: &str = "admin.phc";
/// An office's data key's file (in the office's folder).
pub const DATA_KEY_FILE: &str = "data.key";
/// Bytes of an office data key.
pub const DATA_KEY_BYTES: usize = 32;
/// The initial admin's user name.
pub const ADMIN_USER: &str = "admin";
/// Bytes of the petitioner-key secret.
pub const PETITIONER_SECRET_BYTES: usize = 32;
/// Characters of a generated password (letters and digits: about 143 bits).
pub const GENERATED_PASSWORD_CHARS: usize = 24;
/// The longest password accepted (argon2 takes any length; this bounds the work per login).
pub const PASSWORD_BYTES_MAX: usize = 256;
/// The shortest password an admin may set.
pub const PASSWORD_CHARS_MIN: usize = 10;
/// The longest secret file read.
pub const SECRET_FILE_BYTES_MAX: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("password: {0}")]
    Password(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError + '_ {
    move |source| SecretsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and its parents) with mode 0700, and sets 0700 on it if it existed.
pub fn private_dir(dir: &Path) -> Result<(), SecretsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

/// Writes `bytes` to `path` with mode 0600 (temporary file, fsync, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretsError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        if !dir.exists() {
            private_dir(dir)?;
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io(path))
}

/// Reads a secret file of at most [`SECRET_FILE_BYTES_MAX`] bytes.
pub fn read_private(path: &Path) -> Result<Vec<u8>, SecretsError> {
    let file = fs::File::open(path).map_err(io(path))?;
    let mut bytes = Vec::new();
    file.take(SECRET_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    if bytes.len() as u64 > SECRET_FILE_BYTES_MAX {
        return Err(SecretsError::Bad {
            path: path.to_path_buf(),
            reason: format!("larger than {SECRET_FILE_BYTES_MAX} bytes"),
        });
    }
    Ok(bytes)
}

/// The secrets folder of one federation.
#[derive(Debug, Clone)]
pub struct Secrets {
    dir: PathBuf,
}

impl Secrets {
    pub fn new(dir: &Path) -> Secrets {
        Secrets {
            dir: dir.to_path_buf(),
        }
    }

    pub fn for_manifest(manifest: &Path) -> Secrets {
        Secrets::new(&secrets_dir(manifest))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn office_dir(&self, office: &str) -> PathBuf {
        self.dir.join(office)
    }

    pub fn admin_password_file(&self, office: &str) -> PathBuf {
        self.office_dir(office).join(ADMIN_PASSWORD_FILE)
    }

    /// Makes every secret a federation needs and does not have yet: the petitioner-key secret
    /// (`existing_hex`, an older manifest's, when given: petitioner keys stay the same), and for
    /// each office its signing key and its first admin's password (and hash). Secrets already
    /// there are kept, so `federation init --force` changes no key and no password.
    pub fn generate(&self, offices: &[String], existing_hex: &str) -> Result<(), SecretsError> {
        self.generate_with(offices, existing_hex, |_| ())
    }

    /// [`Secrets::generate`], telling `done` how many offices are ready after each one (a
    /// province's 1,607 admin password hashes take a while).
    pub fn generate_with(
        &self,
        offices: &[String],
        existing_hex: &str,
        mut done: impl FnMut(usize),
    ) -> Result<(), SecretsError> {
        private_dir(&self.dir)?;
        let petitioner = self.dir.join(PETITIONER_KEY_FILE);
        if !petitioner.exists() {
            let secret = match hex::decode(existing_hex) {
                Ok(bytes) if bytes.len() == PETITIONER_SECRET_BYTES => existing_hex.to_string(),
                _ => hex::encode(rand::random::<[u8; PETITIONER_SECRET_BYTES]>()),
            };
            write_private(&petitioner, secret.as_bytes())?;
        }
        for (n, office) in offices.iter().enumerate() {
            let dir = self.office_dir(office);
            private_dir(&dir)?;
            self.data_key(office)?;
            if dir.join(OFFICE_KEY_FILE).exists() {
                done(n + 1);
                continue;
            }
            let rng = ring::rand::SystemRandom::new();
            let key = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SecretsError::Bad {
                path: dir.join(OFFICE_KEY_FILE),
                reason: "no randomness for a key".into(),
            })?;
            write_private(&dir.join(OFFICE_KEY_FILE), key.as_ref())?;
            let password = generate_password();
            write_private(&dir.join(ADMIN_PASSWORD_FILE), password.as_bytes())?;
            write_private(
                &dir.join(ADMIN_HASH_FILE),
                hash_password(&password)?.as_bytes(),
            )?;
            done(n + 1);
        }
        Ok(())
    }

    /// The petitioner-key secret: `petitioner.key`, or (an older federation) the manifest's.
    pub fn petitioner_secret(&self, manifest_hex: &str) -> Result<Vec<u8>, SecretsError> {
        let path = self.dir.join(PETITIONER_KEY_FILE);
        let text = match read_private(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
            Err(SecretsError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && !manifest_hex.is_empty() =>
            {
                manifest_hex.to_string()
            }
            Err(error) => return Err(error),
        };
        match hex::decode(&text) {
            Ok(bytes) if bytes.len() == PETITIONER_SECRET_BYTES => Ok(bytes),
            _ => Err(SecretsError::Bad {
                path,
                reason: format!("not {PETITIONER_SECRET_BYTES} bytes of hex"),
            }),
        }
    }

    /// The office's signing key.
    pub fn office_key(&self, office: &str) -> Result<Ed25519KeyPair, SecretsError> {
        let path = self.office_dir(office).join(OFFICE_KEY_FILE);
        let bytes = read_private(&path)?;
        Ed25519KeyPair::from_pkcs8(&bytes).map_err(|e| SecretsError::Bad {
            path,
            reason: format!("not an Ed25519 PKCS#8 key ({e})"),
        })
    }

    /// The office's data key: `<office>/data.key`, made now when the office has none (an older
    /// federation). The hosts of an office may start together: the file is published with a
    /// link that fails when it exists, so one key wins and every host reads that one.
    pub fn data_key(&self, office: &str) -> Result<[u8; DATA_KEY_BYTES], SecretsError> {
        let path = self.office_dir(office).join(DATA_KEY_FILE);
        if !path.exists() {
            let dir = self.office_dir(office);
            private_dir(&dir)?;
            let fresh = hex::encode(rand::random::<[u8; DATA_KEY_BYTES]>());
            let tmp = dir.join(format!(
                "{DATA_KEY_FILE}.{}.{}.new",
                std::process::id(),
                rand::random::<u32>()
            ));
            write_private(&tmp, fresh.as_bytes())?;
            let linked = fs::hard_link(&tmp, &path);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(io(&path)(error)),
            }
        }
        let text = String::from_utf8_lossy(&read_private(&path)?)
            .trim()
            .to_string();
        match hex::decode(&text).map(<[u8; DATA_KEY_BYTES]>::try_from) {
            Ok(Ok(key)) => Ok(key),
            _ => Err(SecretsError::Bad {
                path,
                reason: format!("not {DATA_KEY_BYTES} bytes of hex"),
            }),
        }
    }

    /// The office's first admin's password hash, if init left one for this host.
    pub fn admin_hash(&self, office: &str) -> Option<String> {
        let bytes = read_private(&self.office_dir(office).join(ADMIN_HASH_FILE)).ok()?;
        Some(String::from_utf8_lossy(&bytes).trim().to_string())
    }
}

/// The public half of an office key, for verifying tokens.
pub fn public_key(key: &Ed25519KeyPair) -> Vec<u8> {
    key.public_key().as_ref().to_vec()
}

/// A random password of [`GENERATED_PASSWORD_CHARS`] letters and digits.
pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..GENERATED_PASSWORD_CHARS)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// A password an admin may set: [`PASSWORD_CHARS_MIN`] characters to [`PASSWORD_BYTES_MAX`]
/// bytes, no control characters.
pub fn check_new_password(password: &str) -> Result<(), SecretsError> {
    if password.chars().count() < PASSWORD_CHARS_MIN || password.len() > PASSWORD_BYTES_MAX {
        return Err(SecretsError::Password(format!(
            "a password has {PASSWORD_CHARS_MIN} characters to {PASSWORD_BYTES_MAX} bytes"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(SecretsError::Password(
            "a password has no control characters".into(),
        ));
    }
    Ok(())
}

/// The argon2id hash of `password` with a random salt, as a PHC string (RustCrypto's default
/// parameters: 19 MiB, 2 passes, 1 lane, as OWASP recommends).
pub fn hash_password(password: &str) -> Result<String, SecretsError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| SecretsError::Password(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > PASSWORD_BYTES_MAX {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A password read from a file: its first line, without the line end.
pub fn password_from_file(path: &Path) -> Result<String, SecretsError> {
    let bytes = read_private(path)?;
    let text = String::from_utf8(bytes).map_err(|_| SecretsError::Bad {
        path: path.to_path_buf(),
        reason: "not UTF-8".into(),
    })?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Init's secrets are private files, and what a host reads back works.
    #[test]
    fn generated_secrets_are_private_and_usable() {
        let temp = tempfile::tempdir().unwrap();
        let secrets = Secrets::new(&temp.path().join("secrets"));
        secrets.generate(&["5306".to_string()], "").unwrap();
        // Generating again keeps every secret (init --force changes no key, no password).
        let key = read_private(&secrets.dir().join(PETITIONER_KEY_FILE)).unwrap();
        let password = read_private(&secrets.admin_password_file("5306")).unwrap();
        secrets.generate(&["5306".to_string()], "").unwrap();
        assert_eq!(
            read_private(&secrets.dir().join(PETITIONER_KEY_FILE)).unwrap(),
            key
        );
        assert_eq!(
            read_private(&secrets.admin_password_file("5306")).unwrap(),
            password
        );
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(secrets.dir()), 0o700);
        assert_eq!(mode(&secrets.office_dir("5306")), 0o700);
        for file in [
            secrets.dir().join(PETITIONER_KEY_FILE),
            secrets.office_dir("5306").join(OFFICE_KEY_FILE),
            secrets.admin_password_file("5306"),
            secrets.office_dir("5306").join(ADMIN_HASH_FILE),
            secrets.office_dir("5306").join(DATA_KEY_FILE),
        ] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        assert_eq!(secrets.petitioner_secret("").unwrap().len(), 32);
        secrets.office_key("5306").unwrap();
        let data_key = secrets.data_key("5306").unwrap();
        secrets.generate(&["5306".to_string()], "").unwrap();
        assert_eq!(secrets.data_key("5306").unwrap(), data_key);
        let password = password_from_file(&secrets.admin_password_file("5306")).unwrap();
        let hash = secrets.admin_hash("5306").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&password, &hash));
        assert!(!verify_password("wrong password", &hash));
        assert!(!verify_password(&password, "not a hash"));
    }

    /// An office without a data key (a federation made before field encryption) gets one on
    /// first need, made once: hosts starting together all read the same key.
    #[test]
    fn a_data_key_is_made_once_on_first_need() {
        let temp = tempfile::tempdir().unwrap();
        let secrets = Secrets::new(&temp.path().join("secrets"));
        let keys: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| secrets.data_key("530602").unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|pair| pair[0] == pair[1]));
        let path = secrets.office_dir("530602").join(DATA_KEY_FILE);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers = fs::read_dir(secrets.office_dir("530602")).unwrap().count();
        assert_eq!(leftovers, 1, "only data.key is left");
        fs::write(&path, "abcd").unwrap();
        assert!(secrets.data_key("530602").is_err());
    }

    /// An older federation's manifest secret is still read when there is no file.
    #[test]
    fn the_manifest_secret_is_the_fallback() {
        let temp = tempfile::tempdir().unwrap();
        let secrets = Secrets::new(temp.path());
        let hex = "ab".repeat(32);
        assert_eq!(secrets.petitioner_secret(&hex).unwrap(), vec![0xab; 32]);
        // Moving to the file keeps the secret.
        let moved = Secrets::new(&temp.path().join("moved"));
        moved.generate(&[], &hex).unwrap();
        assert_eq!(moved.petitioner_secret("").unwrap(), vec![0xab; 32]);
        assert!(secrets.petitioner_secret("").is_err());
        assert!(secrets.petitioner_secret("abcd").is_err());
    }
}

//! The data directory: its layout, its exclusive lock and its config file.
//!
//! ```text
//! DATA_DIR/            mode 0700 when we create it
//!   LOCK               held (flock) by the one process using the directory; holds its pid
//!   config.json        mode 0600: admin key, default tenant, default JWT realm secret
//!   db/                the sled database (module state + event log)
//!   tls/               the generated self-signed certificate, when asked for
//! ```
//!
//! Invariants: only one process uses a data directory at a time (the lock is
//! taken before anything else is read or written, so two first starts cannot
//! both create secrets); the config file is written atomically (temporary file,
//! fsync, rename, fsync of the directory) and never overwritten once it exists.

use crate::error::StartupError;
use crate::secret;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The config file format this build writes and understands.
const CONFIG_FORMAT_VERSION: u32 = 1;

/// A data directory this process holds exclusively for as long as the value lives.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

/// The tenant every install starts with, so single-tenant setups need nothing more.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TenantSeed {
    /// Tenant id.
    pub id: Uuid,
    /// Tenant slug (used as a subdomain when a base domain is configured).
    pub slug: String,
}

/// A JWT realm with its HS256 secret, created on first run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RealmSeed {
    /// Realm name (`realmname` header); `default` on first run.
    pub name: String,
    /// The tenant the realm belongs to.
    pub tenant_id: Uuid,
    /// HS256 signing secret shared with the application's backend.
    pub hs256_secret: String,
}

/// The contents of `config.json`: the instance's identity and secrets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceConfig {
    /// Format of this file; a newer format is refused rather than misread.
    pub format_version: u32,
    /// When the data directory was initialised (RFC 3339).
    pub created_at: String,
    /// Key for the admin API (`X-API-Key`).
    pub admin_key: String,
    /// The default tenant.
    pub default_tenant: TenantSeed,
    /// JWT realms with their secrets.
    pub jwt_realms: Vec<RealmSeed>,
}

impl InstanceConfig {
    fn generate() -> std::io::Result<Self> {
        let tenant = TenantSeed {
            id: Uuid::new_v4(),
            slug: "default".into(),
        };
        Ok(Self {
            format_version: CONFIG_FORMAT_VERSION,
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            admin_key: secret::generate("adm")?,
            jwt_realms: vec![RealmSeed {
                name: "default".into(),
                tenant_id: tenant.id,
                hs256_secret: secret::generate("jws")?,
            }],
            default_tenant: tenant,
        })
    }
}

/// The instance config and whether this call created it.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The config.
    pub config: InstanceConfig,
    /// True when the file did not exist and was just created.
    pub created: bool,
}

impl DataDir {
    /// Creates the directory if needed and takes its exclusive lock.
    pub fn open(root: &Path) -> Result<Self, StartupError> {
        if !root.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(|err| {
                    StartupError::io(format!("creating data directory {}", root.display()), err)
                })?;
        }
        let lock = take_lock(root)?;
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the sled database.
    pub fn db_path(&self) -> PathBuf {
        self.root.join("db")
    }

    /// Path of `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// Directory of generated TLS material.
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// Reads `config.json`, or creates it with fresh secrets when it does not exist.
    pub fn load_or_create_config(&self) -> Result<LoadedConfig, StartupError> {
        let path = self.config_path();
        if path.exists() {
            return Ok(LoadedConfig {
                config: read_config(&path)?,
                created: false,
            });
        }
        let config = InstanceConfig::generate()
            .map_err(|err| StartupError::io("generating secrets", err))?;
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|err| StartupError::io("encoding config.json", err))?;
        write_private_file_atomically(&path, &json)?;
        Ok(LoadedConfig {
            config,
            created: true,
        })
    }
}

/// Syncs the directory holding `path` (the current directory for a bare
/// name), making a rename or creation of `path` durable.
pub fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty());
    File::open(parent.unwrap_or(Path::new("."))).and_then(|dir| dir.sync_all())
}

/// Writes `contents` to `path` with mode 0600 so that a crash leaves either no
/// file or the whole file.
pub fn write_private_file_atomically(path: &Path, contents: &[u8]) -> Result<(), StartupError> {
    let context = || format!("writing {}", path.display());
    let temporary = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|err| StartupError::io(context(), err))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|err| StartupError::io(context(), err))?;
    fs::rename(&temporary, path).map_err(|err| StartupError::io(context(), err))?;
    sync_parent_dir(path).map_err(|err| StartupError::io(context(), err))
}

/// Reads an existing `config.json` without taking the data directory's lock
/// (for commands that run beside a server, such as `tidings token`).
pub fn read_existing_config(root: &Path) -> Result<InstanceConfig, StartupError> {
    let path = root.join("config.json");
    if !path.exists() {
        return Err(StartupError::Config(format!(
            "{} does not exist; run `tidings init` first",
            path.display()
        )));
    }
    read_config(&path)
}

fn read_config(path: &Path) -> Result<InstanceConfig, StartupError> {
    let bytes = fs::read(path)
        .map_err(|err| StartupError::io(format!("reading {}", path.display()), err))?;
    warn_if_readable_by_others(path);
    let config: InstanceConfig = serde_json::from_slice(&bytes).map_err(|err| {
        StartupError::Config(format!(
            "{} is not a valid tidings config ({err}); fix it or move it away to create a new one",
            path.display()
        ))
    })?;
    if config.format_version > CONFIG_FORMAT_VERSION {
        return Err(StartupError::Config(format!(
            "{} has format version {}, but this tidings understands up to {}; use a newer tidings",
            path.display(),
            config.format_version,
            CONFIG_FORMAT_VERSION
        )));
    }
    Ok(config)
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "config file holds secrets but is readable by group or others; run chmod 600 on it"
        );
    }
}

fn take_lock(root: &Path) -> Result<File, StartupError> {
    let path = root.join("LOCK");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|err| StartupError::io(format!("opening {}", path.display()), err))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            return Err(StartupError::DataDirInUse(format!(
                "data directory {} is in use by another tidings process{holder}; stop it or pass another --data-dir",
                root.display()
            )));
        }
        Err(TryLockError::Error(err)) => {
            return Err(StartupError::io(format!("locking {}", path.display()), err));
        }
    }
    let record_pid = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    record_pid.map_err(|err| StartupError::io(format!("writing {}", path.display()), err))?;
    Ok(file)
}

/// A human summary of a freshly created config: what, where, and the admin key.
pub fn first_run_summary(data_dir: &DataDir, config: &InstanceConfig) -> String {
    let realm = config.jwt_realms.first();
    format!(
        "First start: created {dir}\n  \
         config (mode 0600): {config_path}\n  \
         admin key:          {admin}\n  \
         default tenant:     {slug} ({tenant})\n  \
         JWT realm:          {realm_name} (HS256 secret in the config file)\n\
         Keep the admin key secret: it is printed only on this first start and is kept in the config file.",
        dir = data_dir.root().display(),
        config_path = data_dir.config_path().display(),
        admin = config.admin_key,
        slug = config.default_tenant.slug,
        tenant = config.default_tenant.id,
        realm_name = realm.map_or("none", |r| r.name.as_str()),
    )
}

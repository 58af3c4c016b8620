//! Management commands: `tidings token`, `tidings keys …`, `tidings tenants …`
//! (including a tenant's allowed browser origins: `origins`, `set-origins`),
//! `tidings backup` and `tidings restore`.
//!
//! `token` mints a development JWT from a realm secret in `config.json`.
//! `keys` and `tenants` go through the admin API of the server at `--url`
//! when one answers there, and otherwise act on the data directory directly
//! (which works only while no server holds it: the lock says so clearly).
//!
//! Invariants: both paths call the same registry operations and print the
//! same JSON (`data` of the admin API); a key's secret is printed once, by
//! `keys create`. `backup` streams `GET /admin/v1/backup` of the server at
//! `--url` into a file (see `ops::backup::output`), or backs up the data
//! directory itself when no `--url` is given; `restore` is
//! `ops::backup::restore`.

use crate::auth::api_keys::Scope;
use crate::auth::origins::{AllowedOrigins, OriginLimits};
use crate::auth::registry::Registry;
use crate::config::{DataDirArgs, OriginLimitArgs};
use crate::core::datadir::{DataDir, InstanceConfig};
use crate::core::hub::{Hub, HubLimits};
use crate::core::store::Store;
use crate::core::writer::{RecoverySettings, Writer, WriterLimits};
use crate::error::{ApiError, StartupError};
use crate::modules::admin::{key_json, origins_json};
use crate::ops::backup;
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Flags of `tidings token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The data directory.
    #[command(flatten)]
    data: DataDirArgs,
    /// The user id (`sub` claim).
    #[arg(long)]
    sub: String,
    /// Realm whose HS256 secret from config.json signs the token.
    #[arg(long, default_value = "default")]
    realm: String,
    /// Lifetime of the token.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Extra claim `name=value` (value parsed as JSON when it is JSON, e.g. topics='["room/*"]').
    #[arg(long = "claim", value_parser = parse_claim)]
    claims: Vec<(String, Value)>,
}

/// Where management commands find the server and its data.
#[derive(Debug, Args)]
pub struct AdminTarget {
    /// The data directory.
    #[command(flatten)]
    data: DataDirArgs,
    /// The running server's base URL (plain http on this machine).
    #[arg(long, env = "TIDINGS_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

/// `tidings keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print its secret (shown only now).
    Create {
        /// Where the server and its data are.
        #[command(flatten)]
        target: AdminTarget,
        /// Tenant id or slug.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// A name for the key (recorded as the actor of what it writes).
        #[arg(long)]
        name: String,
        /// Scope to grant (repeatable): publish, read, admin.
        #[arg(long = "scope", required = true, value_parser = parse_scope)]
        scopes: Vec<Scope>,
    },
    /// List a tenant's keys (never their secrets).
    List {
        /// Where the server and its data are.
        #[command(flatten)]
        target: AdminTarget,
        /// Tenant id or slug.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Revoke a key; it is refused from the next request on.
    Revoke {
        /// Where the server and its data are.
        #[command(flatten)]
        target: AdminTarget,
        /// Tenant id or slug.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The key id.
        id: Uuid,
    },
}

/// `tidings tenants …`
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// List tenants.
    List {
        /// Where the server and its data are.
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Create a tenant.
    Create {
        /// Where the server and its data are.
        #[command(flatten)]
        target: AdminTarget,
        /// DNS-label slug.
        slug: String,
        /// Human name.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Show the browser origins a tenant allows (CORS and WebSocket `Origin`).
    Origins {
        /// Where the server and its data are.
        #[command(flatten)]
        target: AdminTarget,
        /// Tenant id or slug.
        tenant: String,
    },
    /// Replace the browser origins a tenant allows: `scheme://host[:port]`
    /// as browsers send it, or `*` for every origin; `--none` for no origin.
    SetOrigins {
        /// Where the server and its data are.
        #[command(flatten)]
        target: AdminTarget,
        /// Tenant id or slug.
        tenant: String,
        /// The allowed origins (the whole new list).
        #[arg(required_unless_present = "none")]
        origins: Vec<String>,
        /// Allow no origin (pages on other sites can no longer use this tenant).
        #[arg(long, conflicts_with = "origins")]
        none: bool,
        /// Limits applied when working on the data directory (the server applies its own).
        #[command(flatten)]
        limits: OriginLimitArgs,
    },
    /// Delete a tenant with its keys and realms.
    Delete {
        /// Where the server and its data are.
        #[command(flatten)]
        target: AdminTarget,
        /// Tenant id or slug.
        tenant: String,
    },
}

/// Flags of `tidings backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The data directory: backed up itself without --url; with --url, where the admin key is read.
    #[command(flatten)]
    data: DataDirArgs,
    /// Back up the server running at this base URL (plain http on this machine), while it takes writes.
    #[arg(long, env = "TIDINGS_URL")]
    url: Option<String>,
    /// The instance admin key for --url (default: read from the data directory's config.json).
    #[arg(long, env = "TIDINGS_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// The backup file to write (mode 0600: it holds the data directory's secrets); never overwritten.
    #[arg(long)]
    out: PathBuf,
}

/// Flags of `tidings restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file.
    file: PathBuf,
    /// The data directory to create (absent or empty).
    #[command(flatten)]
    data: DataDirArgs,
}

fn parse_claim(text: &str) -> Result<(String, Value), String> {
    let (name, value) = text.split_once('=').ok_or("a claim is name=value")?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((name.to_string(), value))
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    serde_json::from_value(Value::String(text.to_string()))
        .map_err(|_| "scopes are publish, read, admin".to_string())
}

/// `tidings token`: prints a JWT for local development.
pub fn token(args: TokenArgs) -> Result<(), StartupError> {
    let config = crate::core::datadir::read_existing_config(&args.data.data_dir)?;
    let realm = config
        .jwt_realms
        .iter()
        .find(|realm| realm.name == args.realm)
        .ok_or_else(|| {
            StartupError::Config(format!(
                "config.json has no realm {} (only its own realms can sign)",
                args.realm
            ))
        })?;
    let now = crate::core::clock::unix_millis() / 1000;
    let mut claims = json!({ "sub": args.sub, "iat": now, "exp": now + args.ttl.as_secs() });
    for (name, value) in args.claims {
        claims[name] = value;
    }
    let token = crate::auth::jwt::mint_hs256(&realm.hs256_secret, &claims, None)
        .map_err(StartupError::Config)?;
    print_line(&token);
    Ok(())
}

/// Prints a line; a closed pipe (`| head`) is not an error.
fn print_line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// One management operation, runnable over HTTP or on the data directory.
enum Operation {
    ListTenants,
    CreateTenant {
        slug: String,
        name: String,
    },
    DeleteTenant {
        tenant: String,
    },
    ShowOrigins {
        tenant: String,
    },
    SetOrigins {
        tenant: String,
        origins: Vec<String>,
        limits: OriginLimits,
    },
    CreateKey {
        tenant: String,
        name: String,
        scopes: Vec<Scope>,
    },
    ListKeys {
        tenant: String,
    },
    RevokeKey {
        tenant: String,
        id: Uuid,
    },
}

impl Operation {
    /// The admin API request for this operation.
    fn http(&self) -> (http::Method, String, Option<Value>) {
        use http::Method;
        match self {
            Self::ListTenants => (Method::GET, "/admin/v1/tenants".into(), None),
            Self::CreateTenant { slug, name } => (
                Method::POST,
                "/admin/v1/tenants".into(),
                Some(json!({ "slug": slug, "name": name })),
            ),
            Self::DeleteTenant { tenant } => {
                (Method::DELETE, format!("/admin/v1/tenants/{tenant}"), None)
            }
            Self::ShowOrigins { tenant } => (
                Method::GET,
                format!("/admin/v1/tenants/{tenant}/origins"),
                None,
            ),
            Self::SetOrigins {
                tenant, origins, ..
            } => (
                Method::PUT,
                format!("/admin/v1/tenants/{tenant}/origins"),
                Some(json!({ "origins": origins })),
            ),
            Self::CreateKey {
                tenant,
                name,
                scopes,
            } => (
                Method::POST,
                format!("/admin/v1/tenants/{tenant}/keys"),
                Some(json!({ "name": name, "scopes": scopes })),
            ),
            Self::ListKeys { tenant } => (
                Method::GET,
                format!("/admin/v1/tenants/{tenant}/keys"),
                None,
            ),
            Self::RevokeKey { tenant, id } => (
                Method::DELETE,
                format!("/admin/v1/tenants/{tenant}/keys/{id}"),
                None,
            ),
        }
    }

    /// Runs the operation on the registry directly.
    async fn offline(self, registry: &std::sync::Arc<Registry>) -> Result<Value, ApiError> {
        Ok(match self {
            Self::ListTenants => to_json(&registry.tenants()),
            Self::CreateTenant { slug, name } => {
                to_json(&registry.create_tenant(slug, name).await?)
            }
            Self::DeleteTenant { tenant } => {
                let tenant = registry.find_tenant(&tenant)?;
                registry.delete_tenant(&tenant.id).await?;
                json!({ "deleted": tenant.id })
            }
            Self::ShowOrigins { tenant } => origins_json(&registry.find_tenant(&tenant)?),
            Self::SetOrigins {
                tenant,
                origins,
                limits,
            } => {
                let tenant = registry.find_tenant(&tenant)?;
                let origins = AllowedOrigins::parse(origins, limits)?;
                origins_json(&registry.set_origins(tenant.id, origins).await?)
            }
            Self::CreateKey {
                tenant,
                name,
                scopes,
            } => {
                let tenant = registry.find_tenant(&tenant)?;
                let (key, secret) = registry.create_key(tenant.id, name, scopes).await?;
                let mut shown = key_json(&key);
                shown["secret"] = Value::String(secret);
                shown
            }
            Self::ListKeys { tenant } => {
                let tenant = registry.find_tenant(&tenant)?;
                Value::Array(registry.keys(&tenant.id).iter().map(key_json).collect())
            }
            Self::RevokeKey { tenant, id } => {
                let tenant = registry.find_tenant(&tenant)?;
                key_json(&registry.revoke_key(&tenant.id, &id).await?)
            }
        })
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `tidings keys …`
pub fn keys(command: KeysCommand) -> Result<(), StartupError> {
    let (target, operation) = match command {
        KeysCommand::Create {
            target,
            tenant,
            name,
            scopes,
        } => (
            target,
            Operation::CreateKey {
                tenant,
                name,
                scopes,
            },
        ),
        KeysCommand::List { target, tenant } => (target, Operation::ListKeys { tenant }),
        KeysCommand::Revoke { target, tenant, id } => (target, Operation::RevokeKey { tenant, id }),
    };
    run(target, operation)
}

/// `tidings tenants …`
pub fn tenants(command: TenantsCommand) -> Result<(), StartupError> {
    let (target, operation) = match command {
        TenantsCommand::List { target } => (target, Operation::ListTenants),
        TenantsCommand::Create { target, slug, name } => {
            (target, Operation::CreateTenant { slug, name })
        }
        TenantsCommand::Delete { target, tenant } => (target, Operation::DeleteTenant { tenant }),
        TenantsCommand::Origins { target, tenant } => (target, Operation::ShowOrigins { tenant }),
        TenantsCommand::SetOrigins {
            target,
            tenant,
            origins,
            none: _,
            limits,
        } => (
            target,
            Operation::SetOrigins {
                tenant,
                origins,
                limits: limits.limits(),
            },
        ),
    };
    run(target, operation)
}

/// Runs `future` to completion on a current-thread runtime of its own (the
/// command line's subcommands run outside the server's runtime).
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output, StartupError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| StartupError::io("starting the runtime", err))?;
    Ok(runtime.block_on(future))
}

fn run(target: AdminTarget, operation: Operation) -> Result<(), StartupError> {
    let data = block_on(execute(target, operation))??;
    print_line(&serde_json::to_string_pretty(&data).unwrap_or_default());
    Ok(())
}

async fn execute(target: AdminTarget, operation: Operation) -> Result<Value, StartupError> {
    let config = crate::core::datadir::read_existing_config(&target.data.data_dir)?;
    let (method, path, body) = operation.http();
    match call_server(&target.url, &config.admin_key, method, &path, body).await {
        Ok(data) => return data,
        Err(unreachable) => {
            tracing::debug!(%unreachable, "no server answered; using the data directory")
        }
    }
    let dir = DataDir::open(&target.data.data_dir).map_err(|err| match err {
        StartupError::DataDirInUse(message) => StartupError::DataDirInUse(format!(
            "{message}, but no server answered at {}; pass --url with its address",
            target.url
        )),
        other => other,
    })?;
    let registry = open_registry(&dir, &config).await?;
    operation
        .offline(&registry)
        .await
        .map_err(|err| StartupError::Config(err.message))
}

async fn open_registry(
    dir: &DataDir,
    config: &InstanceConfig,
) -> Result<Arc<Registry>, StartupError> {
    let store = Store::open(&dir.db_path(), 16 << 20)?;
    let hub_store = store.clone();
    let limits = WriterLimits {
        queue: 64,
        queue_bytes: 16 << 20,
        batch: 64,
        recovery: RecoverySettings {
            interval: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_secs(10),
        },
    };
    let writer = Writer::start(
        store.clone(),
        |durable| Hub::new(hub_store, durable, HubLimits::minimal()),
        limits,
    )
    .map_err(|err| StartupError::io("starting the writer", err))?
    .writer;
    Registry::load(&store, writer, config)
        .await
        .map_err(|err| StartupError::io("loading the registry", err))
}

/// Calls the admin API: `Err` when no server answers (then the caller works
/// offline), `Ok(Err)` when the server refused the operation.
async fn call_server(
    url: &str,
    admin_key: &str,
    method: http::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Result<Value, StartupError>, String> {
    let response = send(url, admin_key, method, path, body).await?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|err| err.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Ok(Err(backup::output::refusal(status, &bytes)));
    }
    let reply: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Ok(reply["data"].clone()))
}

/// Sends one admin API request to the server at `url` and returns its
/// response head (the body still streaming); `Err` when no server answers.
async fn send(
    url: &str,
    admin_key: &str,
    method: http::Method,
    path: &str,
    body: Option<Value>,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|err| err.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| err.to_string())?;
    tokio::spawn(connection);
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", address)
        .header("x-api-key", admin_key)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(payload)))
        .map_err(|err| err.to_string())?;
    sender
        .send_request(request)
        .await
        .map_err(|err| err.to_string())
}

/// `tidings backup`: online through `--url`, else offline on the data directory.
pub fn backup(args: BackupArgs) -> Result<(), StartupError> {
    let started = Instant::now();
    let summary = match &args.url {
        Some(url) => {
            let admin_key = match args.admin_key.clone() {
                Some(key) => key,
                None => crate::core::datadir::read_existing_config(&args.data.data_dir)?.admin_key,
            };
            block_on(download(url, &admin_key, &args.out))??
        }
        None => backup::output::offline(&args.data.data_dir, &args.out)?,
    };
    print_summary(
        &summary,
        json!({ "file": args.out, "seconds": started.elapsed().as_secs_f64() }),
    );
    Ok(())
}

/// Streams the running server's backup into `out` (through `out.partial`).
async fn download(
    url: &str,
    admin_key: &str,
    out: &std::path::Path,
) -> Result<backup::format::Summary, StartupError> {
    let file = backup::output::PartialFile::create(out)?;
    let response = send(url, admin_key, http::Method::GET, "/admin/v1/backup", None)
        .await
        .map_err(|err| {
            StartupError::Io(format!(
                "no server answered at {url} ({err}); to back up a stopped server's data directory, leave out --url"
            ))
        })?;
    backup::output::receive(file, response).await
}

/// `tidings restore FILE --data-dir NEW`.
pub fn restore(args: RestoreArgs) -> Result<(), StartupError> {
    let started = Instant::now();
    let summary = backup::restore::restore(&args.file, &args.data.data_dir)?;
    print_summary(
        &summary,
        json!({ "dataDir": args.data.data_dir, "seconds": started.elapsed().as_secs_f64() }),
    );
    Ok(())
}

/// Prints what a backup file holds, with `extra` fields.
fn print_summary(summary: &backup::format::Summary, mut extra: Value) {
    extra["bytes"] = json!(summary.bytes);
    extra["header"] = to_json(&summary.header);
    extra["counts"] = to_json(&summary.counts);
    print_line(&serde_json::to_string_pretty(&extra).unwrap_or_default());
}

//! `fieldsync-server`: serves sync, records and (later) the dashboard on embedded SQLite.
//!
//! ```text
//! cargo run --release -p fieldsync-server                      # 127.0.0.1:8080, ./fieldsync-data
//! cargo run --release -p fieldsync-server -- --listen 0.0.0.0:8443 --data-dir /var/lib/fieldsync \
//!     --tls-cert cert.pem --tls-key key.pem
//! cargo run --release -p fieldsync-server -- admin add-person --name 李四 --role worker --group <id>
//! cargo run --release -p fieldsync-server -- admin code --person <id>
//! ```
//!
//! The first start prints a one-time code for the administrator's first device.

/// The allocator of fieldsync's binaries: mimalloc spends less time allocating and freeing the
/// many small values Automerge makes while merging than the system allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use fieldsync_protocol::auth::Role;
use tracing_subscriber::EnvFilter;

/// fieldsync server: reconciles field devices' changes and keeps the merged records.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "FIELDSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the SQLite database (created if missing).
    #[arg(long, env = "FIELDSYNC_DATA_DIR", default_value = "fieldsync-data")]
    data_dir: PathBuf,
    /// Keep the data in this PostgreSQL database (`postgres://user@host:port/name`) instead of
    /// SQLite in --data-dir; any number of servers may share one database.
    #[arg(long, env = "FIELDSYNC_DATABASE")]
    database: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "FIELDSYNC_LOG_JSON")]
    log_json: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "FIELDSYNC_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "FIELDSYNC_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Requests one device may make per minute (then 429).
    #[arg(long, env = "FIELDSYNC_REQUESTS_PER_MINUTE", default_value_t = 1200)]
    requests_per_minute: u32,
    /// The most records in one push (then 413).
    #[arg(long, env = "FIELDSYNC_MAX_PUSH_RECORDS", default_value_t = fieldsync_protocol::wire::MAX_PUSH_RECORDS)]
    max_push_records: usize,
    /// A reverse proxy (address or CIDR) whose X-Forwarded-For/-Proto/-Host are believed;
    /// repeatable. Without one, the TCP peer is the client and those headers are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "FIELDSYNC_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = fieldsync_server::edge::parse_trusted_proxy
    )]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// The most connections served at once (further ones wait until one closes).
    #[arg(long, env = "FIELDSYNC_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Seconds a client may take to send a request's headers; also how long an idle
    /// kept-alive connection stays open.
    #[arg(long, env = "FIELDSYNC_HEADER_READ_TIMEOUT", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout: u64,
    /// Seconds a request body may pause between two pieces before the request fails.
    #[arg(long, env = "FIELDSYNC_BODY_READ_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    body_read_timeout: u64,
    /// Where attachment bytes (photos, scans, recordings) are kept; DATA_DIR/attachments by
    /// default. With --attachments-store only uploads under way and previews are kept here.
    #[arg(long, env = "FIELDSYNC_ATTACHMENTS_DIR")]
    attachments_dir: Option<std::path::PathBuf>,
    /// Keep the complete attachment files in an S3-compatible object store instead:
    /// s3://bucket or s3://bucket/prefix, with the credentials, region and endpoint in the
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT variables
    /// (AWS_ALLOW_HTTP=true for an endpoint on plain HTTP). Servers sharing one PostgreSQL
    /// database share their files this way.
    #[arg(long, env = "FIELDSYNC_ATTACHMENTS_STORE")]
    attachments_store: Option<String>,
    /// Days a file no record refers to any more is kept before it is removed.
    #[arg(long, env = "FIELDSYNC_ATTACHMENT_GRACE_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    attachment_grace_days: u64,
    /// The most megabytes of files one campaign may keep (no limit unless given).
    #[arg(long, env = "FIELDSYNC_ATTACHMENT_QUOTA_MB",
          value_parser = clap::value_parser!(u64).range(1..))]
    attachment_quota_mb: Option<u64>,
    /// LibreOffice's `soffice` program, for the draft report as PDF (found on PATH unless
    /// given; without it the dashboard offers DOCX only).
    #[arg(long, env = "FIELDSYNC_SOFFICE")]
    soffice: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Manage people, enrollment codes and devices directly in the data directory (works while
    /// the server runs).
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// Add a person: admin, viewer (department), leader or worker (of a work group).
    AddPerson {
        /// Their name.
        #[arg(long)]
        name: String,
        /// admin, viewer, leader or worker (or 管理员, 部门查看人员, 工作组组长, 工作组成员).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Their work group (a work_group record id), for leaders and workers.
        #[arg(long)]
        group: Option<uuid::Uuid>,
    },
    /// Issue a one-time enrollment code for a person's device.
    Code {
        /// The person's id.
        #[arg(long)]
        person: uuid::Uuid,
        /// Hours the code stays valid.
        #[arg(long, default_value_t = 72)]
        hours: u32,
    },
    /// List people.
    People,
    /// List work groups (their ids are what --group takes) with their villages.
    Groups,
    /// List devices with their owner and last sync.
    Devices,
    /// Revoke a device: its next sync is refused and it wipes its store.
    Revoke {
        /// The device id.
        device: uuid::Uuid,
    },
    /// After restoring this data directory from a backup: give the log a new epoch, so that
    /// every device uploads again what the backup lacks, and accept for seven days the other
    /// devices' changes they relay without tags (counted as unverified in the audit log).
    Restored,
    /// Show the newest lines of the audit log.
    Audit {
        /// How many lines.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s)
        .ok_or_else(|| format!("{s:?} is not a role: use admin, viewer, leader or worker"))
}

async fn admin(
    data_dir: &std::path::Path,
    database: Option<&str>,
    command: AdminCommand,
) -> anyhow::Result<()> {
    let storage = fieldsync_server::open_admin_storage_at(data_dir, database).await?;
    let result = admin_on(&storage, command).await;
    storage.close().await;
    result
}

async fn admin_on(
    storage: &std::sync::Arc<dyn fieldsync_server::storage::Storage>,
    command: AdminCommand,
) -> anyhow::Result<()> {
    use fieldsync_server::operations::{self, By};
    use fieldsync_server::storage::AuditFilter;
    let time = |ms: Option<i64>| {
        ms.map(fieldsync_server::ui::page::time)
            .unwrap_or_else(|| "-".into())
    };
    match command {
        AdminCommand::AddPerson { name, role, group } => {
            let p = operations::create_person(storage.as_ref(), By::CommandLine, name, role, group)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}\t{}\t{}", p.id, p.name, p.role);
            if p.role.is_field() && p.group.is_none() {
                eprintln!(
                    "注意：组长和组员需要指定工作组（--group，见 admin groups），否则看不到任何村的记录 / \
                     note: leaders and workers see no village until they have a work group (--group; see admin groups)"
                );
            }
        }
        AdminCommand::Code { person, hours } => {
            let (code, expires) =
                operations::issue_code(storage.as_ref(), By::CommandLine, person, hours)
                    .await
                    .map_err(|e| anyhow::anyhow!("--hours: {e}"))?;
            println!("{code}");
            eprintln!(
                "登记码 {hours} 小时内有效，只能使用一次 / valid for {hours} h, once (expires at {expires} ms)"
            );
        }
        AdminCommand::Groups => {
            println!("work_group id\tname\tcampaign\tvillages");
            let groups = storage
                .records(
                    fieldsync_server::storage::RecordFilter {
                        kind: Some("work_group".into()),
                        limit: Some(10_000),
                        ..Default::default()
                    },
                    fieldsync_server::storage::Visibility::All,
                )
                .await?;
            for g in groups.iter().filter(|g| !g.deleted) {
                let villages = g.fields["villages"]
                    .as_str()
                    .map(|v| v.split(',').filter(|s| !s.is_empty()).count())
                    .unwrap_or(0);
                println!(
                    "{}\t{}\t{}\t{villages}",
                    g.id,
                    g.fields["name"].as_str().unwrap_or(""),
                    g.campaign
                );
            }
        }
        AdminCommand::People => {
            println!("id\tname\trole\twork_group");
            for p in storage.people().await? {
                println!(
                    "{}\t{}\t{}\t{}{}",
                    p.id,
                    p.name,
                    p.role,
                    p.group.map(|g| g.to_string()).unwrap_or_else(|| "-".into()),
                    if p.disabled { "\tdisabled" } else { "" }
                );
            }
        }
        AdminCommand::Devices => {
            println!("id\tname\tperson\tlast push\tlast pull\tpushed");
            for d in storage.devices().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}{}",
                    d.id,
                    d.name.unwrap_or_default(),
                    d.person_name.unwrap_or_else(|| "-".into()),
                    time(d.last_push),
                    time(d.last_pull),
                    d.pushed,
                    if d.revoked_at.is_some() {
                        "\trevoked"
                    } else {
                        ""
                    }
                );
            }
        }
        AdminCommand::Revoke { device } => {
            anyhow::ensure!(
                operations::revoke(storage.as_ref(), By::CommandLine, device)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                "no device {device} in this data directory"
            );
            println!("revoked {device}");
        }
        AdminCommand::Restored => {
            let (epoch, until) = operations::declare_restored(storage.as_ref(), By::CommandLine)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "已登记为从备份恢复：各设备下次同步时重新上传；{} 前接受其他设备代传的无签名修改 / \
                 declared restored: devices upload again on their next sync; untagged relays \
                 accepted until {} (new log epoch {epoch})",
                time(Some(until)),
                time(Some(until))
            );
        }
        AdminCommand::Audit { limit } => {
            let lines = storage
                .audit_log(AuditFilter {
                    limit: Some(limit),
                    ..Default::default()
                })
                .await?;
            for (id, e) in lines {
                println!(
                    "{id}\t{}\t{}\t{}\t{}\t{}",
                    e.at,
                    e.action,
                    e.outcome,
                    e.device
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "-".into()),
                    e.detail
                );
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter =
        EnvFilter::try_from_env("FIELDSYNC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter)
            .init();
    }
    if let Some(Command::Admin(command)) = args.command {
        return admin(&args.data_dir, args.database.as_deref(), command).await;
    }
    {
        let storage =
            fieldsync_server::open_admin_storage_at(&args.data_dir, args.database.as_deref())
                .await?;
        let code = fieldsync_server::bootstrap_admin(&storage, 24)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"));
        storage.close().await;
        if let Some((person, code)) = code? {
            println!(
                "还没有登记管理员设备。管理员（{}）登记码：{code}（24 小时内有效，只能用一次）\n\
                 no administrator device is enrolled yet; enroll one with this code (valid 24 h, once):\n  \
                 fieldsync enroll --server {}://{} --code {code}",
                person.name,
                if args.tls_cert.is_some() {
                    "https"
                } else {
                    "http"
                },
                args.listen
            );
        }
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(fieldsync_server::tls::config_from_pem_files(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "fieldsync server on {scheme}://{} (data in {})",
        listener.local_addr()?,
        match &args.database {
            Some(_) => "PostgreSQL".to_string(),
            None => args.data_dir.display().to_string(),
        }
    );
    fieldsync_server::run(
        listener,
        fieldsync_server::Config {
            data_dir: args.data_dir,
            database: args.database,
            limits: fieldsync_server::auth::Limits {
                requests_per_minute: args.requests_per_minute,
                max_push_records: args.max_push_records,
                ..Default::default()
            },
            tls,
            trusted_proxies: args.trusted_proxies,
            conn: fieldsync_server::net::ConnLimits {
                max_connections: args.max_connections as usize,
                header_read_timeout: std::time::Duration::from_secs(args.header_read_timeout),
                body_read_timeout: std::time::Duration::from_secs(args.body_read_timeout),
                ..Default::default()
            },
            blob_dir: args.attachments_dir,
            blob_store: args.attachments_store,
            blob_store_options: Vec::new(),
            attachment_grace: Some(std::time::Duration::from_secs(
                args.attachment_grace_days * 24 * 3600,
            )),
            attachment_quota: args.attachment_quota_mb.map(|mb| mb * 1024 * 1024),
            soffice: args.soffice,
        },
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

//! `fieldsync-server`: serves sync, records and (later) the dashboard on embedded SQLite.
//!
//! ```text
//! cargo run --release -p fieldsync-server                      # 127.0.0.1:8080, ./fieldsync-data
//! cargo run --release -p fieldsync-server -- --listen 0.0.0.0:8080 --data-dir /var/lib/fieldsync
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// fieldsync server: reconciles field devices' changes and keeps the merged records.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FIELDSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the SQLite database (created if missing).
    #[arg(long, env = "FIELDSYNC_DATA_DIR", default_value = "fieldsync-data")]
    data_dir: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "FIELDSYNC_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter =
        EnvFilter::try_from_env("FIELDSYNC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "fieldsync server on http://{} (data in {})",
        listener.local_addr()?,
        args.data_dir.display()
    );
    fieldsync_server::run(
        listener,
        fieldsync_server::Config {
            data_dir: args.data_dir,
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

//! What the benchmarks in `examples/` share: a server run in a child process of the benchmark
//! (so that its peak memory and CPU time are its own), and reading those from /proc.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

/// Peak resident memory (VmHWM) of process `pid`, in KiB (Linux).
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM")
}

/// Sets the peak memory of process `pid` back to what it holds now (Linux: `clear_refs` 5), so
/// that the next [`peak_rss_kib`] tells the peak of what came after.
pub fn reset_peak(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    Ok(())
}

/// CPU seconds (user + system) a process has used so far, from /proc (Linux only; 0 elsewhere).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

/// The server side of [`ChildServer`]: serves `dir` (on SQLite, or on the PostgreSQL
/// `database`) on a loopback port, prints `http://<addr>` and `codes` one-time codes of an
/// administrator on one line, and stops when its stdin closes. Call it from the benchmark's
/// `serve` subcommand.
pub fn serve_child(dir: &str, database: Option<&str>, codes: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let storage =
            fieldsync_server::open_storage_at(std::path::Path::new(dir), database).await?;
        let admin = storage
            .create_person("bench".into(), fieldsync_protocol::auth::Role::Admin, None)
            .await?;
        let mut issued = Vec::new();
        for _ in 0..codes {
            let (code, _) = fieldsync_server::admin::issue(storage.as_ref(), admin.id, 1)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            issued.push(code);
        }
        storage.close().await;
        drop(storage);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("http://{} {}", listener.local_addr()?, issued.join(" "));
        std::io::stdout().flush()?;
        // Stop when the parent closes our stdin.
        let shutdown = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut s = String::new();
                while std::io::stdin()
                    .read_line(&mut s)
                    .map(|n| n > 0)
                    .unwrap_or(false)
                {}
            })
            .await;
        };
        let mut config = fieldsync_server::Config::new(dir);
        config.database = database.map(String::from);
        fieldsync_server::run(listener, config, shutdown).await?;
        anyhow::Ok(())
    })
}

/// A server in a child process: the benchmark's own executable run with `args` (its `serve`
/// subcommand calling [`serve_child`]).
pub struct ChildServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The one-time codes it printed.
    pub codes: Vec<String>,
    child: Child,
}

impl ChildServer {
    /// Starts the server and reads its address and codes.
    pub fn spawn(args: &[String]) -> Result<ChildServer> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
        let mut words = line.split_whitespace().map(String::from);
        let Some(url) = words.next().filter(|u| u.starts_with("http://")) else {
            bail!("the server printed {line:?}");
        };
        Ok(ChildServer {
            url,
            codes: words.collect(),
            child,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server (closes its stdin) and waits for it.
    pub fn stop(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        self.child.wait()?;
        Ok(())
    }
}

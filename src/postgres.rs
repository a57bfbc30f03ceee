//! A real PostgreSQL for tests, started from Debian's binaries: one cluster per test process
//! (`initdb` into a temp dir, `pg_ctl start` on a free 127.0.0.1 port with its unix socket in
//! that dir), a fresh database per test ([`database`]), and the cluster stopped and its directory
//! removed when the process exits.
//!
//! PostgreSQL refuses to run as root: when the tests run as root (CI does) the cluster belongs to
//! the `nobody` user and every server command runs through `runuser -u nobody`. The binaries are
//! found with `FIELDSYNC_PG_BIN`, else `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin` (`.ci/run` installs Debian's `postgresql` when none is there).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, bail};

/// A running cluster of this test process.
#[derive(Debug)]
pub struct Cluster {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The temp dir holding the data directory, the log and the unix socket.
    pub dir: PathBuf,
    bin: PathBuf,
    /// `Some(user)` when server commands run as another user (the tests run as root).
    run_as: Option<String>,
    /// Creating databases one at a time (two `CREATE DATABASE` from one template can collide).
    create: Mutex<()>,
}

/// The cluster of this process, started on first use.
pub fn cluster() -> anyhow::Result<&'static Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| Cluster::start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("cannot start a PostgreSQL cluster for the tests: {e}"))
}

/// A fresh, empty database on this process's cluster: its `postgres://` URL.
pub fn database() -> anyhow::Result<String> {
    cluster()?.database()
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FIELDSYNC_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("pg_ctl").exists() {
            return Ok(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).context(
        "no PostgreSQL server binaries (pg_ctl) found: install Debian's `postgresql` package \
         (`.ci/run` does) or set FIELDSYNC_PG_BIN",
    )
}

fn id_of(user: &str, flag: &str) -> anyhow::Result<u32> {
    let out = Command::new("id").args([flag, user]).output()?;
    if !out.status.success() {
        bail!("no user {user} to run PostgreSQL as");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cluster {
    /// The pid of the cluster's postmaster (the first line of its `postmaster.pid`), while it
    /// runs; its backends are its children.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("data").join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    fn start() -> anyhow::Result<Cluster> {
        let bin = bin_dir()?;
        let root = std::fs::metadata("/proc/self")?.uid() == 0;
        let dir = tempfile::Builder::new()
            .prefix("fieldsync-pg-")
            .tempdir()?
            .keep();
        let run_as = if root {
            let user = "nobody";
            std::os::unix::fs::chown(&dir, Some(id_of(user, "-u")?), Some(id_of(user, "-g")?))?;
            Some(user.to_string())
        } else {
            None
        };
        let mut cluster = Cluster {
            port: 0,
            dir,
            bin,
            run_as,
            create: Mutex::new(()),
        };
        cluster.guard_exit()?;
        let data = cluster.dir.join("data");
        // C.UTF-8: pg_trgm takes Chinese characters as word characters only under a UTF-8
        // character classification.
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C.UTF-8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        // `FIELDSYNC_PG_SLOW_MS=N`: statements of N ms or more are logged, with their
        // parameters, to a log kept after the process ends (its path is printed), for reading
        // where a benchmark's time goes.
        let (slow, log) = match std::env::var("FIELDSYNC_PG_SLOW_MS") {
            Ok(ms) => {
                let ms: u32 = ms
                    .parse()
                    .context("FIELDSYNC_PG_SLOW_MS: a number of milliseconds")?;
                let log = std::env::temp_dir()
                    .join(format!("fieldsync-postgres-{}.log", std::process::id()));
                eprintln!(
                    "PostgreSQL statements of {ms} ms or more: {}",
                    log.display()
                );
                (format!(" -c log_min_duration_statement={ms}"), log)
            }
            Err(_) => (String::new(), cluster.dir.join("log")),
        };
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=300{slow}",
                cluster.dir.display()
            );
            match cluster.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "60".as_ref(),
                    "-o".as_ref(),
                    options.as_ref(),
                    "start".as_ref(),
                ],
            ) {
                Ok(()) => {
                    cluster.port = port;
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(e.context(format!("pg_ctl start failed; its log:\n{log}")));
        }
        // The storage's first migration creates `pg_trgm` in each test database itself (the
        // tests connect as the superuser), as it does on a fresh production database.
        Ok(cluster)
    }

    /// A guardian shell that waits for this process to end, then stops the cluster and removes
    /// its directory (statics are never dropped, so the test process cannot do it itself).
    fn guard_exit(&self) -> anyhow::Result<()> {
        let pg_ctl = self.bin.join("pg_ctl");
        let as_user = match &self.run_as {
            Some(u) => format!("runuser -u {u} -- "),
            None => String::new(),
        };
        let script = format!(
            "trap '' INT TERM HUP; while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             if [ -f '{dir}/data/postmaster.pid' ]; then \
             {as_user}'{pg_ctl}' -D '{dir}/data' -m immediate stop >/dev/null 2>&1; fi; \
             rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display(),
            pg_ctl = pg_ctl.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the cluster's exit guard")?;
        Ok(())
    }

    /// Runs one of the server's programs (as the cluster's user) and waits for it.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", path.display()))?;
        if !out.status.success() {
            bail!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The URL of database `name` on this cluster (as the superuser `postgres`, over TCP).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one statement in database `name` (on a thread of its own, so that it works from
    /// inside an async test too).
    pub fn sql(&self, name: &str, statement: &str) -> anyhow::Result<()> {
        let url = self.url(name);
        let statement = statement.to_string();
        std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                let conn = tokio::spawn(conn);
                client.batch_execute(&statement).await?;
                drop(client);
                let _ = conn.await;
                Ok(())
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the SQL thread panicked"))?
    }

    /// Creates a fresh, empty database and returns its URL.
    pub fn database(&self) -> anyhow::Result<String> {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let _one_at_a_time = self.create.lock().unwrap_or_else(|e| e.into_inner());
        self.sql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// The cluster's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

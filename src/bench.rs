//! What the benchmarks in `examples/` share: a server run in a child process of the benchmark
//! (so that its peak memory and CPU time are its own), reading those from /proc, and the
//! interview records the sync benchmarks write.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use fieldsync_client_core::FieldValue;

use crate::generator::Rng;

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

/// CPU seconds (user + system), as [`cpu_seconds`] reads them, of the processes whose parent is
/// `pid` and whose command line (`/proc/<pid>/cmdline`, arguments joined by spaces) `keep`
/// accepts: of a PostgreSQL postmaster, its backends serving clients (their command line names
/// the client's address) rather than its background workers. A child that ended since is no
/// longer counted.
pub fn children_cpu_seconds(pid: u32, keep: impl Fn(&str) -> bool) -> f64 {
    let parent = |p: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        // The parent's pid is the second field after the command name.
        let rest = stat.rsplit_once(')')?.1;
        rest.split_whitespace().nth(1)?.parse().ok()
    };
    let command = |p: u32| {
        std::fs::read(format!("/proc/{p}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default()
    };
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| parent(*p) == Some(pid) && keep(&command(*p)))
        .map(cpu_seconds)
        .sum()
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

/// Phrases of a cadre's interview notes, which the benchmarks' notes are made of.
pub const PHRASES: &[&str] = &[
    "村两委班子",
    "团结协作",
    "集体经济收入",
    "产业发展",
    "党员教育管理",
    "三会一课",
    "组织生活会",
    "村务公开",
    "群众反映",
    "后备干部",
    "乡村振兴",
    "基础设施建设",
    "人居环境整治",
    "矛盾纠纷调解",
    "便民服务",
    "发展党员",
    "驻村干部",
    "民主评议",
    "工作作风",
    "履职尽责",
    "廉洁自律",
    "项目建设",
    "土地流转",
    "合作社",
    "增收致富",
    "班子成员",
    "书记",
    "主任",
    "年龄结构",
    "学历层次",
    "能力不足",
    "积极性不高",
    "存在问题",
    "下一步",
    "整改措施",
    "加强",
    "落实",
    "完善",
    "推进",
    "提升",
];

/// A 500-character interview note of [`PHRASES`], as `Text`: what the sync benchmarks write.
pub fn interview_note(rng: &mut Rng) -> String {
    let mut s = String::new();
    while s.chars().count() < 500 {
        s.push_str(rng.pick(PHRASES));
        s.push(if rng.next_bits().is_multiple_of(5) {
            '。'
        } else {
            '，'
        });
    }
    s.chars().take(500).collect()
}

/// The `i`-th interview of the sync benchmarks: 14 short values and a 500-character note
/// ([`interview_note`]) as a `Text`, drawn from `rng` (the same seed gives the same records).
pub fn interview_fields(i: usize, rng: &mut Rng) -> Vec<(&'static str, FieldValue)> {
    let s = |v: String| FieldValue::Str(v);
    vec![
        ("interviewer", s(format!("工作组{}", i % 9 + 1))),
        (
            "interviewee",
            s(format!(
                "{}{}",
                rng.pick(&["王", "李", "张", "刘", "陈"]),
                rng.pick(&["建国", "秀英", "明", "伟", "芳"])
            )),
        ),
        (
            "position",
            s(rng
                .pick(&["书记", "主任", "副书记", "委员", "一肩挑"])
                .into()),
        ),
        (
            "category",
            s(rng
                .pick(&["班子成员", "党员代表", "村民代表", "村民小组长"])
                .into()),
        ),
        ("date", s(format!("2026-0{}-{:02}", 3 + i % 6, 1 + i % 28))),
        ("age", FieldValue::Int(28 + (rng.next_bits() % 35) as i64)),
        (
            "education",
            s(rng.pick(&["初中", "高中", "大专", "本科"]).into()),
        ),
        (
            "party_member",
            FieldValue::Bool(!rng.next_bits().is_multiple_of(4)),
        ),
        (
            "rating_team",
            s(rng.pick(&["满意", "基本满意", "不满意"]).into()),
        ),
        (
            "rating_secretary",
            s(rng.pick(&["满意", "基本满意", "不满意"]).into()),
        ),
        (
            "problems_raised",
            FieldValue::Int((rng.next_bits() % 4) as i64),
        ),
        (
            "duration_min",
            FieldValue::Int(15 + (rng.next_bits() % 60) as i64),
        ),
        ("location", s(format!("村委会{}号会议室", 1 + i % 3))),
        (
            "follow_up",
            FieldValue::Bool(rng.next_bits().is_multiple_of(3)),
        ),
        ("notes", FieldValue::Text(interview_note(rng))),
    ]
}

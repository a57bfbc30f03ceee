//! `fieldsync`: the field worker's command line over client-core — record offline, sync with
//! the server, exchange bundles with another device when there is no network.
//!
//! ```text
//! fieldsync enroll --server https://zzb.example.gov.cn --code K7QX-2M4P-9RTA --name 张三的笔记本
//! fieldsync init --campaign <id>
//! fieldsync new interview --village 510100001001 --set date=2026-05-18 --set 'notes=…'
//! fieldsync new interview --village 510100001001 --prompt
//! fieldsync sync
//! fieldsync bundle export today.fsb --for leader.state
//! ```
//!
//! Exit codes: 0 done; 1 an unexpected failure; 2 a usage error; 3 invalid input (nothing was
//! saved); 4 the server could not be reached or the line broke (nothing was lost: sync again);
//! 5 the server refused; 6 no such record.

/// The allocator of fieldsync's binaries: mimalloc spends less time allocating and freeing the
/// many small values Automerge makes while merging than the system allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use fieldsync_client_core::account;
use fieldsync_client_core::bundle::{BundleError, Export};
use fieldsync_client_core::forms::{parse_input, parse_json_input};
use fieldsync_client_core::import::{ImportError, ImportKind};
use fieldsync_client_core::sync::{Progress, sync_with_progress};
use fieldsync_client_core::{
    FieldValue, Filter, FormError, HttpOptions, HttpTransport, Record, Store, StoreError,
    SyncError, SyncOptions, TransportError,
};
use fieldsync_protocol::auth::WireScope;
use fieldsync_protocol::template::{FieldType, RefPolicy, Template};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "fieldsync",
    version,
    about = "fieldsync 外业记录工具：离线记录谈心谈话等，联网时同步 / record field interviews offline and sync them"
)]
struct Cli {
    /// The local store (a SQLite file). 本机数据文件。
    #[arg(
        long,
        env = "FIELDSYNC_STORE",
        default_value = "fieldsync.sqlite3",
        global = true
    )]
    store: PathBuf,
    /// Open the store encrypted with the 256-bit key in this file (64 hex digits or 32 raw
    /// bytes), as an app would with a key from the phone's keystore. 本机数据加密密钥文件。
    #[arg(long, env = "FIELDSYNC_STORE_KEY_FILE", global = true)]
    key_file: Option<PathBuf>,
    /// Print JSON instead of tables and sentences. 以 JSON 输出。
    #[arg(long, global = true)]
    json: bool,
    /// Language of messages. 提示语言。
    #[arg(
        long,
        env = "FIELDSYNC_LANG",
        value_enum,
        default_value = "zh",
        global = true
    )]
    lang: Lang,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Lang {
    Zh,
    En,
}

#[derive(Subcommand)]
enum Command {
    /// Set this device's server and campaign. 设置服务器地址和工作任务。
    Init {
        /// Server address, such as https://zzb.example.gov.cn (http only to this machine).
        #[arg(long)]
        server: Option<String>,
        /// Campaign id.
        #[arg(long)]
        campaign: Option<Uuid>,
    },
    /// Enroll this device with a one-time code from the administrator. 用登记码登记本机。
    Enroll {
        /// Server address, such as https://zzb.example.gov.cn (http only to this machine).
        #[arg(long)]
        server: String,
        /// The one-time code (such as K7QX-2M4P-9RTA).
        #[arg(long)]
        code: String,
        /// How administrators will see this device. 设备名称。
        #[arg(long, default_value = "")]
        name: String,
        /// Trust this PEM certificate (a server with a self-signed certificate).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Allow plain http to another machine (only on a network you trust).
        #[arg(long)]
        insecure_http: bool,
    },
    /// Who this device belongs to and what it may see, asked from the server. 查询本机身份。
    Whoami,
    /// Who and what this device is, what waits to upload. 本机状态。
    Status,
    /// Start a campaign from a template (department). 新建工作任务。
    CampaignCreate {
        /// Built-in template (midterm, lookback) or a TOML file.
        #[arg(long)]
        template: String,
        /// Campaign name.
        #[arg(long)]
        name: String,
        /// Year.
        #[arg(long)]
        year: i64,
    },
    /// Import places, members or work groups from CSV (UTF-8 or GBK). 导入基础数据。
    Import {
        /// What the file holds.
        #[arg(value_enum)]
        what: ImportWhat,
        /// The CSV file.
        file: PathBuf,
    },
    /// The campaign's forms and their fields. 表单及字段。
    Forms {
        /// Only this kind.
        kind: Option<String>,
    },
    /// Create a record. 新建记录。
    New {
        /// The kind (interview, meeting, questionnaire, …).
        kind: String,
        /// The village or community code the record belongs to.
        #[arg(long)]
        village: String,
        /// field=value (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
        /// A JSON file of field values.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Ask for each field in turn.
        #[arg(long)]
        prompt: bool,
    },
    /// Change fields of a record. 修改记录。
    Edit {
        /// Record id (or its last 8 characters, as `list` shows it).
        id: String,
        /// field=value (repeatable); an empty value clears the field.
        #[arg(long = "set", value_name = "FIELD=VALUE", required = true)]
        set: Vec<String>,
    },
    /// Append to a long text field (notes). 追加记录内容。
    Append {
        /// Record id.
        id: String,
        /// The field.
        field: String,
        /// The text to append.
        text: String,
    },
    /// Delete a record (the deletion syncs). 删除记录。
    Delete {
        /// Record id.
        id: String,
    },
    /// List records. 列出记录。
    List {
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only this village code.
        #[arg(long)]
        village: Option<String>,
        /// Only records mentioning this member id.
        #[arg(long)]
        member: Option<String>,
        /// Only records containing this text.
        #[arg(long)]
        text: Option<String>,
        /// Only records with conflicts.
        #[arg(long)]
        conflicted: bool,
    },
    /// Show one record. 查看记录。
    Show {
        /// Record id.
        id: String,
    },
    /// Fields two people set to different values. 查看冲突。
    Conflicts {
        /// Record id.
        id: String,
    },
    /// Settle a conflict by writing the value to keep. 解决冲突。
    Resolve {
        /// Record id.
        id: String,
        /// The field.
        field: String,
        /// The value to keep.
        value: String,
    },
    /// Sync with the server. 与服务器同步。
    Sync {
        /// Tries after a network failure before giving up.
        #[arg(long, default_value_t = 3)]
        retries: u32,
    },
    /// Exchange changes with another device by file. 离线交换数据包。
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// The field app in the browser, on this machine only (127.0.0.1). 打开外业记录应用。
    App {
        /// The port (default: any free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Print the address but do not open the browser.
        #[arg(long)]
        no_open: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ImportWhat {
    Places,
    Members,
    Groups,
}

#[derive(Subcommand)]
enum BundleCommand {
    /// Write what this device holds, for the other device to export against.
    State {
        /// Output file.
        file: PathBuf,
    },
    /// Write a bundle of changes.
    Export {
        /// Output file.
        file: PathBuf,
        /// Only what the device of this state file lacks.
        #[arg(long = "for")]
        for_state: Option<PathBuf>,
        /// Only changes after this local position (printed by the previous export).
        #[arg(long)]
        since: Option<i64>,
    },
    /// Apply a bundle from another device.
    Import {
        /// The bundle file.
        file: PathBuf,
    },
}

static LANG: OnceLock<Lang> = OnceLock::new();

/// The message in the chosen language.
fn t(zh: &str, en: &str) -> String {
    match LANG.get().copied().unwrap_or(Lang::Zh) {
        Lang::Zh => zh.to_string(),
        Lang::En => en.to_string(),
    }
}

/// An error with the exit code a script can rely on.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<FormError>() {
            return match f {
                FormError::Store(StoreError::NotFound(_)) => 6,
                FormError::Store(_) => 1,
                _ => 3,
            };
        }
        if cause.downcast_ref::<ImportError>().is_some() {
            return 3;
        }
        if let Some(b) = cause.downcast_ref::<BundleError>() {
            return match b {
                BundleError::NotABundle(..) => 3,
                BundleError::Store(StoreError::BadChange { .. }) => 3,
                BundleError::Store(_) => 1,
            };
        }
        if let Some(StoreError::NotFound(_)) = cause.downcast_ref::<StoreError>() {
            return 6;
        }
        if let Some(SyncError::Revoked) = cause.downcast_ref::<SyncError>() {
            return 5;
        }
        if let Some(a) = cause.downcast_ref::<account::AccountError>() {
            return match a {
                account::AccountError::Setup(_) | account::AccountError::NotEnrolled => 3,
                account::AccountError::Transport(
                    TransportError::Unreachable(_) | TransportError::Interrupted(_),
                ) => 4,
                account::AccountError::Transport(TransportError::Refused { .. }) => 5,
                _ => 1,
            };
        }
        if let Some(SyncError::Transport(t, _)) = cause.downcast_ref::<SyncError>() {
            return match t {
                TransportError::Unreachable(_) | TransportError::Interrupted(_) => 4,
                TransportError::Refused { .. } => 5,
                TransportError::Protocol(_) => 1,
            };
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return 2;
        }
        if cause.downcast_ref::<UserError>().is_some() {
            return 3;
        }
    }
    1
}

/// Input the user can fix.
#[derive(Debug)]
struct UserError(String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// A command used wrongly (exit code 2, as for clap's own usage errors).
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn user(zh: &str, en: &str) -> anyhow::Error {
    anyhow!(UserError(t(zh, en)))
}

/// Writes a line to stdout. A closed stdout (`fieldsync list --json | head`) ends the program
/// quietly with exit code 0: the reader has what it wanted. Any other write error ends it with
/// code 1 and a message on stderr. Never a panic, as `println!` would.
macro_rules! out {
    ($($arg:tt)*) => {
        write_stdout(format_args!($($arg)*))
    };
}

/// See [`out!`].
fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!(
            "{}: {e}",
            t("无法写入标准输出", "cannot write to standard output")
        );
        std::process::exit(1);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = LANG.set(cli.lang);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{}: {:#}", t("错误", "error"), f.error);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let json = cli.json;
    let opened = match &cli.key_file {
        None => Store::open(&cli.store).map_err(anyhow::Error::from),
        Some(path) => read_key(path).and_then(|key| Ok(Store::open_encrypted(&cli.store, &key)?)),
    };
    let mut store = opened
        .with_context(|| {
            format!(
                "{} {}",
                t("无法打开本机数据文件", "cannot open the store"),
                cli.store.display()
            )
        })
        .map_err(|error| Failure { code: 1, error })?;
    let result = match cli.command {
        Command::App { port, no_open } => app(store, port, no_open),
        other => command(&mut store, other, json),
    };
    result.map_err(|error| Failure {
        code: exit_code(&error),
        error,
    })
}

/// `fieldsync app`: serves the field app over this store on 127.0.0.1 until Ctrl-C, prints
/// its address (with the launch secret) and opens the browser unless `no_open`.
fn app(store: Store, port: u16, no_open: bool) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| {
                t(
                    &format!("无法使用端口 {port}"),
                    &format!("cannot listen on port {port}"),
                )
            })?;
        let options = fieldsync_app::AppOptions::default();
        let url = options.launch_url(listener.local_addr()?);
        println!(
            "{}\n{url}",
            t(
                "外业记录应用已启动（仅限本机），用浏览器打开（按 Ctrl-C 退出）：",
                "the field app is running (this machine only); open in a browser (Ctrl-C to stop):"
            )
        );
        if !no_open {
            let opener = if cfg!(target_os = "macos") {
                "open"
            } else {
                "xdg-open"
            };
            if std::process::Command::new(opener)
                .arg(&url)
                .spawn()
                .is_err()
            {
                eprintln!(
                    "{}",
                    t(
                        "无法自动打开浏览器，请手动打开上面的地址",
                        "could not open a browser: open the address above"
                    )
                );
            }
        }
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        fieldsync_app::serve(listener, store, options, shutdown).await?;
        Ok(())
    })
}

/// A 256-bit key from a file: 64 hex digits (whitespace ignored) or exactly 32 bytes.
fn read_key(path: &std::path::Path) -> Result<[u8; 32]> {
    let bytes = std::fs::read(path).with_context(|| {
        t(
            &format!("无法读取密钥文件 {}", path.display()),
            &format!("cannot read the key file {}", path.display()),
        )
    })?;
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if let Ok(hex) = hex::decode(&text)
        && let Ok(key) = <[u8; 32]>::try_from(hex.as_slice())
    {
        return Ok(key);
    }
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        user(
            "密钥文件应为 64 位十六进制数字或 32 字节",
            "the key file must hold 64 hex digits or 32 bytes",
        )
    })
}

fn campaign(store: &Store) -> Result<Uuid> {
    let id = store.setting("campaign")?.ok_or_else(|| {
        user(
            "尚未设置工作任务：运行 fieldsync init --campaign <编号>",
            "no campaign set: run fieldsync init --campaign <id>",
        )
    })?;
    Ok(Uuid::parse_str(&id)?)
}

fn template(store: &Store) -> Result<Template> {
    let c = campaign(store)?;
    Ok(store.template(c)?.ok_or(FormError::NoTemplate(c))?)
}

/// Finds a record by full id or by a unique prefix.
fn find(store: &Store, id: &str) -> Result<Uuid> {
    if let Ok(u) = Uuid::parse_str(id) {
        return Ok(u);
    }
    let matches: Vec<Uuid> = store
        .list(&Filter {
            include_deleted: true,
            ..Default::default()
        })?
        .into_iter()
        .map(|r| r.header.id)
        .filter(|u| {
            // v7 ids start with the time, so their ends are what tells them apart.
            let full = u.to_string();
            full.starts_with(id) || full.ends_with(id)
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(anyhow!(StoreError::NotFound(Uuid::nil()))
            .context(format!("{} {id}", t("没有这条记录：", "no record")))),
        _ => Err(user(
            &format!("“{id}”对应多条记录，请多写几位"),
            &format!("{id:?} matches several records; give more of the id"),
        )),
    }
}

/// Reads `field=value` pairs through the kind's form.
fn parse_sets(
    template: &Template,
    kind: &str,
    sets: &[String],
) -> Result<BTreeMap<String, FieldValue>> {
    let def = template.kind(kind).ok_or_else(|| {
        user(
            &format!("没有“{kind}”这种表单，运行 fieldsync forms 查看"),
            &format!("there is no form {kind:?}; run fieldsync forms"),
        )
    })?;
    let mut out = BTreeMap::new();
    for s in sets {
        let (name, value) = s.split_once('=').ok_or_else(|| {
            user(
                &format!("“{s}”应写成 字段=值"),
                &format!("{s:?} must be written field=value"),
            )
        })?;
        let f = def.field(name.trim()).ok_or_else(|| {
            user(
                &format!("“{}”表单中没有字段 {name}", def.label.zh),
                &format!("the {} form has no field {name:?}", def.label.en),
            )
        })?;
        if value.trim().is_empty() {
            out.insert(f.name.clone(), FieldValue::Null);
            continue;
        }
        let v = parse_input(f, value).map_err(|(zh, en)| {
            user(
                &format!("“{}”（{}）：{zh}", f.label.zh, f.name),
                &format!("{} ({}): {en}", f.label.en, f.name),
            )
        })?;
        out.insert(f.name.clone(), v);
    }
    Ok(out)
}

fn label<'a>(zh: &'a str, en: &'a str) -> &'a str {
    match LANG.get().copied().unwrap_or(Lang::Zh) {
        Lang::Zh => zh,
        Lang::En => en,
    }
}

/// Asks for each field of the form in turn, checking every answer at once.
fn prompt(store: &Store, template: &Template, kind: &str) -> Result<BTreeMap<String, FieldValue>> {
    let def = template.kind(kind).ok_or_else(|| {
        user(
            &format!("没有“{kind}”这种表单"),
            &format!("there is no form {kind:?}"),
        )
    })?;
    let campaign = campaign(store)?;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = BTreeMap::new();
    let mut err = std::io::stderr();
    for f in &def.fields {
        loop {
            let need = if f.required {
                t("必填", "required")
            } else {
                t("可跳过，直接回车", "optional: press Enter to skip")
            };
            let name = label(&f.label.zh, &f.label.en);
            writeln!(
                err,
                "{}",
                t(
                    &format!("{name}（{}，{need}）", f.name),
                    &format!("{name} ({}, {need})", f.name)
                )
            )?;
            for (i, c) in f.choices.iter().enumerate() {
                writeln!(err, "  {}) {} {}", i + 1, label(&c.zh, &c.en), c.value)?;
            }
            if f.field_type == FieldType::Date {
                writeln!(err, "  {}", t("格式：2026-05-18", "as 2026-05-18"))?;
            }
            write!(err, "> ")?;
            err.flush()?;
            let Some(line) = lines.next() else {
                return Err(user("输入已结束，未保存", "input ended; nothing was saved"));
            };
            let line = line?;
            let answer = line.trim();
            if answer.is_empty() {
                if f.required {
                    writeln!(err, "{}", t("此项必填。", "this field is required."))?;
                    continue;
                }
                break;
            }
            // A number picks a choice.
            let answer = match answer.parse::<usize>() {
                Ok(n)
                    if f.field_type == FieldType::Choice && (1..=f.choices.len()).contains(&n) =>
                {
                    f.choices[n - 1].value.clone()
                }
                _ => answer.to_string(),
            };
            let value = match parse_input(f, &answer) {
                Ok(v) => v,
                Err((zh, en)) => {
                    writeln!(err, "{}", label(&zh, &en))?;
                    continue;
                }
            };
            let mut trial = out.clone();
            trial.insert(f.name.clone(), value.clone());
            let lookup = |id: Uuid| store.get(id).ok().map(|r| r.header.kind);
            let problem = match template.validate(kind, &trial, &lookup, RefPolicy::MustExist) {
                Ok(()) => None,
                Err(invalid) => invalid.problems.into_iter().find(|p| p.field == f.name),
            };
            if let Some(p) = problem {
                writeln!(err, "{}", label(&p.zh, &p.en))?;
                continue;
            }
            out.insert(f.name.clone(), value);
            break;
        }
    }
    let _ = campaign;
    Ok(out)
}

fn value_text(v: &FieldValue) -> String {
    match v {
        FieldValue::Str(s) | FieldValue::Text(s) => s.clone(),
        other => other.to_json().to_string(),
    }
}

fn record_json(r: &Record) -> serde_json::Value {
    serde_json::json!({
        "id": r.header.id,
        "kind": r.header.kind,
        "campaign": r.header.campaign,
        "village": r.header.scope,
        "deleted": r.deleted,
        "conflicts": r.conflicts,
        "fields": r.fields.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<serde_json::Map<_, _>>(),
    })
}

fn summary(r: &Record) -> String {
    let text: String = [
        "notes",
        "text",
        "measure",
        "name",
        "rating",
        "interviewee_name",
    ]
    .iter()
    .find_map(|k| r.fields.get(*k))
    .map(value_text)
    .unwrap_or_default();
    let mut short: String = text.chars().take(24).collect();
    if text.chars().count() > 24 {
        short.push('…');
    }
    short
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    out!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn command(store: &mut Store, command: Command, json: bool) -> Result<()> {
    match command {
        Command::Init { server, campaign } => {
            if let Some(s) = server {
                HttpTransport::new(&s)?; // refuse a bad or insecure address now
                store.set_setting("server", &s)?;
            }
            if let Some(c) = campaign {
                store.set_setting("campaign", &c.to_string())?;
            }
            status(store, json)
        }
        Command::Status => status(store, json),
        Command::Enroll {
            server,
            code,
            name,
            ca_cert,
            insecure_http,
        } => {
            if let Some(path) = &ca_cert {
                store.set_setting("ca_cert", &path.display().to_string())?;
            }
            if insecure_http {
                store.set_setting("insecure_http", "true")?;
            }
            let options = http_options(store)?;
            let e = account::enroll(store, &server, &code, &name, &options)?;
            store.set_setting("server", &server)?;
            store.set_setting("person", &e.person.name)?;
            store.set_setting("role", e.person.role.as_str())?;
            // A work group's device works in its group's campaign: set it now.
            if let Ok(me) = account::whoami(store, &options) {
                store.apply_scope(&me.scope)?;
                campaign_from_scope(store)?;
            }
            if json {
                return print_json(&serde_json::json!({
                    "device": e.device, "person": e.person, "server": server,
                }));
            }
            out!(
                "{}",
                t(
                    &format!(
                        "登记成功：本机属于 {}（{}），服务器 {server}",
                        e.person.name,
                        e.person.role.zh()
                    ),
                    &format!(
                        "enrolled: this device belongs to {} ({}), server {server}",
                        e.person.name, e.person.role
                    )
                )
            );
            Ok(())
        }
        Command::Whoami => {
            let me = account::whoami(store, &http_options(store)?)?;
            store.apply_scope(&me.scope)?;
            if json {
                return print_json(&serde_json::to_value(&me)?);
            }
            out!("{}：{}", t("本机", "device"), me.device);
            out!(
                "{}：{}（{}）",
                t("使用人", "person"),
                me.person.name,
                t(me.person.role.zh(), me.person.role.as_str())
            );
            out!("{}：{}", t("范围", "scope"), scope_text(&me.scope));
            Ok(())
        }
        Command::CampaignCreate {
            template,
            name,
            year,
        } => {
            let tpl = match Template::builtin(&template) {
                Some(t) => t,
                None => {
                    let source = std::fs::read_to_string(&template).with_context(|| {
                        format!(
                            "{} {template}",
                            t(
                                "不是内置模板，也无法读取文件",
                                "not a built-in template nor a readable file:"
                            )
                        )
                    })?;
                    Template::parse(&source).map_err(|e| anyhow!(UserError(e.to_string())))?
                }
            };
            let id = fieldsync_protocol::new_record_id();
            store.create_campaign(id, &name, &tpl, year)?;
            store.set_setting("campaign", &id.to_string())?;
            if json {
                print_json(
                    &serde_json::json!({"campaign": id, "template": tpl.id, "version": tpl.version}),
                )
            } else {
                out!(
                    "{} {id}（{} {} v{}）",
                    t("已新建工作任务", "created campaign"),
                    name,
                    tpl.id,
                    tpl.version
                );
                Ok(())
            }
        }
        Command::Import { what, file } => {
            let c = campaign(store)?;
            let bytes = std::fs::read(&file).with_context(|| format!("{}", file.display()))?;
            let kind = match what {
                ImportWhat::Places => ImportKind::Places,
                ImportWhat::Members => ImportKind::Members,
                ImportWhat::Groups => ImportKind::WorkGroups,
            };
            let report = store.import_csv(c, kind, &bytes)?;
            if json {
                print_json(&serde_json::json!({"rows": report.rows, "records": report.records}))
            } else {
                out!(
                    "{}",
                    t(
                        &format!("已导入 {} 行，写入 {} 条记录", report.rows, report.records),
                        &format!(
                            "imported {} rows into {} records",
                            report.rows, report.records
                        )
                    )
                );
                Ok(())
            }
        }
        Command::Forms { kind } => {
            let tpl = template(store)?;
            let kinds: Vec<_> = tpl
                .kinds
                .values()
                .filter(|k| kind.as_deref().is_none_or(|want| k.name == want))
                .collect();
            if json {
                return print_json(&serde_json::to_value(&kinds)?);
            }
            out!("{} v{}", label(&tpl.name.zh, &tpl.name.en), tpl.version);
            for k in kinds {
                out!("\n{}  {}", k.name, label(&k.label.zh, &k.label.en));
                for f in &k.fields {
                    // Either the value or the label may be typed.
                    let choices: Vec<String> = f
                        .choices
                        .iter()
                        .map(|c| format!("{} {}", c.value, label(&c.zh, &c.en)))
                        .collect();
                    out!(
                        "  {:<24} {:<12} {}{}{}",
                        f.name,
                        format!("{:?}", f.field_type).to_lowercase(),
                        label(&f.label.zh, &f.label.en),
                        if f.required {
                            t(" *必填", " *required")
                        } else {
                            String::new()
                        },
                        if choices.is_empty() {
                            String::new()
                        } else {
                            format!(" [{}]", choices.join("|"))
                        }
                    );
                }
            }
            Ok(())
        }
        Command::New {
            kind,
            village,
            set,
            file,
            prompt: ask,
        } => {
            let c = campaign(store)?;
            let tpl = template(store)?;
            let mut fields = BTreeMap::new();
            if let Some(file) = file {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("{}", file.display()))?;
                let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    user(
                        &format!("JSON 文件有误：{e}"),
                        &format!("the JSON file is invalid: {e}"),
                    )
                })?;
                let obj = v
                    .as_object()
                    .ok_or_else(|| user("JSON 应为一个对象", "the JSON must be an object"))?;
                let def = tpl.kind(&kind);
                for (k, v) in obj {
                    // A field of the form is read as --set reads it (choices by their labels);
                    // a name the form lacks is left for the form check to refuse.
                    let value = match def.and_then(|d| d.field(k)) {
                        Some(f) => parse_json_input(f, v).map_err(|(zh, en)| {
                            user(
                                &format!("“{}”（{}）：{zh}", f.label.zh, f.name),
                                &format!("{} ({}): {en}", f.label.en, f.name),
                            )
                        })?,
                        None => FieldValue::from_json(k, v)
                            .map_err(|e| anyhow!(UserError(e.to_string())))?,
                    };
                    fields.insert(k.clone(), value);
                }
            }
            if ask {
                fields.extend(prompt(store, &tpl, &kind)?);
            }
            fields.extend(parse_sets(&tpl, &kind, &set)?);
            fields.retain(|_, v| *v != FieldValue::Null);
            let id = store.create_form(c, &kind, &village, &fields)?;
            if json {
                print_json(&record_json(&store.get(id)?))
            } else {
                out!("{} {id}", t("已保存", "saved"));
                Ok(())
            }
        }
        Command::Edit { id, set } => {
            let id = find(store, &id)?;
            let tpl = template(store)?;
            let kind = store.get(id)?.header.kind;
            let changes = parse_sets(&tpl, &kind, &set)?;
            store.edit_form(id, &changes)?;
            out!("{} {id}", t("已修改", "changed"));
            Ok(())
        }
        Command::Append { id, field, text } => {
            let id = find(store, &id)?;
            store.edit(id, |e| e.append_text(&field, &text))?;
            out!("{} {id}", t("已追加", "appended to"));
            Ok(())
        }
        Command::Delete { id } => {
            let id = find(store, &id)?;
            store.delete(id)?;
            out!("{} {id}", t("已删除", "deleted"));
            Ok(())
        }
        Command::List {
            kind,
            village,
            member,
            text,
            conflicted,
        } => {
            let all_kinds = kind.is_none();
            if let Some(k) = &kind
                && let Ok(tpl) = template(store)
                && tpl.kind(k).is_none()
            {
                let mut kinds: Vec<&str> = tpl.kinds.keys().map(String::as_str).collect();
                kinds.sort();
                return Err(anyhow!(UsageError(format!(
                    "{} {k:?}; {}{}",
                    t("没有这种记录", "no record kind"),
                    t("可选：", "use one of: "),
                    kinds.join(", ")
                ))));
            }
            let mut records = store.list(&Filter {
                kind,
                scope: village,
                campaign: store
                    .setting("campaign")?
                    .and_then(|c| Uuid::parse_str(&c).ok()),
                text: text.or(member.clone()),
                conflicted,
                ..Default::default()
            })?;
            if all_kinds {
                // Template versions are records too, but not ones people look for.
                records.retain(|r| r.header.kind != fieldsync_protocol::template::TEMPLATE_KIND);
            }
            if let Some(m) = &member {
                records.retain(|r| {
                    r.fields
                        .values()
                        .any(|v| value_text(v).contains(m.as_str()))
                });
            }
            if json {
                return print_json(&serde_json::Value::Array(
                    records.iter().map(record_json).collect(),
                ));
            }
            for r in &records {
                out!(
                    "{}  {:<16} {:<14} {}{}",
                    &r.header.id.to_string()[28..],
                    r.header.kind,
                    r.header.scope,
                    summary(r),
                    if r.conflicts > 0 {
                        t("  ⚠冲突", "  ⚠conflict")
                    } else {
                        String::new()
                    }
                );
            }
            out!(
                "{}",
                t(
                    &format!("共 {} 条", records.len()),
                    &format!("{} records", records.len())
                )
            );
            Ok(())
        }
        Command::Show { id } => {
            let id = find(store, &id)?;
            let r = store.get(id)?;
            if json {
                return print_json(&record_json(&r));
            }
            out!("{}  {}  {}", r.header.id, r.header.kind, r.header.scope);
            let tpl = store.template(r.header.campaign)?;
            let def = tpl.as_ref().and_then(|t| t.kind(&r.header.kind));
            for (k, v) in &r.fields {
                let name = def
                    .and_then(|d| d.field(k))
                    .map(|f| label(&f.label.zh, &f.label.en).to_string())
                    .unwrap_or_else(|| k.clone());
                let value = value_text(v);
                out!(
                    "{}",
                    t(
                        &format!("  {name}（{k}）：{value}"),
                        &format!("  {name} ({k}): {value}")
                    )
                );
            }
            if r.conflicts > 0 {
                out!(
                    "{}",
                    t(
                        &format!(
                            "有 {} 个字段冲突，运行 fieldsync conflicts {}",
                            r.conflicts, r.header.id
                        ),
                        &format!(
                            "{} fields in conflict: run fieldsync conflicts {}",
                            r.conflicts, r.header.id
                        )
                    )
                );
            }
            Ok(())
        }
        Command::Conflicts { id } => {
            let id = find(store, &id)?;
            let conflicts = store.conflicts(id)?;
            if json {
                let v: Vec<serde_json::Value> = conflicts
                    .iter()
                    .map(|c| serde_json::json!({
                        "field": c.field,
                        "values": c.values.iter().map(|v| serde_json::json!({"value": v.value.to_json(), "actor": v.actor, "time": v.time})).collect::<Vec<_>>(),
                    }))
                    .collect();
                return print_json(&serde_json::Value::Array(v));
            }
            if conflicts.is_empty() {
                out!("{}", t("没有冲突", "no conflicts"));
            }
            for c in conflicts {
                out!("{}:", c.field);
                for v in c.values {
                    out!(
                        "  {}  ({} {})",
                        value_text(&v.value),
                        t("设备", "device"),
                        &v.actor[..8.min(v.actor.len())]
                    );
                }
            }
            Ok(())
        }
        Command::Resolve { id, field, value } => {
            let id = find(store, &id)?;
            let tpl = template(store)?;
            let kind = store.get(id)?.header.kind;
            let changes = parse_sets(&tpl, &kind, &[format!("{field}={value}")])?;
            store.edit_form(id, &changes)?;
            out!("{} {field} = {value}", t("已解决冲突：", "resolved:"));
            Ok(())
        }
        Command::Sync { retries } => sync_command(store, retries, json),
        Command::Bundle(b) => bundle(store, b, json),
        Command::App { .. } => unreachable!("run() serves the app with the store it owns"),
    }
}

/// TLS and plain-http settings of this device.
fn http_options(store: &Store) -> Result<HttpOptions> {
    let mut options = HttpOptions {
        allow_plain_http: store.setting("insecure_http")?.as_deref() == Some("true"),
        ..Default::default()
    };
    if let Some(path) = store.setting("ca_cert")? {
        let pem = std::fs::read(&path).with_context(|| {
            t(
                &format!("无法读取证书文件 {path}"),
                &format!("cannot read the certificate {path}"),
            )
        })?;
        options.root_certificates.push(pem);
    }
    Ok(options)
}

/// Sets the campaign from the device's scope when none is set and the scope names one.
fn campaign_from_scope(store: &mut Store) -> Result<()> {
    if store.setting("campaign")?.is_none()
        && let Some(c) = store.scope()?.and_then(|s| s.campaign)
    {
        store.set_setting("campaign", &c)?;
    }
    Ok(())
}

fn scope_text(scope: &WireScope) -> String {
    if scope.all {
        return t("全部记录", "every record");
    }
    match &scope.campaign {
        None => t(
            "尚未分配工作组，看不到任何村的记录",
            "no work group assigned yet: no village's records",
        ),
        Some(c) => format!(
            "{} {c}，{}：{}{}",
            t("工作任务", "campaign"),
            t("村（社区）", "places"),
            scope.places.join("、"),
            if scope.write {
                String::new()
            } else {
                t("（只读）", " (read only)")
            }
        ),
    }
}

fn status(store: &Store, json: bool) -> Result<()> {
    let server = store.setting("server")?;
    let campaign = store.setting("campaign")?;
    let pending = store.pending_upload()?;
    let last = store.last_sync_at()?;
    let conflicted = store
        .list(&Filter {
            conflicted: true,
            ..Default::default()
        })?
        .len();
    let new_template = match campaign.as_deref().and_then(|c| Uuid::parse_str(c).ok()) {
        Some(c) => store.new_template_version(c).unwrap_or(None),
        None => None,
    };
    let enrolled = store.credentials()?.is_some();
    let person = store.setting("person")?;
    let scope = store.scope()?;
    let held = store.held_changes()?;
    if json {
        return print_json(&serde_json::json!({
            "device": store.device_id(), "actor": store.actor().to_hex_string(),
            "enrolled": enrolled, "person": person, "role": store.setting("role")?,
            "scope": scope, "held_changes": held,
            "server": server, "campaign": campaign, "records": store.count()?,
            "pending_upload": pending, "waiting_for_dependencies": store.waiting_for_dependencies()?,
            "last_sync_ms": last, "conflicted_records": conflicted, "new_template_version": new_template,
        }));
    }
    let none = t("未设置", "not set");
    out!("{}：{}", t("本机", "device"), store.device_id());
    out!(
        "{}：{}",
        t("服务器", "server"),
        server.unwrap_or(none.clone())
    );
    out!(
        "{}：{}",
        t("登记", "enrolled"),
        match (&person, enrolled) {
            (Some(p), true) => p.clone(),
            _ => t(
                "未登记（fieldsync enroll --server <地址> --code <登记码>）",
                "no (fieldsync enroll --server <address> --code <code>)",
            ),
        }
    );
    if let Some(scope) = &scope {
        out!("{}：{}", t("范围", "scope"), scope_text(scope));
    }
    out!(
        "{}：{}",
        t("工作任务", "campaign"),
        campaign.unwrap_or(none)
    );
    if held > 0 {
        out!(
            "{}",
            t(
                &format!(
                    "{held} 条更改属于已不再分配给本机的村，保留在本机未上传；可用 fieldsync bundle export 交给负责的同志"
                ),
                &format!(
                    "{held} changes belong to villages no longer assigned to this device; they are kept here, not uploaded: hand them over with fieldsync bundle export"
                )
            )
        );
    }
    out!("{}：{}", t("记录", "records"), store.count()?);
    out!(
        "{}：{pending}",
        t("待上传更改", "changes waiting to upload")
    );
    out!(
        "{}：{}",
        t("上次同步", "last sync"),
        last.map(|ms| {
            let s = (now_ms() - ms) / 1000;
            t(&format!("{s} 秒前"), &format!("{s} s ago"))
        })
        .unwrap_or_else(|| t("从未", "never"))
    );
    if conflicted > 0 {
        out!("{}：{conflicted}", t("有冲突的记录", "records in conflict"));
    }
    if let Some(v) = new_template {
        out!(
            "{}",
            t(
                &format!("表单已更新到第 {v} 版"),
                &format!("the forms were updated to version {v}")
            )
        );
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How many times one `fieldsync sync` waits for a busy server's `Retry-After` before such waits
/// count against `--retries`.
const MAX_BUSY_WAITS: u32 = 5;

fn sync_command(store: &mut Store, retries: u32, json: bool) -> Result<()> {
    if store.credentials()?.is_none() {
        return Err(user(
            "本机尚未登记：运行 fieldsync enroll --server <地址> --code <登记码>（登记码向管理员索取）",
            "this device is not enrolled: run fieldsync enroll --server <address> --code <code> (ask the administrator for a code)",
        ));
    }
    let options = http_options(store)?;
    let bar = indicatif::ProgressBar::new(0);
    if json || !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut attempt = 0;
    let mut busy_waits = 0;
    let report = loop {
        let mut transport = account::transport(store, &options)?;
        let mut progress = |p: Progress| match p {
            Progress::Pushing { sent, total } => {
                bar.set_message(t("上传", "sending"));
                bar.set_length(total);
                bar.set_position(sent);
            }
            Progress::Pulling { from, at, head } => {
                bar.set_message(t("接收", "receiving"));
                bar.set_length(head.saturating_sub(from));
                bar.set_position(at.saturating_sub(from));
            }
        };
        match sync_with_progress(
            store,
            &mut transport,
            &SyncOptions::default(),
            &mut progress,
        ) {
            Ok(r) => break r,
            // The server is busy and said how long to wait: wait that long (capped by the
            // transport) and try again, without using up the network retries, a few times.
            Err(SyncError::Transport(e, waiting))
                if e.retry_after().is_some() && busy_waits < MAX_BUSY_WAITS =>
            {
                busy_waits += 1;
                let wait = e
                    .retry_after()
                    .unwrap_or_default()
                    .max(Duration::from_secs(1));
                eprintln!(
                    "{}",
                    t(
                        &format!(
                            "服务器繁忙，按其要求 {} 秒后重试（第 {busy_waits} 次），{waiting} 条更改等待上传",
                            wait.as_secs()
                        ),
                        &format!(
                            "the server is busy and asked to wait; retrying in {} s (wait {busy_waits}); {waiting} changes wait to upload",
                            wait.as_secs()
                        )
                    )
                );
                std::thread::sleep(wait);
            }
            Err(SyncError::Transport(e, waiting)) if e.is_retryable() && attempt < retries => {
                attempt += 1;
                let wait = e
                    .retry_after()
                    .unwrap_or(Duration::from_secs(1 << attempt.min(5)));
                eprintln!(
                    "{}",
                    t(
                        &format!(
                            "网络中断（{e}），{} 秒后重试（第 {attempt} 次），{waiting} 条更改等待上传",
                            wait.as_secs()
                        ),
                        &format!(
                            "network trouble ({e}); retrying in {} s (attempt {attempt}); {waiting} changes wait to upload",
                            wait.as_secs()
                        )
                    )
                );
                std::thread::sleep(wait);
            }
            Err(SyncError::Transport(e, waiting)) => {
                bar.finish_and_clear();
                let msg = match &e {
                    TransportError::Unreachable(_) | TransportError::Interrupted(_) => t(
                        &format!(
                            "无法连接服务器，数据没有丢失：{waiting} 条更改保存在本机，等待上传；有网络时再运行 fieldsync sync"
                        ),
                        &format!(
                            "cannot reach the server; nothing was lost: {waiting} changes are kept on this device and wait to upload; run fieldsync sync again when there is a network"
                        ),
                    ),
                    _ => String::new(),
                };
                if !msg.is_empty() {
                    eprintln!("{msg}");
                }
                return Err(anyhow!(SyncError::Transport(e, waiting)));
            }
            Err(SyncError::Revoked) => {
                bar.finish_and_clear();
                return Err(anyhow!(SyncError::Revoked));
            }
            Err(e) => return Err(e.into()),
        }
    };
    bar.finish_and_clear();
    campaign_from_scope(store)?;
    if json {
        return print_json(&serde_json::json!({
            "sent": report.pushed, "received": report.received, "conflicted_records": report.conflicted_records,
            "waiting": report.waiting, "server_reset": report.server_reset,
            "held": report.held, "removed_records": report.removed_records,
            "rejected": report.rejected.iter().map(|r| serde_json::json!({
                "record": r.id, "code": r.code, "message": r.message,
            })).collect::<Vec<_>>(),
        }));
    }
    // Records the server refused while it stored the rest: kept here, offered again next time.
    let mut rejected = report.rejected.clone();
    rejected.sort_by(|a, b| a.id.cmp(&b.id));
    rejected.dedup_by(|a, b| a.id == b.id);
    for r in &rejected {
        out!(
            "{}",
            t(
                &format!("服务器未接收记录 {}：{}（保留在本机）", r.id, r.message),
                &format!(
                    "the server refused record {}: {} (kept on this device)",
                    r.id, r.message
                )
            )
        );
    }
    if report.removed_records > 0 {
        out!(
            "{}",
            t(
                &format!(
                    "工作范围已调整：{} 条不再属于本机的记录已从本机移除",
                    report.removed_records
                ),
                &format!(
                    "your scope changed: {} records you may no longer see were removed from this device",
                    report.removed_records
                )
            )
        );
    }
    if report.held > 0 {
        out!(
            "{}",
            t(
                &format!(
                    "{} 条更改属于已不再分配给本机的村，保留在本机未上传；可用 fieldsync bundle export 交给负责的同志",
                    report.held
                ),
                &format!(
                    "{} changes belong to villages no longer assigned to this device: kept here, not uploaded; hand them over with fieldsync bundle export",
                    report.held
                )
            )
        );
    }
    out!(
        "{}",
        t(
            &format!(
                "同步完成：上传 {} 条更改，收到 {} 条，{} 条记录有冲突",
                report.pushed, report.received, report.conflicted_records
            ),
            &format!(
                "synced: sent {} changes, received {}, {} records in conflict",
                report.pushed, report.received, report.conflicted_records
            )
        )
    );
    Ok(())
}

fn bundle(store: &mut Store, command: BundleCommand, json: bool) -> Result<()> {
    match command {
        BundleCommand::State { file } => {
            std::fs::write(&file, store.bundle_state()?)
                .with_context(|| format!("{}", file.display()))?;
            out!(
                "{} {}",
                t("已写出本机状态：", "wrote this device's state to"),
                file.display()
            );
        }
        BundleCommand::Export {
            file,
            for_state,
            since,
        } => {
            let which = match (for_state, since) {
                (Some(_), Some(_)) => bail!(UserError(t(
                    "--for 与 --since 只能选一个",
                    "use --for or --since, not both"
                ))),
                (Some(p), None) => {
                    Export::Lacking(std::fs::read(&p).with_context(|| format!("{}", p.display()))?)
                }
                (None, Some(s)) => Export::Since(s),
                (None, None) => Export::All,
            };
            let (bytes, stats) = store.export_bundle(&which)?;
            std::fs::write(&file, &bytes).with_context(|| format!("{}", file.display()))?;
            if json {
                return print_json(
                    &serde_json::json!({"records": stats.records, "changes": stats.changes, "bytes": bytes.len(), "last_seq": stats.last_seq}),
                );
            }
            out!(
                "{}",
                t(
                    &format!(
                        "已导出 {} 条记录的 {} 条更改（{} 字节）到 {}；下次可用 --since {}",
                        stats.records,
                        stats.changes,
                        bytes.len(),
                        file.display(),
                        stats.last_seq
                    ),
                    &format!(
                        "exported {} changes of {} records ({} bytes) to {}; next time use --since {}",
                        stats.changes,
                        stats.records,
                        bytes.len(),
                        file.display(),
                        stats.last_seq
                    )
                )
            );
        }
        BundleCommand::Import { file } => {
            let bytes = std::fs::read(&file).with_context(|| format!("{}", file.display()))?;
            let stats = store.import_bundle(&bytes)?;
            if json {
                return print_json(
                    &serde_json::json!({"new_changes": stats.new_changes, "known_changes": stats.known_changes, "waiting": stats.waiting, "records_changed": stats.records_changed}),
                );
            }
            out!(
                "{}",
                t(
                    &format!(
                        "已导入：新更改 {} 条，已有 {} 条，{} 条记录有变化",
                        stats.new_changes, stats.known_changes, stats.records_changed
                    ),
                    &format!(
                        "imported: {} new changes, {} already here, {} records changed",
                        stats.new_changes, stats.known_changes, stats.records_changed
                    )
                )
            );
        }
    }
    Ok(())
}

//! The command line's arguments: every command and flag (clap), with their help in Chinese
//! and English.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "fieldsync",
    version,
    about = "fieldsync 外业记录工具：离线记录谈心谈话等，联网时同步 / record field interviews offline and sync them"
)]
pub(crate) struct Cli {
    /// The local store (a SQLite file). 本机数据文件。
    #[arg(
        long,
        env = "FIELDSYNC_STORE",
        default_value = "fieldsync.sqlite3",
        global = true
    )]
    pub(crate) store: PathBuf,
    /// Open the store encrypted with the 256-bit key in this file (64 hex digits or 32 raw
    /// bytes), as an app would with a key from the phone's keystore. 本机数据加密密钥文件。
    #[arg(long, env = "FIELDSYNC_STORE_KEY_FILE", global = true)]
    pub(crate) key_file: Option<PathBuf>,
    /// Print JSON instead of tables and sentences. 以 JSON 输出。
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Language of messages. 提示语言。
    #[arg(
        long,
        env = "FIELDSYNC_LANG",
        value_enum,
        default_value = "zh",
        global = true
    )]
    pub(crate) lang: Lang,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Lang {
    Zh,
    En,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        /// Do not sync right after enrolling (by default the campaign's templates and the
        /// villages' reference data are downloaded at once). 登记后暂不同步。
        #[arg(long)]
        no_sync: bool,
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
    /// Attach a photo, scan or recording to a record. 给记录添加照片、扫描件或录音。
    ///
    /// The file is kept on this device and uploaded after the records at the next sync.
    /// 文件保存在本机，下次同步时在记录之后上传。
    Attach {
        /// Record id (or the start of it).
        id: String,
        /// The file.
        file: std::path::PathBuf,
        /// The attachments field (the form's first one if not given). 附件字段。
        #[arg(long)]
        field: Option<String>,
        /// Media type such as image/jpeg, when the file name does not tell. 文件类型。
        #[arg(long = "type")]
        media_type: Option<String>,
    },
    /// List a record's attachments and whether each has reached the server. 查看附件。
    Attachments {
        /// Record id (or the start of it).
        id: String,
        /// Also save each file into this folder under its own name (fetched from the server
        /// when this device does not hold it). 把附件保存到这个文件夹。
        #[arg(long)]
        save: Option<std::path::PathBuf>,
    },
    /// Download every file of a village's records to this device, to open them offline later.
    /// 把一个村全部记录的附件下载到本机，之后可离线查看。
    FetchFiles {
        /// The village's code. 村（社区）代码。
        #[arg(long)]
        village: String,
    },
    /// Sync with the server. 与服务器同步。
    ///
    /// After a network failure it tries again, waiting longer each time (up to a minute), until
    /// it succeeds or you press Ctrl-C; nothing is lost either way. 网络中断时自动重试，直到成功或按
    /// Ctrl-C 停止，数据不会丢失。
    Sync {
        /// Stop after this many tries. 最多尝试次数。
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        tries: Option<u32>,
        /// Stop trying after this long, such as 90s, 10m or 2h. 最长重试时间，如 10m、2h。
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        give_up_after: Option<std::time::Duration>,
        /// Tries after the first one (the same as --tries N+1).
        #[arg(long, hide = true, conflicts_with = "tries")]
        retries: Option<u32>,
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
pub(crate) enum ImportWhat {
    Places,
    Members,
    Groups,
}

#[derive(Subcommand)]
pub(crate) enum BundleCommand {
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

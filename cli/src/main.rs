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
//!
//! This file parses the arguments, opens the store and hands the command to its module:
//! `args` (the commands and flags), `commands::*` (one module per concern), `errors` (exit
//! codes), `output` (language and stdout).

/// The allocator of fieldsync's binaries: mimalloc spends less time allocating and freeing the
/// many small values Automerge makes while merging than the system allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes a line to stdout. A closed stdout (`fieldsync list --json | head`) ends the program
/// quietly with exit code 0: the reader has what it wanted. Any other write error ends it with
/// code 1 and a message on stderr. Never a panic, as `println!` would.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

mod args;
mod commands;
mod errors;
mod output;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use fieldsync_client_core::Store;

use args::{Cli, Command};
use commands::{account, forms, records};
use errors::{Failure, exit_code, user};
use output::{LANG, t};

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
    // An encrypted store and no key: the field app asks for the key file on its first page.
    if let (Command::App { port, no_open }, None, Err(e)) = (&cli.command, &cli.key_file, &opened)
        && matches!(
            e.downcast_ref::<fieldsync_client_core::StoreError>(),
            Some(fieldsync_client_core::StoreError::WrongKey)
        )
    {
        let locked = commands::app::Opened::Locked(cli.store.clone());
        return commands::app::app(locked, *port, *no_open).map_err(|error| Failure {
            code: exit_code(&error),
            error,
        });
    }
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
        Command::App { port, no_open } => {
            commands::app::app(commands::app::Opened::Store(Box::new(store)), port, no_open)
        }
        other => command(&mut store, other, json),
    };
    result.map_err(|error| Failure {
        code: exit_code(&error),
        error,
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
    fieldsync_client_core::store::key_from_file(&bytes).ok_or_else(|| {
        user(
            "密钥文件应为 64 位十六进制数字或 32 字节",
            "the key file must hold 64 hex digits or 32 bytes",
        )
    })
}

/// Runs one command over the open store.
fn command(store: &mut Store, command: Command, json: bool) -> Result<()> {
    match command {
        Command::Init { server, campaign } => account::init(store, server, campaign, json),
        Command::Status => account::status(store, json),
        Command::Enroll {
            server,
            code,
            name,
            ca_cert,
            insecure_http,
            no_sync,
        } => account::enroll(
            store,
            account::Enrolment {
                server,
                code,
                name,
                ca_cert,
                insecure_http,
                sync: !no_sync,
            },
            json,
        ),
        Command::Whoami => account::whoami(store, json),
        Command::CampaignCreate {
            template,
            name,
            year,
        } => forms::campaign_create(store, template, name, year, json),
        Command::Import { what, file } => forms::import(store, what, file, json),
        Command::Forms { kind } => forms::forms(store, kind, json),
        Command::New {
            kind,
            village,
            set,
            file,
            prompt,
        } => forms::new(store, kind, village, set, file, prompt, json),
        Command::Edit { id, set } => forms::edit(store, id, set),
        Command::Append { id, field, text } => records::append(store, id, field, text),
        Command::Delete { id } => records::delete(store, id),
        Command::List {
            kind,
            village,
            member,
            text,
            conflicted,
        } => records::list(store, kind, village, member, text, conflicted, json),
        Command::Show { id } => records::show(store, id, json),
        Command::Attach {
            id,
            file,
            field,
            media_type,
        } => records::attach(store, id, file, field, media_type, json),
        Command::Attachments { id, save } => records::attachments(store, id, save, json),
        Command::FetchFiles { village } => records::fetch_files(store, &village, json),
        Command::Conflicts { id } => records::conflicts(store, id, json),
        Command::Resolve { id, field, value } => forms::resolve(store, id, field, value),
        Command::Sync {
            tries,
            give_up_after,
            retries,
        } => {
            let bound = commands::sync::Bound {
                tries: tries.or(retries.map(|r| r.saturating_add(1))),
                give_up_after,
            };
            commands::sync::sync_command(store, bound, json)
        }
        Command::Bundle(b) => commands::bundle::bundle(store, b, json),
        Command::App { .. } => unreachable!("run() serves the app with the store it owns"),
    }
}

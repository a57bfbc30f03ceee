//! What the command line says: the message language (`--lang`), lines on stdout that end the
//! program quietly when the reader has gone, JSON output.

use std::sync::OnceLock;

use anyhow::Result;

use crate::args::Lang;

pub(crate) static LANG: OnceLock<Lang> = OnceLock::new();

/// The message in the chosen language.
pub(crate) fn t(zh: &str, en: &str) -> String {
    match LANG.get().copied().unwrap_or(Lang::Zh) {
        Lang::Zh => zh.to_string(),
        Lang::En => en.to_string(),
    }
}

pub(crate) fn label<'a>(zh: &'a str, en: &'a str) -> &'a str {
    match LANG.get().copied().unwrap_or(Lang::Zh) {
        Lang::Zh => zh,
        Lang::En => en,
    }
}

/// See [`out!`].
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
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

pub(crate) fn print_json(v: &serde_json::Value) -> Result<()> {
    out!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

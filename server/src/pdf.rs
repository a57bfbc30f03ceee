//! PDF copies of Word documents, made by LibreOffice in headless mode where it is installed:
//! one conversion at a time (a second asker is told to try again shortly), each in a scratch
//! directory with its own LibreOffice profile, in a process group of its own that is killed
//! whole after two minutes. Without LibreOffice the answer says so and what to do instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::Semaphore;

/// How long one conversion may take before it is stopped.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Why no PDF was made.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    /// LibreOffice is not installed on the server (or not where it was said to be).
    #[error("LibreOffice is not installed on this server")]
    NotInstalled,
    /// LibreOffice ran but produced no PDF, or took too long.
    #[error("LibreOffice could not convert the document: {0}")]
    Failed(String),
    /// Another conversion is running.
    #[error("another PDF is being made")]
    Busy,
}

/// Makes PDFs with one LibreOffice program.
#[derive(Debug)]
pub struct Converter {
    program: Option<PathBuf>,
    one_at_a_time: Semaphore,
}

impl Converter {
    /// A converter running `program`, or `soffice` (then `libreoffice`) found on `PATH`.
    pub fn new(program: Option<PathBuf>) -> Self {
        let program = program.or_else(|| ["soffice", "libreoffice"].into_iter().find_map(on_path));
        Converter {
            program,
            one_at_a_time: Semaphore::new(1),
        }
    }

    /// Whether a program to convert with was found.
    pub fn available(&self) -> bool {
        self.program.as_deref().is_some_and(Path::is_file)
    }

    /// The PDF of the Word document `docx`.
    pub async fn docx_to_pdf(&self, docx: Vec<u8>) -> Result<Vec<u8>, PdfError> {
        let program = match &self.program {
            Some(p) if p.is_file() => p.clone(),
            _ => return Err(PdfError::NotInstalled),
        };
        let _turn = self
            .one_at_a_time
            .try_acquire()
            .map_err(|_| PdfError::Busy)?;
        let scratch = tempfile::tempdir().map_err(|e| PdfError::Failed(e.to_string()))?;
        let input = scratch.path().join("report.docx");
        tokio::fs::write(&input, &docx)
            .await
            .map_err(|e| PdfError::Failed(e.to_string()))?;
        let profile = format!(
            "-env:UserInstallation=file://{}",
            scratch.path().join("profile").display()
        );
        let mut command = tokio::process::Command::new(&program);
        command
            .arg(profile)
            .args([
                "--headless",
                "--norestore",
                "--nologo",
                "--convert-to",
                "pdf",
            ])
            .arg("--outdir")
            .arg(scratch.path())
            .arg(&input)
            .env("HOME", scratch.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // `soffice` starts `oosplash`, which starts `soffice.bin`: one group, killed whole.
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| PdfError::Failed(format!("{}: {e}", program.display())))?;
        let group = child.id();
        let output = match tokio::time::timeout(TIMEOUT, child.wait_with_output()).await {
            Ok(done) => {
                done.map_err(|e| PdfError::Failed(format!("{}: {e}", program.display())))?
            }
            Err(_) => {
                // The group this conversion started (its leader's id), nothing else.
                if let Some(pid) = group.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                return Err(PdfError::Failed(format!(
                    "no PDF after {} s",
                    TIMEOUT.as_secs()
                )));
            }
        };
        match tokio::fs::read(scratch.path().join("report.pdf")).await {
            Ok(pdf) if pdf.starts_with(b"%PDF") => Ok(pdf),
            _ => Err(PdfError::Failed(format!(
                "exit {}, {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))),
        }
    }
}

/// `name` in one of `PATH`'s directories.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

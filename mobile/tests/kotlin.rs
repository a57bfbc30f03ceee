//! The Kotlin bindings on the JVM: generates them from the library cargo just built, starts a
//! real server on 127.0.0.1 with a campaign, and runs `mvn package` in `mobile/kotlin` (compile
//! with kotlin-maven-plugin, the JUnit 5 tests of `FieldStoreTest.kt` through JNA, the jar).
//! Needs Java 17 and Maven; Maven fetches the pinned plugins and libraries from Maven Central
//! the first time.

mod bindings;
mod common;

use std::process::Command;

use anyhow::{Context, Result, ensure};
use common::{A1, Campaign};

/// How many workers' codes the JUnit tests may use (each enrolls one store per code).
const CODES: usize = 16;

/// `(tests, failures + errors, skipped)` summed over surefire's XML reports.
fn surefire_totals(dir: &std::path::Path) -> Result<(u64, u64, u64)> {
    let mut totals = (0, 0, 0);
    for entry in std::fs::read_dir(dir).context("surefire wrote no reports")? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "xml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let suite = text
            .split("<testsuite ")
            .nth(1)
            .and_then(|s| s.split('>').next())
            .context("a surefire report without <testsuite>")?;
        let attr = |name: &str| -> u64 {
            suite
                .split(&format!(" {name}=\""))
                .nth(1)
                .or_else(|| suite.strip_prefix(&format!("{name}=\"")))
                .and_then(|s| s.split('"').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        totals.0 += attr("tests");
        totals.1 += attr("failures") + attr("errors");
        totals.2 += attr("skipped");
    }
    Ok(totals)
}

#[test]
fn kotlin_tests_pass_on_the_jvm_against_a_real_server() -> Result<()> {
    let project = bindings::crate_dir().join("kotlin");
    let generated = project.join("target/generated-sources/uniffi");
    bindings::generate(uniffi::TargetLanguage::Kotlin, &generated)?;
    ensure!(
        generated
            .join("org/fieldsync/mobile/fieldsync_mobile.kt")
            .exists(),
        "uniffi wrote no Kotlin into {}",
        generated.display()
    );
    let reports = project.join("target/surefire-reports");
    if reports.exists() {
        std::fs::remove_dir_all(&reports)?;
    }

    let campaign = Campaign::start()?;
    let codes: Vec<String> = (0..CODES)
        .map(|i| campaign.worker_code(&format!("组员{i}")))
        .collect::<Result<_>>()?;
    let out = Command::new("mvn")
        .args(["-B", "-q", "package"])
        .current_dir(&project)
        .env("FIELDSYNC_SERVER", campaign.server.url())
        .env("FIELDSYNC_VILLAGE", A1)
        .env("FIELDSYNC_CODES", codes.join(","))
        .env("FIELDSYNC_LIB_DIR", bindings::library_dir()?)
        .output()
        .context("cannot run mvn: install Maven and Java 17 (.ci/run does)")?;
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    };
    ensure!(
        out.status.success(),
        "mvn package failed ({}):\n{}\n{}",
        out.status,
        tail(&out.stdout),
        tail(&out.stderr)
    );
    let (tests, failed, skipped) = surefire_totals(&reports)?;
    ensure!(tests >= 6, "surefire ran only {tests} Kotlin tests");
    ensure!(
        failed == 0 && skipped == 0,
        "{failed} failed, {skipped} skipped"
    );
    ensure!(
        project.join("target/fieldsync-mobile-0.1.0.jar").exists(),
        "the jar was not packaged"
    );
    Ok(())
}

//! What the command line's tests share: a device (a store file in its own temp dir) driven
//! through the real `fieldsync` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use anyhow::Result;
use assert_cmd::Command;
use fieldsync::TestServer;
use fieldsync_protocol::auth::Role;
use serde_json::Value;

pub const VILLAGE: &str = "510100001001";
pub const PLACES: &str =
    "代码,名称,层级,上级代码\n510100001,示范镇,乡镇,\n510100001001,青龙社区,社区,510100001\n";
pub const MEMBERS: &str = "村代码,姓名,职务,性别,年龄\n510100001001,王建国,书记,男,48\n510100001001,李秀英,副书记,女,39\n";

/// One device: a store file in its own temp dir.
pub struct Device {
    dir: tempfile::TempDir,
}

impl Device {
    pub fn new() -> Result<Self> {
        Ok(Device {
            dir: tempfile::tempdir()?,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("fieldsync").expect("the fieldsync binary");
        c.env("FIELDSYNC_STORE", self.path("store.sqlite3"))
            .env_remove("FIELDSYNC_LANG");
        c
    }

    /// Runs and returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().args(args).output().expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "fieldsync {args:?} failed: {err}{out}");
        out
    }

    /// Enrolls this device with `server` as `fieldsync enroll --no-sync` does, with a one-time
    /// code the administrator issued for a new person of `role`.
    pub fn enroll(&self, server: &TestServer, name: &str, role: Role) -> Value {
        let person = server.add_person(name, role, None).expect("person");
        let code = server.code_for(person).expect("code");
        self.json(&[
            "enroll",
            "--server",
            &server.url(),
            "--code",
            &code,
            "--name",
            name,
            // The tests sync when they mean to (`fieldsync enroll` syncs once by default).
            "--no-sync",
        ])
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("JSON output")
    }

    /// A department device: campaign from the built-in template, places and members imported.
    pub fn department() -> Result<(Device, String)> {
        let d = Device::new()?;
        let created = d.json(&[
            "campaign-create",
            "--template",
            "midterm",
            "--name",
            "示范镇届中分析",
            "--year",
            "2026",
        ]);
        let campaign = created["campaign"].as_str().unwrap().to_string();
        std::fs::write(d.path("places.csv"), PLACES)?;
        std::fs::write(d.path("members.csv"), MEMBERS)?;
        d.ok(&["import", "places", d.path("places.csv").to_str().unwrap()]);
        d.ok(&["import", "members", d.path("members.csv").to_str().unwrap()]);
        Ok((d, campaign))
    }

    pub fn member(&self) -> String {
        let members = self.json(&["list", "--kind", "member"]);
        members[0]["id"].as_str().unwrap().to_string()
    }

    /// `fieldsync new interview` in [`VILLAGE`] with the first team member and `notes`; the
    /// command's JSON answer.
    pub fn new_interview(&self, notes: &str) -> Value {
        let member = self.member();
        self.json(&[
            "new",
            "interview",
            "--village",
            VILLAGE,
            "--set",
            "date=2026-05-18",
            "--set",
            "interviewer=刘明",
            "--set",
            "interviewee_type=班子成员",
            "--set",
            &format!("interviewee={member}"),
            "--set",
            &format!("notes={notes}"),
        ])
    }
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

//! The fixture of fieldsync-mobile's tests: a real server on 127.0.0.1:0 holding a 届中分析
//! campaign (two villages, two work groups) synced from a department store, and one-time codes
//! for workers of 第一组, whose village is [`A1`].

#![allow(dead_code)]

use anyhow::Result;
use fieldsync::TestServer;
pub use fieldsync::fixtures::A1;
use fieldsync_client_core::{SyncOptions, sync::sync};
use fieldsync_protocol::auth::Role;
use uuid::Uuid;

/// A server with the campaign on it.
pub struct Campaign {
    /// The server.
    pub server: TestServer,
    /// The campaign's id.
    pub id: Uuid,
    /// 第一组 (village [`A1`]).
    pub group_a: Uuid,
    _dir: tempfile::TempDir,
}

impl Campaign {
    /// Starts the server and syncs the department's campaign to it.
    pub fn start() -> Result<Campaign> {
        let server = TestServer::start()?;
        let dir = tempfile::tempdir()?;
        let (mut department, id) =
            fieldsync::fixtures::two_villages(dir.path(), "手机测试届中分析")?;
        let group_a = fieldsync::fixtures::group(&department, "第一组")?;
        let mut t = server.connect(&department)?;
        sync(&mut department, &mut t, &SyncOptions::default())?;
        server.wait_merged()?;
        Ok(Campaign {
            server,
            id,
            group_a,
            _dir: dir,
        })
    }

    /// A one-time code for a new worker of 第一组.
    pub fn worker_code(&self, name: &str) -> Result<String> {
        let person = self
            .server
            .add_person(name, Role::Worker, Some(self.group_a))?;
        self.server.code_for(person)
    }
}

/// Runs a future of the mobile API to its end (the API's futures need no runtime of their own).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

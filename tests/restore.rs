//! Backups restored on either side: a server or a device brought back from an old copy is noticed and refilled, nothing lost.

use std::path::PathBuf;

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{FieldValue, Store};

mod common;
use common::{Device, VILLAGE, campaign, s, text};

#[test]
fn a_server_restored_from_backup_is_noticed_and_refilled_by_its_devices() -> Result<()> {
    let mut server = TestServer::start()?;
    let data = server.data_dir().to_path_buf();
    let backup = tempfile::tempdir()?;
    let mut a = Device::new()?;
    let mut b = Device::new()?;
    let early = a.store.create(
        "meeting",
        campaign(),
        VILLAGE,
        &[("topic", s("届中分析动员会"))],
    )?;
    a.sync(&server.url())?;
    b.sync(&server.url())?;
    // Back up the server (stopped, so the copy is consistent).
    server.stop()?;
    for f in std::fs::read_dir(&data)? {
        let f = f?;
        std::fs::copy(f.path(), backup.path().join(f.file_name()))?;
    }
    let mut server = TestServer::start_in(&data)?;
    let late = a.store.create(
        "finding",
        campaign(),
        VILLAGE,
        &[("text", text("后备干部储备不足"))],
    )?;
    a.sync(&server.url())?;
    b.sync(&server.url())?;
    assert!(b.store.get(late).is_ok());
    server.stop()?;

    // The disk dies; the backup comes back; a third device pushes first, so the restored log
    // grows past the devices' cursors again.
    for f in std::fs::read_dir(&data)? {
        std::fs::remove_file(f?.path())?;
    }
    for f in std::fs::read_dir(backup.path())? {
        let f = f?;
        std::fs::copy(f.path(), data.join(f.file_name()))?;
    }
    // The administrator declares the restore (`fieldsync-server admin restored`): a new log
    // epoch, and a week in which devices may hand back other devices' changes without tags.
    tokio::runtime::Runtime::new()?.block_on(async {
        let storage = fieldsync_server::open_admin_storage(&data).await?;
        storage.declare_restored().await?;
        storage.close().await;
        anyhow::Ok(())
    })?;
    let server = TestServer::start_in(&data)?;
    let mut c = Device::new()?;
    c.store.create(
        "interview",
        campaign(),
        VILLAGE,
        &[("n", FieldValue::Int(1))],
    )?;
    c.store.create(
        "interview",
        campaign(),
        VILLAGE,
        &[("n", FieldValue::Int(2))],
    )?;
    c.sync(&server.url())?;

    let report = b.sync(&server.url())?;
    assert!(
        report.server_reset,
        "b must notice that the server lost its log"
    );
    assert!(
        report.pushed >= 2,
        "b re-pushes what it had, including a's lost finding"
    );
    c.sync(&server.url())?;
    assert_eq!(c.store.get(late)?.fields["text"], text("后备干部储备不足"));
    assert!(c.store.get(early).is_ok());
    let report = a.sync(&server.url())?;
    assert!(report.server_reset);
    server.wait_merged()?;
    assert_eq!(
        server.get_json(&format!("/v1/records/{late}"))?["fields"]["text"],
        "后备干部储备不足"
    );
    assert_eq!(a.store.count()?, 4);
    Ok(())
}

#[test]
fn a_device_restored_from_backup_writes_with_a_new_actor_and_gets_its_lost_changes_back()
-> Result<()> {
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    let first = a.store.create(
        "interview",
        campaign(),
        VILLAGE,
        &[("notes", text("备份前"))],
    )?;
    a.sync(&server.url())?;
    let backup = a.path.with_extension("backup");
    copy_db(&a.path, &backup)?;
    let old_actor = a.store.actor().clone();
    a.store
        .edit(first, |e| e.append_text("notes", "，备份后补充"))?;
    let lost = a.store.create(
        "finding",
        campaign(),
        VILLAGE,
        &[("text", text("备份后新增问题"))],
    )?;
    a.sync(&server.url())?;

    // Restore the backup over the store and open it again.
    a.store = Store::open_in_memory()?; // closes the file
    copy_db(&backup, &a.path)?;
    a.store = Store::open(&a.path)?;
    assert_ne!(
        *a.store.actor(),
        old_actor,
        "a restored store must not reuse its actor"
    );
    assert!(a.store.get(lost).is_err());

    // It keeps working: a new edit on the old record, then a sync.
    a.store
        .edit(first, |e| e.append_text("notes", "；恢复后再记"))?;
    let report = a.sync(&server.url())?;
    assert!(
        report.recovered_own,
        "the device notices it lost changes it had pushed"
    );
    assert_eq!(a.store.get(lost)?.fields["text"], text("备份后新增问题"));
    // Both appends were made at the same place concurrently (the restored store never saw the
    // first); Automerge orders such inserts by actor id, so either order is a correct merge.
    let notes = a.store.get(first)?.fields["notes"].clone();
    assert!(
        notes == text("备份前，备份后补充；恢复后再记")
            || notes == text("备份前；恢复后再记，备份后补充"),
        "{notes:?}"
    );

    let mut b = Device::new()?;
    b.sync(&server.url())?;
    assert_eq!(b.store.get(first)?.heads, a.store.get(first)?.heads);
    Ok(())
}

/// Copies a SQLite store with its write-ahead log, as a backup of a quiescent app does.
fn copy_db(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", to.display()));
    }
    std::fs::copy(from, to)?;
    let wal = PathBuf::from(format!("{}-wal", from.display()));
    if wal.exists() {
        std::fs::copy(&wal, format!("{}-wal", to.display()))?;
    }
    Ok(())
}

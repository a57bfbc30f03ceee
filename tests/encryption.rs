//! An encrypted device store (SQLCipher): it opens with its key, refuses a wrong key or none with
//! a clear error, and its files hold no plaintext of a known note, while an unencrypted store's
//! files do (so the check could fail).

use anyhow::Result;
use fieldsync_client_core::{FieldValue, Store, StoreError};
use uuid::Uuid;

const SECRET: &str = "村支书反映集体经济收入账目不清ZQX7";

fn files_contain(path: &std::path::Path, needle: &[u8]) -> Result<bool> {
    let mut found = false;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if p.exists() {
            let bytes = std::fs::read(&p)?;
            found |= bytes.windows(needle.len()).any(|w| w == needle);
        }
    }
    Ok(found)
}

fn write_note(store: &mut Store) -> Result<Uuid> {
    Ok(store.create(
        "interview",
        Uuid::from_u128(11),
        "350102001",
        &[
            ("notes", FieldValue::Text(SECRET.into())),
            ("interviewee_name", FieldValue::Str("王建国".into())),
        ],
    )?)
}

#[test]
fn an_encrypted_store_needs_its_key_and_holds_no_plaintext() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = [0x5au8; 32];
    let path = dir.path().join("encrypted.sqlite3");
    let id = {
        let mut store = Store::open_encrypted(&path, &key)?;
        write_note(&mut store)?
    };
    assert!(
        !files_contain(&path, SECRET.as_bytes())?,
        "plaintext in the encrypted store"
    );
    assert!(!files_contain(&path, "王建国".as_bytes())?);
    assert!(
        !files_contain(&path, b"SQLite format 3")?,
        "not even the SQLite header"
    );

    let store = Store::open_encrypted(&path, &key)?;
    assert_eq!(
        store.get(id)?.fields["notes"],
        FieldValue::Text(SECRET.into())
    );
    drop(store);
    assert!(matches!(
        Store::open_encrypted(&path, &[0x5bu8; 32]),
        Err(StoreError::WrongKey)
    ));
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey), "{err}");
    assert!(err.to_string().contains("无法用这个密钥打开"), "{err}");

    // The control: without encryption the same note is readable in the file.
    let plain = dir.path().join("plain.sqlite3");
    {
        let mut store = Store::open(&plain)?;
        write_note(&mut store)?;
    }
    assert!(files_contain(&plain, SECRET.as_bytes())?);
    Ok(())
}

#[test]
fn a_second_handle_opens_with_the_same_key_and_sees_the_first_ones_writes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = [0x3cu8; 32];
    let path = dir.path().join("encrypted.sqlite3");
    let mut first = Store::open_encrypted(&path, &key)?;
    let mut second = first.reopen()?;
    assert_ne!(
        first.actor(),
        second.actor(),
        "each handle writes as its own actor"
    );
    let id = write_note(&mut first)?;
    assert_eq!(
        second.get(id)?.fields["notes"],
        FieldValue::Text(SECRET.into())
    );
    second.set(id, "interviewee_name", FieldValue::Str("李四".into()))?;
    assert_eq!(
        first.get(id)?.fields["interviewee_name"],
        FieldValue::Str("李四".into())
    );
    assert!(matches!(
        Store::open_in_memory()?.reopen(),
        Err(StoreError::NotAFile)
    ));
    Ok(())
}

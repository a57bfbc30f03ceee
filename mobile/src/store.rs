//! [`FieldStore`]: one open client-core store behind a mutex, with enrollment, who am I and
//! the device's status.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use fieldsync_client_core::{Filter, HttpOptions, Store, account};
use uuid::Uuid;

use crate::error::{FieldsyncError, Result};
use crate::field_app::RunningApp;
use crate::on_thread;

/// The device setting that keeps the extra CA certificate given at enrollment (PEM), so that
/// later opens trust the same server.
const CA_SETTING: &str = "mobile:ca_certificate";

/// One open store: a SQLite file (or an SQLCipher one with a key) of this device's records.
///
/// Every call takes the store's lock for its duration, so calls from several threads are safe
/// and run one after the other; a sync holds the lock until it ends.
#[derive(uniffi::Object)]
pub struct FieldStore {
    pub(crate) store: Mutex<Option<Store>>,
    pub(crate) path: PathBuf,
    /// Held for the whole of a sync: one sync at a time.
    pub(crate) sync_lock: Mutex<()>,
    /// The running sync's cancel flag, if one runs.
    pub(crate) cancel: Mutex<Option<Arc<AtomicBool>>>,
    /// The field app, while it runs.
    pub(crate) app: Mutex<Option<RunningApp>>,
}

/// Who this device is, as the server says.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Identity {
    /// This device's id.
    pub device: String,
    /// The person's id.
    pub person_id: String,
    /// The person's name.
    pub person_name: String,
    /// `admin`, `viewer`, `leader` or `worker`.
    pub role: String,
    /// The person's work group (a record id), for leaders and workers.
    pub work_group: Option<String>,
    /// Whether the device sees every record of every campaign.
    pub sees_everything: bool,
    /// The campaign it works in (when it does not see everything).
    pub campaign: Option<String>,
    /// The place codes it may see (when it does not see everything).
    pub places: Vec<String>,
    /// Whether it may upload at all.
    pub may_write: bool,
}

/// What the home screen shows: what waits, when the last sync was, what needs attention.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct StoreStatus {
    /// This device's id.
    pub device: String,
    /// Whether the device is enrolled (has a server and a token).
    pub enrolled: bool,
    /// The server it is enrolled with.
    pub server: Option<String>,
    /// The campaign records are written in (set, or from the device's scope).
    pub campaign: Option<String>,
    /// Records held (deleted ones included).
    pub records: u64,
    /// Changes made here that the server has not acknowledged yet.
    pub waiting_changes: u64,
    /// Of those, changes held back because their village is outside what the device may write
    /// now (export them as a bundle for someone who may).
    pub held_changes: u64,
    /// Received changes still waiting for a change they depend on.
    pub waiting_for_dependencies: u64,
    /// When the last sync finished (ms since the Unix epoch).
    pub last_sync_ms: Option<i64>,
    /// Records with conflicting values to resolve.
    pub conflicted_records: u64,
    /// A newer template version the user has not been told about (show a notice, then call
    /// `acknowledge_template`).
    pub new_template_version: Option<u32>,
}

impl FieldStore {
    fn new(store: Store, path: PathBuf) -> Arc<Self> {
        Arc::new(FieldStore {
            store: Mutex::new(Some(store)),
            path,
            sync_lock: Mutex::new(()),
            cancel: Mutex::new(None),
            app: Mutex::new(None),
        })
    }

    /// The store's lock, taken even after a panic in another call (every store write is one
    /// transaction, so a panic cannot leave half a write behind).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Option<Store>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the open store.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        let mut guard = self.lock();
        let store = guard.as_mut().ok_or_else(FieldsyncError::closed)?;
        f(store)
    }

    /// How this device reaches its server (the CA certificate kept at enrollment).
    pub(crate) fn http_options(store: &Store) -> Result<HttpOptions> {
        Ok(HttpOptions {
            allow_plain_http: false,
            root_certificates: store
                .setting(CA_SETTING)?
                .map(|pem| vec![pem.into_bytes()])
                .unwrap_or_default(),
        })
    }

    /// The campaign records are written in: the setting, or the one the device's scope names.
    pub(crate) fn campaign_of(store: &Store) -> Result<Option<Uuid>> {
        let text = match store.setting("campaign")? {
            Some(c) => Some(c),
            None => store.scope()?.and_then(|s| s.campaign),
        };
        Ok(text.and_then(|c| Uuid::parse_str(&c).ok()))
    }

    /// [`FieldStore::campaign_of`], or an error saying how to set one.
    pub(crate) fn campaign_required(store: &Store) -> Result<Uuid> {
        Self::campaign_of(store)?.ok_or_else(|| {
            FieldsyncError::invalid(
                "还不知道工作任务：请先同步，或调用 set_campaign",
                "no campaign yet: sync first, or call set_campaign",
            )
        })
    }
}

/// Reads a record id given as text.
pub(crate) fn parse_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id.trim()).map_err(|_| {
        FieldsyncError::invalid(
            format!("“{id}”不是记录编号"),
            format!("{id:?} is not a record id"),
        )
    })
}

#[uniffi::export]
impl FieldStore {
    /// Opens (or creates) the store at `path`, unencrypted.
    #[uniffi::constructor]
    pub fn open(path: String) -> Result<Arc<Self>> {
        let store = Store::open(&path)?;
        Ok(Self::new(store, path.into()))
    }

    /// Opens (or creates) the store at `path` encrypted with SQLCipher under `key` (32 bytes,
    /// from the Android Keystore or the iOS Keychain). A wrong key is `WrongKey`, before
    /// anything is read.
    #[uniffi::constructor]
    pub fn open_encrypted(path: String, key: Vec<u8>) -> Result<Arc<Self>> {
        let key: [u8; 32] = key.try_into().map_err(|k: Vec<u8>| {
            FieldsyncError::invalid(
                format!("密钥应为 32 字节，而不是 {} 字节", k.len()),
                format!("the key must be 32 bytes, not {}", k.len()),
            )
        })?;
        let store = Store::open_encrypted(&path, &key)?;
        Ok(Self::new(store, path.into()))
    }

    /// Closes the store (and stops the field app if it runs); every later call fails with
    /// `Storage`. Waits for a running call; asks a running sync to stop. (Kotlin's `close()` and
    /// Swift's deinit free the object itself; this closes the file while others may still hold
    /// the object.)
    pub fn close_store(&self) {
        self.cancel_sync();
        self.stop_app();
        self.lock().take();
    }

    /// Erases everything in the store (records, changes, attached files, the enrollment and
    /// settings), leaving none of it in the file: the device starts over with a new device id,
    /// not enrolled. What was not synced is lost.
    pub fn wipe(&self) -> Result<()> {
        self.cancel_sync();
        self.stop_app();
        let _no_sync = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.with(|s| Ok(s.wipe()?))
    }

    /// This device's id.
    pub fn device_id(&self) -> Result<String> {
        self.with(|s| Ok(s.device_id().to_string()))
    }

    /// The store file's path.
    pub fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Enrolls this device with the server at `server` (`https://…`; plain `http` only to this
    /// machine) with a one-time `code` from an administrator. `device_name` is how
    /// administrators see it ("张三的手机"); `ca_certificate_pem` is a certificate to trust as
    /// the only root (a server with a self-signed certificate), kept for later syncs.
    pub async fn enroll(
        self: Arc<Self>,
        server: String,
        code: String,
        device_name: String,
        ca_certificate_pem: Option<String>,
    ) -> Result<Identity> {
        on_thread("enroll", move || {
            self.with(|s| {
                let mut http = HttpOptions::default();
                if let Some(pem) = &ca_certificate_pem {
                    http.root_certificates.push(pem.clone().into_bytes());
                }
                let response = account::enroll(s, &server, &code, &device_name, &http)?;
                if let Some(pem) = &ca_certificate_pem {
                    s.set_setting(CA_SETTING, pem)?;
                }
                let me = account::whoami(s, &http)?;
                if s.setting("campaign")?.is_none()
                    && let Some(c) = &me.scope.campaign
                {
                    s.set_setting("campaign", c)?;
                }
                Ok(identity(response.device, me.person, me.scope))
            })
        })
        .await
    }

    /// Asks the server who this device is and what it may see.
    pub async fn whoami(self: Arc<Self>) -> Result<Identity> {
        on_thread("whoami", move || {
            self.with(|s| {
                let me = account::whoami(s, &Self::http_options(s)?)?;
                Ok(identity(me.device, me.person, me.scope))
            })
        })
        .await
    }

    /// What waits to upload, when the last sync was, conflicts, a template notice.
    pub fn status(&self) -> Result<StoreStatus> {
        self.with(|s| {
            let campaign = Self::campaign_of(s)?;
            let new_template_version = match campaign {
                Some(c) => s.new_template_version(c).unwrap_or(None),
                None => None,
            };
            let conflicted_records = s
                .list(&Filter {
                    conflicted: true,
                    include_deleted: true,
                    ..Default::default()
                })?
                .len() as u64;
            let server = s.credentials()?.map(|(server, _)| server);
            Ok(StoreStatus {
                device: s.device_id().to_string(),
                enrolled: server.is_some(),
                server,
                campaign: campaign.map(|c| c.to_string()),
                records: s.count()?,
                waiting_changes: s.pending_upload()?,
                held_changes: s.held_changes()?,
                waiting_for_dependencies: s.waiting_for_dependencies()?,
                last_sync_ms: s.last_sync_at()?,
                conflicted_records,
                new_template_version,
            })
        })
    }

    /// Sets the campaign new records are written in (a device of a work group gets it from its
    /// scope; a department device that sees everything chooses).
    pub fn set_campaign(&self, campaign: String) -> Result<()> {
        let id = parse_id(&campaign)?;
        self.with(|s| Ok(s.set_setting("campaign", &id.to_string())?))
    }

    /// Notes that the user has been told about template `version`, so `status` stops showing
    /// it as new.
    pub fn acknowledge_template(&self, version: u32) -> Result<()> {
        self.with(|s| {
            let campaign = Self::campaign_required(s)?;
            Ok(s.acknowledge_template(campaign, version)?)
        })
    }
}

fn identity(
    device: String,
    person: fieldsync_protocol::auth::PersonInfo,
    scope: fieldsync_protocol::auth::WireScope,
) -> Identity {
    Identity {
        device,
        person_id: person.id,
        person_name: person.name,
        role: person.role.to_string(),
        work_group: person.group,
        sees_everything: scope.all,
        campaign: scope.campaign,
        places: scope.places,
        may_write: scope.write,
    }
}

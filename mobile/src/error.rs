//! `FieldsyncError`: the one error every call returns, each variant with a Chinese and an
//! English message (Chinese first), mapped from client-core's error types.

use fieldsync_client_core::account::AccountError;
use fieldsync_client_core::bundle::BundleError;
use fieldsync_client_core::{FormError, StoreError, SyncError, TransportError};

/// One problem with one field of a form, as the template's validation names it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FormProblem {
    /// The field (empty when the problem is with the whole form, such as an unknown kind).
    pub field: String,
    /// A stable snake_case code a program can test (`required`, `not_a_choice`, `too_long`…).
    pub code: String,
    /// What is wrong, in Chinese.
    pub zh: String,
    /// What is wrong, in English.
    pub en: String,
}

/// Why a call failed. Every variant carries the message to show, in Chinese (`zh`) and English
/// (`en`); what was saved before the failure stays saved.
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error)]
pub enum FieldsyncError {
    /// No network, the server is down, or the line broke during a sync: nothing was lost, sync
    /// again later.
    #[error("{zh} / {en}")]
    Network {
        /// Chinese message.
        zh: String,
        /// English message.
        en: String,
    },
    /// The server answered and refused (a used or expired code, a push it does not accept).
    #[error("{zh} / {en}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's stable error code (`invalid_code`, `out_of_scope`…).
        code: String,
        /// The server's own words (Chinese first when the server wrote both).
        reason: String,
        /// Chinese message.
        zh: String,
        /// English message.
        en: String,
    },
    /// An administrator revoked this device: the server asked it to wipe itself, and the store
    /// has been wiped. Enroll again with a new code.
    #[error("{zh} / {en}")]
    Revoked {
        /// Chinese message.
        zh: String,
        /// English message.
        en: String,
    },
    /// What was given cannot be used: a form with problems (listed in `problems`, nothing
    /// saved), an unknown record or kind, a bad server address, a file that is not a bundle.
    #[error("{zh} / {en}")]
    InvalidInput {
        /// Each problem with a form field (empty for input that is not a form).
        problems: Vec<FormProblem>,
        /// Chinese message.
        zh: String,
        /// English message.
        en: String,
    },
    /// The encrypted store does not open with this key (or the file is not a store). Nothing
    /// was read or changed.
    #[error("{zh} / {en}")]
    WrongKey {
        /// Chinese message.
        zh: String,
        /// English message.
        en: String,
    },
    /// The device has no server and token yet: call `enroll` first.
    #[error("{zh} / {en}")]
    NotEnrolled {
        /// Chinese message.
        zh: String,
        /// English message.
        en: String,
    },
    /// The sync was cancelled (by `cancel_sync` or by cancelling the coroutine or task). What
    /// was acknowledged or applied before stays; the next sync goes on from there.
    #[error("{zh} / {en}")]
    Cancelled {
        /// Chinese message.
        zh: String,
        /// English message.
        en: String,
    },
    /// The local store failed (disk full, a damaged file, the store already closed).
    #[error("{zh} / {en}")]
    Storage {
        /// Chinese message.
        zh: String,
        /// English message.
        en: String,
    },
}

/// The result of every exported call.
pub type Result<T, E = FieldsyncError> = std::result::Result<T, E>;

impl FieldsyncError {
    /// Input that cannot be used, with no form problems.
    pub(crate) fn invalid(zh: impl Into<String>, en: impl Into<String>) -> Self {
        FieldsyncError::InvalidInput {
            problems: Vec::new(),
            zh: zh.into(),
            en: en.into(),
        }
    }

    /// A form with problems, nothing saved: the message lists every problem.
    pub(crate) fn form(problems: Vec<FormProblem>) -> Self {
        let zh: Vec<&str> = problems.iter().map(|p| p.zh.as_str()).collect();
        let en: Vec<&str> = problems.iter().map(|p| p.en.as_str()).collect();
        FieldsyncError::InvalidInput {
            zh: format!("表单有误，未保存：{}", zh.join("；")),
            en: format!("the form has problems, nothing saved: {}", en.join("; ")),
            problems,
        }
    }

    /// A failure of the local store.
    pub(crate) fn storage(zh: impl Into<String>, en: impl Into<String>) -> Self {
        FieldsyncError::Storage {
            zh: zh.into(),
            en: en.into(),
        }
    }

    /// The store was closed.
    pub(crate) fn closed() -> Self {
        FieldsyncError::storage("数据库已关闭", "the store is closed")
    }

    fn revoked() -> Self {
        FieldsyncError::Revoked {
            zh: "此设备已被管理员停用，本机数据已清除，请用新的登记码重新登记".into(),
            en: "this device was revoked by an administrator; its local data has been wiped: \
                 enroll again with a new code"
                .into(),
        }
    }
}

impl From<StoreError> for FieldsyncError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::WrongKey => FieldsyncError::WrongKey {
                zh: "密钥不对，或者这个文件不是 fieldsync 数据库；什么也没有读取或改动".into(),
                en: "wrong key, or the file is not a fieldsync store; nothing was read or changed"
                    .into(),
            },
            StoreError::NotFound(id) => {
                FieldsyncError::invalid(format!("没有这条记录：{id}"), format!("no record {id}"))
            }
            StoreError::EncryptionUnavailable => FieldsyncError::storage(
                "这个版本不支持加密数据库",
                "this build cannot open encrypted stores",
            ),
            other => FieldsyncError::storage(format!("本机数据库出错：{other}"), other.to_string()),
        }
    }
}

impl From<TransportError> for FieldsyncError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Refused {
                status,
                code,
                message,
                ..
            } => FieldsyncError::Refused {
                zh: format!("服务器拒绝了请求（{status} {code}）：{message}"),
                en: format!("the server refused the request ({status} {code}): {message}"),
                status,
                code,
                reason: message,
            },
            TransportError::Protocol(m) => FieldsyncError::Network {
                zh: format!("服务器的回答不是有效的同步消息：{m}"),
                en: format!("the server's answer is not a valid sync message: {m}"),
            },
            other => FieldsyncError::Network {
                zh: format!("连不上服务器或连接中断，没有丢失任何数据，稍后再同步：{other}"),
                en: format!("{other}; nothing was lost: sync again later"),
            },
        }
    }
}

impl From<SyncError> for FieldsyncError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Revoked => FieldsyncError::revoked(),
            SyncError::Store(e) => e.into(),
            SyncError::Transport(t @ TransportError::Refused { .. }, _)
            | SyncError::Transport(t @ TransportError::Protocol(_), _) => t.into(),
            SyncError::Transport(t, waiting) => FieldsyncError::Network {
                zh: format!(
                    "连不上服务器或连接中断（{t}）；没有丢失任何数据，还有 {waiting} 项修改待上传，稍后再同步"
                ),
                en: format!(
                    "{t}; nothing was lost: {waiting} changes wait to be uploaded, sync again later"
                ),
            },
            SyncError::TooManyPages(n) => FieldsyncError::Network {
                zh: format!("服务器在一次同步中发送了超过 {n} 页，已停止以免死循环"),
                en: format!("the server sent more than {n} pages in one sync; stopped"),
            },
        }
    }
}

impl From<FormError> for FieldsyncError {
    fn from(e: FormError) -> Self {
        match e {
            FormError::Invalid(invalid) => {
                let problems: Vec<FormProblem> = invalid
                    .problems
                    .iter()
                    .map(|p| FormProblem {
                        field: p.field.clone(),
                        code: serde_json::to_value(p.code)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        zh: p.zh.clone(),
                        en: p.en.clone(),
                    })
                    .collect();
                FieldsyncError::form(problems)
            }
            FormError::Store(e) => e.into(),
            FormError::NoTemplate(c) => FieldsyncError::invalid(
                format!("工作任务 {c} 还没有表单模板，请先同步"),
                format!("campaign {c} has no template yet: sync first"),
            ),
            FormError::KeyChanged { field } => FieldsyncError::form(vec![FormProblem {
                zh: format!("“{field}”确定了这条记录，不能修改"),
                en: format!("{field:?} identifies this record and cannot change"),
                field,
                code: "key_changed".into(),
            }]),
            FormError::Template(t) => FieldsyncError::invalid(t.zh, t.en),
            e @ (FormError::NotAttachments { .. } | FormError::UnknownMediaType { .. }) => {
                let text = e.to_string();
                let (zh, en) = text.split_once(" / ").unwrap_or((&text, &text));
                FieldsyncError::invalid(zh, en)
            }
        }
    }
}

impl From<AccountError> for FieldsyncError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Setup(s) => {
                FieldsyncError::invalid(format!("服务器地址或证书不可用：{s}"), s.to_string())
            }
            AccountError::Transport(t) => t.into(),
            AccountError::Store(s) => s.into(),
            AccountError::NotEnrolled => FieldsyncError::NotEnrolled {
                zh: "此设备尚未登记，请先用登记码登记".into(),
                en: "this device is not enrolled yet: enroll it with a one-time code".into(),
            },
        }
    }
}

impl From<BundleError> for FieldsyncError {
    fn from(e: BundleError) -> Self {
        match e {
            BundleError::Store(s) => s.into(),
            other => {
                let text = other.to_string();
                let (zh, en) = text.split_once(" / ").unwrap_or((&text, &text));
                FieldsyncError::invalid(zh, en)
            }
        }
    }
}

impl From<std::io::Error> for FieldsyncError {
    fn from(e: std::io::Error) -> Self {
        FieldsyncError::storage(format!("读写文件出错：{e}"), format!("file error: {e}"))
    }
}

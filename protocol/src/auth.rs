//! Accounts on the wire: roles, enrollment messages, the scope a device may see, device tokens
//! and the tags that let a device relay another device's changes without being able to forge
//! them.
//!
//! A device is enrolled once with a short one-time code and receives a long-lived token. The
//! server keeps only [`token_hash`] of the token and [`mac_key`] derived from it; the device keeps
//! the token. Every request carries it as `Authorization: Bearer <token>`.
//!
//! A change travels between devices in bundles before it reaches the server. So that a device
//! cannot write a change under another device's actor id and pass it off as a relay, the author
//! tags each of its changes with [`change_tag`]: HMAC-SHA-256 over the actor and the change hash,
//! keyed with its [`mac_key`], truncated to 16 bytes, prefixed with the author's device id. Only
//! the author and the server know the key.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A person's role: what their devices may read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sets up campaigns, groups, people and devices; reads and writes everything.
    Admin,
    /// The department: reads everything, writes nothing.
    Viewer,
    /// A work group's leader: reads and writes the group's villages, resolves conflicts there.
    Leader,
    /// A work group's member: reads and writes the group's villages.
    Worker,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Viewer, Role::Leader, Role::Worker];

    /// The stable name (`admin`, `viewer`, `leader`, `worker`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Leader => "leader",
            Role::Worker => "worker",
        }
    }

    /// The Chinese name.
    pub fn zh(self) -> &'static str {
        match self {
            Role::Admin => "管理员",
            Role::Viewer => "部门查看人员",
            Role::Leader => "工作组组长",
            Role::Worker => "工作组成员",
        }
    }

    /// Parses a stable name or a Chinese name.
    pub fn parse(s: &str) -> Option<Role> {
        let s = s.trim();
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s) || r.zh() == s)
    }

    /// Whether the role is bound to one work group's villages.
    pub fn is_field(self) -> bool {
        matches!(self, Role::Leader | Role::Worker)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The enrollment endpoint.
pub const ENROLL_PATH: &str = "/v1/enroll";
/// The endpoint that tells a device who it is and what it may see.
pub const ME_PATH: &str = "/v1/me";
/// The error code of a refused request from a revoked device: wipe the local store.
pub const REVOKED_CODE: &str = "device_revoked";

/// `POST /v1/enroll` body (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The one-time code an admin issued (dashes, spaces and case do not matter).
    pub code: String,
    /// The device's id (lowercase hyphenated UUID), chosen by the device.
    pub device: String,
    /// A name for the device people recognise (such as "张三的手机").
    #[serde(default)]
    pub name: String,
}

/// `POST /v1/enroll` response (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The device id, as registered.
    pub device: String,
    /// The device token: keep it secret, send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Who the device belongs to.
    pub person: PersonInfo,
}

/// A person as a device sees itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonInfo {
    /// The person's id.
    pub id: String,
    /// Their name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// Their work group (a `work_group` record id), for leaders and workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// What a device may see: everything, or one campaign's reference data (scope `campaign`) and
/// the records of some places of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireScope {
    /// Every record of every campaign.
    pub all: bool,
    /// The campaign (when not `all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// The place codes (when not `all`), sorted.
    #[serde(default)]
    pub places: Vec<String>,
    /// Whether the device may write (push) at all.
    pub write: bool,
}

impl WireScope {
    /// The scope of a role that sees everything.
    pub fn everything(write: bool) -> Self {
        WireScope {
            all: true,
            campaign: None,
            places: Vec::new(),
            write,
        }
    }

    /// Whether a record of `campaign` in `scope` is visible.
    pub fn sees(&self, campaign: &str, scope: &str) -> bool {
        self.all
            || (self.campaign.as_deref() == Some(campaign)
                && (scope == crate::template::CAMPAIGN_SCOPE
                    || self
                        .places
                        .binary_search_by(|p| p.as_str().cmp(scope))
                        .is_ok()))
    }

    /// Whether a record of `kind` of `campaign` in `scope` may be written. Campaign-wide
    /// records (templates, work groups, the campaign) and the reference data of places, teams
    /// and members ([`DEPARTMENT_KINDS`]) are written by admins only, whatever their scope.
    pub fn writes(&self, campaign: &str, scope: &str, kind: &str) -> bool {
        self.write
            && (self.all
                || (scope != crate::template::CAMPAIGN_SCOPE
                    && !DEPARTMENT_KINDS.contains(&kind)
                    && self.sees(campaign, scope)))
    }
}

/// The kinds only a device that writes everything (an administrator's) may write: the
/// department's reference data and the campaign's set-up. A work group reads them but cannot
/// rename its village, add a member or change a template.
pub const DEPARTMENT_KINDS: &[&str] = &[
    "place",
    "team",
    "member",
    "work_group",
    "campaign",
    crate::template::TEMPLATE_KIND,
];

/// `GET /v1/me` response (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeResponse {
    /// This device's id.
    pub device: String,
    /// Who it belongs to.
    pub person: PersonInfo,
    /// What it may see and write.
    pub scope: WireScope,
}

/// SHA-256 of a token or code with a domain label, as the server stores it.
fn labelled_hash(label: &[u8], secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update([0]);
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// What the server stores instead of a device token.
pub fn token_hash(token: &str) -> [u8; 32] {
    labelled_hash(b"fieldsync token v1", token.trim())
}

/// What the server stores instead of an enrollment code ([`normalize_code`] first).
pub fn code_hash(code: &str) -> [u8; 32] {
    labelled_hash(b"fieldsync enrollment code v1", &normalize_code(code))
}

/// The key a device tags its changes with, derived from its token. The server stores it at
/// enrollment (it never stores the token).
pub fn mac_key(token: &str) -> [u8; 32] {
    labelled_hash(b"fieldsync change tag key v1", token.trim())
}

/// Bytes in one change tag: the author's device id (16) then the truncated MAC (16).
pub const TAG_BYTES: usize = 32;

fn mac16(key: &[u8; 32], actor: &[u8], hash: &[u8; 32]) -> [u8; 16] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&(actor.len() as u32).to_be_bytes());
    mac.update(actor);
    mac.update(hash);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The tag of a change by `actor` with `hash`, written by `device` holding `key`.
pub fn change_tag(device: Uuid, key: &[u8; 32], actor: &[u8], hash: &[u8; 32]) -> [u8; TAG_BYTES] {
    let mut out = [0u8; TAG_BYTES];
    out[..16].copy_from_slice(device.as_bytes());
    out[16..].copy_from_slice(&mac16(key, actor, hash));
    out
}

/// The device a tag names, if the tag has the right length.
pub fn tag_device(tag: &[u8]) -> Option<Uuid> {
    (tag.len() == TAG_BYTES).then(|| Uuid::from_slice(&tag[..16]).expect("16 bytes"))
}

/// Whether `tag` is the tag `key` gives the change (compared in constant time).
pub fn verify_tag(key: &[u8; 32], actor: &[u8], hash: &[u8; 32], tag: &[u8]) -> bool {
    if tag.len() != TAG_BYTES {
        return false;
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&(actor.len() as u32).to_be_bytes());
    mac.update(actor);
    mac.update(hash);
    mac.verify_truncated_left(&tag[16..]).is_ok()
}

/// The alphabet of enrollment codes: Crockford's base 32 (no I, L, O, U).
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Brings a typed code to its canonical form: upper case, no dashes or spaces, and the letters
/// people confuse with digits read as those digits (O → 0, I and L → 1).
pub fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect()
}

/// Formats 60 random bits as an enrollment code `XXXX-XXXX-XXXX`.
pub fn format_code(random: u64) -> String {
    let mut s = String::with_capacity(14);
    for i in 0..12 {
        if i > 0 && i % 4 == 0 {
            s.push('-');
        }
        let v = (random >> (5 * (11 - i))) & 31;
        s.push(CODE_ALPHABET[v as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_normalize_and_hash_alike() {
        let code = format_code(0x0abc_def0_1234_5678);
        assert_eq!(code.len(), 14);
        assert_eq!(
            code_hash(&code),
            code_hash(&code.to_lowercase().replace('-', " "))
        );
        assert_eq!(normalize_code("o1l-i"), "0111");
        assert_ne!(code_hash(&code), code_hash(&format_code(1)));
    }

    #[test]
    fn tags_verify_only_for_their_change_and_key() {
        let device = Uuid::from_u128(9);
        let key = mac_key("token-a");
        let actor = [7u8; 16];
        let hash = [3u8; 32];
        let tag = change_tag(device, &key, &actor, &hash);
        assert_eq!(tag_device(&tag), Some(device));
        assert!(verify_tag(&key, &actor, &hash, &tag));
        assert!(!verify_tag(&mac_key("token-b"), &actor, &hash, &tag));
        assert!(!verify_tag(&key, &[8u8; 16], &hash, &tag));
        assert!(!verify_tag(&key, &actor, &[4u8; 32], &tag));
        assert!(!verify_tag(&key, &actor, &hash, &tag[..20]));
    }

    #[test]
    fn scopes_see_and_write() {
        let c = Uuid::from_u128(1).to_string();
        let s = WireScope {
            all: false,
            campaign: Some(c.clone()),
            places: vec!["350102001".into(), "350102002".into()],
            write: true,
        };
        assert!(s.sees(&c, "350102001"));
        assert!(s.sees(&c, "campaign"));
        assert!(!s.writes(&c, "campaign", "interview"));
        assert!(s.writes(&c, "350102002", "interview"));
        assert!(!s.writes(&c, "350102002", "place"));
        assert!(!s.writes(&c, "350102002", "member"));
        assert!(!s.writes(&c, "350102003", "interview"));
        assert!(WireScope::everything(true).writes(&c, "350102002", "place"));
        assert!(!s.sees(&c, "350102003"));
        assert!(!s.sees(&Uuid::from_u128(2).to_string(), "350102001"));
        let viewer = WireScope::everything(false);
        assert!(viewer.sees(&c, "x") && !viewer.writes(&c, "x", "interview"));
        assert_eq!(Role::parse("组长"), None);
        assert_eq!(Role::parse("工作组组长"), Some(Role::Leader));
        assert_eq!(Role::parse("Viewer"), Some(Role::Viewer));
    }
}

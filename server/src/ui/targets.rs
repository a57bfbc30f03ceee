//! The campaign's targets on the overview: what each village should reach and by when, where
//! every village and work group stands (`report::progress`), who is behind, and the form an
//! administrator sets the targets with (written into the campaign record as a real change,
//! audited, so that they sync like any field).

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    response::{IntoResponse, Redirect, Response},
};
use fieldsync_protocol::{FieldValue, auth::Role};

use fieldsync_protocol::template::Targets;

use super::page::{Lang, esc, table};
use super::*;
use crate::report::progress::{self, Standing};

/// The target fields of the campaign record, with their labels: (field, zh, en).
const NUMBERS: [(&str, &str, &str); 5] = [
    (
        "target_villagers",
        "每村谈话群众（人次）",
        "Villagers interviewed per village",
    ),
    (
        "target_meetings",
        "每村座谈会（场）",
        "Meetings per village",
    ),
    (
        "target_questionnaires",
        "每村问卷（份）",
        "Questionnaires per village",
    ),
    (
        "target_evaluations",
        "每村测评表（份）",
        "Evaluation forms per village",
    ),
    (
        "target_document_reviews",
        "每村查阅资料（次）",
        "Document reviews per village",
    ),
];

/// A village's standing against the targets as a table cell: 已完成, or what is short.
pub(super) fn cell(v: &crate::storage::VillageTally, c: &Campaign, lang: Lang) -> String {
    let t = &c.tallies.targets;
    let items = progress::items(v, t);
    if items.is_empty() {
        return "—".into();
    }
    let standing = progress::standing(&items, t.deadline.as_deref(), &super::page::today());
    if standing == Standing::Done {
        return esc(standing.label(lang.en));
    }
    let short: Vec<String> = items
        .iter()
        .filter(|i| !i.met())
        .map(|i| {
            format!(
                "{} {}/{}",
                if lang.en { i.en } else { i.zh },
                i.done,
                i.target
            )
        })
        .collect();
    let text = format!("{}：{}", standing.label(lang.en), short.join("、"));
    if standing.behind() {
        format!("<span class=\"overdue\">{}</span>", esc(&text))
    } else {
        esc(&text)
    }
}

/// The targets section of the overview: the targets and deadline (the campaign's own, `own`,
/// and the template's where it sets none), how many villages are done and behind per work
/// group, and for administrators the form to set them.
pub(super) fn section(
    c: &Campaign,
    own: &Targets,
    groups: &[(String, Vec<String>)],
    user: &User,
) -> String {
    let lang = user.lang;
    let t = &c.tallies.targets;
    let mut out = format!("<h2>{}</h2>", lang.t("工作目标", "Targets"));
    if t.any() {
        let mut said: Vec<String> = Vec::new();
        if t.all_members {
            said.push(
                lang.t("谈话覆盖全部班子成员", "every member interviewed")
                    .into(),
            );
        }
        for (value, (_, zh, en)) in [
            t.villagers,
            t.meetings,
            t.questionnaires,
            t.evaluations,
            t.document_reviews,
        ]
        .into_iter()
        .zip(NUMBERS)
        {
            if let Some(n) = value {
                said.push(format!("{} {n}", lang.t(zh, en)));
            }
        }
        let today = super::page::today();
        let deadline = match (&t.deadline, progress::days_left(&c.tallies, &today)) {
            (Some(d), Some(left)) if left >= 0 => {
                if lang.en {
                    format!("; deadline {d}, {left} days left")
                } else {
                    format!("；完成时限 {d}，还有 {left} 天")
                }
            }
            (Some(d), Some(left)) => {
                if lang.en {
                    format!("; deadline {d}, passed {} days ago", -left)
                } else {
                    format!("；完成时限 {d}，已过 {} 天", -left)
                }
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "<p>{}{}</p>",
            esc(&said.join(lang.t("；", "; "))),
            esc(&deadline)
        ));
        let mut rows = Vec::new();
        let (mut all_done, mut all_behind) = (0, 0);
        for (group, codes) in groups {
            let standings: Vec<Standing> = codes
                .iter()
                .filter_map(|code| c.tallies.villages_detail.iter().find(|v| &v.code == code))
                .map(|v| progress::items(v, t))
                // A village no target applies to (no members, only the members target) is
                // neither done nor behind.
                .filter(|items| !items.is_empty())
                .map(|items| progress::standing(&items, t.deadline.as_deref(), &today))
                .collect();
            if standings.is_empty() {
                continue;
            }
            let done = standings.iter().filter(|s| **s == Standing::Done).count();
            let behind = standings.iter().filter(|s| s.behind()).count();
            all_done += done;
            all_behind += behind;
            rows.push(vec![
                esc(group),
                standings.len().to_string(),
                done.to_string(),
                (standings.len() - done).to_string(),
                if behind > 0 {
                    format!("<span class=\"overdue\">{behind}</span>")
                } else {
                    "0".into()
                },
            ]);
        }
        out.push_str(&format!(
            "<p>{}</p>",
            if lang.en {
                format!("{all_done} villages have met every target; {all_behind} are behind (deadline near or past).")
            } else {
                format!("{all_done} 个村（社区）已完成全部目标；{all_behind} 个落后（临近或超过完成时限）。")
            }
        ));
        out.push_str(&table(
            &[
                lang.t("工作组", "Work group").into(),
                lang.t("村（社区）数", "Villages").into(),
                lang.t("已完成", "Done").into(),
                lang.t("未完成", "Not yet").into(),
                lang.t("落后", "Behind").into(),
            ],
            &rows,
        ));
    } else {
        out.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            lang.t(
                "尚未设置工作目标。设置后，这里显示各村（社区）的完成情况和落后的工作组。",
                "No targets set yet. Once set, each village's progress and the groups behind show here."
            )
        ));
    }
    if may_set(c, user) {
        out.push_str(&form(c, own, lang));
    }
    out
}

/// Whether `user` may set the campaign's targets: an administrator, on a campaign whose
/// template has the target fields (older templates do not).
fn may_set(c: &Campaign, user: &User) -> bool {
    user.auth.0.person.role == Role::Admin
        && c.template
            .as_ref()
            .and_then(|t| t.kind("campaign"))
            .is_some_and(|k| k.field("target_meetings").is_some())
}

/// The campaign's own record (where its name, settings and targets are), as `user` may see it.
pub(super) async fn campaign_record(
    state: &AppState,
    c: &Campaign,
    user: &User,
) -> Result<Option<crate::storage::RecordView>, ApiError> {
    Ok(state
        .storage
        .campaign_records(
            c.id,
            "campaign".into(),
            user.auth.visibility(),
            crate::storage::Period::all(),
        )
        .await?
        .into_iter()
        .find(|r| !r.deleted))
}

/// The form an administrator sets the targets with: filled with the campaign record's own
/// targets (`own`), the template's defaults shown beside them, so that saving never copies a
/// default into the campaign (a later template keeps applying where the campaign sets none).
fn form(c: &Campaign, own: &Targets, lang: Lang) -> String {
    let defaults = c
        .template
        .as_ref()
        .map(|tpl| tpl.targets.clone())
        .unwrap_or_default();
    let default_note = |v: Option<String>| match v {
        Some(v) => format!(
            " <span class=\"muted\">{}{}</span>",
            lang.t("模板默认：", "template default: "),
            esc(&v)
        ),
        None => String::new(),
    };
    let mut fields = format!(
        "<label><input type=\"checkbox\" name=\"target_all_members\" value=\"1\"{}> {}</label>{}<br>",
        if own.all_members { " checked" } else { "" },
        lang.t("谈话覆盖全部班子成员", "Interview every team member"),
        default_note(
            defaults
                .all_members
                .then(|| lang.t("是", "yes").to_string())
        )
    );
    for ((value, default), (name, zh, en)) in [
        (own.villagers, defaults.villagers),
        (own.meetings, defaults.meetings),
        (own.questionnaires, defaults.questionnaires),
        (own.evaluations, defaults.evaluations),
        (own.document_reviews, defaults.document_reviews),
    ]
    .into_iter()
    .zip(NUMBERS)
    {
        fields.push_str(&format!(
            "<label>{} <input type=\"number\" min=\"0\" step=\"1\" name=\"{name}\" value=\"{}\" \
             placeholder=\"{}\" class=\"num\"></label> ",
            lang.t(zh, en),
            value.map(|n| n.to_string()).unwrap_or_default(),
            default
                .filter(|n| *n > 0)
                .map(|n| n.to_string())
                .unwrap_or_default(),
        ));
    }
    fields.push_str(&format!(
        "<br><label>{} <input type=\"date\" name=\"deadline\" value=\"{}\"></label>{}",
        lang.t("完成时限", "Deadline"),
        esc(own.deadline.as_deref().unwrap_or("")),
        default_note(defaults.deadline.clone())
    ));
    format!(
        "<details><summary>{}</summary><form method=\"post\" action=\"/ui/c/{}/targets\" \
         class=\"filters\">{fields} <button>{}</button><p class=\"muted\">{}</p></form></details>",
        lang.t("设置工作目标", "Set the targets"),
        c.id,
        lang.t("保存", "Save"),
        if defaults.any() || defaults.deadline.is_some() {
            lang.t(
                "留空的项目沿用模板的默认目标（灰色数字）。保存后同步到各设备。",
                "An empty box keeps the template's default (in grey). Saved targets sync to the devices.",
            )
        } else {
            lang.t(
                "留空表示不设此项目标。保存后同步到各设备。",
                "Leave a box empty for no target. Saved targets sync to the devices.",
            )
        }
    )
}

/// What the targets form sent, checked: every number a whole number ≥ 0, the date a date.
fn parse(body: &[u8]) -> Result<Vec<(String, FieldValue)>, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut out = vec![(
        "target_all_members".to_string(),
        FieldValue::Bool(!get("target_all_members").is_empty()),
    )];
    for (name, zh, en) in NUMBERS {
        let v = get(name);
        let value = if v.is_empty() {
            FieldValue::Null
        } else {
            match v.parse::<i64>() {
                Ok(n) if n >= 0 => FieldValue::Int(n),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "“{zh}”应为不小于 0 的整数，收到“{v}” / {en} must be a whole number of 0 or more, not {v:?}"
                    )));
                }
            }
        };
        out.push((name.to_string(), value));
    }
    let deadline = get("deadline");
    if !deadline.is_empty() && fieldsync_protocol::dates::days_from_civil(&deadline).is_none() {
        return Err(ApiError::bad_request(format!(
            "完成时限应为日期（如 2026-12-31），收到“{deadline}” / the deadline must be a date such as 2026-12-31, not {deadline:?}"
        )));
    }
    out.push((
        "deadline".to_string(),
        if deadline.is_empty() {
            FieldValue::Null
        } else {
            FieldValue::Str(deadline)
        },
    ));
    Ok(out)
}

/// `POST /ui/c/{campaign}/targets`: an administrator sets the targets.
pub(super) async fn set(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let lang = user.lang;
    let run = async {
        if user.auth.0.person.role != Role::Admin {
            return Err(crate::auth::forbidden(
                "admin_only",
                "只有管理员可以设置工作目标 / only an administrator sets the targets",
            ));
        }
        let c = load_campaign(&state, &user, &campaign, crate::storage::Period::all()).await?;
        if !may_set(&c, &user) {
            return Err(ApiError::bad_request(
                "此工作任务的模板较旧，没有工作目标字段；请先升级模板 / this campaign's template \
                 predates targets: upgrade the template first",
            ));
        }
        let fields = parse(&body)?;
        let record = campaign_record(&state, &c, &user).await?.ok_or_else(|| {
            ApiError::not_found(format!("campaign {} has no campaign record yet", c.id))
        })?;
        let audit = serde_json::json!({
            "campaign": c.id,
            "targets": fields.iter().map(|(k, v)| (k.clone(), format!("{v:?}"))).collect::<std::collections::BTreeMap<_, _>>(),
        });
        crate::ui::write::write_fields(&state, &user.auth, &record, fields).await?;
        // The overview it returns to shows the targets just saved.
        crate::ui::write::wait_merged(&state, &user.auth, record.id).await?;
        state.storage.audit(user.auth.audit("targets", audit)).await;
        Ok::<_, ApiError>(c.id)
    };
    match run.await {
        Ok(id) => Redirect::to(&format!("/ui/c/{id}")).into_response(),
        Err(e) => ui_error(lang, e),
    }
}

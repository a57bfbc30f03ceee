//! A realistic campaign generator: one township's 届中分析 like seed 002 — 9 villages and
//! communities with their 两委 members, 9 work groups with two field devices each, interviews
//! with every member, meetings, 300+ questionnaires, 460+ evaluation forms, document reviews,
//! pre-screening, findings with rectifications, assessments and star ratings — written offline
//! on the devices through the campaign's forms and synced through a real server, with some
//! concurrent edits (two devices rating the same team differently, notes appended on two
//! devices at once).
//!
//! Deterministic for a given seed. Returns what it wrote, counted independently of any query,
//! so that tests can check the server's figures against it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use fieldsync_client_core::import::ImportKind;
use fieldsync_client_core::sync::sync;
use fieldsync_client_core::{FieldValue, Filter, Store, SyncOptions};
use fieldsync_protocol::auth::Role;
use fieldsync_protocol::template::Template;
use uuid::Uuid;

/// How big a campaign to generate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seed of the pseudo-random choices.
    pub seed: u64,
    /// Villages and communities (one work group each).
    pub villages: usize,
    /// Questionnaires in all (spread over the villages).
    pub questionnaires: usize,
    /// Evaluation forms in all.
    pub evaluations: usize,
    /// Field devices per work group.
    pub devices_per_group: usize,
    /// Villages whose team assessment is rated differently on two devices (a conflict left
    /// for the department to resolve).
    pub conflicting_ratings: usize,
}

impl Default for Config {
    /// The size of seed 002: 9 villages, 300+ questionnaires, 460+ evaluation forms.
    fn default() -> Self {
        Config {
            seed: 2023,
            villages: 9,
            questionnaires: 306,
            evaluations: 468,
            devices_per_group: 2,
            conflicting_ratings: 2,
        }
    }
}

/// What the generator wrote, counted as it wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Records per kind (reference data and templates included).
    pub by_kind: BTreeMap<String, usize>,
    /// Village team members (each one interviewed).
    pub village_members: usize,
    /// Interview person-times (谈心谈话人次).
    pub interviews: usize,
    /// Meetings held and their participants.
    pub meetings: usize,
    /// Participants of all meetings.
    pub meeting_participants: i64,
    /// Problems and suggestions collected at meetings (收集问题建议条数).
    pub suggestions: i64,
    /// Teams assessed 好 / 正常 / 较差 (after the conflicts, the value each device wrote last
    /// on the device that synced last is not predicted; conflicted villages are excluded).
    pub team_ratings: BTreeMap<String, usize>,
    /// Members assessed per rating.
    pub member_ratings: BTreeMap<String, usize>,
    /// Findings per category.
    pub findings_by_category: BTreeMap<String, usize>,
    /// Team assessments left in conflict.
    pub conflicts: usize,
    /// Star ratings per number of stars.
    pub star_ratings: BTreeMap<String, usize>,
    /// Rectifications per status.
    pub rectifications: BTreeMap<String, usize>,
    /// Team satisfaction on the evaluation forms, per answer.
    pub team_satisfaction: BTreeMap<String, usize>,
    /// Member satisfaction on the evaluation forms: member id → answer → count.
    pub member_satisfaction: BTreeMap<String, BTreeMap<String, usize>>,
}

/// The generated campaign.
pub struct Generated {
    /// The campaign id.
    pub campaign: Uuid,
    /// The department's device (templates and reference data).
    pub admin: Store,
    /// The field devices, group by group.
    pub devices: Vec<Store>,
    /// What was written.
    pub tally: Tally,
    /// Village codes, in order.
    pub villages: Vec<String>,
}

/// A small deterministic pseudo-random sequence (a 64-bit LCG): the same choices on every run
/// and machine, for the generator, the benchmarks and tests.
pub struct Rng(pub u64);

impl Rng {
    /// The next 31 pseudo-random bits.
    pub fn next_bits(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_bits() as usize) % n.max(1)
    }
    /// One of `xs`.
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    /// One of `xs`, each as likely as its weight.
    pub fn weighted<'a>(&mut self, xs: &[(&'a str, usize)]) -> &'a str {
        let total: usize = xs.iter().map(|x| x.1).sum();
        let mut r = self.below(total);
        for (x, w) in xs {
            if r < *w {
                return x;
            }
            r -= w;
        }
        xs[0].0
    }
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙", "朱", "马", "胡", "郭",
    "何", "罗", "高", "林",
];
const GIVEN: &[&str] = &[
    "建国", "志强", "秀英", "桂兰", "明", "华", "军", "平", "丽", "红梅", "德明", "春燕", "国强",
    "海燕", "文斌", "小芳", "永福", "玉兰", "成刚", "晓东",
];
const VILLAGE_NAMES: &[&str] = &[
    "青龙社区",
    "花溪山村",
    "三兴村",
    "柳江村",
    "竹林村",
    "茶园村",
    "凤鸣村",
    "瓦屋村",
    "金星村",
    "石桥村",
    "白果村",
    "新华社区",
];
const NOTE_PHRASES: &[&str] = &[
    "该同志认为村“两委”班子总体团结，分工明确。",
    "反映集体经济收入渠道单一，主要依靠资源发包。",
    "建议加强后备干部培养，村副主任岗位空缺时间较长。",
    "“三会一课”基本按要求开展，但会议记录较为简单。",
    "群众对村务公开情况比较满意，希望进一步公开项目资金使用情况。",
    "书记工作思路清晰，带头推进冷竹笋和中药材基地建设。",
    "个别委员工作积极性不高，参与村级事务不够主动。",
    "党员教育形式较为单一，以集中学习为主，实践教育较少。",
    "建议整合闲置资产，探索“村企共建”模式增加收入。",
    "人居环境整治成效明显，但农集区管理仍需加强。",
];
const FINDINGS: &[(&str, &str)] = &[
    (
        "party_building",
        "对党建工作认识不深，以党建带动产业发展力度不够，标准不高。",
    ),
    (
        "org_life",
        "党内组织生活制度执行不规范，“三会一课”质量不高，组织生活会记录简单。",
    ),
    (
        "industry",
        "产业发展思路不多，支柱产业未形成，闲置资源盘活价值不高。",
    ),
    ("collective_economy", "集体经济收入渠道单一，效益不高。"),
    ("reserve_cadres", "后备干部培养力度不够，无成熟人选储备。"),
    (
        "party_members",
        "党员教育管理不严格，党员示范作用发挥不明显。",
    ),
];

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.to_string())
}

fn note(rng: &mut Rng, sentences: usize) -> String {
    (0..sentences).map(|_| rng.pick(NOTE_PHRASES)).collect()
}

fn date(rng: &mut Rng) -> String {
    format!("2023-05-{:02}", 8 + rng.below(20))
}

fn sync_store(store: &mut Store, url: &str) -> Result<()> {
    let mut t = crate::connect(url, store)?;
    sync(store, &mut t, &SyncOptions::default())?;
    Ok(())
}

fn fields(pairs: Vec<(&str, FieldValue)>) -> BTreeMap<String, FieldValue> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Generates a campaign into stores under `dir`, syncing through the server at `url`.
pub fn generate(dir: &Path, url: &str, config: &Config) -> Result<Generated> {
    let mut rng = Rng(config.seed);
    let campaign = Uuid::from_u128(0x2023_0002_0000_0000_0000_0000_0000_0000 | config.seed as u128);
    let mut tally = Tally::default();
    let count = |tally: &mut Tally, kind: &str| *tally.by_kind.entry(kind.into()).or_default() += 1;

    // The department: template, places, members, work groups.
    let mut admin = Store::open(dir.join("department.sqlite3"))?;
    crate::enroll_at(url, &admin, "组织部（基础数据录入）", Role::Admin, None)?;
    let template = Template::builtin("midterm").context("built-in template")?;
    admin.create_campaign(
        campaign,
        "示范镇村（社区）“两委”班子届中分析",
        &template,
        2023,
    )?;
    count(&mut tally, "template");
    count(&mut tally, "campaign");
    let township = "510100001";
    let mut places = String::from("代码,名称,层级,上级代码\n");
    places.push_str("510100,示范区,区,\n");
    places.push_str(&format!("{township},示范镇,乡镇,510100\n"));
    let villages: Vec<String> = (0..config.villages)
        .map(|i| format!("{township}{:03}", i + 1))
        .collect();
    for (i, code) in villages.iter().enumerate() {
        let name = VILLAGE_NAMES[i % VILLAGE_NAMES.len()];
        let level = if name.ends_with("社区") {
            "社区"
        } else {
            "村"
        };
        places.push_str(&format!("{code},{name},{level},{township}\n"));
    }
    let imported = admin.import_csv(campaign, ImportKind::Places, places.as_bytes())?;
    *tally.by_kind.entry("place".into()).or_default() += imported.records;

    let mut members = String::from("村代码,姓名,职务,性别,年龄,学历,党员\n");
    let mut members_per_village = Vec::new();
    for code in &villages {
        let one_person = rng.below(3) > 0; // most villages: 书记 and 主任 are one person
        let mut positions = vec![if one_person {
            "书记、主任（一肩挑）"
        } else {
            "书记"
        }];
        if !one_person {
            positions.push("主任");
        }
        positions.push("副书记");
        let committee = 2 + rng.below(3);
        positions.extend(std::iter::repeat_n("委员", committee));
        members_per_village.push(positions.len());
        for p in positions {
            let name = format!("{}{}", rng.pick(SURNAMES), rng.pick(GIVEN));
            let sex = if rng.below(3) == 0 { "女" } else { "男" };
            let edu = rng.pick(&["高中（中专）", "大专", "本科", "初中"]);
            members.push_str(&format!(
                "{code},{name}{},{p},{sex},{},{edu},是\n",
                members_per_village.len(),
                28 + rng.below(30)
            ));
        }
    }
    let imported = admin.import_csv(campaign, ImportKind::Members, members.as_bytes())?;
    tally.village_members = members_per_village.iter().sum();
    *tally.by_kind.entry("member".into()).or_default() += tally.village_members;
    *tally.by_kind.entry("team".into()).or_default() += imported.records - tally.village_members;

    let mut groups = String::from("名称,组长,成员,负责村\n");
    for (i, code) in villages.iter().enumerate() {
        groups.push_str(&format!(
            "第{}工作组,{}{},{}{}、{}{},{code}\n",
            i + 1,
            rng.pick(SURNAMES),
            rng.pick(GIVEN),
            rng.pick(SURNAMES),
            rng.pick(GIVEN),
            rng.pick(SURNAMES),
            rng.pick(GIVEN),
        ));
    }
    let imported = admin.import_csv(campaign, ImportKind::WorkGroups, groups.as_bytes())?;
    *tally.by_kind.entry("work_group".into()).or_default() += imported.records;
    sync_store(&mut admin, url)?;

    // The field devices: each is enrolled for a person of its work group (the first as the
    // group's leader), so the server gives it only its group's village; each pulls the
    // reference data, then records offline.
    crate::wait_merged_at(url)?;
    let group_records = admin.list(&Filter {
        kind: Some("work_group".into()),
        campaign: Some(campaign),
        ..Default::default()
    })?;
    let mut devices = Vec::new();
    for g in 0..config.villages {
        let name = format!("第{}工作组", g + 1);
        let group = group_records
            .iter()
            .find(|r| matches!(r.fields.get("name"), Some(FieldValue::Str(n)) if *n == name))
            .context("the work group was imported")?;
        let leader = match group.fields.get("leader") {
            Some(FieldValue::Str(l)) => l.clone(),
            _ => format!("{name}组长"),
        };
        for d in 0..config.devices_per_group {
            let mut store =
                Store::open(dir.join(format!("group{}-device{}.sqlite3", g + 1, d + 1)))?;
            let (person, role) = if d == 0 {
                (leader.clone(), Role::Leader)
            } else {
                (format!("{name}组员{d}"), Role::Worker)
            };
            crate::enroll_at(url, &store, &person, role, Some(group.header.id))?;
            sync_store(&mut store, url)?;
            devices.push(store);
        }
    }
    let per = config.devices_per_group;
    for (g, code) in villages.iter().enumerate() {
        let group_devices = &mut devices[g * per..(g + 1) * per];
        let list = |store: &Store, kind: &str| -> Result<Vec<fieldsync_client_core::Record>> {
            Ok(store.list(&Filter {
                kind: Some(kind.into()),
                scope: Some(code.clone()),
                campaign: Some(campaign),
                ..Default::default()
            })?)
        };
        let team = list(&group_devices[0], "team")?
            .pop()
            .context("the village's team was imported")?;
        let mut members = list(&group_devices[0], "member")?;
        members.sort_by_key(|m| m.header.id);
        let group = group_devices[0]
            .list(&Filter {
                kind: Some("work_group".into()),
                campaign: Some(campaign),
                ..Default::default()
            })?
            .into_iter()
            .find(|r| matches!(r.fields.get("name"), Some(FieldValue::Str(n)) if *n == format!("第{}工作组", g + 1)))
            .context("the village's work group was imported")?;
        let interviewer = match group.fields.get("leader") {
            Some(FieldValue::Str(n)) => n.clone(),
            _ => "工作组".into(),
        };
        let group_id = group.header.id.to_string();
        let dev = |i: usize| i % per;

        // Interviews with every member, spread over the devices.
        let mut interview_ids = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let name = match m.fields.get("name") {
                Some(FieldValue::Str(n)) => n.clone(),
                _ => String::new(),
            };
            let id = group_devices[dev(i)].create_form(
                campaign,
                "interview",
                code,
                &fields(vec![
                    ("date", s(&date(&mut rng))),
                    ("interviewer", s(&interviewer)),
                    ("work_group", s(&group_id)),
                    ("interviewee_type", s("member")),
                    ("interviewee", s(&m.header.id.to_string())),
                    ("interviewee_name", s(&name)),
                    ("notes", FieldValue::Text(note(&mut rng, 4))),
                    ("team_opinion", FieldValue::Text(note(&mut rng, 2))),
                ]),
            )?;
            interview_ids.push((dev(i), id));
            count(&mut tally, "interview");
            tally.interviews += 1;
        }
        // Villagers' representatives too.
        for i in 0..2 {
            group_devices[dev(i)].create_form(
                campaign,
                "interview",
                code,
                &fields(vec![
                    ("date", s(&date(&mut rng))),
                    ("interviewer", s(&interviewer)),
                    ("interviewee_type", s("villager_rep")),
                    (
                        "interviewee_name",
                        s(&format!("{}{}", rng.pick(SURNAMES), rng.pick(GIVEN))),
                    ),
                    ("notes", FieldValue::Text(note(&mut rng, 3))),
                ]),
            )?;
            count(&mut tally, "interview");
            tally.interviews += 1;
        }
        // Meetings.
        for i in 0..2 {
            let participants = 15 + rng.below(30) as i64;
            let suggestions = 2 + rng.below(6) as i64;
            group_devices[dev(i)].create_form(
                campaign,
                "meeting",
                code,
                &fields(vec![
                    ("date", s(&date(&mut rng))),
                    (
                        "meeting_type",
                        s(if i == 0 {
                            "party_member_rep"
                        } else {
                            "villager_forum"
                        }),
                    ),
                    ("participants", FieldValue::Int(participants)),
                    (
                        "participant_categories",
                        s("party_member,villager_rep,group_leader"),
                    ),
                    ("suggestions_collected", FieldValue::Int(suggestions)),
                    ("notes", FieldValue::Text(note(&mut rng, 3))),
                ]),
            )?;
            count(&mut tally, "meeting");
            tally.meetings += 1;
            tally.meeting_participants += participants;
            tally.suggestions += suggestions;
        }
        // Questionnaires and evaluation forms, this village's share.
        let share =
            |total: usize| total / config.villages + usize::from(g < total % config.villages);
        let cats = [
            "party_member",
            "villager_rep",
            "group_leader",
            "village_cadre",
        ];
        for i in 0..share(config.questionnaires) {
            let mut f = vec![("respondent_category", s(rng.pick(&cats)))];
            let t = template.kind("questionnaire").expect("questionnaire");
            for q in t
                .fields
                .iter()
                .filter(|f| f.name.starts_with("q_") && f.required)
            {
                let weights: Vec<(&str, usize)> = q
                    .choices
                    .iter()
                    .enumerate()
                    .map(|(k, c)| (c.value.as_str(), [12, 5, 2, 1][k.min(3)]))
                    .collect();
                let v = rng.weighted(&weights).to_string();
                f.push((q.name.as_str(), FieldValue::Str(v)));
            }
            group_devices[dev(i)].create_form(campaign, "questionnaire", code, &fields(f))?;
            count(&mut tally, "questionnaire");
        }
        let choices = [
            ("satisfied", 14),
            ("basically_satisfied", 4),
            ("unsatisfied", 1),
        ];
        for i in 0..share(config.evaluations) {
            let ratings: BTreeMap<String, String> = members
                .iter()
                .map(|m| (m.header.id.to_string(), rng.weighted(&choices).to_string()))
                .collect();
            for (member, answer) in &ratings {
                *tally
                    .member_satisfaction
                    .entry(member.clone())
                    .or_default()
                    .entry(answer.clone())
                    .or_default() += 1;
            }
            let team_answer = rng.weighted(&choices);
            *tally
                .team_satisfaction
                .entry(team_answer.into())
                .or_default() += 1;
            group_devices[dev(i)].create_form(
                campaign,
                "evaluation",
                code,
                &fields(vec![
                    ("respondent_category", s(rng.pick(&cats))),
                    ("team", s(&team.header.id.to_string())),
                    ("team_rating", s(team_answer)),
                    ("member_ratings", FieldValue::Map(ratings)),
                ]),
            )?;
            count(&mut tally, "evaluation");
        }
        // Document review and the joint pre-screening.
        group_devices[0].create_form(
            campaign,
            "document_review",
            code,
            &fields(vec![
                ("date", s(&date(&mut rng))),
                (
                    "documents",
                    s("three_meetings_one_lesson,org_life_meeting,village_affairs_open"),
                ),
                ("compliant", FieldValue::Bool(g % 4 != 3)),
                ("findings", FieldValue::Text(note(&mut rng, 2))),
            ]),
        )?;
        count(&mut tally, "document_review");
        for m in members.iter().take(2) {
            group_devices[0].create_form(
                campaign,
                "prescreening",
                code,
                &fields(vec![
                    ("source", s("discipline")),
                    ("member", s(&m.header.id.to_string())),
                    ("integrity_issue", FieldValue::Bool(false)),
                    ("violation", FieldValue::Bool(false)),
                ]),
            )?;
            count(&mut tally, "prescreening");
        }
        // Findings with their rectifications.
        for k in 0..(2 + g % 2) {
            let (category, text) = FINDINGS[(g + k) % FINDINGS.len()];
            let d = dev(k);
            let finding = group_devices[d].create_form(
                campaign,
                "finding",
                code,
                &fields(vec![
                    ("level", s("village_team")),
                    ("category", s(category)),
                    ("text", FieldValue::Text(text.into())),
                    ("team", s(&team.header.id.to_string())),
                ]),
            )?;
            let status = ["planned", "in_progress", "done"][(g + k) % 3];
            *tally.rectifications.entry(status.into()).or_default() += 1;
            count(&mut tally, "finding");
            *tally
                .findings_by_category
                .entry(category.into())
                .or_default() += 1;
            group_devices[d].create_form(
                campaign,
                "rectification",
                code,
                &fields(vec![
                    ("finding", s(&finding.to_string())),
                    (
                        "measure",
                        FieldValue::Text(
                            "制定整改清单，明确责任人和完成时限，按月督导落实。".into(),
                        ),
                    ),
                    ("owner", s("村党组织书记")),
                    ("deadline", s(&format!("2023-{:02}-30", 9 + k))),
                    ("status", s(status)),
                ]),
            )?;
            count(&mut tally, "rectification");
        }
        // Assessments: the team (on every device: a singleton) and each member.
        let team_rating = ["good", "good", "normal"][g % 3];
        let conflicted = g < config.conflicting_ratings && per > 1;
        for (d, device) in group_devices.iter_mut().enumerate() {
            // In a conflicted village the first device says 好 and the second 正常.
            let rating = match (conflicted, d) {
                (true, 0) => "good",
                (true, 1) => "normal",
                _ => team_rating,
            };
            device.create_form(
                campaign,
                "assessment",
                code,
                &fields(vec![
                    ("target_type", s("team")),
                    ("target", s(&team.header.id.to_string())),
                    ("rating", s(rating)),
                ]),
            )?;
        }
        count(&mut tally, "assessment");
        if conflicted {
            tally.conflicts += 1;
        } else {
            *tally.team_ratings.entry(team_rating.into()).or_default() += 1;
        }
        for (i, m) in members.iter().enumerate() {
            let rating = if rng.below(6) == 0 { "normal" } else { "good" };
            group_devices[dev(i)].create_form(
                campaign,
                "assessment",
                code,
                &fields(vec![
                    ("target_type", s("member")),
                    ("target", s(&m.header.id.to_string())),
                    ("rating", s(rating)),
                    ("reasons", FieldValue::Text(note(&mut rng, 1))),
                ]),
            )?;
            count(&mut tally, "assessment");
            *tally.member_ratings.entry(rating.into()).or_default() += 1;
        }
        let stars = ["five", "four", "three"][g % 3];
        *tally.star_ratings.entry(stars.into()).or_default() += 1;
        // A star rating, created on the group's first device.
        let place = group_devices[0]
            .list(&Filter {
                kind: Some("place".into()),
                scope: Some(code.clone()),
                campaign: Some(campaign),
                ..Default::default()
            })?
            .pop()
            .context("the village was imported")?;
        group_devices[0].create_form(
            campaign,
            "star_rating",
            code,
            &fields(vec![
                ("village", s(&place.header.id.to_string())),
                ("year", FieldValue::Int(2023)),
                ("stars", s(stars)),
            ]),
        )?;
        count(&mut tally, "star_rating");
        // A concurrent edit: the first interview's notes, appended on two devices offline.
        if per > 1
            && let Some((_, id)) = interview_ids.first()
        {
            let id = *id;
            let owner = interview_ids[0].0;
            let other = (owner + 1) % per;
            group_devices[owner].edit(id, |e| {
                e.append_text("notes", "（补充）谈话人表示将带头发展产业。")
            })?;
            sync_store(&mut group_devices[owner], url)?;
            sync_store(&mut group_devices[other], url)?;
            group_devices[owner].edit(id, |e| e.append_text("notes", "组长意见：情况属实。"))?;
            group_devices[other]
                .edit(id, |e| e.append_text("notes", "组员补充：群众评价较好。"))?;
        }
    }
    // Everyone syncs, then syncs again so that every device has every other's work.
    for store in devices.iter_mut() {
        sync_store(store, url)?;
    }
    for store in devices.iter_mut() {
        sync_store(store, url)?;
    }
    sync_store(&mut admin, url)?;
    Ok(Generated {
        campaign,
        admin,
        devices,
        tally,
        villages,
    })
}

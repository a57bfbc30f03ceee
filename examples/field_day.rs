//! A field day of one work group: three devices record offline in one village (two of them on
//! the same records), then sync in a scrambled order, and the merged records and the conflicts
//! left for a reviewer are printed.
//!
//! ```text
//! cargo run --example field_day
//! ```
//!
//! It starts its own server on 127.0.0.1 (a free port) with its data in a temp directory.

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{
    FieldValue, RecordHeader, Store, SyncOptions, singleton_id, sync::sync,
};
use uuid::Uuid;

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

fn main() -> Result<()> {
    let server = TestServer::start()?;
    println!("server: {}", server.url());
    let campaign = Uuid::from_u128(0x2026_0002);
    let village = "350102001";
    let mut leader = Store::open_in_memory()?; // 组长 (group leader)
    let mut member = Store::open_in_memory()?; // 驻村干部 (village-based cadre)
    let mut clerk = Store::open_in_memory()?; // 组织部 staff

    // Morning, before leaving the township office: the leader opens the village assessment.
    let assessment = RecordHeader {
        id: singleton_id(campaign, "assessment", village),
        kind: "assessment".into(),
        campaign,
        scope: village.into(),
    };
    leader.ensure(
        &assessment,
        &[("summary", FieldValue::Text("班子整体运行平稳。".into()))],
    )?;
    // Each device is enrolled once (an administrator's one-time code becomes its token).
    let mut to_leader = server.connect(&leader)?;
    let mut to_member = server.connect(&member)?;
    sync(&mut leader, &mut to_leader, &SyncOptions::default())?;
    sync(&mut member, &mut to_member, &SyncOptions::default())?;

    // In the village, no network. The member and the leader interview; the clerk counts forms.
    let interview = member.create(
        "interview",
        campaign,
        village,
        &[
            ("interviewee", s("王建国")),
            ("position", s("书记")),
            (
                "notes",
                FieldValue::Text("王书记谈到集体经济收入偏低。".into()),
            ),
        ],
    )?;
    member.ensure(&assessment, &[("rating", s("正常"))])?;
    member.edit(assessment.id, |e| {
        e.append_text("summary", "产业发展偏慢。")
    })?;
    leader.ensure(&assessment, &[("rating", s("好"))])?;
    leader.edit(assessment.id, |e| {
        e.splice_text("summary", 0, 0, "【组长】")
    })?;
    clerk.create(
        "questionnaire",
        campaign,
        village,
        &[
            ("collected", FieldValue::Int(36)),
            ("satisfied", FieldValue::Int(31)),
        ],
    )?;
    // The clerk also opens the assessment offline, not knowing the leader already did.
    clerk.ensure(&assessment, &[("forms_checked", FieldValue::Bool(true))])?;

    // Evening at the township office: they sync in no particular order.
    let mut devices = [clerk, member, leader];
    for i in [0, 1, 2, 0, 1] {
        let store = &mut devices[i];
        let mut transport = server.connect(store)?;
        let report = sync(store, &mut transport, &SyncOptions::default())?;
        println!(
            "device {}: sent {}, received {}, records with conflicts {}",
            &store.device_id().to_string()[..8],
            report.pushed,
            report.received,
            report.conflicted_records
        );
    }

    let [clerk, _, _] = devices;
    println!("\nmerged records on the clerk's device:");
    for r in clerk.list(&Default::default())? {
        println!("  {} {} ({})", r.header.kind, r.header.id, r.header.scope);
        for (k, v) in &r.fields {
            println!("    {k}: {}", v.to_json());
        }
    }
    println!("\nconflicts for a reviewer:");
    for c in clerk.conflicts(assessment.id)? {
        println!("  {} of the assessment:", c.field);
        for v in &c.values {
            println!(
                "    {} written by actor {}",
                v.value.to_json(),
                &v.actor[..8]
            );
        }
    }
    assert_eq!(
        clerk.list(&Default::default())?.len(),
        3,
        "three records, no duplicates"
    );
    assert!(clerk.get(interview).is_ok());
    server.wait_merged()?;
    println!(
        "\nthe server holds {} records; the department sees the same conflict.",
        server.get_json("/v1/status")?["records"]
    );
    Ok(())
}

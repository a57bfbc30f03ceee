//! What a group leader sees is computed over their group's villages in the query itself: listings
//! and searches fill their limit from the group's records even where other groups hold most
//! matches, listings page with a cursor, the dashboard's charts count only the group's ratings,
//! and server-wide counts, control characters in a search and the department's reference data
//! are closed to field roles.

use std::collections::BTreeSet;

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{
    FieldValue, Store, SyncOptions, Transport, TransportError, sync::sync,
};
use fieldsync_protocol::auth::Role;
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

/// Group A's one village and group B's four.
const A1: &str = "510100001";
const B: [&str; 4] = ["510100101", "510100102", "510100103", "510100104"];

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

struct Campaign {
    campaign: Uuid,
    group_a: Uuid,
}

/// Five villages; in each a star rating and a team assessment; 3 questionnaires and 3 notes
/// mentioning 集体经济 in A1, 12 of each in every village of group B (so B holds 16 of every
/// 17 matches, and B's records come first in the server's order).
fn setup(server: &TestServer) -> Result<Campaign> {
    let campaign = Uuid::now_v7();
    let mut admin = Store::open_in_memory()?;
    let mut places = Vec::new();
    let mut villages: Vec<&str> = B.to_vec();
    villages.push(A1);
    for code in &villages {
        let id = admin.create(
            "place",
            campaign,
            code,
            &[
                ("code", s(code)),
                ("name", s(&format!("{code}村"))),
                ("level", s("village")),
            ],
        )?;
        places.push((*code, id));
        let n = if *code == A1 { 3 } else { 12 };
        for i in 0..n {
            admin.create(
                "questionnaire",
                campaign,
                code,
                &[("respondent_type", s("villager"))],
            )?;
            admin.create(
                "interview",
                campaign,
                code,
                &[(
                    "notes",
                    FieldValue::Text(format!("{code}村第{i}次谈话：壮大集体经济")),
                )],
            )?;
        }
        admin.create(
            "star_rating",
            campaign,
            code,
            &[("village", s(code)), ("stars", s("five"))],
        )?;
        admin.create(
            "assessment",
            campaign,
            code,
            &[("target_type", s("team")), ("rating", s("good"))],
        )?;
    }
    let ids = |codes: &[&str]| -> String {
        places
            .iter()
            .filter(|(c, _)| codes.contains(c))
            .map(|(_, id)| id.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let group_a = admin.create(
        "work_group",
        campaign,
        "campaign",
        &[("name", s("第一组")), ("villages", s(&ids(&[A1])))],
    )?;
    admin.create(
        "work_group",
        campaign,
        "campaign",
        &[("name", s("第二组")), ("villages", s(&ids(&B)))],
    )?;
    let mut t = server.connect(&admin)?;
    sync(&mut admin, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    Ok(Campaign { campaign, group_a })
}

fn leader(server: &TestServer, c: &Campaign) -> Result<String> {
    let mut store = Store::open_in_memory()?;
    server.enroll(&mut store, "第一组组长", Role::Leader, Some(c.group_a))?;
    server.token_for(&store)
}

fn array(v: &Value) -> &Vec<Value> {
    v.as_array().expect("a JSON array")
}

#[test]
fn a_leaders_listing_and_search_fill_their_limit_from_the_groups_villages() -> Result<()> {
    let server = TestServer::start()?;
    let c = setup(&server)?;
    let token = leader(&server, &c)?;
    let get = |path: &str| server.request(Method::GET, path, Some(&token), None);

    // Listing: the limit counts the group's records, not the campaign's.
    let (status, list) = get("/v1/records?kind=questionnaire&limit=2")?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(array(&list).len(), 2, "{list}");
    assert!(array(&list).iter().all(|r| r["scope"] == A1));

    // Search: 51 notes mention 集体经济, 3 of them in the leader's village.
    let (status, hits) = get("/v1/search?q=%E9%9B%86%E4%BD%93%E7%BB%8F%E6%B5%8E&limit=3")?;
    assert_eq!(status, 200, "{hits}");
    assert_eq!(array(&hits).len(), 3, "{hits}");
    assert!(array(&hits).iter().all(|h| h["scope"] == A1), "{hits}");
    let (_, all) = server.request(
        Method::GET,
        "/v1/search?q=%E9%9B%86%E4%BD%93%E7%BB%8F%E6%B5%8E&limit=1000",
        None,
        None,
    )?;
    assert_eq!(array(&all).len(), 51, "the department sees every match");

    // A NUL in the words is no wildcard: nothing contains "zzqq".
    let (status, hits) = get("/v1/search?q=%00zzqq")?;
    assert_eq!((status, array(&hits).len()), (200, 0), "{hits}");
    let (_, hits) = server.request(Method::GET, "/v1/search?q=%00zzqq", None, None)?;
    assert_eq!(array(&hits).len(), 0, "{hits}");
    Ok(())
}

#[test]
fn listings_page_with_a_cursor_and_return_every_visible_record_once() -> Result<()> {
    let server = TestServer::start()?;
    let c = setup(&server)?;
    let token = leader(&server, &c)?;
    let url = server.url();
    let client = reqwest::blocking::Client::new();
    let mut seen = Vec::new();
    let mut next = Some("/v1/records?kind=interview&limit=2".to_string());
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        assert!(pages < 10, "paging does not end");
        let response = client
            .get(format!("{url}{path}"))
            .bearer_auth(&token)
            .send()?;
        assert_eq!(response.status(), 200);
        next = response
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.strip_prefix('<'))
            .and_then(|l| l.split_once('>'))
            .map(|(p, _)| p.to_string());
        let page: Value = response.json()?;
        assert!(array(&page).len() <= 2);
        for r in array(&page) {
            assert_eq!(r["scope"], A1);
            seen.push(r["id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(pages, 2, "3 interviews at 2 a page");
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (3, 3), "{seen:?}");
    Ok(())
}

/// The numbers of the chart titled `title`, read from the table behind it (what a screen reader reads).
fn chart_total(html: &str, title: &str) -> Option<u64> {
    // The chart's numbers as a screen reader gets them: the table behind the drawing.
    let start = html.find(&format!("<caption>{title}</caption>"))?;
    let table = &html[start..start + html[start..].find("</table>")?];
    Some(
        table
            .split("<td>")
            .skip(1)
            .filter_map(|t| t.split("</td>").next()?.parse::<u64>().ok())
            .sum(),
    )
}

#[test]
fn a_leaders_dashboard_counts_only_the_groups_ratings() -> Result<()> {
    let server = TestServer::start()?;
    let c = setup(&server)?;
    let token = leader(&server, &c)?;
    let page = |token: &str| -> Result<String> {
        Ok(reqwest::blocking::Client::new()
            .get(format!("{}/ui/c/{}", server.url(), c.campaign))
            .header("cookie", format!("fieldsync_session={token}"))
            .send()?
            .text()?)
    };
    let department = page(&server.admin_token)?;
    assert_eq!(
        chart_total(&department, "星级评定"),
        Some(5),
        "{department}"
    );
    assert_eq!(chart_total(&department, "班子定性评价分布"), Some(5));
    let group = page(&token)?;
    assert_eq!(chart_total(&group, "星级评定"), Some(1), "{group}");
    assert_eq!(chart_total(&group, "班子定性评价分布"), Some(1));
    for code in B {
        assert!(
            !group.contains(&format!("{code}村")),
            "{code} shown to group A"
        );
    }
    assert!(group.contains(&format!("{A1}村")));
    Ok(())
}

#[test]
fn field_roles_get_no_server_wide_counts_and_cannot_write_reference_data() -> Result<()> {
    let server = TestServer::start()?;
    let c = setup(&server)?;
    let token = leader(&server, &c)?;
    let (status, body) = server.request(Method::GET, "/v1/status", Some(&token), None)?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "department_only");

    // A crafted client renames its village, adds a member and a team: refused whole.
    for kind in ["place", "member", "team"] {
        let mut rogue = Store::open_in_memory()?;
        let mut t = server.enroll(&mut rogue, "组长", Role::Leader, Some(c.group_a))?;
        rogue.create(kind, c.campaign, A1, &[("name", s("改名村"))])?;
        let batch = rogue.outbox_batch(0, 1 << 20)?.expect("changes");
        match t.push(&batch.request) {
            Err(TransportError::Refused { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (403, "out_of_scope"), "{kind}")
            }
            other => panic!("a {kind} written by a leader was not refused: {other:?}"),
        }
        // The honest client holds such a change instead of pushing it.
        let report = sync(&mut rogue, &mut t, &SyncOptions::default())?;
        assert_eq!((report.pushed, report.held), (0, 2), "{kind}");
    }
    Ok(())
}

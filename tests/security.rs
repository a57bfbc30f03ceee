//! Every route of the server's route table (`fieldsync_server::routes::routes()`, the table the
//! router is built from, so a new route cannot be forgotten here), called by every role: nobody
//! gets more than the table says, the API answers JSON errors with a code, nothing answers 5xx,
//! and no answer to a group's devices holds another group's data.

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{FieldValue, Store, SyncOptions, sync::sync};
use fieldsync_protocol::auth::Role;
use fieldsync_server::routes::{Access, routes};
use reqwest::blocking::Client;
use uuid::Uuid;

const A1: &str = "510100001";
const B1: &str = "510100002";
/// Text only group B's records hold.
const SECRET: &str = "乙组机密谈话内容";

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Revoked,
    Worker,
    Leader,
    Viewer,
    Admin,
}

struct Caller {
    who: Who,
    token: Option<String>,
    device: Uuid,
}

#[test]
fn every_route_answers_every_role_as_the_table_says_and_leaks_nothing() -> Result<()> {
    let server = TestServer::start()?;
    let campaign = Uuid::now_v7();
    let mut admin = Store::open_in_memory()?;
    let a1 = admin.create(
        "place",
        campaign,
        A1,
        &[
            ("code", s(A1)),
            ("name", s("甲村")),
            ("level", s("village")),
        ],
    )?;
    admin.create(
        "place",
        campaign,
        B1,
        &[
            ("code", s(B1)),
            ("name", s("乙村")),
            ("level", s("village")),
        ],
    )?;
    admin.create(
        "interview",
        campaign,
        A1,
        &[("notes", FieldValue::Text("甲组谈话：集体经济".into()))],
    )?;
    let secret = admin.create(
        "interview",
        campaign,
        B1,
        &[("notes", FieldValue::Text(format!("{SECRET}：集体经济")))],
    )?;
    admin.create(
        "assessment",
        campaign,
        B1,
        &[("target_type", s("team")), ("rating", s("poor"))],
    )?;
    let group = admin.create(
        "work_group",
        campaign,
        "campaign",
        &[("name", s("第一组")), ("villages", s(&a1.to_string()))],
    )?;
    let mut t = server.connect(&admin)?;
    sync(&mut admin, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;

    let mut callers = vec![Caller {
        who: Who::Anonymous,
        token: None,
        device: Uuid::now_v7(),
    }];
    for (who, role, group) in [
        (Who::Worker, Role::Worker, Some(group)),
        (Who::Leader, Role::Leader, Some(group)),
        (Who::Viewer, Role::Viewer, None),
        (Who::Revoked, Role::Worker, Some(group)),
    ] {
        let mut store = Store::open_in_memory()?;
        server.enroll(&mut store, &format!("{who:?}"), role, group)?;
        callers.push(Caller {
            who,
            token: Some(server.token_for(&store)?),
            device: store.device_id(),
        });
    }
    let revoked = callers.iter().find(|c| c.who == Who::Revoked).unwrap();
    let (status, _) = server.request(
        reqwest::Method::POST,
        &format!("/v1/admin/devices/{}/revoke", revoked.device),
        None,
        None,
    )?;
    assert_eq!(status, 200);
    callers.push(Caller {
        who: Who::Admin,
        token: Some(server.admin_token.clone()),
        device: server.admin_device,
    });

    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let table = routes();
    assert!(table.len() >= 30, "{} routes", table.len());
    let mut checked = 0;
    for route in &table {
        for caller in &callers {
            // Parameters that point at group B's data where there is a choice.
            let path = route
                .path
                .replace("{campaign}", &campaign.to_string())
                .replace("{code}", B1)
                .replace("{kind}", "interview.csv")
                .replace("{lang}", "en")
                .replace("{sha256}", &"ab".repeat(32))
                .replace(
                    "{id}",
                    &if route.path.starts_with("/v1/campaigns/") {
                        campaign.to_string()
                    } else if route.path.starts_with("/v1/admin/") {
                        Uuid::now_v7().to_string()
                    } else {
                        secret.to_string()
                    },
                );
            let query = format!(
                "q=%E9%9B%86%E4%BD%93%E7%BB%8F%E6%B5%8E&device={}&limit=1000",
                caller.device
            );
            let url = format!("{}{path}?{query}", server.url());
            let dashboard =
                route.access == Access::Dashboard || path == "/login" || path.starts_with("/ui");
            let mut request = match route.method {
                "GET" => client.get(&url),
                "POST" => client.post(&url),
                "PATCH" => client.patch(&url),
                "HEAD" => client.head(&url),
                other => panic!("a route with method {other}"),
            };
            if let Some(token) = &caller.token {
                request = if dashboard {
                    request.header("cookie", format!("fieldsync_session={token}"))
                } else {
                    request.bearer_auth(token)
                };
            }
            let response = request.send()?;
            let status = response.status().as_u16();
            let json = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("application/json"));
            let body = response.text().unwrap_or_default();
            let what = format!(
                "{} {path} as {:?}: {status} {body:.300}",
                route.method, caller.who
            );
            checked += 1;

            // A server without LibreOffice answers the PDF with 503 `pdf_unavailable` once the
            // caller is let through; that is the only 5xx an answer may be.
            let no_soffice = status == 503 && body.contains("\"pdf_unavailable\"");
            assert!(status < 500 || no_soffice, "{what}");
            // Every API refusal is JSON with a code.
            // (A HEAD answer has no body: its status says it all.)
            let head = route.method == "HEAD";
            if !dashboard && !head && status >= 400 {
                assert!(json, "not JSON: {what}");
                let v: serde_json::Value = serde_json::from_str(&body)?;
                assert!(v["error"]["code"].is_string(), "{what}");
            }
            // Nobody gets more than the table says.
            let refused = |codes: &[&str]| {
                (status == 401 || status == 403)
                    && (dashboard
                        || head
                        || codes.iter().any(|c| body.contains(&format!("\"{c}\""))))
            };
            match (route.access, caller.who) {
                (Access::Public, _) => {}
                (_, Who::Anonymous) if dashboard => {
                    assert!(
                        status == 303 || status == 403 || status == 401,
                        "not sent to sign in: {what}"
                    )
                }
                (_, Who::Anonymous) => assert!(refused(&["unauthorized"]), "{what}"),
                (_, Who::Revoked) => {
                    assert!(refused(&["device_revoked"]) || status == 303, "{what}")
                }
                (Access::Admin, w) if w != Who::Admin => {
                    assert!(refused(&["admin_only"]), "{what}")
                }
                (Access::Department, Who::Worker | Who::Leader) => {
                    assert!(refused(&["department_only"]), "{what}")
                }
                (Access::Dashboard, Who::Worker) => assert!(status == 403, "{what}"),
                (_, _) if route.method != "GET" => {}
                (Access::Device | Access::Department | Access::Admin, _) => {
                    assert!(status != 401 && status != 403, "refused: {what}")
                }
                (Access::Dashboard, _) => {}
            }
            // And no answer to group A's devices holds group B's data.
            if matches!(caller.who, Who::Worker | Who::Leader) {
                assert!(!body.contains(SECRET), "group B's note leaked: {what}");
                assert!(!body.contains("乙村"), "group B's village leaked: {what}");
                assert!(
                    !body.contains(&format!("\"{secret}\"")),
                    "group B's record id leaked: {what}"
                );
            }
        }
    }
    assert_eq!(checked, table.len() * callers.len());
    // The department does see group B's note: the markers above can fail.
    let (_, hits) = server.request(
        reqwest::Method::GET,
        "/v1/search?q=%E9%9B%86%E4%BD%93%E7%BB%8F%E6%B5%8E",
        None,
        None,
    )?;
    assert!(hits.to_string().contains(SECRET), "{hits}");
    Ok(())
}

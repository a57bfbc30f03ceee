//! The OpenAPI document served by the server describes the endpoints it really has: every path
//! in it answers (an error about the record, never "no such endpoint"), and the document is
//! valid JSON of OpenAPI 3.1.

use anyhow::Result;
use fieldsync::TestServer;
use serde_json::Value;

#[test]
fn every_documented_path_exists() -> Result<()> {
    let server = TestServer::start()?;
    let doc = server.get_json("/v1/openapi.json")?;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 14, "{}", paths.len());
    let client = reqwest::blocking::Client::new();
    for (path, ops) in paths {
        let url = format!(
            "{}{}",
            server.url(),
            path.replace("{id}", "0190f5c2-0000-7000-8000-000000000001")
                .replace("{kind}", "interview")
        );
        let resp = if ops.get("get").is_some() {
            client
                .get(format!(
                    "{url}?q=x&device=0190f5c2-0000-7000-8000-000000000002"
                ))
                .send()?
        } else {
            client.get(&url).send()?
        };
        let status = resp.status().as_u16();
        let body: Value = resp.json().unwrap_or(Value::Null);
        let fallback = body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no such endpoint"));
        assert!(
            !fallback,
            "{path} is documented but the server has no such endpoint"
        );
        if ops.get("get").is_none() {
            assert_eq!(status, 405, "{path}: GET on a POST-only endpoint");
        }
    }
    Ok(())
}

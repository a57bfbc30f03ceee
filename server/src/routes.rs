//! Every route the server answers, with who may call it. The router is built from this table
//! ([`router`]), so no route exists that the table does not list, and the security test walks
//! [`routes`] for every role.

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{MethodRouter, get, head, patch, post},
};
use fieldsync_protocol::{
    attachment::MISSING_PATH,
    auth::{ENROLL_PATH, ME_PATH},
    wire::{MAX_COMPRESSED_PUSH_BYTES, PULL_PATH, PUSH_PATH},
};

use crate::{AppState, admin, api, attachments, sync, ui};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, the OpenAPI document, enrollment, the login page).
    Public,
    /// Any enrolled device; what it reads and writes is limited to its scope.
    Device,
    /// The department: administrators and viewers.
    Department,
    /// Administrators only.
    Admin,
    /// A dashboard page: administrators, viewers and group leaders (their group's villages);
    /// workers are refused, anyone not signed in is sent to the login page.
    Dashboard,
}

/// One route: a method, a path (axum's `{param}` syntax) and who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `HEAD`, `POST` or `PATCH`.
    pub method: &'static str,
    /// The path.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

type Entry = (Route, MethodRouter<Arc<AppState>>);

fn entry(
    method: &'static str,
    path: &'static str,
    access: Access,
    handler: MethodRouter<Arc<AppState>>,
) -> Entry {
    (
        Route {
            method,
            path,
            access,
        },
        handler,
    )
}

fn table() -> Vec<Entry> {
    use Access::*;
    let mut t = vec![
        entry("GET", "/health", Public, get(api::health)),
        entry("GET", "/v1/openapi.json", Public, get(api::openapi)),
        entry("POST", ENROLL_PATH, Public, post(admin::enroll)),
        entry("GET", ME_PATH, Device, get(admin::me)),
        entry("GET", "/v1/admin/people", Admin, get(admin::people)),
        entry(
            "POST",
            "/v1/admin/people",
            Admin,
            post(admin::create_person),
        ),
        entry(
            "PATCH",
            "/v1/admin/people/{id}",
            Admin,
            patch(admin::update_person),
        ),
        entry(
            "POST",
            "/v1/admin/people/{id}/codes",
            Admin,
            post(admin::issue_code),
        ),
        entry("GET", "/v1/admin/devices", Admin, get(admin::devices)),
        entry(
            "POST",
            "/v1/admin/devices/{id}/revoke",
            Admin,
            post(admin::revoke),
        ),
        entry("GET", "/v1/admin/audit", Admin, get(admin::audit)),
        entry(
            "GET",
            "/v1/admin/attachments",
            Admin,
            get(admin::attachments),
        ),
        entry("GET", "/v1/status", Department, get(api::status)),
        entry("GET", "/v1/records", Device, get(api::records)),
        entry("GET", "/v1/records/{id}", Device, get(api::record)),
        entry(
            "GET",
            "/v1/records/{id}/conflicts",
            Device,
            get(api::conflicts),
        ),
        entry("GET", "/v1/search", Device, get(api::search)),
        entry(
            "GET",
            "/v1/campaigns/{id}/tallies",
            Department,
            get(api::tallies),
        ),
        entry(
            "GET",
            "/v1/campaigns/{id}/tallies.csv",
            Department,
            get(api::tallies_csv),
        ),
        entry(
            "GET",
            "/v1/campaigns/{id}/report.md",
            Department,
            get(api::report_markdown),
        ),
        entry(
            "GET",
            "/v1/campaigns/{id}/report.docx",
            Department,
            get(api::report_docx),
        ),
        entry(
            "GET",
            "/v1/campaigns/{id}/report.pdf",
            Department,
            get(api::report_pdf),
        ),
        entry(
            "GET",
            "/v1/campaigns/{id}/export.xlsx",
            Department,
            get(api::export_xlsx),
        ),
        entry(
            "GET",
            "/v1/campaigns/{id}/export/{kind}",
            Department,
            get(api::export_csv),
        ),
        entry("POST", MISSING_PATH, Device, post(attachments::missing)),
        entry(
            "HEAD",
            "/v1/records/{id}/attachments/{sha256}",
            Device,
            head(attachments::head),
        ),
        entry(
            "PATCH",
            "/v1/records/{id}/attachments/{sha256}",
            Device,
            patch(attachments::patch).layer(DefaultBodyLimit::disable()),
        ),
        entry(
            "GET",
            "/v1/records/{id}/attachments/{sha256}",
            Device,
            get(attachments::get),
        ),
        entry("GET", PULL_PATH, Device, get(sync::pull)),
        entry(
            "POST",
            PUSH_PATH,
            Device,
            post(sync::push).layer(DefaultBodyLimit::max(MAX_COMPRESSED_PUSH_BYTES)),
        ),
    ];
    t.extend(ui::route_table());
    t
}

/// Every route, as the router has it.
pub fn routes() -> Vec<Route> {
    table().into_iter().map(|(r, _)| r).collect()
}

/// The router of every route in the table.
pub fn router() -> Router<Arc<AppState>> {
    table()
        .into_iter()
        .fold(Router::new(), |router, (route, handler)| {
            router.route(route.path, handler)
        })
}

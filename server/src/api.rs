//! Read endpoints over the merged records: health, status, records and their conflicts (JSON).

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
};
use fieldsync_protocol::FieldValue;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    AppState,
    error::ApiError,
    storage::{RecordFilter, RecordView, StoreStatus},
};

/// `GET /health`: 200 when the storage answers.
pub async fn health(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    state.storage.status().await?;
    Ok(Json(
        json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
    ))
}

/// `GET /v1/status`: counts of the log and the merged records.
pub async fn status(State(state): State<Arc<AppState>>) -> Result<Json<StoreStatus>, ApiError> {
    Ok(Json(state.storage.status().await?))
}

/// `GET /v1/records?kind=&scope=&campaign=&conflicted=&limit=`.
pub async fn records(
    State(state): State<Arc<AppState>>,
    filter: Result<Query<RecordFilter>, QueryRejection>,
) -> Result<Json<Vec<RecordView>>, ApiError> {
    let Query(filter) = filter.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(state.storage.records(filter).await?))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|e| ApiError::bad_request(format!("{id:?} is not a record id: {e}")))
}

/// `GET /v1/records/{id}`: the merged record.
pub async fn record(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<RecordView>, ApiError> {
    let id = parse_id(&id)?;
    state
        .storage
        .record(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no record {id} on this server")))
}

/// `GET /v1/records/{id}/conflicts`: every conflicted field with each value and its author.
pub async fn conflicts(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let conflicts = state
        .storage
        .conflicts(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no merged record {id} on this server")))?;
    let json: Vec<Value> = conflicts
        .into_iter()
        .map(|c| {
            json!({
                "field": c.field,
                "values": c.values.into_iter().map(|v| json!({
                    "value": value_json(&v.value),
                    "actor": v.actor,
                    "time": v.time,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "record": id, "conflicts": json })))
}

fn value_json(v: &FieldValue) -> Value {
    v.to_json()
}

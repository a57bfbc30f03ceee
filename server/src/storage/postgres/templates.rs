//! The parsed template versions of each campaign, shared by the pushes and the merging of one
//! PostgreSQL server. Another server may merge a new template at any time, so every use asks the
//! database for a fingerprint of the campaign's template records (ids and merge times, one
//! indexed query) and parses them again only when it moved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deadpool_postgres::GenericClient;
use fieldsync_protocol::template::{TEMPLATE_KIND, Template};

pub(super) type Versions = Arc<Vec<Arc<Template>>>;

use super::StorageError;

/// Parsed template versions per campaign (oldest first) with the fingerprint they were read at.
#[derive(Default)]
pub(super) struct TemplateCache {
    by_campaign: Mutex<HashMap<String, (String, Versions)>>,
}

impl TemplateCache {
    /// The campaign's template versions, oldest first.
    pub async fn for_campaign<C: GenericClient>(
        &self,
        c: &C,
        campaign: &str,
    ) -> Result<Versions, StorageError> {
        let fingerprint: String = c
            .query_one(
                "SELECT coalesce(string_agg(id || ':' || coalesce(merged_at, 0)::text, ','
                                            ORDER BY id), '')
                 FROM records WHERE kind = $1 AND campaign = $2 AND NOT deleted
                   AND fields IS NOT NULL",
                &[&TEMPLATE_KIND, &campaign],
            )
            .await?
            .get(0);
        if let Some((f, t)) = self.by_campaign.lock().expect("templates").get(campaign)
            && *f == fingerprint
        {
            return Ok(t.clone());
        }
        let rows = c
            .query(
                "SELECT fields::text FROM records
                 WHERE kind = $1 AND campaign = $2 AND NOT deleted AND fields IS NOT NULL",
                &[&TEMPLATE_KIND, &campaign],
            )
            .await?;
        let out = crate::templates::versions(rows.iter().map(|r| r.get::<_, &str>(0)));
        let out = Arc::new(out);
        let mut cache = self.by_campaign.lock().expect("templates");
        if cache.len() > 256 {
            cache.clear();
        }
        cache.insert(campaign.to_string(), (fingerprint, out.clone()));
        Ok(out)
    }
}

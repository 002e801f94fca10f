//! API tokens: the hash of each, and the tenant it names.

use super::{RunStore, StoreError, now_ms, query};
use sqlx::Row;

impl RunStore {
    /// Records an API token of `tenant_id` by its SHA-256 (see `crate::auth`).
    pub async fn add_token(
        &self,
        token_hash: &str,
        tenant_id: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        query(
            "INSERT INTO api_tokens (token_hash, tenant_id, name, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(tenant_id)
        .bind(name)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The tenant of the API token whose SHA-256 is `token_hash`, if there is one.
    pub async fn tenant_of_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let row = query("SELECT tenant_id FROM api_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.get("tenant_id")))
    }
}

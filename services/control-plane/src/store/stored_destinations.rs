//! Stored destinations (table `destinations`): named export settings, by tenant.

use super::{RunStore, StoreError, query, unique};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A stored destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRecord {
    /// Its id.
    pub destination_id: String,
    /// Its name, unique in its tenant.
    pub name: String,
    /// Its `ExportRequest`, encoded.
    pub settings: Vec<u8>,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

impl RunStore {
    /// Records a destination of `tenant_id`; `false`, recording nothing, when the tenant has
    /// one of that name already.
    pub async fn add_destination(
        &self,
        tenant_id: &str,
        destination: &DestinationRecord,
    ) -> Result<bool, StoreError> {
        let inserted = query(
            "INSERT INTO destinations (destination_id, tenant_id, name, settings, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&destination.destination_id)
        .bind(tenant_id)
        .bind(&destination.name)
        .bind(&destination.settings)
        .bind(destination.created_at)
        .bind(destination.updated_at)
        .execute(&self.pool)
        .await;
        unique(inserted)
    }

    /// The destination of `tenant_id` whose name or id is `name_or_id`, if there is one.
    pub async fn destination_of(
        &self,
        tenant_id: &str,
        name_or_id: &str,
    ) -> Result<Option<DestinationRecord>, StoreError> {
        let row = query(
            "SELECT * FROM destinations WHERE tenant_id = ? AND (name = ? OR destination_id = ?) \
             ORDER BY name = ? DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(name_or_id)
        .bind(name_or_id)
        .bind(name_or_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| destination_from_row(&row)))
    }

    /// Up to `limit` destinations of `tenant_id` by name, after the name `after` when given.
    pub async fn destinations_of(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DestinationRecord>, StoreError> {
        let rows = query(
            "SELECT * FROM destinations WHERE tenant_id = ? AND (? IS NULL OR name > ?) \
             ORDER BY name LIMIT ?",
        )
        .bind(tenant_id)
        .bind(after)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(destination_from_row).collect())
    }

    /// Replaces the name and settings of the destination `destination_id` of `tenant_id`;
    /// `Ok(false)` when another of its destinations has that name.
    pub async fn update_destination(
        &self,
        tenant_id: &str,
        destination: &DestinationRecord,
    ) -> Result<bool, StoreError> {
        let updated = query(
            "UPDATE destinations SET name = ?, settings = ?, updated_at = ? \
             WHERE destination_id = ? AND tenant_id = ?",
        )
        .bind(&destination.name)
        .bind(&destination.settings)
        .bind(destination.updated_at)
        .bind(&destination.destination_id)
        .bind(tenant_id)
        .execute(&self.pool)
        .await;
        unique(updated)
    }

    /// Deletes the destination `destination_id` of `tenant_id`; whether there was one.
    pub async fn delete_destination(
        &self,
        tenant_id: &str,
        destination_id: &str,
    ) -> Result<bool, StoreError> {
        let done = query("DELETE FROM destinations WHERE destination_id = ? AND tenant_id = ?")
            .bind(destination_id)
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn destination_from_row(row: &AnyRow) -> DestinationRecord {
    DestinationRecord {
        destination_id: row.get("destination_id"),
        name: row.get("name"),
        settings: row.get("settings"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

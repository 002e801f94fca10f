//! What each run delivered (`delivered_objects`), and the earlier runs a run replaced.

use super::{RunStore, StoreError, query};
use sqlx::Row;
use std::collections::BTreeMap;

impl RunStore {
    /// Records the objects (key, entity tag) the succeeded run `run_id` made visible at
    /// `location` (see `planner::location_of`).
    pub async fn record_delivered(
        &self,
        run_id: &str,
        location: &str,
        objects: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        for (object_key, e_tag) in objects {
            query(
                "INSERT INTO delivered_objects (run_id, location, object_key, e_tag) \
                 VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(run_id)
            .bind(location)
            .bind(object_key)
            .bind(e_tag)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// The runs of `tenant_id` other than `run_id`, not replaced yet, that delivered one of
    /// `keys` at `location`, each with every object it delivered (key, entity tag).
    pub async fn earlier_deliveries(
        &self,
        tenant_id: &str,
        run_id: &str,
        location: &str,
        keys: &[String],
    ) -> Result<BTreeMap<String, Vec<(String, String)>>, StoreError> {
        let mut runs = BTreeMap::new();
        for key in keys {
            let rows = query(
                "SELECT DISTINCT d.run_id FROM delivered_objects d \
                 JOIN runs r ON r.run_id = d.run_id \
                 WHERE d.location = ? AND d.object_key = ? AND r.tenant_id = ? \
                 AND d.run_id <> ? AND r.superseded_by IS NULL",
            )
            .bind(location)
            .bind(key)
            .bind(tenant_id)
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                runs.entry(row.get::<String, _>("run_id"))
                    .or_insert_with(Vec::new);
            }
        }
        for (earlier, objects) in &mut runs {
            let rows = query(
                "SELECT object_key, e_tag FROM delivered_objects WHERE run_id = ? \
                 ORDER BY object_key",
            )
            .bind(earlier.as_str())
            .fetch_all(&self.pool)
            .await?;
            objects.extend(
                rows.iter()
                    .map(|row| (row.get("object_key"), row.get("e_tag"))),
            );
        }
        Ok(runs)
    }

    /// Marks `runs` replaced by `by`: later runs do not look at them again.
    pub async fn supersede(&self, runs: &[String], by: &str) -> Result<(), StoreError> {
        for run_id in runs {
            query("UPDATE runs SET superseded_by = ? WHERE run_id = ? AND superseded_by IS NULL")
                .bind(by)
                .bind(run_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

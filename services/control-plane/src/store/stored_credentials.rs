//! Stored credentials (table `credentials`), sealed, by tenant.

use super::{RunStore, StoreError, query};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A stored credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// Its id (a UUIDv7: ids sort by creation).
    pub credential_id: String,
    /// What it is.
    pub kind: StoredCredential,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

/// The kinds of stored credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredCredential {
    /// iam-role-to-role: filedrop's own identity assumes `role_arn` with `external_id`.
    RoleToRole {
        /// The bucket owner's role.
        role_arn: String,
        /// The External ID filedrop generated for it.
        external_id: String,
    },
    /// iam-credential: an access key.
    AccessKey {
        /// The key id, shown.
        access_key_id: String,
        /// The whole `AccessKeyCredential`, sealed (see `filedrop_runtime::secrets`).
        sealed_key: Vec<u8>,
    },
}

impl RunStore {
    /// Records a credential of `tenant_id`.
    pub async fn add_credential(
        &self,
        tenant_id: &str,
        credential: &CredentialRecord,
    ) -> Result<(), StoreError> {
        let (kind, role_arn, external_id, access_key_id, sealed_key) = match &credential.kind {
            StoredCredential::RoleToRole {
                role_arn,
                external_id,
            } => (
                "iam-role-to-role",
                role_arn.as_str(),
                external_id.as_str(),
                "",
                None,
            ),
            StoredCredential::AccessKey {
                access_key_id,
                sealed_key,
            } => (
                "iam-credential",
                "",
                "",
                access_key_id.as_str(),
                Some(sealed_key.as_slice()),
            ),
        };
        query(
            "INSERT INTO credentials (credential_id, tenant_id, kind, role_arn, external_id, \
             access_key_id, sealed_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&credential.credential_id)
        .bind(tenant_id)
        .bind(kind)
        .bind(role_arn)
        .bind(external_id)
        .bind(access_key_id)
        .bind(sealed_key)
        .bind(credential.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The credential `credential_id` of `tenant_id`, if there is one.
    pub async fn credential_of(
        &self,
        tenant_id: &str,
        credential_id: &str,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let row = query("SELECT * FROM credentials WHERE credential_id = ? AND tenant_id = ?")
            .bind(credential_id)
            .bind(tenant_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| credential_from_row(&row)))
    }

    /// Up to `limit` credentials of `tenant_id`, newest first, created before the credential
    /// `before` (ids sort by creation) when given.
    pub async fn credentials_of(
        &self,
        tenant_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        let rows = query(
            "SELECT * FROM credentials WHERE tenant_id = ? AND (? IS NULL OR credential_id < ?) \
             ORDER BY credential_id DESC LIMIT ?",
        )
        .bind(tenant_id)
        .bind(before)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(credential_from_row).collect())
    }

    /// Deletes the credential `credential_id` of `tenant_id`; whether there was one.
    pub async fn delete_credential_of(
        &self,
        tenant_id: &str,
        credential_id: &str,
    ) -> Result<bool, StoreError> {
        let done = query("DELETE FROM credentials WHERE credential_id = ? AND tenant_id = ?")
            .bind(credential_id)
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn credential_from_row(row: &AnyRow) -> CredentialRecord {
    let kind = if row.get::<&str, _>("kind") == "iam-credential" {
        StoredCredential::AccessKey {
            access_key_id: row.get("access_key_id"),
            sealed_key: row
                .get::<Option<Vec<u8>>, _>("sealed_key")
                .unwrap_or_default(),
        }
    } else {
        StoredCredential::RoleToRole {
            role_arn: row.get("role_arn"),
            external_id: row.get("external_id"),
        }
    };
    CredentialRecord {
        credential_id: row.get("credential_id"),
        kind,
        created_at: row.get("created_at"),
    }
}

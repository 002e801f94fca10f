//! The object keys of a run: its files, its success marker and its manifest, rendered from a
//! validated [`ExportSpec`] and kept under the destination's prefix.

use super::{ExportSpec, Layout, Marker};
use crate::failure::RunFailure;
use crate::template::{FilenameTemplate, TemplateValues};
use chrono::{DateTime, Utc};
use filedrop_proto::v1::ErrorCode;
use std::collections::BTreeMap;

/// S3's limit on key length, in bytes.
const MAX_KEY_BYTES: usize = 1024;

impl ExportSpec {
    /// The key of file `file_number` of a run, or of a partition's file set (`partition`: the
    /// partition's key text by column; empty when the export is not partitioned).
    pub fn object_key(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
        file_number: u64,
        partition: &BTreeMap<String, String>,
    ) -> Result<String, RunFailure> {
        let render =
            |template, file_number| self.render(template, run_id, now, file_number, partition);
        let mut name = match self.layout {
            Layout::ParquetDirectory { extension } => {
                let mut directory = render(&self.template, None)?;
                if extension && !directory.ends_with(".parquet") {
                    directory.push_str(".parquet");
                }
                format!("{directory}/part-{:05}.parquet", file_number - 1)
            }
            Layout::Files => {
                let template = self
                    .split_filename_template
                    .as_ref()
                    .unwrap_or(&self.template);
                let file = render(template, Some(file_number))?;
                match &self.split_directory_template {
                    None => file,
                    Some(directory) => {
                        let directory = render(directory, Some(file_number))?;
                        format!("{directory}/{file}")
                    }
                }
            }
        };
        if !self.encoding.pgp_public_key.is_empty() {
            name.push_str(".pgp");
        }
        join_key(&self.destination.prefix, &name)
    }

    /// The key of the success marker, if one is wanted. In a partitioned export the `.DONE`
    /// marker's name renders every partition value empty and drops the empty folders that
    /// leaves (`{{partition.country}}/orders.csv` → `orders.csv.DONE`): one marker for the run.
    pub fn marker_key(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, RunFailure> {
        let no_partition: BTreeMap<String, String> = self
            .partition_by
            .iter()
            .map(|column| (column.clone(), String::new()))
            .collect();
        let render_name = |template: &FilenameTemplate| {
            let name = self.render(template, run_id, now, None, &no_partition)?;
            Ok::<_, RunFailure>(
                name.split('/')
                    .filter(|folder| !folder.is_empty())
                    .collect::<Vec<_>>()
                    .join("/"),
            )
        };
        match &self.marker {
            None => Ok(None),
            Some(Marker::UnderscoreSuccess) => {
                join_key(&self.destination.prefix, "_SUCCESS").map(Some)
            }
            Some(Marker::DoneSuffix) => {
                let name = render_name(&self.template)?;
                join_key(&self.destination.prefix, &format!("{name}.DONE")).map(Some)
            }
            Some(Marker::Custom(template)) => {
                join_key(&self.destination.prefix, &render_name(template)?).map(Some)
            }
        }
    }

    /// The key of the run's manifest, if one is wanted: `manifest-<destination>-<run id>.json`
    /// under the prefix, the destination being the stored destination's id (as Adobe names
    /// it), or else its name, or else its bucket.
    pub fn manifest_key(&self, run_id: &str) -> Result<Option<String>, RunFailure> {
        if !self.manifest {
            return Ok(None);
        }
        let destination = match &self.stored_destination {
            Some(id) => id,
            None if self.destination.name.is_empty() => &self.destination.bucket,
            None => &self.destination.name,
        };
        let destination: String = destination
            .chars()
            .map(|c| if c == '/' { '-' } else { c })
            .collect();
        join_key(
            &self.destination.prefix,
            &format!("manifest-{destination}-{run_id}.json"),
        )
        .map(Some)
    }

    fn render(
        &self,
        template: &FilenameTemplate,
        run_id: &str,
        now: DateTime<Utc>,
        file_number: Option<u64>,
        partition: &BTreeMap<String, String>,
    ) -> Result<String, RunFailure> {
        template
            .render(&TemplateValues {
                run_id,
                file_number,
                now,
                destination: &self.destination.name,
                variables: &self.variables,
                partition,
            })
            .map_err(|message| RunFailure::new(ErrorCode::InvalidTemplate, message))
    }
}

/// Joins a normalized prefix and a rendered name into a key that stays under the prefix.
fn join_key(prefix: &str, name: &str) -> Result<String, RunFailure> {
    let invalid = |what: &str| {
        RunFailure::new(
            ErrorCode::InvalidTemplate,
            format!("the file name renders as {name:?}, which {what}"),
        )
    };
    if name.is_empty() {
        return Err(invalid("is empty"));
    }
    if name.starts_with('/') {
        return Err(invalid("starts with '/'"));
    }
    if name
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err(invalid(
            "has '.' or '..' segments and would leave the prefix",
        ));
    }
    if name.split('/').any(str::is_empty) {
        return Err(invalid("has an empty folder name ('//' or a trailing '/')"));
    }
    if let Some(bad) = name.chars().find(|c| c.is_control()) {
        return Err(invalid(&format!(
            "contains {}; give variables and partition values without control characters",
            crate::credential_rules::describe(bad)
        )));
    }
    let key = format!("{prefix}{name}");
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid("makes a key longer than S3's 1024 bytes"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use crate::export::ExportSpec;
    use crate::export::fixtures::{parquet_request, request};
    use chrono::{TimeZone, Utc};
    use filedrop_proto::v1::{ExportRequest, ParquetLayout};
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn names_files_and_marker_under_the_prefix() {
        let spec = ExportSpec::validate(request()).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            spec.object_key("r", now, 3, &BTreeMap::new()).unwrap(),
            "daily/orders-20260102-0000003.csv"
        );
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/orders-20260102-.csv.DONE")
        );
    }

    #[test]
    fn encrypted_files_get_pgp_appended_and_the_marker_does_not() {
        let mut encrypted = request();
        encrypted.pgp_public_key = "  -----BEGIN PGP PUBLIC KEY BLOCK----- …\n".into();
        let spec = ExportSpec::validate(encrypted).unwrap();
        assert!(
            spec.encoding.pgp_public_key.starts_with("-----BEGIN"),
            "trimmed"
        );
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            spec.object_key("r", now, 3, &BTreeMap::new()).unwrap(),
            "daily/orders-20260102-0000003.csv.pgp"
        );
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/orders-20260102-.csv.DONE")
        );
    }

    #[test]
    fn parquet_goes_to_a_directory_of_numbered_parts_by_default() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let keys = |request: ExportRequest| {
            let spec = ExportSpec::validate(request).unwrap();
            (
                spec.object_key("r", now, 1, &BTreeMap::new()).unwrap(),
                spec.object_key("r", now, 12, &BTreeMap::new()).unwrap(),
                spec.marker_key("r", now).unwrap().unwrap(),
            )
        };
        let template = "orders-{{now|format:'yyyyMMdd'}}";
        for layout in [ParquetLayout::Unspecified, ParquetLayout::Directory] {
            assert_eq!(
                keys(parquet_request(template, layout)),
                (
                    "daily/orders-20260102.parquet/part-00000.parquet".to_owned(),
                    "daily/orders-20260102.parquet/part-00011.parquet".to_owned(),
                    "daily/orders-20260102.DONE".to_owned()
                )
            );
        }
        // A template that already ends in `.parquet` does not get a second one.
        assert_eq!(
            keys(parquet_request("orders.parquet", ParquetLayout::Directory)).0,
            "daily/orders.parquet/part-00000.parquet"
        );
        assert_eq!(
            keys(parquet_request(
                template,
                ParquetLayout::DirectoryWithoutExtension
            )),
            (
                "daily/orders-20260102/part-00000.parquet".to_owned(),
                "daily/orders-20260102/part-00011.parquet".to_owned(),
                "daily/orders-20260102.DONE".to_owned()
            )
        );
        let mut encrypted = parquet_request(template, ParquetLayout::Directory);
        encrypted.pgp_public_key = "key".into();
        assert_eq!(
            keys(encrypted).0,
            "daily/orders-20260102.parquet/part-00000.parquet.pgp"
        );
        assert_eq!(
            keys(parquet_request(
                "orders-{{file_number}}.parquet",
                ParquetLayout::SingleFile
            )),
            (
                "daily/orders-0000001.parquet".to_owned(),
                "daily/orders-0000012.parquet".to_owned(),
                "daily/orders-.parquet.DONE".to_owned()
            )
        );
    }

    #[test]
    fn split_files_are_named_by_the_split_templates() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let mut r = request();
        r.filename_template = "orders-{{now|format:'yyyyMMdd'}}".into();
        let split = r.split.as_mut().unwrap();
        split.filename_template = "{{campaign}}-{{file_number}}.csv".into();
        split.directory_template = "{{destination}}/{{now|format:'yyyy/MM/dd'}}".into();
        r.variables = HashMap::from([("campaign".to_owned(), "spring".to_owned())]);
        r.destination.as_mut().unwrap().name = "acme".into();
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert_eq!(
            spec.object_key("r", now, 2, &BTreeMap::new()).unwrap(),
            "daily/acme/2026/01/02/spring-0000002.csv"
        );
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/orders-20260102.DONE")
        );
        // Only the directory: the filename template names each file.
        let mut only_directory = r.clone();
        let split = only_directory.split.as_mut().unwrap();
        split.filename_template.clear();
        only_directory.filename_template = "{{file_number}}.csv".into();
        assert_eq!(
            ExportSpec::validate(only_directory)
                .unwrap()
                .object_key("r", now, 3, &BTreeMap::new())
                .unwrap(),
            "daily/acme/2026/01/02/0000003.csv"
        );
    }

    #[test]
    fn partitioned_files_and_parquet_directories_are_named_by_their_values() {
        let now = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
        let partition = BTreeMap::from([
            ("country".to_owned(), "DE".to_owned()),
            ("group".to_owned(), "control".to_owned()),
        ]);
        let mut r = request();
        r.partition_by = vec!["country".into(), "group".into()];
        r.filename_template =
            "{{partition.country}}/{{partition.group}}-{{file_number}}.csv".into();
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert_eq!(
            spec.object_key("r", now, 2, &partition).unwrap(),
            "daily/DE/control-0000002.csv"
        );
        // One marker for the run: the partition values rendered empty, empty folders dropped.
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/-.csv.DONE")
        );

        // In a split, the split templates together name each partition's files.
        r.split.as_mut().unwrap().directory_template = "country={{partition.country}}".into();
        r.split.as_mut().unwrap().filename_template =
            "{{partition.group}}-{{file_number}}.csv".into();
        r.filename_template = "orders.csv".into();
        let spec = ExportSpec::validate(r).unwrap();
        assert_eq!(
            spec.object_key("r", now, 1, &partition).unwrap(),
            "daily/country=DE/control-0000001.csv"
        );
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/orders.csv.DONE")
        );

        let mut parquet = parquet_request(
            "orders/country={{partition.country}}",
            ParquetLayout::Directory,
        );
        parquet.partition_by = vec!["country".into()];
        let spec = ExportSpec::validate(parquet).unwrap();
        let partition = BTreeMap::from([("country".to_owned(), "FR".to_owned())]);
        assert_eq!(
            spec.object_key("r", now, 2, &partition).unwrap(),
            "daily/orders/country=FR.parquet/part-00001.parquet"
        );
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/orders/country=.DONE")
        );
    }
}

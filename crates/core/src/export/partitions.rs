//! Partitioned exports: the `partition_by` columns, and that the templates naming the files
//! tell each partition's files apart.

use super::{InvalidRequest, Layout};
use crate::template::FilenameTemplate;
use filedrop_proto::v1::ErrorCode;

/// Most columns an export may partition by.
const MAX_PARTITION_COLUMNS: usize = 8;

/// Checks the columns to partition by: named, each once, at most [`MAX_PARTITION_COLUMNS`].
/// Whether the data has them is checked when its schema arrives.
pub(super) fn validate_partition_by(columns: Vec<String>) -> Result<Vec<String>, InvalidRequest> {
    let invalid = |message: String| {
        Err(InvalidRequest::new(
            "partition_by",
            ErrorCode::Unspecified,
            message,
        ))
    };
    if columns.len() > MAX_PARTITION_COLUMNS {
        return invalid(format!(
            "{} columns given; partition by at most {MAX_PARTITION_COLUMNS}",
            columns.len()
        ));
    }
    for (position, column) in columns.iter().enumerate() {
        if column.trim().is_empty() {
            return invalid("a column name is empty; name the columns to partition by".into());
        }
        if columns[..position].contains(column) {
            return invalid(format!("column {column:?} is named twice; name it once"));
        }
    }
    Ok(columns)
}

/// Checks that in a partitioned export the templates naming the files use every partition
/// column, so that each partition's files get keys of their own.
pub(super) fn check_partition_names(
    layout: Layout,
    partition_by: &[String],
    template: &FilenameTemplate,
    split_filename_template: Option<&FilenameTemplate>,
    split_directory_template: Option<&FilenameTemplate>,
) -> Result<(), InvalidRequest> {
    let (field, naming): (&'static str, Vec<&FilenameTemplate>) = match layout {
        Layout::ParquetDirectory { .. } => ("filename_template", vec![template]),
        Layout::Files => match split_filename_template {
            Some(file) => (
                "split.filename_template",
                [Some(file), split_directory_template]
                    .into_iter()
                    .flatten()
                    .collect(),
            ),
            None => (
                "filename_template",
                [Some(template), split_directory_template]
                    .into_iter()
                    .flatten()
                    .collect(),
            ),
        },
    };
    let unused: Vec<&str> = partition_by
        .iter()
        .filter(|column| {
            !naming
                .iter()
                .any(|template| template.partition_columns().contains(*column))
        })
        .map(String::as_str)
        .collect();
    if unused.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<String> = unused
        .iter()
        .map(|column| format!("{{{{partition.{column}}}}}"))
        .collect();
    Err(InvalidRequest::new(
        field,
        ErrorCode::InvalidTemplate,
        format!(
            "a partitioned export delivers files for each value of {}, and this template would \
             give them one name: add {}, e.g. '{}/orders-{{{{file_number}}}}.csv'",
            unused.join(", "),
            placeholders.join(" and "),
            placeholders.join("/"),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use crate::export::ExportSpec;
    use crate::export::fixtures::{field_of, request};
    use filedrop_proto::v1::ErrorCode;

    #[test]
    fn partitioning_needs_every_column_in_the_names_and_known_columns_only() {
        let partitioned = |columns: &[&str], template: &str| {
            let mut r = request();
            r.split = None;
            r.partition_by = columns.iter().map(|c| (*c).to_owned()).collect();
            r.filename_template = template.into();
            ExportSpec::validate(r)
        };
        let error = partitioned(&["country", "group"], "{{partition.country}}.csv").unwrap_err();
        assert_eq!(
            (error.field, error.code),
            ("filename_template", ErrorCode::InvalidTemplate)
        );
        assert!(error.message.contains("{{partition.group}}"), "{error}");
        let error = partitioned(&["country"], "{{partition.region}}.csv").unwrap_err();
        assert!(
            error
                .message
                .contains("\"region\" is not a partition column"),
            "{error}"
        );
        let error = partitioned(&["country", "country"], "{{partition.country}}.csv");
        assert_eq!(error.unwrap_err().field, "partition_by");
        let error = partitioned(&[""], "x.csv").unwrap_err();
        assert_eq!(error.field, "partition_by");
        let nine: Vec<String> = (0..9).map(|n| format!("c{n}")).collect();
        let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
        assert_eq!(
            partitioned(&nine, "x.csv").unwrap_err().field,
            "partition_by"
        );
        // `partition` is reserved, even as an export variable.
        let mut r = request();
        r.variables.insert("partition".into(), "x".into());
        assert_eq!(field_of(r), "variables");
    }
}

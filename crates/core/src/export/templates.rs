//! The templates that name a run's objects: the export's variables they may use, the filename
//! template and the split templates, whether they give each file a name of its own in the
//! layout, and a render with sample values that proves they render.

use super::{ExportSpec, InvalidRequest, Layout, Marker};
use crate::template::{BUILT_IN_VARIABLES, FilenameTemplate, PARTITION_VARIABLE};
use chrono::Utc;
use filedrop_proto::v1::{ErrorCode, Split};
use std::collections::{BTreeMap, HashMap};

/// Longest export variable name, in characters.
const MAX_VARIABLE_NAME_CHARS: usize = 64;
/// Longest export variable value, in bytes.
const MAX_VARIABLE_VALUE_BYTES: usize = 1024;

/// What the export's templates may use besides the built-in variables: the export's
/// variables, the partition columns, and the destination's name.
pub(super) struct TemplateParser<'a> {
    pub(super) variables: &'a BTreeMap<String, String>,
    pub(super) partition_by: &'a [String],
    pub(super) destination_name: &'a str,
}

/// The templates that name a run's files.
pub(super) struct FileNames {
    pub(super) template: FilenameTemplate,
    pub(super) split_filename_template: Option<FilenameTemplate>,
    pub(super) split_directory_template: Option<FilenameTemplate>,
}

impl TemplateParser<'_> {
    /// Parses the template of `field`, refusing what it uses but cannot have.
    pub(super) fn parse(
        &self,
        field: &'static str,
        source: &str,
    ) -> Result<FilenameTemplate, InvalidRequest> {
        let partition_by = self.partition_by;
        let partition = (!partition_by.is_empty()).then_some(PARTITION_VARIABLE);
        let template = FilenameTemplate::parse(
            source,
            self.variables.keys().map(String::as_str).chain(partition),
        )
        .map_err(|message| InvalidRequest::new(field, ErrorCode::InvalidTemplate, message))?;
        if let Some(column) = template
            .partition_columns()
            .iter()
            .find(|column| !partition_by.contains(column))
        {
            return Err(InvalidRequest::new(
                field,
                ErrorCode::InvalidTemplate,
                format!(
                    "the template uses partition.{column}, but {column:?} is not a \
                     partition column; partition_by has {}",
                    partition_by.join(", ")
                ),
            ));
        }
        if template.uses("destination") && self.destination_name.is_empty() {
            return Err(InvalidRequest::new(
                field,
                ErrorCode::InvalidTemplate,
                "the template uses {{destination}}, but the destination has no name: set \
                 destination.name",
            ));
        }
        Ok(template)
    }

    /// Parses the filename template, then the split's filename and directory templates when
    /// they are set.
    pub(super) fn parse_file_names(
        &self,
        filename_template: &str,
        split: Option<&Split>,
    ) -> Result<FileNames, InvalidRequest> {
        let template = self.parse("filename_template", filename_template)?;
        let mut split_filename_template = None;
        let mut split_directory_template = None;
        if let Some(split) = split {
            if !split.filename_template.trim().is_empty() {
                split_filename_template =
                    Some(self.parse("split.filename_template", &split.filename_template)?);
            }
            if !split.directory_template.trim().is_empty() {
                split_directory_template =
                    Some(self.parse("split.directory_template", &split.directory_template)?);
            }
        }
        Ok(FileNames {
            template,
            split_filename_template,
            split_directory_template,
        })
    }
}

/// Checks the export's template variables: names a template can use, none of the built-in
/// ones, and values of bounded size.
pub(super) fn validate_variables(
    variables: HashMap<String, String>,
) -> Result<BTreeMap<String, String>, InvalidRequest> {
    let invalid = |message: String| {
        Err(InvalidRequest::new(
            "variables",
            ErrorCode::InvalidTemplate,
            message,
        ))
    };
    for (name, value) in &variables {
        let mut chars = name.chars();
        let identifier = chars
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier || name.chars().count() > MAX_VARIABLE_NAME_CHARS {
            return invalid(format!(
                "variable name {name:?} is not usable in templates: a letter or '_', then \
                 letters, digits and '_', at most {MAX_VARIABLE_NAME_CHARS} characters, e.g. \
                 'campaign_name'"
            ));
        }
        if BUILT_IN_VARIABLES.contains(&name.as_str()) || name == PARTITION_VARIABLE {
            return invalid(format!(
                "variable {name:?} is built in ({}, {PARTITION_VARIABLE}); choose another name",
                BUILT_IN_VARIABLES.join(", ")
            ));
        }
        if let Some(bad) = value.chars().find(|c| c.is_control()) {
            return invalid(format!(
                "the value of variable {name:?} contains {}; values become part of object \
                 keys, which hold no control characters",
                crate::credential_rules::describe(bad)
            ));
        }
        if value.len() > MAX_VARIABLE_VALUE_BYTES {
            return invalid(format!(
                "the value of variable {name:?} is {} bytes; at most \
                 {MAX_VARIABLE_VALUE_BYTES} are allowed",
                value.len()
            ));
        }
    }
    Ok(variables.into_iter().collect())
}

/// Checks that the templates give every file of the run its own name in `layout`.
pub(super) fn check_layout(
    layout: Layout,
    template: &FilenameTemplate,
    split: bool,
    split_filename_template: Option<&FilenameTemplate>,
    split_directory_template: bool,
) -> Result<(), InvalidRequest> {
    let invalid = |field: &'static str, message: &str| {
        Err(InvalidRequest::new(
            field,
            ErrorCode::InvalidTemplate,
            message.to_owned(),
        ))
    };
    match layout {
        Layout::ParquetDirectory { .. } => {
            if template.uses("file_number") {
                return invalid(
                    "filename_template",
                    "in the Parquet directory layout the template names the directory, and \
                     its files are numbered part-00000.parquet, part-00001.parquet, …: remove \
                     {{file_number}}, or set parquet.layout to PARQUET_LAYOUT_SINGLE_FILE",
                );
            }
            if split_filename_template.is_some() {
                return invalid(
                    "split.filename_template",
                    "the Parquet directory layout names its files part-00000.parquet, …: \
                     leave the split templates empty, or set parquet.layout to \
                     PARQUET_LAYOUT_SINGLE_FILE",
                );
            }
            if split_directory_template {
                return invalid(
                    "split.directory_template",
                    "in the Parquet directory layout the filename template names the \
                     directory: leave the split templates empty, or set parquet.layout to \
                     PARQUET_LAYOUT_SINGLE_FILE",
                );
            }
        }
        Layout::Files if split => match split_filename_template {
            Some(file) if !file.uses("file_number") => {
                return invalid(
                    "split.filename_template",
                    "a split delivers several files and this template would give them one \
                     name: add {{file_number}}, e.g. '{{file_number}}.csv'",
                );
            }
            None if !template.uses("file_number") => {
                return invalid(
                    "filename_template",
                    "a split delivers several files and this template would give them one \
                     name: add {{file_number}}, e.g. 'orders-{{file_number}}.csv', or set \
                     split.filename_template",
                );
            }
            _ => {}
        },
        Layout::Files => {}
    }
    Ok(())
}

/// Renders the key of a run's first file and its marker's with sample values, refusing the
/// template at fault when one does not render.
pub(super) fn check_sample_render(spec: &ExportSpec) -> Result<(), InvalidRequest> {
    let sample_time = Utc::now();
    let sample_run = "00000000-0000-0000-0000-000000000000";
    let field = if spec.split_filename_template.is_some() {
        "split.filename_template"
    } else {
        "filename_template"
    };
    let sample_partition = spec
        .partition_by
        .iter()
        .map(|column| (column.clone(), "value".to_owned()))
        .collect();
    spec.object_key(sample_run, sample_time, 1, &sample_partition)
        .map_err(|failure| InvalidRequest::new(field, failure.code, failure.message))?;
    let marker_field = match spec.marker {
        Some(Marker::Custom(_)) => "success_file.custom_name",
        _ => "filename_template",
    };
    spec.marker_key(sample_run, sample_time)
        .map_err(|failure| InvalidRequest::new(marker_field, failure.code, failure.message))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::export::ExportSpec;
    use crate::export::fixtures::{field_of, parquet_request, request};
    use filedrop_proto::v1::{ErrorCode, ParquetLayout};
    use std::collections::HashMap;

    #[test]
    fn the_parquet_directory_layout_refuses_file_numbers_and_split_templates() {
        let error = ExportSpec::validate(parquet_request(
            "orders-{{file_number}}",
            ParquetLayout::Unspecified,
        ))
        .unwrap_err();
        assert_eq!(error.field, "filename_template");
        assert!(
            error.message.contains("PARQUET_LAYOUT_SINGLE_FILE"),
            "{error}"
        );
        for (field, set) in [
            ("split.filename_template", 0),
            ("split.directory_template", 1),
        ] {
            let mut r = parquet_request("orders", ParquetLayout::DirectoryWithoutExtension);
            let split = r.split.as_mut().unwrap();
            if set == 0 {
                split.filename_template = "{{file_number}}.parquet".into();
            } else {
                split.directory_template = "day".into();
            }
            let error = ExportSpec::validate(r).unwrap_err();
            assert_eq!(
                (error.field, error.code),
                (field, ErrorCode::InvalidTemplate)
            );
        }
    }

    #[test]
    fn a_split_needs_a_file_number_in_the_name_of_each_file() {
        let mut r = request();
        r.filename_template = "orders.csv".into();
        let error = ExportSpec::validate(r.clone()).unwrap_err();
        assert_eq!(
            (error.field, error.code),
            ("filename_template", ErrorCode::InvalidTemplate)
        );
        assert!(error.message.contains("{{file_number}}"), "{error}");
        r.split.as_mut().unwrap().filename_template = "part.csv".into();
        assert_eq!(field_of(r.clone()), "split.filename_template");
        // Without a split, one file needs no number.
        r.split = None;
        ExportSpec::validate(r).unwrap();
    }

    #[test]
    fn variables_and_the_destination_name_are_checked() {
        let with = |name: &str, value: &str| {
            let mut r = request();
            r.variables = HashMap::from([(name.to_owned(), value.to_owned())]);
            ExportSpec::validate(r)
        };
        with("group_name", "A").unwrap();
        with("_x9", "A").unwrap();
        for bad in [
            "9lives",
            "group-name",
            "",
            "run_id",
            "destination",
            &"v".repeat(65),
        ] {
            let error = with(bad, "A").unwrap_err();
            assert_eq!(error.field, "variables", "{bad}");
        }
        assert_eq!(
            with("big", &"x".repeat(1025)).unwrap_err().field,
            "variables"
        );

        let mut r = request();
        r.filename_template = "{{destination}}-{{file_number}}.csv".into();
        let error = ExportSpec::validate(r.clone()).unwrap_err();
        assert_eq!(error.field, "filename_template");
        assert!(error.message.contains("destination.name"), "{error}");
        r.destination.as_mut().unwrap().name = "n".repeat(257);
        assert_eq!(field_of(r), "destination.name");

        // A value that would leave the prefix is caught when the template renders.
        let mut r = request();
        r.variables = HashMap::from([("group".to_owned(), "../up".to_owned())]);
        r.filename_template = "{{group}}/{{file_number}}.csv".into();
        let error = ExportSpec::validate(r).unwrap_err();
        assert_eq!(
            (error.field, error.code),
            ("filename_template", ErrorCode::InvalidTemplate)
        );
    }

    #[test]
    fn refuses_templates_that_leave_the_prefix() {
        for template in [
            "../{{run_id}}",
            "/{{run_id}}",
            "a//{{run_id}}",
            "a/./b",
            "x/",
        ] {
            let mut r = request();
            r.split = None;
            r.filename_template = template.into();
            let error = ExportSpec::validate(r).unwrap_err();
            assert_eq!(error.field, "filename_template", "{template}");
            assert_eq!(error.code, ErrorCode::InvalidTemplate, "{template}");
        }
    }
}

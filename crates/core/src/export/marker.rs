//! What a run writes after its files: the success marker, and the manifest before it.

use super::InvalidRequest;
use super::templates::TemplateParser;
use crate::template::FilenameTemplate;
use filedrop_proto::v1::{ErrorCode, ManifestOptions, SuccessFile, SuccessFileName};

/// Which marker the run writes last.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Marker {
    /// `<rendered filename template>.DONE`, with `{{file_number}}` rendered empty.
    DoneSuffix,
    /// `_SUCCESS` under the prefix.
    UnderscoreSuccess,
    /// A name of the user's, rendered like the filename template (partition values and
    /// `{{file_number}}` empty).
    Custom(FilenameTemplate),
}

/// Checks the success marker's settings; `None` when no marker is wanted. A custom name is a
/// template, parsed like the filename template.
pub(super) fn validate_marker(
    success_file: Option<SuccessFile>,
    templates: &TemplateParser<'_>,
) -> Result<Option<Marker>, InvalidRequest> {
    let marker = match success_file {
        Some(success) if success.enabled => match SuccessFileName::try_from(success.name) {
            Ok(SuccessFileName::UnderscoreSuccess) => Some(Marker::UnderscoreSuccess),
            Ok(SuccessFileName::Unspecified | SuccessFileName::DoneSuffix) => {
                Some(Marker::DoneSuffix)
            }
            Ok(SuccessFileName::Custom) if success.custom_name.is_empty() => {
                return Err(InvalidRequest::missing(
                    "success_file.custom_name",
                    "'READY' or '{{now|format:'yyyyMMdd'}}/_DONE'",
                ));
            }
            Ok(SuccessFileName::Custom) => Some(Marker::Custom(
                templates.parse("success_file.custom_name", &success.custom_name)?,
            )),
            Err(_) => {
                return Err(InvalidRequest::new(
                    "success_file.name",
                    ErrorCode::Unspecified,
                    format!(
                        "unknown marker name {}: use SUCCESS_FILE_NAME_DONE_SUFFIX, \
                         SUCCESS_FILE_NAME_UNDERSCORE_SUCCESS or SUCCESS_FILE_NAME_CUSTOM",
                        success.name
                    ),
                ));
            }
        },
        _ => None,
    };
    Ok(marker)
}

/// Whether the run writes a manifest: unless the request disables it.
pub(super) fn manifest_wanted(manifest: Option<ManifestOptions>) -> bool {
    !manifest.is_some_and(|manifest| manifest.disabled)
}

#[cfg(test)]
mod tests {
    use crate::export::ExportSpec;
    use crate::export::fixtures::{field_of, request};
    use chrono::{DateTime, Utc};
    use filedrop_proto::v1::SuccessFileName;

    #[test]
    fn a_custom_marker_and_the_manifest_are_named_under_the_prefix() {
        let mut custom = request();
        let success = custom.success_file.as_mut().unwrap();
        success.name = SuccessFileName::Custom.into();
        success.custom_name = "{{now|format:'yyyyMMdd'}}/READY".into();
        let spec = ExportSpec::validate(custom.clone()).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            spec.marker_key("r", now).unwrap().as_deref(),
            Some("daily/20260102/READY")
        );
        assert_eq!(
            spec.manifest_key("r").unwrap().as_deref(),
            Some("daily/manifest-exports-r.json"),
            "on by default, named after the bucket without a destination name"
        );
        custom.destination.as_mut().unwrap().name = "acme/daily".into();
        custom.manifest = Some(filedrop_proto::v1::ManifestOptions { disabled: false });
        assert_eq!(
            ExportSpec::validate(custom.clone())
                .unwrap()
                .manifest_key("r")
                .unwrap()
                .as_deref(),
            Some("daily/manifest-acme-daily-r.json")
        );
        custom.manifest = Some(filedrop_proto::v1::ManifestOptions { disabled: true });
        assert_eq!(
            ExportSpec::validate(custom.clone())
                .unwrap()
                .manifest_key("r")
                .unwrap(),
            None
        );

        let mut r = custom.clone();
        r.success_file.as_mut().unwrap().custom_name = String::new();
        assert_eq!(field_of(r), "success_file.custom_name");
        let mut r = custom.clone();
        r.success_file.as_mut().unwrap().custom_name = "../escape".into();
        assert_eq!(field_of(r), "success_file.custom_name");
        let mut r = custom;
        r.success_file.as_mut().unwrap().custom_name = "{{unknown}}".into();
        assert_eq!(field_of(r), "success_file.custom_name");
    }

    #[test]
    fn underscore_success_and_no_marker() {
        let mut with_success = request();
        with_success.success_file.as_mut().unwrap().name =
            SuccessFileName::UnderscoreSuccess.into();
        let spec = ExportSpec::validate(with_success).unwrap();
        assert_eq!(
            spec.marker_key("r", Utc::now()).unwrap().as_deref(),
            Some("daily/_SUCCESS")
        );
        let mut without = request();
        without.success_file = None;
        assert!(ExportSpec::validate(without).unwrap().marker.is_none());
    }
}

//! Filename templates: Jinja-style text rendered once per delivered file.
//!
//! Users write filters the way the delivery products they know do, with a colon:
//! `{{now|format:'yyyy-MM-dd'}}`. [`FilenameTemplate::parse`] rewrites `|filter:'arg'` to the
//! Jinja call syntax `|filter('arg')` and hands the result to `minijinja`, with undefined
//! variables as errors.
//!
//! Variables: `run_id`, `file_number` (seven digits, zero-padded, from 1), `destination` (the
//! destination's name), `now` (the run's start time, UTC), the export's own variables and, in
//! a partitioned export, `partition` (each partition column's value as `partition.<column>`).
//! Filters on times: `local:'<IANA zone>'`, `format:'<Joda-Time pattern>'` and `next_day`.
//! A time is a template object ([`Time`]), so that a zone chosen by `local` survives the
//! filters after it: `next_day` moves to the same wall-clock time on the next calendar day of
//! that zone, across daylight-saving changes.

use crate::joda;
use chrono::{DateTime, Days, LocalResult, TimeZone, Utc};
use chrono_tz::Tz;
use minijinja::value::{Object, ObjectRepr};
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// The variables every template may use; export variables come on top.
pub const BUILT_IN_VARIABLES: &[&str] = &["run_id", "file_number", "now", "destination"];

/// The variable holding a partitioned export's partition values, known only to templates of
/// such an export.
pub const PARTITION_VARIABLE: &str = "partition";

/// A parsed filename template, ready to render.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FilenameTemplate {
    /// The template in minijinja syntax.
    jinja: String,
    /// The variables it uses.
    used: BTreeSet<String>,
    /// The partition columns it uses as `partition.<column>`.
    partition_columns: BTreeSet<String>,
}

/// Values for one rendering of a template.
#[derive(Debug, Clone)]
pub struct TemplateValues<'a> {
    /// The run id.
    pub run_id: &'a str,
    /// The file number, from 1; `None` renders `{{file_number}}` as an empty string (the
    /// success marker's name, a Parquet directory's name).
    pub file_number: Option<u64>,
    /// The run's start time.
    pub now: DateTime<Utc>,
    /// The destination's name.
    pub destination: &'a str,
    /// The export's variables.
    pub variables: &'a BTreeMap<String, String>,
    /// The partition's values by column; empty when the export is not partitioned.
    pub partition: &'a BTreeMap<String, String>,
}

impl FilenameTemplate {
    /// Parses `source`, checking its syntax and that it uses only the built-in variables and
    /// `extra_variables`.
    pub fn parse<'a>(
        source: &str,
        extra_variables: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("the template is empty; give a name such as \
                        'export-{{run_id}}-{{file_number}}.csv'"
                .to_owned());
        }
        let jinja = colon_filters_to_calls(source);
        let env = environment();
        let template = env
            .template_from_str(&jinja)
            .map_err(|error| format!("the template does not parse: {error}"))?;
        let used = template.undeclared_variables(false);
        // Nested names (`partition.country`) say which partition columns are used.
        let partition_columns = template
            .undeclared_variables(true)
            .into_iter()
            .filter_map(|name| {
                name.strip_prefix(PARTITION_VARIABLE)?
                    .strip_prefix('.')
                    .map(|column| column.split('.').next().unwrap_or(column).to_owned())
            })
            .collect();
        let known = |name: &str| {
            BUILT_IN_VARIABLES.contains(&name)
                || extra_variables.clone().into_iter().any(|v| v == name)
        };
        let unknown: Vec<&str> = used
            .iter()
            .map(String::as_str)
            .filter(|name| !known(name))
            .collect();
        if !unknown.is_empty() {
            let mut known: Vec<&str> = BUILT_IN_VARIABLES.to_vec();
            known.extend(extra_variables);
            return Err(format!(
                "the template uses unknown variable(s) {}; known variables are {} (add others \
                 to the export's variables)",
                unknown.join(", "),
                known.join(", ")
            ));
        }
        Ok(Self {
            jinja,
            used: used.into_iter().collect(),
            partition_columns,
        })
    }

    /// The partition columns the template uses as `partition.<column>`.
    pub fn partition_columns(&self) -> &BTreeSet<String> {
        &self.partition_columns
    }

    /// Whether the template uses variable `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.used.contains(name)
    }

    /// Renders the template.
    pub fn render(&self, values: &TemplateValues<'_>) -> Result<String, String> {
        let mut context: BTreeMap<&str, Value> = values
            .variables
            .iter()
            .map(|(name, value)| (name.as_str(), Value::from(value.as_str())))
            .collect();
        context.insert("run_id", Value::from(values.run_id));
        context.insert(
            "file_number",
            Value::from(
                values
                    .file_number
                    .map(|n| format!("{n:07}"))
                    .unwrap_or_default(),
            ),
        );
        context.insert("destination", Value::from(values.destination));
        if !values.partition.is_empty() {
            context.insert(
                PARTITION_VARIABLE,
                Value::from_iter(
                    values
                        .partition
                        .iter()
                        .map(|(column, value)| (column.as_str(), value.as_str())),
                ),
            );
        }
        context.insert(
            "now",
            Value::from_object(Time(values.now.with_timezone(&Tz::UTC))),
        );
        environment()
            .render_str(&self.jinja, context)
            .map_err(|error| format!("the template failed to render: {error:#}"))
    }
}

/// A point in time in a zone: the value of `{{now}}` and of the time filters.
#[derive(Debug)]
struct Time(DateTime<Tz>);

impl Object for Time {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339())
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("format", format_filter);
    env.add_filter("next_day", next_day_filter);
    env.add_filter("local", local_filter);
    env
}

fn invalid(message: String) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, message)
}

fn time_of(value: &Value) -> Result<DateTime<Tz>, minijinja::Error> {
    value
        .downcast_object_ref::<Time>()
        .map(|time| time.0)
        .ok_or_else(|| {
            invalid(format!(
                "{value} is not a time; time filters apply to {{{{now}}}}"
            ))
        })
}

fn format_filter(value: &Value, pattern: String) -> Result<String, minijinja::Error> {
    let time = time_of(value)?;
    let format = joda::to_chrono_format(&pattern).map_err(invalid)?;
    Ok(time.format(&format).to_string())
}

fn next_day_filter(value: &Value) -> Result<Value, minijinja::Error> {
    let time = time_of(value)?;
    // Calendar arithmetic in the time's zone: the same wall-clock time on the next day. When
    // a daylight-saving change makes that time ambiguous the earlier one is taken; when it
    // skips that time, 24 hours later is, which falls on the same next day.
    let tomorrow = time
        .naive_local()
        .checked_add_days(Days::new(1))
        .ok_or_else(|| invalid(format!("{time} has no next day")))?;
    let next = match time.timezone().from_local_datetime(&tomorrow) {
        LocalResult::Single(next) | LocalResult::Ambiguous(next, _) => next,
        LocalResult::None => time + chrono::Duration::days(1),
    };
    Ok(Value::from_object(Time(next)))
}

fn local_filter(value: &Value, zone: String) -> Result<Value, minijinja::Error> {
    let time = time_of(value)?;
    let zone: Tz = zone.parse().map_err(|_| {
        invalid(format!(
            "{zone:?} is not an IANA time zone; use a name such as 'America/Los_Angeles' or 'UTC'"
        ))
    })?;
    Ok(Value::from_object(Time(time.with_timezone(&zone))))
}

/// Rewrites `|name:'arg'` (and `|name:"arg"`) inside `{{ … }}` to `|name('arg')`.
fn colon_filters_to_calls(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len() + 8);
    let mut i = 0;
    let mut in_expression = false;
    while i < chars.len() {
        let c = chars[i];
        if !in_expression {
            if c == '{' && chars.get(i + 1) == Some(&'{') {
                in_expression = true;
                out.push_str("{{");
                i += 2;
            } else {
                out.push(c);
                i += 1;
            }
            continue;
        }
        match c {
            '}' if chars.get(i + 1) == Some(&'}') => {
                in_expression = false;
                out.push_str("}}");
                i += 2;
            }
            '\'' | '"' => {
                // Copy a string literal untouched.
                let end = chars[i + 1..]
                    .iter()
                    .position(|&d| d == c)
                    .map_or(chars.len(), |p| i + 1 + p + 1);
                out.extend(&chars[i..end.min(chars.len())]);
                i = end;
            }
            '|' => {
                out.push('|');
                i += 1;
                let mut j = i;
                while chars.get(j).is_some_and(|d| d.is_whitespace()) {
                    j += 1;
                }
                let name_start = j;
                while chars
                    .get(j)
                    .is_some_and(|d| d.is_alphanumeric() || *d == '_')
                {
                    j += 1;
                }
                let name: String = chars[name_start..j].iter().collect();
                let mut k = j;
                while chars.get(k).is_some_and(|d| d.is_whitespace()) {
                    k += 1;
                }
                if !name.is_empty() && chars.get(k) == Some(&':') {
                    k += 1;
                    while chars.get(k).is_some_and(|d| d.is_whitespace()) {
                        k += 1;
                    }
                    if let Some(&quote @ ('\'' | '"')) = chars.get(k)
                        && let Some(p) = chars[k + 1..].iter().position(|&d| d == quote)
                    {
                        let end = k + 1 + p + 1;
                        out.push_str(&name);
                        out.push('(');
                        out.extend(&chars[k..end]);
                        out.push(')');
                        i = end;
                        continue;
                    }
                }
                out.push_str(&name);
                i = j;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables() -> BTreeMap<String, String> {
        BTreeMap::from([("campaign_name".to_owned(), "spring".to_owned())])
    }

    fn render_at(source: &str, now: &str, file_number: Option<u64>) -> Result<String, String> {
        let variables = variables();
        FilenameTemplate::parse(source, variables.keys().map(String::as_str))?.render(
            &TemplateValues {
                run_id: "run-1",
                file_number,
                now: DateTime::parse_from_rfc3339(now).unwrap().to_utc(),
                destination: "acme-daily",
                variables: &variables,
                partition: &BTreeMap::new(),
            },
        )
    }

    fn render(source: &str, file_number: Option<u64>) -> Result<String, String> {
        render_at(source, "2026-12-31T23:00:00Z", file_number)
    }

    #[test]
    fn renders_variables_and_filters() {
        assert_eq!(
            render(
                "out/{{now|format:'yyyy-MM-dd'}}/{{run_id}}-{{ file_number }}.csv",
                Some(12)
            )
            .unwrap(),
            "out/2026-12-31/run-1-0000012.csv"
        );
        assert_eq!(
            render(
                "out/{{now|format:'yyyy-MM-dd'}}/{{run_id}}-{{file_number}}.csv",
                None
            )
            .unwrap(),
            "out/2026-12-31/run-1-.csv"
        );
        assert_eq!(
            render("{{destination}}/{{campaign_name}}.csv", Some(1)).unwrap(),
            "acme-daily/spring.csv"
        );
        assert_eq!(
            render("{{now}}", Some(1)).unwrap(),
            "2026-12-31T23:00:00+00:00"
        );
    }

    #[test]
    fn next_day_rolls_over_the_year() {
        assert_eq!(
            render("{{now|next_day|format:\"yyyyMMdd\"}}", Some(1)).unwrap(),
            "20270101"
        );
    }

    #[test]
    fn local_moves_to_the_zone_before_formatting_and_next_day_keeps_it() {
        // 23:00 UTC on New Year's Eve is already 2027 in Tokyo and still afternoon in LA.
        assert_eq!(
            render(
                "{{now|local:'Asia/Tokyo'|format:'yyyy-MM-dd HH:mm Z'}}",
                Some(1)
            )
            .unwrap(),
            "2027-01-01 08:00 +0900"
        );
        assert_eq!(
            render(
                "{{now|local:'America/Los_Angeles'|format:'yyyy-MM-dd HH'}}",
                Some(1)
            )
            .unwrap(),
            "2026-12-31 15"
        );
        // The night before the spring change in LA: next day keeps the wall-clock time (a
        // day of 23 hours), where adding 24 hours would give 01:00.
        assert_eq!(
            render_at(
                "{{now|local:'America/Los_Angeles'|next_day|format:'yyyy-MM-dd HH:mm'}}",
                "2026-03-08T08:00:00Z",
                Some(1)
            )
            .unwrap(),
            "2026-03-09 00:00"
        );
        // A wall-clock time the change skips: the next day still.
        assert_eq!(
            render_at(
                "{{now|local:'America/Los_Angeles'|next_day|format:'yyyy-MM-dd'}}",
                "2026-03-07T10:30:00Z",
                Some(1)
            )
            .unwrap(),
            "2026-03-08"
        );
        let error = render("{{now|local:'Mars/Olympus'}}", Some(1)).unwrap_err();
        assert!(error.contains("not an IANA time zone"), "{error}");
        let error = render("{{run_id|local:'UTC'}}", Some(1)).unwrap_err();
        assert!(error.contains("is not a time"), "{error}");
    }

    #[test]
    fn literal_text_keeps_colons_and_pipes() {
        assert_eq!(render("a|b:c-{{run_id}}", Some(1)).unwrap(), "a|b:c-run-1");
    }

    #[test]
    fn refuses_unknown_variables_syntax_errors_and_bad_patterns() {
        let error = render("{{campaign}}-{{run_id}}", Some(1)).unwrap_err();
        assert!(error.contains("unknown variable(s) campaign;"), "{error}");
        assert!(error.contains("campaign_name"), "{error}");
        assert!(
            render("{{run_id", Some(1))
                .unwrap_err()
                .contains("does not parse")
        );
        assert!(render("  ", Some(1)).unwrap_err().contains("empty"));
        let error = render("{{now|format:'yyyy-ww'}}", Some(1)).unwrap_err();
        assert!(error.contains("\"ww\""), "{error}");
    }

    #[test]
    fn knows_which_variables_it_uses() {
        let template = FilenameTemplate::parse("{{run_id}}-{{ file_number }}", []).unwrap();
        assert!(template.uses("file_number") && template.uses("run_id"));
        assert!(!template.uses("destination"));
    }

    #[test]
    fn partition_values_render_by_column_and_the_columns_used_are_known() {
        let template = FilenameTemplate::parse(
            "{{partition.country}}/{{partition['day']}}-{{partition.group}}-{{file_number}}.csv",
            [PARTITION_VARIABLE],
        )
        .unwrap();
        assert!(template.uses(PARTITION_VARIABLE));
        let used: Vec<&str> = template
            .partition_columns()
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(used, ["country", "group"]);
        let partition = BTreeMap::from([
            ("country".to_owned(), "DE".to_owned()),
            ("day".to_owned(), "2026-05-01".to_owned()),
            ("group".to_owned(), "control".to_owned()),
        ]);
        let rendered = template.render(&TemplateValues {
            run_id: "run-1",
            file_number: Some(2),
            now: Utc::now(),
            destination: "",
            variables: &BTreeMap::new(),
            partition: &partition,
        });
        assert_eq!(rendered.unwrap(), "DE/2026-05-01-control-0000002.csv");
        // Without partitioning, `partition` is an unknown variable.
        let error = FilenameTemplate::parse("{{partition.country}}.csv", []).unwrap_err();
        assert!(error.contains("unknown variable(s) partition"), "{error}");
    }
}

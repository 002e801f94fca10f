//! Filename templates: Jinja-style text rendered once per delivered file.
//!
//! Users write filters the way the delivery products they know do, with a colon:
//! `{{now|format:'yyyy-MM-dd'}}`. [`FilenameTemplate::parse`] rewrites `|filter:'arg'` to the
//! Jinja call syntax `|filter('arg')` and hands the result to `minijinja`, with undefined
//! variables as errors.
//!
//! Variables: `run_id`, `file_number` (seven digits, zero-padded, from 1) and `now` (the run's
//! start time, UTC). Filters: `format:'<Joda-Time pattern>'` and `next_day`.

use crate::joda;
use chrono::{DateTime, Utc};
use minijinja::{Environment, UndefinedBehavior, Value};
use std::collections::BTreeMap;

/// The variables a template may use.
pub const VARIABLES: &[&str] = &["run_id", "file_number", "now"];

/// A parsed filename template, ready to render.
#[derive(Debug, Clone)]
pub struct FilenameTemplate {
    /// The template in minijinja syntax.
    jinja: String,
}

/// Values for one rendering of a template.
#[derive(Debug, Clone)]
pub struct TemplateValues<'a> {
    /// The run id.
    pub run_id: &'a str,
    /// The file number, from 1; `None` renders `{{file_number}}` as an empty string (the
    /// success marker's name).
    pub file_number: Option<u64>,
    /// The run's start time.
    pub now: DateTime<Utc>,
}

impl FilenameTemplate {
    /// Parses `source`, checking its syntax and that it uses only known variables and filters.
    pub fn parse(source: &str) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("the filename template is empty; give a name such as \
                        'export-{{run_id}}-{{file_number}}.csv'"
                .to_owned());
        }
        let jinja = colon_filters_to_calls(source);
        let env = environment();
        let template = env
            .template_from_str(&jinja)
            .map_err(|error| format!("the filename template does not parse: {error}"))?;
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|name| !VARIABLES.contains(&name.as_str()))
            .collect();
        unknown.sort();
        if !unknown.is_empty() {
            return Err(format!(
                "the filename template uses unknown variable(s) {}; known variables are {}",
                unknown.join(", "),
                VARIABLES.join(", ")
            ));
        }
        Ok(Self { jinja })
    }

    /// Renders the template.
    pub fn render(&self, values: &TemplateValues<'_>) -> Result<String, String> {
        let mut context = BTreeMap::new();
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
        context.insert("now", Value::from(values.now.to_rfc3339()));
        environment()
            .render_str(&self.jinja, context)
            .map_err(|error| format!("the filename template failed to render: {error:#}"))
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("format", format_filter);
    env.add_filter("next_day", next_day_filter);
    env.add_filter(
        "local",
        |_: String, _: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                "the 'local' time zone filter is not supported yet; times are UTC",
            ))
        },
    );
    env
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, minijinja::Error> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("{value:?} is not a time; date filters apply to {{{{now}}}}"),
            )
        })
}

fn format_filter(value: String, pattern: String) -> Result<String, minijinja::Error> {
    let time = parse_time(&value)?;
    let format = joda::to_chrono_format(&pattern)
        .map_err(|error| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, error))?;
    Ok(time.format(&format).to_string())
}

fn next_day_filter(value: String) -> Result<String, minijinja::Error> {
    Ok((parse_time(&value)? + chrono::Duration::days(1)).to_rfc3339())
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
    use chrono::TimeZone;

    fn values(file_number: Option<u64>) -> TemplateValues<'static> {
        TemplateValues {
            run_id: "run-1",
            file_number,
            now: Utc.with_ymd_and_hms(2026, 12, 31, 23, 0, 0).unwrap(),
        }
    }

    #[test]
    fn renders_variables_and_filters() {
        let template = FilenameTemplate::parse(
            "out/{{now|format:'yyyy-MM-dd'}}/{{run_id}}-{{ file_number }}.csv",
        )
        .unwrap();
        assert_eq!(
            template.render(&values(Some(12))).unwrap(),
            "out/2026-12-31/run-1-0000012.csv"
        );
        assert_eq!(
            template.render(&values(None)).unwrap(),
            "out/2026-12-31/run-1-.csv"
        );
    }

    #[test]
    fn next_day_rolls_over_the_year() {
        let template = FilenameTemplate::parse("{{now|next_day|format:\"yyyyMMdd\"}}").unwrap();
        assert_eq!(template.render(&values(Some(1))).unwrap(), "20270101");
    }

    #[test]
    fn literal_text_keeps_colons_and_pipes() {
        let template = FilenameTemplate::parse("a|b:c-{{run_id}}").unwrap();
        assert_eq!(template.render(&values(Some(1))).unwrap(), "a|b:c-run-1");
    }

    #[test]
    fn refuses_unknown_variables_syntax_errors_and_bad_patterns() {
        let error = FilenameTemplate::parse("{{campaign}}-{{run_id}}").unwrap_err();
        assert!(error.contains("unknown variable(s) campaign"), "{error}");
        assert!(
            FilenameTemplate::parse("{{run_id")
                .unwrap_err()
                .contains("does not parse")
        );
        assert!(FilenameTemplate::parse("  ").unwrap_err().contains("empty"));
        let bad_pattern = FilenameTemplate::parse("{{now|format:'yyyy-ww'}}").unwrap();
        assert!(
            bad_pattern
                .render(&values(Some(1)))
                .unwrap_err()
                .contains("\"ww\"")
        );
    }
}

//! Joda-Time date patterns, as users write them in filename templates (`yyyy-MM-dd`,
//! `yyyyMMdd'T'HHmmss`), translated to `chrono` format strings.
//!
//! Letters are pattern fields, text in single quotes is literal (`''` is a quote), anything else
//! is copied. Joda's `Y` is the year of era (not the week-year of `java.text`), so `YYYY` and
//! `yyyy` both give the calendar year.

/// Translates a Joda-Time pattern into a `chrono` `strftime` format, or says which part of the
/// pattern is not supported.
pub fn to_chrono_format(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // A quoted literal, or `''` for one quote.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => return Err(format!("unclosed quote in date pattern {pattern:?}")),
                    Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                        out.push('\'');
                        j += 2;
                    }
                    Some('\'') => break,
                    Some(&literal) => {
                        push_literal(&mut out, literal);
                        j += 1;
                    }
                }
            }
            i = j + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            push_literal(&mut out, c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        let field = match (c, run) {
            ('y' | 'Y', 2) => "%y",
            ('y' | 'Y', _) => "%Y",
            ('M', 1) => "%-m",
            ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', 1) => "%-d",
            ('d', _) => "%d",
            ('D', _) => "%j",
            ('H', 1) => "%-H",
            ('H', _) => "%H",
            ('h', 1) => "%-I",
            ('h', _) => "%I",
            ('m', 1) => "%-M",
            ('m', _) => "%M",
            ('s', 1) => "%-S",
            ('s', _) => "%S",
            ('S', 3) => "%3f",
            ('S', 6) => "%6f",
            ('S', 9) => "%9f",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('a', _) => "%p",
            ('Z', 1) => "%z",
            ('Z', _) => "%:z",
            _ => {
                return Err(format!(
                    "date pattern field {:?} is not supported; use yyyy, MM, dd, HH, mm, ss, SSS \
                     and text in single quotes",
                    c.to_string().repeat(run)
                ));
            }
        };
        out.push_str(field);
        i += run;
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::to_chrono_format;
    use chrono::{TimeZone, Utc};

    fn render(pattern: &str) -> String {
        let time =
            Utc.with_ymd_and_hms(2026, 3, 7, 9, 5, 2).unwrap() + chrono::Duration::milliseconds(45);
        time.format(&to_chrono_format(pattern).unwrap()).to_string()
    }

    #[test]
    fn translates_common_patterns() {
        assert_eq!(render("yyyy-MM-dd"), "2026-03-07");
        assert_eq!(render("YYYYMMdd"), "20260307");
        assert_eq!(
            render("yyyy-MM-dd'T'HH:mm:ss.SSS"),
            "2026-03-07T09:05:02.045"
        );
        assert_eq!(render("yy/M/d H:m:s"), "26/3/7 9:5:2");
        assert_eq!(render("'week'' 100%'"), "week' 100%");
        assert_eq!(render("dd MMM yyyy"), "07 Mar 2026");
    }

    #[test]
    fn refuses_unknown_fields_and_open_quotes() {
        assert!(to_chrono_format("yyyy-ww").unwrap_err().contains("\"ww\""));
        assert!(
            to_chrono_format("'open")
                .unwrap_err()
                .contains("unclosed quote")
        );
    }
}

//! Delimited text (CSV, TSV, PSV, a custom delimiter), written field by field.
//!
//! Values are formatted by Arrow's own `ArrayFormatter` (the formatter `arrow-csv` uses, so
//! dates, timestamps and decimals read the same); quoting and escaping are done here because
//! the product's options go beyond what `arrow-csv` and the `csv` crate offer: quote every
//! non-null field, write nulls and empty strings as distinct literals, and escape with a
//! character instead of doubling quotes. Every rule is the one Python's `csv` module applies for
//! the matching dialect.

use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{ArrowError, DataType, Schema};
use std::fmt::Write as _;

/// The quote character of every delimited format.
pub const QUOTE: u8 = b'"';

/// Which fields are enclosed in quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuoteMode {
    /// Every field, nulls included (Python's `QUOTE_ALL`).
    All,
    /// Every field except nulls (Python's `QUOTE_NOTNULL`).
    NonNull,
    /// Fields holding the delimiter, the quote, the escape character, CR or LF (RFC 4180,
    /// Python's `QUOTE_MINIMAL`).
    #[default]
    SpecialCharacters,
    /// Every field that is not a number; nulls are quoted (Python's `QUOTE_NONNUMERIC`).
    NonNumeric,
    /// No field (Python's `QUOTE_NONE`): the escape character, if any, escapes the delimiter,
    /// the quote, CR, LF and itself.
    None,
}

/// The end of every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineEnding {
    /// `\n`.
    #[default]
    Lf,
    /// `\r\n`.
    CrLf,
}

impl LineEnding {
    /// The bytes that end a row.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Self::Lf => b"\n",
            Self::CrLf => b"\r\n",
        }
    }
}

/// Every option of delimited output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelimitedOptions {
    /// The delimiter byte.
    pub delimiter: u8,
    /// Write a header row with the column names.
    pub header: bool,
    /// Which fields are quoted.
    pub quote_mode: QuoteMode,
    /// The escape character; `None`: quotes are doubled.
    pub escape: Option<u8>,
    /// What a null goes out as, verbatim; `None`: an empty field, quoted as the mode says.
    pub null_value: Option<String>,
    /// What an empty string goes out as, verbatim; `None`: an empty field, quoted as the mode
    /// says.
    pub empty_value: Option<String>,
    /// The end of every row.
    pub line_ending: LineEnding,
}

impl DelimitedOptions {
    /// RFC 4180 defaults with the given delimiter: header, minimal quoting, doubled quotes, LF.
    pub fn with_delimiter(delimiter: u8) -> Self {
        Self {
            delimiter,
            header: true,
            quote_mode: QuoteMode::SpecialCharacters,
            escape: None,
            null_value: None,
            empty_value: None,
            line_ending: LineEnding::Lf,
        }
    }

    /// Writes the header row: the column names, quoted as strings are.
    pub fn write_header(&self, schema: &Schema, out: &mut Vec<u8>) {
        let single = schema.fields().len() == 1;
        for (index, field) in schema.fields().iter().enumerate() {
            if index > 0 {
                out.push(self.delimiter);
            }
            self.write_text(field.name(), false, single, out);
        }
        out.extend_from_slice(self.line_ending.bytes());
    }

    /// Writes every row of `batch`.
    pub fn write_batch(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ArrowError> {
        let options = FormatOptions::default();
        let columns: Vec<Column<'_>> = batch
            .columns()
            .iter()
            .map(|array| {
                Ok(Column {
                    formatter: ArrayFormatter::try_new(array.as_ref(), &options)?,
                    nulls: array.logical_nulls(),
                    numeric: is_numeric(array.data_type()),
                })
            })
            .collect::<Result<_, ArrowError>>()?;
        let single = columns.len() == 1;
        let mut text = String::with_capacity(64);
        for row in 0..batch.num_rows() {
            for (index, column) in columns.iter().enumerate() {
                if index > 0 {
                    out.push(self.delimiter);
                }
                if column
                    .nulls
                    .as_ref()
                    .is_some_and(|nulls| nulls.is_null(row))
                {
                    self.write_null(single, out);
                    continue;
                }
                text.clear();
                write!(text, "{}", column.formatter.value(row)).map_err(|_| {
                    ArrowError::CsvError(format!("formatting row {row}, column {index}"))
                })?;
                match &self.empty_value {
                    Some(literal) if text.is_empty() => out.extend_from_slice(literal.as_bytes()),
                    _ => self.write_text(&text, column.numeric, single, out),
                }
            }
            out.extend_from_slice(self.line_ending.bytes());
        }
        Ok(())
    }

    fn write_null(&self, single: bool, out: &mut Vec<u8>) {
        if let Some(literal) = &self.null_value {
            out.extend_from_slice(literal.as_bytes());
            return;
        }
        // An empty row would read as no row at all: a lone empty field is quoted.
        let quoted = match self.quote_mode {
            QuoteMode::All | QuoteMode::NonNumeric => true,
            QuoteMode::SpecialCharacters => single,
            QuoteMode::NonNull | QuoteMode::None => false,
        };
        if quoted {
            out.extend_from_slice(&[QUOTE, QUOTE]);
        }
    }

    fn write_text(&self, text: &str, numeric: bool, single: bool, out: &mut Vec<u8>) {
        let quoted = match self.quote_mode {
            QuoteMode::All | QuoteMode::NonNull => true,
            QuoteMode::NonNumeric => !numeric,
            QuoteMode::SpecialCharacters => {
                (single && text.is_empty()) || text.bytes().any(|b| self.is_special(b))
            }
            QuoteMode::None => false,
        };
        if quoted {
            out.push(QUOTE);
            for byte in text.bytes() {
                if byte == QUOTE || Some(byte) == self.escape {
                    out.push(self.escape.unwrap_or(QUOTE));
                }
                out.push(byte);
            }
            out.push(QUOTE);
        } else if let Some(escape) = self.escape.filter(|_| self.quote_mode == QuoteMode::None) {
            for byte in text.bytes() {
                if self.is_special(byte) {
                    out.push(escape);
                }
                out.push(byte);
            }
        } else {
            out.extend_from_slice(text.as_bytes());
        }
    }

    fn is_special(&self, byte: u8) -> bool {
        byte == self.delimiter
            || byte == QUOTE
            || byte == b'\n'
            || byte == b'\r'
            || Some(byte) == self.escape
    }
}

struct Column<'a> {
    formatter: ArrayFormatter<'a>,
    nulls: Option<arrow_buffer::NullBuffer>,
    numeric: bool,
}

/// Numbers go out bare under [`QuoteMode::NonNumeric`].
fn is_numeric(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, value) => is_numeric(value),
        other => other.is_numeric(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Decimal128Array, Int64Array, StringArray};
    use arrow_schema::Field;
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
            ),
            (
                "text",
                Arc::new(StringArray::from(vec![Some("a,\"b\"\\"), Some(""), None])),
            ),
            (
                "price",
                Arc::new(
                    Decimal128Array::from(vec![Some(1234), Some(-5), None])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
            ),
        ])
        .unwrap()
    }

    fn write(options: &DelimitedOptions) -> String {
        let batch = batch();
        let mut out = Vec::new();
        options.write_header(&batch.schema(), &mut out);
        options.write_batch(&batch, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn with(mode: QuoteMode, escape: Option<u8>) -> DelimitedOptions {
        DelimitedOptions {
            quote_mode: mode,
            escape,
            ..DelimitedOptions::with_delimiter(b',')
        }
    }

    #[test]
    fn each_quote_mode_quotes_what_it_says() {
        assert_eq!(
            write(&with(QuoteMode::SpecialCharacters, None)),
            "id,text,price\n1,\"a,\"\"b\"\"\\\",12.34\n,,-0.05\n3,,\n"
        );
        assert_eq!(
            write(&with(QuoteMode::All, None)),
            "\"id\",\"text\",\"price\"\n\"1\",\"a,\"\"b\"\"\\\",\"12.34\"\n\"\",\"\",\"-0.05\"\n\
             \"3\",\"\",\"\"\n"
        );
        assert_eq!(
            write(&with(QuoteMode::NonNull, None)),
            "\"id\",\"text\",\"price\"\n\"1\",\"a,\"\"b\"\"\\\",\"12.34\"\n,\"\",\"-0.05\"\n\
             \"3\",,\n"
        );
        assert_eq!(
            write(&with(QuoteMode::NonNumeric, None)),
            "\"id\",\"text\",\"price\"\n1,\"a,\"\"b\"\"\\\",12.34\n\"\",\"\",-0.05\n3,\"\",\"\"\n"
        );
        assert_eq!(
            write(&with(QuoteMode::None, None)),
            "id,text,price\n1,a,\"b\"\\,12.34\n,,-0.05\n3,,\n"
        );
    }

    #[test]
    fn an_escape_character_escapes_quotes_and_itself_or_every_special_character_unquoted() {
        assert_eq!(
            write(&with(QuoteMode::SpecialCharacters, Some(b'\\'))),
            "id,text,price\n1,\"a,\\\"b\\\"\\\\\",12.34\n,,-0.05\n3,,\n"
        );
        assert_eq!(
            write(&with(QuoteMode::None, Some(b'\\'))),
            "id,text,price\n1,a\\,\\\"b\\\"\\\\,12.34\n,,-0.05\n3,,\n"
        );
    }

    #[test]
    fn null_and_empty_literals_keep_them_apart_and_crlf_ends_rows() {
        let options = DelimitedOptions {
            null_value: Some("NULL".into()),
            empty_value: Some("\"\"".into()),
            line_ending: LineEnding::CrLf,
            header: false,
            ..DelimitedOptions::with_delimiter(b'|')
        };
        let batch = batch();
        let mut out = Vec::new();
        options.write_batch(&batch, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1|\"a,\"\"b\"\"\\\"|12.34\r\nNULL|\"\"|-0.05\r\n3|NULL|NULL\r\n"
        );
    }

    #[test]
    fn a_lone_empty_field_is_quoted_so_the_row_is_not_blank() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![Some(""), None, Some("x")]))],
        )
        .unwrap();
        let mut out = Vec::new();
        DelimitedOptions::with_delimiter(b',')
            .write_batch(&batch, &mut out)
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "\"\"\n\"\"\nx\n");
    }
}

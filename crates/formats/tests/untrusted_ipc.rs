//! The boundary between clients' Arrow IPC and Arrow's decoder: valid messages with bytes of
//! their header or body changed must be refused by `check_message`, or decode (to a batch or
//! an error) without reading outside their body; any other panic of the decoder is caught by
//! the boundary it runs behind. Proptest prints a failing case and keeps it under
//! `proptest-regressions/`; `PROPTEST_CASES` raises the count.

use arrow_array::builder::{ListBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::Buffer;
use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow_schema::{DataType, Field, Schema};
use filedrop_formats::untrusted::{IpcLimits, check_message};
use proptest::prelude::*;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

const LIMITS: IpcLimits = IpcLimits {
    max_columns: 1000,
    max_batch_rows: 1 << 20,
};

fn sample() -> RecordBatch {
    let mut list = ListBuilder::new(arrow_array::builder::Int64Builder::new());
    for row in 0..40i64 {
        if row % 7 == 3 {
            list.append_null();
        } else {
            list.values().append_slice(&[row, row * 2]);
            list.append(true);
        }
    }
    let mut dictionary = StringDictionaryBuilder::<Int32Type>::new();
    for row in 0..40 {
        dictionary.append_value(["red", "green", "blue"][row % 3]);
    }
    let strings: StringArray = (0..40)
        .map(|row| (row % 5 != 0).then(|| format!("value, \"{row}\"\n")))
        .collect();
    let inner: ArrayRef = Arc::new(Int64Array::from_iter_values(0..40));
    let structs = StructArray::from(vec![(
        Arc::new(Field::new("inner", DataType::Int64, false)),
        inner,
    )]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter(
            (0..40).map(|row| (row % 4 != 1).then_some(row)),
        )),
        Arc::new(strings),
        Arc::new(BooleanArray::from_iter(
            (0..40).map(|row| Some(row % 2 == 0)),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter_values(0..40)),
        Arc::new(list.finish()),
        Arc::new(dictionary.finish()),
        Arc::new(structs),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(index, column)| Field::new(format!("c{index}"), column.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// One IPC message: its header (a flatbuffer) and its body.
type IpcMessage = (Vec<u8>, Vec<u8>);

/// The schema message's header, and the dictionary messages and the batch message of `batch`.
fn encoded(batch: &RecordBatch) -> (Vec<u8>, Vec<IpcMessage>) {
    let generator = IpcDataGenerator::default();
    let options = IpcWriteOptions::default();
    let mut tracker = DictionaryTracker::new(false);
    let schema = generator.schema_to_bytes_with_dictionary_tracker(
        batch.schema().as_ref(),
        &mut tracker,
        &options,
    );
    let (dictionaries, batch) = generator
        .encode(
            batch,
            &mut tracker,
            &options,
            &mut IpcWriteContext::default(),
        )
        .unwrap();
    let mut messages: Vec<IpcMessage> = dictionaries
        .into_iter()
        .map(|d| (d.ipc_message, d.arrow_data))
        .collect();
    messages.push((batch.ipc_message, batch.arrow_data));
    (schema.ipc_message, messages)
}

/// Decodes dictionary and batch messages against `schema` as a Flight server would.
fn decode(schema: &Arc<Schema>, messages: &[IpcMessage]) -> Result<(), String> {
    let mut dictionaries = HashMap::new();
    for (header, body) in messages {
        let message = arrow_ipc::root_as_message(header).map_err(|e| e.to_string())?;
        let body = Buffer::from(body.clone());
        if let Some(dictionary) = message.header_as_dictionary_batch() {
            arrow_ipc::reader::read_dictionary(
                &body,
                dictionary,
                schema,
                &mut dictionaries,
                &message.version(),
            )
            .map_err(|e| e.to_string())?;
        } else if let Some(batch) = message.header_as_record_batch() {
            let batch = arrow_ipc::reader::read_record_batch(
                &body,
                batch,
                schema.clone(),
                &dictionaries,
                None,
                &message.version(),
            )
            .map_err(|e| e.to_string())?;
            // What the ingest does next with a batch: slice it and write it out again.
            let mut writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), schema)
                .map_err(|e| e.to_string())?;
            writer
                .write(&batch.slice(0, batch.num_rows().min(3)))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[test]
fn unchanged_messages_pass_the_checks_and_decode() {
    let batch = sample();
    let (schema, messages) = encoded(&batch);
    check_message(&schema, 0, &LIMITS).unwrap();
    for (header, body) in &messages {
        check_message(header, body.len(), &LIMITS).unwrap();
    }
    decode(&batch.schema(), &messages).unwrap();
}

#[test]
fn a_buffer_past_the_body_and_huge_row_counts_are_refused() {
    let batch = sample();
    let (_, messages) = encoded(&batch);
    let (header, body) = messages.last().unwrap();
    let short = &body[..body.len() / 2];
    let problem = check_message(header, short.len(), &LIMITS).unwrap_err();
    assert!(
        problem.to_string().contains("is not inside the"),
        "{problem}"
    );
    let tight = IpcLimits {
        max_batch_rows: 10,
        ..LIMITS
    };
    let problem = check_message(header, body.len(), &tight).unwrap_err();
    assert!(
        problem.to_string().contains("declares 40 rows"),
        "{problem}"
    );
    let narrow = IpcLimits {
        max_columns: 5,
        ..LIMITS
    };
    let (schema, _) = encoded(&batch);
    assert!(check_message(&schema, 0, &narrow).is_err());
    assert!(check_message(b"not flatbuffers at all", 0, &LIMITS).is_err());
}

#[test]
fn a_value_larger_than_the_limit_is_refused_naming_its_column() {
    use filedrop_formats::untrusted::check_values;
    let batch = sample();
    // The longest value of the sample: a string of `value, "NN"\n`.
    check_values(&batch, 64).unwrap();
    let problem = check_values(&batch, 11).unwrap_err();
    assert!(
        problem.to_string().contains("column \"c1\" is 12 bytes"),
        "{problem}"
    );

    // Nested ones count: strings in a list, in a struct, behind a dictionary.
    let mut list = ListBuilder::new(arrow_array::builder::StringBuilder::new());
    list.values().append_value("x".repeat(100));
    list.append(true);
    let mut dictionary = StringDictionaryBuilder::<Int32Type>::new();
    dictionary.append_value("y".repeat(200));
    let strings: ArrayRef = Arc::new(StringArray::from(vec!["z".repeat(300)]));
    let structs = StructArray::from(vec![(
        Arc::new(Field::new("inner", DataType::Utf8, false)),
        strings,
    )]);
    for (column, bytes) in [
        (Arc::new(list.finish()) as ArrayRef, 100),
        (Arc::new(dictionary.finish()) as ArrayRef, 200),
        (Arc::new(structs) as ArrayRef, 300),
    ] {
        let batch = RecordBatch::try_from_iter([("nested", column)]).unwrap();
        check_values(&batch, bytes).unwrap();
        let problem = check_values(&batch, bytes - 1).unwrap_err();
        assert!(
            problem.to_string().contains(&format!("is {bytes} bytes")),
            "{problem}"
        );
    }
}

/// One change to one message: bytes overwritten in its header or body, or its body cut.
#[derive(Debug, Clone)]
enum Mutation {
    Header {
        at: usize,
        bytes: Vec<u8>,
    },
    Body {
        at: usize,
        bytes: Vec<u8>,
    },
    Truncate {
        keep: usize,
    },
    /// A little-endian i64 written over the header at `at`: lengths and offsets are i64s.
    HeaderNumber {
        at: usize,
        value: i64,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..4))
            .prop_map(|(at, bytes)| Mutation::Header { at, bytes }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..4))
            .prop_map(|(at, bytes)| Mutation::Body { at, bytes }),
        any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        (
            any::<usize>(),
            prop_oneof![
                any::<i64>(),
                Just(-1i64),
                Just(i64::MAX),
                (0i64..1 << 40),
                (0i64..4096)
            ]
        )
            .prop_map(|(at, value)| Mutation::HeaderNumber { at, value }),
    ]
}

fn apply(message: &mut IpcMessage, mutation: &Mutation) {
    let (header, body) = message;
    let overwrite = |target: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        if target.is_empty() {
            return;
        }
        let at = at % target.len();
        for (offset, byte) in bytes.iter().enumerate() {
            if let Some(slot) = target.get_mut(at + offset) {
                *slot = *byte;
            }
        }
    };
    match mutation {
        Mutation::Header { at, bytes } => overwrite(header, *at, bytes),
        Mutation::Body { at, bytes } => overwrite(body, *at, bytes),
        Mutation::Truncate { keep } => {
            let keep = keep % (body.len() + 1);
            body.truncate(keep);
        }
        Mutation::HeaderNumber { at, value } => overwrite(header, *at, &value.to_le_bytes()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn changed_messages_are_refused_or_decode_without_a_panic(
        target in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..3),
    ) {
        let batch = sample();
        let (_, mut messages) = encoded(&batch);
        let target = target % messages.len();
        for mutation in &mutations {
            apply(&mut messages[target], mutation);
        }
        let checked = messages
            .iter()
            .all(|(header, body)| check_message(header, body.len(), &LIMITS).is_ok());
        if checked {
            let schema = batch.schema();
            let outcome = catch_unwind(AssertUnwindSafe(|| decode(&schema, &messages)));
            // The checks stop every read outside the body. What else the decoder asserts (a
            // buffer whose length does not fit its type) is caught by the panic boundary the
            // ingest decodes behind, as `catch_unwind` catches it here.
            if let Err(panic) = outcome {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                    .unwrap_or_default();
                prop_assert!(
                    !message.contains("cannot exceed the existing length"),
                    "a checked message was read outside its body: {mutations:?}"
                );
            }
        }
    }

    #[test]
    fn changed_schemas_are_refused_or_read_without_a_panic(
        mutations in proptest::collection::vec(mutation(), 1..3),
    ) {
        let batch = sample();
        let (schema, _) = encoded(&batch);
        let mut message = (schema, Vec::new());
        for mutation in &mutations {
            apply(&mut message, mutation);
        }
        if check_message(&message.0, 0, &LIMITS).is_ok() {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let parsed = arrow_ipc::root_as_message(&message.0).unwrap();
                parsed.header_as_schema().map(arrow_ipc::convert::try_fb_to_schema)
            }));
            prop_assert!(outcome.is_ok(), "reading a checked schema panicked: {mutations:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_check(
        header in proptest::collection::vec(any::<u8>(), 0..256),
        body_len in 0usize..1 << 20,
    ) {
        let _ = check_message(&header, body_len, &LIMITS);
    }
}

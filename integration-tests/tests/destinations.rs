//! Stored destinations through the real control plane: created, read, listed, updated and
//! deleted, validated as exports are, holding no secret, and named by exports (with their own
//! variables) and by connection tests — each tenant its own; a Flight SQL bulk ingest names one
//! by its table.

use arrow_flight::sql::CommandStatementIngest;
use filedrop_integration_tests::services::Moto;
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::v1::{
    CreateDestinationRequest, DeleteDestinationRequest, ExportRequest, FileFormat,
    GetDestinationRequest, ListDestinationsRequest, ListRunsRequest, RunState,
    TestConnectionRequest, UpdateDestinationRequest,
};
use std::time::Duration;
use tonic::Code;

const BUCKET: &str = "stored-destinations";
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_destination_is_kept_validated_named_by_exports_and_deleted() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let api = stack.api();
    let mut service = client::destinations(&api).await;
    let key = client::store_moto_key(&api, &moto).await;
    let mut settings = client::with_credential(
        client::request_to(&moto, BUCKET, "crm/", FileFormat::Csv),
        &key.credential_id,
    );
    settings.filename_template = "{{destination}}-{{campaign}}.csv".into();
    settings
        .variables
        .insert("campaign".into(), "default".into());
    let create = |name: &str, settings: &ExportRequest| CreateDestinationRequest {
        name: name.into(),
        settings: Some(settings.clone()),
    };

    // Created, and read back by name or id.
    let created = service
        .create_destination(create("crm-daily", &settings))
        .await
        .expect("CreateDestination")
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(created.name, "crm-daily");
    let stored = created.settings.as_ref().unwrap();
    assert_eq!(stored.destination.as_ref().unwrap().name, "crm-daily");
    for name_or_id in ["crm-daily", created.destination_id.as_str()] {
        let read = service
            .get_destination(GetDestinationRequest {
                destination: name_or_id.into(),
            })
            .await
            .expect("GetDestination")
            .into_inner()
            .destination
            .unwrap();
        assert_eq!(read, created);
    }

    // Refused, each naming its field: a taken name, a bad name, an inline secret, a bad
    // bucket, a credential that does not exist, a template variable without a default.
    let status = service
        .create_destination(create("crm-daily", &settings))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let mut inline = client::request_to(&moto, BUCKET, "crm/", FileFormat::Csv);
    inline.filename_template = "x.csv".into();
    let mut bad_bucket = settings.clone();
    bad_bucket.destination.as_mut().unwrap().bucket = "Not_A_Bucket".into();
    let mut unknown_credential = settings.clone();
    unknown_credential
        .destination
        .as_mut()
        .unwrap()
        .credential_id = "no-such".into();
    let mut no_default = settings.clone();
    no_default.variables.clear();
    for (name, settings, field) in [
        ("bad name", &settings, "name"),
        ("inline", &inline, "settings.destination.access_key"),
        ("bad-bucket", &bad_bucket, "settings.destination.bucket"),
        (
            "unknown",
            &unknown_credential,
            "settings.destination.credential_id",
        ),
        ("no-default", &no_default, "settings.filename_template"),
    ] {
        let status = service
            .create_destination(create(name, settings))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        assert!(status.message().starts_with(field), "{name}: {status:?}");
    }

    // Listed by name, a page at a time.
    service
        .create_destination(create("ads", &settings))
        .await
        .expect("CreateDestination");
    let first = service
        .list_destinations(ListDestinationsRequest {
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.destinations[0].name, "ads");
    let last = service
        .list_destinations(ListDestinationsRequest {
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(last.destinations[0].name, "crm-daily");
    assert!(last.next_page_token.is_empty());

    // Named by an export, whose variables go over the defaults, and by a connection test.
    let export = ExportRequest {
        stored_destination: "crm-daily".into(),
        variables: [("campaign".to_owned(), "spring".to_owned())].into(),
        ..Default::default()
    };
    let run = client::export_to_end(&api, &export, data::table(1_000, 500), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let keys: Vec<String> = s3::list(&s3, BUCKET, "crm/")
        .await
        .into_iter()
        .map(|object| object.key)
        .collect();
    assert!(
        keys.contains(&"crm/crm-daily-spring.csv".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&client::manifest_key(
            "crm/",
            &created.destination_id,
            &run.run_id
        )),
        "the manifest is named after the stored destination's id: {keys:?}"
    );
    let listed = client::list_runs(
        &api,
        ListRunsRequest {
            destination_name: "crm-daily".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(listed.runs.len(), 1);
    let tested = service
        .test_connection(TestConnectionRequest {
            stored_destination: "crm-daily".into(),
            ..Default::default()
        })
        .await
        .expect("TestConnection")
        .into_inner();
    assert!(tested.ok, "{tested:?}");
    let mut overriding = export.clone();
    overriding.format = FileFormat::Parquet.into();
    let status = client::export(&api, &overriding, data::table(10, 10))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("stored_destination"),
        "{status:?}"
    );

    // Updated: renamed and moved.
    let mut weekly = settings.clone();
    weekly.destination.as_mut().unwrap().prefix = "weekly/".into();
    let updated = service
        .update_destination(UpdateDestinationRequest {
            destination: "crm-daily".into(),
            name: "crm-weekly".into(),
            settings: Some(weekly.clone()),
        })
        .await
        .expect("UpdateDestination")
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(updated.destination_id, created.destination_id);
    assert_eq!(
        updated.settings.unwrap().destination.unwrap().prefix,
        "weekly/"
    );
    let status = service
        .get_destination(GetDestinationRequest {
            destination: "crm-daily".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = service
        .update_destination(UpdateDestinationRequest {
            destination: "crm-weekly".into(),
            name: "ads".into(),
            settings: Some(weekly),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

    // Another tenant has none of them.
    let other = api.with_token(&stack.create_token("tenant-b"));
    let status = client::destinations(&other)
        .await
        .get_destination(GetDestinationRequest {
            destination: "crm-weekly".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let to_theirs = ExportRequest {
        stored_destination: "crm-weekly".into(),
        ..Default::default()
    };
    let status = client::export(&other, &to_theirs, data::table(10, 10))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // Deleted: gone, and exports naming it are refused.
    service
        .delete_destination(DeleteDestinationRequest {
            destination: "crm-weekly".into(),
        })
        .await
        .expect("DeleteDestination");
    let status = service
        .delete_destination(DeleteDestinationRequest {
            destination: "crm-weekly".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = client::export(&api, &to_theirs, data::table(10, 10))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flight_sql_ingest_exports_to_the_stored_destination_its_table_names() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let api = stack.api();
    let key = client::store_moto_key(&api, &moto).await;
    let mut settings = client::with_credential(
        client::request_to(&moto, BUCKET, "ingest/", FileFormat::Csv),
        &key.credential_id,
    );
    settings.filename_template = "{{campaign}}/{{run_id}}.csv".into();
    settings
        .variables
        .insert("campaign".into(), "default".into());
    client::destinations(&api)
        .await
        .create_destination(CreateDestinationRequest {
            name: "campaigns".into(),
            settings: Some(settings),
        })
        .await
        .expect("CreateDestination");

    // The table names the destination; the options are template variables over its defaults.
    let mut command = CommandStatementIngest {
        table: "campaigns".into(),
        ..Default::default()
    };
    let defaults = client::sql_ingest(&api, &command, data::table(1_000, 500))
        .await
        .expect("the ingest is accepted");
    command.options.insert("campaign".into(), "spring".into());
    let spring = client::sql_ingest(&api, &command, data::table(2_000, 500))
        .await
        .expect("the ingest is accepted");
    assert_eq!((defaults.record_count, spring.record_count), (1_000, 2_000));
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    for (ingested, folder, rows) in [(&defaults, "default", 1_000), (&spring, "spring", 2_000)] {
        let run = client::run_to_end(&api, &ingested.run_id, RUN_TIMEOUT).await;
        assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
        assert_eq!(run.rows, rows);
        let key = format!("ingest/{folder}/{}.csv", ingested.run_id);
        assert_eq!(data::csv_rows(s3::get(&s3, BUCKET, &key).await), rows);
    }

    // What a database would make of the rest is refused, naming the field.
    for (field, command) in [
        (
            "CommandStatementIngest.table",
            CommandStatementIngest::default(),
        ),
        (
            "CommandStatementIngest.catalog",
            CommandStatementIngest {
                table: "campaigns".into(),
                catalog: Some("main".into()),
                ..Default::default()
            },
        ),
        (
            "CommandStatementIngest.temporary",
            CommandStatementIngest {
                table: "campaigns".into(),
                temporary: true,
                ..Default::default()
            },
        ),
    ] {
        let status = client::sql_ingest(&api, &command, data::table(10, 10))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }
    let status = client::sql_ingest(
        &api,
        &CommandStatementIngest {
            table: "no-such-destination".into(),
            ..Default::default()
        },
        data::table(10, 10),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("there is no destination"),
        "{status:?}"
    );
    // Another tenant's destination is not found either.
    let other = api.with_token(&stack.create_token("tenant-b"));
    let status = client::sql_ingest(
        &other,
        &CommandStatementIngest {
            table: "campaigns".into(),
            ..Default::default()
        },
        data::table(10, 10),
    )
    .await
    .unwrap_err();
    assert!(
        status.message().contains("there is no destination"),
        "{status:?}"
    );
}

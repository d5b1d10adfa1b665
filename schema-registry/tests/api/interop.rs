//! schema_registry_converter (a client not written here) against this registry.

use crate::common::TestRegistry;
use apache_avro::types::Value;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{
    get_all_subjects, get_all_versions, post_schema, SrSettings,
};
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

const HEARTBEAT: &str = r#"{"type":"record","name":"Heartbeat","namespace":"test","fields":[{"name":"beat","type":"long"}]}"#;

fn supplied(schema: &str) -> SuppliedSchema {
    SuppliedSchema::new(None, SchemaType::Avro, schema.to_string())
}

#[tokio::test]
async fn the_converter_registers_encodes_and_decodes_through_the_registry() -> anyhow::Result<()> {
    let r = TestRegistry::start().await?;
    let settings = SrSettings::new(r.url.clone());

    let registered = post_schema(
        &settings,
        "heartbeat-value".to_string(),
        supplied(HEARTBEAT),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(registered.id, 1);
    assert_eq!(
        get_all_subjects(&settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        vec!["heartbeat-value"]
    );
    assert_eq!(
        get_all_versions(&settings, "heartbeat-value".to_string())
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        vec![1]
    );

    let encoder = AvroEncoder::new(SrSettings::new(r.url.clone()));
    let bytes = encoder
        .encode(
            vec![("beat", Value::Long(42))],
            SubjectNameStrategy::TopicNameStrategy("heartbeat".to_string(), false),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 1], "magic byte and schema id 1");

    let decoder = AvroDecoder::new(SrSettings::new(r.url.clone()));
    let decoded = decoder
        .decode(Some(&bytes))
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(
        decoded.value,
        Value::Record(vec![("beat".to_string(), Value::Long(42))])
    );
    Ok(())
}

//! The JSON Schema of every document, derived from the types.

use schemars::generate::SchemaSettings;

use crate::document::Document;

/// Where the committed schema says it lives (its `$id`).
const SCHEMA_ID: &str = "https://example.invalid/upkg/upkg-output.schema.json";

/// The JSON Schema (draft 2020-12) of every `--json` document of both tools.
pub fn schema() -> serde_json::Value {
    let generator = SchemaSettings::draft2020_12().for_serialize().into_generator();
    let schema = generator.into_root_schema_for::<Document>();
    let mut value = serde_json::to_value(schema).expect("schemas serialize");
    let object = value.as_object_mut().expect("the root schema is an object");
    object.insert("$id".into(), SCHEMA_ID.into());
    object.insert("title".into(), "upkg --json output".into());
    object.insert(
        "description".into(),
        "One document, printed on standard output by every `pkgrun` and `pkgbuild` command run with --json \
         (docs/JSON.md). Generated from the crate upkg-json; do not edit by hand."
            .into(),
    );
    value
}

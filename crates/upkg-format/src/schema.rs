//! JSON Schema descriptions of the types whose JSON form is written by hand
//! (`Serialize` impls), for the tools' output schema (feature `schema`).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::{Codec, Digest, Mode, Version, VersionReq};

impl JsonSchema for Digest {
    fn schema_name() -> Cow<'static, str> {
        "Sha256".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A SHA-256 digest: 64 lowercase hexadecimal digits.",
            "type": "string",
            "pattern": "^[0-9a-f]{64}$"
        })
    }
}

impl JsonSchema for Version {
    fn schema_name() -> Cow<'static, str> {
        "Version".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A version: dot-separated decimal numbers, like 2.1.0 (format-spec/SPEC.md, 4.2).",
            "type": "string",
            "pattern": "^[0-9]+(\\.[0-9]+)*$"
        })
    }
}

impl JsonSchema for VersionReq {
    fn schema_name() -> Cow<'static, str> {
        "VersionRange".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A version range: `*`, or comparisons like `>=2.0, <3` (format-spec/SPEC.md, 4.2).",
            "type": "string",
            "minLength": 1
        })
    }
}

impl JsonSchema for Codec {
    fn schema_name() -> Cow<'static, str> {
        "Codec".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The payload's archive and compression.",
            "type": "string",
            "enum": ["tar+zstd", "tar+gzip", "cab"]
        })
    }
}

impl JsonSchema for Mode {
    fn schema_name() -> Cow<'static, str> {
        "Mode".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Permission bits as four octal digits, like \"0755\".",
            "type": "string",
            "pattern": "^[0-7]{4}$"
        })
    }
}

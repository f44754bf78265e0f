//! The JSON Schema of the tools' `--json` output: the committed
//! `docs/upkg-output.schema.json` is exactly what the types of `upkg-json`
//! describe (regenerate with `UPKG_BLESS_SCHEMA=1 cargo test --test json_schema`),
//! and it is a valid draft 2020-12 schema. Every `--json` document the other tests
//! produce is validated against it by `common::run`.

mod common;

use std::fs;

use upkg_json::{Outcome, Reason};

fn committed_path() -> std::path::PathBuf {
    common::repo_dir().join("docs/upkg-output.schema.json")
}

fn generated() -> String {
    let mut text = serde_json::to_string_pretty(&upkg_json::schema()).expect("the schema serializes");
    text.push('\n');
    text
}

#[test]
fn the_committed_schema_is_the_one_the_types_describe() {
    let generated = generated();
    if std::env::var_os("UPKG_BLESS_SCHEMA").is_some() {
        fs::write(committed_path(), &generated).expect("writing the schema");
        return;
    }
    let committed = fs::read_to_string(committed_path()).expect("docs/upkg-output.schema.json is committed");
    assert!(
        committed == generated,
        "docs/upkg-output.schema.json differs from what upkg-json's types describe: \
         review the change and run `UPKG_BLESS_SCHEMA=1 cargo test --test json_schema`"
    );
}

#[test]
fn the_committed_schema_is_a_valid_draft_2020_12_schema() {
    let schema: serde_json::Value = serde_json::from_str(&fs::read_to_string(committed_path()).unwrap()).unwrap();
    jsonschema::draft202012::meta::validate(&schema).expect("the schema follows the draft 2020-12 meta-schema");
    common::output_schema();
}

#[test]
fn every_outcome_and_its_exit_code_is_in_the_schema() {
    let schema = upkg_json::schema();
    let outcomes = schema["$defs"]["Outcome"].to_string();
    for outcome in Outcome::ALL {
        assert!(outcomes.contains(&format!("\"{}\"", outcome.name())), "{outcome} is missing from the schema");
    }
}

#[test]
fn the_schema_refuses_what_the_tools_never_print() {
    let validator = common::output_schema();
    let good = serde_json::json!({
        "schema_version": 1, "tool": "pkgrun", "command": "licence",
        "data": { "path": null, "text": null },
        "ok": true, "outcome": "success", "exit_code": 0, "error": null
    });
    assert!(validator.is_valid(&good), "{:?}", validator.validate(&good));
    let mut unknown_command = good.clone();
    unknown_command["command"] = "frobnicate".into();
    assert!(!validator.is_valid(&unknown_command));
    let mut unknown_outcome = good.clone();
    unknown_outcome["outcome"] = "fine".into();
    assert!(!validator.is_valid(&unknown_outcome));
    let mut wrong_data = good.clone();
    wrong_data["data"] = serde_json::json!({ "files": [] });
    assert!(!validator.is_valid(&wrong_data), "licence data must be the licence's");
    let mut unknown_reason = good;
    unknown_reason["ok"] = false.into();
    unknown_reason["error"] = serde_json::json!({
        "reason": "it-broke", "class": null, "message": "", "hint": null, "log": null
    });
    assert!(!validator.is_valid(&unknown_reason));
    let _ = Reason::Io;
}

/// Every value of the closed sets the schema knows (outcomes, reasons, commands)
/// is documented in docs/JSON.md.
#[test]
fn docs_json_md_names_every_outcome_reason_and_command() {
    let docs = fs::read_to_string(common::repo_dir().join("docs/JSON.md")).expect("docs/JSON.md");
    let schema = upkg_json::schema();
    let mut missing = Vec::new();
    for definition in ["Outcome", "Reason"] {
        let values = enum_values(&schema["$defs"][definition]);
        assert!(!values.is_empty(), "no values for {definition} in the schema");
        missing.extend(values.into_iter().filter(|v| !docs.contains(&format!("| `{v}` |"))));
    }
    let commands: Vec<String> = schema["oneOf"]
        .as_array()
        .expect("one schema per command")
        .iter()
        .filter_map(|variant| variant["properties"]["command"]["const"].as_str().map(str::to_owned))
        .collect();
    assert!(commands.len() >= 19, "{commands:?}");
    missing.extend(commands.into_iter().filter(|c| !docs.contains(&format!("| `{c}` |"))));
    assert!(missing.is_empty(), "docs/JSON.md does not document: {missing:?}");
}

/// The string values an enumeration's schema allows (`enum`, or `oneOf` of `const`s).
fn enum_values(schema: &serde_json::Value) -> Vec<String> {
    let mut values: Vec<String> =
        schema["enum"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    for variant in schema["oneOf"].as_array().into_iter().flatten() {
        if let Some(value) = variant["const"].as_str() {
            values.push(value.to_owned());
        }
        values.extend(variant["enum"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)));
    }
    values
}

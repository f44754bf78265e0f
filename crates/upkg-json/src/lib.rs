//! The JSON documents `pkgrun` and `pkgbuild` print with `--json`: one interface
//! for scripts and orchestration engines.
//!
//! Every document is one [`Document`]: the schema version, the tool, the
//! command and its data, whether it succeeded, its [`Outcome`] and exit code, and
//! for a failure an [`ErrorReport`] whose [`Reason`] is a stable code beside the
//! message. Everything is built from typed structs, so the JSON Schema derived
//! from them (feature `schema`, [`schema()`]) describes exactly what the tools
//! print; `docs/upkg-output.schema.json` is that schema, committed, and the test
//! suite validates every `--json` output it produces against it.
//!
//! This crate only describes and maps: it never prints, and knows no clap.

mod document;
mod outcome;
mod reason;
#[cfg(feature = "schema")]
mod schema;

pub use document::{
    BuildData, BuildSigner, CheckData, Data, Document, Empty, EntryCounts, ErrorReport, EstimateData, ForgetData,
    InfoData, InstallResult, InstanceCondition, InstanceListing, InstancesData, KeygenData, Licence, LicenceData,
    ListData, LogRef, PackageForm, PackageId, PlanResult, PlaybookOutput, RolloutPlaybookData, SCHEMA_VERSION, Sizes,
    TargetResult, TargetsData,
};
pub use outcome::{Outcome, Tool};
pub use reason::Reason;
#[cfg(feature = "schema")]
pub use schema::schema;

//! The shared harness of the end-to-end tests: a [`TestContext`] that pins the
//! environment and owns a temporary root, helpers that write source trees, build
//! packages with the real `pkgbuild`, run the real `pkgrun`, hash whole trees and
//! make one-defect variants of a good package, and the one snapshot macro,
//! [`upkg_snapshot!`], in the spirit of uv's `uv_snapshot!`.
//!
//! Every command runs with the temporary root as its working directory, so tests
//! pass relative paths and outputs stay short; the only snapshot filters are the
//! temporary root's spellings (digests are never filtered: builds are
//! reproducible, so a changed digest is a regression).
//!
//! Each `tests/*.rs` target includes this module with `mod common;`; the installer
//! tests reuse the same context, builders and mount guard.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;
use upkg_format::{Header, SecretKey};
use upkg_format::{TRAILER_LEN, Trailer};

/// `SOURCE_DATE_EPOCH` of every build unless a test says otherwise: 2023-11-14 22:13:20 UTC.
pub const SOURCE_DATE_EPOCH: u64 = 1_700_000_000;

/// The key id of `tests/data/test.key`, as minisign and pkgrun print it.
pub const TEST_KEY_ID: &str = "408A83A615002445";

/// Where the test context keeps the copy of `tests/data/test.pub` (relative to the root).
pub const TEST_PUB: &str = "keys/test.pub";

/// The fake stub most packages carry: small and fixed, so snapshots do not change
/// when `pkgrun` is rebuilt. It is never meant to run.
pub const FAKE_STUB: &[u8] = b"#!/bin/sh\necho 'upkg test stub: not a real pkgrun' >&2\nexit 1\n";

/// Exit codes of `pkgrun` (pkgrun/outcome.rs) and `pkgbuild` (pkgbuild/main.rs).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// pkgbuild: I/O or unexpected failure.
    pub const FAILURE: i32 = 1;
    /// Bad usage (pkgrun: also a non-empty destination; pkgbuild: bad input or limits).
    pub const USAGE: i32 = 2;
    /// pkgrun: invalid, damaged, tampered, bad signature or unsafe package. pkgbuild: key problem.
    pub const INVALID: i32 = 3;
    /// pkgrun: untrusted signer, or unsigned.
    pub const UNTRUSTED: i32 = 4;
    /// pkgrun: not enough space.
    pub const NO_SPACE: i32 = 5;
    /// pkgrun: unsupported format version.
    pub const UNSUPPORTED: i32 = 6;
}

/// The repository root (where `Cargo.toml` of `upkg-tools` lies).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The published test signing key.
pub fn test_key() -> PathBuf {
    repo_dir().join("tests/data/test.key")
}

/// The published test public key.
pub fn test_pub() -> PathBuf {
    repo_dir().join("tests/data/test.pub")
}

/// The test secret key, loaded (it has no passphrase).
pub fn load_test_key() -> SecretKey {
    let text = fs::read_to_string(test_key()).expect("read tests/data/test.key");
    SecretKey::from_file(&text, None).expect("tests/data/test.key is an unencrypted minisign key")
}

/// The real `pkgbuild` binary.
pub fn pkgbuild_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pkgbuild"))
}

/// The real `pkgrun` binary (also the real stub).
pub fn pkgrun_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pkgrun"))
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The command line, for failure messages.
    pub command: String,
}

impl RunOutput {
    /// The fixed snapshot layout: success, exit code, stdout, stderr.
    pub fn render(&self) -> String {
        format!(
            "success: {}\nexit_code: {}\n----- stdout -----\n{}\n----- stderr -----\n{}",
            self.code == 0,
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    /// Panics with the whole output unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code of `{}`\n{}", self.command, self.render());
        self
    }

    /// Panics unless the command succeeded.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(exit::OK)
    }

    /// Panics unless standard error contains `needle` (case-insensitive).
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr of `{}` does not mention {needle:?}\n{}",
            self.command,
            self.render()
        );
        self
    }

    /// Standard output parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout of `{}` is not JSON: {e}\n{}", self.command, self.render()))
    }

    /// The `data` of the `--json` document on standard output.
    #[track_caller]
    pub fn data(&self) -> serde_json::Value {
        self.json()["data"].clone()
    }
}

/// Runs a command to completion with standard input closed. A `--json` run's
/// output is checked against the committed schema ([`check_json_document`]).
pub fn run(command: &mut Command) -> RunOutput {
    let line = describe(command);
    command.stdin(Stdio::null());
    // An executable a test just wrote can be "busy" (ETXTBSY) for a moment: another
    // test thread's fork may still hold the descriptor it was written through.
    let mut attempts = 0;
    let output = loop {
        match command.output() {
            Err(e) if e.raw_os_error() == Some(26) && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result => break result.unwrap_or_else(|e| panic!("could not start `{line}`: {e}")),
        }
    };
    let output = RunOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        command: line,
    };
    check_json_document(command, &output);
    output
}

/// The committed JSON Schema of every `--json` document (`docs/upkg-output.schema.json`).
pub fn output_schema() -> &'static jsonschema::Validator {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = repo_dir().join("docs/upkg-output.schema.json");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::draft202012::new(&schema)
            .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()))
    })
}

/// Panics unless `output` of a command run with `--json` is one JSON document
/// that the committed schema accepts and that agrees with the process: the same
/// exit code, `ok` exactly for exit codes 0 and 10, and an `error` exactly when
/// not `ok`. A process killed by a signal (the crash tests) printed nothing to check.
pub fn check_json_document(command: &Command, output: &RunOutput) {
    if !command.get_args().any(|a| a == "--json") || output.code == -1 {
        return;
    }
    let document: serde_json::Value = serde_json::from_str(&output.stdout).unwrap_or_else(|e| {
        panic!("`{}` printed no single JSON document on stdout: {e}\n{}", output.command, output.render())
    });
    if let Err(error) = output_schema().validate(&document) {
        let errors: Vec<String> =
            output_schema().iter_errors(&document).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        panic!(
            "the --json document of `{}` does not match docs/upkg-output.schema.json: {error}\n{}\n{}",
            output.command,
            errors.join("\n"),
            output.render()
        );
    }
    assert_eq!(
        document["exit_code"].as_i64(),
        Some(i64::from(output.code)),
        "`{}`: the document's exit_code is not the process's\n{}",
        output.command,
        output.render()
    );
    let ok = matches!(output.code, 0 | 10);
    assert_eq!(document["ok"].as_bool(), Some(ok), "`{}`: `ok` disagrees with the exit code", output.command);
    assert_eq!(
        document["error"].is_null(),
        ok,
        "`{}`: `error` must be null exactly when ok\n{}",
        output.command,
        output.render()
    );
}

/// Runs a command with `input` on its standard input.
pub fn run_with_stdin(command: &mut Command, input: &[u8]) -> RunOutput {
    let line = describe(command);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start `{line}`: {e}"));
    child.stdin.take().expect("piped").write_all(input).expect("write stdin");
    let output = child.wait_with_output().expect("wait for the child");
    let output = RunOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        command: line,
    };
    check_json_document(command, &output);
    output
}

fn describe(command: &Command) -> String {
    let program = Path::new(command.get_program()).file_name().unwrap_or_default().to_string_lossy().into_owned();
    let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    format!("{program} {}", args.join(" "))
}

/// Renders a command's output in the fixed layout, filters the temporary paths
/// and compares it with the snapshot in `tests/snapshots/`. Returns the output.
///
/// `upkg_snapshot!(context, command)` names the snapshot after the test function;
/// `upkg_snapshot!(context, command, "name")` names it explicitly.
#[allow(unused_macros)]
macro_rules! upkg_snapshot {
    ($context:expr, $command:expr) => {{
        let output = $crate::common::run($command);
        $context.settings().bind(|| insta::assert_snapshot!(output.render()));
        output
    }};
    ($context:expr, $command:expr, $name:expr) => {{
        let output = $crate::common::run($command);
        $context.settings().bind(|| insta::assert_snapshot!($name, output.render()));
        output
    }};
}
#[allow(unused_imports)]
pub(crate) use upkg_snapshot;

/// Which key signs a package.
#[derive(Debug, Clone)]
pub enum Signing {
    /// `tests/data/test.key`.
    TestKey,
    /// Another key file.
    Key(PathBuf),
    /// `--unsigned`.
    Unsigned,
}

/// Which stub a package starts with.
#[derive(Debug, Clone)]
pub enum Stub {
    /// The small fixed fake stub ([`FAKE_STUB`]).
    Fake,
    /// The real `pkgrun`: the package runs itself.
    Pkgrun,
    /// `--no-stub`.
    None,
}

/// Options of `pkgbuild build`, defaulting to a zstd package signed by the test key with the fake stub.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--codec`.
    pub codec: &'static str,
    /// The signing key.
    pub signing: Signing,
    /// The stub.
    pub stub: Stub,
    /// `--member-size`.
    pub member_size: Option<u64>,
    /// `--level`.
    pub level: Option<i32>,
    /// `--threads`.
    pub threads: Option<usize>,
    /// `SOURCE_DATE_EPOCH`; `None` leaves it unset.
    pub source_date_epoch: Option<u64>,
    /// `--json`.
    pub json: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            codec: "zstd",
            signing: Signing::TestKey,
            stub: Stub::Fake,
            member_size: None,
            level: None,
            threads: None,
            source_date_epoch: Some(SOURCE_DATE_EPOCH),
            json: false,
        }
    }
}

impl BuildOptions {
    /// Defaults with this codec (`zstd`, `gzip` or `cab`).
    pub fn codec(codec: &'static str) -> Self {
        BuildOptions { codec, ..Self::default() }
    }

    /// With `--member-size`.
    pub fn member_size(mut self, bytes: u64) -> Self {
        self.member_size = Some(bytes);
        self
    }

    /// Signed with `signing`.
    pub fn signing(mut self, signing: Signing) -> Self {
        self.signing = signing;
        self
    }

    /// With `stub`.
    pub fn stub(mut self, stub: Stub) -> Self {
        self.stub = stub;
        self
    }

    /// With `--threads`.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// With `SOURCE_DATE_EPOCH` set to `epoch`, or unset.
    pub fn source_date_epoch(mut self, epoch: Option<u64>) -> Self {
        self.source_date_epoch = epoch;
        self
    }

    /// With `--level`.
    pub fn level(mut self, level: i32) -> Self {
        self.level = Some(level);
        self
    }

    /// With `--json`.
    pub fn json(mut self) -> Self {
        self.json = true;
        self
    }
}

/// The byte ranges of a package file's parts, as `pkgrun --info --json` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The stub.
    pub stub: (u64, u64),
    /// The payload.
    pub payload: (u64, u64),
    /// The header.
    pub header: (u64, u64),
    /// The signature block.
    pub signature: (u64, u64),
    /// The trailer.
    pub trailer: (u64, u64),
}

impl Layout {
    fn from_json(layout: &serde_json::Value) -> Layout {
        let range = |part: &str| {
            let offset = layout[part]["offset"].as_u64().unwrap_or_else(|| panic!("layout.{part}.offset"));
            let size = layout[part]["size"].as_u64().unwrap_or_else(|| panic!("layout.{part}.size"));
            (offset, offset + size)
        };
        Layout {
            stub: range("stub"),
            payload: range("payload"),
            header: range("header"),
            signature: range("signature"),
            trailer: range("trailer"),
        }
    }
}

/// A temporary root with a pinned environment, in which tests build and run packages.
///
/// The root holds, before a test writes anything: `trusted-keys/` (empty; it is
/// `PKGRUN_TRUSTED_KEYS`, so the machine's `/etc/pkgrun/trusted-keys` never
/// matters), `keys/test.pub` (a copy of the test public key, trusted with
/// `--trust keys/test.pub`) and `stub.sh` (the fake stub). `PKGRUN_REGISTRY`
/// points at `registry/` below the root, and `PKGRUN_FAULT` is removed
/// (tests that want a failpoint set it on their command).
pub struct TestContext {
    temp: TempDir,
    /// The root, canonicalized.
    pub root: PathBuf,
    /// The trusted-keys directory given to pkgrun in `PKGRUN_TRUSTED_KEYS`.
    pub trusted_keys: PathBuf,
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

impl TestContext {
    /// A new empty root.
    pub fn new() -> Self {
        Self::in_dir(&std::env::temp_dir())
    }

    /// A new empty root in memory (`/dev/shm`, a tmpfs, when it is writable): the
    /// fault sweeps copy and remove thousands of trees, which a tmpfs does tens of
    /// times faster than a disk. The filesystem calls they count are the same.
    pub fn in_memory() -> Self {
        let shm = PathBuf::from("/dev/shm");
        let writable = tempfile::Builder::new().prefix("upkg-probe-").tempdir_in(&shm).is_ok();
        Self::in_dir(&if writable { shm } else { std::env::temp_dir() })
    }

    fn in_dir(base: &Path) -> Self {
        let mut temp =
            tempfile::Builder::new().prefix("upkg-test-").tempdir_in(base).expect("create a temporary directory");
        // For debugging a failure: UPKG_KEEP_TEMP=1 keeps the test's files.
        if std::env::var_os("UPKG_KEEP_TEMP").is_some() {
            temp.disable_cleanup(true);
            eprintln!("keeping {}", temp.path().display());
        }
        let root = temp.path().canonicalize().expect("canonicalize the temporary directory");
        let context = TestContext { trusted_keys: root.join("trusted-keys"), root, temp };
        context.mkdir("trusted-keys", 0o755);
        context.mkdir("keys", 0o755);
        fs::copy(test_pub(), context.path(TEST_PUB)).expect("copy test.pub");
        context.write_file("stub.sh", FAKE_STUB, 0o755);
        context
    }

    /// `rel` below the root (an absolute path is returned as is).
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// insta settings with the filters of this context: its temporary root, in every spelling.
    pub fn settings(&self) -> insta::Settings {
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(repo_dir().join("tests/snapshots"));
        settings.set_prepend_module_to_snapshot(true);
        settings.set_omit_expression(true);
        for (pattern, replacement) in self.filters() {
            settings.add_filter(&pattern, replacement);
        }
        settings
    }

    /// Regex filters of the temporary paths, most specific first.
    pub fn filters(&self) -> Vec<(String, String)> {
        let mut spellings = vec![self.root.to_string_lossy().into_owned()];
        let raw = self.temp.path().to_string_lossy().into_owned();
        if !spellings.contains(&raw) {
            spellings.push(raw);
        }
        spellings.into_iter().map(|path| (regex_escape(&path), "[TEMP]".to_owned())).collect()
    }

    // ---- Writing source trees -------------------------------------------------

    /// Creates directory `rel` (and missing parents, mode 0755) with exactly `mode`.
    pub fn mkdir(&self, rel: impl AsRef<Path>, mode: u32) -> PathBuf {
        let path = self.path(rel);
        self.make_parents(&path);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("mkdir {}: {e}", path.display()),
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod a directory");
        path
    }

    /// Writes file `rel` with `contents` and exactly `mode`.
    pub fn write_file(&self, rel: impl AsRef<Path>, contents: &[u8], mode: u32) -> PathBuf {
        let path = self.path(rel);
        self.make_parents(&path);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod a file");
        path
    }

    /// Creates symbolic link `rel` pointing to `target`.
    pub fn symlink(&self, rel: impl AsRef<Path>, target: &str) -> PathBuf {
        let path = self.path(rel);
        self.make_parents(&path);
        std::os::unix::fs::symlink(target, &path).unwrap_or_else(|e| panic!("symlink {}: {e}", path.display()));
        path
    }

    /// Parents are made with an explicit 0755, whatever the umask, so packages do not depend on it.
    fn make_parents(&self, path: &Path) {
        let parent = path.parent().expect("a path below the root");
        let mut missing = Vec::new();
        let mut dir = parent;
        while !dir.exists() {
            missing.push(dir.to_owned());
            dir = dir.parent().expect("the root exists");
        }
        for dir in missing.into_iter().rev() {
            fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod a directory");
        }
    }

    /// Writes `SRC/package.toml` with `[package]` and `[applies-to]` and one rule taking
    /// `SRC/root` as the package's tree, followed by `extra` lines.
    pub fn write_manifest(&self, src: &str, id: &str, extra: &str) -> PathBuf {
        let text = format!(
            "[package]\nid = \"{id}\"\ntitle = \"Test package {id}\"\nversion = \"2.1.0\"\nbuild = 42\n\n\
             [applies-to]\nproduct = \"testprod\"\n\n[[files]]\nsource = \"root\"\ndest = \".\"\n{extra}"
        );
        self.write_file(format!("{src}/package.toml"), text.as_bytes(), 0o644)
    }

    /// A small tree for snapshots: a tool and a link to it, a configuration file,
    /// a private file and an empty directory. Returns `SRC/root`.
    pub fn small_tree(&self, src: &str) -> PathBuf {
        self.write_manifest(src, "small", "");
        self.mkdir(format!("{src}/root"), 0o755);
        self.mkdir(format!("{src}/root/bin"), 0o755);
        self.write_file(format!("{src}/root/bin/tool"), b"#!/bin/sh\necho 'hello from tool'\n", 0o755);
        self.symlink(format!("{src}/root/bin/tool-link"), "tool");
        self.mkdir(format!("{src}/root/etc"), 0o755);
        self.write_file(format!("{src}/root/etc/tool.conf"), b"greeting = hello\n", 0o644);
        self.write_file(format!("{src}/root/etc/secret"), b"s3cr3t\n", 0o600);
        self.mkdir(format!("{src}/root/var/empty"), 0o755);
        self.path(format!("{src}/root"))
    }

    /// The tree that exercises every rule of the format; see [`SAMPLE_ITEMS`]. Returns `SRC/root`.
    pub fn sample_tree(&self, src: &str) -> PathBuf {
        self.write_manifest(src, "sample", "");
        self.mkdir(format!("{src}/root"), 0o755);
        for item in sample_items() {
            self.write_item(&format!("{src}/root"), &item);
        }
        self.path(format!("{src}/root"))
    }

    /// Writes one item below `base`.
    pub fn write_item(&self, base: &str, item: &Item) {
        match item {
            Item::Dir(path, mode) => {
                self.mkdir(format!("{base}/{path}"), *mode);
            }
            Item::File(path, mode, contents) => {
                self.write_file(format!("{base}/{path}"), contents, *mode);
            }
            Item::Link(path, target) => {
                self.symlink(format!("{base}/{path}"), target);
            }
        }
    }

    // ---- Running the tools ------------------------------------------------------

    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&self.root)
            .env("PKGRUN_TRUSTED_KEYS", &self.trusted_keys)
            // Never the machine's instance registry; created only when something installs.
            .env("PKGRUN_REGISTRY", self.root.join("registry"))
            .env_remove("PKGRUN_FAULT")
            .env_remove("PKGRUN_FAULT_SPARE")
            .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string())
            .env("COLUMNS", "100")
            .env("NO_COLOR", "1")
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .env_remove("PKGBUILD_PASSPHRASE_FILE")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE");
        command
    }

    /// `pkgbuild` with the pinned environment, run in the root.
    pub fn pkgbuild(&self) -> Command {
        self.command(&pkgbuild_exe())
    }

    /// `pkgrun` with the pinned environment, run in the root.
    pub fn pkgrun(&self) -> Command {
        self.command(&pkgrun_exe())
    }

    /// `pkgrun PKG ARGS... --trust keys/test.pub`.
    pub fn pkgrun_trusted(&self, package: impl AsRef<OsStr>, args: &[&str]) -> Command {
        let mut command = self.pkgrun();
        command.arg(package).args(args).args(["--trust", TEST_PUB]);
        command
    }

    /// Another program (a package itself, tar, minisign...) with the pinned environment, run in the root.
    pub fn program(&self, program: impl AsRef<Path>) -> Command {
        self.command(program.as_ref())
    }

    /// The `pkgbuild build SRC -o OUT ...` command for these options.
    pub fn build_command(&self, src: impl AsRef<OsStr>, out: impl AsRef<OsStr>, options: &BuildOptions) -> Command {
        let mut command = self.pkgbuild();
        command.arg("build").arg(src).arg("-o").arg(out).args(["--codec", options.codec]);
        match &options.signing {
            Signing::TestKey => command.arg("--key").arg(test_key()),
            Signing::Key(path) => command.arg("--key").arg(path),
            Signing::Unsigned => command.arg("--unsigned"),
        };
        match &options.stub {
            Stub::Fake => command.args(["--stub", "stub.sh"]),
            Stub::Pkgrun => command.arg("--stub").arg(pkgrun_exe()),
            Stub::None => command.arg("--no-stub"),
        };
        if let Some(size) = options.member_size {
            command.arg("--member-size").arg(size.to_string());
        }
        if let Some(level) = options.level {
            command.arg("--level").arg(level.to_string());
        }
        if let Some(threads) = options.threads {
            command.arg("--threads").arg(threads.to_string());
        }
        match options.source_date_epoch {
            Some(epoch) => command.env("SOURCE_DATE_EPOCH", epoch.to_string()),
            None => command.env_remove("SOURCE_DATE_EPOCH"),
        };
        if options.json {
            command.arg("--json");
        } else {
            command.arg("-q");
        }
        command
    }

    /// Builds `SRC` into `OUT` (relative to the root); panics unless pkgbuild succeeds.
    #[track_caller]
    pub fn build(&self, src: &str, out: &str, options: &BuildOptions) -> PathBuf {
        run(&mut self.build_command(src, out, options)).assert_success();
        self.path(out)
    }

    // ---- Reading packages -------------------------------------------------------

    /// `pkgrun PKG --info --json` (which works whoever signed the package).
    #[track_caller]
    pub fn info_json(&self, package: impl AsRef<OsStr>) -> serde_json::Value {
        let output = run(self.pkgrun().arg(package).args(["--info", "--json"]));
        output.assert_success();
        output.data()
    }

    /// The byte ranges of a package's parts, from `--info --json`.
    #[track_caller]
    pub fn layout(&self, package: impl AsRef<OsStr>) -> Layout {
        Layout::from_json(&self.info_json(package)["layout"])
    }

    /// The package's header, cut out with the layout and deserialized.
    #[track_caller]
    pub fn header(&self, package: impl AsRef<Path>) -> Header {
        let package = self.path(package);
        let layout = self.layout(&package);
        let bytes = fs::read(&package).expect("read the package");
        serde_json::from_slice(&bytes[layout.header.0 as usize..layout.header.1 as usize]).expect("a JSON header")
    }

    /// Writes `name` as a copy of `good` with `defect` applied to its bytes.
    pub fn variant(&self, good: impl AsRef<Path>, name: &str, defect: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let mut bytes = fs::read(self.path(good)).expect("read the good package");
        defect(&mut bytes);
        self.write_file(name, &bytes, 0o644)
    }

    /// Writes `name` as `good` with its header changed by `edit`, then signed by the
    /// test key and framed correctly (`finish_bytes_unvalidated`): a package that
    /// breaks a rule of the format yet carries a valid signature.
    pub fn resigned(&self, good: impl AsRef<Path>, name: &str, edit: impl FnOnce(&mut Header)) -> PathBuf {
        let good = self.path(good);
        let layout = self.layout(&good);
        let mut header = self.header(&good);
        edit(&mut header);
        let bytes = fs::read(&good).expect("read the good package");
        let mut out = bytes[..layout.header.0 as usize].to_vec();
        out.extend(upkg_format::finish_bytes_unvalidated(&header, Some(&load_test_key())));
        self.write_file(name, &out, 0o644)
    }

    // ---- Inspecting trees ---------------------------------------------------------

    /// Every path below the root (relative), with its kind: for "nothing else was created".
    pub fn root_paths(&self) -> Vec<String> {
        paths_under(&self.root)
    }
}

/// One item of a source tree.
#[derive(Debug, Clone)]
pub enum Item {
    /// A directory and its mode.
    Dir(String, u32),
    /// A file, its mode and contents.
    File(String, u32, Vec<u8>),
    /// A symbolic link and its target.
    Link(String, String),
}

/// A name of more than 100 bytes (GNU tar needs an `L` record for it).
pub fn long_dir() -> String {
    "d".repeat(60)
}

/// A file below [`long_dir`]: its path is 121 bytes.
pub fn long_path() -> String {
    format!("{}/{}.txt", long_dir(), "f".repeat(56))
}

/// The items of [`TestContext::sample_tree`], parents before children:
/// files and directories of modes 0755, 0644, 0600 and 0700, an empty directory,
/// an empty file, a file larger than a 32 KiB member, non-ASCII names, paths and
/// link targets of 99, 100 and 101 bytes and longer, and relative links (sideways,
/// up, to a directory).
pub fn sample_items() -> Vec<Item> {
    use Item::*;
    let s = |t: &str| t.to_owned();
    vec![
        Dir(s("bin"), 0o755),
        File(s("bin/tool"), 0o755, b"#!/bin/sh\necho tool\n".to_vec()),
        Link(s("bin/tool-link"), s("tool")),
        Dir(s("etc"), 0o755),
        File(s("etc/app.conf"), 0o644, b"name = sample\nlevel = 3\n".to_vec()),
        File(s("etc/secret.key"), 0o600, b"not really a secret\n".to_vec()),
        Dir(s("private"), 0o700),
        File(s("private/notes.txt"), 0o600, b"private notes\n".to_vec()),
        Dir(s("private/inner"), 0o700),
        File(s("private/inner/run.sh"), 0o700, b"#!/bin/sh\nexit 0\n".to_vec()),
        Dir(s("data"), 0o755),
        File(s("data/big.bin"), 0o644, pseudo_random(100_000, 7)),
        File(s("data/exact-block.bin"), 0o644, pseudo_random(32_768, 8)),
        File(s("data/empty.txt"), 0o644, Vec::new()),
        File(s("data/ünïcødé-ファイル.txt"), 0o644, "non-ASCII name\n".as_bytes().to_vec()),
        Dir(s("empty-dir"), 0o755),
        Dir(s("share"), 0o755),
        Dir(s("share/doc"), 0o755),
        Link(s("share/doc/app.conf"), s("../../etc/app.conf")),
        Link(s("share/bin"), s("../bin")),
        Dir(long_dir(), 0o755),
        File(long_path(), 0o644, b"a path longer than 100 bytes\n".to_vec()),
        Link(s("long-link"), long_path()),
        // Tar's boundaries: a name of 100 bytes fits the header, 101 needs an L record;
        // a directory's name gets a trailing slash; link targets of 100 and 101 bytes.
        Dir(s("names"), 0o755),
        File(format!("names/{}", "p".repeat(93)), 0o644, b"99\n".to_vec()),
        File(format!("names/{}", "q".repeat(94)), 0o644, b"100\n".to_vec()),
        File(format!("names/{}", "r".repeat(95)), 0o644, b"101\n".to_vec()),
        Dir(format!("names/{}", "s".repeat(94)), 0o755),
        Link(s("names/target-100"), format!("./././{}", "q".repeat(94))),
        Link(s("names/target-101"), format!("./././{}", "r".repeat(95))),
    ]
}

/// `len` bytes from a fixed xorshift sequence: incompressible, and the same on every run.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One line per entry below `dir` (sorted by path): kind, mode, and for files the
/// size and SHA-256, for links the target. Paths under `exclude` are left out.
pub fn tree_listing(dir: &Path, exclude: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    for item in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false).sort_by_file_name() {
        let item = item.unwrap_or_else(|e| panic!("walk {}: {e}", dir.display()));
        let rel = relative(item.path(), dir);
        if exclude.iter().any(|x| rel == *x || rel.starts_with(&format!("{x}/"))) {
            continue;
        }
        let metadata = fs::symlink_metadata(item.path()).expect("lstat");
        let mode = metadata.mode() & 0o7777;
        let file_type = metadata.file_type();
        let line = if file_type.is_symlink() {
            let target = fs::read_link(item.path()).expect("readlink");
            format!("link {rel} -> {}", target.to_string_lossy())
        } else if file_type.is_dir() {
            format!("dir  {rel} {mode:04o}")
        } else if file_type.is_file() {
            let bytes = fs::read(item.path()).expect("read a file");
            format!("file {rel} {mode:04o} {} {}", bytes.len(), hex::encode(Sha256::digest(&bytes)))
        } else {
            format!("special {rel} {mode:04o}")
        };
        lines.push(line);
    }
    lines.sort();
    lines
}

/// SHA-256 of a whole tree: every path, kind, mode, link target and file's contents.
pub fn tree_hash(dir: &Path, exclude: &[&str]) -> String {
    hex::encode(Sha256::digest(tree_listing(dir, exclude).join("\n").as_bytes()))
}

/// Asserts that two trees are equal entry for entry (the listing diff is shown on failure).
#[track_caller]
pub fn assert_same_tree(expected: &Path, actual: &Path, exclude: &[&str]) {
    let expected_listing = tree_listing(expected, &[]);
    let actual_listing = tree_listing(actual, exclude);
    assert_eq!(
        expected_listing,
        actual_listing,
        "the tree at {} differs from the one at {}",
        actual.display(),
        expected.display()
    );
    assert_eq!(tree_hash(expected, &[]), tree_hash(actual, exclude));
}

/// Regular files only (path -> SHA-256), for readers that keep nothing else (cabinets).
pub fn file_digests(dir: &Path, exclude: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for item in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false) {
        let item = item.expect("walk");
        let rel = relative(item.path(), dir);
        if exclude.iter().any(|x| rel == *x || rel.starts_with(&format!("{x}/"))) {
            continue;
        }
        if item.file_type().is_file() {
            let bytes = fs::read(item.path()).expect("read a file");
            out.insert(rel, hex::encode(Sha256::digest(&bytes)));
        }
    }
    out
}

/// Every path below `dir` with its kind, sorted (contents are not read, so it is cheap on large files).
pub fn paths_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .map(|item| {
            let item = item.expect("walk");
            let kind = if item.file_type().is_dir() {
                "dir"
            } else if item.file_type().is_symlink() {
                "link"
            } else {
                "file"
            };
            format!("{kind} {}", relative(item.path(), dir))
        })
        .collect();
    out.sort();
    out
}

/// Whether `dir` is an existing, empty directory.
pub fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).map(|mut entries| entries.next().is_none()).unwrap_or(false)
}

fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base).expect("below the base").to_string_lossy().into_owned()
}

/// Escapes the characters regular expressions treat specially.
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// ---- Byte-level defects -------------------------------------------------------------

/// XORs the byte at `offset` with 0x01.
pub fn flip(bytes: &mut [u8], offset: u64) {
    bytes[offset as usize] ^= 0x01;
}

/// The decoded trailer at the end of `bytes`.
pub fn trailer_of(bytes: &[u8]) -> Trailer {
    let start = bytes.len() - TRAILER_LEN;
    let raw: &[u8; TRAILER_LEN] = bytes[start..].try_into().expect("96 bytes");
    Trailer::decode(raw, bytes.len() as u64).expect("a valid trailer")
}

/// Replaces the trailer at the end of `bytes` with `trailer` encoded (a valid CRC).
pub fn replace_trailer(bytes: &mut [u8], trailer: &Trailer) {
    let start = bytes.len() - TRAILER_LEN;
    bytes[start..].copy_from_slice(&trailer.encode());
}

/// Recomputes the CRC-32 of the trailer at the end of `bytes` (after a raw edit of its fields).
pub fn fix_trailer_crc(bytes: &mut [u8]) {
    const OFF_CRC32: usize = 76;
    let start = bytes.len() - TRAILER_LEN;
    let trailer = &mut bytes[start..];
    let mut crc = flate2::Crc::new();
    crc.update(&trailer[..OFF_CRC32]);
    crc.update(&[0u8; 4]);
    crc.update(&trailer[OFF_CRC32 + 4..]);
    trailer[OFF_CRC32..OFF_CRC32 + 4].copy_from_slice(&crc.sum().to_le_bytes());
}

// ---- External tools -------------------------------------------------------------------

/// Fails (never skips) when `tool` is not installed, naming the Debian package that has it.
#[track_caller]
pub fn require_tool(tool: &str, debian_package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: these interop tests need it (CI installs it): apt-get install {debian_package}"
    );
}

// ---- A small filesystem ---------------------------------------------------------------

/// A tmpfs mounted for a test, unmounted on drop (lazily when it is still busy).
pub struct Tmpfs {
    /// The mount point.
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`, e.g. `"4m"`) on the new
    /// directory `path`, or says why it cannot (not root, no mount permission).
    pub fn mount(path: &Path, options: &str) -> Result<Tmpfs, String> {
        fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "upkg-test"])
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs -o {options} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Tmpfs { path: path.to_owned() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.path).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Mounts a tmpfs, or prints on stderr why the calling test is skipped and returns `None`.
pub fn mount_tmpfs_or_skip(path: &Path, options: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(path, options) {
        Ok(tmpfs) => Some(tmpfs),
        Err(reason) => {
            eprintln!("SKIPPED: this test needs a small filesystem and cannot mount one: {reason}");
            None
        }
    }
}

//! Assembling a package: plan, encode members in parallel, write them in order,
//! then the header, signature and trailer.
//!
//! Everything that can refuse the build (manifest, sources, codec limits, the
//! stub, the header's rules) is checked before the output is created. The output
//! is written to a temporary file beside it and renamed into place when complete,
//! so a failed build never leaves a partial package under the requested name.
//!
//! Memory stays bounded whatever the package size: at most `2 * threads` encoded
//! members wait to be written, and each member is at most `member_size`
//! uncompressed bytes.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, mpsc};

use sha2::{Digest as _, Sha256};
use upkg_format::{Applicability, FormatVersion, Member, Part, Payload, Role, ScriptRole, Scripts, Service};
use upkg_format::{Codec, Digest, FileEntry, Header, Kind, Mode, SecretKey};
use upkg_format::{EntryData, PayloadPlan, Piece};

use crate::deltas::{self, DeltaReport};
use crate::error::BuildError;
use crate::manifest::LoadedManifest;
use crate::sources::{self, SourceEntry};

/// How to build.
pub struct BuildOptions {
    /// Payload codec.
    pub codec: Codec,
    /// Compression level (the codec's default when `None`).
    pub level: Option<i32>,
    /// The stub executable to put first, or `None` for a package without one.
    pub stub: Option<PathBuf>,
    /// The signing key, or `None` for an unsigned package.
    pub key: Option<SecretKey>,
    /// Uncompressed bytes per member (a multiple of 32 KiB).
    pub member_size: u64,
    /// Worker threads for compression.
    pub threads: usize,
    /// Build time recorded in the package (`SOURCE_DATE_EPOCH`); 0 when unset.
    pub created: u64,
    /// Earlier releases (package files or expanded trees) to make deltas from.
    pub delta_from: Vec<PathBuf>,
    /// Also write the header copy (`OUTPUT.header.zst`, spec section 14.4) for
    /// express updates from a web server.
    pub header_copy: bool,
}

impl BuildOptions {
    /// Defaults: zstd at its default level, no stub, unsigned, 4 MiB members, one thread per core.
    pub fn new(codec: Codec) -> Self {
        BuildOptions {
            codec,
            level: None,
            stub: None,
            key: None,
            member_size: upkg_format::DEFAULT_MEMBER_SIZE,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            created: 0,
            delta_from: Vec::new(),
            header_copy: false,
        }
    }
}

/// What a build produced.
#[derive(Debug)]
pub struct BuildOutput {
    /// The package's header.
    pub header: Header,
    /// Where the package was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// What `delta_from` made (`None` without it).
    pub deltas: Option<DeltaReport>,
    /// Where the header copy was written (`None` without `header_copy`).
    pub header_copy: Option<PathBuf>,
}

/// How far a build is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildProgress {
    /// Encoding starts: the files hold `total` bytes.
    Start {
        /// Bytes of all the files.
        total: u64,
    },
    /// `n` more bytes of the files were encoded.
    Encoded(u64),
}

/// Builds the package described by `manifest` (a `package.toml`, or a directory
/// holding one) into `output`. `progress` hears the total, then counts of
/// uncompressed bytes as they are encoded.
pub fn build(
    manifest: &Path,
    output: &Path,
    options: &BuildOptions,
    progress: &(dyn Fn(BuildProgress) + Sync),
) -> Result<BuildOutput, BuildError> {
    let codec = options.codec;
    let level = options.level.unwrap_or_else(|| codec.default_level());
    if !codec.levels().contains(&level) {
        let levels = codec.levels();
        return Err(BuildError::Options(format!(
            "compression level {level} is not valid for {codec} (use {} to {})",
            levels.start(),
            levels.end()
        )));
    }
    if options.member_size < upkg_format::MEMBER_SIZE_UNIT
        || !options.member_size.is_multiple_of(upkg_format::MEMBER_SIZE_UNIT)
    {
        return Err(BuildError::Options(format!(
            "member size {} must be a positive multiple of {} bytes",
            options.member_size,
            upkg_format::MEMBER_SIZE_UNIT
        )));
    }
    if options.member_size > upkg_format::MAX_PLANNED_MEMBER_SIZE {
        // Readers refuse compressed members over 64 MiB: a larger member of
        // incompressible data would make a package no reader accepts.
        return Err(BuildError::Options(format!(
            "member size {} is larger than the {} bytes a package's members may hold",
            options.member_size,
            upkg_format::MAX_PLANNED_MEMBER_SIZE
        )));
    }
    let loaded = LoadedManifest::load(manifest)?;
    let mut sources = sources::resolve(&loaded)?;
    // Deltas from earlier releases: patches packaged under .package/deltas/, and
    // the changed files and the patches in members of their own.
    let delta_set = if options.delta_from.is_empty() {
        None
    } else {
        let product = loaded.manifest.applies_to.product.get_ref();
        let delta_level = if codec == Codec::TarZstd { level } else { codec_default_zstd() };
        let set = deltas::make(&sources, &options.delta_from, product, delta_level, options.threads)?;
        sources.extend(set.extra.iter().cloned());
        sources.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        Some(set)
    };
    let mut files: Vec<FileEntry> = sources.iter().map(catalog_entry).collect();
    let isolated: Vec<bool> = match &delta_set {
        None => vec![false; files.len()],
        Some(set) => {
            for entry in &mut files {
                if let Some(deltas) = set.deltas.get(&entry.path) {
                    entry.deltas = deltas.clone();
                }
            }
            files
                .iter()
                .map(|e| e.kind == Kind::File && (e.is_package_file() || set.changed.contains(&e.path)))
                .collect()
        }
    };
    let plan = upkg_format::plan_payload_isolating(&files, codec, options.member_size, &|i| isolated[i])?;
    for (entry, placement) in files.iter_mut().zip(&plan.placement) {
        if let Some((offset, member)) = placement {
            entry.offset = Some(*offset);
            entry.member = *member;
        }
    }
    let stub = match &options.stub {
        Some(path) => Some(read_stub_metadata(path)?),
        None => None,
    };
    let directory_len = (codec == Codec::Cab).then(|| upkg_format::cab_directory_len(&files, &plan));

    // Check the header's rules with placeholder digests before writing anything.
    let package = package_info(&loaded, options.created);
    let mut header = Header {
        format: FormatVersion::lowest_for(&package, &files),
        package,
        stub: stub.as_ref().map(|(_, len)| Part { size: *len, sha256: Digest([0; 32]) }),
        payload: placeholder_payload(codec, level, &plan, directory_len),
        files,
    };
    for entry in header.files.iter_mut().filter(|e| e.kind == Kind::File) {
        entry.sha256 = Some(Digest([0; 32]));
    }
    header.validate()?;

    let out_dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".pkgbuild-")
        .tempfile_in(&out_dir)
        .map_err(|e| BuildError::Io { path: out_dir.clone(), source: e })?;
    let out_io = |e: io::Error| BuildError::Io { path: output.to_owned(), source: e };

    // Stub.
    let mut position = 0u64;
    if let Some((stub_path, stub_len)) = &stub {
        let digest = copy_stub(stub_path, *stub_len, temp.as_file_mut())?;
        header.stub = Some(Part { size: *stub_len, sha256: digest });
        position = *stub_len;
    }
    let payload_offset = position;
    if let Some(len) = directory_len {
        temp.as_file_mut().write_all(&vec![0u8; len as usize]).map_err(out_io)?;
        position += len;
    }

    // Members, encoded in parallel and written in order.
    let total = sources.iter().filter(|s| s.kind == Kind::File).map(|s| s.size).sum();
    progress(BuildProgress::Start { total });
    let encoded = |n| progress(BuildProgress::Encoded(n));
    let data = SourceData::new(&sources, &plan, &encoded);
    let mut members = Vec::with_capacity(plan.members.len());
    {
        let file = temp.as_file_mut();
        encode_all(
            &plan,
            &header.files,
            Encoding { codec, level, created: options.created },
            &data,
            options.threads.max(1),
            |index, encoded| {
                file.write_all(&encoded.bytes).map_err(out_io)?;
                let planned = &plan.members[index];
                members.push(Member {
                    offset: position - payload_offset,
                    size: encoded.bytes.len() as u64,
                    raw_offset: planned.raw.start,
                    raw_size: planned.raw.end - planned.raw.start,
                    sha256: encoded.sha256,
                    continues: planned.continues,
                });
                position += encoded.bytes.len() as u64;
                Ok(())
            },
        )?;
    }
    header.payload.size = position - payload_offset;
    header.payload.members = members;
    for (index, entry) in header.files.iter_mut().enumerate() {
        if entry.kind == Kind::File {
            let digest = data.digest(index).ok_or_else(|| BuildError::Source {
                path: sources[index].source.clone().unwrap_or_default(),
                reason: "its contents were never read (internal error)".into(),
            })?;
            entry.sha256 = Some(digest);
        }
    }
    if let Some(set) = &delta_set {
        for entry in header.files.iter().filter(|e| !e.deltas.is_empty()) {
            if set.targets.get(&entry.path) != entry.sha256.as_ref() {
                return Err(BuildError::Source {
                    path: sources
                        .iter()
                        .find(|s| s.path == entry.path)
                        .and_then(|s| s.source.clone())
                        .unwrap_or_default(),
                    reason: "it changed while the package was being built (its delta no longer matches it)".into(),
                });
            }
        }
    }
    if let Some(len) = directory_len {
        header.payload.directory = Some(Part { size: len, sha256: Digest([0; 32]) });
        let directory = upkg_format::cab_directory(&header);
        debug_assert_eq!(directory.len() as u64, len);
        temp.as_file().write_all_at(&directory, payload_offset).map_err(out_io)?;
        header.payload.directory = Some(Part { size: len, sha256: Digest::of(&directory) });
    }

    let tail = upkg_format::finish_bytes(&header, options.key.as_ref())?;
    let file = temp.as_file_mut();
    file.seek(SeekFrom::End(0)).map_err(out_io)?;
    file.write_all(&tail).map_err(out_io)?;
    file.sync_all().map_err(out_io)?;
    let mode = if stub.is_some() { 0o755 } else { 0o644 };
    file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(out_io)?;
    let size = position + tail.len() as u64;
    temp.persist(output).map_err(|e| out_io(e.error))?;
    let header_copy = if options.header_copy { Some(write_header_copy(output, &out_dir, &tail, size)?) } else { None };
    // Make the renames durable too.
    if let Ok(dir) = File::open(&out_dir) {
        let _ = dir.sync_all();
    }
    Ok(BuildOutput { header, path: output.to_owned(), size, deltas: delta_set.map(|set| set.report), header_copy })
}

/// Writes `OUTPUT.header.zst` from the package's `tail` (header, signature block
/// and trailer), through a temporary file renamed into place.
fn write_header_copy(output: &Path, out_dir: &Path, tail: &[u8], size: u64) -> Result<PathBuf, BuildError> {
    let mut path = output.as_os_str().to_owned();
    path.push(upkg_format::HEADER_COPY_SUFFIX);
    let path = PathBuf::from(path);
    let copy_io = |e: io::Error| BuildError::Io { path: path.clone(), source: e };
    let trailer_bytes = tail[tail.len() - upkg_format::TRAILER_LEN..].try_into().expect("a trailer");
    let trailer = upkg_format::Trailer::decode(trailer_bytes, size)?;
    let header = &tail[..trailer.header_len as usize];
    let mut temp = tempfile::Builder::new().prefix(".pkgbuild-").tempfile_in(out_dir).map_err(copy_io)?;
    upkg_format::write_header_copy(header, std::io::BufWriter::new(temp.as_file_mut())).map_err(copy_io)?;
    temp.as_file().sync_all().map_err(copy_io)?;
    temp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(copy_io)?;
    temp.persist(&path).map_err(|e| copy_io(e.error))?;
    Ok(path)
}

/// The zstd level of deltas in gzip and cabinet packages (the patches are zstd frames whatever the codec).
fn codec_default_zstd() -> i32 {
    Codec::TarZstd.default_level()
}

fn catalog_entry(source: &SourceEntry) -> FileEntry {
    FileEntry {
        path: source.path.clone(),
        kind: source.kind,
        mode: Mode(source.mode),
        size: source.size,
        sha256: None,
        target: source.target.clone(),
        version: source.version.clone(),
        policy: source.policy,
        member: None,
        offset: None,
        deltas: Vec::new(),
    }
}

fn package_info(loaded: &LoadedManifest, created: u64) -> upkg_format::PackageInfo {
    let m = &loaded.manifest;
    let script = |role: ScriptRole| {
        m.scripts.get(role).map(|v| format!("{}/scripts/{role}{}", upkg_format::PACKAGE_DIR, extension(v.get_ref())))
    };
    upkg_format::PackageInfo {
        id: m.package.id.get_ref().clone(),
        title: m.package.title.clone(),
        version: m.package.version.clone(),
        build: m.package.build,
        description: m.package.description.clone(),
        article: m.package.article.clone(),
        url: m.package.url.clone(),
        created,
        eula: m.package.eula.as_ref().map(|e| format!("{}/EULA{}", upkg_format::PACKAGE_DIR, extension(e.get_ref()))),
        applies_to: Applicability {
            product: m.applies_to.product.get_ref().clone(),
            versions: m.applies_to.versions.clone(),
            requires: m.applies_to.requires.iter().map(|r| r.get_ref().clone()).collect(),
            fresh_install: m.applies_to.fresh_install,
        },
        services: m
            .services
            .iter()
            .map(|s| Service {
                name: s.name.get_ref().clone(),
                unit: s.unit.clone(),
                stop: s.stop.clone(),
                start: s.start.clone(),
                status: s.status.as_ref().map(|v| v.get_ref().clone()),
            })
            .collect(),
        scripts: Scripts {
            pre_install: script(ScriptRole::PreInstall),
            post_install: script(ScriptRole::PostInstall),
            post_install_undo: script(ScriptRole::PostInstallUndo),
            pre_uninstall: script(ScriptRole::PreUninstall),
            post_uninstall: script(ScriptRole::PostUninstall),
            timeout: m.scripts.timeout,
        },
        restart: m.package.restart,
        remove: m.remove.iter().map(|r| r.path.get_ref().clone()).collect(),
        rollout: m
            .rollout
            .iter()
            .map(|r| Role {
                name: r.name.get_ref().clone(),
                description: r.description.clone(),
                serial: r.serial.get_ref().clone(),
                drain: r.drain,
            })
            .collect(),
    }
}

fn extension(path: &str) -> String {
    Path::new(path).extension().and_then(|e| e.to_str()).map(|e| format!(".{e}")).unwrap_or_default()
}

/// A payload whose members have their planned uncompressed sizes and stand-in
/// compressed sizes, so the header can be validated before anything is encoded.
fn placeholder_payload(codec: Codec, level: i32, plan: &PayloadPlan, directory_len: Option<u64>) -> Payload {
    let start = directory_len.unwrap_or(0);
    let members: Vec<Member> = plan
        .members
        .iter()
        .map(|m| Member {
            offset: start + m.raw.start,
            size: m.raw.end - m.raw.start,
            raw_offset: m.raw.start,
            raw_size: m.raw.end - m.raw.start,
            sha256: Digest([0; 32]),
            continues: m.continues,
        })
        .collect();
    Payload {
        codec,
        level,
        size: start + plan.raw_size,
        raw_size: plan.raw_size,
        directory: directory_len.map(|size| Part { size, sha256: Digest([0; 32]) }),
        members,
    }
}

fn read_stub_metadata(path: &Path) -> Result<(PathBuf, u64), BuildError> {
    let stub_error = |reason: String| BuildError::Stub { path: path.to_owned(), reason };
    let file = File::open(path)
        .map_err(|e| stub_error(format!("{e} (build it, name another with --stub, or use --no-stub)")))?;
    let metadata = file.metadata().map_err(|e| stub_error(e.to_string()))?;
    if !metadata.is_file() || metadata.len() == 0 {
        return Err(stub_error("it is not a non-empty regular file".into()));
    }
    let len = metadata.len();
    let magic = upkg_format::TRAILER_MAGIC;
    if len >= magic.len() as u64 {
        let mut end = [0u8; 8];
        file.read_exact_at(&mut end, len - 8).map_err(|e| stub_error(e.to_string()))?;
        if end == magic {
            return Err(stub_error("it already carries a package; use a plain pkgrun executable".into()));
        }
    }
    Ok((path.to_owned(), len))
}

fn copy_stub(path: &Path, len: u64, out: &mut File) -> Result<Digest, BuildError> {
    let mut reader = upkg_format::HashingReader::new(
        File::open(path).map_err(|e| BuildError::Io { path: path.to_owned(), source: e })?,
    );
    let copied =
        io::copy(&mut (&mut reader).take(len), out).map_err(|e| BuildError::Io { path: path.to_owned(), source: e })?;
    if copied != len {
        return Err(BuildError::Stub { path: path.to_owned(), reason: "it changed while it was being copied".into() });
    }
    Ok(reader.finish().0)
}

/// Shared state of the encoding pipeline.
struct Pipeline {
    /// Members written so far.
    written: usize,
    /// Set when any member failed: every waiting thread gives up.
    failed: bool,
    /// Running digests of files split over several members, by catalog index.
    split: HashMap<usize, SplitHash>,
}

struct SplitHash {
    /// Offset in the file the next chunk must start at.
    next: u64,
    hasher: Option<Sha256>,
}

/// Reads source files for the encoder, hashing exactly the bytes that go into the package.
struct SourceData<'a> {
    sources: &'a [SourceEntry],
    digests: Vec<OnceLock<Digest>>,
    state: Mutex<Pipeline>,
    changed: Condvar,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<'a> SourceData<'a> {
    fn new(sources: &'a [SourceEntry], plan: &PayloadPlan, progress: &'a (dyn Fn(u64) + Sync)) -> Self {
        let digests: Vec<OnceLock<Digest>> = sources.iter().map(|_| OnceLock::new()).collect();
        // Empty files have no data piece; their digest is the empty string's.
        for (index, source) in sources.iter().enumerate() {
            if source.kind == Kind::File && source.size == 0 {
                let _ = digests[index].set(Digest(Sha256::digest(b"").into()));
            }
        }
        let mut pieces_per_file: HashMap<usize, usize> = HashMap::new();
        for member in &plan.members {
            for piece in &member.pieces {
                if let Piece::Data(index, _) = piece {
                    *pieces_per_file.entry(*index).or_default() += 1;
                }
            }
        }
        let split = pieces_per_file
            .into_iter()
            .filter(|(_, count)| *count > 1)
            .map(|(index, _)| (index, SplitHash { next: 0, hasher: Some(Sha256::new()) }))
            .collect();
        SourceData {
            sources,
            digests,
            state: Mutex::new(Pipeline { written: 0, failed: false, split }),
            changed: Condvar::new(),
            progress,
        }
    }

    fn digest(&self, index: usize) -> Option<Digest> {
        self.digests[index].get().copied()
    }

    fn open(&self, index: usize) -> io::Result<(File, &Path)> {
        let path = self.sources[index].source.as_deref().expect("files have a source");
        // O_NOFOLLOW: a file swapped for a link after it was listed is refused, not followed.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(|e| source_failure(path, e.to_string()))?;
        Ok((file, path))
    }

    fn check_no_more(&self, file: &File, path: &Path, size: u64) -> io::Result<()> {
        let mut probe = [0u8; 1];
        if file.read_at(&mut probe, size)? != 0 {
            return Err(changed_error(path));
        }
        Ok(())
    }

    /// Waits until the chunk starting at `start` is next in `index`'s digest, then takes the hasher.
    fn take_turn(&self, index: usize, start: u64) -> io::Result<Sha256> {
        let mut state = self.state.lock().expect("pipeline lock");
        loop {
            if state.failed {
                return Err(io::Error::other("the build was stopped by an earlier error"));
            }
            let split = state.split.get_mut(&index).expect("split file");
            if split.next == start
                && let Some(hasher) = split.hasher.take()
            {
                return Ok(hasher);
            }
            state = self.changed.wait(state).expect("pipeline lock");
        }
    }

    fn end_turn(&self, index: usize, end: u64, hasher: Sha256) {
        let mut state = self.state.lock().expect("pipeline lock");
        let split = state.split.get_mut(&index).expect("split file");
        if end == self.sources[index].size {
            let _ = self.digests[index].set(Digest(hasher.finalize().into()));
        } else {
            split.hasher = Some(hasher);
        }
        split.next = end;
        self.changed.notify_all();
    }

    fn fail(&self) {
        self.state.lock().expect("pipeline lock").failed = true;
        self.changed.notify_all();
    }
}

fn changed_error(path: &Path) -> io::Error {
    source_failure(path, "it changed size while the package was being built".into())
}

/// A failure reading a source file, carried through `io::Write` to name the file.
#[derive(Debug)]
struct SourceFailure {
    path: PathBuf,
    reason: String,
}

impl std::fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for SourceFailure {}

fn source_failure(path: &Path, reason: String) -> io::Error {
    io::Error::other(SourceFailure { path: path.to_owned(), reason })
}

impl EntryData for SourceData<'_> {
    fn write_data(&self, index: usize, range: Range<u64>, out: &mut dyn Write) -> io::Result<()> {
        let size = self.sources[index].size;
        let (file, path) = self.open(index)?;
        if range.start == 0 && range.end == size {
            // The whole file in one member: hash while copying.
            let mut hasher = Sha256::new();
            let mut reader = &file;
            upkg_format::with_copy_buffer(|buf| {
                let mut left = size;
                while left > 0 {
                    let want = buf.len().min(left as usize);
                    let n = reader.read(&mut buf[..want]).map_err(|e| read_failure(path, e))?;
                    if n == 0 {
                        return Err(changed_error(path));
                    }
                    hasher.update(&buf[..n]);
                    out.write_all(&buf[..n])?;
                    left -= n as u64;
                    (self.progress)(n as u64);
                }
                Ok(())
            })?;
            self.check_no_more(&file, path, size).map_err(|e| read_failure(path, e))?;
            let _ = self.digests[index].set(Digest(hasher.finalize().into()));
            return Ok(());
        }
        // One chunk of a file spread over several members. Its bytes must enter the
        // file's digest in order, so the chunk is read once the chunk before it has
        // been hashed, and streamed through this thread's copy buffer (the slow part,
        // compressing, still runs in parallel afterwards).
        let mut hasher = self.take_turn(index, range.start)?;
        let copied = upkg_format::with_copy_buffer(|buf| {
            let mut offset = range.start;
            while offset < range.end {
                let want = buf.len().min((range.end - offset) as usize);
                let n = file.read_at(&mut buf[..want], offset).map_err(|e| read_failure(path, e))?;
                if n == 0 {
                    return Err(changed_error(path));
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])?;
                offset += n as u64;
                (self.progress)(n as u64);
            }
            if range.end == size {
                self.check_no_more(&file, path, size).map_err(|e| read_failure(path, e))?;
            }
            Ok(())
        });
        copied?;
        self.end_turn(index, range.end, hasher);
        Ok(())
    }
}

/// Encodes every member on `threads` threads and hands them to `sink` in order.
/// How members are encoded.
#[derive(Clone, Copy)]
struct Encoding {
    codec: Codec,
    level: i32,
    created: u64,
}

fn encode_all(
    plan: &PayloadPlan,
    files: &[FileEntry],
    encoding: Encoding,
    data: &SourceData<'_>,
    threads: usize,
    mut sink: impl FnMut(usize, upkg_format::EncodedMember) -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    let count = plan.members.len();
    let window = threads * 2;
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel::<(usize, io::Result<upkg_format::EncodedMember>)>();
        for _ in 0..threads.min(count.max(1)) {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if index >= count {
                        break;
                    }
                    {
                        let mut state = data.state.lock().expect("pipeline lock");
                        while !state.failed && index >= state.written + window {
                            state = data.changed.wait(state).expect("pipeline lock");
                        }
                        if state.failed {
                            break;
                        }
                    }
                    let result = upkg_format::encode_member(
                        encoding.codec,
                        encoding.level,
                        encoding.created,
                        files,
                        &plan.members[index],
                        data,
                    );
                    let failed = result.is_err();
                    if sender.send((index, result)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(sender);
        let mut pending = BTreeMap::new();
        let mut written = 0usize;
        let mut outcome = Ok(());
        for (index, result) in receiver {
            if outcome.is_err() {
                continue;
            }
            match result {
                Ok(member) => {
                    pending.insert(index, member);
                    while let Some(member) = pending.remove(&written) {
                        if let Err(e) = sink(written, member) {
                            outcome = Err(e);
                            data.fail();
                            break;
                        }
                        written += 1;
                        data.state.lock().expect("pipeline lock").written = written;
                        data.changed.notify_all();
                    }
                }
                Err(e) => {
                    data.fail();
                    outcome = Err(source_read_error(e));
                }
            }
        }
        outcome
    })
}

fn read_failure(path: &Path, error: io::Error) -> io::Error {
    if error.get_ref().is_some_and(|inner| inner.is::<SourceFailure>()) {
        error
    } else {
        source_failure(path, error.to_string())
    }
}

fn source_read_error(error: io::Error) -> BuildError {
    if error.get_ref().is_some_and(|inner| inner.is::<SourceFailure>()) {
        let failure = error.into_inner().expect("checked").downcast::<SourceFailure>().expect("checked");
        return BuildError::Source { path: failure.path, reason: failure.reason };
    }
    BuildError::Options(format!("encoding the payload failed: {error}"))
}

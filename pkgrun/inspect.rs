//! `--info` and `--list`: what a package is and what it holds, as text or JSON.

use upkg_cli::human;
use upkg_format::{FileEntry, Header, Kind, Package, Role, Signer};
use upkg_json::{EntryCounts, InfoData, Sizes};

fn counts(header: &Header) -> EntryCounts {
    let count = |kind| header.files.iter().filter(|e| e.kind == kind).count();
    EntryCounts { files: count(Kind::File), dirs: count(Kind::Dir), symlinks: count(Kind::Symlink) }
}

/// The `--info` data.
pub fn info_data(package: &Package, signer: Signer) -> InfoData {
    let header = package.header();
    let layout = match package {
        Package::File(file) => Some(file.layout()),
        Package::Tree(_) => None,
    };
    InfoData {
        path: package.path().to_owned(),
        format: header.format,
        package: header.package.clone(),
        signer,
        codec: header.payload.codec,
        level: header.payload.level,
        members: header.payload.members.len(),
        entries: counts(header),
        sizes: Sizes {
            expanded: header.expanded_size(),
            payload: header.payload.size,
            stub: header.stub.as_ref().map_or(0, |s| s.size),
            file: layout.map(|l| l.trailer.end()),
        },
        layout,
    }
}

/// A one-line description of the signer.
pub fn describe_signer(signer: &Signer) -> String {
    match signer {
        Signer::Trusted { key_id, key_file } => format!("valid, by trusted key {key_id} ({})", key_file.display()),
        Signer::Untrusted { key_id } => format!("by key {key_id}, which is NOT TRUSTED (not verified)"),
        Signer::Unsigned => "NONE: the package is not signed".to_owned(),
    }
}

fn describe_role(index: usize, role: &Role) -> String {
    let pace = match role.serial.as_str() {
        "100%" => "all hosts at once".to_owned(),
        "1" => "one host at a time".to_owned(),
        other if other.ends_with('%') => format!("{other} of the hosts at a time"),
        other => format!("{other} hosts at a time"),
    };
    let drain = if role.drain { ", workload moved off first" } else { "" };
    let description = if role.description.is_empty() { String::new() } else { format!(" ({})", role.description) };
    format!("{}. {}{description}: {pace}{drain}", index + 1, role.name)
}

/// The `--info` text.
pub fn info_text(package: &Package, signer: &Signer) -> String {
    let header = package.header();
    let p = &header.package;
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut add = |label: &str, value: String| lines.push((label.to_owned(), value));
    add("Package", format!("{} ({})", p.id, p.title));
    add("Version", format!("{} (build {})", p.version, p.build));
    if !p.description.is_empty() {
        let lines: Vec<&str> = p.description.trim().lines().map(str::trim_end).collect();
        add("Description", lines.join("\n             ").replace("\n             \n", "\n\n"));
    }
    if let Some(article) = &p.article {
        add("Article", article.clone());
    }
    if let Some(url) = &p.url {
        add("URL", url.clone());
    }
    add("Created", human::utc(p.created));
    add("Signature", describe_signer(signer));
    add("Format", format!("{}.{}", header.format.major, header.format.minor));
    add(
        "Payload",
        format!(
            "{}, level {}, {} members, {}",
            header.payload.codec,
            header.payload.level,
            header.payload.members.len(),
            human::bytes(header.payload.size)
        ),
    );
    let c = counts(header);
    add(
        "Entries",
        format!(
            "{}, {}, {}",
            human::count(c.files as u64, "file", "files"),
            human::count(c.dirs as u64, "directory", "directories"),
            human::count(c.symlinks as u64, "link", "links")
        ),
    );
    add("Expanded", human::bytes(header.expanded_size()));
    if let Package::File(file) = package {
        let stub = header.stub.as_ref().map_or("none".to_owned(), |s| human::bytes(s.size));
        add("Stub", stub);
        add("File size", human::bytes(file.layout().trailer.end()));
    }
    let applies = &p.applies_to;
    let fresh = if applies.fresh_install { "; also installs a new instance into an empty target" } else { "" };
    add("Applies to", format!("{}, {}{fresh}", applies.product, applies.versions.describe()));
    if !applies.requires.is_empty() {
        add("Requires", applies.requires.join(", "));
    }
    if !p.services.is_empty() {
        let services: Vec<String> = p
            .services
            .iter()
            .map(|s| match (&s.unit, &s.status) {
                (Some(unit), _) => format!("{} (systemd {unit})", s.name),
                (None, None) => format!("{} (stop/start commands)", s.name),
                (None, Some(_)) => format!("{} (stop/start/status commands)", s.name),
            })
            .collect();
        add("Services", services.join(", "));
    }
    let scripts: Vec<&str> = p.scripts.all().map(|(role, _)| role.name()).collect();
    if !scripts.is_empty() {
        add("Scripts", format!("{} (timeout {} s)", scripts.join(", "), p.scripts.timeout));
    }
    if !p.remove.is_empty() {
        add("Removes", p.remove.join(", "));
    }
    add("Restart", p.restart.to_string());
    if let Some(eula) = &p.eula {
        add("EULA", format!("must be accepted ({eula})"));
    }
    if !p.rollout.is_empty() {
        let roles: Vec<String> = p.rollout.iter().enumerate().map(|(i, r)| describe_role(i, r)).collect();
        add("Rollout", roles.join("\n             "));
    }
    lines.iter().map(|(label, value)| format!("{:<12} {value}\n", format!("{label}:"))).collect()
}

/// The `--list` text: one line per entry.
pub fn list_text(header: &Header) -> String {
    let rows: Vec<[String; 6]> = header
        .files
        .iter()
        .map(|e: &FileEntry| {
            let kind = match e.kind {
                Kind::File => "file",
                Kind::Dir => "dir",
                Kind::Symlink => "link",
            };
            let size = if e.kind == Kind::File { e.size.to_string() } else { "-".into() };
            let version = e.version.as_ref().map_or("-".into(), ToString::to_string);
            let digest = e.sha256.map_or("-".into(), |d| d.to_hex());
            let path = match &e.target {
                Some(target) => format!("{} -> {target}", e.path),
                None => e.path.clone(),
            };
            [kind.into(), format!("{:04o}", e.mode.0), size, version, digest, path]
        })
        .collect();
    let size_width = rows.iter().map(|r| r[2].len()).max().unwrap_or(0).max(4);
    let version_width = rows.iter().map(|r| r[3].len()).max().unwrap_or(0).max(7);
    let mut out = format!(
        "{:<4} {:<4} {:>size_width$} {:<version_width$} {:<64} PATH\n",
        "TYPE", "MODE", "SIZE", "VERSION", "SHA-256"
    );
    for row in rows {
        out.push_str(&format!(
            "{:<4} {} {:>size_width$} {:<version_width$} {:<64} {}\n",
            row[0], row[1], row[2], row[3], row[4], row[5]
        ));
    }
    out
}

//! The Debian package of the tools: `xtask::deb` packs the binaries under test, dpkg
//! installs the `.deb` into a scratch root (the machine is not changed), and then
//! every man page renders with `man -l`, the bash completion loads and completes a
//! subcommand, the zsh and fish completions parse (where those shells are
//! installed), and the demo runs with the installed binaries.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestContext, repo_dir};
use xtask::Tool;
use xtask::completions::Shell;
use xtask::deb::{Compression, DebRequest};

fn have(program: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {program}")).output().is_ok_and(|o| o.status.success())
}

fn output_of(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Installs `deb` with dpkg into the scratch root `root`.
fn dpkg_install(root: &Path, deb: &Path) {
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), b"").unwrap();
    // --force-depends: the scratch root holds no libc package; --force-not-root
    // lets the test run unprivileged too.
    output_of(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-not-root", "--force-depends", "--force-script-chrootless", "--log=/dev/null", "-i"])
            .arg(deb),
    );
}

#[test]
fn the_deb_installs_man_pages_completions_and_working_tools() {
    for tool in ["dpkg", "dpkg-deb", "dpkg-shlibdeps", "man"] {
        if !have(tool) {
            eprintln!("SKIPPED: {tool} is not installed (./test.sh installs dpkg-dev and man-db)");
            return;
        }
    }
    let ctx = TestContext::new();
    let request = DebRequest {
        pkgrun: PathBuf::from(env!("CARGO_BIN_EXE_pkgrun")),
        pkgbuild: PathBuf::from(env!("CARGO_BIN_EXE_pkgbuild")),
        out_dir: ctx.path("out"),
        compression: Compression::Fast,
    };
    let built = xtask::deb::build(&request).expect("building the .deb");
    let fields = output_of(Command::new("dpkg-deb").arg("--field").arg(&built.path));
    assert!(fields.contains("Package: upkg-tools"), "{fields}");
    assert!(fields.contains(&format!("Architecture: {}", built.architecture)), "{fields}");
    assert!(fields.contains("Depends: libc6"), "{fields}");

    let root = ctx.path("root");
    dpkg_install(&root, &built.path);
    for dir in ["etc/pkgrun", "etc/pkgrun/trusted-keys"] {
        assert!(root.join(dir).is_dir(), "{dir} is created");
    }
    assert!(!root.join("etc/pkgrun/instances").exists(), "the registry is pkgrun's to create, never shipped");

    // Every page the clap definitions give (one per tool and subcommand) is installed and renders.
    for tool in Tool::ALL {
        let pages = xtask::man::pages(tool);
        assert!(pages.len() > 2, "{}: a page per subcommand", tool.name());
        for page in pages {
            let path = root.join("usr/share/man/man1").join(format!("{}.gz", page.file_name));
            assert!(path.is_file(), "{} is installed", path.display());
            let text = output_of(Command::new("man").arg("-l").arg(&path).env("MANPAGER", "cat").env("MANWIDTH", "80"));
            let name = page.file_name.trim_end_matches(".1");
            assert!(text.contains("NAME") && text.contains(name), "{name}: the page renders:\n{text}");
            assert!(text.contains("OPTIONS") || text.contains("SYNOPSIS"), "{name}:\n{text}");
        }
    }
    let status = output_of(
        Command::new("man").arg("-l").arg(root.join("usr/share/man/man1/pkgrun-status.1.gz")).env("MANPAGER", "cat"),
    );
    assert!(status.contains("--target"), "pkgrun-status documents --target:\n{status}");

    // The bash completion loads and completes the subcommands and options.
    let bash = root.join(Shell::Bash.install_path(Tool::Pkgrun));
    let script = format!(
        "source {:?} && complete -p pkgrun && COMP_WORDS=(pkgrun st) COMP_CWORD=1 && _pkgrun pkgrun st pkgrun && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        bash
    );
    let completed = output_of(Command::new("bash").arg("-c").arg(&script));
    assert!(completed.lines().any(|l| l == "status"), "`pkgrun st<TAB>` offers status:\n{completed}");
    let script = format!(
        "source {:?} && COMP_WORDS=(pkgrun status --ta) COMP_CWORD=2 && _pkgrun pkgrun --ta status && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        bash
    );
    let completed = output_of(Command::new("bash").arg("-c").arg(&script));
    assert!(completed.lines().any(|l| l == "--target"), "`pkgrun status --ta<TAB>` offers --target:\n{completed}");
    for tool in Tool::ALL {
        for (shell, program, check) in [(Shell::Zsh, "zsh", "-n"), (Shell::Fish, "fish", "--no-execute")] {
            let path = root.join(shell.install_path(tool));
            assert!(path.is_file(), "{} is installed", path.display());
            if have(program) {
                output_of(Command::new(program).arg(check).arg(&path));
            } else {
                eprintln!("note: {program} is not installed: {} is not syntax-checked", path.display());
            }
        }
    }

    // The demo, with the installed tools: pkgbuild finds its default stub, the
    // pkgrun beside it in usr/bin.
    let demo = Command::new(repo_dir().join("samples/demo.sh"))
        .arg(ctx.path("demo"))
        .env("UPKG_BIN", root.join("usr/bin"))
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "the demo with the installed tools:\n{}\n{}",
        String::from_utf8_lossy(&demo.stdout),
        String::from_utf8_lossy(&demo.stderr)
    );
}

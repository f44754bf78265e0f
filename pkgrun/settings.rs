//! The settings step: the command line and the environment, read once here,
//! become what the run needs. Nothing after this step reads the environment,
//! and nothing before it decides anything.

use std::io::IsTerminal;
use std::path::PathBuf;

use upkg_format::TrustPolicy;
use upkg_install::{AdoptOptions, InstallOptions, InstanceName, Registry};
use upkg_json::{Data, Reason};
use upkg_unpack::Durability;

use crate::args::{Cli, Command as CommandArgs, DurabilityArg, InstancesAction, TargetArgs};
use upkg_cli::UsageError;

/// Where trusted keys are looked for when `PKGRUN_TRUSTED_KEYS` and `--trusted-keys` are not set.
const DEFAULT_TRUSTED_KEYS: &str = "/etc/pkgrun/trusted-keys";

/// What pkgrun reads from its environment, all of it.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `PKGRUN_TRUSTED_KEYS`: the trusted-keys directory.
    pub trusted_keys: Option<PathBuf>,
    /// `PKGRUN_REGISTRY`: the instance registry.
    pub registry: Option<PathBuf>,
    /// `PKGRUN_FAULT`: fault injection for the crash tests (debug builds).
    pub fault: Option<String>,
    /// `PKGRUN_FAULT_SPARE`: the crash model's spare directory.
    pub fault_spare: Option<PathBuf>,
    /// `PKGRUN_CACHE`: where parts fetched from web servers are kept.
    pub cache: Option<PathBuf>,
    /// `XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// Whether this process runs as root (its effective user id is 0).
    pub root: bool,
    /// Whether standard input is a terminal (someone can answer a question).
    pub stdin_is_terminal: bool,
    /// Whether standard error is a terminal (progress bars can be drawn).
    pub stderr_is_terminal: bool,
}

impl Environment {
    /// Reads the environment of this process.
    pub fn capture() -> Environment {
        let path = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Environment {
            trusted_keys: path("PKGRUN_TRUSTED_KEYS"),
            registry: path("PKGRUN_REGISTRY"),
            fault: std::env::var("PKGRUN_FAULT").ok(),
            fault_spare: path("PKGRUN_FAULT_SPARE"),
            cache: path("PKGRUN_CACHE"),
            xdg_cache_home: path("XDG_CACHE_HOME"),
            home: path("HOME"),
            root: rustix::process::geteuid().is_root(),
            stdin_is_terminal: std::io::stdin().is_terminal(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
        }
    }
}

/// Everything a run needs.
#[derive(Debug)]
pub struct Settings {
    /// How to report.
    pub output: Output,
    /// Worker threads.
    pub threads: usize,
    /// When written files are made durable.
    pub durability: Durability,
    /// Where to write a copy of each attempt's log.
    pub log_copy: Option<PathBuf>,
    /// The instance registry.
    pub registry: Registry,
    /// How packages on web servers are fetched.
    pub remote: RemoteSettings,
    /// What to do.
    pub command: Command,
}

/// How packages on web servers are fetched.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// Where fetched parts are kept, verified, to resume a transfer: `--cache-dir`,
    /// `$PKGRUN_CACHE`, `/var/cache/pkgrun` for root, `$XDG_CACHE_HOME/pkgrun`,
    /// `~/.cache/pkgrun`, or the temporary directory.
    pub cache_dir: PathBuf,
    /// `--ca-file`: trust only these certificates for https.
    pub ca_file: Option<PathBuf>,
}

/// How to report.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// One JSON document on standard output.
    pub json: bool,
    /// Nothing but errors on standard error.
    pub quiet: bool,
    /// Draw progress bars (on a terminal, not quiet, not JSON; `--passive` keeps them).
    pub progress: bool,
    /// Ask questions (the licence) at the terminal.
    pub prompts: bool,
}

/// What to do.
#[derive(Debug)]
pub enum Command {
    /// Something with a package file or expanded directory.
    Package {
        /// The package.
        path: PathBuf,
        /// Which signers to accept.
        trust: TrustSettings,
        /// What to do with it.
        action: PackageAction,
    },
    /// `uninstall ID`.
    Uninstall {
        /// The package id.
        id: String,
        /// Where.
        target: TargetRef,
    },
    /// `status`.
    Status(TargetRef),
    /// `verify`.
    Verify(TargetRef),
    /// `repair`.
    Repair(TargetRef),
    /// `cleanup`.
    Cleanup(TargetRef),
    /// `logs`.
    Logs(TargetRef),
    /// `adopt`.
    Adopt {
        /// The installation's directory.
        target: PathBuf,
        /// The name to register it under.
        name: Option<InstanceName>,
        /// Product and version.
        options: AdoptOptions,
    },
    /// `instances`.
    Instances,
    /// `instances forget NAME|DIR`.
    ForgetInstance(String),
}

/// What to do with a package.
#[derive(Debug)]
pub enum PackageAction {
    /// `--info`.
    Info,
    /// `--list`.
    List,
    /// `--licence`.
    Licence,
    /// `--check`.
    Check,
    /// `--estimate DIR`.
    Estimate(PathBuf),
    /// `-x DIR`.
    Extract(PathBuf),
    /// `--plan`.
    Plan(InstallSettings),
    /// `--rollout-playbook [FILE]` (standard output without a file).
    RolloutPlaybook(Option<PathBuf>),
    /// Install (no action given).
    Install(InstallSettings),
}

/// An install's (or a plan's) settings.
#[derive(Debug)]
pub struct InstallSettings {
    /// Where.
    pub targets: Targets,
    /// The name to give the one target.
    pub name: Option<InstanceName>,
    /// The installer's options (the licence's acceptance is decided at run time).
    pub options: InstallOptions,
    /// `--accept-eula`.
    pub accept_eula: bool,
    /// `--norestart` (pkgrun never restarts; it only changes the wording).
    pub norestart: bool,
}

/// Which targets an install acts on.
#[derive(Debug, Clone)]
pub enum Targets {
    /// `--target DIR`, one or more.
    Dirs(Vec<PathBuf>),
    /// `--instance NAME` alone.
    Instance(InstanceName),
    /// `--all-instances`.
    AllInstances,
    /// None given: refused, naming the registered instances.
    NoneGiven,
}

/// The one target a command acts on.
#[derive(Debug, Clone)]
pub enum TargetRef {
    /// `--target DIR`.
    Dir(PathBuf),
    /// `--instance NAME`.
    Instance(InstanceName),
}

/// Which signers to accept.
#[derive(Debug)]
pub struct TrustSettings {
    /// The trusted-keys directory.
    pub directory: PathBuf,
    /// `--trust KEY.pub` files.
    pub keys: Vec<PathBuf>,
    /// What to accept besides trusted signers.
    pub policy: TrustPolicy,
}

impl Settings {
    /// Turns the command line and the environment into settings.
    pub fn resolve(cli: Cli, env: &Environment) -> Result<Settings, UsageError> {
        let output = Output {
            json: cli.output.json,
            quiet: cli.output.quiet,
            progress: env.stderr_is_terminal && !cli.output.quiet && !cli.output.json,
            prompts: env.stdin_is_terminal && !cli.output.quiet && !cli.output.passive && !cli.output.json,
        };
        let durability = match cli.output.durability {
            DurabilityArg::Batched => Durability::Batched,
            DurabilityArg::PerFile => Durability::PerFile,
            DurabilityArg::None => Durability::None,
        };
        let log_copy = cli.install.log.clone();
        let remote = RemoteSettings {
            cache_dir: cli.source.cache_dir.clone().unwrap_or_else(|| default_cache_dir(env)),
            ca_file: cli.source.ca_file.clone(),
        };
        let registry =
            Registry::at(env.registry.clone().unwrap_or_else(|| PathBuf::from(upkg_install::DEFAULT_REGISTRY)));
        let command = match cli.command {
            Some(command) => target_command(command)?,
            None => {
                let Some(path) = cli.package else {
                    return Err(UsageError::new(
                        Reason::Usage,
                        "no package given: run `pkgrun PKG --info`, or see `pkgrun --help`",
                    ));
                };
                let trust = TrustSettings {
                    directory: cli
                        .trust
                        .trusted_keys
                        .or_else(|| env.trusted_keys.clone())
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_TRUSTED_KEYS)),
                    keys: cli.trust.trust,
                    policy: TrustPolicy {
                        allow_untrusted: cli.trust.allow_untrusted,
                        allow_unsigned: cli.trust.allow_unsigned,
                    },
                };
                let a = cli.action;
                let action = if a.info {
                    PackageAction::Info
                } else if a.list {
                    PackageAction::List
                } else if a.licence {
                    PackageAction::Licence
                } else if a.check {
                    PackageAction::Check
                } else if let Some(dir) = a.estimate {
                    PackageAction::Estimate(dir)
                } else if let Some(dir) = a.extract {
                    PackageAction::Extract(dir)
                } else if a.plan {
                    PackageAction::Plan(install_settings(cli.install)?)
                } else if let Some(file) = a.rollout_playbook {
                    PackageAction::RolloutPlaybook(file)
                } else {
                    PackageAction::Install(install_settings(cli.install)?)
                };
                Command::Package { path, trust, action }
            }
        };
        if let Some(fault) = &env.fault {
            upkg_fs::inject_faults(fault, env.fault_spare.as_deref());
        }
        Ok(Settings {
            output,
            threads: cli.output.threads.unwrap_or_else(upkg_fs::default_threads).max(1),
            durability,
            log_copy,
            registry,
            remote,
            command,
        })
    }
}

/// Where fetched parts are kept when `--cache-dir` is not given.
fn default_cache_dir(env: &Environment) -> PathBuf {
    if let Some(dir) = &env.cache {
        return dir.clone();
    }
    if env.root {
        return PathBuf::from("/var/cache/pkgrun");
    }
    match (&env.xdg_cache_home, &env.home) {
        (Some(xdg), _) => xdg.join("pkgrun"),
        (None, Some(home)) => home.join(".cache/pkgrun"),
        (None, None) => std::env::temp_dir().join("pkgrun-cache"),
    }
}

fn instance_name(name: &str) -> Result<InstanceName, UsageError> {
    name.parse::<InstanceName>()
        .map_err(|reason| UsageError::new(Reason::InvalidRequest, format!("--instance: {reason}")))
}

fn target_ref(args: TargetArgs) -> Result<TargetRef, UsageError> {
    match (args.target, args.instance) {
        (Some(target), _) => Ok(TargetRef::Dir(target)),
        (None, Some(name)) => Ok(TargetRef::Instance(instance_name(&name)?)),
        (None, None) => Err(UsageError::new(Reason::NoTarget, "give the target with --target DIR or --instance NAME")),
    }
}

fn target_command(command: CommandArgs) -> Result<Command, UsageError> {
    Ok(match command {
        CommandArgs::Uninstall(args) => Command::Uninstall { id: args.id, target: target_ref(args.on)? },
        CommandArgs::Status(args) => Command::Status(target_ref(args)?),
        CommandArgs::Verify(args) => Command::Verify(target_ref(args)?),
        CommandArgs::Repair(args) => Command::Repair(target_ref(args)?),
        CommandArgs::Cleanup(args) => Command::Cleanup(target_ref(args)?),
        CommandArgs::Logs(args) => Command::Logs(target_ref(args)?),
        CommandArgs::Adopt(args) => {
            let version = args.version.parse::<upkg_format::Version>().map_err(|e| {
                UsageError::new(
                    Reason::InvalidRequest,
                    format!("--version: {e} (give the installed product version, like 2.1.0)"),
                )
            })?;
            Command::Adopt {
                target: args.target,
                name: args.instance.as_deref().map(instance_name).transpose()?,
                options: AdoptOptions { product: args.product, version },
            }
        }
        CommandArgs::Instances(args) => match args.action {
            None => Command::Instances,
            Some(InstancesAction::Forget { instance }) => Command::ForgetInstance(instance),
        },
    })
}

fn install_settings(args: crate::args::InstallArgs) -> Result<InstallSettings, UsageError> {
    let name = args.instance.as_deref().map(instance_name).transpose()?;
    let targets = if !args.target.is_empty() {
        if name.is_some() && args.target.len() > 1 {
            return Err(UsageError::new(
                Reason::Usage,
                "--instance NAME names one instance: give one --target DIR with it",
            ));
        }
        Targets::Dirs(args.target)
    } else if let Some(name) = &name {
        Targets::Instance(name.clone())
    } else if args.all_instances {
        Targets::AllInstances
    } else {
        Targets::NoneGiven
    };
    let naming = matches!(targets, Targets::Dirs(_)).then_some(name).flatten();
    Ok(InstallSettings {
        targets,
        name: naming,
        options: InstallOptions {
            no_backup: args.no_backup,
            repair_copy: !args.no_repair_copy,
            allow_downgrade: args.allow_downgrade,
            force: args.force,
            fail_if_in_use: args.fail_if_in_use,
            skip_space_check: args.skip_space_check,
            eula_accepted: false,
        },
        accept_eula: args.accept_eula,
        norestart: args.norestart,
    })
}

/// The JSON document's command (without data) for a command line, whatever
/// happens next: the settings step or the run may fail.
pub fn data_of(cli: &Cli) -> Data {
    match &cli.command {
        Some(CommandArgs::Uninstall(_)) => Data::Uninstall(None),
        Some(CommandArgs::Status(_)) => Data::Status(None),
        Some(CommandArgs::Verify(_)) => Data::Verify(None),
        Some(CommandArgs::Repair(_)) => Data::Repair(None),
        Some(CommandArgs::Cleanup(_)) => Data::Cleanup(None),
        Some(CommandArgs::Logs(_)) => Data::Logs(None),
        Some(CommandArgs::Adopt(_)) => Data::Adopt(None),
        Some(CommandArgs::Instances(args)) => match args.action {
            None => Data::Instances(None),
            Some(InstancesAction::Forget { .. }) => Data::InstancesForget(None),
        },
        None => {
            let a = &cli.action;
            if a.info {
                Data::Info(None)
            } else if a.list {
                Data::List(None)
            } else if a.licence {
                Data::Licence(None)
            } else if a.check {
                Data::Check(None)
            } else if a.estimate.is_some() {
                Data::Estimate(None)
            } else if a.extract.is_some() {
                Data::Extract(None)
            } else if a.plan {
                Data::Plan(None)
            } else if a.rollout_playbook.is_some() {
                Data::RolloutPlaybook(None)
            } else {
                Data::Install(None)
            }
        }
    }
}

//! Why a package's roles cannot make a playbook.

use upkg_format::FailureClass;

/// Why a package's roles cannot make a playbook.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The package declares no `[[rollout]]` role.
    #[error("package {package} declares no [[rollout]] roles: there is no order to roll it out in")]
    NoRoles {
        /// The package id.
        package: String,
    },
    /// A role's name cannot be an inventory group and a playbook string.
    #[error(
        "rollout role {index} is named {name:?}: a role name must be 1 to 64 letters, digits, '.', '_' or '-', \
         starting with a letter or digit (it names the inventory group and appears in the playbook)"
    )]
    RoleName {
        /// Its position (1 for the first role).
        index: usize,
        /// The name.
        name: String,
    },
    /// A role's `serial` is neither a number of hosts nor a percentage.
    #[error(
        "rollout role {role:?} has serial {serial:?}: it must be a number of hosts (1 or more) or a percentage (1% to 100%)"
    )]
    Serial {
        /// The role.
        role: String,
        /// The value.
        serial: String,
    },
    /// Two roles would share an inventory group.
    #[error("rollout roles {first:?} and {second:?} would both use the inventory group {group:?}")]
    SameGroup {
        /// The group.
        group: String,
        /// The first role.
        first: String,
        /// The second role.
        second: String,
    },
}

impl Error {
    /// The failure class: the package is valid, but cannot be rolled out by a
    /// generated playbook, which is a request that cannot be carried out.
    pub fn class(&self) -> FailureClass {
        FailureClass::Usage
    }
}

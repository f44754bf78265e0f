//! The roles checked, and what each becomes.

use std::fmt;

use serde::Serialize;
use upkg_format::Role;

use crate::error::Error;

/// How many hosts of a tier are upgraded at once (Ansible's `serial`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "unit", content = "value", rename_all = "kebab-case")]
pub enum Serial {
    /// A number of hosts (1 or more).
    Hosts(u32),
    /// A percentage of the tier's hosts (1 to 100).
    Percent(u8),
}

impl Serial {
    /// Parses `"2"` or `"50%"`, as the manifest writes it.
    pub fn parse(text: &str) -> Option<Serial> {
        let digits = |t: &str| !t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit());
        match text.strip_suffix('%') {
            Some(percent) if digits(percent) => {
                percent.parse::<u8>().ok().filter(|p| (1..=100).contains(p)).map(Serial::Percent)
            }
            Some(_) => None,
            None if digits(text) => text.parse::<u32>().ok().filter(|n| *n >= 1).map(Serial::Hosts),
            None => None,
        }
    }

    /// Whether every host of the tier is in one batch.
    pub fn is_whole_tier(self) -> bool {
        self == Serial::Percent(100)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Serial::Hosts(n) => write!(f, "{n}"),
            Serial::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// What a role becomes in the playbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum TierKind {
    /// `drain = false`: a load-balanced pool. Each batch is taken out of service,
    /// upgraded, health-checked and brought back together; on a failure every
    /// host of the pool this run upgraded is rolled back, so the pool stays at one version.
    Pool,
    /// `drain = true`: cluster nodes, upgraded a batch at a time (one, usually),
    /// passive nodes first, the workload moved off each node first; a node that
    /// fails is rolled back.
    Cluster,
}

/// One tier of the rollout: a role, in upgrade order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Tier {
    /// The role's name, as the package declares it.
    pub role: String,
    /// The inventory group holding its hosts: the name with `-` and `.` made `_`
    /// (the characters Ansible accepts in group names).
    pub group: String,
    /// Hosts upgraded at once.
    pub serial: Serial,
    /// Pool or cluster.
    pub kind: TierKind,
    /// The role's description, on one line.
    pub description: String,
}

/// Checks the package's roles and says what each becomes, in upgrade order.
pub fn tiers(package: &str, roles: &[Role]) -> Result<Vec<Tier>, Error> {
    if roles.is_empty() {
        return Err(Error::NoRoles { package: package.to_owned() });
    }
    let mut tiers: Vec<Tier> = Vec::with_capacity(roles.len());
    for (index, role) in roles.iter().enumerate() {
        if !is_role_name(&role.name) {
            return Err(Error::RoleName { index: index + 1, name: role.name.clone() });
        }
        let serial = Serial::parse(&role.serial)
            .ok_or_else(|| Error::Serial { role: role.name.clone(), serial: role.serial.clone() })?;
        let group = role.name.replace(['-', '.'], "_");
        if let Some(first) = tiers.iter().find(|t| t.group == group) {
            return Err(Error::SameGroup { group, first: first.role.clone(), second: role.name.clone() });
        }
        tiers.push(Tier {
            role: role.name.clone(),
            group,
            serial,
            kind: if role.drain { TierKind::Cluster } else { TierKind::Pool },
            description: one_line(&role.description),
        });
    }
    Ok(tiers)
}

/// 1 to 64 ASCII letters, digits, `.`, `_` and `-`, starting with a letter or a
/// digit: safe in a YAML string, a Jinja template, a shell word and a group name.
fn is_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A description for a comment: one line, no control characters, at most 200 characters.
fn one_line(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let line: String = words.join(" ").chars().filter(|c| !c.is_control()).collect();
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, serial: &str, drain: bool) -> Role {
        Role { name: name.into(), description: String::new(), serial: serial.into(), drain }
    }

    #[test]
    fn serial_takes_numbers_and_percentages_only() {
        assert_eq!(Serial::parse("1"), Some(Serial::Hosts(1)));
        assert_eq!(Serial::parse("12"), Some(Serial::Hosts(12)));
        assert_eq!(Serial::parse("100%"), Some(Serial::Percent(100)));
        assert_eq!(Serial::parse("5%"), Some(Serial::Percent(5)));
        for bad in ["", "0", "0%", "101%", "+1", "-1", "1.5", "%", "50 %", "1e3", "9999999999", "x"] {
            assert_eq!(Serial::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Serial::Percent(100).to_string(), "100%");
        assert!(Serial::Percent(100).is_whole_tier() && !Serial::Hosts(100).is_whole_tier());
    }

    #[test]
    fn roles_become_tiers_in_order() {
        let tiers = tiers("p", &[role("front-end", "100%", false), role("back.end", "1", true)]).unwrap();
        assert_eq!(tiers[0].group, "front_end");
        assert_eq!(tiers[0].kind, TierKind::Pool);
        assert_eq!(tiers[1].group, "back_end");
        assert_eq!(tiers[1].kind, TierKind::Cluster);
        assert_eq!(tiers[1].serial, Serial::Hosts(1));
    }

    #[test]
    fn a_package_without_roles_has_no_playbook() {
        assert!(matches!(tiers("p", &[]), Err(Error::NoRoles { .. })));
    }

    /// A header is signed, not trusted text: Ansible would template a name like
    /// `{{ lookup('pipe', ...) }}` on the control node.
    #[test]
    fn role_names_that_would_be_templated_or_split_are_refused() {
        for name in ["{{ lookup('pipe', 'id') }}", "a b", "-web", "", "web\nx", "we'b", "web\"", "x$y", &"a".repeat(65)]
        {
            let error = tiers("p", &[role(name, "1", false)]).unwrap_err();
            assert!(matches!(error, Error::RoleName { index: 1, .. }), "{name:?}: {error}");
        }
    }

    #[test]
    fn bad_serials_and_shared_groups_are_refused() {
        assert!(matches!(tiers("p", &[role("web", "all", false)]), Err(Error::Serial { .. })));
        let error = tiers("p", &[role("web-1", "1", false), role("web_1", "1", false)]).unwrap_err();
        assert!(matches!(error, Error::SameGroup { ref group, .. } if group == "web_1"), "{error}");
    }

    #[test]
    fn descriptions_become_one_line() {
        let mut r = role("web", "1", false);
        r.description = "line one\n  line two\t\u{7}end".into();
        assert_eq!(tiers("p", &[r]).unwrap()[0].description, "line one line two \u{7}end".replace('\u{7}', ""));
    }
}

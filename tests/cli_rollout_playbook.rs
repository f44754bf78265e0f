//! `pkgrun PKG --rollout-playbook [FILE]`: the playbook written from the
//! package's signed roles, to a file, to standard output or into the `--json`
//! document, and the refusals. (What the playbook does is proven with real
//! Ansible by `tests/rollout_ansible.rs`.)

mod common;
mod install_support;

use common::{BuildOptions, TestContext, exit, run};
use install_support::acme_service_pack;

#[test]
fn the_playbook_goes_to_a_file_to_standard_output_or_into_the_document() {
    let ctx = TestContext::new();
    let package = acme_service_pack(&ctx);

    let written = run(ctx.pkgrun().arg(&package).args(["--rollout-playbook", "site.yml"]));
    written.assert_success();
    written.assert_stderr_contains(
        "Wrote site.yml: front-end (group front_end, load-balanced pool, 100% at a time), then back-end (group back_end, cluster, 1 at a time).",
    );
    let text = std::fs::read_to_string(ctx.path("site.yml")).expect("read the playbook");
    assert!(text.starts_with("---\n# Rolling update of acme-server-2.2.0-sp1 2.2.0 (build 2200)"), "{text}");
    assert!(text.contains("\n- name: \"front-end (tier 1 of 2): the load-balanced pool"), "{text}");
    assert!(text.contains("\n- name: \"back-end (tier 2 of 2): cluster nodes 1 at a time"), "{text}");

    // Written again, it replaces the file whole, and leaves no temporary behind.
    std::fs::write(ctx.path("site.yml"), "old").expect("write");
    run(ctx.pkgrun().arg(&package).args(["--rollout-playbook", "site.yml", "-q"])).assert_success();
    assert_eq!(std::fs::read_to_string(ctx.path("site.yml")).unwrap(), text);
    assert!(!ctx.root_paths().iter().any(|p| p.contains(".tmp-")), "{:?}", ctx.root_paths());

    // Standard output, and `-`.
    for args in [&["--rollout-playbook"][..], &["--rollout-playbook", "-"]] {
        let printed = run(ctx.pkgrun().arg(&package).args(args));
        printed.assert_success();
        assert_eq!(printed.stdout, text);
    }

    // The document: the tiers, and the playbook itself without a file.
    let data = run(ctx.pkgrun().arg(&package).args(["--rollout-playbook", "--json"])).data();
    assert_eq!(data["package"]["id"], "acme-server-2.2.0-sp1");
    assert_eq!(data["tiers"][0]["role"], "front-end");
    assert_eq!(data["tiers"][0]["group"], "front_end");
    assert_eq!(data["tiers"][0]["kind"], "pool");
    assert_eq!(data["tiers"][0]["serial"], serde_json::json!({"unit": "percent", "value": 100}));
    assert_eq!(data["tiers"][1]["kind"], "cluster");
    assert_eq!(data["tiers"][1]["serial"], serde_json::json!({"unit": "hosts", "value": 1}));
    assert_eq!(data["playbook"]["to"], "document");
    assert_eq!(data["playbook"]["text"], text.as_str());
    let data = run(ctx.pkgrun().arg(&package).args(["--rollout-playbook", "other.yml", "--json"])).data();
    assert_eq!(data["playbook"], serde_json::json!({"to": "file", "path": "other.yml"}));
}

/// Roles are read from the signed header whoever signed it, as `--info` does:
/// the hosts' pkgrun verifies the package and its signer when it installs.
#[test]
fn a_package_without_roles_has_no_playbook() {
    let ctx = TestContext::new();
    ctx.small_tree("small");
    ctx.build("small", "small.upkg", &BuildOptions::default());
    let refused = run(ctx.pkgrun().arg("small.upkg").args(["--rollout-playbook", "site.yml", "--json"]));
    refused.assert_code(exit::USAGE);
    let document = refused.json();
    assert_eq!(document["command"], "rollout-playbook");
    assert_eq!(document["error"]["reason"], "rollout-roles");
    assert!(document["error"]["message"].as_str().unwrap().contains("declares no [[rollout]] roles"));
    assert!(!ctx.path("site.yml").exists(), "a refused playbook was written");
}

/// A role name that a playbook would template (a header is signed, not trusted
/// text) is refused, naming it.
#[test]
fn a_role_name_that_is_not_a_group_name_is_refused() {
    let ctx = TestContext::new();
    ctx.small_tree("small");
    let manifest = std::fs::read_to_string(ctx.path("small/package.toml")).unwrap();
    let with_role = format!("{manifest}\n[[rollout]]\nname = \"{{{{ lookup('pipe', 'id') }}}}\"\n");
    std::fs::write(ctx.path("small/package.toml"), with_role).unwrap();
    ctx.build("small", "small.upkg", &BuildOptions::default());
    let refused = run(ctx.pkgrun().arg("small.upkg").arg("--rollout-playbook"));
    refused.assert_code(exit::USAGE);
    refused.assert_stderr_contains("rollout role 1 is named \"{{ lookup('pipe', 'id') }}\"");
    assert!(refused.stdout.is_empty(), "{}", refused.render());
}

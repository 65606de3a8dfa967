//! The registry docs: `.web-docs/` is what `scripts/web-docs.py` compiles from `docs/` (the file is
//! committed, so a docs change without a re-run fails here), and every component the plugin binary
//! lists in `describe` has its page, named after the component (`docs/builders/qemu-rs.mdx` for the
//! plugin's own builder).

use std::process::Command;

use qemu_rs_tests::{plugin_binary, workspace_root};

#[test]
fn web_docs_are_compiled_from_docs() {
    let out = Command::new(workspace_root().join("scripts/web-docs.py")).arg("--check").output().expect("python3");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_component_has_a_page() {
    let out = Command::new(plugin_binary()).arg("describe").output().expect("describe");
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).expect("describe JSON");
    let root = workspace_root();
    let mut missing = Vec::new();
    for (key, dir) in [
        ("builders", "builders"),
        ("provisioners", "provisioners"),
        ("post_processors", "post-processors"),
        ("datasources", "datasources"),
    ] {
        for name in d[key].as_array().expect("a list") {
            let name = name.as_str().unwrap();
            let slug = if name == packer_sdk::plugin::DEFAULT_NAME { "qemu-rs" } else { name };
            for page in [
                root.join(format!("docs/{dir}/{slug}.mdx")),
                root.join(format!(
                    ".web-docs/components/{}/{slug}/README.md",
                    dir.trim_end_matches('s').replace("datasource", "data-source")
                )),
            ] {
                if !page.is_file() {
                    missing.push(page.display().to_string());
                }
            }
        }
    }
    assert!(missing.is_empty(), "components without docs: {missing:?}");
}

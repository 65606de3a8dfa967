//! `packer validate` with Debian's real Packer 1.6.6 and our plugin installed under its 1.6.6
//! names: valid templates pass, and every kind of mistake fails naming the option.

use qemu_rs_tests::PackerEnv;

/// A valid builder body; `extra` is spliced in.
fn hcl_template(extra_builder: &str, provisioner_body: &str) -> String {
    format!(
        r#"
source "qemu-rs" "t" {{
  iso_url          = "https://example.invalid/installer.iso"
  iso_checksum     = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
  output_directory = "out-t"
  ssh_username     = "root"
  ssh_password     = "packer"
  boot_command     = ["e<down><down><end> seed=http://{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}/<f10>"]
  {extra_builder}
}}

build {{
  sources = ["source.qemu-rs.t"]
  provisioner "qemu-rs-shell" {{
    {provisioner_body}
  }}
}}
"#
    )
}

fn json_template(extra_builder: &str, provisioner_body: &str) -> String {
    format!(
        r#"{{
  "builders": [{{
    "type": "qemu-rs",
    "iso_url": "https://example.invalid/installer.iso",
    "iso_checksum": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "output_directory": "out-t",
    "ssh_username": "root",
    "ssh_password": "packer",
    "boot_command": ["e<down><down><end> seed=http://{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}/<f10>"]
    {extra_builder}
  }}],
  "provisioners": [{{
    "type": "qemu-rs-shell"
    {provisioner_body}
  }}]
}}"#
    )
}

fn validate(env: &PackerEnv, name: &str, content: &str) -> qemu_rs_tests::PackerOutput {
    let path = env.write(name, content);
    env.run(&["validate", path.to_str().expect("utf-8 path")])
}

fn assert_fails_naming(out: &qemu_rs_tests::PackerOutput, names: &[&str]) {
    assert!(!out.success, "packer validate should fail, it printed:\n{}", out.text);
    for n in names {
        assert!(out.text.contains(n), "the error should name `{n}`; packer printed:\n{}", out.text);
    }
}

#[test]
fn valid_hcl2_template_passes() {
    let env = PackerEnv::new();
    let out = validate(&env, "ok.pkr.hcl", &hcl_template("", r#"inline = ["echo hello"]"#));
    assert!(out.success, "packer validate failed:\n{}", out.text);
}

#[test]
fn valid_json_template_passes() {
    let env = PackerEnv::new();
    let out = validate(&env, "ok.json", &json_template("", r#", "inline": ["echo hello"]"#));
    assert!(out.success, "packer validate failed:\n{}", out.text);
}

#[test]
fn unknown_key_fails_in_hcl2() {
    let env = PackerEnv::new();
    let out = validate(&env, "bad.pkr.hcl", &hcl_template("bogus_option = 1", r#"inline = ["echo hello"]"#));
    assert_fails_naming(&out, &["bogus_option"]);
}

#[test]
fn unknown_key_fails_in_json() {
    let env = PackerEnv::new();
    let out = validate(&env, "bad.json", &json_template(r#", "bogus_option": 1"#, r#", "inline": ["echo hello"]"#));
    assert_fails_naming(&out, &["bogus_option"]);
}

#[test]
fn unknown_provisioner_key_fails_in_json() {
    let env = PackerEnv::new();
    let out = validate(&env, "bad.json", &json_template("", r#", "inline": ["echo"], "frobnicate": true"#));
    assert_fails_naming(&out, &["frobnicate"]);
}

#[test]
fn wrong_type_fails_in_hcl2_and_json() {
    let env = PackerEnv::new();
    let out = validate(&env, "bad.pkr.hcl", &hcl_template(r#"memory = "lots""#, r#"inline = ["echo"]"#));
    assert_fails_naming(&out, &["memory"]);
    let out = validate(&env, "bad.json", &json_template(r#", "memory": "lots""#, r#", "inline": ["echo"]"#));
    assert_fails_naming(&out, &["memory"]);
}

#[test]
fn several_bad_values_are_all_reported() {
    let env = PackerEnv::new();
    let bad = r#"
  format         = "vmdk-ish"
  disk_interface = "floppy"
  accelerator    = "warp-drive"
  disk_size      = "huge"
  boot_wait      = "soon"
"#;
    let out = validate(&env, "bad.pkr.hcl", &hcl_template(bad, r#"inline = ["echo"]"#));
    assert_fails_naming(&out, &["format", "disk_interface", "accelerator", "disk_size", "boot_wait"]);
    let bad_json = r#", "format": "vmdk-ish", "disk_interface": "floppy", "accelerator": "warp-drive",
        "disk_size": "huge", "boot_wait": "soon""#;
    let out = validate(&env, "bad.json", &json_template(bad_json, r#", "inline": ["echo"]"#));
    assert_fails_naming(&out, &["format", "disk_interface", "accelerator", "disk_size", "boot_wait"]);
}

#[test]
fn missing_iso_url_fails() {
    let env = PackerEnv::new();
    let t = hcl_template("", r#"inline = ["echo"]"#)
        .replace(r#"iso_url          = "https://example.invalid/installer.iso""#, "");
    let out = validate(&env, "bad.pkr.hcl", &t);
    assert_fails_naming(&out, &["iso_url"]);
}

#[test]
fn bad_boot_command_token_fails() {
    let env = PackerEnv::new();
    let t = hcl_template("", r#"inline = ["echo"]"#).replace("<f10>", "<f10><notakey>");
    let out = validate(&env, "bad.pkr.hcl", &t);
    assert_fails_naming(&out, &["boot_command", "notakey"]);
}

#[test]
fn empty_shell_provisioner_fails() {
    let env = PackerEnv::new();
    let out = validate(&env, "bad.pkr.hcl", &hcl_template("", ""));
    assert_fails_naming(&out, &["inline"]);
}

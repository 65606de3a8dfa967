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

/// A JSON template in the pattern of public `qemu` templates: user variables and functions in
/// sizes, numbers, bools, qemuargs, boot_command, names and the provisioner.
fn json_template_with_user_variables(extra_builder: &str) -> String {
    format!(
        r#"{{
  "variables": {{
    "disk_size": "8192", "memory": "1024", "cpus": "2", "headless": "true", "name": "deb",
    "ssh_password": "packer", "preseed": "preseed.cfg", "iso_checksum": "sha256:0000000000000000000000000000000000000000000000000000000000000000"
  }},
  "builders": [{{
    "type": "qemu-rs",
    "iso_url": "https://example.invalid/installer.iso",
    "iso_checksum": "{{{{ user `iso_checksum` }}}}",
    "output_directory": "out-{{{{ user `name` }}}}-{{{{ timestamp }}}}",
    "vm_name": "{{{{ build_name }}}}-{{{{ isotime `20060102` }}}}.qcow2",
    "disk_size": "{{{{ user `disk_size` }}}}",
    "memory": "{{{{ user `memory` }}}}",
    "cpus": "{{{{ user `cpus` }}}}",
    "headless": "{{{{ user `headless` }}}}",
    "http_directory": "{{{{ template_dir }}}}/http",
    "ssh_username": "root",
    "ssh_password": "{{{{ user `ssh_password` }}}}",
    "shutdown_command": "echo '{{{{ user `ssh_password` }}}}' | sudo -S shutdown -P now",
    "qemuargs": [["-m", "{{{{ user `memory` }}}}M"], ["-smp", "{{{{ user `cpus` }}}}"]],
    "boot_command": ["<esc> auto url=http://{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}/{{{{ user `preseed` }}}}<enter>"]
    {extra_builder}
  }}],
  "provisioners": [{{
    "type": "qemu-rs-shell",
    "inline": ["echo {{{{ user `name` }}}} {{{{ build_name }}}} {{{{ build `Host` }}}}"],
    "execute_command": "echo '{{{{ user `ssh_password` }}}}' | sudo -S sh -c '{{{{ .Vars }}}} {{{{ .Path }}}}'"
  }}]
}}"#
    )
}

#[test]
fn json_template_with_user_variables_and_functions_passes() {
    let env = PackerEnv::new();
    // http_directory is "{{ template_dir }}/http": it must exist next to the template.
    env.write("http/preseed.cfg", "");
    let out = validate(&env, "vars.json", &json_template_with_user_variables(""));
    assert!(out.success, "packer validate failed:\n{}", out.text);
}

#[test]
fn json_template_errors_in_interpolation_name_the_option() {
    let env = PackerEnv::new();
    env.write("http/preseed.cfg", "");
    let t =
        json_template_with_user_variables(r#", "net_device": "{{ env `HOME` }}", "vnc_bind_address": "{{ .Name }}""#);
    let out = validate(&env, "bad.json", &t);
    assert_fails_naming(
        &out,
        &["net_device", "env vars are not allowed here", "vnc_bind_address", "only available in boot_command"],
    );
}

#[test]
fn three_different_mistakes_are_all_printed() {
    // A decode error, a second decode error and a validation error of another option.
    let env = PackerEnv::new();
    let bad = r#"
  format         = "vmdkx"
  disk_interface = "floppy"
"#;
    let t = hcl_template(bad, r#"inline = ["echo"]"#).replace("<f10>", "<f10><wiat>");
    let out = validate(&env, "bad.pkr.hcl", &t);
    assert_fails_naming(
        &out,
        &["3 error(s) occurred", "format", "vmdkx", "disk_interface", "floppy", "boot_command", "<wiat>"],
    );
    let t = json_template(r#", "format": "vmdkx", "disk_interface": "floppy""#, r#", "inline": ["echo"]"#)
        .replace("<f10>", "<f10><wiat>");
    let out = validate(&env, "bad.json", &t);
    assert_fails_naming(
        &out,
        &["3 error(s) occurred", "format", "vmdkx", "disk_interface", "floppy", "boot_command", "<wiat>"],
    );
}

/// A private key that cannot be used fails `packer validate`, not the build minutes later: one that
/// does not parse, one protected by a passphrase (with the way out), a public key; a good key passes.
#[test]
fn unusable_ssh_private_key_file_fails_validate() {
    let env = PackerEnv::new();
    let keygen = |name: &str, passphrase: &str| {
        let path = env.path().join(name);
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", passphrase, "-f"])
            .arg(&path)
            .status()
            .expect("run ssh-keygen");
        assert!(st.success(), "ssh-keygen failed");
        path
    };
    let good = keygen("id_good", "");
    let encrypted = keygen("id_encrypted", "a passphrase");
    let garbage =
        env.write("id_garbage", "-----BEGIN OPENSSH PRIVATE KEY-----\nbm9wZQ==\n-----END OPENSSH PRIVATE KEY-----\n");
    let key_option = |p: &std::path::Path| format!("ssh_private_key_file = {}", qemu_rs_tests::hcl_str(p));

    let out = validate(&env, "good.pkr.hcl", &hcl_template(&key_option(&good), r#"inline = ["echo"]"#));
    assert!(out.success, "a usable key was refused:\n{}", out.text);
    let cases = [
        (garbage.clone(), "not a usable private key"),
        (encrypted, "ssh_agent_auth"),
        (good.with_extension("pub"), "not a private key"),
        (env.path().join("id_missing"), "cannot read"),
    ];
    for (path, fragment) in cases {
        let out = validate(&env, "bad.pkr.hcl", &hcl_template(&key_option(&path), r#"inline = ["echo"]"#));
        assert_fails_naming(&out, &["ssh_private_key_file", fragment]);
    }
}

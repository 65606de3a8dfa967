//! `post-processor "qemu-rs-convert"` through real Packer 1.6.6 (a legacy
//! `packer-post-processor-qemu-rs-convert` plugin) after a real qemu-rs build of the test guest's
//! cloud image: the vmdk, vhdx and raw.xz outputs pass `qemu-img check`/`info`, hold the same disk
//! as the input (`qemu-img compare`), their sums verify, and the raw image boots to SSH again.

use std::fs;
use std::path::Path;
use std::process::Command;

use qemu_rs_tests::e2e::{cloud_source, guest_key, Build};
use qemu_rs_tests::{guest_dir, guest_slot, hcl_str};

/// The standard output of `cmd`, which must succeed.
fn run_ok(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&packer_acctest::run_ok(cmd).stdout).into_owned()
}

fn image_info(path: &Path, format: &str) -> serde_json::Value {
    let out = run_ok(Command::new("qemu-img").args(["info", "-f", format, "--output=json"]).arg(path));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn a_build_converted_to_vmdk_vhdx_and_raw_xz_by_packer_1_6() {
    let guest = guest_dir();
    let (pubkey, key) = guest_key(&guest);
    let _slot = guest_slot();
    let b = Build::new();
    let out = b.out_dir();
    let converted = b.env.path().join("converted");
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.cloud"]
  provisioner "qemu-rs-shell" {{
    inline = [
      "mkdir -p /mnt/tgdata && mount \"$(findfs LABEL=tgdata)\" /mnt/tgdata",
      "echo QEMU-RS-CONVERT-MARKER > /mnt/tgdata/convert.txt",
      "umount /mnt/tgdata && sync",
    ]
  }}
  post-processor "qemu-rs-convert" {{
    formats             = ["vmdk", "vhdx", "raw.xz"]
    output_directory    = {converted}
    keep_input_artifact = true
  }}
}}
"#,
        source = cloud_source(&guest.join("testguest.qcow2"), &out, &pubkey, &key, ""),
        converted = hcl_str(&converted),
    );
    let o = b.run_ok(&template);
    assert!(o.text.contains("qemu-rs-convert"), "{}", o.text);
    let input = out.join("cloud.qcow2");
    assert!(input.is_file(), "keep_input_artifact = true keeps the build's disk:\n{}", o.text);

    let mut names: Vec<String> =
        fs::read_dir(&converted).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["SHA256SUMS", "cloud.raw.xz", "cloud.vhdx", "cloud.vmdk"]);
    // Packer lists the post-processor's artifact
    assert!(o.text.contains("cloud.vmdk") && o.text.contains("cloud.raw.xz"), "{}", o.text);
    run_ok(Command::new("sha256sum").args(["-c", "SHA256SUMS"]).current_dir(&converted));

    let virtual_size = image_info(&input, "qcow2")["virtual-size"].as_u64().unwrap();
    for (file, format) in [("cloud.vmdk", "vmdk"), ("cloud.vhdx", "vhdx")] {
        let p = converted.join(file);
        run_ok(Command::new("qemu-img").args(["check", "-f", format]).arg(&p));
        let info = image_info(&p, format);
        assert_eq!(info["virtual-size"].as_u64(), Some(virtual_size), "{file}: {info}");
        if format == "vmdk" {
            assert_eq!(info["format-specific"]["data"]["create-type"], "streamOptimized", "{info}");
        }
        run_ok(Command::new("qemu-img").args(["compare", "-f", "qcow2", "-F", format]).arg(&input).arg(&p));
    }
    // raw.xz: a valid xz stream holding the raw disk
    let raw = b.env.path().join("cloud.raw");
    let xz = run_ok(Command::new("sh").arg("-c").arg(format!(
        "xz -t {x} && xz -dc {x} > {r} && echo ok",
        x = converted.join("cloud.raw.xz").display(),
        r = raw.display()
    )));
    assert_eq!(xz.trim(), "ok");
    assert_eq!(fs::metadata(&raw).unwrap().len(), virtual_size);
    run_ok(Command::new("qemu-img").args(["compare", "-f", "qcow2", "-F", "raw"]).arg(&input).arg(&raw));

    // the raw image boots again and holds the provisioned file
    let b2 = Build::new();
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.cloud"]
  provisioner "qemu-rs-shell" {{
    inline = [
      "mkdir -p /mnt/tgdata && mount \"$(findfs LABEL=tgdata)\" /mnt/tgdata",
      "echo found: $(cat /mnt/tgdata/convert.txt)",
    ]
  }}
}}
"#,
        source = cloud_source(&raw, &b2.out_dir(), &pubkey, &key, "")
    );
    let o = b2.run_ok(&template);
    assert!(o.text.contains("found: QEMU-RS-CONVERT-MARKER"), "{}", o.text);
}

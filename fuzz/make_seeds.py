#!/usr/bin/env python3
"""Writes the seed corpus (corpus/<target>/) from the repository's real inputs: the compat
templates (tests/compat/), the golden protocol captures (../shared/testdata/protocol/, or
$PROTOCOL_TESTDATA) and hand-written cases. Run from fuzz/; the output is committed."""
import glob
import hashlib
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PROTO = os.environ.get("PROTOCOL_TESTDATA") or next(
    (p for p in [os.path.join(REPO, "..", "shared", "testdata", "protocol"), "/work/shared/testdata/protocol"]
     if os.path.isdir(p)), None)


def put(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def hex_values(path):
    """The hex of a capture file: each run of hex lines after a comment is one value."""
    values, cur = [], []
    for line in open(path):
        line = line.strip()
        if line.startswith("#"):
            if cur:
                values.append(bytes.fromhex("".join(cur)))
                cur = []
        elif line:
            cur.append(line)
    if cur:
        values.append(bytes.fromhex("".join(cur)))
    return values


def hex_all(path):
    return bytes.fromhex("".join(l.strip() for l in open(path) if not l.startswith("#")))


def strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, list):
        for x in obj:
            yield from strings(x)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from strings(v)


templates, boot_commands, builders = set(), set(), []
for path in sorted(glob.glob(os.path.join(REPO, "tests", "compat", "*"))):
    if path.endswith(".json") and not path.endswith(".vars.json"):
        doc = json.load(open(path))
        for b in doc.get("builders", []):
            builders.append(b)
            if "boot_command" in b:
                boot_commands.add("".join(b["boot_command"]))
        templates.update(s for s in strings(doc) if "{{" in s)
    elif path.endswith(".hcl"):
        text = open(path).read()
        for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', text):
            s = m.group(1)
            if "{{" in s:
                templates.add(s)
            if "<" in s and ">" in s:
                boot_commands.add(s)

for t in templates:
    put("template", t)
for extra in ["{{ user `a` }}-{{ timestamp }}", "{{ if eq (user `a`) \"1\" }}one{{ else }}other{{ end }}",
              "{{ range $i, $x := split (user `list`) \",\" -1 }}{{ $i }}={{ $x }} {{ end }}",
              "{{- printf \"%05d|%q\" 42 `x` -}}", "{{ with $v := .Name }}{{ $v | upper }}{{ end }}",
              "{{ isotime \"2006-01-02T15:04:05Z07:00\" }} {{ strftime \"%Y%m%d\" }}",
              "{{ index (split \"a,b\" \",\" 2) 1 }} {{ len \"abc\" }} {{ replace_all \"a\" \"b\" \"aaa\" }}",
              "{{/* comment */}}{{ and 1 0 }}{{ or 0 \"x\" }}{{ not true }}{{ html \"<a>\" }}{{ js \"'\" }}"]:
    put("template", extra)

for b in boot_commands:
    put("boot_command", b)
for extra in ["<esc><wait>auto url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg<enter>",
              "<leftCtrlOn>c<leftCtrlOff><wait5s><f10><wait1m30s><waitX>", "<spacebar><bs><del><tab><pageUp><home>",
              "root<enter><wait10>setup-alpine -q<enter>\tstep description\n<wait>\n", "<entr><wait0><leftShiftOn>"]:
    put("boot_command", extra)

for b in builders:
    b = {k: v for k, v in b.items() if k not in ("type", "name")}
    text = json.dumps(b)
    put("config_prepare", b"\x00" + text.encode())
    put("config_prepare", b"\x02" + text.encode())
    put("config_prepare", b"\x01" + json.dumps({"value": b, "type": ["object", {}]}).encode())
put("config_prepare", b"\x03" + json.dumps({"value": {"disk_size": "20G", "ssh_private_key_file": "/dev/null",
                                                       "boot_wait": "-1s", "qemuargs": [["-m", "1024"]]}}).encode())

for s in ["1m30s", "100ms", "-1.5h", "0", "+.5us", "1µs2ns", "2562047h47m16.854775807s", "9223372036854775807ns",
          "10G", "10240", "1TiB", " 512 MB ", "16P", "1e3", "0x10"]:
    put("duration_size", s)

sha = hashlib.sha256(b"iso").hexdigest()
for s in [f"debian.iso\n{sha}  debian.iso\n{sha} *other.iso\n",
          f"sha256:{sha}\nSHA256 (debian.iso) = {sha}\nMD5 (./x/debian.iso) = {hashlib.md5(b'').hexdigest()}\n",
          "file:https://example.com/SHA256SUMS\n", "md5:file:./MD5SUMS\nd41d8cd98f00b204e9800998ecf8427e  ./debian.iso",
          "none\n", f"{sha[:40]}\n{sha[:40]}\tdebian.iso\r\n"]:
    put("checksum", s)

for s in ["/preseed.cfg", "/a/b%20c?x=1#frag", "/../etc/passwd", "/%2e%2e/%2E%2E/etc/passwd", "/./a//b/",
          "/a/%2f..%2f..", "//etc/passwd", "/%C3%A9t%C3%A9", "/a\\..\\b", "/%00", ""]:
    put("http_path", s)

put("spec_encode", bytes(range(64)))
put("spec_encode", b"\x05qemu\x01\x02\x03disk_size\x00\x00\x04boot\x01\x01\x02xx\x00\x00\x00" * 3)

if PROTO:
    for v in hex_values(os.path.join(PROTO, "gob-commandfinished.hex")):
        put("gob_exit_status", v)
    for p in sorted(glob.glob(os.path.join(PROTO, "configspec-gob-*.hex")) +
                    glob.glob(os.path.join(PROTO, "cty-type-gob-*.hex"))):
        put("gob_spec", hex_all(p))
    for p in sorted(glob.glob(os.path.join(PROTO, "rpc-*.hex"))):
        put("msgpack", hex_all(p))
    for p in sorted(glob.glob(os.path.join(PROTO, "sessions", "*.c2p.hex"))):
        data = hex_all(p)
        put("yamux_broker", data[:4096])
else:
    print("protocol testdata not found: gob, msgpack and yamux seeds skipped", file=sys.stderr)

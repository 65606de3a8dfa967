#!/usr/bin/env python3
"""qemu-rs against Packer's built-in `qemu` builder, side by side, on the test guest (TCG).

For each scenario both builders run alternately (A B A B ...) after one warm-up pair, on the twin
templates of images/testguest (same guest, same provisioner, only the source type and the options the
reference lacks differ; qemu-rs runs with its defaults, the reference with `accelerator = "tcg"`); the
`debian` scenario builds the Debian 12 cloud image of images/debian-cloud with the twins in
bench/templates/ (a real distribution: systemd, cloud-init, OpenSSH). `warm-first` times the first
qemu-rs ISO build with `warm_start = true` (it saves the machine) against the same build without it;
`warm` a rebuild restored from a warm-start cache filled once before, against Packer's builder.
Every packer stdout line is timestamped as it arrives; a thread follows the guest's serial log for its
`testguest: READY` line (sshd up) and samples the plugin process's peak RSS (VmHWM) from /proc. For
qemu-rs builds the plugin's own log (QEMU_RS_LOG_PATH, debug level) gives the time of every build
step: the phase breakdown. The typing scenarios compare the kernel command line the guest received
with the one typed and count the lost keys of every run, and measure GRUB's own pace with QEMU alone
(the floor no typist can beat). Prints the tables and writes bench/results/latest.json.

    bench/run.py [--quick] [--pairs N] [--scenarios iso,cloud,debian,warm-first,warm,typing,typing-long]
                 [--typing-runs N]
                 [--builders qemu-rs,reference] [--plugin PATH] [--log-dir DIR] [--no-save] [--no-floor]
                 [--report JSON]

The plugin defaults to $CARGO_TARGET_DIR/release/packer-plugin-qemu-rs (else target/release/...), the test
guest to $TESTGUEST_DIR (else images/testguest/out).
"""

import argparse
import datetime
import difflib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUEST = REPO / "images" / "testguest"
# the built test guest (TESTGUEST_DIR, as for the tests)
OUT = Path(os.environ.get("TESTGUEST_DIR") or GUEST / "out")
# the Debian cloud image of images/debian-cloud (`make debian-cloud`), for the `debian` scenario
DEBIAN_IMAGE = REPO / "images" / "debian-cloud" / "out" / "debian-12-genericcloud-amd64.qcow2"
BENCH_TEMPLATES = REPO / "bench" / "templates"
# what the guest's serial console shows when sshd is up, per scenario kind
# (systemd prints "Starting ssh.service …" before and "Started ssh.service …" once sshd listens)
READY = {"testguest": re.compile(rb"testguest: READY"), "debian": re.compile(rb"Started \S*ssh\.service")}
BUILD_SCENARIOS = ("iso", "cloud", "debian", "warm-first", "warm")
# the warm-start scenarios fill the two builder slots of a scenario differently: `warm-first` is the
# first build with `warm_start = true` (it saves the machine) against the same build without it,
# `warm` a rebuild restored from a cache filled once before against Packer's builder
SLOT_LABELS = {
    "warm-first": {"qemu-rs": "qemu-rs, warm_start, first build", "reference": "qemu-rs without warm_start"},
    "warm": {"qemu-rs": "qemu-rs, warm_start, restored", "reference": "reference"},
}
BUILDERS = ("qemu-rs", "reference")

# what each builder prints at the moments we time
MARKS = {
    "qemu-rs": {
        "qemu_start": "Starting QEMU",
        "ssh": "Connected to SSH",
        "shutdown": ("Gracefully halting", "Pressing the ACPI power button"),
        "typing": "Typing the boot command",
        "typed": "Waiting for SSH",
    },
    "reference": {
        "qemu_start": "Starting VM",
        "ssh": "Connected to SSH",
        "shutdown": ("Gracefully halting",),
        "typing": "Typing the boot command",
        "typed": "Waiting for SSH",
    },
}

# Kernel parameters typed after `seed=URL`: the kernel ignores unknown parameters with a dot (module
# parameters of no module) and does not hand them to init. Mixed case, shifted symbols, digits; no
# character that GRUB's script parser, HCL or the boot command grammar would interpret.
SHORT_PARAMS = " ".join(
    [
        "tg.alpha=AbCdEfGhIjKlMnOpQrStUvWxYz-0123456789",
        "tg.beta=zyxwvutsrqponmlkjihgfedcba_ZYXWVUTSRQPONMLKJIHGFEDCBA",
        "tg.gamma=a.b,c:d/e+f%g@h~i^j-k_l=m",
        "tg.delta=The-Quick-Brown-Fox-Jumps-Over-The-Lazy-Dog,1234567890",
        "tg.eps=MiXeD~CaSe^WiTh@SyMbOlS+%2F:/path/to/some.where_else",
        "tg.zeta=end-of-the-300-character-boot-command-XYZ",
    ]
)
# a kickstart-style line (installer options as an unattended install types them), 450+ characters
LONG_PARAMS = " ".join(
    [
        "tg.inst.ks=http://10.0.2.2:8080/kickstart/Fedora-Server-40_x86-64.cfg",
        "tg.inst.repo=https://dl.example.org/pub/fedora/linux/releases/40/Everything/x86_64/os/",
        "tg.ip=10.0.2.15::10.0.2.2:255.255.255.0:TestGuest.Example.COM:eth0:none",
        "tg.nameserver=10.0.2.3",
        "tg.inst.stage2=hd:LABEL=Fedora-S-dvd-x86_64-40",
        "tg.console=ttyS0,115200n8",
        "tg.rd.luks=0 tg.rd.lvm.lv=VolGroup00/LogVol_Root",
        "tg.inst.sshd=1",
        "tg.user=Packer:Pa55w0rd!@%^~+=:,./_-",
        "tg.end=END-of-the-long-KICKSTART-line_0123456789",
    ]
)
TYPING = {"typing": SHORT_PARAMS, "typing-long": LONG_PARAMS}
# keys typed besides the parameters: e <down> <down> <end> and <f10>
TYPING_EXTRA_KEYS = 5
# what the twin templates' boot command types before the parameters (the HTTP port has 4 digits)
TYPED_PREFIX = " seed=http://10.0.2.2:8000/ "
# the typing tables' row for the guest's own pace (`typing_floor`)
FLOOR = "GRUB alone (the floor)"
# keys per burst of the floor measurement: larger bursts lose keys (8: 1 of 507, 12: 3 and 6 in one run
# each, 2026-12-01), 4 lost none
FLOOR_BURST = 4


def plugin_pids(packer_pid):
    """Pids of plugin processes under packer, at any depth (Packer 1.6.6 re-executes itself under
    panicwrap, so the plugins are grandchildren of the process we start): ours
    (packer-builder-qemu-rs) or the reference (`packer plugin packer-builder-qemu`)."""
    parent = {}
    cmds = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            parent[int(d)] = int(stat[stat.rfind(")") + 2 :].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmds[int(d)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue

    def under_packer(pid):
        for _ in range(16):
            pid = parent.get(pid)
            if pid is None:
                return False
            if pid == packer_pid:
                return True
        return False

    return [
        pid
        for pid, cmd in cmds.items()
        if ("packer-builder-qemu-rs" in cmd or "plugin packer-builder-qemu" in cmd) and under_packer(pid)
    ]


def vm_hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Watcher(threading.Thread):
    """Follows the serial log for READY and samples the plugin's peak RSS every 20 ms."""

    def __init__(self, serial, packer_pid, ready=READY["testguest"]):
        super().__init__(daemon=True)
        self.serial = serial
        self.ready = ready
        self.packer_pid = packer_pid
        self.ready_at = None  # time.time()
        self.peak_rss_kib = 0
        self.stop = False

    def run(self):
        pids = []
        while not self.stop:
            if self.ready_at is None:
                try:
                    if self.ready.search(Path(self.serial).read_bytes()):
                        self.ready_at = time.time()
                except OSError:
                    pass
            if not pids:
                pids = plugin_pids(self.packer_pid)
            for p in pids:
                v = vm_hwm_kib(p)
                if v:
                    self.peak_rss_kib = max(self.peak_rss_kib, v)
            time.sleep(0.02)


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\s+(\w+)\s+(.*)$")


def log_time(stamp):
    """Seconds since the epoch of a tracing timestamp (`2026-11-30T22:10:00.123456Z`)."""
    day, _, frac = stamp.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(day, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def phases(plugin_log, t_start, t_ready, t_end):
    """Seconds spent in each build step of a qemu-rs build (from the plugin's debug log), with the
    wait for SSH split into the guest's boot (until sshd is up) and sshd up -> connected, and the
    shutdown step split into the guest's power-off (until QEMU exited) and the rest."""
    try:
        text = Path(plugin_log).read_text(errors="replace")
    except OSError:
        return {}
    out = {}
    start = {}
    qemu_end = None
    first = None
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if not m:
            continue
        t = log_time(m.group(1))
        first = first if first is not None else t
        rest = m.group(3)
        s = re.search(r'step start step="([^"]+)"', rest) or re.search(r"step start step=(\S+)", rest)
        e = re.search(r'step end step="([^"]+)"', rest) or re.search(r"step end step=(\S+)", rest)
        if s:
            start[s.group(1)] = t
        elif e and e.group(1) in start:
            out[e.group(1)] = t - start[e.group(1)]
            if e.group(1) == "wait for ssh" and t_ready:
                out["wait for ssh: guest boot to sshd up"] = max(0.0, t_ready - start["wait for ssh"])
                out["wait for ssh: sshd up to connected"] = t - t_ready
            if e.group(1) == "shutdown" and qemu_end:
                out["shutdown: until QEMU exited"] = qemu_end - start["shutdown"]
                out["shutdown: after QEMU exited"] = t - qemu_end
        elif "QEMU ended" in rest:
            qemu_end = t
    if start and t_start:
        out = {"packer and plugin start, prepare": max(0.0, min(start.values()) - t_start)} | out
    if start and t_end:
        last = max(start.values())
        ends = [start[k] + out[k] for k in start if k in out]
        if ends:
            out["cleanups, artifact, packer exit"] = max(0.0, t_end - max(ends + [last]))
    return out


def run_build(builder, template, work, log_dir=None, label="", variables=None, ready=READY["testguest"], cache=None):
    """One packer build; returns its measurements. `variables`: the template's -var values besides
    output_dir and serial_log (default: guest_dir, for the test-guest templates); `cache`: the
    PACKER_CACHE_DIR (default: a fresh one in `work`)."""
    out_dir = work / "output"
    serial = work / "serial.log"
    plugin_log = work / "plugin.log"
    env = dict(os.environ)
    env.update(
        CHECKPOINT_DISABLE="1",
        PACKER_NO_COLOR="1",
        PACKER_CACHE_DIR=str(cache or work / "packer_cache"),
        PACKER_PLUGIN_PATH=str(work.parent / "plugins"),
        QEMU_RS_LOG_PATH=str(plugin_log),
        RUST_LOG="debug,yamux=info,russh=info",
    )
    cmd = ["packer", "build", "-color=false", "-var", f"output_dir={out_dir}", "-var", f"serial_log={serial}"]
    for k, v in (variables if variables is not None else {"guest_dir": OUT}).items():
        cmd += ["-var", f"{k}={v}"]
    cmd.append(str(template))
    start = time.monotonic()
    wall_start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=work, text=True)
    watcher = Watcher(serial, proc.pid, ready)
    watcher.start()
    lines = []
    for line in proc.stdout:
        lines.append((time.monotonic(), line.rstrip("\n")))
    rc = proc.wait()
    end = time.monotonic()
    wall_end = time.time()
    watcher.stop = True
    watcher.join()
    marks = MARKS[builder]

    def first(needles):
        if isinstance(needles, str):
            needles = (needles,)
        for t, l in lines:
            if any(n in l for n in needles):
                return t
        return None

    t_qemu, t_ssh, t_down = first(marks["qemu_start"]), first(marks["ssh"]), first(marks["shutdown"])
    t_typing, t_typed = first(marks["typing"]), first(marks["typed"])
    # the READY stamp is wall-clock time (compared with the plugin log); the packer lines monotonic
    ready_mono = watcher.ready_at - wall_start + start if watcher.ready_at else None
    r = {
        "ok": rc == 0,
        "wall_s": end - start,
        "qemu_to_ssh_s": (t_ssh - t_qemu) if t_ssh and t_qemu else None,
        "ready_to_ssh_s": (t_ssh - ready_mono) if t_ssh and ready_mono else None,
        "shutdown_to_artifact_s": (end - t_down) if t_down else None,
        "plugin_peak_rss_mib": watcher.peak_rss_kib / 1024 if watcher.peak_rss_kib else None,
        "typing_s": (t_typed - t_typing) if t_typed and t_typing else None,
    }
    if builder == "qemu-rs":
        r["phases"] = phases(plugin_log, wall_start, watcher.ready_at, wall_end)
    try:
        r["serial"] = serial.read_text(errors="replace")
    except OSError:
        r["serial"] = ""
    if rc != 0:
        r["output_tail"] = "\n".join(l for _, l in lines[-25:])
    if log_dir:
        keep = Path(log_dir) / f"{label or work.name}"
        keep.mkdir(parents=True, exist_ok=True)
        (keep / "packer.out").write_text("".join(f"{t - start:9.3f} {l}\n" for t, l in lines))
        for f in (serial, plugin_log):
            if f.exists():
                shutil.copy(f, keep / f.name)
        if watcher.ready_at:
            (keep / "ready_at").write_text(f"{watcher.ready_at:.3f}\n")
    return r


def fresh_work(root, name):
    w = root / name
    if w.exists():
        shutil.rmtree(w)
    w.mkdir(parents=True)
    return w


def typing_template(root, builder, transport, params):
    """The ISO template with `params` appended to the boot command, for one builder/transport."""
    src = (GUEST / ("testguest-iso-qemu-rs.pkr.hcl" if builder == "qemu-rs" else "testguest-iso.pkr.hcl")).read_text()
    old = 'boot_command     = ["e<down><down><end> seed=http://{{ .HTTPIP }}:{{ .HTTPPort }}/<f10>"]'
    assert old in src, "the twin templates changed: update bench/run.py"
    # no GRUB script metacharacters ($ ; | & ( ) { } [ ] ' " \\ # < >) nor HCL or boot command ones
    assert not set(params) & set("$;|&(){}[]'\"\\#<>"), "typed parameters must stay plain"
    typed = params
    new = f'boot_command     = ["e<down><down><end> seed=http://{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}/ {typed}<f10>"]'
    if transport:
        new += f'\n  boot_command_transport = "{transport}"'
    p = root / f"typing-{builder}-{transport or 'vnc'}-{len(params)}.pkr.hcl"
    p.write_text(src.replace(old, new))
    return p


def command_line(serial):
    for line in serial.splitlines():
        if "Command line:" in line:
            return line.split("Command line:", 1)[1].strip()
    return None


def lost_keys(serial, params):
    """Keys of `params` that did not reach the kernel command line (None: no command line seen)."""
    got = command_line(serial)
    if got is None:
        return None
    if got.endswith(params):
        return 0
    tail = got.split("seed=", 1)[1] if "seed=" in got else got
    blocks = difflib.SequenceMatcher(None, params, tail, autojunk=False).get_matching_blocks()
    return len(params) - sum(b.size for b in blocks)


def summarize(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def default_plugin():
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    return str(Path(target) / "release" / "packer-plugin-qemu-rs")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=None, help="measured pairs per scenario (default 3, --quick 2)")
    ap.add_argument("--scenarios", default="iso,cloud,debian,warm-first,warm,typing,typing-long")
    ap.add_argument("--typing-runs", type=int, default=None, help="runs per typing variant (default 1)")
    ap.add_argument("--quick", action="store_true", help="2 pairs, no warm-up pair (about 28 minutes)")
    ap.add_argument("--builders", default="qemu-rs,reference", help="for experiments: only one of them")
    ap.add_argument("--plugin", default=default_plugin())
    ap.add_argument("--log-dir", help="keep every build's packer output, serial log and plugin log here")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/latest.json")
    ap.add_argument("--no-floor", action="store_true", help="typing: leave out the guest's own pace (QEMU alone)")
    ap.add_argument("--report", metavar="JSON", help="print the tables of a saved run (no builds)")
    args = ap.parse_args()
    if args.report:
        results = json.loads(Path(args.report).read_text())
        for sc in BUILD_SCENARIOS:
            s = results["scenarios"].get(sc)
            if s:
                results["scenarios"][sc] = summarize_scenario({b: s[b]["runs"] for b in BUILDERS if b in s})
        print(table(results))
        return
    pairs = args.pairs if args.pairs is not None else (2 if args.quick else 3)
    warmup = 0 if args.quick else 1
    typing_runs = args.typing_runs if args.typing_runs is not None else 1
    builders = [b.strip() for b in args.builders.split(",") if b.strip()]
    if pairs < 1 or typing_runs < 1:
        sys.exit("bench: --pairs and --typing-runs must be at least 1")
    if any(b not in BUILDERS for b in builders):
        sys.exit(f"bench: --builders takes {', '.join(BUILDERS)}")
    plugin = Path(args.plugin)
    if not plugin.is_file():
        sys.exit(f"bench: {plugin} is missing: run `make build` first (or pass --plugin)")
    for f in ("testguest.iso", "testguest.qcow2", "id_ed25519"):
        if not (OUT / f).is_file():
            sys.exit(f"bench: {OUT / f} is missing: run `make testguest` first")
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if "debian" in scenarios and not DEBIAN_IMAGE.is_file():
        sys.exit(f"bench: {DEBIAN_IMAGE} is missing: run `make debian-cloud` first (or leave out the debian scenario)")
    for t in ("testguest-iso-qemu-rs.pkr.hcl", "testguest-disk-qemu-rs.pkr.hcl"):
        if re.search(r"^\s*accelerator\s*=", (GUEST / t).read_text(), re.M):
            sys.exit(f"bench: {t} sets accelerator: qemu-rs must run with its defaults")
    if re.search(r"^\s*accelerator\s*=", (BENCH_TEMPLATES / "debian-12-qemu-rs.pkr.hcl").read_text(), re.M):
        sys.exit("bench: debian-12-qemu-rs.pkr.hcl sets accelerator: qemu-rs must run with its defaults")

    root = Path(tempfile.mkdtemp(prefix="qemu-rs-bench-"))
    try:
        plugins = root / "plugins"
        plugins.mkdir()
        for name in ("packer-builder-qemu-rs", "packer-provisioner-qemu-rs-shell"):
            shutil.copy(plugin, plugins / name)
        results = {
            "machine": {
                "cpus": os.cpu_count(),
                "kernel": platform.release(),
                "cpu": next(
                    (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"
                ),
                "packer": subprocess.run(["packer", "version"], capture_output=True, text=True).stdout.strip(),
                "qemu": subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True)
                .stdout.splitlines()[0],
                "load_at_start": os.getloadavg()[0],
            },
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "pairs": pairs,
            "warmup_pairs": warmup,
            "typing_runs": typing_runs,
            "scenarios": {},
        }
        started = time.monotonic()
        for sc in scenarios:
            if sc in BUILD_SCENARIOS:
                results["scenarios"][sc] = build_scenario(sc, root, builders, pairs, warmup, args.log_dir)
            elif sc in TYPING:
                results["scenarios"][sc] = typing_scenario(
                    sc, root, builders, typing_runs, args.log_dir, floor=not args.no_floor
                )
            else:
                sys.exit(f"bench: unknown scenario {sc!r} ({', '.join(BUILD_SCENARIOS + tuple(TYPING))})")
        results["duration_s"] = time.monotonic() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)

    if not args.no_save:
        res_dir = REPO / "bench" / "results"
        res_dir.mkdir(parents=True, exist_ok=True)
        (res_dir / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


def debian_seed(root):
    """The `debian` scenario's NoCloud seed and key pair (both builders get the same)."""
    d = root / "debian-seed"
    d.mkdir(exist_ok=True)
    key = d / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "qemu-rs-bench", "-f", str(key)], check=True)
    pub = (d / "id_ed25519.pub").read_text().strip()
    (d / "user-data").write_text(f"#cloud-config\nssh_authorized_keys:\n  - {pub}\n")
    (d / "meta-data").write_text("instance-id: bench\nlocal-hostname: debian-12-bench\n")
    return {"image": DEBIAN_IMAGE, "seed_dir": d, "ssh_key": key}


def warm_template(root):
    """The qemu-rs ISO twin with `warm_start = true`."""
    src = (GUEST / "testguest-iso-qemu-rs.pkr.hcl").read_text()
    old = 'source "qemu-rs" "testguest-iso" {\n'
    assert old in src, "the twin templates changed: update bench/run.py"
    p = root / "testguest-iso-warm.pkr.hcl"
    p.write_text(src.replace(old, old + "  warm_start       = true\n"))
    return p


def warm_scenario(sc, root, pairs, warmup, log_dir):
    """`warm-first` and `warm` (see SLOT_LABELS): slot -> (builder, template, PACKER_CACHE_DIR)."""
    warm_t, iso_rs = warm_template(root), GUEST / "testguest-iso-qemu-rs.pkr.hcl"
    if sc == "warm-first":
        # a fresh cache per run: every warm_start build is a first build
        plan = {"qemu-rs": ("qemu-rs", warm_t, None), "reference": ("qemu-rs", iso_rs, None)}
    else:
        cache = root / "warm-cache"
        r = run_build("qemu-rs", warm_t, fresh_work(root, "warm-prime"), log_dir, "warm-prime", cache=cache)
        print(f"bench warm: cache filled by a first build: {'ok' if r['ok'] else 'FAILED'} {r['wall_s']:.1f} s",
              file=sys.stderr, flush=True)
        plan = {"qemu-rs": ("qemu-rs", warm_t, cache), "reference": ("reference", GUEST / "testguest-iso.pkr.hcl", None)}
    return run_pairs(sc, root, plan, pairs, warmup, log_dir)


def build_scenario(sc, root, builders, pairs, warmup, log_dir):
    if sc in SLOT_LABELS:
        return warm_scenario(sc, root, pairs, warmup, log_dir)
    variables, ready = None, READY["testguest"]
    if sc == "debian":
        tmpl = {
            "qemu-rs": BENCH_TEMPLATES / "debian-12-qemu-rs.pkr.hcl",
            "reference": BENCH_TEMPLATES / "debian-12.pkr.hcl",
        }
        variables, ready = debian_seed(root), READY["debian"]
    else:
        kind = "iso" if sc == "iso" else "disk"
        tmpl = {
            "qemu-rs": GUEST / f"testguest-{kind}-qemu-rs.pkr.hcl",
            "reference": GUEST / f"testguest-{kind}.pkr.hcl",
        }
    plan = {b: (b, tmpl[b], None) for b in builders}
    return run_pairs(sc, root, plan, pairs, warmup, log_dir, variables, ready)


def run_pairs(sc, root, plan, pairs, warmup, log_dir, variables=None, ready=READY["testguest"]):
    """Runs the slots of `plan` (slot -> (builder, template, PACKER_CACHE_DIR or None)) alternately,
    `warmup` unmeasured rounds then `pairs` measured ones, and summarizes them."""
    runs = {slot: [] for slot in plan}
    for i in range(pairs + warmup):
        for slot, (b, tmpl, cache) in plan.items():
            label = "warm-up" if i < warmup else f"pair {i - warmup + 1}"
            work = fresh_work(root, f"{sc}-{slot}-{i}")
            r = run_build(b, tmpl, work, log_dir, f"{sc}-{slot}-{i}", variables, ready, cache=cache)
            name = SLOT_LABELS.get(sc, {}).get(slot, slot)
            print(f"bench {sc} {name} {label}: {'ok' if r['ok'] else 'FAILED'} {r['wall_s']:.1f} s",
                  file=sys.stderr, flush=True)
            if not r["ok"]:
                print(r.get("output_tail", ""), file=sys.stderr)
            r.pop("serial", None)
            if i >= warmup:
                runs[slot].append(r)
    return summarize_scenario({s: [{k: v for k, v in r.items() if k != "output_tail"} for r in runs[s]] for s in plan})


def summarize_scenario(runs):
    """Medians of the successful runs of each builder, their phases, and the wall ratio of the
    pairs where both builds succeeded."""
    out = {}
    for b, rs in runs.items():
        ok = [r for r in rs if r["ok"]]
        keys = [k for k in rs[0] if k not in ("ok", "output_tail", "phases", "serial")]
        out[b] = {k: summarize([r[k] for r in ok]) for k in keys} | {
            "failures": sum(not r["ok"] for r in rs),
            "runs": rs,
        }
        if b == "qemu-rs":
            names = []
            for r in ok:
                names += [n for n in r.get("phases", {}) if n not in names]
            out[b]["phases"] = {n: summarize([r.get("phases", {}).get(n) for r in ok]) for n in names}
    if len(runs) == 2:
        out["ratio_wall"] = summarize(
            [a["wall_s"] / b["wall_s"] for a, b in zip(runs["qemu-rs"], runs["reference"]) if a["ok"] and b["ok"]]
        )
    return out


# US keyboard: characters typed with Shift, and the unshifted key of each (QEMU qcodes)
SHIFTED = dict(zip('~!@#$%^&*()_+{}|:"<>?', "grave_accent 1 2 3 4 5 6 7 8 9 0 minus equal bracket_left "
                   "bracket_right backslash semicolon apostrophe comma dot slash".split()))
PLAIN = {" ": "spc", "-": "minus", "=": "equal", ".": "dot", ",": "comma", "/": "slash", ";": "semicolon",
         "'": "apostrophe", "`": "grave_accent", "[": "bracket_left", "]": "bracket_right", "\\": "backslash"}


def qcode_press(ch):
    """The QMP `input-send-event` events of one press of `ch` (with Shift where a US keyboard needs it)."""
    if ch.isascii() and ch.isalpha():
        key, shift = ch.lower(), ch.isupper()
    elif ch.isascii() and ch.isdigit():
        key, shift = ch, False
    elif ch in SHIFTED:
        key, shift = SHIFTED[ch], True
    else:
        key, shift = PLAIN[ch], False
    return key_events((["shift"] if shift else []) + [key])


def key_events(keys):
    """QMP `input-send-event` events pressing the qcodes `keys` in order and releasing them in reverse."""
    ev = lambda k, down: {"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": k}}}
    return [ev(k, True) for k in keys] + [ev(k, False) for k in reversed(keys)]


class Qmp:
    """A minimal QMP client for the floor measurement (one command at a time, events skipped)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.f = self.sock.makefile("rw")
        self.f.readline()
        self.cmd("qmp_capabilities")

    def cmd(self, name, args=None):
        self.f.write(json.dumps({"execute": name, **({"arguments": args} if args else {})}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "error" in r:
                raise RuntimeError(f"QMP {name}: {r['error']}")
            if "return" in r:
                return r["return"]


def typing_floor(sc, root, log_dir):
    """How fast the guest itself takes the typed line: QEMU alone (no Packer, no builder) boots the test
    guest ISO, the same keys go into GRUB's entry editor over QMP in bursts of FLOOR_BURST, and nothing reads
    guest state while GRUB works (no feedback reads, which cost the guest QEMU's global lock). The time is the
    sum of GRUB's busy spans: from sending a burst to the last byte GRUB wrote to the serial console for it.
    A lower bound: GRUB redraws the serial terminal before the screen, so each span misses the screen redraw
    of the burst's last key, one key in FLOOR_BURST (for the long line: 49.8 s in bursts of 4, 55.5 s in
    bursts of 8 that lost a key, 61.2 s by hand in bursts of 10 letters)."""
    params = TYPING[sc]
    text = TYPED_PREFIX + params
    work = fresh_work(root, f"{sc}-floor")
    serial, sock = work / "serial.log", work / "qmp.sock"
    q = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-m", "512", "-cdrom", str(OUT / "testguest.iso"),
         "-display", "none", "-serial", f"file:{serial}", "-qmp", f"unix:{sock},server=on,wait=off"],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        qmp = Qmp(sock)

        def size():
            return serial.stat().st_size

        def quiet(span=0.3):
            """Waits until the serial console has been still for `span`; the time of its last byte."""
            last, n = time.monotonic(), size()
            while time.monotonic() - last < span:
                time.sleep(0.002)
                m = size()
                if m != n:
                    n, last = m, time.monotonic()
            return last

        deadline = time.monotonic() + 120
        while b"executed automatically in" not in serial.read_bytes():
            if time.monotonic() > deadline:
                raise RuntimeError("no GRUB menu on the serial console")
            time.sleep(0.05)
        for k in ("e", "down", "down", "end"):
            qmp.cmd("input-send-event", {"events": key_events([k])})
            quiet()
        busy = 0.0
        for i in range(0, len(text), FLOOR_BURST):
            sent = time.monotonic()
            for ch in text[i : i + FLOOR_BURST]:
                qmp.cmd("input-send-event", {"events": qcode_press(ch)})
            busy += quiet() - sent
        qmp.cmd("input-send-event", {"events": key_events(["f10"])})
        deadline = time.monotonic() + 120
        while command_line(serial.read_text(errors="replace")) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        out = serial.read_text(errors="replace")
    finally:
        q.kill()
        q.wait()
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy(serial, Path(log_dir) / f"{sc}-floor.serial.log")
    shutil.rmtree(work, ignore_errors=True)
    return {"ok": command_line(out) is not None, "typing_s": busy, "lost_keys": lost_keys(out, params)}


def typing_scenario(sc, root, builders, typing_runs, log_dir, floor=True):
    params = TYPING[sc]
    variants = [v for v in (("qemu-rs", "qmp"), ("qemu-rs", "vnc"), ("reference", None)) if v[0] in builders]
    chars = len(TYPED_PREFIX + params) + TYPING_EXTRA_KEYS
    t = {"chars": chars, "variants": {}}
    for i in range(typing_runs):
        for b, transport in variants:
            key = f"{b} ({transport or 'vnc'})"
            tmpl = typing_template(root, b, transport, params)
            r = run_build(b, tmpl, fresh_work(root, f"{sc}-{b}-{transport}"), log_dir, f"{sc}-{b}-{transport}-{i}")
            lost = lost_keys(r["serial"], params)
            v = t["variants"].setdefault(key, {"runs": []})
            v["runs"].append({"ok": r["ok"], "typing_s": r["typing_s"], "lost_keys": lost})
            print(f"bench {sc} {key} run {i + 1}: {'ok' if r['ok'] else 'FAILED'}, "
                  f"{r['typing_s'] or 0:.1f} s typing, lost keys: {'?' if lost is None else lost}",
                  file=sys.stderr, flush=True)
    if floor:
        r = typing_floor(sc, root, log_dir)
        t["variants"][FLOOR] = {"runs": [r]}
        print(f"bench {sc} {FLOOR}: {r['typing_s']:.1f} s, lost keys: {r['lost_keys']}", file=sys.stderr, flush=True)
    for key, v in t["variants"].items():
        v["typing_s"] = summarize([r["typing_s"] for r in v["runs"]])
        v["chars_per_s"] = chars / v["typing_s"]["median"] if v["typing_s"] else None
        v["lost_keys"] = [r["lost_keys"] for r in v["runs"]]
    ref = t["variants"].get("reference (vnc)")
    for key, v in t["variants"].items():
        if ref and ref["typing_s"] and v["typing_s"] and key != "reference (vnc)":
            v["ratio_typing"] = v["typing_s"]["median"] / ref["typing_s"]["median"]
    return t


def fmt(s, key="median", unit=" s", digits=1):
    if not s:
        return "-"
    return f"{s[key]:.{digits}f}{unit}"


def table(results):
    m = results["machine"]
    lines = [
        f"qemu-rs vs Packer's qemu builder — {results['date']}, {m['cpus']} CPUs ({m['cpu']}), {m['packer']}, "
        f"{m['qemu']}, TCG, {results['pairs']} pairs after {results.get('warmup_pairs', 1)} warm-up pair(s)",
        "",
        "| scenario | builder | wall (median) | QEMU start → SSH | sshd up → SSH | shutdown → artifact | plugin peak RSS | "
        "wall ratio qemu-rs/ref (min / median / max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for sc in BUILD_SCENARIOS:
        s = results["scenarios"].get(sc)
        if not s:
            continue
        r = s.get("ratio_wall")
        ratio = f"{r['min']:.2f} / {r['median']:.2f} / {r['max']:.2f}" if r else "-"
        for b in BUILDERS:
            x = s.get(b)
            if not x:
                continue
            failed = f" ({x['failures']} failed)" if x.get("failures") else ""
            name = SLOT_LABELS.get(sc, {}).get(b, b)
            lines.append(
                f"| {sc} | {name}{failed} | {fmt(x['wall_s'])} | {fmt(x['qemu_to_ssh_s'])} | {fmt(x['ready_to_ssh_s'], digits=2)} | "
                f"{fmt(x['shutdown_to_artifact_s'])} | {fmt(x['plugin_peak_rss_mib'], unit=' MiB', digits=0)} | "
                f"{ratio if b == 'qemu-rs' else ''} |"
            )
    for sc in TYPING:
        t = results["scenarios"].get(sc)
        if not t:
            continue
        lines += [
            "",
            f"| typing ({t['chars']} keys into GRUB, {results.get('typing_runs', 1)} run(s)) | time (median) | keys/s | "
            "lost keys per run | time ratio qemu-rs/ref |",
            "|---|---|---|---|---|",
        ]
        for k, v in t["variants"].items():
            cps = f"{v['chars_per_s']:.1f}" if v["chars_per_s"] else "-"
            lost = ", ".join("?" if x is None else str(x) for x in v["lost_keys"])
            ratio = f"{v['ratio_typing']:.2f}" if v.get("ratio_typing") else ""
            lines.append(f"| {k} | {fmt(v['typing_s'])} | {cps} | {lost} | {ratio} |")
    for sc in BUILD_SCENARIOS:
        ph = results["scenarios"].get(sc, {}).get("qemu-rs", {}).get("phases")
        if not ph:
            continue
        wall = results["scenarios"][sc]["qemu-rs"]["wall_s"]
        lines += ["", f"| where a qemu-rs {sc} build's time goes (median of the runs) | seconds |", "|---|---|"]
        for name, s in ph.items():
            if s and s["median"] >= 0.005:
                lines.append(f"| {name} | {s['median']:.2f} |")
        lines.append(f"| wall (packer build, start to exit) | {wall['median']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

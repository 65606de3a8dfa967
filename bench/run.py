#!/usr/bin/env python3
"""qemu-rs against Packer's built-in `qemu` builder, side by side, on the test guest (TCG).

For each scenario both builders run alternately (A B A B ...) after one warm-up pair, on the twin
templates of images/testguest (same guest, same provisioner, only the source type and the options the
reference lacks differ). Every packer stdout line is timestamped as it arrives; a thread follows the
guest's serial log for its `testguest: READY` line (sshd up) and samples the plugin process's peak RSS
(VmHWM) from /proc. Prints one table and writes bench/results/latest.json.

    bench/run.py [--pairs N] [--scenarios iso,cloud,typing] [--plugin target/release/packer-plugin-qemu-rs]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUEST = REPO / "images" / "testguest"
OUT = GUEST / "out"

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

LONG_PARAMS = " ".join(
    [
        "tg.alpha=AbCdEfGhIjKlMnOpQrStUvWxYz-0123456789",
        "tg.beta=zyxwvutsrqponmlkjihgfedcba_ZYXWVUTSRQPONMLKJIHGFEDCBA",
        "tg.gamma=a.b,c:d/e+f%g@h~i^j-k_l=m",
        "tg.delta=The-Quick-Brown-Fox-Jumps-Over-The-Lazy-Dog,1234567890",
        "tg.eps=MiXeD~CaSe^WiTh@SyMbOlS+%2F:/path/to/some.where_else",
        "tg.zeta=end-of-the-300-character-boot-command-XYZ",
    ]
)


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

    def __init__(self, serial, packer_pid):
        super().__init__(daemon=True)
        self.serial = serial
        self.packer_pid = packer_pid
        self.ready_at = None
        self.peak_rss_kib = 0
        self.stop = False

    def run(self):
        pids = []
        while not self.stop:
            if self.ready_at is None:
                try:
                    if b"testguest: READY" in Path(self.serial).read_bytes():
                        self.ready_at = time.monotonic()
                except OSError:
                    pass
            if not pids:
                pids = plugin_pids(self.packer_pid)
            for p in pids:
                v = vm_hwm_kib(p)
                if v:
                    self.peak_rss_kib = max(self.peak_rss_kib, v)
            time.sleep(0.02)


def run_build(builder, template, work, extra_vars=()):
    """One packer build; returns its measurements."""
    out_dir = work / "output"
    serial = work / "serial.log"
    env = dict(os.environ)
    env.update(
        CHECKPOINT_DISABLE="1",
        PACKER_NO_COLOR="1",
        PACKER_CACHE_DIR=str(work / "packer_cache"),
        PACKER_PLUGIN_PATH=str(work.parent / "plugins"),
    )
    cmd = [
        "packer", "build", "-color=false",
        "-var", f"guest_dir={OUT}", "-var", f"output_dir={out_dir}", "-var", f"serial_log={serial}",
    ]
    for kv in extra_vars:
        cmd += ["-var", kv]
    cmd.append(str(template))
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=work, text=True)
    watcher = Watcher(serial, proc.pid)
    watcher.start()
    lines = []
    for line in proc.stdout:
        lines.append((time.monotonic(), line.rstrip("\n")))
    rc = proc.wait()
    end = time.monotonic()
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
    r = {
        "ok": rc == 0,
        "wall_s": end - start,
        "qemu_to_ssh_s": (t_ssh - t_qemu) if t_ssh and t_qemu else None,
        "ready_to_ssh_s": (t_ssh - watcher.ready_at) if t_ssh and watcher.ready_at else None,
        "shutdown_to_artifact_s": (end - t_down) if t_down else None,
        "plugin_peak_rss_mib": watcher.peak_rss_kib / 1024 if watcher.peak_rss_kib else None,
        "typing_s": (t_typed - t_typing) if t_typed and t_typing else None,
    }
    try:
        r["serial"] = serial.read_text(errors="replace")
    except OSError:
        r["serial"] = ""
    if rc != 0:
        r["output_tail"] = "\n".join(l for _, l in lines[-25:])
    return r


def fresh_work(root, name):
    w = root / name
    if w.exists():
        shutil.rmtree(w)
    w.mkdir(parents=True)
    return w


def typing_template(root, builder, transport):
    """The ISO template with a ~300-character boot command (kernel parameters with a dot are
    ignored by the kernel) for one builder/transport."""
    src = (GUEST / ("testguest-iso-qemu-rs.pkr.hcl" if builder == "qemu-rs" else "testguest-iso.pkr.hcl")).read_text()
    old = 'boot_command     = ["e<down><down><end> seed=http://{{ .HTTPIP }}:{{ .HTTPPort }}/<f10>"]'
    assert old in src, "the twin templates changed: update bench/run.py"
    new = f'boot_command     = ["e<down><down><end> seed=http://{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}/ {LONG_PARAMS}<f10>"]'
    if transport:
        new += f'\n  boot_command_transport = "{transport}"'
    p = root / f"typing-{builder}-{transport or 'vnc'}.pkr.hcl"
    p.write_text(src.replace(old, new))
    return p


def typed_ok(serial):
    for line in serial.splitlines():
        if "Command line:" in line:
            return line.rstrip().endswith(LONG_PARAMS)
    return False


def summarize(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--scenarios", default="iso,cloud,typing")
    ap.add_argument("--plugin", default=str(REPO / "target" / "release" / "packer-plugin-qemu-rs"))
    args = ap.parse_args()
    if args.pairs < 1:
        sys.exit("bench: --pairs must be at least 1")
    plugin = Path(args.plugin)
    if not plugin.is_file():
        sys.exit(f"bench: {plugin} is missing: run `make build` first")
    for f in ("testguest.iso", "testguest.qcow2", "id_ed25519"):
        if not (OUT / f).is_file():
            sys.exit(f"bench: {OUT / f} is missing: run `make testguest` first")

    root = Path(tempfile.mkdtemp(prefix="qemu-rs-bench-"))
    try:
        plugins = root / "plugins"
        plugins.mkdir()
        for name in ("packer-builder-qemu-rs", "packer-provisioner-qemu-rs-shell"):
            shutil.copy(plugin, plugins / name)
        scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
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
            },
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "pairs": args.pairs,
            "scenarios": {},
        }
        for sc in scenarios:
            if sc in ("iso", "cloud"):
                tmpl = {
                    "qemu-rs": GUEST / f"testguest-{'iso' if sc == 'iso' else 'disk'}-qemu-rs.pkr.hcl",
                    "reference": GUEST / f"testguest-{'iso' if sc == 'iso' else 'disk'}.pkr.hcl",
                }
                runs = {"qemu-rs": [], "reference": []}
                for i in range(args.pairs + 1):
                    for b in ("qemu-rs", "reference"):
                        r = run_build(b, tmpl[b], fresh_work(root, f"{sc}-{b}-{i}"))
                        label = "warm-up" if i == 0 else f"pair {i}"
                        print(f"bench {sc} {b} {label}: {'ok' if r['ok'] else 'FAILED'} {r['wall_s']:.1f} s",
                              file=sys.stderr, flush=True)
                        if not r["ok"]:
                            print(r.get("output_tail", ""), file=sys.stderr)
                        r.pop("serial", None)
                        if i > 0:
                            runs[b].append(r)
                ratios = [
                    a["wall_s"] / b["wall_s"] for a, b in zip(runs["qemu-rs"], runs["reference"]) if a["ok"] and b["ok"]
                ]
                results["scenarios"][sc] = {
                    b: {k: summarize([r[k] for r in runs[b]]) for k in runs[b][0] if k not in ("ok", "output_tail")}
                    | {"failures": sum(not r["ok"] for r in runs[b])}
                    for b in runs
                } | {"ratio_wall": summarize(ratios)}
            elif sc == "typing":
                t = {}
                for b, transport in (("qemu-rs", "qmp"), ("qemu-rs", "vnc"), ("reference", None)):
                    r = run_build(b, typing_template(root, b, transport), fresh_work(root, f"typing-{b}-{transport}"))
                    ok = r["ok"] and typed_ok(r["serial"])
                    chars = len(" seed=http://10.0.2.2:8000/ " + LONG_PARAMS) + 5  # + e <down> <down> <end> <f10>
                    cps = chars / r["typing_s"] if r["typing_s"] else None
                    key = f"{b} ({transport or 'vnc'})"
                    t[key] = {"typing_s": r["typing_s"], "chars_per_s": cps, "all_keys_arrived": ok}
                    print(f"bench typing {key}: {'ok' if ok else 'LOST KEYS or FAILED'} "
                          f"{r['typing_s'] or 0:.1f} s", file=sys.stderr, flush=True)
                results["scenarios"]["typing"] = t
            else:
                sys.exit(f"bench: unknown scenario {sc!r} (iso, cloud, typing)")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    res_dir = REPO / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


def fmt(s, key="median", unit="s", digits=1):
    if not s:
        return "-"
    return f"{s[key]:.{digits}f}{unit}"


def table(results):
    m = results["machine"]
    lines = [
        f"qemu-rs vs Packer's qemu builder — {results['date']}, {m['cpus']} CPUs ({m['cpu']}), {m['packer']}, "
        f"{m['qemu']}, TCG, {results['pairs']} pairs after a warm-up",
        "",
        "| scenario | builder | wall (median) | QEMU start → SSH | sshd up → SSH | shutdown → artifact | plugin peak RSS | "
        "wall ratio qemu-rs/ref (min / median / max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for sc in ("iso", "cloud"):
        s = results["scenarios"].get(sc)
        if not s:
            continue
        r = s["ratio_wall"]
        ratio = f"{r['min']:.2f} / {r['median']:.2f} / {r['max']:.2f}" if r else "-"
        for b in ("qemu-rs", "reference"):
            x = s[b]
            lines.append(
                f"| {sc} | {b} | {fmt(x['wall_s'])} | {fmt(x['qemu_to_ssh_s'])} | {fmt(x['ready_to_ssh_s'], digits=2)} | "
                f"{fmt(x['shutdown_to_artifact_s'])} | {fmt(x['plugin_peak_rss_mib'], unit=' MiB', digits=0)} | "
                f"{ratio if b == 'qemu-rs' else ''} |"
            )
    t = results["scenarios"].get("typing")
    if t:
        lines += ["", "| typing (300-character boot command) | time | chars/s | every key arrived |", "|---|---|---|---|"]
        for k, v in t.items():
            ts = f"{v['typing_s']:.1f} s" if v["typing_s"] else "-"
            cps = f"{v['chars_per_s']:.1f}" if v["chars_per_s"] else "-"
            lines.append(f"| {k} | {ts} | {cps} | {'yes' if v['all_keys_arrived'] else 'NO'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

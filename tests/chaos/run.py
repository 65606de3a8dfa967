#!/usr/bin/env python3
"""Interrupt matrix and parallel builds for the qemu-rs plugin (issue 12, items 1 and 2).

  tests/chaos/run.py [--count 40] [--seed N]          # the interrupt matrix (make chaos)
  tests/chaos/run.py --parallel 8                      # 8 builds at once, one shared cache (make parallel)

Each build runs real Packer (`packer` on PATH, 1.6.6) with the plugin binary copied into a temporary
PACKER_PLUGIN_PATH under its Packer 1.6 names, on the test guest templates
(images/testguest/testguest-{iso,disk}-qemu-rs.pkr.hcl) whose `iso_url` is rewritten to a local HTTP
server (127.0.0.1, throttled for the download phase) with a sha256 `iso_checksum`.

Matrix: every build gets a phase and a signal (the first runs walk through every pair, the rest are
drawn at random from the seed; then up to --fill extra runs for pairs no run landed in). When Packer's output shows the phase, the script waits a random delay
inside it and sends the signal: Ctrl-C (SIGINT to Packer's process group, started as a job of its
own), SIGTERM to `packer`, SIGKILL of the builder plugin, SIGKILL of Packer core (the plugin's parent).
The phase recorded is the one Packer's output was in when the signal was sent. Then it checks:
Packer gone within 30 s, no process of the build left (QEMU, swtpm, plugins: by pid ancestry and by
a /proc scan for the build's directory), no listening TCP port held by the build, no temp file left in
the build's TMPDIR, no output directory, and a download cache that holds only complete files with the
right checksum (a `.part` file must be a prefix of the real file: it is resumed and then verified).
Leftovers are killed by pid after the failure is recorded. A table (phase x signal, pass/fail) is
printed; the exit status is 1 when any check failed.
"""

import argparse
import hashlib
import itertools
import http.server
import json
import os
import random
import re
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PHASES = ["download", "disk", "qemu_start", "typing", "wait_ssh", "provision", "shutdown", "convert"]
SIGNALS = ["ctrl_c", "sigterm", "kill_plugin", "kill_core"]
# Phases the cloud (disk_image) template has no typing: boot_wait = -1s.
ISO_ONLY = {"typing"}

# Packer output line (substring) -> the phase that starts there.
MARKERS = [
    ("Retrieving ISO", "download"),
    ("Downloading http", "download"),
    ("Creating CD disk", "disk"),
    ("Creating qcow2 disk", "disk"),
    ("Creating a qcow2 overlay", "disk"),
    ("Creating a copy-on-read overlay", "disk"),
    ("Copying ", "disk"),
    ("Resizing the disk", "disk"),
    ("Starting HTTP server", "disk"),
    ("Starting QEMU", "qemu_start"),
    ("Waiting 3s for boot", "qemu_start"),  # boot_wait: QEMU runs its firmware
    ("Typing the boot command", "typing"),
    ("Waiting for SSH to become available", "wait_ssh"),
    ("Provisioning with the build's provisioners", "provision"),
    ("Gracefully halting", "shutdown"),
    ("Compacting", "convert"),
    ("Converting", "convert"),
    ("finished after", "done"),
]
# How long to wait, at most, after the phase's first line before the signal (seconds). Short phases
# (disk) get a short window so that the signal still lands in them.
WINDOW = {
    "download": 3.0,
    "disk": 0.15,
    "qemu_start": 2.5,
    "typing": 6.0,
    "wait_ssh": 12.0,
    "provision": 0.8,
    "shutdown": 2.0,
    "convert": 1.0,
}
SLOW_RATE = 3 * 1024 * 1024  # bytes/s for the download phase (the ISO takes ~9 s)


# ---------------------------------------------------------------------------------------------
# HTTP server: /slow/NAME throttled, /fast/NAME not; counts GETs per path.


class MediaServer:
    def __init__(self, directory: Path):
        self.directory = directory
        self.gets = {}
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_HEAD(self):
                self.serve(head=True)

            def do_GET(self):
                self.serve(head=False)

            def serve(self, head):
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) != 2 or parts[0] not in ("slow", "fast") or "/" in parts[1] or parts[1].startswith("."):
                    self.send_error(404)
                    return
                path = server.directory / parts[1]
                if not path.is_file():
                    self.send_error(404)
                    return
                if not head:
                    with server.lock:
                        server.gets[self.path] = server.gets.get(self.path, 0) + 1
                size = path.stat().st_size
                start = 0
                rng = self.headers.get("Range")
                m = re.match(r"bytes=(\d+)-$", rng or "")
                if m and int(m.group(1)) < size:
                    start = int(m.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(size - start))
                self.end_headers()
                if head:
                    return
                rate = SLOW_RATE if parts[0] == "slow" else None
                chunk = 64 * 1024
                t0 = time.monotonic()
                sent = 0
                try:
                    with open(path, "rb") as f:
                        f.seek(start)
                        while True:
                            b = f.read(chunk)
                            if not b:
                                break
                            self.wfile.write(b)
                            sent += len(b)
                            if rate:
                                ahead = sent / rate - (time.monotonic() - t0)
                                if ahead > 0:
                                    time.sleep(ahead)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name, slow):
        return f"http://127.0.0.1:{self.port}/{'slow' if slow else 'fast'}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------
# /proc helpers


def proc_table():
    """{pid: (ppid, comm, cmdline, starttime)} of every process."""
    table = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            with open(f"/proc/{e}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        close = stat.rfind(")")
        comm = stat[stat.find("(") + 1 : close]
        fields = stat[close + 2 :].split(" ")
        table[int(e)] = (int(fields[1]), comm, cmdline, fields[19])
    return table


def descendants(table, root):
    out = set()
    frontier = [root]
    while frontier:
        p = frontier.pop()
        for pid, (ppid, *_r) in table.items():
            if ppid == p and pid not in out:
                out.add(pid)
                frontier.append(pid)
    return out


def alive(pid, starttime):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2 :].split(" ")
    return fields[19] == starttime and fields[0] != "Z"


def listening_ports_by_pid():
    """{port: [pid, ...]} of listening TCP sockets, from `ss -ltnpH`."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    ports = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        port = int(cols[3].rsplit(":", 1)[1])
        pids = [int(p) for p in re.findall(r"pid=(\d+)", line)]
        ports.setdefault(port, []).extend(pids)
    return ports


# ---------------------------------------------------------------------------------------------
# one build


class Build:
    def __init__(self, root: Path, plugin_dir: Path, guest: Path, server: MediaServer, sums, kind, slow, cache=None,
                 on_error=None, ssh_timeout=None, key_interval=None):
        self.dir = root
        self.kind = kind
        for d in ("tmp", "home"):
            (root / d).mkdir(parents=True, exist_ok=True)
        self.cache = cache or root / "cache"
        self.out = root / "output"
        self.log = root / "packer.log"
        self.plugin_log = root / "plugin.log"
        media = "testguest.iso" if kind == "iso" else "testguest.qcow2"
        self.media = media
        src = (ROOT / "images/testguest" / f"testguest-{'iso' if kind == 'iso' else 'disk'}-qemu-rs.pkr.hcl").read_text()
        old_url = f'iso_url          = "${{var.guest_dir}}/{media}"'
        assert old_url in src, f"the template no longer has {old_url!r}"
        src = src.replace(old_url, f'iso_url          = "{server.url(media, slow)}"')
        assert 'iso_checksum     = "none"' in src
        src = src.replace('iso_checksum     = "none"', f'iso_checksum     = "sha256:{sums[media]}"')
        if ssh_timeout:
            assert 'ssh_timeout          = "5m"' in src
            src = src.replace('ssh_timeout          = "5m"', f'ssh_timeout          = "{ssh_timeout}"')
        self.template = root / "build.pkr.hcl"
        self.template.write_text(src)
        self.env = dict(os.environ)
        self.env.update({
            "HOME": str(root / "home"),
            "PACKER_CONFIG_DIR": str(root / "home"),
            "PACKER_PLUGIN_PATH": str(plugin_dir),
            "PACKER_CACHE_DIR": str(self.cache),
            "TMPDIR": str(root / "tmp"),
            "CHECKPOINT_DISABLE": "1",
            "PACKER_NO_COLOR": "1",
            "PACKER_LOG": "1",
            "PACKER_LOG_PATH": str(self.log),
            "QEMU_RS_LOG_PATH": str(self.plugin_log),
        })
        if key_interval:
            self.env["PACKER_KEY_INTERVAL"] = key_interval
        self.args = ["packer", "build", "-color=false", f"-var=guest_dir={guest}", f"-var=output_dir={self.out}",
                     f"-var=serial_log={root / 'serial.log'}"]
        if on_error:
            self.args.append(f"-on-error={on_error}")
        self.args.append(str(self.template))
        self.lines = []  # (monotonic time, line)
        self.current = None  # the phase of the last marker line
        self.trigger = None  # (phase, callback): called from the reader the moment `phase` starts
        self.plugin = None  # (pid, parent pid) of the builder plugin, once seen
        self.seen = {}  # pid -> (comm, starttime) of every process seen under packer or naming the build dir
        self.proc = None

    def start(self):
        def child_setup():
            # a job of its own, as a shell starts it; SIGINT at its default (Go keeps an ignored one)
            os.setpgid(0, 0)
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=child_setup)

        def reader():
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append((time.monotonic(), line))
                for marker, ph in MARKERS:
                    if marker in line:
                        self.current = ph
                        trig = self.trigger
                        if trig and trig[0] == ph:
                            self.trigger = None
                            trig[1]()
                        break

        self.reader = threading.Thread(target=reader, daemon=True)
        self.reader.start()

    def phase(self):
        """The phase Packer's output is in now (the last marker line seen)."""
        return self.current

    def snapshot(self):
        """Records the processes of this build (under packer, or naming its directory)."""
        table = proc_table()
        mine = descendants(table, self.proc.pid) | {self.proc.pid}
        d = str(self.dir)
        for pid, (ppid, comm, cmdline, st) in table.items():
            if pid in mine or d in cmdline:
                self.seen.setdefault(pid, (comm, st))
            if pid in mine and comm == "packer-builder-qemu-rs"[:15] and self.plugin is None:
                self.plugin = (pid, ppid)
        return table

    def leftovers(self):
        """Processes of this build still running: seen earlier (same start time), or naming its dir."""
        left = {}
        for pid, (comm, st) in self.seen.items():
            if alive(pid, st):
                left[pid] = comm
        d = str(self.dir)
        for pid, (_ppid, comm, cmdline, _st) in proc_table().items():
            if d in cmdline and pid != os.getpid():
                left[pid] = comm
        return left

    def ports(self):
        text = "\n".join(l for _t, l in self.lines)
        try:
            text += self.log.read_text(errors="replace")
        except OSError:
            pass
        ports = set()
        # (QEMU's `-vnc 127.0.0.1:0,to=100` is a range; the port it took is in its own message)
        for pat in (r"HTTP server on port (\d+)", r"vnc://127\.0\.0\.1:(\d+)", r"SSH forward 127\.0\.0\.1:(\d+)",
                    r"hostfwd=tcp:127\.0\.0\.1:(\d+)", r"VNC server running on 127\.0\.0\.1:(\d+)"):
            for m in re.finditer(pat, text):
                ports.add(int(m.group(1)))
        return ports

    def text(self):
        return "\n".join(l for _t, l in self.lines)

    def tail(self, n=25):
        lines = [l for _t, l in self.lines][-n:]
        try:
            plog = self.plugin_log.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            plog = []
        return "  packer output:\n    " + "\n    ".join(lines) + "\n  plugin log:\n    " + "\n    ".join(plog)


def kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def check_cache(cache: Path, media_dir: Path, sums):
    problems = []
    if not cache.exists():
        return problems
    full = {name: (media_dir / name).read_bytes() for name in sums}
    for f in sorted(cache.rglob("*")):
        if f.is_dir():
            continue
        data = f.read_bytes()
        if f.name.endswith(".lock"):
            continue
        if f.name.endswith(".part"):
            if not any(v.startswith(data) for v in full.values()):
                problems.append(f"cache: {f.name} is a partial file that is no prefix of the served media")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest not in sums.values():
            problems.append(f"cache: {f.name} ({len(data)} bytes) matches no served file's sha256")
    return problems


def interrupt_run(b: Build, phase, sig, rng, deadline=420):
    """Runs `b`, interrupts it in `phase` with `sig`; returns (actual phase, problems)."""
    b.start()
    start = time.monotonic()
    entered = None
    # the disk phase and the cloud template's QEMU start (no boot_wait) are over about as soon as
    # they are shown: the signal goes the moment their first line is read
    delay = 0.0 if phase == "disk" or (phase == "qemu_start" and b.kind == "cloud") else rng.uniform(0, WINDOW[phase])
    fired_phase = None
    sent = threading.Event()
    fire_lock = threading.Lock()
    problems = []

    def fire():
        with fire_lock:
            if sent.is_set() or b.phase() == "done":
                return
            sent.set()
            b.fired_phase = b.phase()
            if sig == "ctrl_c":
                os.killpg(b.proc.pid, signal.SIGINT)
            elif sig == "sigterm":
                os.kill(b.proc.pid, signal.SIGTERM)
            elif b.plugin is None:
                problems.append("no builder plugin process found under packer")
            elif sig == "kill_plugin":
                os.kill(b.plugin[0], signal.SIGKILL)
            else:
                os.kill(b.plugin[1], signal.SIGKILL)

    if delay == 0.0:
        b.trigger = (phase, fire)
    last_snapshot = 0.0
    while not sent.is_set():
        ph = b.phase()
        if b.proc.poll() is not None and ph != "done":
            return None, [f"the build ended (exit {b.proc.returncode}) before the signal; phase {ph}"]
        if time.monotonic() - start > deadline:
            break
        if time.monotonic() - last_snapshot > 0.3 or b.plugin is None:
            b.snapshot()
            last_snapshot = time.monotonic()
        if ph == "done":
            # the build ended before the signal (its phase was too short, or the delay too long)
            b.proc.wait()
            shutil.rmtree(b.out, ignore_errors=True)
            return "done", []
        if ph == phase and entered is None:
            entered = time.monotonic()
        if entered is not None and (time.monotonic() - entered >= delay or ph != phase):
            fire()
            continue
        order = PHASES + ["done"]
        if ph in order and order.index(ph) > order.index(phase):
            # missed it (the phase was too short to see): interrupt where the build is
            fire()
            continue
        time.sleep(0.005)
    b.trigger = None
    if not sent.is_set():
        kill_pids(b.leftovers())
        return None, [f"phase {phase} never came within {deadline} s; last phase {b.phase()}"]
    fired_phase = b.fired_phase
    fired = time.monotonic()
    while b.proc.poll() is None and time.monotonic() - fired < 30:
        b.snapshot()
        time.sleep(0.1)
    if b.proc.poll() is None:
        problems.append("packer still running 30 s after the signal")
        try:
            os.killpg(b.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        b.proc.wait()
    elif b.proc.returncode == 0 and sig != "kill_core":
        # (after a SIGKILL of core, the exit status is panicwrap's, the `packer` parent process)
        problems.append("packer exited 0 after the interrupt")
    # the plugin may still clean up after core is gone: give its processes the same 30 s
    while b.leftovers() and time.monotonic() - fired < 30:
        time.sleep(0.2)
    left = b.leftovers()
    if left:
        problems.append("processes left: " + ", ".join(f"{c}[{p}]" for p, c in sorted(left.items())))
    ports = b.ports()
    holders = listening_ports_by_pid()
    ours = set(b.seen) | set(left)
    for p in sorted(ports):
        if any(pid in ours for pid in holders.get(p, [])):
            problems.append(f"port {p} still listening (held by the build)")
    kill_pids(left)
    temps = [n for n in os.listdir(b.dir / "tmp") if not n.startswith("packer-shell")]
    if temps:
        problems.append(f"temp files left in TMPDIR: {sorted(temps)}")
    if b.out.exists():
        problems.append(f"output directory left: {sorted(os.listdir(b.out))}")
    return fired_phase, problems


def schedule(count, rng):
    """Every (kind, phase, signal) pair once (typing only for the ISO), then random ones."""
    pairs = [(p, s) for p in PHASES for s in SIGNALS]
    rng.shuffle(pairs)
    runs = []
    for i, (p, s) in enumerate(pairs):
        kind = "iso" if p in ISO_ONLY else rng.choice(["iso", "cloud"])
        runs.append((kind, p, s))
    while len(runs) < count:
        p = rng.choice(PHASES)
        runs.append(("iso" if p in ISO_ONLY else rng.choice(["iso", "cloud"]), p, rng.choice(SIGNALS)))
    return runs[:count] if count < len(pairs) else runs


def print_table(results):
    cols = SIGNALS
    print()
    print(f"{'phase':<12}" + "".join(f"{c:>14}" for c in cols))
    for ph in PHASES:
        row = f"{ph:<12}"
        for s in cols:
            ok = sum(1 for r in results if r["phase"] == ph and r["signal"] == s and not r["problems"])
            bad = sum(1 for r in results if r["phase"] == ph and r["signal"] == s and r["problems"])
            row += f"{f'{ok} ok / {bad} fail':>14}"
        print(row)
    other = [r for r in results if r["phase"] is None]
    if other:
        print(f"{len(other)} run(s) never reached a phase to interrupt (counted as failures)")


def setup(workdir: Path, guest: Path):
    plugin = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug/packer-plugin-qemu-rs"
    if os.environ.get("QEMU_RS_PLUGIN"):
        plugin = Path(os.environ["QEMU_RS_PLUGIN"])
    if not plugin.is_file():
        sys.exit(f"{plugin} is missing: cargo build -p packer-plugin-qemu-rs (or set QEMU_RS_PLUGIN)")
    plugins = workdir / "plugins"
    plugins.mkdir()
    for n in ("packer-builder-qemu-rs", "packer-provisioner-qemu-rs-shell"):
        shutil.copy(plugin, plugins / n)
    media = workdir / "media"
    media.mkdir()
    sums = {}
    for n in ("testguest.iso", "testguest.qcow2"):
        shutil.copy(guest / n, media / n)
        sums[n] = hashlib.sha256((media / n).read_bytes()).hexdigest()
    return plugins, media, sums


def matrix(args, workdir, guest):
    rng = random.Random(args.seed)
    print(f"interrupt matrix: {args.count} builds, seed {args.seed} (rerun with --seed {args.seed})", flush=True)
    plugins, media, sums = setup(workdir, guest)
    server = MediaServer(media)
    results = []
    try:
        def extra():
            # after the scheduled runs: up to --fill more for the pairs no run landed in (a phase
            # can be over before its first line is read)
            for _ in range(args.fill):
                covered = {(r["phase"], r["signal"]) for r in results if r["phase"] in PHASES}
                missing = [(p, s) for p in PHASES for s in SIGNALS if (p, s) not in covered]
                if not missing:
                    return
                p, s = missing[0]
                yield ("iso" if p in ISO_ONLY or p == "qemu_start" else rng.choice(["iso", "cloud"]), p, s)

        scheduled = schedule(args.count, rng)
        for i, (kind, phase, sig) in enumerate(itertools.chain(scheduled, extra())):
            # keys at 200 ms (adaptive default: 100-130 ms): the host is shared, and keys that a
            # guest slowed down by other work drops would end the build before its interrupt
            b = Build(workdir / f"run{i:03d}", plugins, guest, server, sums, kind, slow=(phase == "download"),
                      key_interval="200ms")
            t0 = time.monotonic()
            actual, problems = interrupt_run(b, phase, sig, rng)
            problems += check_cache(b.cache, media, sums)
            r = {"n": i, "kind": kind, "target": phase, "phase": actual, "signal": sig, "problems": problems,
                 "seconds": round(time.monotonic() - t0, 1)}
            results.append(r)
            status = "ok" if not problems else "FAIL"
            moved = "" if actual == phase else f" (aimed at {phase})"
            print(f"[{i + 1:>3}/{len(scheduled)}] {kind:<5} {str(actual):<10}{moved} {sig:<11} {status} "
                  f"{r['seconds']} s", flush=True)
            for p in problems:
                print(f"        {p}", flush=True)
            if problems:
                print(b.tail(), flush=True)
            if not args.keep:
                shutil.rmtree(b.dir, ignore_errors=True)
    finally:
        server.close()
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"seed": args.seed, "results": results}, indent=1))
    failed = [r for r in results if r["problems"] or (r["phase"] not in PHASES and r["phase"] != "done")]
    skipped = [r for r in results if r["phase"] == "done"]
    if skipped:
        print(f"{len(skipped)} build(s) finished before the signal (not counted)")
    covered = {(r["phase"], r["signal"]) for r in results if r["phase"] in PHASES}
    missing = [(p, s) for p in PHASES for s in SIGNALS if (p, s) not in covered]
    print(f"\n{len(results) - len(failed) - len(skipped)}/{len(results) - len(skipped)} clean; seed {args.seed}")
    if missing:
        print("pairs not covered: " + ", ".join(f"{p}x{s}" for p, s in missing))
    return 1 if failed else 0


def parallel(args, workdir, guest):
    n = args.parallel
    # n TCG guests share the host's cores: they boot n times slower (ssh_timeout is raised from the
    # templates' 5m to 40m) and GRUB reads typed keys n times slower: typed at the default pace,
    # keys overflow the keyboard buffer and are lost, so they go one a second (PACKER_KEY_INTERVAL)
    print(f"{n} builds at once (ISO and cloud alternating), one shared PACKER_CACHE_DIR", flush=True)
    plugins, media, sums = setup(workdir, guest)
    server = MediaServer(media)
    cache = workdir / "shared-cache"
    builds = [Build(workdir / f"build{i}", plugins, guest, server, sums, "iso" if i % 2 == 0 else "cloud",
                    slow=False, cache=cache, ssh_timeout="40m", key_interval="1s") for i in range(n)]
    t0 = time.monotonic()
    for b in builds:
        b.start()
    problems = []
    deadline = 3000
    while any(b.proc.poll() is None for b in builds) and time.monotonic() - t0 < deadline:
        for b in builds:
            if b.proc.poll() is None:
                b.snapshot()
        time.sleep(0.5)
    wall = time.monotonic() - t0
    for i, b in enumerate(builds):
        if b.proc.poll() is None:
            problems.append(f"build {i} still running after {deadline} s")
            os.killpg(b.proc.pid, signal.SIGKILL)
            b.proc.wait()
        b.reader.join(5)
        if b.proc.returncode != 0:
            problems.append(f"build {i} ({b.kind}) failed:\n{b.tail(40)}")
        elif not any(f.suffix == ".qcow2" for f in b.out.iterdir()):
            problems.append(f"build {i} has no qcow2 artifact in {b.out}")
    server.close()
    owners = {}
    for i, b in enumerate(builds):
        for p in b.ports():
            owners.setdefault(p, []).append(i)
    shared = {p: o for p, o in owners.items() if len(o) > 1}
    if shared:
        problems.append(f"ports used by more than one build: {shared}")
    for name in sums:
        gets = sum(v for k, v in server.gets.items() if k.endswith("/" + name))
        print(f"HTTP GETs of {name}: {gets}")
        if gets != 1:
            problems.append(f"{name} was fetched {gets} times (expected once)")
    outs = {b.out for b in builds}
    if len(outs) != n:
        problems.append("output directories are shared")
    for i, b in enumerate(builds):
        for j, c in enumerate(builds):
            if i != j and str(c.out) in b.text():
                problems.append(f"the log of build {i} names build {j}'s output directory")
    problems += check_cache(cache, media, sums)
    print(f"wall time {wall:.0f} s; ports per build: " +
          "; ".join(f"{i}:{sorted(b.ports())}" for i, b in enumerate(builds)))
    for p in problems:
        print("FAIL: " + p)
    print("all builds succeeded" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=40, help="interrupted builds (default 40)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    ap.add_argument("--fill", type=int, default=8,
                    help="at most this many extra runs for phase x signal pairs not covered (default 8)")
    ap.add_argument("--parallel", type=int, default=0, help="instead of the matrix: N builds at once")
    ap.add_argument("--keep", action="store_true", help="keep each build's directory")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--workdir", help="parent of the temporary directory (default: TMPDIR)")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1 << 31)
    guest = Path(os.environ.get("TESTGUEST_DIR", ROOT / "images/testguest/out")).resolve()
    if not (guest / "testguest.iso").is_file():
        sys.exit(f"{guest}/testguest.iso is missing: make testguest (or set TESTGUEST_DIR)")
    workdir = Path(tempfile.mkdtemp(prefix="qemu-rs-chaos-", dir=args.workdir))
    try:
        rc = parallel(args, workdir, guest) if args.parallel else matrix(args, workdir, guest)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
    sys.exit(rc)


if __name__ == "__main__":
    main()

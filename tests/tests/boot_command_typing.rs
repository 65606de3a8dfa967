//! Types boot commands into the test guest's GRUB entry editor under TCG, through the builder's QMP
//! key driver and through the VNC client, with the builder's default pacing (blind, and with flow
//! control from QEMU's keyboard trace events), and checks on the serial console (the kernel prints
//! its command line) that every character arrived, in order, once.
//!
//! QEMU is started directly (no Packer) with `images/testguest/out/testguest.iso` (`make testguest`;
//! `TESTGUEST_DIR` overrides the directory). Guests boot one at a time (the lock shared with the
//! other test-guest tests).
//!
//! `typing_bench` (ignored) measures typing speed and lost keys over several runs, at GRUB's entry
//! editor, with the typed text echoed by GRUB (no kernel load, so a run takes seconds):
//! `BENCH_TRANSPORT=qmp|vnc BENCH_FLOW=true|false BENCH_BATCH=<bytes> BENCH_WHOLE_PRESSES=true|false BENCH_PAUSE_MS=<ms>
//! BENCH_PER_COLUMN_US=<µs> BENCH_MAX_PAUSE_MS=<ms> BENCH_RUNS=10
//! cargo test -p qemu-rs-tests --test boot_command_typing -- --ignored --nocapture typing_bench`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use builder_qemu::config::BootTransport;
use builder_qemu::driver::key_trace::Ps2Feedback;
use builder_qemu::driver::qemu::QemuProcess;
use builder_qemu::driver::qmp_keys::{KeyPacing, QmpKeyDriver};
use builder_qemu::steps::boot_command::{
    flow_inner_pacing, flow_press_gap, type_command, PacedDriver, Typist, VNC_DEFAULT_PACING,
};
use packer_sdk::bootcommand::vnc::VncClient;
use packer_sdk::bootcommand::{FlowDriver, KeyDriver};
use packer_sdk::CancellationToken;
use qemu_rs_tests::{guest_slot, GuestSlot};
use tempfile::TempDir;

/// Hang guard for GRUB to show its menu.
const MENU_DEADLINE: Duration = Duration::from_secs(120);
/// Hang guard for the kernel to print its command line after `<f10>` (GRUB reads ~30 MB from the CD).
const KERNEL_DEADLINE: Duration = Duration::from_secs(300);
/// GRUB's menu countdown line: once it shows, the menu reads keys.
const MENU_READY: &str = "executed automatically in";

fn guest_iso() -> PathBuf {
    let dir = std::env::var_os("TESTGUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/testguest/out"));
    let iso = dir.join("testguest.iso");
    assert!(
        iso.is_file(),
        "{} is missing: build the test guest first with `make testguest` (or set TESTGUEST_DIR)",
        iso.display()
    );
    iso
}

/// The test guest's ISO booting in QEMU (TCG), with QMP, VNC on a free display and the serial
/// console in a file. QEMU dies with the handle.
struct Guest {
    qemu: QemuProcess,
    serial: PathBuf,
    trace: PathBuf,
    vnc_port: u16,
    _slot: GuestSlot,
    _tmp: TempDir,
}

impl Drop for Guest {
    fn drop(&mut self) {
        // the QemuProcess kills QEMU when dropped; be explicit and synchronous about it
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.qemu.pid() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Guest {
    async fn start() -> Guest {
        let slot = guest_slot();
        let iso = guest_iso();
        let tmp = tempfile::Builder::new().prefix("qemu-rs-typing-").tempdir().expect("temp dir");
        let serial = tmp.path().join("serial.log");
        let qmp = tmp.path().join("qmp.sock");
        let trace = tmp.path().join("qemu.trace");
        let argv: Vec<String> = [
            "-accel",
            "tcg",
            "-machine",
            "pc",
            "-m",
            "256",
            "-display",
            "none",
            "-nic",
            "none",
            "-boot",
            "d",
            "-vnc",
            "127.0.0.1:0,to=99",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "-cdrom".to_string(),
            iso.display().to_string(),
            "-serial".to_string(),
            format!("file:{}", serial.display()),
            "-qmp".to_string(),
            format!("unix:{},server=on,wait=off", qmp.display()),
            "-D".to_string(),
            trace.display().to_string(),
        ])
        .collect();
        let qemu = QemuProcess::launch("qemu-system-x86_64", &argv, &qmp, &serial).await.expect("start QEMU");
        let vnc_port = qemu.qmp.vnc_port().await.expect("query-vnc").expect("VNC is enabled");
        Guest { qemu, serial, trace, vnc_port, _slot: slot, _tmp: tmp }
    }

    fn serial_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    fn diagnostics(&self) -> String {
        let text = self.serial_text();
        let tail: String = text.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
        format!(
            "QEMU exit: {:?}; stderr: {:?}\nserial console (tail):\n{tail}",
            self.qemu.exit_status(),
            self.qemu.stderr_tail()
        )
    }

    /// Waits until the serial console shows `needle` at or after byte `from`; returns the byte
    /// offset just after it.
    async fn wait_serial(&self, from: usize, needle: &str, deadline: Duration) -> Result<usize, String> {
        let start = Instant::now();
        loop {
            let text = self.serial_text();
            if let Some(i) = text.get(from..).and_then(|t| t.find(needle)) {
                return Ok(from + i + needle.len());
            }
            if self.qemu.exit_status().is_some() || start.elapsed() > deadline {
                return Err(format!("the serial console never showed {needle:?}\n{}", self.diagnostics()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The builder's driver for `transport` with flow control from QEMU's keyboard trace events
    /// (as the builder types by default).
    async fn flow_driver(&self, transport: &str) -> Typist {
        let t = if transport == "qmp" { BootTransport::Qmp } else { BootTransport::Vnc };
        let inner = self.driver(transport, flow_inner_pacing(t)).await;
        let feedback = Ps2Feedback::start(self.qemu.qmp.clone(), &self.trace).await.expect("QEMU traces key reads");
        // as the builder does on an x86 BIOS guest
        let feedback = feedback.with_bios_buffer(self.qemu.qmp.clone()).await;
        let flow = FlowDriver::new(inner, Box::new(feedback)).with_press_gap(Box::new(flow_press_gap));
        Typist::Flow(flow, self.qemu.qmp.clone())
    }

    async fn driver(&self, transport: &str, pacing: KeyPacing) -> Box<dyn KeyDriver> {
        match transport {
            "qmp" => Box::new(QmpKeyDriver::new(self.qemu.qmp.clone(), pacing)),
            "vnc" => {
                let client =
                    VncClient::connect_tcp(&format!("127.0.0.1:{}", self.vnc_port), None).await.expect("VNC connect");
                Box::new(PacedDriver::new(client, pacing))
            }
            other => panic!("unknown transport {other:?}: use qmp or vnc"),
        }
    }
}

/// Types `command`; returns key presses per second.
async fn type_timed(driver: &mut dyn KeyDriver, command: &str) -> f64 {
    let start = Instant::now();
    let presses = type_command(driver, command, None, &CancellationToken::new()).await.expect("typing");
    presses as f64 / start.elapsed().as_secs_f64()
}

/// Kernel parameters of the long (~300 character) command: every letter in both cases, digits and
/// the symbols GRUB's parser and the kernel pass through unchanged. Parameters with a dot are
/// ignored by the kernel (module options), so the guest boots normally.
fn long_params() -> String {
    [
        "seed=http://10.0.2.2:8000/seed/",
        "tg.alpha=AbCdEfGhIjKlMnOpQrStUvWxYz-0123456789",
        "tg.beta=zyxwvutsrqponmlkjihgfedcba_ZYXWVUTSRQPONMLKJIHGFEDCBA",
        "tg.gamma=a.b,c:d/e+f%g@h~i^j-k_l=m",
        "tg.delta=The-Quick-Brown-Fox-Jumps-Over-The-Lazy-Dog,1234567890",
        "tg.eps=MiXeD~CaSe^WiTh@SyMbOlS+%2F:/path/to/some.where_else",
        "marker-text-END",
    ]
    .join(" ")
}

/// A command of more than 450 characters with shifted and special keys (`<bs>`, the symbols of the
/// shifted digit row and the shifted punctuation): the keys typed, and the kernel parameters GRUB
/// then passes on (the single quotes are GRUB's, so that it leaves `$`, `{}`, `|` … alone).
fn long_special_params() -> (String, String) {
    let more = "tg.zeta=Pack-My-Box-With-Five-Dozen-Liquor-Jugs_0987654321_SPHINX-OF-BLACK-QUARTZ-JUDGE-MY-VOW";
    let typed =
        format!("{} {more} tg.bs=abX<bs>cdYZ<bs><bs>e tg.sym='~!@#$%^&*()_+{{}}|:<>?' tg.end=OK", long_params());
    let expected = format!("{} {more} tg.bs=abcde tg.sym=~!@#$%^&*()_+{{}}|:<>? tg.end=OK", long_params());
    (typed, expected)
}

/// Boots the ISO, types `e<down><down><end> PARAMS<f10>` into GRUB's entry editor and checks that
/// the kernel command line ends with exactly PARAMS (or `expected`, when GRUB changes what was
/// typed).
async fn kernel_cmdline_gets_every_key(transport: &str, params: &str) {
    kernel_cmdline_is(transport, params, params, false).await
}

async fn kernel_cmdline_is(transport: &str, params: &str, expected: &str, flow: bool) {
    let guest = Guest::start().await;
    let pacing = match transport {
        "qmp" => KeyPacing::DEFAULT,
        _ => VNC_DEFAULT_PACING,
    };
    let mut driver = match flow {
        true => guest.flow_driver(transport).await,
        false => Typist::Blind(guest.driver(transport, pacing).await),
    };
    guest.wait_serial(0, MENU_READY, MENU_DEADLINE).await.unwrap_or_else(|e| panic!("{e}"));
    let command = format!("e<down><down><end> {params}<f10>");
    let rate = type_timed(&mut driver, &command).await;
    let stats = driver.finish().await;
    eprintln!("{transport}: typed {} keys at {rate:.1} keys/s, flow control {stats:?}", command.len());
    if let Some(s) = stats {
        assert_eq!(s.stalls, 0, "the guest read every key as it came: {s:?}");
        assert!(s.sent > 0 && s.consumed > 0, "{s:?}");
    }
    let params = expected;
    let end = guest.wait_serial(0, "Command line: ", KERNEL_DEADLINE).await.unwrap_or_else(|e| panic!("{e}"));
    let text = guest.serial_text();
    let line = text[end..].lines().next().unwrap_or("").trim_end();
    let typed = line.split_once("console=ttyS0,115200 ").map(|(_, p)| p).unwrap_or_else(|| {
        panic!("the kernel command line {line:?} lacks GRUB's console=ttyS0,115200: the edit went wrong")
    });
    if typed != params {
        let at = typed.chars().zip(params.chars()).take_while(|(a, b)| a == b).count();
        panic!(
            "{transport}: keys were lost or changed at character {at}:\n  typed    {params:?}\n  received {typed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qmp_typing_of_a_long_command_loses_no_key() {
    let params = long_params();
    assert!(params.len() > 280, "{}", params.len());
    kernel_cmdline_gets_every_key("qmp", &params).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vnc_typing_of_a_long_command_loses_no_key() {
    kernel_cmdline_gets_every_key("vnc", &long_params()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qmp_feedback_typing_of_a_long_command_with_special_keys_loses_no_key() {
    let (typed, expected) = long_special_params();
    assert!(typed.len() >= 450, "{}", typed.len());
    kernel_cmdline_is("qmp", &typed, &expected, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vnc_feedback_typing_of_a_long_command_with_special_keys_loses_no_key() {
    let (typed, expected) = long_special_params();
    kernel_cmdline_is("vnc", &typed, &expected, true).await;
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not valid")),
        Err(_) => default,
    }
}

/// See the module documentation. Each run types, on the empty line 2 of the entry editor,
/// `echo X"Y"TEXT` then `<f10>`: GRUB prints `XYTEXT` (the quotes tell the output apart from the
/// editor's echo of the keys), then the VM is reset for the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn typing_bench() {
    let transport: String = env_or("BENCH_TRANSPORT", "qmp".to_string());
    let default = if transport == "qmp" { KeyPacing::DEFAULT } else { VNC_DEFAULT_PACING };
    let pacing = KeyPacing {
        max_batch_bytes: env_or("BENCH_BATCH", default.max_batch_bytes),
        whole_presses: env_or("BENCH_WHOLE_PRESSES", default.whole_presses),
        batch_pause: Duration::from_millis(env_or("BENCH_PAUSE_MS", default.batch_pause.as_millis() as u64)),
        per_column: Duration::from_micros(env_or("BENCH_PER_COLUMN_US", default.per_column.as_micros() as u64)),
        max_pause: Duration::from_millis(env_or("BENCH_MAX_PAUSE_MS", default.max_pause.as_millis() as u64)),
    };
    let runs: usize = env_or("BENCH_RUNS", 10);
    let flow: bool = env_or("BENCH_FLOW", true);
    let text = long_params().replace(' ', "_");
    let guest = Guest::start().await;
    let mut from = 0;
    let mut ok = 0;
    let mut rates = Vec::new();
    for run in 1..=runs {
        from = guest.wait_serial(from, MENU_READY, MENU_DEADLINE).await.unwrap_or_else(|e| panic!("{e}"));
        let command = format!("e<down>echo X\"Y\"{text}<f10>");
        let mut driver = match flow {
            true => guest.flow_driver(&transport).await,
            false => Typist::Blind(guest.driver(&transport, pacing).await),
        };
        let rate = type_timed(&mut driver, &command).await;
        if let Some(stats) = driver.finish().await {
            eprintln!("run {run}: flow control {stats:?}");
        }
        rates.push(rate);
        // GRUB wraps its echo at the terminal width: compare without line breaks
        let expect = format!("XY{text}");
        let echoed = match guest.wait_serial(from, "XY", Duration::from_secs(20)).await {
            // the entry then boots the kernel, whose first line ends the echo
            Ok(at) => guest.wait_serial(at, "Linux version", Duration::from_secs(60)).await.map(|end| (at - 2, end)),
            Err(e) => Err(e),
        };
        match echoed {
            Ok((start, end)) => {
                let serial = guest.serial_text();
                let echo = &serial[start..end];
                let echo = &echo[..echo.find("[    0.").unwrap_or(echo.len())];
                let got: String = echo.chars().filter(|c| *c != '\r' && *c != '\n').collect();
                from = end;
                if got == expect {
                    ok += 1;
                    eprintln!("run {run}: ok, {rate:.1} keys/s");
                } else {
                    eprintln!("run {run}: LOST KEYS at {rate:.1} keys/s: got {got:?}");
                }
            }
            Err(_) => {
                let serial = guest.serial_text();
                let at = serial[from..].find("XY").map(|i| from + i).unwrap_or(from);
                let tail: String = serial[at..].chars().take(500).collect();
                eprintln!("run {run}: LOST KEYS at {rate:.1} keys/s: no kernel after the echo; serial ends {tail:?}");
                from = serial.len();
            }
        }
        guest.qemu.qmp.execute("system_reset", None).await.expect("system_reset");
    }
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    eprintln!(
        "BENCH transport={transport} flow={flow} pacing={pacing:?}: {ok}/{runs} runs without lost keys, mean {mean:.1} keys/s"
    );
    assert_eq!(ok, runs, "keys were lost");
}

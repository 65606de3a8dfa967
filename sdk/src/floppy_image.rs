//! Building a 1.44 MB FAT12 floppy image from files, directories and inline contents
//! (`floppy_files`, `floppy_dirs`, `floppy_content`, `floppy_label`), laid out the way Packer's
//! SDK lays it out (`StepCreateFloppy`):
//!
//! - `files`: each entry is a path or a glob (`*`, `?`, `[…]`, in any path element, as Go's
//!   `filepath.Glob`); a matched file goes to the root, a matched directory adds every file below
//!   it to the root too (flat, no sub-directories).
//! - `dirs`: each entry is a path or a glob; a matched directory is copied with its tree under its
//!   own name (`a/b` becomes `/b/...`), a matched file goes to the root.
//! - `content`: path on the floppy → text; parent directories are created; it wins over a file of
//!   the same name from `files`/`dirs` (Packer's documented rule).
//! - the label is the volume label (boot sector and root directory entry) and the OEM name (its
//!   first 8 characters), `packer` by default.
//!
//! Names are compared case-insensitively, as FAT does: two different sources for one name are an
//! error naming both (Packer fails too, with "name already exists"). The image uses the standard
//! 1.44 MB geometry (2880 sectors, 18 per track, 2 heads, 224 root entries, media 0xF0) and long
//! file names (VFAT).
//!
//! Written with GNU mtools (`mformat`, `mcopy`; Debian package `mtools`). The `fatfs` crate was
//! tried first: its latest release (0.3.6) writes long-name entries before the `.` and `..`
//! entries of every directory it creates, which `fsck.fat` reports as corruption (fixed only in
//! its unreleased 0.4), so any `floppy_dirs` tree would be damaged.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Size of the image: a 3.5" high-density floppy.
pub const FLOPPY_BYTES: u64 = 1_474_560;
/// Bytes free for files and directories on an empty image (2847 clusters of 512 bytes).
pub const FLOPPY_DATA_BYTES: u64 = 2847 * 512;
/// The label used when none is given.
pub const DEFAULT_LABEL: &str = "packer";
/// Characters a FAT volume label may not contain.
const LABEL_FORBIDDEN: &str = "\"*+,./:;<=>?[\\]|";
/// Characters a FAT long file name may not contain.
const NAME_FORBIDDEN: &str = "\"*/:<>?\\|";

/// Errors building a floppy image. Each message names the option at fault and what to do.
#[derive(Debug, thiserror::Error)]
pub enum FloppyError {
    /// An entry of `floppy_files`/`floppy_dirs`/`floppy_content` is unusable.
    #[error("{option}: {message}")]
    Input {
        /// The option (`floppy_files`, `floppy_dirs`, `floppy_content`, `floppy_label`).
        option: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The files do not fit.
    #[error(
        "the floppy files need {needed} bytes but a 1.44 MB floppy holds {FLOPPY_DATA_BYTES}; move large files to \
         cd_files or serve them with http_directory"
    )]
    TooBig {
        /// Bytes needed (files rounded up to 512-byte clusters, plus directories).
        needed: u64,
    },
    /// mtools is not installed.
    #[error("making a floppy image needs mtools (mformat, mcopy): install it with apt-get install mtools")]
    NoTool,
    /// An mtools command failed.
    #[error("`{command}` failed: {stderr}")]
    Tool {
        /// What ran.
        command: String,
        /// Its error output.
        stderr: String,
    },
    /// Writing the image failed.
    #[error("writing the floppy image {path}: {source}")]
    Write {
        /// The image.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn input(option: &'static str, message: impl Into<String>) -> FloppyError {
    FloppyError::Input { option, message: message.into() }
}

/// What goes on the floppy (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloppySpec {
    /// `floppy_files`.
    pub files: Vec<String>,
    /// `floppy_dirs`.
    pub dirs: Vec<String>,
    /// `floppy_content`.
    pub content: BTreeMap<String, String>,
    /// `floppy_label` (empty = `packer`).
    pub label: String,
}

impl FloppySpec {
    /// Whether there is anything to put on a floppy (else no floppy is made).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty() && self.content.is_empty()
    }
}

/// What [`build`] put on the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloppyReport {
    /// Paths on the floppy (`/`-separated, no leading `/`) with where each came from.
    pub files: Vec<(String, String)>,
    /// Things worth telling the user (a glob that matched nothing).
    pub notes: Vec<String>,
}

/// Whether `s` contains glob characters (as Packer decides).
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Checks a `floppy_files`/`floppy_dirs` glob (a plain path is always fine).
pub fn check_pattern(entry: &str) -> Result<(), String> {
    match glob::Pattern::new(entry) {
        Ok(_) => Ok(()),
        Err(e) if has_glob(entry) => Err(format!("{entry:?} is not a valid pattern: {e}")),
        Err(_) => Ok(()),
    }
}

/// Checks a volume label: at most 11 ASCII characters, none of those FAT forbids.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.len() > 11 || !label.is_ascii() {
        return Err(format!("{label:?} must be at most 11 ASCII characters (a FAT volume label)"));
    }
    if let Some(c) = label.chars().find(|c| LABEL_FORBIDDEN.contains(*c) || c.is_ascii_control()) {
        return Err(format!("{label:?} contains {c:?}, which a FAT volume label cannot hold"));
    }
    Ok(())
}

/// Checks one path component of a file on the floppy.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("{name:?} is not a file name"));
    }
    if name.chars().count() > 255 {
        return Err(format!("{name:?} is longer than the 255 characters a FAT long file name allows"));
    }
    if let Some(c) = name.chars().find(|c| NAME_FORBIDDEN.contains(*c) || c.is_control()) {
        return Err(format!("{name:?} contains {c:?}, which FAT file names cannot hold"));
    }
    Ok(())
}

/// Splits a `floppy_content` key into its path components (a leading `/` is allowed).
pub fn content_path(key: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = key.trim_start_matches('/').split('/').map(str::to_string).collect();
    for p in &parts {
        check_name(p).map_err(|e| format!("key {key:?}: {e}; use a relative path such as \"dir/file.txt\""))?;
    }
    Ok(parts)
}

/// Expands one `floppy_files`/`floppy_dirs` entry relative to `base`: a glob gives its matches
/// (sorted; none is not an error, as in Packer), a plain path itself (it must exist).
fn expand(option: &'static str, entry: &str, base: &Path) -> Result<Vec<PathBuf>, FloppyError> {
    let full = base.join(entry);
    if !has_glob(entry) {
        if full.exists() {
            return Ok(vec![full]);
        }
        return Err(input(option, format!("{entry:?} does not exist (looked in {}); fix the path", base.display())));
    }
    let pattern = full.to_string_lossy().into_owned();
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let paths =
        glob::glob_with(&pattern, opts).map_err(|e| input(option, format!("{entry:?} is not a valid pattern: {e}")))?;
    let mut out = Vec::new();
    for p in paths {
        out.push(p.map_err(|e| input(option, format!("{entry:?}: cannot read {}", e.path().display())))?);
    }
    out.sort();
    Ok(out)
}

/// Every regular file below `dir`, sorted, with its path relative to `dir`; also every directory.
fn walk(option: &'static str, dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), FloppyError> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&here)
            .map_err(|e| input(option, format!("cannot list {}: {e}", here.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| input(option, format!("cannot list {}: {e}", here.display())))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries.into_iter().rev() {
            let r = rel.join(e.file_name());
            // follow symlinks, like Go's os.Stat
            let meta = std::fs::metadata(e.path())
                .map_err(|err| input(option, format!("cannot read {}: {err}", e.path().display())))?;
            if meta.is_dir() {
                dirs.push(r.clone());
                stack.push(r);
            } else {
                files.push(r);
            }
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

fn file_name(option: &'static str, p: &Path) -> Result<String, FloppyError> {
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| input(option, format!("{} has no UTF-8 file name", p.display())))?;
    check_name(name).map_err(|e| input(option, format!("{}: {e}; rename it", p.display())))?;
    Ok(name.to_string())
}

fn components(option: &'static str, rel: &Path) -> Result<Vec<String>, FloppyError> {
    rel.components()
        .map(|c| {
            let s = c.as_os_str().to_str().ok_or_else(|| input(option, format!("{} is not UTF-8", rel.display())))?;
            check_name(s).map_err(|e| input(option, format!("{}: {e}; rename it", rel.display())))?;
            Ok(s.to_string())
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Content(String),
}

impl Source {
    fn describe(&self, option: &str) -> String {
        match self {
            Source::File(p) => format!("{} ({option})", p.display()),
            Source::Content(_) => "floppy_content".to_string(),
        }
    }
}

/// The planned layout: directories and files by their case-folded path.
#[derive(Default)]
struct Plan {
    dirs: BTreeMap<String, Vec<String>>,
    files: BTreeMap<String, (Vec<String>, Source, &'static str)>,
}

fn key(parts: &[String]) -> String {
    parts.iter().map(|p| p.to_uppercase()).collect::<Vec<_>>().join("/")
}

impl Plan {
    fn add_dir(&mut self, option: &'static str, parts: &[String]) -> Result<(), FloppyError> {
        for i in 1..=parts.len() {
            let k = key(&parts[..i]);
            if let Some((_, src, opt)) = self.files.get(&k) {
                return Err(input(
                    option,
                    format!(
                        "{} is both a file ({}) and a directory on the floppy",
                        parts[..i].join("/"),
                        src.describe(opt)
                    ),
                ));
            }
            self.dirs.entry(k).or_insert_with(|| parts[..i].to_vec());
        }
        Ok(())
    }

    fn add_file(&mut self, option: &'static str, parts: Vec<String>, src: Source) -> Result<(), FloppyError> {
        self.add_dir(option, &parts[..parts.len() - 1])?;
        let k = key(&parts);
        if self.dirs.contains_key(&k) {
            return Err(input(option, format!("{} is both a directory and a file on the floppy", parts.join("/"))));
        }
        if let Some((_, old, old_opt)) = self.files.get(&k) {
            if !matches!(src, Source::Content(_)) {
                return Err(input(
                    option,
                    format!(
                        "two files want the name {} on the floppy: {} and {} (FAT names ignore case); rename one or \
                         use floppy_dirs to keep directories apart",
                        parts.join("/"),
                        old.describe(old_opt),
                        src.describe(option)
                    ),
                ));
            }
        }
        self.files.insert(k, (parts, src, option));
        Ok(())
    }
}

fn plan(spec: &FloppySpec, base: &Path, notes: &mut Vec<String>) -> Result<Plan, FloppyError> {
    let mut plan = Plan::default();
    for entry in &spec.files {
        let matches = expand("floppy_files", entry, base)?;
        if matches.is_empty() {
            notes.push(format!("floppy_files: {entry:?} matches no file"));
        }
        for m in matches {
            if m.is_dir() {
                let (files, _) = walk("floppy_files", &m)?;
                for f in files {
                    let full = m.join(&f);
                    let name = file_name("floppy_files", &full)?;
                    plan.add_file("floppy_files", vec![name], Source::File(full))?;
                }
            } else {
                let name = file_name("floppy_files", &m)?;
                plan.add_file("floppy_files", vec![name], Source::File(m))?;
            }
        }
    }
    for entry in &spec.dirs {
        let matches = expand("floppy_dirs", entry, base)?;
        if matches.is_empty() {
            notes.push(format!("floppy_dirs: {entry:?} matches no directory"));
        }
        for m in matches {
            let top = file_name("floppy_dirs", &m)?;
            if m.is_dir() {
                let (files, dirs) = walk("floppy_dirs", &m)?;
                plan.add_dir("floppy_dirs", std::slice::from_ref(&top))?;
                for d in dirs {
                    let mut parts = vec![top.clone()];
                    parts.extend(components("floppy_dirs", &d)?);
                    plan.add_dir("floppy_dirs", &parts)?;
                }
                for f in files {
                    let mut parts = vec![top.clone()];
                    parts.extend(components("floppy_dirs", &f)?);
                    plan.add_file("floppy_dirs", parts, Source::File(m.join(&f)))?;
                }
            } else {
                plan.add_file("floppy_dirs", vec![top], Source::File(m))?;
            }
        }
    }
    for (k, body) in &spec.content {
        let parts = content_path(k).map_err(|e| input("floppy_content", e))?;
        plan.add_file("floppy_content", parts, Source::Content(body.clone()))?;
    }
    Ok(plan)
}

fn round_up(n: u64) -> u64 {
    n.div_ceil(512).max(1) * 512
}

/// Offset of the OEM name in the boot sector.
const OEM_OFFSET: u64 = 3;
/// Offset of the volume label in the FAT12 boot sector.
const BOOT_LABEL_OFFSET: u64 = 43;
/// Offset of the root directory of the 1.44 MB layout (sector 19: 1 boot + 2 FATs of 9 sectors).
const ROOT_DIR_OFFSET: u64 = 19 * 512;

/// Builds the floppy image at `output` (the caller owns and removes it). Relative entries of
/// `files`/`dirs` are resolved against `base_dir` (the directory Packer runs in, as Packer does).
/// The image is complete when this returns `Ok`; on error it may be partly written.
pub async fn build(spec: &FloppySpec, base_dir: &Path, output: &Path) -> Result<FloppyReport, FloppyError> {
    let label = if spec.label.is_empty() { DEFAULT_LABEL } else { spec.label.as_str() };
    check_label(label).map_err(|e| input("floppy_label", e))?;
    let mut report = FloppyReport::default();
    let plan = plan(spec, base_dir, &mut report.notes)?;

    // Capacity, before writing anything: files and sub-directories take whole 512-byte clusters.
    let mut needed = plan.dirs.len() as u64 * 512;
    for (_, src, _) in plan.files.values() {
        needed += match src {
            Source::File(p) => round_up(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)),
            Source::Content(s) => round_up(s.len() as u64),
        };
    }
    if needed > FLOPPY_DATA_BYTES {
        return Err(FloppyError::TooBig { needed });
    }

    // Stage the layout in a temp dir, then format and copy it in with mtools.
    let werr = |source: std::io::Error| FloppyError::Write { path: output.display().to_string(), source };
    let stage = tempfile::Builder::new().prefix("qemu-rs-floppy-").tempdir().map_err(werr)?;
    let _janitor = crate::janitor::guard(stage.path());
    for parts in plan.dirs.values() {
        std::fs::create_dir_all(stage.path().join(parts.join("/"))).map_err(werr)?;
    }
    for (parts, src, option) in plan.files.values() {
        let path = parts.join("/");
        let dst = stage.path().join(&path);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(werr)?;
        }
        match src {
            Source::File(p) => {
                std::fs::copy(p, &dst).map_err(|e| input(option, format!("cannot read {}: {e}", p.display())))?;
            }
            Source::Content(s) => std::fs::write(&dst, s).map_err(werr)?,
        }
        report.files.push((path, src.describe(option)));
    }
    {
        let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(output).map_err(werr)?;
        f.set_len(FLOPPY_BYTES).map_err(werr)?;
    }
    let img = output.display().to_string();
    mtool("mformat", &["-i", &img, "-f", "1440", "-v", label, "::"]).await?;
    let mut top: Vec<String> = std::fs::read_dir(stage.path())
        .and_then(|rd| rd.map(|e| e.map(|e| e.path().display().to_string())).collect())
        .map_err(werr)?;
    top.sort();
    if !top.is_empty() {
        let mut args = vec!["-s", "-Q", "-i", &img];
        args.extend(top.iter().map(String::as_str));
        args.push("::/");
        mtool("mcopy", &args).await?;
    }
    write_label(output, label).map_err(werr)?;
    Ok(report)
}

/// Writes `label` as Packer does: the OEM name (its first 8 characters) and the volume label in
/// the boot sector and in the root directory's volume entry, exactly as given (mtools upper-cases
/// the root directory copy; Packer keeps the case, which `LABEL=` lookups in guests depend on).
fn write_label(image: &Path, label: &str) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(image)?;
    let mut oem = [b' '; 8];
    let n = label.len().min(8);
    oem[..n].copy_from_slice(&label.as_bytes()[..n]);
    let mut name = [b' '; 11];
    name[..label.len()].copy_from_slice(label.as_bytes());
    f.seek(SeekFrom::Start(OEM_OFFSET))?;
    f.write_all(&oem)?;
    f.seek(SeekFrom::Start(BOOT_LABEL_OFFSET))?;
    f.write_all(&name)?;
    // mformat writes the volume entry first in the root directory; check before touching it
    let mut entry = [0u8; 32];
    f.seek(SeekFrom::Start(ROOT_DIR_OFFSET))?;
    f.read_exact(&mut entry)?;
    if entry[11] & 0x08 == 0 {
        return Err(std::io::Error::other("mformat did not write a volume label entry first in the root directory"));
    }
    f.seek(SeekFrom::Start(ROOT_DIR_OFFSET))?;
    f.write_all(&name)?;
    f.sync_all()
}

/// Runs an mtools command (no configuration file checks, no questions), failing with its stderr.
async fn mtool(tool: &str, args: &[&str]) -> Result<(), FloppyError> {
    tracing::debug!("running {tool} {}", args.join(" "));
    let out = tokio::process::Command::new(tool)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("MTOOLSRC", "/dev/null")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => FloppyError::NoTool,
            _ => FloppyError::Tool { command: tool.to_string(), stderr: e.to_string() },
        })?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(FloppyError::Tool { command: format!("{tool} {}", args.join(" ")), stderr });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn tool(name: &str) -> Command {
        let mut c = Command::new(name);
        c.env("PATH", format!("{}:/usr/sbin:/sbin", std::env::var("PATH").unwrap_or_default()));
        c.env("MTOOLS_SKIP_CHECK", "1");
        c
    }

    fn run(cmd: &mut Command) -> String {
        let out =
            cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (apt-get install mtools dosfstools)"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{cmd:?} failed:\n{text}");
        text
    }

    /// Reads a file from the image with mtools (an independent FAT implementation).
    fn mtype(img: &Path, path: &str) -> String {
        run(tool("mtype").arg("-i").arg(img).arg(format!("::{path}")))
    }

    #[tokio::test]
    async fn lays_out_files_dirs_and_content_like_packer_and_fsck_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("answers/nested/deeper")).unwrap();
        std::fs::write(d.join("answers/Autounattend.xml"), "<unattend/>").unwrap();
        std::fs::write(d.join("answers/nested/deeper/flat.txt"), "flattened").unwrap();
        std::fs::write(d.join("a.cfg"), "A").unwrap();
        std::fs::write(d.join("b.cfg"), "B").unwrap();
        std::fs::write(d.join("ks.cfg"), "kickstart from file").unwrap();
        std::fs::create_dir_all(d.join("drivers/amd64/net")).unwrap();
        std::fs::create_dir_all(d.join("drivers/empty")).unwrap();
        std::fs::write(d.join("drivers/amd64/net/netkvm.inf"), "inf").unwrap();
        let spec = FloppySpec {
            files: vec!["answers".into(), "*.cfg".into(), "nothing-*.xyz".into()],
            dirs: vec!["drivers".into()],
            content: [
                ("ks.cfg".to_string(), "kickstart from content".to_string()),
                ("/meta/user-data".to_string(), "#cloud-config\n".to_string()),
            ]
            .into_iter()
            .collect(),
            label: "cidata".into(),
        };
        let img = d.join("floppy.img");
        let report = build(&spec, d, &img).await.unwrap();
        assert_eq!(std::fs::metadata(&img).unwrap().len(), FLOPPY_BYTES);
        assert_eq!(report.notes, ["floppy_files: \"nothing-*.xyz\" matches no file"]);

        // dosfstools: a clean FAT12 file system with the label
        let fsck = run(tool("fsck.fat").arg("-n").arg("-v").arg(&img));
        assert!(fsck.contains("2 FATs, 12 bit entries"), "{fsck}");
        assert!(fsck.contains("System ID \"cidata  \""), "{fsck}");
        // nothing to repair: fsck.fat -n prints only its report
        let after: Vec<&str> = fsck.split("sectors total").nth(1).unwrap_or_default().lines().skip(1).collect();
        assert_eq!(after.len(), 2, "fsck.fat found problems:\n{fsck}");
        assert_eq!(after[0], "Checking for unused clusters.", "{fsck}");
        // the standard 1.44 MB geometry, the OEM name and the volume label
        let info = run(tool("minfo").arg("-i").arg(&img).arg("::"));
        for needle in [
            "sectors per track: 18",
            "heads: 2",
            "media descriptor byte: 0xf0",
            "sectors per fat: 9",
            "max available root directory slots: 224",
            "banner:\"cidata  \"",
            "disk label=\"cidata     \"",
            "disk type=\"FAT12   \"",
        ] {
            assert!(info.contains(needle), "{needle:?} not in:\n{info}");
        }
        // files flat at the root, directories as trees, content wins
        assert_eq!(mtype(&img, "/Autounattend.xml"), "<unattend/>");
        assert_eq!(mtype(&img, "/flat.txt"), "flattened");
        assert_eq!(mtype(&img, "/a.cfg"), "A");
        assert_eq!(mtype(&img, "/b.cfg"), "B");
        assert_eq!(mtype(&img, "/ks.cfg"), "kickstart from content");
        assert_eq!(mtype(&img, "/meta/user-data"), "#cloud-config\n");
        assert_eq!(mtype(&img, "/drivers/amd64/net/netkvm.inf"), "inf");
        let ls = run(tool("mdir").args(["-/", "-b", "-i"]).arg(&img).arg("::"));
        assert!(ls.contains("::/drivers/empty/"), "empty directories are kept:\n{ls}");
        assert!(!ls.contains("answers"), "floppy_files flattens directories:\n{ls}");
        assert!(!ls.contains("nested"), "{ls}");
        let names: Vec<&str> = report.files.iter().map(|(p, _)| p.as_str()).collect();
        assert!(names.contains(&"drivers/amd64/net/netkvm.inf"), "{names:?}");
    }

    #[tokio::test]
    async fn default_label_and_long_label_oem_name() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("f.img");
        let spec = FloppySpec { content: [("x".to_string(), "y".to_string())].into(), ..Default::default() };
        build(&spec, dir.path(), &img).await.unwrap();
        let info = run(tool("minfo").arg("-i").arg(&img).arg("::"));
        assert!(info.contains("banner:\"packer  \"") && info.contains("disk label=\"packer     \""), "{info}");
        let spec = FloppySpec { label: "WIN10DRIVER".into(), ..spec };
        build(&spec, dir.path(), &img).await.unwrap();
        let info = run(tool("minfo").arg("-i").arg(&img).arg("::"));
        assert!(info.contains("banner:\"WIN10DRI\"") && info.contains("disk label=\"WIN10DRIVER\""), "{info}");
    }

    #[tokio::test]
    async fn clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let img = d.join("f.img");
        std::fs::create_dir_all(d.join("x")).unwrap();
        std::fs::create_dir_all(d.join("y")).unwrap();
        std::fs::write(d.join("x/README"), "1").unwrap();
        std::fs::write(d.join("y/readme"), "2").unwrap();
        let e = build(&FloppySpec { files: vec!["x".into(), "y".into()], ..Default::default() }, d, &img)
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("floppy_files: two files want the name readme"), "{e}");
        // the same directories kept apart with floppy_dirs
        build(&FloppySpec { dirs: vec!["x".into(), "y".into()], ..Default::default() }, d, &img).await.unwrap();
        assert_eq!(mtype(&img, "/y/readme"), "2");

        let e =
            build(&FloppySpec { files: vec!["missing.txt".into()], ..Default::default() }, d, &img).await.unwrap_err();
        assert!(e.to_string().contains("floppy_files: \"missing.txt\" does not exist"), "{e}");
        let e = build(&FloppySpec { dirs: vec!["[".into()], ..Default::default() }, d, &img).await.unwrap_err();
        assert!(e.to_string().contains("floppy_dirs: \"[\" is not a valid pattern"), "{e}");
        let e = build(
            &FloppySpec { content: [("../etc/passwd".to_string(), String::new())].into(), ..Default::default() },
            d,
            &img,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().starts_with("floppy_content: key \"../etc/passwd\""), "{e}");
        let e =
            build(&FloppySpec { label: "way too long label".into(), ..Default::default() }, d, &img).await.unwrap_err();
        assert!(e.to_string().starts_with("floppy_label:"), "{e}");

        std::fs::write(d.join("big.bin"), vec![7u8; 1_500_000]).unwrap();
        let e = build(&FloppySpec { files: vec!["big.bin".into()], ..Default::default() }, d, &img).await.unwrap_err();
        assert!(matches!(e, FloppyError::TooBig { needed: 1_500_160 }), "{e}");
        assert!(e.to_string().contains("http_directory"), "{e}");
        // nearly full is fine, and every byte arrives
        std::fs::write(d.join("big.bin"), vec![7u8; 1_400_000]).unwrap();
        build(&FloppySpec { files: vec!["big.bin".into()], ..Default::default() }, d, &img).await.unwrap();
        let out = tool("mtype").arg("-i").arg(&img).arg("::/big.bin").output().unwrap();
        assert_eq!(out.stdout.len(), 1_400_000);
        assert!(out.stdout.iter().all(|&b| b == 7));
    }

    #[tokio::test]
    async fn glob_in_a_directory_element_like_go() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["one", "two"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
            std::fs::write(d.join(sub).join(format!("{sub}.inf")), sub).unwrap();
        }
        let img = d.join("f.img");
        let r = build(&FloppySpec { files: vec!["*/*.inf".into()], ..Default::default() }, d, &img).await.unwrap();
        let names: Vec<&str> = r.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["one.inf", "two.inf"]);
    }
}

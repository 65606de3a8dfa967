//! Building a small ISO 9660 image from files and inline contents (`cd_files`, `cd_content`,
//! `cd_label`), e.g. a NoCloud `cidata` seed. Made with `xorriso` (or `genisoimage`/`mkisofs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors building a CD image.
#[derive(Debug, thiserror::Error)]
pub enum CdImageError {
    /// A `cd_files` entry matched nothing or could not be read.
    #[error("cd_files: {0}")]
    Files(String),
    /// No ISO tool is installed.
    #[error("no ISO 9660 tool found: install xorriso (apt-get install xorriso) or genisoimage")]
    NoTool,
    /// The tool failed.
    #[error("`{command}` failed: {stderr}")]
    Tool {
        /// What ran.
        command: String,
        /// Its stderr.
        stderr: String,
    },
    /// Staging the files failed.
    #[error("preparing the CD contents: {0}")]
    Io(#[from] std::io::Error),
}

/// What goes on the CD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdSpec {
    /// Files and directories (a directory's contents go under its name; a trailing `/` puts
    /// its contents at the root, like Packer). Shell globs (`*`, `?`, `[…]`) in the last path
    /// element are expanded.
    pub files: Vec<String>,
    /// Inline files: path on the CD → content. Win over `files`.
    pub content: BTreeMap<String, String>,
    /// The volume label (`cidata` for cloud-init NoCloud).
    pub label: String,
}

/// Builds the ISO at `output` (the caller owns and removes it). Relative `files` are resolved
/// against `base_dir` (the template's directory or the working directory).
pub async fn build(spec: &CdSpec, base_dir: &Path, output: &Path) -> Result<(), CdImageError> {
    let stage = tempfile::Builder::new().prefix("qemu-rs-cd-").tempdir()?;
    let _janitor = crate::janitor::guard(stage.path());
    for entry in &spec.files {
        let contents_only = entry.ends_with('/');
        let p = base_dir.join(entry.trim_end_matches('/'));
        let matches = expand_glob(&p)?;
        if matches.is_empty() {
            return Err(CdImageError::Files(format!("{entry:?} matches no file (looked in {})", base_dir.display())));
        }
        for m in matches {
            if m.is_dir() {
                let dst = if contents_only { stage.path().to_path_buf() } else { stage.path().join(file_name(&m)?) };
                copy_dir(&m, &dst)?;
            } else {
                std::fs::copy(&m, stage.path().join(file_name(&m)?))
                    .map_err(|e| CdImageError::Files(format!("cannot read {}: {e}", m.display())))?;
            }
        }
    }
    for (path, body) in &spec.content {
        let rel = path.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") || rel.is_empty() {
            return Err(CdImageError::Files(format!("cd_content key {path:?} is not a relative path inside the CD")));
        }
        let dst = stage.path().join(rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(dst, body)?;
    }
    let label = if spec.label.is_empty() { "packer" } else { spec.label.as_str() };
    let (tool, mut args): (&str, Vec<String>) = if which("xorriso") {
        ("xorriso", vec!["-as".into(), "genisoimage".into()])
    } else if which("genisoimage") {
        ("genisoimage", vec![])
    } else if which("mkisofs") {
        ("mkisofs", vec![])
    } else {
        return Err(CdImageError::NoTool);
    };
    args.extend(["-quiet".into(), "-output".into(), output.display().to_string(), "-volid".into(), label.into()]);
    args.extend(["-joliet".into(), "-rock".into(), stage.path().display().to_string()]);
    let command = format!("{tool} {}", args.join(" "));
    tracing::info!("running {command}");
    let out = tokio::process::Command::new(tool).args(&args).stdin(std::process::Stdio::null()).output().await?;
    if !out.status.success() {
        return Err(CdImageError::Tool { command, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(())
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH").map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file())).unwrap_or(false)
}

fn file_name(p: &Path) -> Result<&std::ffi::OsStr, CdImageError> {
    p.file_name().ok_or_else(|| CdImageError::Files(format!("{} has no file name", p.display())))
}

fn copy_dir(src: &Path, dst: &Path) -> Result<(), CdImageError> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), to)?;
        }
    }
    Ok(())
}

/// Expands glob characters in the last path element (`dir/*.yaml`); a path without them is
/// returned as is when it exists.
fn expand_glob(p: &Path) -> Result<Vec<PathBuf>, CdImageError> {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains(['*', '?', '[']) {
        return Ok(if p.exists() { vec![p.to_path_buf()] } else { vec![] });
    }
    let dir = p.parent().unwrap_or(Path::new("."));
    let mut out = vec![];
    let rd = std::fs::read_dir(dir).map_err(|e| CdImageError::Files(format!("cannot list {}: {e}", dir.display())))?;
    for e in rd {
        let e = e?;
        if let Some(n) = e.file_name().to_str() {
            if glob_match(name.as_bytes(), n.as_bytes()) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Shell-style matching of `*`, `?` and `[abc]`/`[a-z]`/`[!a]`.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_match(&pat[1..], s) || (!s.is_empty() && glob_match(pat, &s[1..])),
        (Some(b'?'), Some(_)) => glob_match(&pat[1..], &s[1..]),
        (Some(b'['), Some(&c)) => {
            let Some(end) = pat.iter().skip(1).position(|&b| b == b']').map(|i| i + 1) else {
                return c == b'[' && glob_match(&pat[1..], &s[1..]);
            };
            let set = &pat[1..end];
            let (neg, set) = if set.first() == Some(&b'!') { (true, &set[1..]) } else { (false, set) };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != neg && glob_match(&pat[end + 1..], &s[1..])
        }
        (Some(&p), Some(&c)) => p == c && glob_match(&pat[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*.yaml", b"user.yaml"));
        assert!(!glob_match(b"*.yaml", b"user.yml"));
        assert!(glob_match(b"f?le[0-9]", b"file7"));
        assert!(!glob_match(b"f[!i]le", b"file"));
    }

    #[tokio::test]
    async fn builds_a_cidata_iso_xorriso_can_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("seed")).unwrap();
        std::fs::write(dir.path().join("seed/vendor-data"), "#cloud-config\n").unwrap();
        std::fs::write(dir.path().join("a.cfg"), "A").unwrap();
        std::fs::write(dir.path().join("b.cfg"), "B").unwrap();
        let spec = CdSpec {
            files: vec!["seed/".into(), "*.cfg".into()],
            content: [
                ("user-data".to_string(), "#cloud-config\npassword: packer\n".to_string()),
                ("meta-data".to_string(), String::new()),
            ]
            .into_iter()
            .collect(),
            label: "cidata".into(),
        };
        let iso = dir.path().join("out.iso");
        build(&spec, dir.path(), &iso).await.unwrap();
        let out = std::process::Command::new("xorriso")
            .args(["-indev"])
            .arg(&iso)
            .args(["-pvd_info", "-find", "/", "-type", "f"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("Volume Id    : cidata"), "{text}");
        for f in ["/user-data", "/meta-data", "/vendor-data", "/a.cfg", "/b.cfg"] {
            assert!(text.contains(&format!("'{f}'")), "{f} missing:\n{text}");
        }
    }

    #[tokio::test]
    async fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let spec = CdSpec { files: vec!["nope/*.yaml".into()], ..Default::default() };
        let e = build(&spec, dir.path(), &dir.path().join("x.iso")).await.unwrap_err();
        assert!(e.to_string().contains("cd_files"), "{e}");
        let spec =
            CdSpec { content: [("../x".to_string(), String::new())].into_iter().collect(), ..Default::default() };
        let e = build(&spec, dir.path(), &dir.path().join("x.iso")).await.unwrap_err();
        assert!(e.to_string().contains("cd_content"), "{e}");
    }
}

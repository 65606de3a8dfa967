//! Fetching installer ISOs and cloud images: local paths, `file://` and `http(s)://` URLs with
//! mirror fallback, checksums (`hex`, `md5|sha1|sha256|sha512:hex`, `file:URL-or-path`, `none`),
//! a cache keyed by URL and checksum, resumable downloads and progress through Packer's UI.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ui::Ui;
use crate::CancellationToken;

/// A hash algorithm of a checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo {
    /// MD5 (32 hex digits).
    Md5,
    /// SHA-1 (40).
    Sha1,
    /// SHA-256 (64).
    Sha256,
    /// SHA-512 (128).
    Sha512,
}

impl HashAlgo {
    fn from_name(s: &str) -> Option<HashAlgo> {
        match s.to_ascii_lowercase().as_str() {
            "md5" => Some(HashAlgo::Md5),
            "sha1" => Some(HashAlgo::Sha1),
            "sha256" => Some(HashAlgo::Sha256),
            "sha512" => Some(HashAlgo::Sha512),
            _ => None,
        }
    }
    fn from_hex_len(n: usize) -> Option<HashAlgo> {
        match n {
            32 => Some(HashAlgo::Md5),
            40 => Some(HashAlgo::Sha1),
            64 => Some(HashAlgo::Sha256),
            128 => Some(HashAlgo::Sha512),
            _ => None,
        }
    }
    /// The lowercase name (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Md5 => "md5",
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha512 => "sha512",
        }
    }
}

/// A parsed `iso_checksum`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// `none`: not verified.
    None,
    /// A known digest.
    Hash {
        /// Algorithm.
        algo: HashAlgo,
        /// Lowercase hex digest.
        hex: String,
    },
    /// `file:SOURCE`: look the digest up in a checksum file (GNU or BSD format) by file name.
    File {
        /// Algorithm given as `algo:file:…`, else inferred from the digest length.
        algo: Option<HashAlgo>,
        /// URL or path of the checksum file.
        source: String,
    },
}

impl Checksum {
    /// Parses the `iso_checksum` forms Packer accepts.
    pub fn parse(s: &str) -> Result<Checksum, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") {
            return Ok(Checksum::None);
        }
        if s.is_empty() {
            return Err("is empty: give a digest (sha256:…), file:URL, or \"none\" to skip verification".into());
        }
        if let Some(src) = s.strip_prefix("file:") {
            return Ok(Checksum::File { algo: None, source: src.to_string() });
        }
        if let Some((algo, rest)) = s.split_once(':') {
            let algo = HashAlgo::from_name(algo).ok_or_else(|| {
                format!("unknown checksum type {algo:?}: use md5, sha1, sha256, sha512, file or none")
            })?;
            if let Some(src) = rest.strip_prefix("file:") {
                return Ok(Checksum::File { algo: Some(algo), source: src.to_string() });
            }
            return Self::hex(Some(algo), rest);
        }
        Self::hex(None, s)
    }

    fn hex(algo: Option<HashAlgo>, hex: &str) -> Result<Checksum, String> {
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{hex:?} is not a hexadecimal digest"));
        }
        let inferred = HashAlgo::from_hex_len(hex.len());
        let algo = match (algo, inferred) {
            (Some(a), Some(b)) if a == b => a,
            (Some(a), _) => {
                return Err(format!("a {} digest has {} hex digits, {hex:?} has {}", a.name(), hex_len(a), hex.len()))
            }
            (None, Some(b)) => b,
            (None, None) => {
                return Err(format!(
                    "{hex:?} has {} hex digits, which fits no known hash (md5 32, sha1 40, sha256 64, sha512 128)",
                    hex.len()
                ))
            }
        };
        Ok(Checksum::Hash { algo, hex: hex.to_ascii_lowercase() })
    }
}

fn hex_len(a: HashAlgo) -> usize {
    match a {
        HashAlgo::Md5 => 32,
        HashAlgo::Sha1 => 40,
        HashAlgo::Sha256 => 64,
        HashAlgo::Sha512 => 128,
    }
}

/// Errors fetching media.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The checksum did not match.
    #[error("checksum mismatch for {what}: expected {algo}:{expected}, got {algo}:{actual}")]
    Mismatch {
        /// The file or URL.
        what: String,
        /// Algorithm name.
        algo: &'static str,
        /// Expected digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// The checksum file did not list the file.
    #[error("the checksum file {source_name} has no entry for {file}")]
    NotInChecksumFile {
        /// The checksum file.
        source_name: String,
        /// The file looked for.
        file: String,
    },
    /// Every URL failed.
    #[error("could not fetch {0}")]
    AllFailed(String),
    /// The user cancelled.
    #[error("download cancelled")]
    Cancelled,
    /// Local I/O.
    #[error("{0}")]
    Io(String),
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    /// URLs or paths, tried in order.
    pub urls: Vec<String>,
    /// Expected checksum.
    pub checksum: Checksum,
    /// Cache directory (`PACKER_CACHE_DIR`, default `./packer_cache`).
    pub cache_dir: PathBuf,
    /// Extension of cached files (`iso`, `qcow2`, …).
    pub extension: String,
    /// Packer's `iso_target_path`: where a download goes instead of `cache_dir`. A path with an
    /// extension is the file itself; one without is a directory (created when missing) that
    /// receives `<key>.<extension>`. Local sources are still used in place.
    pub target_path: Option<PathBuf>,
}

impl DownloadRequest {
    /// Where a download of `url` with the expected digest `expected` is stored.
    pub fn target_for(&self, url: &str, expected: Option<&(HashAlgo, String)>) -> PathBuf {
        let key = {
            let mut h = sha1::Sha1::new();
            h.update(url.as_bytes());
            if let Some((a, hex)) = expected {
                h.update(a.name().as_bytes());
                h.update(hex.as_bytes());
            }
            hex::encode(h.finalize())
        };
        let name = format!("{key}.{}", self.extension.trim_start_matches('.'));
        match &self.target_path {
            Some(t) if t.extension().is_some() => t.clone(),
            Some(dir) => dir.join(name),
            None => self.cache_dir.join(name),
        }
    }
}

/// The default cache directory: `PACKER_CACHE_DIR`, else `./packer_cache`.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("PACKER_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("packer_cache"))
}

/// Fetches the first URL that works and returns the local path of a verified copy: local files
/// are used in place, remote ones downloaded into the cache (reused when the checksum matches).
pub async fn fetch(req: &DownloadRequest, ui: &dyn Ui, cancel: &CancellationToken) -> Result<PathBuf, DownloadError> {
    let mut failures = Vec::new();
    for url in &req.urls {
        match fetch_one(req, url, ui, cancel).await {
            Ok(p) => return Ok(p),
            Err(e @ (DownloadError::Cancelled | DownloadError::Mismatch { .. })) => return Err(e),
            Err(e) => {
                ui.error(&format!("Fetching {url} failed: {e}")).await;
                failures.push(format!("{url}: {e}"));
            }
        }
    }
    Err(DownloadError::AllFailed(failures.join("; ")))
}

fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(p) = url.strip_prefix("file://") {
        return Some(PathBuf::from(crate::percent::decode(p)));
    }
    if url.contains("://") {
        return None;
    }
    Some(PathBuf::from(url))
}

async fn fetch_one(
    req: &DownloadRequest,
    url: &str,
    ui: &dyn Ui,
    cancel: &CancellationToken,
) -> Result<PathBuf, DownloadError> {
    let file_name = url.rsplit('/').next().unwrap_or(url).split('?').next().unwrap_or("").to_string();
    let expected = resolve_checksum(&req.checksum, &file_name, cancel).await?;
    if let Some(path) = local_path(url) {
        if !path.is_file() {
            return Err(DownloadError::Io(format!("{} does not exist or is not a file", path.display())));
        }
        if let Some((algo, hex)) = &expected {
            ui.say(&format!("Verifying {} checksum of {}...", algo.name(), path.display())).await;
            verify(&path, *algo, hex, cancel).await?;
        }
        return Ok(path);
    }
    let target = req.target_for(url, expected.as_ref());
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| DownloadError::Io(format!("cannot create the download directory {}: {e}", dir.display())))?;
    }
    // One download per file, whatever the number of builds sharing the cache: the others wait here
    // and then find the finished file.
    let _lock = lock_target(&target, ui, cancel).await?;
    if target.is_file() {
        match &expected {
            Some((algo, hex)) => match verify(&target, *algo, hex, cancel).await {
                Ok(()) => {
                    ui.say(&format!("Using cached {} ({})", url, target.display())).await;
                    return Ok(target);
                }
                Err(DownloadError::Cancelled) => return Err(DownloadError::Cancelled),
                Err(_) => {
                    ui.say(&format!("Cached copy {} does not match the checksum; downloading again", target.display()))
                        .await;
                    let _ = tokio::fs::remove_file(&target).await;
                }
            },
            None => {
                ui.say(&format!("Using cached {} (not verified: iso_checksum is none)", target.display())).await;
                return Ok(target);
            }
        }
    }
    let part = {
        let mut p = target.clone().into_os_string();
        p.push(".part");
        PathBuf::from(p)
    };
    download(url, &part, ui, cancel).await?;
    if let Some((algo, hex)) = &expected {
        if let Err(e) = verify(&part, *algo, hex, cancel).await {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
    }
    tokio::fs::rename(&part, &target).await.map_err(|e| DownloadError::Io(e.to_string()))?;
    Ok(target)
}

/// The exclusive lock of one download target: an `flock` on `<target>.lock`. Dropping it removes
/// the lock file (while still holding the lock) and then releases it, so no `.lock` file stays in the
/// cache or next to an `iso_target_path`; a process killed while holding it leaves the file behind,
/// and the next build simply takes it over.
pub(crate) struct TargetLock {
    path: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        // removed before `_lock` is dropped (fields drop after this body): whoever opened the old
        // file and waits on it sees, once it gets the lock, that the path no longer names that file
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes the exclusive lock `<target>.lock` (an `flock`, released when the returned guard is
/// dropped or the process dies), telling the user once when another build holds it.
///
/// Because the holder removes the lock file when it is done, a waiter that wins the lock checks that
/// its open file is still the one at the path (same inode); if not, it opens the path again.
async fn lock_target(target: &Path, ui: &dyn Ui, cancel: &CancellationToken) -> Result<TargetLock, DownloadError> {
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::MetadataExt;
    let mut name = target.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| DownloadError::Io(format!("cannot create the lock file {}: {e}", path.display())))
    };
    let mut file = open()?;
    let mut told = false;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                let held = lock.metadata().map(|m| (m.dev(), m.ino())).ok();
                let now = std::fs::metadata(&path).map(|m| (m.dev(), m.ino())).ok();
                if held.is_some() && held == now {
                    return Ok(TargetLock { path, _lock: lock });
                }
                // the previous holder removed the file we waited on: lock the current one instead
                drop(lock);
                file = open()?;
                continue;
            }
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => file = f,
            Err((_, e)) => return Err(DownloadError::Io(format!("cannot lock {}: {e}", path.display()))),
        }
        if !told {
            ui.say(&format!("Waiting for another build that downloads {}...", target.display())).await;
            told = true;
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(DownloadError::Cancelled),
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
    }
}

/// Downloads `url` into `part`, resuming a previous partial download with a Range request.
async fn download(url: &str, part: &Path, ui: &dyn Ui, cancel: &CancellationToken) -> Result<(), DownloadError> {
    let mut have = tokio::fs::metadata(part).await.map(|m| m.len()).unwrap_or(0);
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| DownloadError::Io(e.to_string()))?;
    let resp = loop {
        let mut rq = client.get(url);
        if have > 0 {
            rq = rq.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let resp = tokio::select! {
            _ = cancel.cancelled() => return Err(DownloadError::Cancelled),
            r = rq.send() => r.map_err(|e| DownloadError::Io(e.to_string()))?,
        };
        // the partial file is not a prefix of what the server has now (as long as the whole file, or
        // longer: it changed): start over instead of failing every later build the same way
        if have > 0 && resp.status() == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            tracing::info!("the server cannot resume {url} at {have} bytes; downloading it from the start");
            let _ = tokio::fs::remove_file(part).await;
            have = 0;
            continue;
        }
        // a 206 for another range than asked would splice the wrong bytes in: start over
        if have > 0 && resp.status() == reqwest::StatusCode::PARTIAL_CONTENT && range_start(&resp) != Some(have) {
            tracing::info!(
                "the server answered {url} with another range than bytes={have}-; downloading it from the start"
            );
            let _ = tokio::fs::remove_file(part).await;
            have = 0;
            continue;
        }
        break resp;
    };
    let status = resp.status();
    if !status.is_success() {
        return Err(DownloadError::Io(format!("the server answered {status}")));
    }
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT && have > 0;
    let start = if resumed { have } else { 0 };
    let total = resp.content_length().map(|l| l + start).unwrap_or(0);
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(part)
        .await
        .map_err(|e| DownloadError::Io(format!("cannot write {}: {e}", part.display())))?;
    ui.say(&format!(
        "Downloading {url}{}",
        if resumed { format!(" (resuming at {start} bytes)") } else { String::new() }
    ))
    .await;
    let bar = ui.track_progress(url, start as i64, total as i64).await;
    let mut stream = resp.bytes_stream();
    let result = loop {
        let chunk = tokio::select! {
            _ = cancel.cancelled() => break Err(DownloadError::Cancelled),
            c = stream.next() => c,
        };
        match chunk {
            None => break Ok(()),
            Some(Err(e)) => break Err(DownloadError::Io(format!("download interrupted: {e}"))),
            Some(Ok(bytes)) => {
                if let Err(e) = file.write_all(&bytes).await {
                    break Err(DownloadError::Io(format!("cannot write {}: {e}", part.display())));
                }
                bar.add(bytes.len() as i64).await;
            }
        }
    };
    bar.close().await;
    file.flush().await.map_err(|e| DownloadError::Io(e.to_string()))?;
    result
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/TOTAL` answer.
fn range_start(resp: &reqwest::Response) -> Option<u64> {
    let v = resp.headers().get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    v.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// The expected digest for `file_name`, fetching a checksum file if needed.
async fn resolve_checksum(
    c: &Checksum,
    file_name: &str,
    cancel: &CancellationToken,
) -> Result<Option<(HashAlgo, String)>, DownloadError> {
    match c {
        Checksum::None => Ok(None),
        Checksum::Hash { algo, hex } => Ok(Some((*algo, hex.clone()))),
        Checksum::File { algo, source } => {
            let text = match local_path(source) {
                Some(p) => tokio::fs::read_to_string(&p)
                    .await
                    .map_err(|e| DownloadError::Io(format!("cannot read the checksum file {}: {e}", p.display())))?,
                None => {
                    let get = async {
                        let r = reqwest::get(source).await.map_err(|e| DownloadError::Io(e.to_string()))?;
                        if !r.status().is_success() {
                            return Err(DownloadError::Io(format!("{source}: the server answered {}", r.status())));
                        }
                        r.text().await.map_err(|e| DownloadError::Io(e.to_string()))
                    };
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(DownloadError::Cancelled),
                        t = get => t?,
                    }
                }
            };
            let hex = lookup_checksum(&text, file_name).ok_or_else(|| DownloadError::NotInChecksumFile {
                source_name: source.clone(),
                file: file_name.to_string(),
            })?;
            let algo = algo.or_else(|| HashAlgo::from_hex_len(hex.len())).ok_or_else(|| {
                DownloadError::Io(format!("the digest for {file_name} in {source} has an unknown length"))
            })?;
            Ok(Some((algo, hex)))
        }
    }
}

/// Finds the first of `urls` an HTTP client can read by byte ranges, for a consumer that reads
/// the media remotely instead of downloading it (Packer's `iso_skip_cache`): a `HEAD` request
/// (User-Agent `Packer`, proxies from the environment) must answer 2xx with `Accept-Ranges:
/// bytes`. Every URL that does not qualify is reported through `ui` with the reason.
pub async fn probe_range_support(
    urls: &[String],
    ui: &dyn Ui,
    cancel: &CancellationToken,
) -> Result<String, DownloadError> {
    let client = reqwest::Client::builder()
        .user_agent("Packer")
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| DownloadError::Io(e.to_string()))?;
    let mut failures = Vec::new();
    for url in urls {
        let resp = tokio::select! {
            _ = cancel.cancelled() => return Err(DownloadError::Cancelled),
            r = client.head(url).send() => r,
        };
        let problem = match resp {
            Err(e) => format!("HEAD request failed: {e}"),
            Ok(r) if !r.status().is_success() => format!("the server answered {}", r.status()),
            Ok(r) => {
                let ranges = r.headers().get_all(reqwest::header::ACCEPT_RANGES);
                if ranges.iter().any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim() == "bytes"))) {
                    return Ok(url.clone());
                }
                "the server does not announce byte-range support (no \"Accept-Ranges: bytes\")".to_string()
            }
        };
        ui.error(&format!("{url} cannot be read in place: {problem}")).await;
        failures.push(format!("{url}: {problem}"));
    }
    Err(DownloadError::AllFailed(failures.join("; ")))
}

/// Finds `file_name`'s digest in GNU (`HEX  name`, `HEX *name`) or BSD (`SHA256 (name) = HEX`)
/// checksum-file syntax. A file without such an entry whose only digest is a line holding the bare
/// digest (Alpine's `<image>.sha512` files) gives that digest, as Packer's go-getter does.
pub fn lookup_checksum(text: &str, file_name: &str) -> Option<String> {
    let mut bare = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some((left, hex)) = line.rsplit_once(" = ") {
            // `ALGO (name)`; a `)` before the `(` is no name (and must not be sliced as one).
            let name = left.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')')).map(|(name, _)| name);
            if name.is_some_and(|name| name.rsplit('/').next() == Some(file_name)) {
                return Some(hex.trim().to_ascii_lowercase());
            }
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some(hex), Some(name)) => {
                let name = name.trim_start_matches('*').trim_start_matches("./");
                if name.rsplit('/').next() == Some(file_name) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Some(hex.to_ascii_lowercase());
                }
            }
            (Some(hex), None)
                if HashAlgo::from_hex_len(hex.len()).is_some() && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                bare.push(hex.to_ascii_lowercase());
            }
            _ => {}
        }
    }
    // Several bare digests name no file: none of them can be chosen.
    (bare.len() == 1).then(|| bare.remove(0))
}

/// Hashes `path` with `algo` (cancellable).
pub async fn hash_file(path: &Path, algo: HashAlgo, cancel: &CancellationToken) -> Result<String, DownloadError> {
    enum H {
        Md5(md5::Md5),
        Sha1(sha1::Sha1),
        Sha256(sha2::Sha256),
        Sha512(sha2::Sha512),
    }
    let mut h = match algo {
        HashAlgo::Md5 => H::Md5(md5::Md5::new()),
        HashAlgo::Sha1 => H::Sha1(sha1::Sha1::new()),
        HashAlgo::Sha256 => H::Sha256(sha2::Sha256::new()),
        HashAlgo::Sha512 => H::Sha512(sha2::Sha512::new()),
    };
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| DownloadError::Io(format!("cannot read {}: {e}", path.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if cancel.is_cancelled() {
            return Err(DownloadError::Cancelled);
        }
        let n = f.read(&mut buf).await.map_err(|e| DownloadError::Io(e.to_string()))?;
        if n == 0 {
            break;
        }
        match &mut h {
            H::Md5(x) => x.update(&buf[..n]),
            H::Sha1(x) => x.update(&buf[..n]),
            H::Sha256(x) => x.update(&buf[..n]),
            H::Sha512(x) => x.update(&buf[..n]),
        }
    }
    Ok(match h {
        H::Md5(x) => hex::encode(x.finalize()),
        H::Sha1(x) => hex::encode(x.finalize()),
        H::Sha256(x) => hex::encode(x.finalize()),
        H::Sha512(x) => hex::encode(x.finalize()),
    })
}

async fn verify(path: &Path, algo: HashAlgo, expected: &str, cancel: &CancellationToken) -> Result<(), DownloadError> {
    let actual = hash_file(path, algo, cancel).await?;
    if actual != expected {
        return Err(DownloadError::Mismatch {
            what: path.display().to_string(),
            algo: algo.name(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_server::{HttpServer, HttpServerConfig};
    use crate::ui::ProgressBar;
    use async_trait::async_trait;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct RecUi(Arc<Mutex<Vec<String>>>);
    #[async_trait]
    impl Ui for RecUi {
        async fn say(&self, m: &str) {
            self.0.lock().unwrap().push(m.to_string());
        }
        async fn message(&self, m: &str) {
            self.0.lock().unwrap().push(m.to_string());
        }
        async fn error(&self, m: &str) {
            self.0.lock().unwrap().push(m.to_string());
        }
        async fn machine(&self, _: &str, _: &[String]) {}
        async fn track_progress(&self, _: &str, _: i64, _: i64) -> Box<dyn ProgressBar> {
            struct P(Arc<Mutex<Vec<String>>>);
            #[async_trait]
            impl ProgressBar for P {
                async fn add(&self, n: i64) {
                    self.0.lock().unwrap().push(format!("+{n}"));
                }
                async fn close(&self) {}
            }
            Box::new(P(self.0.clone()))
        }
    }

    const DATA: &[u8] = b"pretend this is an ISO image\n";
    const SHA256: &str = "6e1d1d0e7a1b1d6b0e0c5f6b5a2c8f0c7b5f4e3d2c1b0a9f8e7d6c5b4a392817"; // not DATA's

    fn sha256(d: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(d))
    }

    #[test]
    fn parse_forms() {
        let h = sha256(DATA);
        assert_eq!(Checksum::parse("none").unwrap(), Checksum::None);
        assert_eq!(Checksum::parse(&h).unwrap(), Checksum::Hash { algo: HashAlgo::Sha256, hex: h.clone() });
        assert_eq!(
            Checksum::parse(&format!("SHA256:{}", h.to_uppercase())).unwrap(),
            Checksum::Hash { algo: HashAlgo::Sha256, hex: h.clone() }
        );
        assert_eq!(
            Checksum::parse("md5:d41d8cd98f00b204e9800998ecf8427e").unwrap(),
            Checksum::Hash { algo: HashAlgo::Md5, hex: "d41d8cd98f00b204e9800998ecf8427e".into() }
        );
        assert_eq!(
            Checksum::parse("file:https://x/SHA256SUMS").unwrap(),
            Checksum::File { algo: None, source: "https://x/SHA256SUMS".into() }
        );
        assert_eq!(
            Checksum::parse("sha512:file:./SUMS").unwrap(),
            Checksum::File { algo: Some(HashAlgo::Sha512), source: "./SUMS".into() }
        );
        assert!(Checksum::parse("sha256:abc").unwrap_err().contains("64 hex digits"));
        assert!(Checksum::parse("crc32:abcd").unwrap_err().contains("unknown checksum type"));
        assert!(Checksum::parse("xyz").unwrap_err().contains("not a hexadecimal"));
        assert!(Checksum::parse("").is_err());
    }

    #[test]
    fn checksum_file_formats() {
        let gnu = "abc123  other.iso\nDEADBEEF *debian.iso\n";
        assert_eq!(lookup_checksum(gnu, "debian.iso").as_deref(), Some("deadbeef"));
        let bsd = "SHA256 (other.img) = 11\nSHA256 (./dir/debian.qcow2) = AA22\n";
        assert_eq!(lookup_checksum(bsd, "debian.qcow2").as_deref(), Some("aa22"));
        assert_eq!(lookup_checksum(gnu, "missing.iso"), None);
    }

    /// A checksum file holding only the digest (Alpine's `<image>.sha512`) is used, as by Packer;
    /// a named entry wins over it, and two bare digests (or a non-digest word) give nothing.
    #[test]
    fn checksum_file_with_a_bare_digest() {
        let sha512 = "AB".repeat(64);
        assert_eq!(lookup_checksum(&format!("{sha512}\n"), "alpine.qcow2"), Some("ab".repeat(64)));
        let sha256 = "cd".repeat(32);
        assert_eq!(
            lookup_checksum(&format!("{sha256}\n{}  alpine.qcow2\n", "ef".repeat(32)), "alpine.qcow2"),
            Some("ef".repeat(32))
        );
        assert_eq!(lookup_checksum(&format!("{sha256}\n{}\n", "ef".repeat(32)), "alpine.qcow2"), None);
        assert_eq!(lookup_checksum("-----BEGIN\nHash:\nnot-a-digest\n", "alpine.qcow2"), None);
        assert_eq!(lookup_checksum(&"a".repeat(63), "alpine.qcow2"), None);
    }

    /// Found by `cargo fuzz` (target `checksum`): a `)` before the `(` on a BSD-style line
    /// sliced the line backwards and panicked.
    #[test]
    fn lookup_checksum_bsd_line_with_parenthesis_before_the_name() {
        assert_eq!(lookup_checksum("SHA256 ) (debian.iso = ab12", "debian.iso"), None);
        assert_eq!(lookup_checksum("e0e4548d) (x = d05228 (debian.iso", "debian.iso"), None);
        assert_eq!(lookup_checksum(") = x\n) (debian.iso) = AB12", "debian.iso").as_deref(), Some("ab12"));
    }

    /// Found by `cargo fuzz` (target `http_path`): a `%` followed by a multi-byte character
    /// sliced a `str` inside the character and panicked.
    #[test]
    fn percent_decode_multibyte_after_percent() {
        assert_eq!(crate::percent::decode("/%0\u{b0}%2e"), "/%0\u{b0}.");
        assert_eq!(crate::percent::decode("%\u{e9}x"), "%\u{e9}x");
        assert_eq!(crate::percent::decode("a%20b%2F%zz%4"), "a b/%zz%4");
        // Only hex digits: Rust's from_str_radix would have taken the sign of "%+1".
        assert_eq!(crate::percent::decode("%+1"), "%+1");
    }

    #[tokio::test]
    async fn local_file_verified_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.iso");
        std::fs::write(&f, DATA).unwrap();
        let ui = RecUi::default();
        let mut req = DownloadRequest {
            urls: vec![format!("file://{}", f.display())],
            checksum: Checksum::parse(&format!("sha256:{}", sha256(DATA))).unwrap(),
            cache_dir: dir.path().join("cache"),
            extension: "iso".into(),
            target_path: None,
        };
        assert_eq!(fetch(&req, &ui, &CancellationToken::new()).await.unwrap(), f);
        req.checksum = Checksum::parse(SHA256).unwrap();
        match fetch(&req, &ui, &CancellationToken::new()).await.unwrap_err() {
            DownloadError::Mismatch { expected, actual, .. } => {
                assert_eq!(expected, SHA256);
                assert_eq!(actual, sha256(DATA));
            }
            e => panic!("{e}"),
        }
    }

    /// An HTTP server on a loopback port serving `dir`.
    async fn serve_dir(dir: &Path) -> HttpServer {
        HttpServer::start(HttpServerConfig {
            bind_address: "127.0.0.1".parse().unwrap(),
            port_min: 0,
            port_max: 0,
            directory: Some(dir.to_path_buf()),
            content: Default::default(),
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn http_download_cache_and_mirror_fallback() {
        let site = tempfile::tempdir().unwrap();
        std::fs::write(site.path().join("disk.qcow2"), DATA).unwrap();
        std::fs::write(site.path().join("SHA256SUMS"), format!("{}  disk.qcow2\n", sha256(DATA))).unwrap();
        let srv = serve_dir(site.path()).await;
        let base = format!("http://{}", srv.addr());
        let cache = tempfile::tempdir().unwrap();
        let ui = RecUi::default();
        let req = DownloadRequest {
            urls: vec![format!("{base}/missing/disk.qcow2"), format!("{base}/disk.qcow2")],
            checksum: Checksum::parse(&format!("file:{base}/SHA256SUMS")).unwrap(),
            cache_dir: cache.path().to_path_buf(),
            extension: "qcow2".into(),
            target_path: None,
        };
        let p = fetch(&req, &ui, &CancellationToken::new()).await.unwrap();
        assert!(p.starts_with(cache.path()));
        assert_eq!(std::fs::read(&p).unwrap(), DATA);
        assert!(ui.0.lock().unwrap().iter().any(|m| m.contains("missing/disk.qcow2 failed")));
        // second fetch: from the cache, no download
        let ui2 = RecUi::default();
        assert_eq!(fetch(&req, &ui2, &CancellationToken::new()).await.unwrap(), p);
        assert!(ui2.0.lock().unwrap().iter().any(|m| m.starts_with("Using cached")), "{:?}", ui2.0);
        // a corrupted cache entry is downloaded again
        std::fs::write(&p, b"corrupt").unwrap();
        assert_eq!(std::fs::read(fetch(&req, &ui2, &CancellationToken::new()).await.unwrap()).unwrap(), DATA);
        // a wrong checksum fails naming both sums, and leaves no partial file
        let bad = DownloadRequest { checksum: Checksum::parse(SHA256).unwrap(), ..req.clone() };
        let e = fetch(&bad, &ui, &CancellationToken::new()).await.unwrap_err().to_string();
        assert!(e.contains(SHA256) && e.contains(&sha256(DATA)), "{e}");
        let leftovers: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[tokio::test]
    async fn target_path_is_a_file_or_a_directory() {
        let site = tempfile::tempdir().unwrap();
        std::fs::write(site.path().join("disk.img"), DATA).unwrap();
        let srv = serve_dir(site.path()).await;
        let url = format!("http://{}/disk.img", srv.addr());
        let work = tempfile::tempdir().unwrap();
        let ui = RecUi::default();
        // with an extension: the file itself (its directory created)
        let file = work.path().join("store/debian.qcow2");
        let mut req = DownloadRequest {
            urls: vec![url.clone()],
            checksum: Checksum::parse(&sha256(DATA)).unwrap(),
            cache_dir: work.path().join("cache"),
            extension: "img".into(),
            target_path: Some(file.clone()),
        };
        assert_eq!(fetch(&req, &ui, &CancellationToken::new()).await.unwrap(), file);
        assert_eq!(std::fs::read(&file).unwrap(), DATA);
        assert!(!work.path().join("cache").exists(), "the cache directory was used");
        // without: a directory receiving <key>.<extension>
        let dir = work.path().join("isos");
        req.target_path = Some(dir.clone());
        req.extension = "raw".into();
        let p = fetch(&req, &ui, &CancellationToken::new()).await.unwrap();
        assert_eq!(p.parent().unwrap(), dir);
        assert_eq!(p.extension().unwrap(), "raw");
        assert_eq!(p, req.target_for(&url, Some(&(HashAlgo::Sha256, sha256(DATA)))));
        assert_eq!(std::fs::read(&p).unwrap(), DATA);
        // local files stay where they are
        let local = site.path().join("disk.img");
        req.urls = vec![local.display().to_string()];
        assert_eq!(fetch(&req, &ui, &CancellationToken::new()).await.unwrap(), local);
    }

    /// A server of `data` that cuts its first answer after half the body, honours `Range` later
    /// (416 beyond the end), and records each request's `Range` header.
    async fn flaky_server(data: &'static [u8]) -> (std::net::SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let range = head.lines().find_map(|l| l.strip_prefix("range: bytes=")).map(|r| r.trim().to_string());
                let first = {
                    let mut seen = log.lock().unwrap();
                    seen.push(range.clone());
                    seen.len() == 1
                };
                let start: usize = range.as_deref().and_then(|r| r.trim_end_matches('-').parse().ok()).unwrap_or(0);
                let answer = if start >= data.len() && range.is_some() {
                    format!(
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\n\r\n",
                        data.len()
                    )
                    .into_bytes()
                } else {
                    let body = &data[start..];
                    let status = if range.is_some() {
                        format!("206 Partial Content\r\nContent-Range: bytes {start}-{}/{}", data.len() - 1, data.len())
                    } else {
                        "200 OK".to_string()
                    };
                    let mut a =
                        format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                            .into_bytes();
                    a.extend_from_slice(if first { &body[..body.len() / 2] } else { body });
                    a
                };
                let _ = s.write_all(&answer).await;
                let _ = s.shutdown().await;
            }
        });
        (addr, seen)
    }

    fn cache_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A second build waits for the first one's lock, takes over after it, and no `.lock` file
    /// stays behind; a lock file left by a killed build is taken over and removed too.
    #[tokio::test]
    async fn the_download_lock_is_exclusive_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.iso");
        let lock_file = dir.path().join("x.iso.lock");
        std::fs::write(&lock_file, b"").unwrap(); // left by a build that was killed
        let ui = RecUi::default();
        let first = lock_target(&target, &ui, &CancellationToken::new()).await.unwrap();
        let waiter = {
            let target = target.clone();
            tokio::spawn(async move {
                let ui = RecUi::default();
                let l = lock_target(&target, &ui, &CancellationToken::new()).await.unwrap();
                (l, ui)
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(!waiter.is_finished(), "the second lock was granted while the first was held");
        drop(first);
        let (second, ui2) = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert!(ui2.0.lock().unwrap().iter().any(|m| m.starts_with("Waiting for another build")));
        assert!(lock_file.exists(), "the holder's lock file is at the path");
        drop(second);
        assert!(cache_files(dir.path()).is_empty(), "{:?}", cache_files(dir.path()));
        let cancel = CancellationToken::new();
        let _held = lock_target(&target, &ui, &cancel).await.unwrap();
        cancel.cancel();
        assert!(matches!(lock_target(&target, &ui, &cancel).await, Err(DownloadError::Cancelled)));
    }

    /// A body cut in the middle fails the fetch, leaves only a `.part` file (nothing a later fetch
    /// would trust), and the next fetch resumes it with a `Range` request.
    #[tokio::test]
    async fn a_cut_download_is_resumed_by_the_next_fetch() {
        static BIG: [u8; 200_000] = {
            let mut a = [0u8; 200_000];
            let mut i = 0;
            while i < a.len() {
                a[i] = (i * 7 % 251) as u8;
                i += 1;
            }
            a
        };
        let (addr, seen) = flaky_server(&BIG).await;
        let cache = tempfile::tempdir().unwrap();
        let req = DownloadRequest {
            urls: vec![format!("http://{addr}/big.iso")],
            checksum: Checksum::parse(&sha256(&BIG)).unwrap(),
            cache_dir: cache.path().to_path_buf(),
            extension: "iso".into(),
            target_path: None,
        };
        let ui = RecUi::default();
        let e = fetch(&req, &ui, &CancellationToken::new()).await.unwrap_err().to_string();
        assert!(e.contains("interrupted"), "{e}");
        let files = cache_files(cache.path());
        assert!(files.len() == 1 && files[0].ends_with(".iso.part"), "{files:?}");
        let p = fetch(&req, &ui, &CancellationToken::new()).await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), BIG);
        assert_eq!(seen.lock().unwrap()[1].as_deref(), Some(format!("{}-", BIG.len() / 2).as_str()));
        assert!(ui.0.lock().unwrap().iter().any(|m| m.contains("resuming at 100000 bytes")));
        assert_eq!(cache_files(cache.path()), [p.file_name().unwrap().to_string_lossy().into_owned()]);
    }

    /// A partial file the server cannot continue (416: as long as the file or longer) is dropped
    /// and the download starts over, instead of failing every later build.
    #[tokio::test]
    async fn an_unresumable_partial_file_is_downloaded_again() {
        let (addr, seen) = flaky_server(DATA).await;
        seen.lock().unwrap().push(None); // not the first request: answer in full
        let cache = tempfile::tempdir().unwrap();
        let req = DownloadRequest {
            urls: vec![format!("http://{addr}/small.iso")],
            checksum: Checksum::parse(&sha256(DATA)).unwrap(),
            cache_dir: cache.path().to_path_buf(),
            extension: "iso".into(),
            target_path: None,
        };
        let target = req.target_for(&req.urls[0], Some(&(HashAlgo::Sha256, sha256(DATA))));
        let mut part = target.clone().into_os_string();
        part.push(".part");
        std::fs::write(&part, [DATA, b"and more"].concat()).unwrap();
        let p = fetch(&req, &RecUi::default(), &CancellationToken::new()).await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), DATA);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[1..], [Some(format!("{}-", DATA.len() + 8)), None], "{seen:?}");
    }

    /// A one-shot HTTP server answering every request with `head` (status line and headers).
    async fn fixed_server(head: &'static str) -> std::net::SocketAddr {
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ =
                    s.write_all(format!("{head}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn range_probe_picks_the_first_url_with_byte_ranges() {
        let no_ranges = fixed_server("HTTP/1.1 200 OK").await;
        let missing = fixed_server("HTTP/1.1 404 Not Found").await;
        let ranges = fixed_server("HTTP/1.1 200 OK\r\nAccept-Ranges: bytes").await;
        let ranges2 = fixed_server("HTTP/1.1 200 OK\r\nAccept-Ranges: bytes").await;
        let ui = RecUi::default();
        let urls = vec![
            format!("http://{no_ranges}/a.iso"),
            format!("http://{missing}/a.iso"),
            format!("http://{ranges}/a.iso"),
            format!("http://{ranges2}/a.iso"),
        ];
        let got = probe_range_support(&urls, &ui, &CancellationToken::new()).await.unwrap();
        assert_eq!(got, urls[2]);
        let said = ui.0.lock().unwrap().join("\n");
        assert!(said.contains("Accept-Ranges: bytes"), "{said}");
        assert!(said.contains("404"), "{said}");
        let e = probe_range_support(&urls[..2], &ui, &CancellationToken::new()).await.unwrap_err().to_string();
        assert!(e.contains("404") && e.contains("Accept-Ranges"), "{e}");
    }
}

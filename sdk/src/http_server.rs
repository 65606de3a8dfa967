//! The HTTP server that hands seed files (preseed, kickstart, keys) to a guest: `http_directory`
//! and `http_content`, on a loopback port chosen from a range without races (the listener is
//! held from the moment the port is picked until the build ends).
//!
//! A deliberately small HTTP/1.1 server: `GET` and `HEAD`, one request per connection, files
//! streamed from disk. A request names a path inside the served directory only: `..` (also
//! percent-encoded, also with encoded slashes) is refused with 403, an absolute path is taken
//! relative to the directory, and `%XX` is decoded once. Symbolic links inside the directory are
//! followed, as by Packer's server (the user placed them); directories are not listed.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the server serves and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpServerConfig {
    /// Address to bind (qemu-rs default 127.0.0.1: QEMU's user network reaches it as 10.0.2.2).
    pub bind_address: IpAddr,
    /// Lowest port to try.
    pub port_min: u16,
    /// Highest port to try.
    pub port_max: u16,
    /// Files under this directory are served by their relative path.
    pub directory: Option<PathBuf>,
    /// Fixed contents by path (`/preseed.cfg` or `preseed.cfg`); win over `directory`.
    pub content: BTreeMap<String, String>,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum HttpServerError {
    /// No port of the range could be bound.
    #[error("no free port for the HTTP server on {address} between {min} and {max} ({last}); widen http_port_min/http_port_max")]
    NoPort {
        /// The bind address.
        address: IpAddr,
        /// Range start.
        min: u16,
        /// Range end.
        max: u16,
        /// The last bind error.
        last: String,
    },
    /// The range is empty.
    #[error("http_port_min ({0}) is greater than http_port_max ({1})")]
    BadRange(u16, u16),
}

/// A running server; stopped when dropped.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Binds a port of the range (tried in a random order, so parallel builds rarely collide, and
    /// a collision just moves on to the next port) and starts serving.
    pub async fn start(cfg: HttpServerConfig) -> Result<HttpServer, HttpServerError> {
        if cfg.port_min > cfg.port_max {
            return Err(HttpServerError::BadRange(cfg.port_min, cfg.port_max));
        }
        let mut ports: Vec<u16> = (cfg.port_min..=cfg.port_max).collect();
        {
            use rand::seq::SliceRandom;
            ports.shuffle(&mut rand::thread_rng());
        }
        let mut last = String::from("empty range");
        let mut listener = None;
        for p in ports {
            match TcpListener::bind((cfg.bind_address, p)).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let listener = listener.ok_or(HttpServerError::NoPort {
            address: cfg.bind_address,
            min: cfg.port_min,
            max: cfg.port_max,
            last,
        })?;
        let addr = listener.local_addr().map_err(|e| HttpServerError::NoPort {
            address: cfg.bind_address,
            min: cfg.port_min,
            max: cfg.port_max,
            last: e.to_string(),
        })?;
        tracing::info!("HTTP server listening on {addr}");
        let site = Arc::new(Site {
            directory: cfg.directory,
            content: cfg.content.into_iter().map(|(k, v)| (k.trim_start_matches('/').to_string(), v)).collect(),
        });
        let task = tokio::spawn(async move {
            // the connections live in this task's set: stopping the server ends them too
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(c) => c,
                        Err(e) => {
                            // e.g. out of file descriptors: wait instead of spinning
                            tracing::debug!("HTTP accept: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                };
                let site = site.clone();
                connections.spawn(async move {
                    if let Err(e) = serve(stream, &site).await {
                        tracing::debug!("HTTP connection from {peer}: {e}");
                    }
                });
            }
        });
        Ok(HttpServer { addr, task })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Site {
    directory: Option<PathBuf>,
    content: BTreeMap<String, String>,
}

/// Most bytes of a request head (request line and headers) read.
const MAX_HEAD: u64 = 16 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads the request line and skips the headers, reading at most [`MAX_HEAD`] bytes.
async fn read_request_line(read: tokio::net::tcp::OwnedReadHalf) -> std::io::Result<String> {
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_HEAD));
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await?;
        if n == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    Ok(request_line)
}

async fn serve(stream: TcpStream, site: &Site) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let request_line = tokio::time::timeout(HEAD_TIMEOUT, read_request_line(read))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request within 30 s"))??;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return respond(&mut write, 405, "method not allowed\n", method == "HEAD").await;
    }
    let Some(rel) = resolve_request_path(target) else {
        tracing::warn!("HTTP: refused {target:?} (outside the served directory)");
        return respond(&mut write, 403, "forbidden\n", method == "HEAD").await;
    };
    let head = method == "HEAD";
    if let Some(body) = site.content.get(&rel) {
        tracing::info!("HTTP: GET /{rel} (http_content) 200");
        return respond(&mut write, 200, body, head).await;
    }
    if let Some(dir) = &site.directory {
        let file_path = dir.join(&rel);
        if let Ok(mut f) = tokio::fs::File::open(&file_path).await {
            let meta = f.metadata().await?;
            if meta.is_file() {
                tracing::info!("HTTP: GET /{rel} 200 ({} bytes)", meta.len());
                let hdr = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                    meta.len()
                );
                write.write_all(hdr.as_bytes()).await?;
                if !head {
                    tokio::io::copy(&mut f, &mut write).await?;
                }
                return write.shutdown().await;
            }
        }
    }
    tracing::info!("HTTP: GET /{rel} 404");
    respond(&mut write, 404, "not found\n", head).await
}

async fn respond(w: &mut tokio::net::tcp::OwnedWriteHalf, status: u16, body: &str, head: bool) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let mut msg = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head {
        msg.push_str(body);
    }
    w.write_all(msg.as_bytes()).await?;
    w.shutdown().await
}

/// The file a request target (`/a/b%20c?x=1`) names, as a `/`-separated path relative to the
/// served directory (`a/b c`), or `None` when it would leave that directory (a `..` component,
/// also percent-encoded). The query and fragment are ignored.
pub fn resolve_request_path(target: &str) -> Option<String> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    clean_path(&crate::percent::decode(path))
}

/// The request path as a relative path inside the site, or `None` if it tries to leave it.
fn clean_path(path: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn get(addr: SocketAddr, raw: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn server() -> (HttpServer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/preseed.cfg"), "d-i foo\n").unwrap();
        let cfg = HttpServerConfig {
            bind_address: "127.0.0.1".parse().unwrap(),
            port_min: 0,
            port_max: 0,
            directory: Some(dir.path().to_path_buf()),
            content: [("/inline.txt".to_string(), "inline body".to_string())].into_iter().collect(),
        };
        (HttpServer::start(cfg).await.unwrap(), dir)
    }

    /// Found by `cargo fuzz` (target `http_path`): this request target panicked the decoder
    /// (a `%` followed by a multi-byte character).
    #[test]
    fn resolve_request_path_multibyte_after_percent() {
        assert_eq!(resolve_request_path("/\r%0\u{b0}%2.0").as_deref(), Some("\r%0\u{b0}%2.0"));
        assert_eq!(resolve_request_path("/%2e%2e/etc/passwd"), None);
        assert_eq!(resolve_request_path("/a/%2e/b%20c?x=../..").as_deref(), Some("a/b c"));
    }

    #[tokio::test]
    async fn serves_files_and_content() {
        let (s, _d) = server().await;
        assert!(s.addr().ip().is_loopback());
        let r = get(s.addr(), "GET /sub/preseed.cfg HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nd-i foo\n"), "{r}");
        let r = get(s.addr(), "GET /inline.txt HTTP/1.0\r\n\r\n").await;
        assert!(r.ends_with("inline body"), "{r}");
        let r = get(s.addr(), "GET /sub/pre%73eed.cfg?x=1 HTTP/1.1\r\n\r\n").await;
        assert!(r.ends_with("d-i foo\n"), "{r}");
        let r = get(s.addr(), "HEAD /sub/preseed.cfg HTTP/1.1\r\n\r\n").await;
        assert!(r.contains("Content-Length: 8\r\n") && r.ends_with("\r\n\r\n"), "{r}");
        let r = get(s.addr(), "GET /missing HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        let r = get(s.addr(), "POST /inline.txt HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    }

    /// A served directory `site` next to a secret file (`secret.txt`) it must never hand out.
    async fn server_beside_a_secret() -> (HttpServer, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        let site = root.path().join("site");
        std::fs::create_dir_all(site.join("sub")).unwrap();
        std::fs::write(site.join("sub/ok.txt"), "fine\n").unwrap();
        std::fs::write(root.path().join("secret.txt"), "TOP-SECRET\n").unwrap();
        let cfg = HttpServerConfig {
            bind_address: "127.0.0.1".parse().unwrap(),
            port_min: 0,
            port_max: 0,
            directory: Some(site),
            content: BTreeMap::new(),
        };
        (HttpServer::start(cfg).await.unwrap(), root)
    }

    #[tokio::test]
    async fn refuses_traversal() {
        let (s, root) = server_beside_a_secret().await;
        let secret = root.path().join("secret.txt").display().to_string();
        // (request target, the status it gets)
        let cases = [
            ("/../secret.txt".to_string(), 403),
            ("/sub/../../secret.txt".into(), 403),
            ("/%2e%2e/secret.txt".into(), 403),
            ("/%2E%2E/secret.txt".into(), 403),
            ("/.%2e/secret.txt".into(), 403),
            ("/..%2fsecret.txt".into(), 403),
            ("/..%2Fsecret.txt".into(), 403),
            ("/%2e%2e%2fsecret.txt".into(), 403),
            ("/sub/%2e%2e/%2e%2e/secret.txt".into(), 403),
            ("/sub%2f..%2f..%2fsecret.txt".into(), 403),
            ("/sub/..%2f..%2f..%2f..%2f..%2f..%2fetc/passwd".into(), 403),
            ("http://10.0.2.2:8000/../secret.txt".into(), 403),
            ("/../secret.txt?x=/sub/ok.txt".into(), 403),
            // absolute paths stay inside the served directory
            (secret.clone(), 404),
            (format!("/{secret}"), 404),
            (format!("%2f{}", secret.trim_start_matches('/')), 404),
            (format!("/%2f{}", secret.trim_start_matches('/')), 404),
            ("/etc/passwd".into(), 404),
            // backslashes are ordinary characters on Unix, and decoding happens once
            ("/..%5csecret.txt".into(), 404),
            ("/..\\secret.txt".into(), 404),
            ("/%252e%252e/secret.txt".into(), 404),
            ("/secret.txt%00".into(), 404),
            // text after a '%' that is not an escape (a panic here used to drop the connection)
            ("/%a\u{e9}".into(), 404),
            ("/%\u{20ac}".into(), 404),
        ];
        for (target, status) in cases {
            let r = get(s.addr(), &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
            assert!(r.starts_with(&format!("HTTP/1.1 {status} ")), "{target}: {r:?}");
            assert!(!r.contains("TOP-SECRET") && !r.contains("root:"), "{target} leaked a file: {r}");
            let r = get(s.addr(), &format!("HEAD {target} HTTP/1.1\r\n\r\n")).await;
            assert!(r.starts_with(&format!("HTTP/1.1 {status} ")), "HEAD {target}: {r:?}");
        }
        // the directory itself is still served
        let r = get(s.addr(), "GET /sub/./ok.txt HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 ") && r.ends_with("fine\n"), "{r}");
    }

    /// Symbolic links inside the served directory are followed, as by Packer's `http.FileServer`:
    /// the user put them there (a shared preseed, an ISO kept elsewhere). Requests cannot name
    /// anything outside the directory, links only lead where the user pointed them.
    #[tokio::test]
    async fn symlinks_placed_in_the_directory_are_followed() {
        let (s, root) = server_beside_a_secret().await;
        std::os::unix::fs::symlink("../secret.txt", root.path().join("site/shared.txt")).unwrap();
        std::os::unix::fs::symlink("..", root.path().join("site/up")).unwrap();
        let r = get(s.addr(), "GET /shared.txt HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 ") && r.ends_with("TOP-SECRET\n"), "{r}");
        let r = get(s.addr(), "GET /up/secret.txt HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        // a link to a directory is not listed
        let r = get(s.addr(), "GET /up HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    }

    /// Dropping the server ends its open connections too (a guest that never finishes its
    /// request does not keep a task and a socket alive after the build).
    #[tokio::test]
    async fn stopping_the_server_ends_open_connections() {
        let (s, _root) = server_beside_a_secret().await;
        let mut c = TcpStream::connect(s.addr()).await.unwrap();
        c.write_all(b"GET /sub/ok.txt HTTP/1.1\r\n").await.unwrap(); // the head never ends
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        drop(s);
        let mut buf = Vec::new();
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), c.read_to_end(&mut buf))
            .await
            .expect("the connection stayed open after the server stopped");
        assert!(n.is_err() || buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
    }

    #[tokio::test]
    async fn a_taken_port_is_not_used() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = taken.local_addr().unwrap().port();
        let cfg = HttpServerConfig {
            bind_address: "127.0.0.1".parse().unwrap(),
            port_min: p,
            port_max: p,
            directory: None,
            content: BTreeMap::new(),
        };
        let e = HttpServer::start(cfg).await.unwrap_err();
        assert!(matches!(e, HttpServerError::NoPort { min, max, .. } if min == p && max == p), "{e}");
        assert!(e.to_string().contains("http_port_min/http_port_max"), "{e}");
    }

    #[tokio::test]
    async fn empty_range_is_an_error() {
        let cfg = HttpServerConfig {
            bind_address: "127.0.0.1".parse().unwrap(),
            port_min: 9000,
            port_max: 8000,
            directory: None,
            content: BTreeMap::new(),
        };
        let e = HttpServer::start(cfg).await.unwrap_err();
        assert!(e.to_string().contains("http_port_min"), "{e}");
    }

    #[test]
    fn clean_path_rules() {
        assert_eq!(clean_path("/a/./b"), Some("a/b".into()));
        assert_eq!(clean_path("/"), Some(String::new()));
        assert_eq!(clean_path("/a/../b"), None);
    }
}

//! The admin API: one JSON object per line over a Unix socket, created mode
//! 0600 and refusing peers that are not root (SO_PEERCRED), so only root
//! can flip traffic. The daemon side accepts and forwards requests; the CLI
//! side (`request`) sends one and reads the answer.
//!
//! Limits, on every path (the refusal of a non-root peer included): a
//! request line is at most [`MAX_REQUEST`] bytes, a connection waits at
//! most [`IDLE_TIMEOUT`] for (the rest of) a request line, and at most
//! [`MAX_CLIENTS`] connections are served at once; more are closed at
//! accept.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
    sync::{Semaphore, mpsc, oneshot},
};

pub mod proto;

pub use proto::{Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Nothing listens at the socket path.
    #[error("the redirector daemon is not running (no admin socket at {0})")]
    NotRunning(PathBuf),
    /// Something that is not a socket sits at the socket path; it is left
    /// alone (it may be anything: a config, a log, a mistyped path).
    #[error(
        "admin socket {0}: a file that is not a socket is in the way; \
         move it or set admin.socket to another path"
    )]
    NotASocket(PathBuf),
    /// Creating, binding or talking over the socket failed.
    #[error("admin socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The daemon's answer was not a response.
    #[error("admin socket {path}: bad response: {message}")]
    BadResponse { path: PathBuf, message: String },
}

/// The longest request line accepted (64 KiB; a real one is < 1 KiB).
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long a connection may take to send a request line, or stay idle
/// between requests, before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CLIENTS: usize = 64;
/// How long a refused (non-root) peer may take to send its request.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// A request from a client, with where to send the answer.
pub type Incoming = (Request, oneshot::Sender<Response>);

/// Binds the socket, mode 0600. A stale socket is replaced (the caller
/// holds the socket path's lock, so no daemon is using it); any other
/// file at the path is refused, never deleted.
pub fn bind(path: &Path) -> Result<UnixListener, AdminError> {
    let io = |source| AdminError::Io {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(io)?,
        Ok(_) => return Err(AdminError::NotASocket(path.into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Accepts clients until aborted; requests go to `tx`.
pub async fn serve(listener: std::sync::Arc<UnixListener>, tx: mpsc::Sender<Incoming>) {
    let slots = std::sync::Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(error = %e, "admin socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                max = MAX_CLIENTS,
                "admin socket: too many clients; closed one"
            );
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            client(stream, tx).await;
            drop(slot);
        });
    }
}

/// Why no request line was read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// The line grew past [`MAX_REQUEST`] bytes.
    #[error("request longer than {MAX_REQUEST} bytes")]
    TooLong,
    /// No complete line within [`IDLE_TIMEOUT`].
    #[error("no request within {IDLE_TIMEOUT:?}")]
    Idle,
    /// Reading from the peer failed.
    #[error("reading the request: {0}")]
    Io(#[from] std::io::Error),
}

/// The next request line (without its newline), or `None` at EOF. Holds
/// at most `max` bytes of it and waits at most `idle` for all of it.
async fn next_request<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
    idle: Duration,
) -> Result<Option<Vec<u8>>, ReadError> {
    let read = async {
        let mut line = Vec::new();
        loop {
            let buf = r.fill_buf().await?;
            if buf.is_empty() {
                return Ok((!line.is_empty()).then_some(line));
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if line.len() + take > max {
                return Err(ReadError::TooLong);
            }
            line.extend_from_slice(&buf[..take]);
            r.consume(if done { take + 1 } else { take });
            if done {
                return Ok(Some(line));
            }
        }
    };
    tokio::time::timeout(idle, read)
        .await
        .map_err(|_| ReadError::Idle)?
}

async fn client(stream: UnixStream, tx: mpsc::Sender<Incoming>) {
    let peer_uid = stream.peer_cred().map(|c| c.uid()).ok();
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    if peer_uid != Some(0) {
        tracing::warn!(uid = ?peer_uid, "refused an admin client that is not root");
        // Take (and ignore) its request first, so it reads our answer
        // instead of a broken pipe; within the same bounds as any.
        let _ = next_request(&mut read, MAX_REQUEST, REFUSAL_WAIT).await;
        let _ = send(
            &mut write,
            &Response::err("permission denied: the admin API is for root only"),
        )
        .await;
        return;
    }
    loop {
        let line = match next_request(&mut read, MAX_REQUEST, IDLE_TIMEOUT).await {
            Ok(Some(line)) => line,
            Ok(None) | Err(ReadError::Idle | ReadError::Io(_)) => return,
            Err(e @ ReadError::TooLong) => {
                let _ = send(&mut write, &Response::err(format!("bad request: {e}"))).await;
                return;
            }
        };
        let response = match serde_json::from_slice::<Request>(&line) {
            Err(e) => Response::err(format!("bad request: {e}")),
            Ok(req) => {
                let (reply, rx) = oneshot::channel();
                if tx.send((req, reply)).await.is_err() {
                    return;
                }
                rx.await
                    .unwrap_or_else(|_| Response::err("daemon is shutting down"))
            }
        };
        if send(&mut write, &response).await.is_err() {
            return;
        }
    }
}

async fn send(w: &mut tokio::net::unix::OwnedWriteHalf, r: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_string(r).map_err(std::io::Error::other)?;
    line.push('\n');
    w.write_all(line.as_bytes()).await
}

/// Sends one request and waits (up to `timeout`) for the answer.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response, AdminError> {
    let io = |source| AdminError::Io {
        path: path.into(),
        source,
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(AdminError::NotRunning(path.into()));
        }
        Err(e) => return Err(io(e)),
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(req).map_err(|e| io(std::io::Error::other(e)))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer).map_err(|e| AdminError::BadResponse {
        path: path.into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    #[tokio::test]
    async fn request_lines_are_bounded_in_size_and_time() {
        let read = |bytes: Vec<u8>| async move {
            let mut r = tokio::io::BufReader::new(&bytes[..]);
            next_request(&mut r, 8, Duration::from_secs(5)).await
        };
        assert_eq!(
            read(b"12345678\nnext".to_vec()).await.unwrap(),
            Some(b"12345678".to_vec())
        );
        assert!(matches!(
            read(b"123456789\n".to_vec()).await,
            Err(ReadError::TooLong)
        ));
        assert!(matches!(
            read(vec![b'x'; 1 << 20]).await,
            Err(ReadError::TooLong)
        ));
        assert_eq!(read(Vec::new()).await.unwrap(), None);
        // A peer that sends part of a line and then nothing.
        let (mut peer, ours) = tokio::io::duplex(64);
        peer.write_all(b"{\"a").await.unwrap();
        let mut r = tokio::io::BufReader::new(ours);
        let got = next_request(&mut r, 8, Duration::from_millis(50)).await;
        assert!(matches!(got, Err(ReadError::Idle)), "{got:?}");
        drop(peer);
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_refused_and_kept() {
        let dir = std::env::temp_dir().join(format!("redirector-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("admin.sock");
        std::fs::write(&path, "precious").unwrap();
        let e = bind(&path).expect_err("bound over a regular file");
        assert!(matches!(e, AdminError::NotASocket(_)), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        // A stale socket (no listener) is replaced.
        std::fs::remove_file(&path).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        bind(&path).expect("a stale socket is replaced");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

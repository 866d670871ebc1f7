//! One daemon per pin path and per admin socket. Two daemons on one pin
//! path would both write the maps, and a second on one socket path would
//! delete the first's socket. `run` takes an exclusive `flock` on a lock
//! file for each and holds it for its lifetime; the lock file holds the
//! holder's PID so a refusal can name it. `teardown` takes the pin path's
//! lock too, so it cannot pull the data path from under a running daemon.
//!
//! Where: bpffs accepts no regular files, so the pin path's lock lives in
//! [`LOCK_DIR`] (`/run/redirector/pins/<last component>-<hash>.lock`); the
//! admin socket's lock sits beside the socket (`<socket>.lock`). A lock
//! ends with its process, whatever the way it dies; a clean exit also
//! removes the file (a stale file from a crash is harmless and reused).

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

/// Where the pin paths' lock files live (a regular filesystem; bpffs
/// cannot hold them).
pub const LOCK_DIR: &str = "/run/redirector/pins";

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock: a daemon runs on this resource.
    #[error(
        "{what} {} is in use by another redirector daemon ({}; lock file {}): stop it first",
        target.display(),
        pid_text(*pid),
        lock.display()
    )]
    Held {
        what: &'static str,
        target: PathBuf,
        lock: PathBuf,
        /// The holder's PID as written in the lock file, if readable.
        pid: Option<u32>,
    },
    /// The lock file could not be created, opened, locked or written.
    #[error("lock file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn pid_text(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("PID {p}"),
        None => "PID not written yet".into(),
    }
}

/// An exclusive lock, held until dropped (or the process ends).
#[derive(Debug)]
pub struct Lock {
    // Dropped after `Drop::drop` has unlinked the path: the file is
    // removed while still locked, so nobody can lock it in between.
    _file: File,
    path: PathBuf,
}

/// The lock file of the pin path `pin`.
pub fn pin_lock_path(pin: &Path) -> PathBuf {
    // Normalised (no repeated or trailing '/') so that spellings of one
    // path share a lock. FNV-1a: stable across builds, unlike std's
    // hasher, so an old daemon and a new binary agree during an upgrade.
    let norm: PathBuf = pin.components().collect();
    let text = norm.to_string_lossy();
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let tail = norm
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    Path::new(LOCK_DIR).join(format!("{tail}-{hash:016x}.lock"))
}

/// The lock file of the admin socket `socket`.
pub fn socket_lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Locks the pin path `pin` for this process.
pub fn pin_path(pin: &Path) -> Result<Lock, LockError> {
    Lock::acquire(&pin_lock_path(pin), "pin path", pin)
}

/// Locks the admin socket path `socket` for this process.
pub fn socket(socket: &Path) -> Result<Lock, LockError> {
    Lock::acquire(&socket_lock_path(socket), "admin socket", socket)
}

impl Lock {
    /// Takes the lock at `path` (protecting `what` `target`) without
    /// waiting, and writes our PID into it.
    pub fn acquire(path: &Path, what: &'static str, target: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.into(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // A holder that exits unlinks the file; if we opened it just
        // before that, our lock is on a file nobody else will open. Such a
        // lock is worth nothing: open the path again.
        for _ in 0..8 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Held {
                        what,
                        target: target.into(),
                        lock: path.into(),
                        pid: read_pid(&mut file),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            let ours = file.metadata().map_err(io)?;
            let current = match std::fs::metadata(path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            if (current.dev(), current.ino()) != (ours.dev(), ours.ino()) {
                continue;
            }
            file.set_len(0).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())
                .map_err(io)?;
            return Ok(Self {
                _file: file,
                path: path.into(),
            });
        }
        Err(io(std::io::Error::other(
            "the lock file was replaced again and again; retry",
        )))
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("redirector-lock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_pid() {
        let dir = temp("second");
        let path = dir.join("x.lock");
        let first = Lock::acquire(&path, "pin path", Path::new("/p")).expect("first");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        // flock locks belong to the open file: a second open is refused
        // even in the same process.
        match Lock::acquire(&path, "pin path", Path::new("/p")) {
            Err(e @ LockError::Held { pid: Some(p), .. }) => {
                assert_eq!(p, std::process::id());
                assert!(e.to_string().contains(&format!("PID {p}")), "{e}");
            }
            other => panic!("second lock not refused: {other:?}"),
        }
        drop(first);
        assert!(!path.exists(), "lock file left after release");
        Lock::acquire(&path, "pin path", Path::new("/p")).expect("free again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn spellings_of_one_pin_path_share_a_lock_file() {
        let a = pin_lock_path(Path::new("/sys/fs/bpf/redirector"));
        assert_eq!(a, pin_lock_path(Path::new("/sys/fs/bpf//redirector/")));
        assert_ne!(a, pin_lock_path(Path::new("/sys/fs/bpf/other")));
        assert!(a.starts_with(LOCK_DIR));
        assert!(a.to_string_lossy().contains("redirector-"));
    }
}

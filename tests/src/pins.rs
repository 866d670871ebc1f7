//! A unique bpffs pin directory per test, torn down on drop (detaching
//! every link pinned there).

use std::path::{Path, PathBuf};

pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    pub fn new(tag: &str) -> Self {
        Self {
            path: Path::new("/sys/fs/bpf").join(crate::unique(tag)),
        }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = redirector::datapath::teardown(&self.path) {
            eprintln!("teardown {}: {e}", self.path.display());
        }
    }
}

/// Pin directories under /sys/fs/bpf that carry the test prefix.
pub fn leftover_pins() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(crate::PREFIX))
                })
                .collect()
        })
        .unwrap_or_default()
}

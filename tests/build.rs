//! Builds the benchmark's empty baseline programs (`baseline-ebpf/`) for
//! the BPF target; the object lands in OUT_DIR, where the bench embeds it
//! with `include_bytes_aligned!`. The product's own object is built by
//! `redirector/build.rs` and never contains them.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir).join("baseline-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "redirector-baseline-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

//! Preconditions checked before touching the kernel, so a missing capability,
//! interface or bpffs gives an error that says so instead of an EPERM from
//! deep inside a syscall.

use std::{ffi::CString, path::Path};

use aya::util::KernelVersion;

use super::DatapathError;

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// The effective capability set from the text of `/proc/self/status`.
pub fn effective_caps(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Names of the capabilities the loader needs that `caps` lacks.
/// CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as the kernel allows.
pub fn missing_caps(caps: u64) -> Vec<&'static str> {
    let has = |c: u32| caps & (1u64 << c) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !admin {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !admin {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

pub fn check_capabilities() -> Result<(), DatapathError> {
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(|source| DatapathError::Io {
            path: "/proc/self/status".into(),
            source,
        })?;
    let caps = effective_caps(&status).unwrap_or(0);
    let missing = missing_caps(caps);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DatapathError::MissingCapability {
            missing: missing.join(", "),
        })
    }
}

/// The interface index of `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32, DatapathError> {
    let no_such = || DatapathError::NoSuchInterface { name: name.into() };
    let c = CString::new(name).map_err(|_| no_such())?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 { Err(no_such()) } else { Ok(idx) }
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The conventional bpffs mount point.
pub const BPFFS: &str = "/sys/fs/bpf";

fn is_bpffs(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain old data; all zeroes is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs writes into the struct we pass; c is a valid C string.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Our bpffs mount is only the host's if our mount namespace is init's.
/// In another one (`ip netns exec` remounts /sys, a container without the
/// host's /sys/fs/bpf) the pins die with this process and take the data
/// path with them: say so loudly.
fn warn_if_private_mount() {
    let ours = std::fs::read_link("/proc/self/ns/mnt");
    let init = std::fs::read_link("/proc/1/ns/mnt");
    match (ours, init) {
        (Ok(a), Ok(b)) if a == b => {
            tracing::info!(path = BPFFS, "mounted bpffs");
        }
        (ours, init) => tracing::warn!(
            path = BPFFS,
            ours = ?ours.ok(),
            init = ?init.ok(),
            "mounted a private bpffs: this mount namespace is not the host's, so the pins \
             will NOT outlive this process and traffic stops when it exits. Run the daemon \
             in the host's mount namespace (enter a network namespace with `nsenter --net=`, \
             not `ip netns exec`; in a container, mount the host's /sys/fs/bpf)"
        ),
    }
}

/// Makes sure `pin_path` can hold pins: if it lies under /sys/fs/bpf and
/// nothing is mounted there yet (a bare host or a fresh mount namespace),
/// mounts bpffs there, as systemd and Cilium do. Any other location must
/// already be on bpffs.
pub fn ensure_bpffs(pin_path: &Path) -> Result<(), DatapathError> {
    let bpffs = Path::new(BPFFS);
    if pin_path.starts_with(bpffs) && !is_bpffs(bpffs) && bpffs.is_dir() {
        let src = CString::new("bpf").expect("no NUL");
        let target = CString::new(BPFFS).expect("no NUL");
        // SAFETY: valid NUL-terminated strings; no data argument.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(DatapathError::Io {
                path: bpffs.into(),
                source: std::io::Error::last_os_error(),
            });
        }
        warn_if_private_mount();
    }
    let mut probe = pin_path;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => break,
        }
    }
    if is_bpffs(probe) {
        Ok(())
    } else {
        Err(DatapathError::NotBpffs {
            path: pin_path.into(),
        })
    }
}

/// The oldest kernel with TCX, which every TC attachment here uses: added
/// in Linux 6.6 by commit e420bed02507 ("bpf: Add fd-based tcx multi-prog
/// infra with link support"). The guard can go when older kernels are out
/// of scope for the loader's callers.
pub const MIN_KERNEL: KernelVersion = KernelVersion::new(6, 6, 0);

/// Refuses a kernel older than [`MIN_KERNEL`], or one whose version
/// cannot be read.
pub fn check_kernel() -> Result<(), DatapathError> {
    match KernelVersion::current() {
        Ok(v) if v >= MIN_KERNEL => Ok(()),
        Ok(v) => Err(DatapathError::KernelTooOld {
            found: v.to_string(),
        }),
        Err(e) => Err(DatapathError::KernelTooOld {
            found: format!("of unknown version ({e})"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_effective_caps_from_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_caps(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_caps("Name: x\n"), None);
    }

    #[test]
    fn root_needs_nothing_and_nobody_needs_everything() {
        assert!(missing_caps(0x1ff_ffff_ffff).is_empty());
        assert_eq!(missing_caps(0), ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]);
    }

    #[test]
    fn cap_bpf_without_net_admin_is_reported() {
        let caps = (1 << CAP_BPF) | (1 << CAP_PERFMON);
        assert_eq!(missing_caps(caps), ["CAP_NET_ADMIN"]);
        let sys_admin = (1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN);
        assert!(missing_caps(sys_admin).is_empty());
    }

    #[test]
    fn tcx_kernels_pass_and_older_ones_do_not() {
        assert!(KernelVersion::new(6, 18, 44) >= MIN_KERNEL);
        assert!(KernelVersion::new(6, 6, 0) >= MIN_KERNEL);
        assert!(KernelVersion::new(6, 5, 255) < MIN_KERNEL);
        assert!(KernelVersion::new(5, 4, 0) < MIN_KERNEL);
    }

    #[test]
    fn unknown_interface_is_named() {
        let e = ifindex("no-such-if0").unwrap_err().to_string();
        assert!(e.contains("no-such-if0"), "{e}");
    }
}

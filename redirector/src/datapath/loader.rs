//! Loads the embedded kernel object, attaches it, and pins maps and links.
//!
//! Layout under the pin path:
//! - `maps/<NAME>`: every map. A new load reuses them, so conntrack and the
//!   active members survive daemon restarts and upgrades.
//! - `links/<interface>@<hook>`: one bpf_link per attachment (TCX for TC,
//!   XDP links for XDP). A new load swaps its program into the existing link
//!   atomically (`bpf_link_update`): no moment without a program.
//!
//! Removing a pin file detaches that link; [`teardown`] removes them all.

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::MapType,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::XdpLink,
    },
};
use redirector_common::{MAPS, MapKind, MapSpec, OtherCapacity, SERVICES_MAP, signal::SIGNALS_ALL};

use super::{
    DatapathError, Maps,
    pinned::{map_err, pin_file},
    system,
};

/// The kernel object built by `build.rs` from `redirector-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/redirector"));

pub const EGRESS_PROGRAM: &str = "redirector_egress";
pub const INGRESS_PROGRAM: &str = "redirector_ingress";
pub const XDP_PROGRAM: &str = "redirector_xdp";
/// The kernel object's global with the signal layers on (`SIGNALS_*`).
const SIGNALS_GLOBAL: &str = "SIGNALS";

/// How replies are reverse-translated (config `datapath.ingress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngressMode {
    /// Native XDP where the driver supports it, TC ingress otherwise.
    Auto,
    /// XDP: native, or generic where the driver has no native support.
    Xdp,
    /// TC ingress.
    Tc,
}

/// Where a program is attached on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Hook {
    TcEgress,
    TcIngress,
    XdpNative,
    XdpGeneric,
}

impl Hook {
    pub const ALL: [Hook; 4] = [
        Hook::TcEgress,
        Hook::TcIngress,
        Hook::XdpNative,
        Hook::XdpGeneric,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Hook::TcEgress => "tc-egress",
            Hook::TcIngress => "tc-ingress",
            Hook::XdpNative => "xdp-native",
            Hook::XdpGeneric => "xdp-generic",
        }
    }

    const fn program(self) -> &'static str {
        match self {
            Hook::TcEgress => EGRESS_PROGRAM,
            Hook::TcIngress => INGRESS_PROGRAM,
            Hook::XdpNative | Hook::XdpGeneric => XDP_PROGRAM,
        }
    }

    const fn is_ingress(self) -> bool {
        !matches!(self, Hook::TcEgress)
    }

    /// `<interface>@<hook>`. bpffs refuses names containing '.', which
    /// interface names may have (VLANs: `eth0.100`), so '.' is written as
    /// '%', a character no allocated interface name contains.
    fn pin_name(self, interface: &str) -> String {
        format!("{}@{}", interface.replace('.', "%"), self.as_str())
    }

    fn from_pin_name(name: &str) -> Option<(String, Hook)> {
        let (iface, hook) = name.rsplit_once('@')?;
        Hook::ALL
            .into_iter()
            .find(|h| h.as_str() == hook)
            .map(|h| (iface.replace('%', "."), h))
    }
}

/// One program attachment the data path holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Attachment {
    pub interface: String,
    pub hook: Hook,
    /// An existing pinned link whose program was swapped, not a new link.
    pub adopted: bool,
}

/// What to load and where.
#[derive(Clone, Debug)]
pub struct Options {
    pub interfaces: Vec<String>,
    pub ingress: IngressMode,
    pub pin_path: PathBuf,
    pub conntrack_entries: u32,
}

/// A loaded (or adopted) and attached data path.
pub struct Datapath {
    pub maps: Maps,
    pub attachments: Vec<Attachment>,
    pub pin_path: PathBuf,
}

impl Datapath {
    /// Loads the programs with the pinned maps (created if absent, reused
    /// untouched if present), attaches or adopts one link per interface and
    /// hook, and removes pinned links no longer wanted.
    pub fn load(opts: &Options) -> Result<Self, DatapathError> {
        system::check_capabilities()?;
        system::check_kernel()?;
        for iface in &opts.interfaces {
            system::ifindex(iface)?;
        }
        let mut ebpf = load_programs(&opts.pin_path, opts.conntrack_entries)?;
        // Filters before attaching: a packet of a known service or flow must
        // never meet a filter without its bits.
        let mut maps = Maps::open(&opts.pin_path)?;
        maps.sync_port_filters()?;
        let links_dir = opts.pin_path.join("links");
        mkdir(&links_dir)?;
        let existing = pinned_links(&links_dir)?;

        let mut attachments = Vec::new();
        for iface in &opts.interfaces {
            attachments.push(attach(&mut ebpf, iface, Hook::TcEgress, &links_dir)?);
            attachments.push(attach_ingress(
                &mut ebpf,
                iface,
                opts.ingress,
                &existing,
                &links_dir,
            )?);
        }
        // Links for interfaces or hooks no longer configured.
        for (iface, hook) in &existing {
            if !attachments
                .iter()
                .any(|a| &a.interface == iface && a.hook == *hook)
            {
                unpin(&links_dir.join(hook.pin_name(iface)))?;
            }
        }
        drop(ebpf);
        Ok(Self {
            maps,
            attachments,
            pin_path: opts.pin_path.clone(),
        })
    }
}

/// Loads the object with its maps pinned under `pin_path/maps` and loads
/// (verifies) every program, without attaching anything. The packet tests
/// run the programs from here with BPF_PROG_TEST_RUN.
pub fn load_programs(pin_path: &Path, conntrack_entries: u32) -> Result<Ebpf, DatapathError> {
    load_programs_with(pin_path, conntrack_entries, SIGNALS_ALL)
}

/// [`load_programs`] with the signal layers `signals` on
/// (`redirector_common::signal::SIGNALS_*`; 0 = the programs exactly as
/// before signals existed, for tests and the bench's comparison).
pub fn load_programs_with(
    pin_path: &Path,
    conntrack_entries: u32,
    signals: u32,
) -> Result<Ebpf, DatapathError> {
    system::ensure_bpffs(pin_path)?;
    mkdir(&pin_path.join("maps"))?;
    let paths: Vec<(&str, PathBuf)> = MAPS
        .iter()
        .map(|spec| (spec.name, pin_file(pin_path, spec)))
        .collect();
    let mut loader = EbpfLoader::new();
    loader.override_global(SIGNALS_GLOBAL, &signals, true);
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    for spec in MAPS
        .iter()
        .filter(|s| s.other_capacity == OtherCapacity::Configured)
    {
        loader.map_max_entries(spec.name, conntrack_entries);
    }
    let mut ebpf = loader
        .load(OBJECT)
        .map_err(|e| DatapathError::Load(Box::new(e)))?;
    check_map_layouts(&ebpf, conntrack_entries)?;
    for name in [EGRESS_PROGRAM, INGRESS_PROGRAM] {
        let prog: &mut SchedClassifier = program(&mut ebpf, name)?;
        prog.load().map_err(|source| DatapathError::Program {
            program: name,
            source: Box::new(source),
        })?;
    }
    let xdp: &mut Xdp = program(&mut ebpf, XDP_PROGRAM)?;
    xdp.load().map_err(|source| DatapathError::Program {
        program: XDP_PROGRAM,
        source: Box::new(source),
    })?;
    Ok(ebpf)
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, DatapathError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| DatapathError::Program {
            program: name,
            source: Box::new(aya::programs::ProgramError::UnexpectedProgramType),
        })?;
    p.try_into().map_err(|source| DatapathError::Program {
        program: name,
        source: Box::new(source),
    })
}

/// A pinned map from an older build with another layout would be reused
/// silently by the loader; refuse it instead of misreading it.
fn check_map_layouts(ebpf: &Ebpf, conntrack_entries: u32) -> Result<(), DatapathError> {
    for spec in &MAPS {
        let map = ebpf
            .map(spec.name)
            .ok_or_else(|| DatapathError::IncompatibleMap {
                map: spec.name,
                detail: "missing from the object".into(),
            })?;
        let info = match map {
            aya::maps::Map::HashMap(d)
            | aya::maps::Map::LruHashMap(d)
            | aya::maps::Map::PerCpuArray(d)
            | aya::maps::Map::Array(d)
            | aya::maps::Map::RingBuf(d) => d.info(),
            _ => {
                return Err(DatapathError::IncompatibleMap {
                    map: spec.name,
                    detail: "unexpected map type".into(),
                });
            }
        }
        .map_err(map_err(spec.name))?;
        let found = FoundLayout {
            map_type: info.map_type().map_err(map_err(spec.name))?,
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
        };
        check_layout(spec, found, conntrack_entries)?;
    }
    Ok(())
}

/// What the kernel reports of a loaded (possibly pinned, older) map.
#[derive(Clone, Copy, Debug, PartialEq)]
struct FoundLayout {
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

/// The aya name of a schema map kind.
const fn map_type(kind: MapKind) -> MapType {
    match kind {
        MapKind::Hash => MapType::Hash,
        MapKind::LruHash => MapType::LruHash,
        MapKind::Array => MapType::Array,
        MapKind::PerCpuArray => MapType::PerCpuArray,
        MapKind::RingBuf => MapType::RingBuf,
    }
}

/// Refuses `found` unless it has the kind, key and value of `spec` and a
/// capacity `spec.other_capacity` accepts. `conntrack_entries` is the
/// configured capacity of the [`OtherCapacity::Configured`] maps.
fn check_layout(
    spec: &MapSpec,
    found: FoundLayout,
    conntrack_entries: u32,
) -> Result<(), DatapathError> {
    let ty = map_type(spec.kind);
    let (key, value) = (spec.key_size, spec.value_size);
    if found.map_type != ty || found.key_size != key || found.value_size != value {
        return Err(DatapathError::IncompatibleMap {
            map: spec.name,
            detail: format!(
                "type {:?} key {} value {}, expected {ty:?} key {key} value {value}",
                found.map_type, found.key_size, found.value_size
            ),
        });
    }
    match spec.other_capacity {
        OtherCapacity::Refuse if found.max_entries != spec.max_entries => {
            Err(DatapathError::IncompatibleMap {
                map: spec.name,
                detail: format!(
                    "{} entries, expected {}",
                    found.max_entries, spec.max_entries
                ),
            })
        }
        OtherCapacity::Configured if found.max_entries != conntrack_entries => {
            tracing::warn!(
                map = spec.name,
                pinned = found.max_entries,
                configured = conntrack_entries,
                "keeping the pinned map's size; run `redirector teardown` to apply the new conntrack_entries"
            );
            Ok(())
        }
        OtherCapacity::Refuse | OtherCapacity::Reuse | OtherCapacity::Configured => Ok(()),
    }
}

fn attach_ingress(
    ebpf: &mut Ebpf,
    iface: &str,
    mode: IngressMode,
    existing: &[(String, Hook)],
    links_dir: &Path,
) -> Result<Attachment, DatapathError> {
    let pinned: Vec<Hook> = existing
        .iter()
        .filter(|(i, h)| i == iface && h.is_ingress())
        .map(|(_, h)| *h)
        .collect();
    let wanted: &[Hook] = match mode {
        IngressMode::Tc => &[Hook::TcIngress],
        IngressMode::Xdp => &[Hook::XdpNative, Hook::XdpGeneric],
        IngressMode::Auto => &[Hook::XdpNative, Hook::TcIngress],
    };
    // Adopt what is pinned if the mode allows it: no gap, no surprise switch.
    if let Some(h) = wanted.iter().find(|h| pinned.contains(h)) {
        return attach(ebpf, iface, *h, links_dir);
    }
    // Another XDP link on the interface would make a new one fail with EBUSY.
    for h in pinned {
        unpin(&links_dir.join(h.pin_name(iface)))?;
    }
    let mut last = None;
    for h in wanted {
        match attach(ebpf, iface, *h, links_dir) {
            Ok(a) => return Ok(a),
            Err(e) => {
                tracing::info!(interface = iface, hook = h.as_str(), error = %e, "ingress hook unavailable, trying the next");
                last = Some(e);
            }
        }
    }
    Err(match (mode, last) {
        (IngressMode::Xdp, Some(e)) => DatapathError::XdpUnsupported {
            interface: iface.into(),
            reason: e.to_string(),
        },
        (_, Some(e)) => e,
        (_, None) => unreachable!("every mode wants at least one hook"),
    })
}

/// Attaches `hook`'s program on `iface`, or swaps it into the pinned link.
fn attach(
    ebpf: &mut Ebpf,
    iface: &str,
    hook: Hook,
    links_dir: &Path,
) -> Result<Attachment, DatapathError> {
    let pin = links_dir.join(hook.pin_name(iface));
    let attach_err = |source| DatapathError::Attach {
        program: hook.program(),
        interface: iface.into(),
        hook: hook.as_str(),
        source: Box::new(source),
    };
    if pin.exists() {
        if adopt(ebpf, hook, &pin)? {
            return Ok(Attachment {
                interface: iface.into(),
                hook,
                adopted: true,
            });
        }
        // Defunct (its interface was deleted) or of the wrong kind.
        unpin(&pin)?;
    }
    let link: FdLink = match hook {
        Hook::TcEgress | Hook::TcIngress => {
            let prog: &mut SchedClassifier = program(ebpf, hook.program())?;
            let ty = if hook == Hook::TcEgress {
                TcAttachType::Egress
            } else {
                TcAttachType::Ingress
            };
            let id = prog
                .attach_with_options(iface, ty, TcAttachOptions::TcxOrder(LinkOrder::default()))
                .map_err(attach_err)?;
            let link = prog.take_link(id).map_err(attach_err)?;
            link.try_into()
                .map_err(|e: aya::programs::links::LinkError| DatapathError::Pin {
                    path: pin.clone(),
                    message: format!(
                        "TC attachment is not a TCX link ({e}); Linux 6.6 or newer is needed"
                    ),
                })?
        }
        Hook::XdpNative | Hook::XdpGeneric => {
            let prog: &mut Xdp = program(ebpf, XDP_PROGRAM)?;
            let mode = if hook == Hook::XdpNative {
                XdpMode::Driver
            } else {
                XdpMode::Skb
            };
            let id = prog.attach(iface, mode).map_err(attach_err)?;
            let link = prog.take_link(id).map_err(attach_err)?;
            // A netlink attachment (no bpf_link) cannot be pinned; dropping
            // it here detaches it again.
            link.try_into()
                .map_err(
                    |e: aya::programs::links::LinkError| DatapathError::XdpUnsupported {
                        interface: iface.into(),
                        reason: format!("no XDP bpf_link ({e})"),
                    },
                )?
        }
    };
    link.pin(&pin).map_err(|e| DatapathError::Pin {
        path: pin.clone(),
        message: error_chain(&e),
    })?;
    Ok(Attachment {
        interface: iface.into(),
        hook,
        adopted: false,
    })
}

/// Swaps the freshly loaded program into the pinned link at `pin`.
/// `Ok(false)` if that link cannot take it (defunct or of another kind).
fn adopt(ebpf: &mut Ebpf, hook: Hook, pin: &Path) -> Result<bool, DatapathError> {
    let Ok(pinned) = PinnedLink::from_pin(pin) else {
        return Ok(false);
    };
    let fd = FdLink::from(pinned);
    let swapped = match hook {
        Hook::TcEgress | Hook::TcIngress => {
            let prog: &mut SchedClassifier = program(ebpf, hook.program())?;
            match SchedClassifierLink::try_from(fd) {
                Ok(link) => prog
                    .attach_to_link(link)
                    .and_then(|id| prog.take_link(id))
                    .is_ok(),
                Err(_) => false,
            }
        }
        Hook::XdpNative | Hook::XdpGeneric => {
            let prog: &mut Xdp = program(ebpf, XDP_PROGRAM)?;
            match XdpLink::try_from(fd) {
                Ok(link) => prog
                    .attach_to_link(link)
                    .and_then(|id| prog.take_link(id))
                    .is_ok(),
                Err(_) => false,
            }
        }
    };
    // The taken link is dropped here: that closes our fd, and the pin keeps
    // the link (now running the new program) alive.
    Ok(swapped)
}

/// "outer: inner: innermost", since aya's errors keep the OS error in the
/// source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn pinned_links(dir: &Path) -> Result<Vec<(String, Hook)>, DatapathError> {
    let io = |source| DatapathError::Io {
        path: dir.into(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        if let Some(found) = name.to_str().and_then(Hook::from_pin_name) {
            out.push(found);
        }
    }
    Ok(out)
}

fn mkdir(dir: &Path) -> Result<(), DatapathError> {
    fs::create_dir_all(dir).map_err(|source| DatapathError::Io {
        path: dir.into(),
        source,
    })
}

fn unpin(path: &Path) -> Result<(), DatapathError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DatapathError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// Whether a data path is pinned at `pin_path`.
pub fn pins_exist(pin_path: &Path) -> bool {
    pin_file(pin_path, &SERVICES_MAP).exists()
}

/// Detaches every link and removes every map pinned under `pin_path`, then
/// the directory. Returns the pins removed. Nothing pinned is not an error.
pub fn teardown(pin_path: &Path) -> Result<Vec<PathBuf>, DatapathError> {
    let mut removed = Vec::new();
    // Links first, so no program runs against half-removed maps.
    for sub in ["links", "maps"] {
        let dir = pin_path.join(sub);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(DatapathError::Io { path: dir, source }),
        };
        for entry in entries {
            let path = entry
                .map_err(|source| DatapathError::Io {
                    path: dir.clone(),
                    source,
                })?
                .path();
            unpin(&path)?;
            removed.push(path);
        }
        fs::remove_dir(&dir).map_err(|source| DatapathError::Io { path: dir, source })?;
    }
    match fs::remove_dir(pin_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(DatapathError::Io {
                path: pin_path.into(),
                source,
            });
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names_round_trip_including_dotted_interfaces() {
        for hook in Hook::ALL {
            for iface in ["eth0", "eth0.100", "veth-a"] {
                let name = hook.pin_name(iface);
                assert!(!name.contains('.'), "bpffs refuses dots: {name}");
                assert_eq!(Hook::from_pin_name(&name), Some((iface.to_string(), hook)));
            }
        }
        assert_eq!(Hook::from_pin_name("eth0@unknown"), None);
        assert_eq!(Hook::from_pin_name("noext"), None);
    }

    fn layout_of(spec: &MapSpec) -> FoundLayout {
        FoundLayout {
            map_type: map_type(spec.kind),
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
        }
    }

    fn refused(result: Result<(), DatapathError>) -> bool {
        matches!(result, Err(DatapathError::IncompatibleMap { .. }))
    }

    #[test]
    fn every_map_of_this_build_passes_the_layout_check() {
        for spec in &MAPS {
            check_layout(spec, layout_of(spec), spec.max_entries).unwrap();
        }
    }

    #[test]
    fn a_map_of_another_kind_key_or_value_is_refused() {
        use redirector_common::{CONNTRACK_MAP, STATS_MAP};
        for spec in [SERVICES_MAP, CONNTRACK_MAP, STATS_MAP] {
            let ok = layout_of(&spec);
            let n = spec.max_entries;
            let other_type = FoundLayout {
                map_type: MapType::Queue,
                ..ok
            };
            let other_key = FoundLayout {
                key_size: ok.key_size + 4,
                ..ok
            };
            let other_value = FoundLayout {
                value_size: ok.value_size - 4,
                ..ok
            };
            assert!(refused(check_layout(&spec, other_type, n)), "{}", spec.name);
            assert!(refused(check_layout(&spec, other_key, n)), "{}", spec.name);
            assert!(
                refused(check_layout(&spec, other_value, n)),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    #[ignore = "needs root: loads the programs and pins maps on bpffs"]
    fn a_pinned_map_of_another_layout_is_refused_at_load() {
        use redirector_common::{STATS_MAP, schema::SERVICES};
        let base = Path::new(system::BPFFS).join(format!("rdt-layout-{}", std::process::id()));
        let (good, bad) = (base.join("good"), base.join("bad"));
        struct Cleanup(Vec<PathBuf>);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                for dir in &self.0 {
                    let _ = teardown(dir);
                }
            }
        }
        let _cleanup = Cleanup(vec![good.clone(), bad.clone(), base.clone()]);
        drop(load_programs(&good, 1024).expect("load the programs"));
        // A STATS array pinned where SERVICES belongs: what an older build
        // with another SERVICES layout would have left.
        mkdir(&bad.join("maps")).unwrap();
        aya::maps::MapData::from_pin(pin_file(&good, &STATS_MAP))
            .unwrap()
            .pin(pin_file(&bad, &SERVICES_MAP))
            .unwrap();
        match load_programs(&bad, 1024) {
            Err(DatapathError::IncompatibleMap { map, .. }) => assert_eq!(map, SERVICES),
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("a STATS array was accepted as SERVICES"),
        }
    }

    #[test]
    fn capacities_are_refused_reused_or_kept_as_the_schema_says() {
        use redirector_common::{CONNTRACK_MAP, STATS_MAP};
        // STATS with fewer counters: refused.
        let fewer = FoundLayout {
            max_entries: STATS_MAP.max_entries - 1,
            ..layout_of(&STATS_MAP)
        };
        assert!(refused(check_layout(&STATS_MAP, fewer, 0)));
        // A smaller SERVICES table is reused.
        let smaller = FoundLayout {
            max_entries: 1024,
            ..layout_of(&SERVICES_MAP)
        };
        check_layout(&SERVICES_MAP, smaller, 0).unwrap();
        // A conntrack table of another size than configured is kept.
        check_layout(&CONNTRACK_MAP, layout_of(&CONNTRACK_MAP), 1024).unwrap();
    }
}

//! Typed access to the pinned maps. The daemon's map writer owns one
//! [`Maps`]; the CLI and tests open their own to read.

use std::path::Path;

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray};
use redirector_common::{
    Assignment, CONNTRACK, CONNTRACK_MAP, DOWN_MEMBERS, DOWN_MEMBERS_MAP, DownMark, Endpoint,
    FlowKey, MEMBER_PORTS, MEMBER_PORTS_MAP, MEMBER_SIGNALS, MEMBER_SIGNALS_MAP, MEMBER_VIPS,
    MEMBER_VIPS_MAP, MemberVip, REVERSE_NAT, REVERSE_NAT_MAP, ReplyTarget, ReverseKey, SERVICES,
    SERVICES_MAP, STATS, STATS_MAP, Stat, TrackedFlow, VIP_PORTS, VIP_PORTS_MAP, filter_bit,
    signal::MemberSignals,
};

use super::{
    DatapathError,
    pinned::{map_err, open_typed},
};

/// One `SERVICES` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub vip: Endpoint,
    pub active: Assignment,
}

/// One `CONNTRACK` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEntry {
    pub flow: FlowKey,
    pub assignment: Assignment,
    /// `redirector_common::flow::FIN_*` bits.
    pub state: u32,
}

/// `STATS` summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats(pub [u64; Stat::COUNT as usize]);

impl Stats {
    pub fn get(&self, stat: Stat) -> u64 {
        self.0[stat as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = (Stat, u64)> + '_ {
        Stat::ALL.into_iter().map(|s| (s, self.get(s)))
    }
}

pub struct Maps {
    services: HashMap<MapData, Endpoint, Assignment>,
    conntrack: HashMap<MapData, FlowKey, TrackedFlow>,
    reverse: HashMap<MapData, ReverseKey, ReplyTarget>,
    down: HashMap<MapData, Endpoint, DownMark>,
    member_vips: HashMap<MapData, Endpoint, MemberVip>,
    stats: PerCpuArray<MapData, u64>,
    vip_ports: Array<MapData, u32>,
    member_ports: Array<MapData, u32>,
    member_signals: HashMap<MapData, Endpoint, MemberSignals>,
}

impl Maps {
    /// Opens the maps pinned under `pin_path`.
    pub fn open(pin_path: &Path) -> Result<Self, DatapathError> {
        Ok(Self {
            services: open_typed(pin_path, &SERVICES_MAP)?,
            conntrack: open_typed(pin_path, &CONNTRACK_MAP)?,
            reverse: open_typed(pin_path, &REVERSE_NAT_MAP)?,
            down: open_typed(pin_path, &DOWN_MEMBERS_MAP)?,
            member_vips: open_typed(pin_path, &MEMBER_VIPS_MAP)?,
            stats: open_typed(pin_path, &STATS_MAP)?,
            vip_ports: open_typed(pin_path, &VIP_PORTS_MAP)?,
            member_ports: open_typed(pin_path, &MEMBER_PORTS_MAP)?,
            member_signals: open_typed(pin_path, &MEMBER_SIGNALS_MAP)?,
        })
    }

    /// Sets the port filters from the services and flows already in the
    /// maps (after an upgrade that added the filters, or any adoption).
    /// Bits are only ever added: a bit left set costs a lookup, a bit
    /// missing would stop translation.
    pub fn sync_port_filters(&mut self) -> Result<(), DatapathError> {
        for s in self.services()? {
            self.allow_ports(&s.vip, &s.active.member)?;
        }
        for f in self.flows()? {
            self.allow_ports(&f.flow.vip, &f.assignment.member)?;
        }
        Ok(())
    }

    /// Sets the address bits of `vip` and `member` in their ports' filter
    /// entries (see `redirector_common::filter_bit`).
    fn allow_ports(&mut self, vip: &Endpoint, member: &Endpoint) -> Result<(), DatapathError> {
        for (map, name, ep) in [
            (&mut self.vip_ports, VIP_PORTS, vip),
            (&mut self.member_ports, MEMBER_PORTS, member),
        ] {
            let port = u32::from(ep.port());
            let bits = map.get(&port, 0).map_err(map_err(name))?;
            let bit = filter_bit(ep.addr_words());
            if bits & bit == 0 {
                map.set(port, bits | bit, 0).map_err(map_err(name))?;
            }
        }
        Ok(())
    }

    /// Points `vip` at `member` with one map update (the kernel replaces
    /// the hash element atomically). Returns the new generation; setting the
    /// member it already has changes nothing and returns the current one.
    pub fn set_active(&mut self, vip: Endpoint, member: Endpoint) -> Result<u32, DatapathError> {
        let current = self.active(&vip)?;
        if let Some(a) = current
            && a.member == member
        {
            return Ok(a.generation);
        }
        // Filters first: once the service exists its packets must pass them.
        self.allow_ports(&vip, &member)?;
        let generation = current.map_or(1, |a| a.generation.wrapping_add(1).max(1));
        let value = Assignment {
            member,
            generation,
            flags: 0,
        };
        self.services
            .insert(vip, value, 0)
            .map_err(map_err(SERVICES))?;
        Ok(generation)
    }

    /// The active member of `vip`, if the service exists.
    pub fn active(&self, vip: &Endpoint) -> Result<Option<Assignment>, DatapathError> {
        not_found_is_none(self.services.get(vip, 0), SERVICES)
    }

    /// Removes a service; its VIP is no longer translated. Returns whether
    /// it existed.
    pub fn remove_service(&mut self, vip: &Endpoint) -> Result<bool, DatapathError> {
        removed(self.services.remove(vip), SERVICES)
    }

    pub fn services(&self) -> Result<Vec<ServiceEntry>, DatapathError> {
        collect(self.services.iter(), SERVICES, |vip, active| ServiceEntry {
            vip,
            active,
        })
    }

    /// Marks `member` down: packets of flows pinned to it are steered to
    /// their service's active member (which answers RST).
    pub fn mark_down(&mut self, member: Endpoint, reason: u32) -> Result<(), DatapathError> {
        self.down
            .insert(member, DownMark { reason }, 0)
            .map_err(map_err(DOWN_MEMBERS))
    }

    /// Clears the down mark. Returns whether there was one.
    pub fn mark_up(&mut self, member: &Endpoint) -> Result<bool, DatapathError> {
        removed(self.down.remove(member), DOWN_MEMBERS)
    }

    pub fn down_members(&self) -> Result<Vec<(Endpoint, DownMark)>, DatapathError> {
        collect(self.down.iter(), DOWN_MEMBERS, |e, m| (e, m))
    }

    pub fn flows(&self) -> Result<Vec<FlowEntry>, DatapathError> {
        collect(self.conntrack.iter(), CONNTRACK, |flow, tracked| {
            FlowEntry {
                flow,
                assignment: tracked.assignment,
                state: tracked.state,
            }
        })
    }

    /// Number of reply-translation entries (for tests; a full walk).
    pub fn reverse_entries(&self) -> Result<usize, DatapathError> {
        Ok(collect(self.reverse.iter(), REVERSE_NAT, |_, _| ())?.len())
    }

    /// The reply entry of `member` -> `client`, if any (for tests).
    pub fn reply_target(
        &self,
        member: Endpoint,
        client: Endpoint,
    ) -> Result<Option<ReplyTarget>, DatapathError> {
        not_found_is_none(
            self.reverse.get(&ReverseKey { member, client }, 0),
            REVERSE_NAT,
        )
    }

    /// Records which VIP `member` serves (`vips` = how many it is behind),
    /// so a lost reply entry can be recovered when that is one.
    pub fn set_member_vip(
        &mut self,
        member: Endpoint,
        vip: Endpoint,
        vips: u32,
    ) -> Result<(), DatapathError> {
        self.member_vips
            .insert(member, MemberVip { vip, vips }, 0)
            .map_err(map_err(MEMBER_VIPS))
    }

    /// Forgets `member` in `MEMBER_VIPS`. Returns whether it was there.
    pub fn remove_member_vip(&mut self, member: &Endpoint) -> Result<bool, DatapathError> {
        removed(self.member_vips.remove(member), MEMBER_VIPS)
    }

    /// Every `MEMBER_VIPS` entry.
    pub fn member_vips(&self) -> Result<Vec<(Endpoint, MemberVip)>, DatapathError> {
        collect(self.member_vips.iter(), MEMBER_VIPS, |e, v| (e, v))
    }

    /// Observes `member`: the kernel counts its signals of the kinds
    /// `flags` selects (`signal::OBSERVE_L4 | OBSERVE_L7`) and sends events
    /// for them. An entry already there keeps its counts and gets `flags`
    /// (read-modify-write: a kernel add racing with it may be lost).
    pub fn observe_member(&mut self, member: Endpoint, flags: u32) -> Result<(), DatapathError> {
        let entry = match not_found_is_none(self.member_signals.get(&member, 0), MEMBER_SIGNALS)? {
            Some(e) if e.flags == flags => return Ok(()),
            Some(e) => MemberSignals { flags, ..e },
            None => MemberSignals::observing(flags),
        };
        self.member_signals
            .insert(member, entry, 0)
            .map_err(map_err(MEMBER_SIGNALS))
    }

    /// Stops observing `member` and drops its counts. Returns whether it
    /// was observed.
    pub fn forget_member(&mut self, member: &Endpoint) -> Result<bool, DatapathError> {
        removed(self.member_signals.remove(member), MEMBER_SIGNALS)
    }

    /// Every observed member with its counters (for metrics).
    pub fn member_signals(&self) -> Result<Vec<(Endpoint, MemberSignals)>, DatapathError> {
        collect(self.member_signals.iter(), MEMBER_SIGNALS, |e, s| (e, s))
    }

    pub fn stats(&self) -> Result<Stats, DatapathError> {
        let mut out = Stats::default();
        for stat in Stat::ALL {
            let per_cpu = self.stats.get(&(stat as u32), 0).map_err(map_err(STATS))?;
            out.0[stat as usize] = per_cpu.iter().sum();
        }
        Ok(out)
    }
}

fn not_found_is_none<V>(
    r: Result<V, MapError>,
    map: &'static str,
) -> Result<Option<V>, DatapathError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(map_err(map)(source)),
    }
}

/// Whether a delete removed something. aya reports a missing key of a
/// delete as the syscall's ENOENT, not as `KeyNotFound`.
fn removed(r: Result<(), MapError>, map: &'static str) -> Result<bool, DatapathError> {
    match r {
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            Ok(false)
        }
        r => not_found_is_none(r, map).map(|o| o.is_some()),
    }
}

fn collect<K, V, T>(
    iter: impl Iterator<Item = Result<(K, V), MapError>>,
    map: &'static str,
    f: impl Fn(K, V) -> T,
) -> Result<Vec<T>, DatapathError> {
    let mut out = Vec::new();
    for item in iter {
        match item {
            Ok((k, v)) => out.push(f(k, v)),
            // An entry deleted (or LRU-evicted) while we walked: skip it.
            Err(MapError::KeyNotFound) => {}
            Err(source) => return Err(map_err(map)(source)),
        }
    }
    Ok(out)
}

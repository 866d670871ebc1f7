//! The map operations the map writer needs, as a trait: the pinned maps
//! ([`Maps`]) in the daemon, an in-memory store with injectable failures in
//! tests, so the writer's handling of failed map syscalls is tested
//! without a kernel.

use redirector_common::{DownMark, Endpoint, MemberVip};

use crate::datapath::{DatapathError, Maps, ServiceEntry, Stats};

pub trait MapStore: Send + 'static {
    /// Points `vip` at `member` (one atomic update).
    fn set_active(&mut self, vip: Endpoint, member: Endpoint) -> Result<(), DatapathError>;
    /// The member `vip` points at, if the service exists.
    fn active(&self, vip: &Endpoint) -> Result<Option<Endpoint>, DatapathError>;
    fn remove_service(&mut self, vip: &Endpoint) -> Result<(), DatapathError>;
    fn services(&self) -> Result<Vec<ServiceEntry>, DatapathError>;
    fn mark_down(&mut self, member: Endpoint, reason: u32) -> Result<(), DatapathError>;
    fn mark_up(&mut self, member: &Endpoint) -> Result<(), DatapathError>;
    fn down_members(&self) -> Result<Vec<(Endpoint, DownMark)>, DatapathError>;
    fn set_member_vip(
        &mut self,
        member: Endpoint,
        vip: Endpoint,
        vips: u32,
    ) -> Result<(), DatapathError>;
    fn remove_member_vip(&mut self, member: &Endpoint) -> Result<(), DatapathError>;
    fn member_vips(&self) -> Result<Vec<(Endpoint, MemberVip)>, DatapathError>;
    fn stats(&self) -> Result<Stats, DatapathError>;
    /// Counts `member`'s signals of the kinds `flags` selects.
    fn observe_member(&mut self, member: Endpoint, flags: u32) -> Result<(), DatapathError>;
    /// Stops counting `member`'s signals.
    fn forget_member(&mut self, member: &Endpoint) -> Result<(), DatapathError>;
}

impl MapStore for Maps {
    fn set_active(&mut self, vip: Endpoint, member: Endpoint) -> Result<(), DatapathError> {
        Maps::set_active(self, vip, member).map(drop)
    }
    fn active(&self, vip: &Endpoint) -> Result<Option<Endpoint>, DatapathError> {
        Maps::active(self, vip).map(|a| a.map(|a| a.member))
    }
    fn remove_service(&mut self, vip: &Endpoint) -> Result<(), DatapathError> {
        Maps::remove_service(self, vip).map(drop)
    }
    fn services(&self) -> Result<Vec<ServiceEntry>, DatapathError> {
        Maps::services(self)
    }
    fn mark_down(&mut self, member: Endpoint, reason: u32) -> Result<(), DatapathError> {
        Maps::mark_down(self, member, reason)
    }
    fn mark_up(&mut self, member: &Endpoint) -> Result<(), DatapathError> {
        Maps::mark_up(self, member).map(drop)
    }
    fn down_members(&self) -> Result<Vec<(Endpoint, DownMark)>, DatapathError> {
        Maps::down_members(self)
    }
    fn set_member_vip(
        &mut self,
        member: Endpoint,
        vip: Endpoint,
        vips: u32,
    ) -> Result<(), DatapathError> {
        Maps::set_member_vip(self, member, vip, vips)
    }
    fn remove_member_vip(&mut self, member: &Endpoint) -> Result<(), DatapathError> {
        Maps::remove_member_vip(self, member).map(drop)
    }
    fn member_vips(&self) -> Result<Vec<(Endpoint, MemberVip)>, DatapathError> {
        Maps::member_vips(self)
    }
    fn stats(&self) -> Result<Stats, DatapathError> {
        Maps::stats(self)
    }
    fn observe_member(&mut self, member: Endpoint, flags: u32) -> Result<(), DatapathError> {
        Maps::observe_member(self, member, flags)
    }
    fn forget_member(&mut self, member: &Endpoint) -> Result<(), DatapathError> {
        Maps::forget_member(self, member).map(drop)
    }
}

/// An in-memory [`MapStore`] for tests: what was written, and failures to
/// inject per operation.
#[cfg(test)]
pub mod fake {
    use std::{
        collections::{BTreeMap, HashMap},
        sync::{Arc, Mutex},
    };

    use super::*;

    /// The operations a test can make fail.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Op {
        Active,
        MarkUp,
        SetActive,
    }

    #[derive(Debug, Default)]
    pub struct State {
        pub services: BTreeMap<Endpoint, Endpoint>,
        pub down: BTreeMap<Endpoint, u32>,
        pub member_vips: BTreeMap<Endpoint, MemberVip>,
        pub observed: BTreeMap<Endpoint, u32>,
        /// Every `set_active` in order.
        pub writes: Vec<(Endpoint, Endpoint)>,
        /// How many more calls of each operation fail.
        pub failures: HashMap<Op, u32>,
    }

    /// Cheap to clone: the test keeps one handle, the writer the other.
    #[derive(Clone, Default)]
    pub struct FakeMaps(pub Arc<Mutex<State>>);

    impl FakeMaps {
        pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.0.lock().unwrap()
        }

        pub fn fail(&self, op: Op, times: u32) {
            self.state().failures.insert(op, times);
        }

        fn check(&self, op: Op) -> Result<(), DatapathError> {
            let mut s = self.state();
            match s.failures.get_mut(&op) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    Err(DatapathError::Io {
                        path: format!("fake {op:?}").into(),
                        source: std::io::Error::from_raw_os_error(libc::EIO),
                    })
                }
                _ => Ok(()),
            }
        }
    }

    impl MapStore for FakeMaps {
        fn set_active(&mut self, vip: Endpoint, member: Endpoint) -> Result<(), DatapathError> {
            self.check(Op::SetActive)?;
            let mut s = self.state();
            s.services.insert(vip, member);
            s.writes.push((vip, member));
            Ok(())
        }
        fn active(&self, vip: &Endpoint) -> Result<Option<Endpoint>, DatapathError> {
            self.check(Op::Active)?;
            Ok(self.state().services.get(vip).copied())
        }
        fn remove_service(&mut self, vip: &Endpoint) -> Result<(), DatapathError> {
            self.state().services.remove(vip);
            Ok(())
        }
        fn services(&self) -> Result<Vec<ServiceEntry>, DatapathError> {
            Ok(Vec::new())
        }
        fn mark_down(&mut self, member: Endpoint, reason: u32) -> Result<(), DatapathError> {
            self.state().down.insert(member, reason);
            Ok(())
        }
        fn mark_up(&mut self, member: &Endpoint) -> Result<(), DatapathError> {
            self.check(Op::MarkUp)?;
            self.state().down.remove(member);
            Ok(())
        }
        fn down_members(&self) -> Result<Vec<(Endpoint, DownMark)>, DatapathError> {
            Ok(self
                .state()
                .down
                .iter()
                .map(|(e, r)| (*e, DownMark { reason: *r }))
                .collect())
        }
        fn set_member_vip(
            &mut self,
            member: Endpoint,
            vip: Endpoint,
            vips: u32,
        ) -> Result<(), DatapathError> {
            self.state()
                .member_vips
                .insert(member, MemberVip { vip, vips });
            Ok(())
        }
        fn remove_member_vip(&mut self, member: &Endpoint) -> Result<(), DatapathError> {
            self.state().member_vips.remove(member);
            Ok(())
        }
        fn member_vips(&self) -> Result<Vec<(Endpoint, MemberVip)>, DatapathError> {
            Ok(self
                .state()
                .member_vips
                .iter()
                .map(|(e, v)| (*e, *v))
                .collect())
        }
        fn stats(&self) -> Result<Stats, DatapathError> {
            Ok(Stats::default())
        }
        fn observe_member(&mut self, member: Endpoint, flags: u32) -> Result<(), DatapathError> {
            self.state().observed.insert(member, flags);
            Ok(())
        }
        fn forget_member(&mut self, member: &Endpoint) -> Result<(), DatapathError> {
            self.state().observed.remove(member);
            Ok(())
        }
    }
}

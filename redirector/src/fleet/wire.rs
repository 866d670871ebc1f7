//! The records fleet mode stores in the coordination engine, as JSON: each
//! host's view of the members (`…/hosts/<host>`) and the fleet's decision
//! (`…/decision`). Members are named, never numbered, so hosts running
//! slightly different configs during a rollout still agree on who is
//! meant; a name this host does not know is an error, never a guess.
//! Unknown JSON fields are ignored, so a newer daemon may add fields.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::decide::{
    Reason,
    fleet::{Decision, Phase},
};

/// How one host sees one member, as published (the evaluating host
/// converts `Up` into `decide::fleet::Seen::Up` with its own clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeenRecord {
    /// No verdict yet, or a member the host does not know.
    Unknown,
    /// Decided down by the host's own checks.
    Down,
    /// Decided up by the host's own checks.
    Up,
}

/// One host's entry (`…/<service>/hosts/<host>`, attached to its lease).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host's view of each member it knows, by member name.
    pub members: BTreeMap<String, SeenRecord>,
    /// The latest decision epoch the host applied to its data path.
    pub applied_epoch: u64,
    /// When the host wrote the record (its wall clock, for people).
    pub at_unix_ms: u64,
    /// A number each daemon draws at start: a record under this host's
    /// name with another number comes from another daemon using the same
    /// `host` name, which would merge two hosts' views into one.
    #[serde(default)]
    pub instance: u64,
}

impl HostRecord {
    /// The view in `members`' order; a member the record does not name is
    /// `Unknown`.
    pub fn seen(&self, members: &[String]) -> Vec<SeenRecord> {
        members
            .iter()
            .map(|m| self.members.get(m).copied().unwrap_or(SeenRecord::Unknown))
            .collect()
    }
}

/// The fleet's decision (`…/<service>/decision`, no lease): what
/// `decide::fleet::Decision` says, with members named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub epoch: u64,
    /// The member every host sends new flows to.
    pub active: Option<String>,
    /// `Some(member)` while the decision is in its barrier phase: nothing
    /// serves until every live host has applied the epoch, then `member`.
    pub barrier_to: Option<String>,
    /// Why the last change was made.
    pub reason: Reason,
    /// The member an operator switched over to, until `release`.
    pub pinned: Option<String>,
    /// Members an operator drained, until `undrain`.
    pub drained: BTreeSet<String>,
    /// The host that wrote this decision.
    pub by: String,
    /// When it was written (the writer's wall clock, for people).
    pub at_unix_ms: u64,
}

impl DecisionRecord {
    /// `d` with its member indices named after `members` (the service's
    /// members in config order, the order `d` was decided over).
    ///
    /// # Panics
    /// If `d` names an index outside `members`: `d` was not decided over
    /// them (a bug in the caller).
    pub fn from_decision(d: &Decision, members: &[String], by: &str, at_unix_ms: u64) -> Self {
        let name = |i: usize| members[i].clone();
        Self {
            epoch: d.epoch,
            active: d.active.map(name),
            barrier_to: match d.phase {
                Phase::Serving => None,
                Phase::Barrier { to } => Some(name(to)),
            },
            reason: d.reason,
            pinned: d.pinned.map(name),
            drained: d.drained.iter().map(|&i| name(i)).collect(),
            by: by.to_string(),
            at_unix_ms,
        }
    }

    /// The decision over `members` (this host's members, in config
    /// order). A name `members` does not have is `UnknownMember`: the
    /// fleet decided about a member this host's config lacks, which the
    /// caller must report, never map to something else.
    pub fn to_decision(&self, members: &[String]) -> Result<Decision, WireError> {
        let index = |name: &String| {
            members
                .iter()
                .position(|m| m == name)
                .ok_or_else(|| WireError::UnknownMember { name: name.clone() })
        };
        Ok(Decision {
            epoch: self.epoch,
            active: self.active.as_ref().map(index).transpose()?,
            phase: match &self.barrier_to {
                None => Phase::Serving,
                Some(to) => Phase::Barrier { to: index(to)? },
            },
            reason: self.reason,
            pinned: self.pinned.as_ref().map(index).transpose()?,
            drained: self.drained.iter().map(index).collect::<Result<_, _>>()?,
        })
    }
}

/// A record that cannot be read, or names what this host does not know.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The value under `key` is not a record of the expected kind.
    #[error(
        "{key} does not hold a valid fleet record ({source}); a daemon of another version, \
         or a hand edit, wrote it: fix or delete the key"
    )]
    Json {
        key: String,
        source: serde_json::Error,
    },
    /// A decision names a member this host's config does not have.
    #[error(
        "the fleet decision names member {name}, which this host's config does not have; \
         give every host the same members"
    )]
    UnknownMember { name: String },
}

/// The JSON of a record (infallible for these types: string keys, no
/// custom serializers).
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("fleet records serialize to JSON")
}

/// The record stored under `key`.
pub fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(value).map_err(|source| WireError::Json {
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<String> {
        vec!["east".into(), "west".into(), "south".into()]
    }

    fn decision() -> Decision {
        Decision {
            epoch: 7,
            active: None,
            phase: Phase::Barrier { to: 1 },
            reason: Reason::Switchover,
            pinned: Some(1),
            drained: BTreeSet::from([2]),
        }
    }

    #[test]
    fn a_decision_round_trips_by_member_name() {
        let d = decision();
        let r = DecisionRecord::from_decision(&d, &members(), "host-a", 1234);
        assert_eq!(r.barrier_to.as_deref(), Some("west"));
        assert_eq!(r.pinned.as_deref(), Some("west"));
        assert_eq!(r.drained, BTreeSet::from(["south".to_string()]));
        assert_eq!(r.by, "host-a");
        let back: DecisionRecord = decode("k", &encode(&r)).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.to_decision(&members()).unwrap(), d);
    }

    #[test]
    fn a_decision_maps_onto_another_member_order_by_name() {
        let r = DecisionRecord::from_decision(&decision(), &members(), "host-a", 0);
        let reordered: Vec<String> = vec!["south".into(), "west".into(), "east".into()];
        let d = r.to_decision(&reordered).unwrap();
        assert_eq!(d.phase, Phase::Barrier { to: 1 });
        assert_eq!(d.pinned, Some(1));
        assert_eq!(d.drained, BTreeSet::from([0]));
    }

    #[test]
    fn a_decision_naming_an_unknown_member_is_an_error() {
        let mut r = DecisionRecord::from_decision(&Decision::initial(), &members(), "a", 0);
        r.active = Some("north".into());
        let err = r.to_decision(&members()).unwrap_err();
        assert!(
            matches!(&err, WireError::UnknownMember { name } if name == "north"),
            "{err:?}"
        );
        // Every field is checked, not only `active`.
        let mut r = DecisionRecord::from_decision(&Decision::initial(), &members(), "a", 0);
        r.drained.insert("north".into());
        assert!(matches!(
            r.to_decision(&members()),
            Err(WireError::UnknownMember { .. })
        ));
    }

    #[test]
    fn the_json_layout_is_stable() {
        let r = DecisionRecord::from_decision(&decision(), &members(), "h", 5);
        let json: serde_json::Value = serde_json::from_slice(&encode(&r)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "epoch": 7, "active": null, "barrier_to": "west", "reason": "switchover",
                "pinned": "west", "drained": ["south"], "by": "h", "at_unix_ms": 5
            })
        );
        let h = HostRecord {
            members: BTreeMap::from([("east".into(), SeenRecord::Up)]),
            applied_epoch: 3,
            at_unix_ms: 9,
            instance: 11,
        };
        let json: serde_json::Value = serde_json::from_slice(&encode(&h)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"members": {"east": "up"}, "applied_epoch": 3, "at_unix_ms": 9, "instance": 11})
        );
    }

    #[test]
    fn a_host_record_reads_in_member_order_with_missing_members_unknown() {
        let h: HostRecord = decode(
            "k",
            br#"{"members":{"west":"down","east":"up","gone":"up"},"applied_epoch":1,"at_unix_ms":0,"newer_field":1}"#,
        )
        .unwrap();
        assert_eq!(
            h.seen(&members()),
            [SeenRecord::Up, SeenRecord::Down, SeenRecord::Unknown]
        );
    }

    #[test]
    fn a_malformed_record_names_its_key() {
        let err = decode::<HostRecord>("/r/s/hosts/a", b"{\"members\": 3}").unwrap_err();
        assert!(
            matches!(&err, WireError::Json { key, .. } if key == "/r/s/hosts/a"),
            "{err:?}"
        );
        assert!(decode::<DecisionRecord>("k", b"not json").is_err());
        assert!(decode::<SeenRecord>("k", b"\"sideways\"").is_err());
    }
}

//! Whether an office is healthy, as `liandong status` and `liandong up` judge it: its leader
//! commits (a read index through it completes: a majority confirms the leadership), and its
//! leadership is steady (not more than [`FLAPPING_LEADER_CHANGES`] leader changes in the last
//! [`FLAPPING_WINDOW_MS`]). A leader that claims to lead is not enough: a wedged office can hold
//! a "leader" that changes every few hundred milliseconds and commits nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use federation_proto::v1::{CommitCheck, LinkStatus, ReplicaProgress};
use liandong_domain::OfficeCode;
use openraft::RaftMetrics;
use tokio::time::Instant;

use crate::machine::unadmitted::{self, Unadmitted};
use crate::raft::types::{NodeId, NodeInfo};
use crate::replica::Replica;

/// The window leader changes are counted over.
pub const FLAPPING_WINDOW_MS: u64 = 60_000;
/// An office whose replicas saw more leader changes than this in the window is flapping.
pub const FLAPPING_LEADER_CHANGES: u32 = 3;
/// Leader changes remembered per office at most (enough to count a window's worth of flapping).
pub const LEADER_CHANGES_KEPT_MAX: usize = 256;
/// How long a commit check (a read index through the leader) may take before it counts as not
/// committing.
pub const COMMIT_CHECK_TIMEOUT_MS: u64 = 1_000;
/// Links one status reply lists per office at most (an office has a link per neighbour office;
/// a province has a few thousand).
pub const LINKS_LISTED_MAX: usize = 4_096;
/// How long a message refused on admission keeps its link in `status` (ms): a day, long enough
/// for the next day's shift to see it, short enough that an upgrade's refusals leave the view.
pub const UNADMITTED_SHOWN_MS: i64 = 24 * 60 * 60 * 1000;

/// The leader changes one replica saw: a new term with a leader, or another leader.
#[derive(Debug, Default)]
pub struct LeaderChanges {
    /// The last (term, leader) seen with a leader known.
    last: Option<(u64, NodeId)>,
    at: VecDeque<Instant>,
}

impl LeaderChanges {
    /// Records what the replica's Raft says now; the first leader seen is not a change.
    pub fn observe(&mut self, term: u64, leader: Option<NodeId>, now: Instant) {
        let Some(leader) = leader else {
            return;
        };
        let changed = self.last.is_some_and(|last| last != (term, leader));
        self.last = Some((term, leader));
        if changed {
            if self.at.len() >= LEADER_CHANGES_KEPT_MAX {
                self.at.pop_front();
            }
            self.at.push_back(now);
        }
    }

    /// Changes within the window before `now`.
    pub fn in_window(&self, now: Instant) -> u32 {
        let window = Duration::from_millis(FLAPPING_WINDOW_MS);
        let count = self
            .at
            .iter()
            .filter(|at| now.saturating_duration_since(**at) <= window)
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }
}

/// The leader changes of every replica this host carries.
#[derive(Default)]
pub struct Health {
    offices: BTreeMap<OfficeCode, Mutex<LeaderChanges>>,
}

impl Health {
    pub fn new(offices: impl IntoIterator<Item = OfficeCode>) -> Health {
        Health {
            offices: offices
                .into_iter()
                .map(|office| (office, Mutex::default()))
                .collect(),
        }
    }

    fn with<T>(&self, office: &OfficeCode, f: impl FnOnce(&mut LeaderChanges) -> T) -> Option<T> {
        let changes = self.offices.get(office)?;
        let mut changes = changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(f(&mut changes))
    }

    pub fn observe(&self, office: &OfficeCode, metrics: &RaftMetrics<NodeId, NodeInfo>) {
        let now = Instant::now();
        self.with(office, |changes| {
            changes.observe(metrics.current_term, metrics.current_leader, now)
        });
    }

    pub fn leader_changes_last_minute(&self, office: &OfficeCode) -> u32 {
        self.with(office, |changes| changes.in_window(Instant::now()))
            .unwrap_or(0)
    }
}

/// The last log index `replica` applied (0 before the first).
pub fn applied_index(replica: &Replica) -> u64 {
    replica
        .raft
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |log_id| log_id.index)
}

/// A read index through `replica` (its leader), within [`COMMIT_CHECK_TIMEOUT_MS`].
pub async fn check_commit(replica: &Replica) -> CommitCheck {
    let start = Instant::now();
    let limit = Duration::from_millis(COMMIT_CHECK_TIMEOUT_MS);
    let outcome = tokio::time::timeout(limit, replica.read_barrier()).await;
    let took_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let error = match outcome {
        Ok(Ok(())) => String::new(),
        Ok(Err(error)) => error.to_string(),
        Err(_elapsed) => {
            format!("no majority confirmed the leadership within {COMMIT_CHECK_TIMEOUT_MS} ms")
        }
    };
    CommitCheck {
        commits: error.is_empty(),
        took_ms,
        error,
    }
}

/// The leader's commit index: the highest log index a majority of every voter config holds
/// (each joint config needs its own majority). None unless `metrics` are a leader's.
pub fn commit_index(metrics: &RaftMetrics<NodeId, NodeInfo>) -> Option<u64> {
    let replication = metrics.replication.as_ref()?;
    let matched = |id: &NodeId| {
        replication
            .get(id)
            .copied()
            .flatten()
            .map_or(0, |log_id| log_id.index)
    };
    metrics
        .membership_config
        .membership()
        .get_joint_config()
        .iter()
        .map(|voters| majority_index(voters.iter().map(matched).collect()))
        .min()
}

/// The highest index at least a majority of `matched` reach.
fn majority_index(mut matched: Vec<u64>) -> u64 {
    if matched.is_empty() {
        return 0;
    }
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched[matched.len() / 2]
}

/// On a leader: every other member's replication progress and lag behind `last_log`.
pub fn replication(metrics: &RaftMetrics<NodeId, NodeInfo>) -> Vec<ReplicaProgress> {
    let last_log = metrics.last_log_index.unwrap_or(0);
    metrics
        .replication
        .iter()
        .flatten()
        .filter(|(id, _)| **id != metrics.id)
        .map(|(id, log_id)| {
            let matched = log_id.map_or(0, |log_id| log_id.index);
            ReplicaProgress {
                id: *id,
                matched,
                lag: last_log.saturating_sub(matched),
            }
        })
        .collect()
}

/// The replica's outgoing links with messages waiting, or with a message refused on admission
/// in the last [`UNADMITTED_SHOWN_MS`]: depth, oldest stamped time and its age on the
/// federation clock, the refused messages; at most [`LINKS_LISTED_MAX`].
pub fn links(replica: &Replica) -> Vec<LinkStatus> {
    let machine = &replica.state_machine;
    let Ok(links) = machine.links_out() else {
        return Vec::new();
    };
    let now = replica.clock.now();
    let refused: BTreeMap<OfficeCode, Unadmitted> = machine
        .scan_prefix(unadmitted::UNADMITTED, LINKS_LISTED_MAX)
        .map(|items| unadmitted::of_links(&items))
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, refused)| now.saturating_sub(refused.last_at) <= UNADMITTED_SHOWN_MS)
        .collect();
    links
        .into_iter()
        .filter(|(to, link)| link.pending() > 0 || refused.contains_key(to))
        .take(LINKS_LISTED_MAX)
        .map(|(to, link)| {
            let oldest_ms = machine
                .outbox_head(&to, 1)
                .ok()
                .and_then(|(_, head)| head.first().map(|envelope| envelope.sent_at))
                .unwrap_or(0);
            let oldest_age_ms = if oldest_ms > 0 {
                u64::try_from(now.saturating_sub(oldest_ms)).unwrap_or(0)
            } else {
                0
            };
            let refused = refused.get(&to).cloned().unwrap_or_default();
            LinkStatus {
                to: to.to_string(),
                pending: link.pending(),
                oldest_ms,
                oldest_age_ms,
                unadmitted: refused.count,
                last_unadmitted_seq: refused.last_seq,
                last_unadmitted_kind: refused.last_kind,
                last_unadmitted_code: refused.last_code,
                last_unadmitted_ms: refused.last_at,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_leader_is_no_change_and_each_new_term_or_leader_is() {
        let mut changes = LeaderChanges::default();
        let t0 = Instant::now();
        changes.observe(1, Some(1), t0);
        changes.observe(1, Some(1), t0);
        changes.observe(2, None, t0);
        assert_eq!(changes.in_window(t0), 0);
        changes.observe(2, Some(2), t0);
        changes.observe(3, Some(2), t0);
        assert_eq!(changes.in_window(t0), 2);
        let later = t0 + Duration::from_millis(FLAPPING_WINDOW_MS + 1);
        assert_eq!(changes.in_window(later), 0, "old changes leave the window");
    }

    #[test]
    fn leader_changes_are_kept_bounded() {
        let mut changes = LeaderChanges::default();
        let t0 = Instant::now();
        for term in 0..(LEADER_CHANGES_KEPT_MAX as u64 + 50) {
            changes.observe(term, Some(term % 3), t0);
        }
        assert_eq!(changes.at.len(), LEADER_CHANGES_KEPT_MAX);
    }

    #[test]
    fn a_majority_index_is_the_median_from_the_top() {
        assert_eq!(majority_index(vec![10, 7, 3]), 7);
        assert_eq!(majority_index(vec![10, 10, 3]), 10);
        assert_eq!(majority_index(vec![5]), 5);
        assert_eq!(majority_index(vec![9, 8, 7, 6, 1]), 7);
        assert_eq!(majority_index(vec![9, 8, 0, 0]), 0, "4 voters need 3");
        assert_eq!(majority_index(vec![]), 0);
    }
}

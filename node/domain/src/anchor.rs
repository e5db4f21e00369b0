//! Anchors: an office's case heads (each case it holds → the hash of its last history entry),
//! folded into one Merkle root and kept by its parent. Pure: the leaves, the root, inclusion
//! proofs and the bounds of one anchor message.
//!
//! A leaf names a case, how many entries its history had and the hash of the last one. The
//! leaves are sorted by case id (the text of the id, byte order: the order the parent stores
//! them in); a leaf hashes as `SHA-256(0x00 ‖ len(id) ‖ id ‖ entries ‖ hash)` and an inner node
//! as `SHA-256(0x01 ‖ left ‖ right)`, the two tags keeping a leaf from passing for a node. A
//! level with an odd node out promotes it unchanged. The empty set's root is
//! [`EMPTY_ROOT`].
//!
//! A history only grows, so a head the parent holds may be replaced only by one that extends
//! it: a part names, for each case anchored before, its *prior* — the entry at the length last
//! anchored, as the sender's stored history has it now — and the parent takes the new head only
//! when that prior is the head it holds ([`extends`]). A history rewritten on every replica of
//! the office (hashes recomputed, even re-signed) is therefore never re-anchored: the parent
//! keeps the old head and records the dispute.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::DomainError;
use crate::{CaseId, Millis, OfficeCode};

/// Leaves (and removals) one anchor message carries at most: with ids and hex hashes, well
/// under 100 KB.
pub const ANCHOR_PART_LEAVES_MAX: usize = 500;
/// The root of an office holding no case.
pub const EMPTY_ROOT: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// One case head: `entries` in the case's history, the last one's hash (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaf {
    pub case_id: CaseId,
    pub entries: u32,
    pub hash: String,
}

/// The end of an anchor: the root over every leaf the parent now holds for the sender, and
/// how many there are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorEnd {
    pub root: String,
    pub count: u64,
}

/// One message of an anchor: the heads that changed since the last anchor (`leaves`), for those
/// anchored before their priors, the cases that left the office's set (handed on: their head is
/// the new holder's to anchor), and, on the anchor's last message, its root. Every message of
/// one anchor carries its `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorPart {
    /// The office whose heads these are: the sender.
    pub office: OfficeCode,
    /// The anchor's number, from 1, growing.
    pub seq: u64,
    /// The sender's stamped time when the part was made.
    pub at: Millis,
    pub leaves: Vec<Leaf>,
    /// For a case in `leaves` that this office anchored before: the entry of its history at the
    /// length last anchored (`entries` that length, `hash` that entry's hash as stored now).
    /// At most one per case, each naming a case of `leaves`.
    pub priors: Vec<Leaf>,
    pub removed: Vec<CaseId>,
    pub end: Option<AnchorEnd>,
}

impl AnchorPart {
    /// The bounds and words as an office makes them: a hostile sender's part is refused.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.seq == 0 {
            return Err(DomainError::FieldInvalid {
                field: "seq",
                reason: "anchors are numbered from 1",
            });
        }
        if self.leaves.len() > ANCHOR_PART_LEAVES_MAX {
            return Err(DomainError::FieldInvalid {
                field: "leaves",
                reason: "an anchor message carries at most 500 leaves",
            });
        }
        if self.removed.len() > ANCHOR_PART_LEAVES_MAX {
            return Err(DomainError::FieldInvalid {
                field: "removed",
                reason: "an anchor message removes at most 500 cases",
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for leaf in &self.leaves {
            if leaf.entries == 0 {
                return Err(DomainError::FieldInvalid {
                    field: "entries",
                    reason: "a head has at least one history entry",
                });
            }
            check_hash("hash", &leaf.hash)?;
            if !seen.insert(leaf.case_id.to_string()) {
                return Err(DomainError::FieldInvalid {
                    field: "leaves",
                    reason: "a case is named twice",
                });
            }
        }
        let mut prior_seen = std::collections::BTreeSet::new();
        for prior in &self.priors {
            let id = prior.case_id.to_string();
            let Some(leaf) = self
                .leaves
                .iter()
                .find(|leaf| leaf.case_id == prior.case_id)
            else {
                return Err(DomainError::FieldInvalid {
                    field: "priors",
                    reason: "a prior names a case whose head the message does not carry",
                });
            };
            if prior.entries == 0 || prior.entries > leaf.entries {
                return Err(DomainError::FieldInvalid {
                    field: "priors",
                    reason: "a prior lies within its head's history (1 to its length)",
                });
            }
            check_hash("hash", &prior.hash)?;
            if !prior_seen.insert(id) {
                return Err(DomainError::FieldInvalid {
                    field: "priors",
                    reason: "a case has two priors",
                });
            }
        }
        for case_id in &self.removed {
            if !seen.insert(case_id.to_string()) {
                return Err(DomainError::FieldInvalid {
                    field: "removed",
                    reason: "a case is named twice",
                });
            }
        }
        if let Some(end) = &self.end {
            check_hash("root", &end.root)?;
        }
        Ok(())
    }
}

/// Whether `new` may replace `kept`, the head the parent holds for a case: the same head, or
/// a history at least as long whose entry at `kept`'s length (`prior`, as the sender's stored
/// history has it) is `kept` itself.
pub fn extends(kept: &Leaf, new: &Leaf, prior: Option<&Leaf>) -> bool {
    if kept == new {
        return true;
    }
    new.case_id == kept.case_id
        && new.entries >= kept.entries
        && prior.is_some_and(|prior| prior == kept)
}

/// A SHA-256 in lowercase hex.
fn check_hash(field: &'static str, hash: &str) -> Result<(), DomainError> {
    if hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(DomainError::FieldInvalid {
            field,
            reason: "a SHA-256 in lowercase hex",
        })
    }
}

/// A leaf's hash.
pub fn leaf_hash(leaf: &Leaf) -> [u8; 32] {
    let id = leaf.case_id.to_string();
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update((id.len() as u32).to_be_bytes());
    hasher.update(id.as_bytes());
    hasher.update(leaf.entries.to_be_bytes());
    hasher.update(leaf.hash.as_bytes());
    hasher.finalize().into()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Leaves in the order the root is taken over: by case id text.
pub fn sorted(mut leaves: Vec<Leaf>) -> Vec<Leaf> {
    leaves.sort_by_cached_key(|leaf| leaf.case_id.to_string());
    leaves
}

/// The next level up of a tree level.
fn level_up(level: &[[u8; 32]]) -> Vec<[u8; 32]> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => node_hash(left, right),
            [single] => *single,
            _ => unreachable!("chunks of two"),
        })
        .collect()
}

/// The root over leaf hashes given in leaf order, hex.
pub fn root_of_hashes(mut level: Vec<[u8; 32]>) -> String {
    if level.is_empty() {
        return EMPTY_ROOT.to_string();
    }
    while level.len() > 1 {
        level = level_up(&level);
    }
    hex::encode(level[0])
}

/// The Merkle root over `leaves` (sorted here by case id), hex.
pub fn merkle_root(leaves: &[Leaf]) -> String {
    let leaves = sorted(leaves.to_vec());
    root_of_hashes(leaves.iter().map(leaf_hash).collect())
}

/// One step of an inclusion proof: the sibling's hash, and whether it sits on the right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofStep {
    pub sibling: String,
    pub right: bool,
}

/// The inclusion proof of the leaf of `case_id` among `leaves` (sorted here); None when no leaf
/// names it.
pub fn proof(leaves: &[Leaf], case_id: &CaseId) -> Option<Vec<ProofStep>> {
    let leaves = sorted(leaves.to_vec());
    let mut index = leaves.iter().position(|leaf| &leaf.case_id == case_id)?;
    let mut level: Vec<[u8; 32]> = leaves.iter().map(leaf_hash).collect();
    let mut steps = Vec::new();
    while level.len() > 1 {
        let sibling = index ^ 1;
        if let Some(hash) = level.get(sibling) {
            steps.push(ProofStep {
                sibling: hex::encode(hash),
                right: sibling > index,
            });
        }
        level = level_up(&level);
        index /= 2;
    }
    Some(steps)
}

/// Whether `leaf` with `steps` folds up to `root`.
pub fn verify_proof(leaf: &Leaf, steps: &[ProofStep], root: &str) -> bool {
    let mut hash = leaf_hash(leaf);
    for step in steps {
        let Ok(bytes) = hex::decode(&step.sibling) else {
            return false;
        };
        let Ok(sibling) = <[u8; 32]>::try_from(bytes.as_slice()) else {
            return false;
        };
        hash = if step.right {
            node_hash(&hash, &sibling)
        } else {
            node_hash(&sibling, &hash)
        };
    }
    hex::encode(hash) == root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(seq: u32, entries: u32) -> Leaf {
        Leaf {
            case_id: format!("5306-2026-{seq:06}").parse().unwrap(),
            entries,
            hash: hex::encode(Sha256::digest(format!("{seq}/{entries}"))),
        }
    }

    #[test]
    fn the_root_is_deterministic_and_order_free() {
        let leaves: Vec<Leaf> = (1..=7).map(|n| leaf(n, n)).collect();
        let mut shuffled = leaves.clone();
        shuffled.reverse();
        shuffled.swap(1, 4);
        assert_eq!(merkle_root(&leaves), merkle_root(&shuffled));
        assert_eq!(merkle_root(&[]), EMPTY_ROOT);
        assert_eq!(hex::encode(Sha256::digest(b"")), EMPTY_ROOT);
        // One leaf: its own hash.
        assert_eq!(
            merkle_root(&leaves[..1]),
            hex::encode(leaf_hash(&leaves[0]))
        );
    }

    #[test]
    fn any_change_to_a_head_changes_the_root() {
        let leaves: Vec<Leaf> = (1..=5).map(|n| leaf(n, 3)).collect();
        let root = merkle_root(&leaves);
        let mut changed = leaves.clone();
        changed[2].hash = leaf(99, 3).hash;
        assert_ne!(merkle_root(&changed), root);
        let mut longer = leaves.clone();
        longer[2].entries = 4;
        assert_ne!(merkle_root(&longer), root);
        assert_ne!(merkle_root(&leaves[..4]), root);
        let mut renamed = leaves;
        renamed[4].case_id = "5306-2026-000042".parse().unwrap();
        assert_ne!(merkle_root(&renamed), root);
    }

    #[test]
    fn every_leaf_has_a_proof_and_a_forged_leaf_has_none() {
        for count in 1..=9u32 {
            let leaves: Vec<Leaf> = (1..=count).map(|n| leaf(n, 2)).collect();
            let root = merkle_root(&leaves);
            for leaf in &leaves {
                let steps = proof(&leaves, &leaf.case_id).unwrap();
                assert!(verify_proof(leaf, &steps, &root), "{count} leaves");
                let mut forged = leaf.clone();
                forged.entries += 1;
                assert!(!verify_proof(&forged, &steps, &root));
            }
        }
        let leaves: Vec<Leaf> = (1..=3).map(|n| leaf(n, 2)).collect();
        assert_eq!(proof(&leaves, &leaf(4, 2).case_id), None);
    }

    #[test]
    fn a_head_is_replaced_only_by_one_that_extends_it() {
        let kept = leaf(1, 3);
        let grown = leaf(1, 5);
        // The same head, or a longer history whose entry 3 is the kept head.
        assert!(extends(&kept, &kept, None));
        assert!(extends(&kept, &grown, Some(&kept)));
        // A rewritten history: entry 3 now hashes otherwise, at the same or a greater length.
        let rewritten = Leaf {
            hash: leaf(2, 3).hash,
            ..kept.clone()
        };
        assert!(!extends(&kept, &rewritten, Some(&rewritten)));
        assert!(!extends(&kept, &grown, Some(&rewritten)));
        // No prior, a shorter history, another case's prior.
        assert!(!extends(&kept, &grown, None));
        assert!(!extends(&kept, &leaf(1, 2), Some(&kept)));
        let other = leaf(2, 3);
        assert!(!extends(&kept, &grown, Some(&other)));
    }

    #[test]
    fn parts_are_bounded_and_well_formed() {
        let part = AnchorPart {
            office: "530602".parse().unwrap(),
            seq: 1,
            at: 0,
            leaves: (1..=3).map(|n| leaf(n, 2)).collect(),
            priors: vec![leaf(1, 1)],
            removed: vec![leaf(9, 1).case_id],
            end: Some(AnchorEnd {
                root: EMPTY_ROOT.into(),
                count: 0,
            }),
        };
        assert_eq!(part.validate(), Ok(()));
        let mut bad = part.clone();
        bad.seq = 0;
        assert!(bad.validate().is_err());
        let mut bad = part.clone();
        bad.leaves = (1..=501).map(|n| leaf(n, 1)).collect();
        assert!(bad.validate().is_err());
        let mut bad = part.clone();
        bad.leaves[0].hash = "ZZ".into();
        assert!(bad.validate().is_err());
        let mut bad = part.clone();
        bad.leaves[0].entries = 0;
        assert!(bad.validate().is_err());
        let mut bad = part.clone();
        bad.removed.push(bad.leaves[0].case_id.clone());
        assert!(bad.validate().is_err());
        let mut bad = part.clone();
        bad.priors.push(leaf(1, 1));
        assert!(bad.validate().is_err(), "two priors for one case");
        let mut bad = part.clone();
        bad.priors = vec![leaf(7, 1)];
        assert!(bad.validate().is_err(), "a prior without its head");
        let mut bad = part.clone();
        bad.priors = vec![leaf(1, 3)];
        assert!(bad.validate().is_err(), "a prior beyond its head");
        let mut bad = part.clone();
        bad.priors = vec![leaf(1, 0)];
        assert!(bad.validate().is_err());
        let mut bad = part;
        bad.end = Some(AnchorEnd {
            root: "x".into(),
            count: 0,
        });
        assert!(bad.validate().is_err());
    }
}

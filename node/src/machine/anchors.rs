//! Anchors: every office keeps its case heads at its parent, so that a history rewritten on all
//! of an office's replicas (even re-signed with the office's own key) disagrees with what the
//! parent holds.
//!
//! - The sender's side is a walk of the tick, like the notices' ([`tick`]): when the office sent
//!   anything to its parent since the last pass (every case change sends its summary there),
//!   and at most every [`ANCHOR_EVERY_MS`] of federation time, a pass walks the cases held here
//!   a bounded slice per tick, compares each head (entries, last hash) with what it last sent
//!   (`anchored/<case id>`) and sends the heads that changed and the cases that left (a
//!   forwarding stub is not a head: the case's new holder anchors it) in one message per
//!   slice. The pass's last message carries the Merkle root over every head sent so far and
//!   their count ([`liandong_domain::anchor`]).
//!   A head that changed since it was last sent goes with its *prior*: the entry of its
//!   stored history at the length last sent.
//! - The parent keeps each child's leaves (`anchor-leaf/<child>/<case id>`, with the anchor
//!   number that last set them). A history only grows: a new head replaces the one kept only
//!   when its prior is that head ([`anchor::extends`]); otherwise the parent keeps the old head
//!   and records the refused one beside it as a dispute, which `liandong verify` reports. On
//!   an anchor's last message it keeps the anchor itself
//!   (`anchor/<child>`: the child's root and count, and the root and count of the leaves the
//!   parent holds, which agree unless a message was lost or forged). A message from another
//!   office than the one it names, or numbered at or below the last whole anchor, is refused
//!   and changes nothing.
//! - `liandong verify` reads these through the dump sections `anchors` and `anchor-leaves`.

use std::collections::BTreeMap;

use liandong_domain::anchor::{self, AnchorEnd, AnchorPart, Leaf};
use liandong_domain::message::Body;
use liandong_domain::{Case, CaseId, HistoryEntry, Millis, OfficeCode, Status, MINUTE_MS};
use serde::{Deserialize, Serialize};

use super::apply::{refused, ApplyError, Applying, Refused};
use super::outbox::{self, Outgoing};
use super::records::LinkOut;
use super::{get_or_default, keys, Read};
use crate::raft::types::RejectKind;
use crate::store::codec::{decode, encode};
use crate::store::keys::prefix_end;

/// The version of every anchor record below.
pub const ANCHOR_VERSION: u16 = 1;
/// The least federation time between two passes.
pub const ANCHOR_EVERY_MS: Millis = 10 * MINUTE_MS;
/// Cases one tick examines at most (below [`anchor::ANCHOR_PART_LEAVES_MAX`]: one message per
/// tick at most).
pub const TICK_ANCHOR_CASES_MAX: usize = 256;

/// The sender's walk. Between passes `cursor` is None.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorScan {
    pub v: u16,
    /// The last case key the pass in progress examined.
    pub cursor: Option<Vec<u8>>,
    /// Whether a pass is in progress.
    pub in_pass: bool,
    /// The number of the last anchor completed (its parts carried it).
    pub seq: u64,
    /// Whether the pass in progress sent a part (its last part then carries the root).
    pub sent_in_pass: bool,
    /// When the last pass ended.
    pub finished_at: Millis,
    /// The parent link's last sequence number when the pass in progress (or the last) began:
    /// a pass is due when the office sent its parent anything since.
    pub seen_link: u64,
}

/// A case head as an anchor carries it: at the sender, what it last sent; at the parent, what
/// the child's anchors say (`seq`: the anchor that set it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchoredLeaf {
    pub v: u16,
    /// The office whose head this is.
    pub office: OfficeCode,
    pub seq: u64,
    pub leaf: Leaf,
    /// At the parent: the last head the child sent for this case that does not extend `leaf`
    /// (its history was rewritten below the length anchored, or lost). None at the sender.
    pub disputed: Option<Leaf>,
}

/// A child's last whole anchor, as its parent keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorRecord {
    pub v: u16,
    pub office: OfficeCode,
    pub seq: u64,
    /// The child's root and count.
    pub root: String,
    pub count: u64,
    /// The child's time when it made the anchor's last part.
    pub at: Millis,
    /// When this office applied it.
    pub applied_at: Millis,
    /// The root and count of the leaves this office holds for the child.
    pub held_root: String,
    pub held_count: u64,
}

impl AnchorRecord {
    /// The child's root is the root of what this office holds.
    pub fn agrees(&self) -> bool {
        self.root == self.held_root && self.count == self.held_count
    }
}

/// When the tick next has anchor work: at once while a pass is in progress, else when the
/// office sent its parent something since the last pass began (no sooner than
/// [`ANCHOR_EVERY_MS`] after the last pass). None for the federation's root.
pub(crate) fn next_at(
    reader: &impl Read,
    parent: Option<&OfficeCode>,
) -> Result<Option<Millis>, ApplyError> {
    let Some(parent) = parent else {
        return Ok(None);
    };
    let scan: AnchorScan = get_or_default(reader, keys::ANCHOR_SCAN)?;
    if scan.in_pass {
        return Ok(Some(Millis::MIN));
    }
    let link: LinkOut = get_or_default(reader, &keys::link(parent))?;
    if link.last_seq == scan.seen_link {
        return Ok(None);
    }
    Ok(Some(scan.finished_at.saturating_add(ANCHOR_EVERY_MS)))
}

/// The head of a stored case header, if the case is held here (not a forwarding stub) and has
/// a history.
fn head_of(case: &Case) -> Option<Leaf> {
    if matches!(case.status, Status::Forwarded { .. }) {
        return None;
    }
    let head = case.chain_head();
    (head.entries > 0).then(|| Leaf {
        case_id: case.id.clone(),
        entries: head.entries,
        hash: head.hash,
    })
}

/// The tick's anchor work: a slice of the pass, and its message. Returns how many messages it
/// made (0 or 1).
pub(super) fn tick(apply: &mut Applying<'_, '_>) -> Result<u32, ApplyError> {
    let Some(parent) = apply.context.parent.clone() else {
        return Ok(0);
    };
    let now = apply.now;
    let mut scan: AnchorScan = get_or_default(apply.txn, keys::ANCHOR_SCAN)?;
    let link: LinkOut = get_or_default(apply.txn, &keys::link(&parent))?;
    if !scan.in_pass {
        if link.last_seq == scan.seen_link || now < scan.finished_at.saturating_add(ANCHOR_EVERY_MS)
        {
            return Ok(0);
        }
        scan = AnchorScan {
            v: ANCHOR_VERSION,
            cursor: None,
            in_pass: true,
            sent_in_pass: false,
            seen_link: link.last_seq,
            ..scan
        };
    }
    if outbox::full(apply.state).is_some() {
        // Tried again at the next pass: the heads sent so far are the parent's already.
        end_pass(apply, scan, now);
        return Ok(0);
    }
    let start = match &scan.cursor {
        Some(last) => [last.as_slice(), b"\0"].concat(),
        None => keys::CASE.to_vec(),
    };
    let slice = apply
        .txn
        .scan(&start, &prefix_end(keys::CASE), TICK_ANCHOR_CASES_MAX)?;
    let finished = slice.len() < TICK_ANCHOR_CASES_MAX;
    let mut leaves = Vec::new();
    let mut priors = Vec::new();
    let mut removed = Vec::new();
    for (key, value) in &slice {
        let case = Case::from_bytes(value).map_err(|source| ApplyError::Case {
            key: String::from_utf8_lossy(key).into_owned(),
            source,
        })?;
        let sent: Option<AnchoredLeaf> = match apply.txn.get(&keys::anchored(&case.id))? {
            Some(bytes) => Some(decode(&bytes)?),
            None => None,
        };
        match (head_of(&case), sent) {
            (Some(head), Some(sent)) if sent.leaf == head => {}
            (Some(head), Some(sent)) => {
                if let Some(prior) = prior_of(apply.txn, &case, sent.leaf.entries)? {
                    priors.push(prior);
                }
                leaves.push(head);
            }
            (Some(head), None) => leaves.push(head),
            (None, Some(_)) => removed.push(case.id.clone()),
            (None, None) => {}
        }
        scan.cursor = Some(key.clone());
    }
    let seq = scan.seq + 1;
    let changed = !leaves.is_empty() || !removed.is_empty();
    let end = if finished && (changed || scan.sent_in_pass) {
        let (root, count) = root_after(apply.txn, &leaves, &removed)?;
        Some(AnchorEnd { root, count })
    } else {
        None
    };
    let mut made = 0;
    if changed || end.is_some() {
        let part = AnchorPart {
            office: apply.context.office.clone(),
            seq,
            at: now,
            leaves: leaves.clone(),
            priors,
            removed: removed.clone(),
            end,
        };
        let outgoing = Outgoing::prepare(apply, vec![(parent, Body::Anchor { part })])?;
        if let Err(refusal) = outgoing.check() {
            tracing::warn!(code = %refusal.code, "anchor not sent");
            end_pass(apply, scan, now);
            return Ok(0);
        }
        outgoing.put(apply);
        for leaf in leaves {
            let record = AnchoredLeaf {
                v: ANCHOR_VERSION,
                office: apply.context.office.clone(),
                seq,
                leaf,
                disputed: None,
            };
            apply
                .txn
                .put(keys::anchored(&record.leaf.case_id), encode(&record));
        }
        for case_id in &removed {
            apply.txn.delete(keys::anchored(case_id));
        }
        scan.sent_in_pass = true;
        made = 1;
    }
    if finished {
        if scan.sent_in_pass {
            scan.seq = seq;
        }
        end_pass(apply, scan, now);
    } else {
        apply.txn.put(keys::ANCHOR_SCAN.to_vec(), encode(&scan));
    }
    Ok(made)
}

/// The entry at `entries` of `case`'s history as stored here (its header's start when the
/// history begins there), as a leaf: a changed head's prior. None when this copy holds no such
/// entry (its history begins later): the parent then keeps the head it has.
fn prior_of(reader: &impl Read, case: &Case, entries: u32) -> Result<Option<Leaf>, ApplyError> {
    let leaf = |hash: String| Leaf {
        case_id: case.id.clone(),
        entries,
        hash,
    };
    if entries == 0 || entries > case.history_len() {
        return Ok(None);
    }
    if entries == case.history_start.entries {
        return Ok(Some(leaf(case.history_start.hash.clone())));
    }
    let key = keys::history(&case.id.to_string(), entries);
    Ok(match reader.get(&key)? {
        Some(bytes) => {
            let entry: HistoryEntry = decode(&bytes)?;
            Some(leaf(entry.hash))
        }
        None => None,
    })
}

fn end_pass(apply: &mut Applying<'_, '_>, mut scan: AnchorScan, now: Millis) {
    scan.v = ANCHOR_VERSION;
    scan.in_pass = false;
    scan.cursor = None;
    scan.sent_in_pass = false;
    scan.finished_at = now;
    apply.txn.put(keys::ANCHOR_SCAN.to_vec(), encode(&scan));
}

/// The root and count over the heads this office sent, with `leaves` and `removed` applied.
fn root_after(
    reader: &impl Read,
    leaves: &[Leaf],
    removed: &[CaseId],
) -> Result<(String, u64), ApplyError> {
    let mut set: BTreeMap<String, [u8; 32]> = BTreeMap::new();
    for (_, value) in reader.scan(keys::ANCHORED, &prefix_end(keys::ANCHORED), usize::MAX)? {
        let sent: AnchoredLeaf = decode(&value)?;
        set.insert(sent.leaf.case_id.to_string(), anchor::leaf_hash(&sent.leaf));
    }
    for leaf in leaves {
        set.insert(leaf.case_id.to_string(), anchor::leaf_hash(leaf));
    }
    for case_id in removed {
        set.remove(&case_id.to_string());
    }
    let count = set.len() as u64;
    Ok((anchor::root_of_hashes(set.into_values().collect()), count))
}

/// A part of a child's anchor, received: its leaves kept, and on its last part the anchor.
pub(super) fn receive(
    apply: &mut Applying<'_, '_>,
    from: &OfficeCode,
    part: &AnchorPart,
) -> Result<Result<(), Refused>, ApplyError> {
    if part.office != *from {
        return Ok(Err(refused(
            RejectKind::Forbidden,
            "anchor_not_sender",
            format!(
                "{from} may anchor only its own case heads, not {}'s",
                part.office
            ),
        )));
    }
    let record_key = keys::anchor(from);
    let last: Option<AnchorRecord> = match apply.txn.get(&record_key)? {
        Some(bytes) => Some(decode(&bytes)?),
        None => None,
    };
    if let Some(last) = &last {
        if part.seq <= last.seq {
            return Ok(Err(refused(
                RejectKind::Forbidden,
                "anchor_replayed",
                format!(
                    "anchor {} of {from} is not after the last kept ({})",
                    part.seq, last.seq
                ),
            )));
        }
    }
    for leaf in &part.leaves {
        let key = keys::anchor_leaf(from, &leaf.case_id);
        let held: Option<AnchoredLeaf> = match apply.txn.get(&key)? {
            Some(bytes) => Some(decode(&bytes)?),
            None => None,
        };
        let prior = part
            .priors
            .iter()
            .find(|prior| prior.case_id == leaf.case_id);
        let kept = match held {
            Some(held) if !anchor::extends(&held.leaf, leaf, prior) => {
                tracing::warn!(
                    child = %from,
                    case = %leaf.case_id,
                    anchored = held.leaf.entries,
                    sent = leaf.entries,
                    "a child sent a case head that does not extend the one anchored: kept the anchored head"
                );
                AnchoredLeaf {
                    disputed: Some(leaf.clone()),
                    ..held
                }
            }
            _ => AnchoredLeaf {
                v: ANCHOR_VERSION,
                office: from.clone(),
                seq: part.seq,
                leaf: leaf.clone(),
                disputed: None,
            },
        };
        apply.txn.put(key, encode(&kept));
    }
    for case_id in &part.removed {
        apply.txn.delete(keys::anchor_leaf(from, case_id));
    }
    if let Some(end) = &part.end {
        let prefix = keys::anchor_leaves(from);
        let mut hashes = Vec::new();
        for (_, value) in apply.txn.scan(&prefix, &prefix_end(&prefix), usize::MAX)? {
            let kept: AnchoredLeaf = decode(&value)?;
            hashes.push(anchor::leaf_hash(&kept.leaf));
        }
        let held_count = hashes.len() as u64;
        let record = AnchorRecord {
            v: ANCHOR_VERSION,
            office: from.clone(),
            seq: part.seq,
            root: end.root.clone(),
            count: end.count,
            at: part.at,
            applied_at: apply.now,
            held_root: anchor::root_of_hashes(hashes),
            held_count,
        };
        if !record.agrees() {
            tracing::warn!(child = %from, seq = part.seq, "a child's anchor root differs from the leaves kept for it");
        }
        apply.txn.put(record_key, encode(&record));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use liandong_domain::message::Envelope;

    use super::*;
    use crate::machine::records::LinkIn;
    use crate::machine::tests::{case_of, registration, Office, START_MS};
    use crate::raft::types::{Operation, Response};
    use crate::store::Txn;

    fn reader(office: &Office) -> Txn<'_> {
        Txn::new(&office.db, office.context.office.as_str())
    }

    fn file(office: &mut Office) -> Case {
        case_of(office.apply(Operation::File {
            registration: registration(),
            request_id: None,
            caller: String::new(),
        }))
    }

    /// Every anchor part waiting in `office`'s outbox.
    fn parts(office: &Office) -> Vec<AnchorPart> {
        reader(office)
            .scan(keys::OUTBOX, &prefix_end(keys::OUTBOX), usize::MAX)
            .unwrap()
            .into_iter()
            .filter_map(
                |(_, value)| match decode::<Envelope>(&value).unwrap().body {
                    Body::Anchor { part } => Some(part),
                    _ => None,
                },
            )
            .collect()
    }

    /// Delivers `body` from `from` as the next message; the refusal code, if any.
    fn deliver(office: &mut Office, from: &str, body: Body) -> Option<String> {
        let from: OfficeCode = from.parse().unwrap();
        let inbox: LinkIn = get_or_default(&reader(office), &keys::inbox(&from)).unwrap();
        let envelope = Envelope {
            from: from.clone(),
            to: office.context.office.clone(),
            seq: inbox.applied_through + 1,
            sent_at: START_MS,
            body,
        };
        match office.apply(Operation::Receive {
            from,
            envelopes: vec![envelope],
        }) {
            Response::Delivered { mut refused, .. } => refused.pop().map(|r| r.code),
            other => panic!("Receive answered {other:?}"),
        }
    }

    /// The last whole anchor `city` keeps for `child`.
    fn anchor_record(city: &Office, child: &str) -> AnchorRecord {
        let key = keys::anchor(&child.parse().unwrap());
        decode(&reader(city).get(&key).unwrap().unwrap()).unwrap()
    }

    /// The parent's anchor keys and leaves.
    fn kept(office: &Office) -> Vec<(Vec<u8>, Vec<u8>)> {
        reader(office)
            .scan(b"anchor", b"anchor\xff", usize::MAX)
            .unwrap()
    }

    #[test]
    fn an_office_anchors_its_changed_heads_and_its_parent_keeps_them() {
        let mut county = Office::new("530602", Some("5306"));
        let first = file(&mut county);
        let second = file(&mut county);
        assert_eq!(
            next_at(&reader(&county), Some(&"5306".parse().unwrap())).unwrap(),
            Some(ANCHOR_EVERY_MS)
        );
        county.apply(Operation::Tick);
        let sent = parts(&county);
        assert_eq!(sent.len(), 1, "{sent:?}");
        let part = &sent[0];
        assert_eq!(part.seq, 1);
        let heads: Vec<Leaf> = [&first, &second]
            .iter()
            .map(|case| head_of(&county.case_whole(&case.id)).unwrap())
            .collect();
        assert_eq!(part.leaves, heads);
        let end = part.end.clone().unwrap();
        assert_eq!(end.root, anchor::merkle_root(&heads));
        assert_eq!(end.count, 2);
        // Nothing changed since: the next tick sends nothing more.
        county.advance_to(START_MS + 2 * ANCHOR_EVERY_MS);
        county.apply(Operation::Tick);
        county.advance_to(START_MS + 4 * ANCHOR_EVERY_MS);
        county.apply(Operation::Tick);
        assert_eq!(parts(&county).len(), 1);

        let mut city = Office::new("5306", None);
        let anchor = Body::Anchor { part: part.clone() };
        assert_eq!(deliver(&mut city, "530602", anchor.clone()), None);
        let record = anchor_record(&city, "530602");
        assert!(record.agrees(), "{record:?}");
        assert_eq!((record.seq, record.count), (1, 2));
        let before = kept(&city);

        // Replayed, from another office than the one named, or from above: refused, nothing kept.
        assert_eq!(
            deliver(&mut city, "530602", anchor.clone()).as_deref(),
            Some("anchor_replayed")
        );
        let mut forged = part.clone();
        forged.seq = 2;
        forged.office = "530621".parse().unwrap();
        assert_eq!(
            deliver(&mut city, "530602", Body::Anchor { part: forged }).as_deref(),
            Some("anchor_not_sender")
        );
        let mut township = Office::new("530602001", Some("530602"));
        let mut down = part.clone();
        down.office = "5306".parse().unwrap();
        assert_eq!(
            deliver(&mut township, "5306", Body::Anchor { part: down }).as_deref(),
            Some("anchor_not_upward")
        );
        assert_eq!(kept(&city), before);

        // A case moved away leaves the set; a changed head is sent again.
        county.apply(Operation::Act {
            case_id: first.id.clone(),
            command: liandong_domain::CaseCommand::Transfer {
                to: "530621".parse().unwrap(),
                officer: "li".into(),
            },
            request_id: None,
            caller: String::new(),
        });
        county.apply(Operation::Act {
            case_id: second.id.clone(),
            command: liandong_domain::CaseCommand::Accept {
                officer: "li".into(),
            },
            request_id: None,
            caller: String::new(),
        });
        county.advance_to(START_MS + 6 * ANCHOR_EVERY_MS);
        county.apply(Operation::Tick);
        let sent = parts(&county);
        let part = sent.last().unwrap();
        assert_eq!(part.seq, 2);
        // The transfer is in transit until acknowledged: still held here, its head changed.
        let heads: Vec<Leaf> = [&first, &second]
            .iter()
            .map(|case| head_of(&county.case_whole(&case.id)).unwrap())
            .collect();
        assert_eq!(part.leaves, heads);
        assert_eq!(
            deliver(&mut city, "530602", Body::Anchor { part: part.clone() }),
            None
        );
        let record = anchor_record(&city, "530602");
        assert!(record.agrees(), "{record:?}");
        assert_eq!(record.seq, 2);

        // The receiver acknowledged the handoff: the stub left behind is not a head.
        county.apply(Operation::Acked {
            to: "530621".parse().unwrap(),
            through: 1,
            refused: vec![],
        });
        county.advance_to(START_MS + 8 * ANCHOR_EVERY_MS);
        county.apply(Operation::Tick);
        let sent = parts(&county);
        let part = sent.last().unwrap();
        assert_eq!(part.seq, 3, "{sent:?}");
        assert_eq!(part.removed, vec![first.id.clone()]);
        assert!(part.leaves.is_empty(), "{part:?}");
        assert_eq!(part.end.as_ref().unwrap().count, 1);
        assert_eq!(
            deliver(&mut city, "530602", Body::Anchor { part: part.clone() }),
            None
        );
        let record = anchor_record(&city, "530602");
        assert!(record.agrees(), "{record:?}");
        assert_eq!((record.seq, record.held_count), (3, 1));
    }

    /// Rewrites history entry `seq` of `case_id` on `office`'s stored state (the officer of its
    /// event), recomputing the later hashes and the header's head: what an insider with disk
    /// access does.
    fn rewrite(office: &Office, case_id: &CaseId, seq: u32) {
        use crate::store::keys::{office_prefix, CF_SM};
        let raw = office.db.raw();
        let cf = raw.cf_handle(CF_SM).unwrap();
        let code = office.context.office.as_str();
        let key = |relative: Vec<u8>| [office_prefix(code), relative].concat();
        let id = case_id.to_string();
        let header_key = key(keys::case(&id));
        let mut header = Case::from_bytes(&raw.get_cf(cf, &header_key).unwrap().unwrap()).unwrap();
        let mut entries: Vec<HistoryEntry> = (1..=header.history_start.entries)
            .map(|n| decode(&raw.get_cf(cf, key(keys::history(&id, n))).unwrap().unwrap()).unwrap())
            .collect();
        let index = (seq - 1) as usize;
        entries[index].detail["officer"] = "Nobody At All".into();
        for i in index..entries.len() {
            if i > 0 {
                entries[i].prev_hash = entries[i - 1].hash.clone();
            }
            entries[i].hash = entries[i].compute_hash();
        }
        for entry in &entries {
            raw.put_cf(cf, key(keys::history(&id, entry.seq)), encode(entry))
                .unwrap();
        }
        header.history_start = liandong_domain::ChainHead::after(entries.last().unwrap());
        raw.put_cf(cf, &header_key, encode(&header)).unwrap();
    }

    fn kept_leaf(city: &Office, child: &str, case_id: &CaseId) -> AnchoredLeaf {
        let key = keys::anchor_leaf(&child.parse().unwrap(), case_id);
        decode(&reader(city).get(&key).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn a_rewritten_history_is_not_re_anchored_and_a_grown_one_is() {
        let mut county = Office::new("530602", Some("5306"));
        let mut city = Office::new("5306", None);
        let case = file(&mut county);
        county.apply(Operation::Tick);
        let first = parts(&county).pop().unwrap();
        assert!(
            first.priors.is_empty(),
            "nothing anchored before: {first:?}"
        );
        assert_eq!(
            deliver(
                &mut city,
                "530602",
                Body::Anchor {
                    part: first.clone()
                }
            ),
            None
        );
        let anchored = kept_leaf(&city, "530602", &case.id);
        assert_eq!(anchored.disputed, None);

        // An honest change: the history grows, the prior is the anchored head, the parent
        // takes the new head.
        county.apply(Operation::Act {
            case_id: case.id.clone(),
            command: liandong_domain::CaseCommand::Accept {
                officer: "li".into(),
            },
            request_id: None,
            caller: String::new(),
        });
        county.advance_to(START_MS + 2 * ANCHOR_EVERY_MS);
        county.apply(Operation::Tick);
        let grown = parts(&county).pop().unwrap();
        assert_eq!(grown.seq, 2);
        assert_eq!(grown.priors, vec![anchored.leaf.clone()]);
        assert_eq!(
            deliver(
                &mut city,
                "530602",
                Body::Anchor {
                    part: grown.clone()
                }
            ),
            None
        );
        let kept = kept_leaf(&city, "530602", &case.id);
        assert_eq!(
            (kept.leaf.clone(), kept.disputed.clone()),
            (grown.leaves[0].clone(), None)
        );
        let record = anchor_record(&city, "530602");
        assert!(record.agrees(), "{record:?}");

        // Entry 1 rewritten on the office's disk, later hashes recomputed: the office's next
        // anchor sends the rewritten head with its (rewritten) prior, and the parent keeps the
        // head it holds, the sent one recorded as disputed.
        rewrite(&county, &case.id, 1);
        county.apply(Operation::Act {
            case_id: case.id.clone(),
            command: liandong_domain::CaseCommand::Reply {
                opinion: liandong_domain::Opinion::Support,
                text: "Repaired.".into(),
                officer: "li".into(),
            },
            request_id: None,
            caller: String::new(),
        });
        county.advance_to(START_MS + 4 * ANCHOR_EVERY_MS);
        county.apply(Operation::Tick);
        let rewritten = parts(&county).pop().unwrap();
        assert_eq!(rewritten.seq, 3);
        assert_eq!(rewritten.priors.len(), 1);
        assert_ne!(
            rewritten.priors[0], kept.leaf,
            "the prior is the rewritten entry"
        );
        assert_eq!(
            deliver(
                &mut city,
                "530602",
                Body::Anchor {
                    part: rewritten.clone()
                }
            ),
            None
        );
        let after = kept_leaf(&city, "530602", &case.id);
        assert_eq!(after.leaf, kept.leaf, "the anchored head stays");
        assert_eq!(after.seq, kept.seq);
        assert_eq!(after.disputed.as_ref(), Some(&rewritten.leaves[0]));
        let record = anchor_record(&city, "530602");
        assert!(
            !record.agrees(),
            "the child's root covers the rewritten head: {record:?}"
        );
    }
}

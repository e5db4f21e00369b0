//! Random walks through the lifecycle, seeded and repeatable: whatever officers, petitioners, the
//! federation and the clock do, the engine keeps its invariants.

mod common;

use common::*;
use liandong_domain::*;

/// A small deterministic generator (64-bit LCG), so every failure replays from its seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let index = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        &items[index]
    }
}

const OFFICES: [&str; 5] = [CITY, COUNTY, OTHER_COUNTY, TOWNSHIP, "53"];

fn random_command(rng: &mut Lcg) -> CaseCommand {
    let days = u32::try_from(rng.below(100)).unwrap_or(0);
    let to = office(rng.pick::<&str>(&OFFICES));
    let text = (*rng.pick(&["", "Reason given.", "理由"])).to_string();
    match rng.below(14) {
        0 => accept(),
        1 => CaseCommand::Decline {
            route: *rng.pick(DeclineRoute::ALL),
            officer: "Li".into(),
        },
        2 => CaseCommand::Transfer {
            to,
            officer: "Li".into(),
        },
        3 => CaseCommand::Assign {
            to,
            due_days: days,
            officer: "Li".into(),
        },
        4 => CaseCommand::Return {
            reason: text,
            officer: "Zhao".into(),
        },
        5 => CaseCommand::Extend {
            days: days / 3,
            reason: text,
            officer: "Wang".into(),
        },
        6 => reply(*rng.pick(Opinion::ALL)),
        7 => evaluate(*rng.pick(Satisfaction::ALL)),
        8 => CaseCommand::RequestReview,
        9 => CaseCommand::SetGrade {
            grade: *rng.pick(Grade::ALL),
            leader: "Chen".into(),
            department: "Land".into(),
            plan: text,
            deadline: t(MONDAY) + days_ms(days),
        },
        10 => CaseCommand::HandoffAcked,
        11 => CaseCommand::HandoffRefused { reason: text },
        12 => CaseCommand::Supervise {
            from: to,
            due_days: days,
            text,
        },
        _ => CaseCommand::AnswerSupervision {
            text,
            officer: "Li".into(),
        },
    }
}

fn days_ms(n: u32) -> Millis {
    i64::from(n) * DAY_MS
}

/// Checks one copy after a step.
fn check(case: &Case, desk: &Desk, now: Millis, seed: u64) {
    assert_eq!(case.verify_chain(), Ok(()), "seed {seed}");
    assert_eq!(
        Case::from_bytes(&case.to_bytes()).as_ref(),
        Ok(case),
        "seed {seed}"
    );
    let pending = tick(case, &desk.ctx(now));
    let mut after = case.clone();
    for event in &pending {
        after.apply(event);
    }
    assert!(
        tick(&after, &desk.ctx(now)).is_empty(),
        "seed {seed}: a threshold fired twice"
    );
    if let Some(alarm) = after.next_alarm() {
        assert!(
            alarm > now,
            "seed {seed}: alarm {alarm} not after the tick at {now}"
        );
        assert!(
            !tick(&after, &desk.ctx(alarm)).is_empty(),
            "seed {seed}: next_alarm fires nothing"
        );
    }
}

/// One walk: officers at every office issue random commands, handoffs are received and
/// acknowledged (or refused), the clock jumps; returns the final copies' bytes.
fn walk(seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Lcg(seed);
    let desks: Vec<Desk> = OFFICES.iter().map(|code| Desk::new(code)).collect();
    let desk_of = |code: &OfficeCode| desks.iter().position(|desk| desk.office == *code);
    // One copy per office that has seen the case.
    let mut copies: Vec<Option<Case>> = vec![None; desks.len()];
    let mut now = t(MONDAY);
    copies[1] = Some(desks[1].register(now));
    for _ in 0..80 {
        now += i64::try_from(rng.below(days(6) as u64)).unwrap_or(0);
        let at = usize::try_from(rng.below(desks.len() as u64)).unwrap_or(0);
        let Some(case) = copies[at].clone() else {
            continue;
        };
        let desk = &desks[at];
        if rng.below(4) == 0 {
            let mut ticked = case;
            desk.tick(&mut ticked, now);
            copies[at] = Some(ticked);
        } else {
            let command = random_command(&mut rng);
            match decide(&case, &command, &desk.ctx(now)) {
                Err(error) => assert!(!error.code().is_empty()),
                Ok(events) => {
                    let mut changed = case.clone();
                    for event in &events {
                        changed.apply(event);
                    }
                    assert_eq!(
                        changed.history.len(),
                        case.history.len() + events.len(),
                        "seed {seed}"
                    );
                    copies[at] = Some(changed);
                }
            }
        }
        // The federation: deliver a handoff, then acknowledge or refuse it at the sender.
        if let Some(Case {
            status: Status::InTransit { to, kind },
            ..
        }) = copies[at].clone()
        {
            if let Some(target) = desk_of(&to) {
                let sent = copies[at].clone().unwrap_or_else(|| unreachable!());
                let outcome = if rng.below(5) == 0 {
                    CaseCommand::HandoffRefused {
                        reason: "Not ours.".into(),
                    }
                } else {
                    let received = receive(&sent, kind, &desks[target].ctx(now));
                    copies[target] =
                        Some(received.unwrap_or_else(|error| panic!("seed {seed}: {error}")));
                    CaseCommand::HandoffAcked
                };
                let mut sender = sent;
                desks[at].ok(&mut sender, now, outcome);
                copies[at] = Some(sender);
            }
        }
        for (copy, desk) in copies.iter().zip(&desks) {
            if let Some(case) = copy {
                check(case, desk, now, seed);
            }
        }
        // Single owner: exactly one copy is mutable by its holder once nothing is in transit.
        let owners = copies.iter().zip(&desks).filter(|(copy, desk)| {
            copy.as_ref()
                .is_some_and(|case| case.is_mutable_by(&desk.office))
        });
        assert_eq!(owners.count(), 1, "seed {seed}");
    }
    copies.iter().flatten().map(Case::to_bytes).collect()
}

/// Random lifecycles keep every invariant: chain verifies, stored form round-trips, thresholds fire once, next_alarm is exact, one owner.
#[test]
fn random_lifecycles_keep_the_invariants() {
    for seed in 0..400 {
        walk(seed);
    }
}

/// The same seed replays to byte-identical copies.
#[test]
fn random_lifecycles_are_deterministic() {
    for seed in [3, 17, 99] {
        assert_eq!(walk(seed), walk(seed));
    }
}

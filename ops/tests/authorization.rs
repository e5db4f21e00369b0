//! Authorization on receipt: a message a rule forbids is refused (committed as refused at the
//! receiver, reported back to the sender) and changes nothing; replays are no-ops; forged
//! sequence numbers, unknown offices and misaddressed envelopes are refused outright.

mod common;

use common::Fed;
use federation_proto::v1::federation_client::FederationClient;
use federation_proto::v1::{DeliverReply, DeliverRequest};
use liandong_domain::message::{Body, CaseDocument, Envelope, Summary};
use liandong_domain::{
    register, Calendar, Case, CaseId, CaseKind, Channel, Context, HandoffKind, OfficeCode,
    Registration, ReviewLevel, Status,
};
use liandong_node::manifest::Manifest;
use liandong_node::tls::Pki;
use tonic::Code;

fn code(text: &str) -> OfficeCode {
    text.parse().unwrap()
}

/// A case registered at `office` (pure case engine), as a sender would hold it.
fn case_at(office: &str, seq: u32) -> Case {
    let office = code(office);
    let calendar = Calendar::china();
    let ctx = Context {
        office: &office,
        now: liandong_node::clock::wall_ms(),
        calendar: &calendar,
    };
    let registration = Registration {
        channel: Channel::Visit,
        petitioner_id: common::id_number(u64::from(seq)).into(),
        name: "周八".into(),
        phone: None,
        category: "land".into(),
        summary: "forged".into(),
        location: None,
        officer: "o".into(),
        address: None,
    };
    let id = CaseId {
        office: office.clone(),
        year: 2026,
        seq,
    };
    register(id, registration, "cd".repeat(32), CaseKind::Original, &ctx).unwrap()
}

fn in_transit(mut case: Case, to: &str, kind: HandoffKind) -> Case {
    case.status = Status::InTransit { to: code(to), kind };
    case
}

struct Link<'a> {
    fed: &'a Fed,
    manifest: Manifest,
}

impl Link<'_> {
    async fn deliver(
        &self,
        from: &str,
        to: &str,
        seq: u64,
        body: Body,
    ) -> Result<DeliverReply, tonic::Status> {
        let envelope = Envelope {
            from: code(from),
            to: code(to),
            seq,
            sent_at: 0,
            body,
        };
        let request = DeliverRequest {
            from: from.into(),
            to: to.into(),
            envelopes: vec![(&envelope).into()],
        };
        self.send(request, to, from).await
    }

    /// A channel presenting a certificate from the federation's CA that names `speaks_for`.
    async fn channel(&self, addr: &str, speaks_for: &str) -> tonic::transport::Channel {
        let pki = Pki::load(&self.fed.dir.join("pki")).unwrap();
        let offices: Vec<String> = speaks_for
            .parse::<OfficeCode>()
            .map(|c| vec![c.to_string()])
            .unwrap_or_default();
        let identity = pki.issue_host("tester", &offices, 1).unwrap();
        common::connect(self.fed, addr, identity).await
    }

    async fn send(
        &self,
        request: DeliverRequest,
        host_of: &str,
        speaks_for: &str,
    ) -> Result<DeliverReply, tonic::Status> {
        let office = self
            .manifest
            .office(host_of)
            .map(|o| o.code.clone())
            .unwrap_or_else(|| "530602".into());
        let mut last = tonic::Status::unavailable("no host");
        for member in &self.manifest.office(&office).unwrap().members {
            let addr = &self.manifest.host(&member.host).unwrap().api_addr;
            let channel = self.channel(addr, speaks_for).await;
            match FederationClient::new(channel)
                .deliver(request.clone())
                .await
            {
                Ok(reply) if reply.get_ref().leader_hint.is_none() => return Ok(reply.into_inner()),
                Ok(_) => {}
                // A follower that does not know the leader says Unavailable; any other error is
                // the office's own verdict on the request.
                Err(status) if status.code() != Code::Unavailable => return Err(status),
                Err(status) => last = status,
            }
        }
        Err(last)
    }

    fn county_cases(&self) -> u64 {
        let status = self.fed.json(&["status"]);
        let county = status["offices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["code"] == "530602")
            .unwrap()
            .clone();
        county["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["cases"].as_u64())
            .max()
            .unwrap()
    }
}

fn refusal_code(reply: &DeliverReply, seq: u64) -> String {
    reply
        .refused
        .iter()
        .find(|r| r.seq == seq)
        .map(|r| r.code.clone())
        .unwrap_or_default()
}

/// Each rule of the protocol refuses the message that breaks it, and the receiver changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_messages_are_refused_and_change_nothing() {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "2", "--replicas", "3"],
        9,
    );
    fed.ok(&["up"]);
    let link = Link {
        fed: &fed,
        manifest: Manifest::load(&fed.dir.join("manifest.json")).unwrap(),
    };
    let before = link.county_cases();

    // Assign only down: a township of another county cannot assign to this county.
    let assign_up = in_transit(
        case_at("530621001", 1),
        "530602",
        HandoffKind::Assign {
            due_by: i64::MAX / 2,
        },
    );
    let reply = link
        .deliver(
            "530621001",
            "530602",
            1,
            Body::Handoff {
                case: CaseDocument::of(&assign_up),
            },
        )
        .await
        .unwrap();
    assert_eq!(refusal_code(&reply, 1), "assign_not_downward", "{reply:?}");

    // Escalate only up: the city cannot escalate down to a county.
    let escalate_down = Body::Escalation {
        level: ReviewLevel::Review,
        case: CaseDocument::of(&case_at("5306", 1)),
    };
    let reply = link
        .deliver("5306", "530602", 1, escalate_down.clone())
        .await
        .unwrap();
    assert_eq!(
        refusal_code(&reply, 1),
        "escalation_not_upward",
        "{reply:?}"
    );

    // Supervise only down: a sibling county cannot supervise.
    let order = Body::SupervisionOrder {
        case_id: case_at("530602", 1).id,
        order_id: "x-1".into(),
        text: "t".into(),
        due_days: 3,
    };
    let reply = link.deliver("530621", "530602", 1, order).await.unwrap();
    assert_eq!(
        refusal_code(&reply, 1),
        "supervision_not_downward",
        "{reply:?}"
    );

    // Transfer only what the sender owns: 530602002 hands over a case 530602001 holds.
    let not_owned = in_transit(case_at("530602001", 7), "530602", HandoffKind::Transfer);
    let reply = link
        .deliver(
            "530602002",
            "530602",
            1,
            Body::Handoff {
                case: CaseDocument::of(&not_owned),
            },
        )
        .await
        .unwrap();
    assert_eq!(refusal_code(&reply, 1), "not_owner", "{reply:?}");

    // Index summaries come only from below.
    let summary = Summary::of(&case_at("530621", 3));
    let reply = link
        .deliver("530621", "530602", 2, Body::IndexUpdate { summary })
        .await
        .unwrap();
    assert_eq!(refusal_code(&reply, 2), "index_not_upward", "{reply:?}");

    // A joint reception session's invitation travels only down: a sibling cannot invite.
    let input = liandong_domain::session::Schedule {
        starts_at: 0,
        ends_at: 3_600_000,
        invite: vec![code("530621001")],
        leader: "李县长".into(),
        slots: 1,
    };
    let sibling_session =
        liandong_domain::session::schedule("530621-S1".into(), &code("530621"), input, "l", 0)
            .unwrap();
    let reply = link
        .deliver(
            "530621",
            "530602",
            3,
            Body::SessionRecord {
                session: sibling_session,
            },
        )
        .await
        .unwrap();
    assert_eq!(refusal_code(&reply, 3), "session_not_downward", "{reply:?}");

    // A replayed message id is a no-op: the same answer, nothing applied again.
    let replay = link
        .deliver("5306", "530602", 1, escalate_down.clone())
        .await
        .unwrap();
    assert_eq!(replay.applied_through, 1);
    assert_eq!(refusal_code(&replay, 1), "escalation_not_upward");

    // A forged sequence number (a gap) is refused outright.
    let gap = link
        .deliver("5306", "530602", 9, escalate_down.clone())
        .await
        .unwrap_err();
    assert_eq!(gap.code(), Code::FailedPrecondition, "{gap:?}");

    // An unknown target office, an unknown sender, a misaddressed envelope.
    let unknown_target = link
        .deliver("5306", "530603", 1, escalate_down.clone())
        .await
        .unwrap_err();
    assert_eq!(unknown_target.code(), Code::NotFound, "{unknown_target:?}");
    let stranger = link
        .deliver("5305", "530602", 1, escalate_down.clone())
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::PermissionDenied, "{stranger:?}");
    let envelope = Envelope {
        from: code("5306"),
        to: code("530621"),
        seq: 2,
        sent_at: 0,
        body: escalate_down,
    };
    let misaddressed = DeliverRequest {
        from: "5306".into(),
        to: "530602".into(),
        envelopes: vec![(&envelope).into()],
    };
    assert_eq!(
        link.send(misaddressed.clone(), "530602", "5306")
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );

    // A peer may speak only for the offices its certificate names.
    let impostor = link
        .send(misaddressed, "530602", "530621")
        .await
        .unwrap_err();
    assert_eq!(impostor.code(), Code::PermissionDenied, "{impostor:?}");

    assert_eq!(
        link.county_cases(),
        before,
        "no refused message created a case"
    );
    let index = fed.at("530602").json(&["query", "--as", "530602"]);
    assert!(
        index["cases"].as_array().unwrap().is_empty(),
        "no refused summary entered the index: {index}"
    );
}

/// A message the receiver cannot admit — a kind its build does not know, a field the case
/// engine refuses — is committed as refused on its own, and the handoff behind it in the same
/// batch is taken: one bad message does not wedge the link (fails if such a message refuses the
/// whole batch: the sender then retries it forever and nothing behind it ever arrives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_cannot_be_admitted_does_not_hold_up_its_link() {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "1", "--replicas", "1"],
        3,
    );
    fed.ok(&["up"]);
    let manifest = Manifest::load(&fed.dir.join("manifest.json")).unwrap();
    let county = manifest
        .offices
        .iter()
        .map(|o| o.code.clone())
        .find(|c| c.len() == 6)
        .expect("a county");
    let link = Link {
        fed: &fed,
        manifest,
    };
    // 1: a kind from a newer build. Protobuf leaves a `oneof` case it does not know empty,
    // which is what this build makes of it (federation-proto's tests show it).
    let newer = federation_proto::v1::Envelope {
        from: "5306".into(),
        to: county.clone(),
        seq: 1,
        sent_ms: 0,
        body: None,
    };
    // 2: a supervision order without words.
    let wordless = Envelope {
        from: code("5306"),
        to: code(&county),
        seq: 2,
        sent_at: 0,
        body: Body::SupervisionOrder {
            case_id: case_at(&county, 1).id,
            order_id: "5306-1".into(),
            text: "   ".into(),
            due_days: 5,
        },
    };
    // 3: a case the city transfers to the county, as the city's engine makes it.
    let mut case = case_at("5306", 5);
    let city = code("5306");
    let calendar = Calendar::china();
    let ctx = Context {
        office: &city,
        now: liandong_node::clock::wall_ms(),
        calendar: &calendar,
    };
    let transfer = liandong_domain::CaseCommand::Transfer {
        to: code(&county),
        officer: "李".into(),
    };
    for event in liandong_domain::decide(&case, &transfer, &ctx).expect("a transfer") {
        case.apply(&event);
    }
    let handoff = Envelope {
        from: city.clone(),
        to: code(&county),
        seq: 3,
        sent_at: 0,
        body: Body::Handoff {
            case: CaseDocument::of(&case),
        },
    };
    let batch = DeliverRequest {
        from: "5306".into(),
        to: county.clone(),
        envelopes: vec![newer, (&wordless).into(), (&handoff).into()],
    };
    let reply = link
        .send(batch.clone(), &county, "5306")
        .await
        .expect("the batch is taken");
    assert_eq!(reply.applied_through, 3, "{reply:?}");
    assert_eq!(refusal_code(&reply, 1), "unknown_message_kind", "{reply:?}");
    assert_eq!(refusal_code(&reply, 2), "invalid_message", "{reply:?}");
    assert_eq!(
        refusal_code(&reply, 3),
        "",
        "the handoff is taken: {reply:?}"
    );
    let shown = fed
        .at(&county)
        .json(&["case", "show", &case.id.to_string()]);
    assert_eq!(shown["case_id"], case.id.to_string(), "{shown}");
    // The sender, had it lost the reply, sends the batch again: the same answer, from the
    // refusals kept.
    let again = link.send(batch, &county, "5306").await.unwrap();
    assert_eq!(again.applied_through, 3);
    assert_eq!(again.refused, reply.refused);
}

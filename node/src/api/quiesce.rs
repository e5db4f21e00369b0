//! The quiescence service between hosts (`proto/liandong/v1/quiesce.proto`, served on the raft
//! port): a leader's host asks this host's followers to quiesce, a follower's host asks this
//! host's leaders to wake ([`crate::quiesce`]). A peer may name only offices its certificate
//! names; an office it may not name is answered "not quiesced" and not woken.

use federation_proto::v1::quiescence_server::Quiescence;
use federation_proto::v1::{QuiesceReply, QuiesceRequest, WakeReply, WakeRequest};
use liandong_domain::OfficeCode;
use tonic::{Request, Response, Status};

use crate::quiesce::{Cause, Position, OFFICES_PER_CALL_MAX};
use crate::raft::types::NodeId;
use crate::replica::{Replica, Replicas};

pub struct QuiescenceService {
    pub replicas: Replicas,
}

impl QuiescenceService {
    /// The local replica `id` of `office`, if this host carries it.
    fn replica(&self, office: &str, id: NodeId) -> Option<&Replica> {
        let code: OfficeCode = office.parse().ok()?;
        self.replicas.get(&code).filter(|replica| replica.id == id)
    }
}

fn bounded(offices: usize) -> Result<(), Status> {
    if offices > OFFICES_PER_CALL_MAX {
        return Err(Status::invalid_argument(format!(
            "{offices} offices in one call; at most {OFFICES_PER_CALL_MAX}"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Quiescence for QuiescenceService {
    async fn quiesce(
        &self,
        request: Request<QuiesceRequest>,
    ) -> Result<Response<QuiesceReply>, Status> {
        let peer = crate::tls::peer_offices(&request)?;
        let offices = request.into_inner().offices;
        bounded(offices.len())?;
        let quiesced = offices
            .iter()
            .map(|item| {
                peer.speaks_for(&item.office)
                    && self
                        .replica(&item.office, item.replica)
                        .is_some_and(|replica| {
                            replica.quiet.follower_quiesce(&Position::from_proto(item))
                        })
            })
            .collect();
        Ok(Response::new(QuiesceReply { quiesced }))
    }

    async fn wake(&self, request: Request<WakeRequest>) -> Result<Response<WakeReply>, Status> {
        let peer = crate::tls::peer_offices(&request)?;
        let offices = request.into_inner().offices;
        bounded(offices.len())?;
        let woken = offices
            .iter()
            .filter(|item| peer.speaks_for(&item.office))
            .filter_map(|item| self.replica(&item.office, item.replica))
            .filter(|replica| replica.quiet.wake(Cause::Peer))
            .count();
        Ok(Response::new(WakeReply {
            woken: u32::try_from(woken).unwrap_or(u32::MAX),
        }))
    }
}

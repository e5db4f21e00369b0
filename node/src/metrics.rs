//! A plain-text metrics page per host (Prometheus exposition format) for operators' scrapers.

use std::fmt::Write as _;
use std::future::Future;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::replica::Replicas;
use crate::worker::Workers;

/// Largest request head we read before answering (we answer every path alike).
const REQUEST_BYTES_MAX: usize = 4096;

pub fn render(replicas: &Replicas, workers: &Workers) -> String {
    let mut out = String::new();
    // Each background worker (pump links, ticks, fault watches, the dead-leader detector): 1 for
    // the state it is in; a failed worker has stopped (its reason is in the host's log).
    for (name, status) in workers.statuses() {
        let labels = format!("worker=\"{name}\",state=\"{}\"", status.state.as_str());
        let _ = writeln!(out, "liandong_worker{{{labels}}} 1");
        let _ = writeln!(
            out,
            "liandong_worker_errors_total{{worker=\"{name}\"}} {}",
            status.errors
        );
    }
    for replica in replicas.iter() {
        let metrics = replica.raft.metrics().borrow().clone();
        let labels = format!("office=\"{}\",replica=\"{}\"", replica.office, replica.id);
        let leader = u8::from(metrics.state.is_leader());
        let applied = metrics.last_applied.map(|log_id| log_id.index).unwrap_or(0);
        let _ = writeln!(out, "liandong_raft_is_leader{{{labels}}} {leader}");
        let _ = writeln!(
            out,
            "liandong_raft_term{{{labels}}} {}",
            metrics.current_term
        );
        let _ = writeln!(
            out,
            "liandong_raft_last_log_index{{{labels}}} {}",
            metrics.last_log_index.unwrap_or(0)
        );
        let _ = writeln!(
            out,
            "liandong_raft_last_applied_index{{{labels}}} {applied}"
        );
        // 1 once the replica's Raft stopped on its own (a failed storage write): it serves
        // nothing until the host is restarted.
        let _ = writeln!(
            out,
            "liandong_replica_stopped{{{labels}}} {}",
            u8::from(metrics.running_state.is_err())
        );
    }
    out
}

pub async fn serve(
    addr: String,
    replicas: Replicas,
    workers: Workers,
    shutdown: impl Future<Output = ()>,
) {
    let listener = match TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%addr, %error, "metrics port not bound; metrics disabled");
            return;
        }
    };
    tokio::pin!(shutdown);
    loop {
        let (mut stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted { Ok(pair) => pair, Err(_) => continue },
            _ = &mut shutdown => return,
        };
        let body = render(&replicas, &workers);
        tokio::spawn(async move {
            let mut head = vec![0u8; REQUEST_BYTES_MAX];
            let _ = stream.read(&mut head).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

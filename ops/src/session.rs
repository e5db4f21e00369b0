//! Signing in and officers' accounts: `liandong login`, `officer ...`, `audit`, and the officer
//! a drill or a test harness makes for itself with an office's initial admin password.

use anyhow::{anyhow, Context};
use federation_proto::v1::audit_client::AuditClient;
use federation_proto::v1::officers_client::OfficersClient;
use federation_proto::v1::{
    AddOfficerRequest, AuditReadRequest, ListOfficersRequest, LoginRequest, ResetPasswordRequest,
    SetEnabledRequest,
};
use liandong_node::raft::types::Role;
use liandong_node::secrets::{self, ADMIN_USER};
use serde_json::{json, Value};
use tonic::Status;

use crate::client::{remember_token, status_error, Bearer, Federation, OfficerChannel, Session};

/// The roles of the officer a drill or harness makes for itself: every officer role but admin.
pub const WORKING_ROLES: [Role; 5] = [
    Role::Registrar,
    Role::Handler,
    Role::Leader,
    Role::Supervisor,
    Role::Auditor,
];

/// Signs `user` in at `office`; calls to the office carry the token from then on.
pub async fn login(
    federation: &Federation,
    office: &str,
    user: &str,
    password: &str,
) -> Result<Session, Status> {
    let request = LoginRequest {
        office: office.to_string(),
        user: user.to_string(),
        password: password.to_string(),
    };
    let reply = federation
        .office_call_as(office, Bearer::default(), |channel| {
            let request = request.clone();
            async move {
                let mut client = OfficersClient::new(channel);
                client.login(request).await.map(|r| r.into_inner())
            }
        })
        .await?;
    let session = Session::from_token(&reply.token).map_err(|e| Status::internal(e.to_string()))?;
    remember_token(office, &session.token);
    Ok(session)
}

/// The office's initial admin, signed in with the password `federation init` left in
/// `DIR/secrets/<office>/admin.password`.
pub async fn initial_admin(federation: &Federation, office: &str) -> anyhow::Result<Session> {
    let file = federation.layout.secrets().admin_password_file(office);
    let password = secrets::password_from_file(&file)
        .map_err(|e| anyhow!("the initial admin password of office {office}: {e}"))?;
    login(federation, office, ADMIN_USER, &password)
        .await
        .map_err(|s| {
            anyhow!(
                "signing in as {ADMIN_USER} of office {office}: {}",
                s.message()
            )
        })
}

fn role_words(roles: &[Role]) -> Vec<String> {
    roles.iter().map(|r| r.to_string()).collect()
}

/// Creates `user` at `office` with `roles` (or gives an existing one a new password) as the
/// office's initial admin, then signs it in: how `drill run` and the test harnesses act as
/// officers. The password is random and forgotten; the token is what they keep.
pub async fn officer_session(
    federation: &Federation,
    office: &str,
    user: &str,
    roles: &[Role],
) -> anyhow::Result<Session> {
    let admin = initial_admin(federation, office).await?;
    let bearer = Bearer::new(Some(&admin.token));
    let password = secrets::generate_password();
    let add = AddOfficerRequest {
        office: office.to_string(),
        user: user.to_string(),
        roles: role_words(roles),
        password: password.clone(),
    };
    let added = federation
        .office_call_as(office, bearer.clone(), |channel| {
            let add = add.clone();
            async move { OfficersClient::new(channel).add(add).await }
        })
        .await;
    match added {
        Ok(_) => {}
        Err(status) if status.message().starts_with("officer_exists") => {
            let reset = ResetPasswordRequest {
                office: office.to_string(),
                user: user.to_string(),
                password: password.clone(),
            };
            federation
                .office_call_as(office, bearer, |channel| {
                    let reset = reset.clone();
                    async move { OfficersClient::new(channel).reset_password(reset).await }
                })
                .await
                .map_err(|s| status_error(&s))?;
        }
        Err(status) => return Err(status_error(&status)),
    }
    login(federation, office, user, &password)
        .await
        .map_err(|s| anyhow!("signing in as {user} of office {office}: {}", s.message()))
}

/// Signs `user` in at every office of the federation with `roles` (see [`officer_session`]):
/// this process's calls to each office carry its token from then on. With `token_dir`, each
/// token is also kept as `<token_dir>/<office>.token` for `liandong --token-file`.
pub async fn sign_in_everywhere(
    federation: &Federation,
    user: &str,
    roles: &[Role],
    token_dir: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let offices = federation.manifest.offices.iter().map(|office| async {
        let session = officer_session(federation, &office.code, user, roles)
            .await
            .map_err(|e| anyhow!("cannot act at office {}: {e:#}", office.code))?;
        if let Some(dir) = token_dir {
            session.save(&dir.join(format!("{}.token", office.code)))?;
        }
        anyhow::Ok(())
    });
    for signed in futures::future::join_all(offices).await {
        signed?;
    }
    Ok(())
}

/// The signed-in officer's token for a call to `office`: an officer works for its own office.
fn own_bearer(federation: &Federation, office: &str) -> anyhow::Result<Bearer> {
    let session = federation.officer()?;
    if session.claims.office != office {
        return Err(anyhow!(
            "signed in at office {}, not {office}: an officer acts only for its own office",
            session.claims.office
        ));
    }
    Ok(Bearer::new(Some(&session.token)))
}

/// Calls the Officers service of `office` as the signed-in officer (its admin).
async fn as_admin<T, F, Fut>(federation: &Federation, office: &str, call: F) -> anyhow::Result<T>
where
    F: Fn(OfficersClient<OfficerChannel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    let bearer = own_bearer(federation, office)?;
    federation
        .office_call_as(office, bearer, |channel| call(OfficersClient::new(channel)))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| status_error(&s))
}

pub async fn add(
    federation: &Federation,
    office: &str,
    user: &str,
    roles: &[Role],
    password: &str,
) -> anyhow::Result<Value> {
    let request = AddOfficerRequest {
        office: office.to_string(),
        user: user.to_string(),
        roles: role_words(roles),
        password: password.to_string(),
    };
    let reply = as_admin(federation, office, |mut client| {
        let request = request.clone();
        async move { client.add(request).await }
    })
    .await?;
    Ok(serde_json::from_slice(&reply.officer)?)
}

pub async fn set_enabled(
    federation: &Federation,
    office: &str,
    user: &str,
    enabled: bool,
) -> anyhow::Result<Value> {
    let request = SetEnabledRequest {
        office: office.to_string(),
        user: user.to_string(),
        enabled,
    };
    let reply = as_admin(federation, office, |mut client| {
        let request = request.clone();
        async move { client.set_enabled(request).await }
    })
    .await?;
    Ok(serde_json::from_slice(&reply.officer)?)
}

pub async fn reset_password(
    federation: &Federation,
    office: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<Value> {
    let request = ResetPasswordRequest {
        office: office.to_string(),
        user: user.to_string(),
        password: password.to_string(),
    };
    let reply = as_admin(federation, office, |mut client| {
        let request = request.clone();
        async move { client.reset_password(request).await }
    })
    .await?;
    Ok(serde_json::from_slice(&reply.officer)?)
}

pub async fn list(federation: &Federation, office: &str) -> anyhow::Result<Vec<Value>> {
    let request = ListOfficersRequest {
        office: office.to_string(),
    };
    let reply = as_admin(federation, office, |mut client| {
        let request = request.clone();
        async move { client.list(request).await }
    })
    .await?;
    reply
        .officers
        .iter()
        .map(|bytes| serde_json::from_slice(bytes).context("an officer record"))
        .collect()
}

/// The office's audit log as `liandong audit --json` prints it.
pub async fn audit(federation: &Federation, request: AuditReadRequest) -> anyhow::Result<Value> {
    let office = request.office.clone();
    let bearer = own_bearer(federation, &office)?;
    let reply = federation
        .office_call_as(&office, bearer, |channel| {
            let request = request.clone();
            async move {
                AuditClient::new(channel)
                    .max_decoding_message_size(federation_proto::MESSAGE_BYTES_MAX)
                    .read(request)
                    .await
            }
        })
        .await
        .map_err(|s| status_error(&s))?
        .into_inner();
    let mut entries = Vec::new();
    for bytes in &reply.entries {
        let entry: Value = serde_json::from_slice(bytes)?;
        let record = &entry["record"];
        entries.push(json!({
            "seq": entry["seq"],
            "at": record["at_ms"].as_i64().map(liandong_domain::format_rfc3339),
            "user": record["user"],
            "office": record["office"],
            "rpc": record["rpc"],
            "case_id": record["case_id"],
            "request_id": record["request_id"],
            "result": record["result"],
            "detail": record["detail"],
            "count": record["count"],
            "hash": entry["hash"],
        }));
    }
    Ok(json!({
        "office": office,
        "entries": entries,
        "chain_ok": reply.chain_ok,
        "chain_detail": reply.chain_detail,
        "pruned_through": reply.pruned_through,
        "last_seq": reply.last_seq,
    }))
}

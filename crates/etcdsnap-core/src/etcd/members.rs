//! Membership changes: add a learner, promote it, remove a member. Learners refuse these
//! requests ("rpc not supported for learner"), so each goes to the first endpoint that answers
//! as a voting member.

use super::{EtcdTarget, Member, MemberStatus};
use crate::{Error, Result};

fn member_of(m: &etcd_client::Member) -> Member {
    Member {
        id: m.id(),
        name: m.name().to_string(),
        peer_urls: m.peer_urls().to_vec(),
        client_urls: m.client_urls().to_vec(),
        is_learner: m.is_learner(),
    }
}

impl EtcdTarget {
    /// A client on the first endpoint that answers and is not a learner.
    async fn voting_client(&self) -> Result<(etcd_client::Client, MemberStatus)> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            match self.status_of(ep).await {
                Ok((_, st)) if st.is_learner => errors.push(format!("{ep} is a learner")),
                Ok(ok) => return Ok(ok),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(Error::Etcd(format!(
            "no voting etcd member answered: {}",
            errors.join("; ")
        )))
    }

    async fn cluster_call<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: FnOnce(etcd_client::Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let (client, st) = self.voting_client().await?;
        tokio::time::timeout(self.op_timeout(), f(client))
            .await
            .map_err(|_| Error::Timeout(format!("{what} on {} timed out", st.endpoint)))?
            .map_err(|e| Error::Etcd(format!("{what} on {}: {e}", st.endpoint)))
    }

    /// The member list as a voting member sees it.
    pub async fn voting_members(&self) -> Result<Vec<Member>> {
        let resp = self
            .cluster_call("member list", |mut c| async move { c.member_list().await })
            .await?;
        Ok(resp.members().iter().map(member_of).collect())
    }

    /// Adds a learner with `peer_url`; returns its id and the member list that includes it.
    pub async fn add_learner(&self, peer_url: &str) -> Result<(u64, Vec<Member>)> {
        let url = peer_url.to_string();
        let resp = self
            .cluster_call("member add", |mut c| async move {
                c.member_add(
                    [url],
                    Some(etcd_client::MemberAddOptions::new().with_is_learner()),
                )
                .await
            })
            .await?;
        let id = resp
            .member()
            .map(|m| m.id())
            .ok_or_else(|| Error::Etcd("member add answered without the new member".into()))?;
        Ok((id, resp.member_list().iter().map(member_of).collect()))
    }

    /// Promotes a learner to a voting member; etcd refuses while it lags the leader.
    pub async fn promote(&self, id: u64) -> Result<()> {
        self.cluster_call("member promote", |mut c| async move {
            c.member_promote(id).await
        })
        .await
        .map(|_| ())
    }

    /// Removes a member for good. etcd refuses while its leader has not been connected to
    /// every voting member for 5 s (one promoted just now): retried for up to 20 s.
    pub async fn remove_member(&self, id: u64) -> Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match self
                .cluster_call(
                    "member remove",
                    |mut c| async move { c.member_remove(id).await },
                )
                .await
            {
                Err(e)
                    if e.to_string().contains("unhealthy cluster")
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                other => return other.map(|_| ()),
            }
        }
    }
}

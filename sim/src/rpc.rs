//! A small request/response protocol over madsim's simulated network, so
//! that the stand-ins run on nodes of their own and network faults reach
//! them. Messages travel as values: nothing here is serialised.
//!
//! Own code rather than `madsim::net::rpc`: that one requires serde on every
//! message, and the routing table's rows do not implement it.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use madsim::net::Endpoint;

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("network: {0}")]
    Network(#[from] std::io::Error),
    #[error("answer of an unexpected type")]
    Mismatch,
}

/// Calls one server.
#[derive(Clone)]
pub struct RpcClient {
    endpoint: Endpoint,
    server: SocketAddr,
    timeout: Duration,
}

impl RpcClient {
    pub fn new(endpoint: Endpoint, server: SocketAddr, timeout: Duration) -> RpcClient {
        RpcClient {
            endpoint,
            server,
            timeout,
        }
    }

    /// Sends `request` on `tag` and waits for the answer.
    pub async fn call<Q, A>(&self, tag: u64, request: Q) -> Result<A, RpcError>
    where
        Q: Any + Send + Sync,
        A: Any + Send + Sync,
    {
        let answer_tag: u64 = madsim::rand::random();
        let exchange = async {
            let message = Box::new((answer_tag, request));
            self.endpoint.send_to_raw(self.server, tag, message).await?;
            let (answer, _) = self.endpoint.recv_from_raw(answer_tag).await?;
            Ok::<_, RpcError>(answer)
        };
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| RpcError::Timeout(self.timeout))??;
        answer
            .downcast::<A>()
            .map(|a| *a)
            .map_err(|_| RpcError::Mismatch)
    }
}

/// Receive loops per server. madsim rounds the short pause of every
/// receive up to a millisecond of simulated time, so one loop answers at
/// most a thousand requests per second; several loops lift that ceiling
/// far above the traffic a run sends.
const RECEIVERS: usize = 32;

/// Answers every request on `tag` with `handler`, each in its own task.
pub async fn serve<Q, A, F, Fut>(endpoint: Endpoint, tag: u64, handler: F)
where
    Q: Any + Send + Sync,
    A: Any + Send + Sync,
    F: Fn(Q) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = A> + Send + 'static,
{
    let loops: Vec<_> = (0..RECEIVERS)
        .map(|_| tokio::spawn(receive(endpoint.clone(), tag, handler.clone())))
        .collect();
    for one in loops {
        let _ = one.await;
    }
}

async fn receive<Q, A, F, Fut>(endpoint: Endpoint, tag: u64, handler: F)
where
    Q: Any + Send + Sync,
    A: Any + Send + Sync,
    F: Fn(Q) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = A> + Send + 'static,
{
    while let Ok((message, from)) = endpoint.recv_from_raw(tag).await {
        let Ok(message) = message.downcast::<(u64, Q)>() else {
            continue;
        };
        let (answer_tag, request) = *message;
        let (endpoint, handler) = (endpoint.clone(), handler.clone());
        tokio::spawn(async move {
            let answer = handler(request).await;
            // A lost answer is what a partition does; the caller times out.
            let _ = endpoint
                .send_to_raw(from, answer_tag, Box::new(answer))
                .await;
        });
    }
}

//! The `Hook` service client (plugin-protocol.md §5.3): a running builder calls core's
//! `Hook.Run("packer_provision", …)`, which runs every provisioner through the Ui and
//! Communicator the builder serves on a stream it allocates.

use std::sync::Arc;

use async_trait::async_trait;

use super::codec::{self, map, Value};
use super::communicator::{CommunicatorServer, NoCommunicator};
use super::mux::Session;
use super::netrpc::{serve, Client, Registry, RpcError};
use super::ui::UiServer;
use crate::communicator::Communicator;
use crate::component::{Hook, RunError};
use crate::ui::Ui;
use crate::CancellationToken;

/// Core's hook, reached over RPC.
#[derive(Debug, Clone)]
pub struct HookClient {
    client: Client,
    session: Session,
}

impl HookClient {
    /// A hook client calling through `client`; the Ui/Communicator stream is accepted on
    /// `session`.
    pub fn new(client: Client, session: Session) -> Self {
        HookClient { client, session }
    }
}

#[async_trait]
impl Hook for HookClient {
    async fn run(
        &self,
        name: &str,
        ui: Arc<dyn Ui>,
        comm: Option<Arc<dyn Communicator>>,
        data: serde_json::Value,
        cancel: CancellationToken,
    ) -> Result<(), RunError> {
        let id = self.session.next_id();
        // Accept before sending Hook.Run: core dials the id right away.
        let accept = self.session.accept(id);
        let registry = Registry::new();
        UiServer::register(&registry, ui);
        match comm {
            Some(c) => registry.register("Communicator", Arc::new(CommunicatorServer::new(c, self.session.clone()))),
            None => registry.register("Communicator", Arc::new(NoCommunicator)),
        }
        tokio::spawn(async move {
            match accept.await {
                Ok(stream) => {
                    if let Err(e) = serve(stream, registry).await {
                        tracing::warn!("serving Ui/Communicator for the hook: {e}");
                    }
                }
                Err(e) => tracing::error!("core never connected to the hook's Ui/Communicator stream: {e}"),
            }
        });
        let args =
            map(vec![("Name", Value::from(name)), ("Data", codec::from_json(&data)), ("StreamId", Value::from(id))]);
        let run = self.client.call("Hook.Run", args);
        tokio::pin!(run);
        let result = tokio::select! {
            r = &mut run => r,
            _ = cancel.cancelled() => {
                tracing::info!("cancelling hook {name}");
                let client = self.client.clone();
                tokio::spawn(async move {
                    if let Err(e) = client.call("Hook.Cancel", Value::Nil).await {
                        tracing::warn!("Hook.Cancel failed: {e}");
                    }
                });
                run.await
            }
        };
        result.map(|_| ()).map_err(|e| match e {
            RpcError::Remote(m) => RunError(m),
            other => RunError(format!("running hook {name}: {other}")),
        })
    }
}

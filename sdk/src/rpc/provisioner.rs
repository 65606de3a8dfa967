//! The `Provisioner` service (plugin-protocol.md §5.2), served by the plugin on broker id 0.

use std::sync::Arc;

use async_trait::async_trait;

use super::builder::{config_spec_reply, raw_configs, SpecEncoder};
use super::codec::{self, Value};
use super::communicator::CommunicatorClient;
use super::inflight::InFlight;
use super::mux::Session;
use super::netrpc::{Client, Service};
use super::ui::UiClient;
use crate::component::Provisioner;
use crate::CancellationToken;

/// Serves a [`Provisioner`] as `Provisioner.*`.
pub struct ProvisionerServer {
    provisioner: tokio::sync::RwLock<Box<dyn Provisioner>>,
    session: Session,
    encoder: SpecEncoder,
    cancel: CancellationToken,
    inflight: InFlight,
}

impl ProvisionerServer {
    /// Serves `provisioner`; the Ui/Communicator stream of `Provision` is dialled on `session`.
    pub fn new(provisioner: Box<dyn Provisioner>, session: Session, encoder: SpecEncoder) -> Self {
        Self::with_inflight(provisioner, session, encoder, InFlight::new())
    }

    /// Like [`ProvisionerServer::new`], with `Provision` tracked by `inflight` (cancelled and
    /// waited for when the connection to Packer is lost).
    pub fn with_inflight(
        provisioner: Box<dyn Provisioner>,
        session: Session,
        encoder: SpecEncoder,
        inflight: InFlight,
    ) -> Self {
        let cancel = inflight.token();
        ProvisionerServer { provisioner: tokio::sync::RwLock::new(provisioner), session, encoder, cancel, inflight }
    }

    async fn provision(&self, body: Value) -> Result<Value, String> {
        let id = codec::get(&body, "StreamID")
            .map(|v| codec::u32_of(v, "StreamID"))
            .transpose()
            .map_err(|e| e.to_string())?
            .ok_or("Provisioner.Provision: the request has no StreamID")?;
        let data = match codec::get(&body, "GeneratedData").map(codec::to_json) {
            Some(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        let stream =
            self.session.dial(id).await.map_err(|e| format!("Provisioner.Provision: connecting to core: {e}"))?;
        let client = Client::new(stream);
        let ui = Arc::new(UiClient::new(client.clone()));
        let comm = Arc::new(CommunicatorClient::new(client.clone(), self.session.clone()));
        let result = self
            .inflight
            .track(async {
                let p = self.provisioner.read().await;
                p.provision(ui, comm, data, self.cancel.clone()).await
            })
            .await;
        client.close().await;
        result.map(|_| Value::Nil).map_err(|e| e.0)
    }
}

#[async_trait]
impl Service for ProvisionerServer {
    async fn call(&self, method: &str, body: Value) -> Result<Value, String> {
        match method {
            "ConfigSpec" => {
                let spec = self.provisioner.read().await.config_spec();
                config_spec_reply(&spec, &self.encoder)
            }
            "Prepare" => {
                let raws = raw_configs(&body)?;
                self.provisioner.write().await.prepare(raws).await.map_err(|e| e.to_string())?;
                Ok(Value::Nil)
            }
            "Provision" => self.provision(body).await,
            "Cancel" => {
                tracing::info!("Provisioner.Cancel received");
                self.cancel.cancel();
                Ok(Value::Nil)
            }
            other => Err(format!("rpc: can't find method Provisioner.{other}")),
        }
    }
}

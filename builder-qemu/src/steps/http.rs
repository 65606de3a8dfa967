//! Step: serve `http_directory`/`http_content` to the guest.

use async_trait::async_trait;
use packer_sdk::http_server::{HttpServer, HttpServerConfig};
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::state::BuildState;

/// The address of the host as the guest sees it on QEMU's user network.
pub const GUEST_HOST_IP: &str = "10.0.2.2";

/// Starts the seed HTTP server; sets `http_ip`/`http_port`/`http`.
pub struct ServeHttp<'a> {
    config: &'a Config,
}

impl<'a> ServeHttp<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        ServeHttp { config }
    }
}

#[async_trait]
impl Step<BuildState> for ServeHttp<'_> {
    fn name(&self) -> &'static str {
        "http server"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        if state.http_ip.is_empty() {
            // user networking; with net_bridge the bridge step has set the bridge's address
            state.http_ip = GUEST_HOST_IP.to_string();
        }
        if c.http_directory.is_empty() && c.http_content.is_empty() {
            return Ok(());
        }
        // an empty address (net_bridge without http_bind_address): listen on the bridge's address
        let bind_address = if c.http_bind_address.is_empty() { &state.http_ip } else { &c.http_bind_address };
        let bind = bind_address
            .parse()
            .map_err(|_| StepError::failed(format!("http_bind_address {bind_address:?} is not an IP address")))?;
        let content = super::render_content("http_content", &c.http_content, state, &c.vm_name)?;
        let server = HttpServer::start(HttpServerConfig {
            bind_address: bind,
            port_min: c.http_port_min,
            port_max: c.http_port_max,
            directory: (!c.http_directory.is_empty()).then(|| c.http_directory.clone().into()),
            content,
        })
        .await
        .map_err(|e| StepError::failed(e.to_string()))?;
        ctx.ui.say(&format!("Starting HTTP server on port {}", server.port())).await;
        state.http_port = server.port();
        state.http = Some(server);
        Ok(())
    }

    async fn cleanup(&self, _ctx: &StepContext, state: &mut BuildState, _outcome: &Result<(), StepError>) {
        state.http = None;
    }
}

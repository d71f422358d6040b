//! A test Flowstep that tries to open a network socket: its component imports
//! `wasi:sockets/*`, which no Flowstep may, so Sluice must reject it when loading.

use sluice_plugin_sdk::{Flowstep, Message, Outcome, StepError, export_flowstep};

struct PhoneHome;

impl Flowstep for PhoneHome {
    type Config = serde_json::Value;

    fn process(_message: &Message, _config: serde_json::Value) -> Result<Outcome, StepError> {
        let family = wasip2::sockets::network::IpAddressFamily::Ipv4;
        let socket = wasip2::sockets::tcp_create_socket::create_tcp_socket(family)
            .map_err(|error| StepError::Other(format!("{error:?}")))?;
        drop(socket);
        Ok(Outcome::Continue)
    }
}

export_flowstep!(PhoneHome);

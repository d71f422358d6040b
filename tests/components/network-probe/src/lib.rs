//! A test Flowstep that imports `wasi:sockets/*` and `wasi:http/*`, as language toolchains'
//! output does, and reaches for the network only when its configuration says so: `{"reach":
//! "nothing"}` marks the message and continues, `"tcp"` opens a socket, `"dns"` resolves a
//! name, `"http"` builds a request. Sluice must load it, run it while it reaches for nothing,
//! and fail the step with the denied import named when it reaches.

use serde::Deserialize;
use sluice_plugin_sdk::{Flowstep, Message, Outcome, StepError, export_flowstep};
use wasip2::http::types::{Fields, OutgoingRequest};
use wasip2::sockets::network::IpAddressFamily;
use wasip2::sockets::{instance_network, ip_name_lookup, tcp_create_socket};

/// What the step reaches for on this call.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Reach {
    /// Nothing: the denied imports stay uncalled.
    Nothing,
    /// A TCP socket.
    Tcp,
    /// A name lookup.
    Dns,
    /// An outgoing HTTP request.
    Http,
}

#[derive(Deserialize)]
struct Config {
    reach: Reach,
}

struct NetworkProbe;

impl Flowstep for NetworkProbe {
    type Config = Config;

    fn process(message: &Message, config: Config) -> Result<Outcome, StepError> {
        let failed = |error: &dyn std::fmt::Debug| StepError::Other(format!("{error:?}"));
        match config.reach {
            Reach::Nothing => message.set_header("X-Probe", "stayed home")?,
            Reach::Tcp => {
                let socket = tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4)
                    .map_err(|error| failed(&error))?;
                drop(socket);
            }
            Reach::Dns => {
                let network = instance_network::instance_network();
                let lookup = ip_name_lookup::resolve_addresses(&network, "example.com")
                    .map_err(|error| failed(&error))?;
                drop(lookup);
            }
            Reach::Http => {
                let request = OutgoingRequest::new(Fields::new());
                let sent = wasip2::http::outgoing_handler::handle(request, None)
                    .map_err(|error| failed(&error))?;
                drop(sent);
            }
        }
        Ok(Outcome::Continue)
    }
}

export_flowstep!(NetworkProbe);

//! A test Flowstep that does what its configuration asks, including the things a sandbox must
//! contain: `{"behaviour": "loop"}` never returns, `"memory"` allocates without end, and so on.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::Deserialize;
use sluice_plugin_sdk::{Flowstep, Message, Outcome, StepError, export_flowstep, log, now_millis};

/// What the step does on this call.
#[derive(Deserialize)]
#[serde(tag = "behaviour", rename_all = "kebab-case")]
enum Behaviour {
    /// Reads the subject and changes nothing.
    ReadHeader,
    /// Replaces `find` with `replace` in the html body.
    RewriteHtml { find: String, replace: String },
    /// Sets one header.
    SetHeader { name: String, value: String },
    /// Sends this copy to another recipient.
    Redirect { to: String },
    /// Sets a header, then fails with a step error: the header must not stick.
    SetHeaderThenFail,
    /// Busy-waits this long (by the host clock), then marks the message with `version`.
    Busy { millis: u64, version: String },
    /// Computes for this many rounds (a fixed amount of work, whatever the clock says), then
    /// marks the message with the result in `X-Worked`.
    Work { rounds: u64 },
    /// Never returns.
    Loop,
    /// Allocates and touches memory until it runs out.
    Memory,
    /// Panics, which traps.
    Trap,
    /// Makes the text body this many bytes long.
    Grow { bytes: usize },
    /// Tries to add a second header through a CR LF in a value.
    InjectHeader,
    /// Tries the same, and when the host refuses, records the refusal in `X-Refused` and goes
    /// on: a 0.2 step can handle a refused change.
    InjectHeaderAndRecover,
    /// Replaces the whole message with these bytes.
    SetRaw { raw: String },
    /// Returns hold with a reason.
    Hold,
    /// Returns discard with a reason.
    Discard,
    /// Counts calls in a static and reports the count in `X-Calls`.
    CountCalls,
    /// Writes to stdout and stderr, and looks for ambient authority (environment, files, clock),
    /// reporting what it found in `X-Ambient`.
    Ambient,
    /// Sleeps through WASI's clocks (a host call that blocks), then marks the message.
    Sleep { millis: u64 },
    /// Prints this many bytes to stdout, then marks the message.
    Print { bytes: usize },
    /// Recurses until the stack runs out.
    Recurse,
    /// Holds with a reason this many bytes long.
    LongHold { bytes: usize },
}

/// Recurses until the stack runs out (the depth never gets near the base case); the array
/// on the stack makes each frame use the shadow stack in linear memory.
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return depth;
    }
    let frame = [depth; 32];
    let next = std::hint::black_box(&frame)[depth as usize % 32] + 1;
    recurse(next) + std::hint::black_box(frame[0])
}

struct Misbehave;

impl Flowstep for Misbehave {
    type Config = Behaviour;

    fn process(message: &Message, behaviour: Behaviour) -> Result<Outcome, StepError> {
        match behaviour {
            Behaviour::ReadHeader => {
                let subject = message.header("Subject");
                if subject.is_none() {
                    log::warn("no subject");
                }
            }
            Behaviour::RewriteHtml { find, replace } => {
                let html = message
                    .html()
                    .ok_or_else(|| StepError::UnsupportedMessage("no html part".into()))?;
                message.set_html(&html.replace(&find, &replace))?;
            }
            Behaviour::SetHeader { name, value } => message.set_header(&name, &value)?,
            Behaviour::Redirect { to } => message.set_envelope_recipient(&to)?,
            Behaviour::SetHeaderThenFail => {
                message.set_header("X-Half-Done", "yes")?;
                return Err(StepError::Other("failed after changing the message".into()));
            }
            Behaviour::Busy { millis, version } => {
                let until = now_millis() + millis;
                while now_millis() < until {
                    std::hint::spin_loop();
                }
                message.set_header("X-Version", &version)?;
            }
            Behaviour::Work { rounds } => {
                let mut state = 0x9e37_79b9_7f4a_7c15_u64;
                for round in 0..rounds {
                    state = std::hint::black_box(state.rotate_left(5) ^ round).wrapping_mul(31);
                }
                message.set_header("X-Worked", &state.to_string())?;
            }
            Behaviour::Loop => loop {
                std::hint::spin_loop();
            },
            Behaviour::Memory => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    log::debug(&format!("holding {} MiB", hoard.len()));
                }
            }
            Behaviour::Trap => panic!("the test step panics on purpose"),
            Behaviour::Grow { bytes } => message.set_text(&"x".repeat(bytes))?,
            Behaviour::InjectHeader => {
                message.set_header("X-Note", "harmless\r\nBcc: victim@example.net")?;
            }
            Behaviour::InjectHeaderAndRecover => {
                if let Err(refused) =
                    message.set_header("X-Note", "harmless\r\nBcc: victim@example.net")
                {
                    message.set_header("X-Refused", &format!("{refused:?}"))?;
                }
            }
            Behaviour::SetRaw { raw } => message.set_raw(raw.as_bytes())?,
            Behaviour::Hold => return Ok(Outcome::Hold("needs a look".into())),
            Behaviour::Discard => return Ok(Outcome::Discard("not wanted".into())),
            Behaviour::CountCalls => {
                static CALLS: AtomicU32 = AtomicU32::new(0);
                let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
                message.set_header("X-Calls", &calls.to_string())?;
            }
            Behaviour::Ambient => {
                println!("hello on stdout");
                eprintln!("hello on stderr");
                let env = std::env::vars().count();
                let files = match std::fs::read_dir("/") {
                    Ok(_) => "readable",
                    Err(_) => "denied",
                };
                message.set_header("X-Ambient", &format!("env={env} files={files}"))?;
            }
            Behaviour::Sleep { millis } => {
                std::thread::sleep(std::time::Duration::from_millis(millis));
                message.set_header("X-Slept", &millis.to_string())?;
            }
            Behaviour::Print { bytes } => {
                let line = "x".repeat(1023);
                for _ in 0..bytes / 1024 {
                    println!("{line}");
                }
                message.set_header("X-Printed", &bytes.to_string())?;
            }
            Behaviour::Recurse => {
                let depth = recurse(0);
                message.set_header("X-Depth", &depth.to_string())?;
            }
            Behaviour::LongHold { bytes } => return Ok(Outcome::Hold("h".repeat(bytes))),
        }
        Ok(Outcome::Continue)
    }
}

export_flowstep!(Misbehave);

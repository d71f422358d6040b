//! Sluice: a transactional-mail platform whose Flowsteps run as sandboxed WebAssembly components.

pub mod message;

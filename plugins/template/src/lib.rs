//! Built-in Flowstep `template`: renders the account's templates into the message.

mod text;

pub use text::html_to_text;

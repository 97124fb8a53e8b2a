//! `ringecho check`: a conformance suite for any TCP echo server.

use clap::Args;

use crate::error::Result;

/// `ringecho check` flags.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The server to test, as HOST:PORT (e.g. 127.0.0.1:12346 or [::1]:12346).
    pub addr: String,
}

/// Run the suite; Ok(true) when every case passed.
pub fn run(_args: &CheckArgs) -> Result<bool> {
    crate::bail!("checker not written yet")
}

//! One error type for the whole tool: a message with its context chain, printed on one
//! line by `main`. Servers and tools fail with a sentence a person can act on, never a
//! backtrace.

use std::fmt;

/// An error that already carries its human-readable context.
#[derive(Debug)]
pub struct Error {
    msg: String,
    /// The raw OS error, when the root cause was one (lets callers branch on ENOSYS, EPERM...).
    os: Option<i32>,
}

/// The crate-wide result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a message and no OS cause.
    pub fn msg(msg: impl Into<String>) -> Self {
        Error {
            msg: msg.into(),
            os: None,
        }
    }

    /// The `errno` at the root of this error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.os
    }

    /// Prefix the message with what was being attempted.
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        Error {
            msg: format!("{ctx}: {}", self.msg),
            os: self.os,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error {
            os: e.raw_os_error(),
            msg: strip_os_suffix(&e.to_string()),
        }
    }
}

/// `io::Error` renders as "Address in use (os error 98)"; the number is noise to a user.
fn strip_os_suffix(s: &str) -> String {
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s.to_string(),
    }
}

/// `.context("doing X")` for any result whose error converts into [`Error`].
pub trait Context<T> {
    /// Attach what was being attempted when the error happened.
    fn context(self, ctx: impl fmt::Display) -> Result<T>;
    /// Like [`Context::context`], but the message is built only on error.
    fn with_context<D: fmt::Display>(self, f: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, ctx: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(ctx))
    }
    fn with_context<D: fmt::Display>(self, f: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

/// Return early with a formatted [`Error`].
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error::msg(format!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_errno_and_lose_the_number_suffix() {
        let e: Error = std::io::Error::from_raw_os_error(libc::EADDRINUSE).into();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
        assert!(!e.to_string().contains("os error"), "{e}");
        let e = e.context("binding 127.0.0.1:1");
        assert!(e.to_string().starts_with("binding 127.0.0.1:1: "), "{e}");
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
    }
}

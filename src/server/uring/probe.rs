//! Kernel feature probe: what this kernel's io_uring offers, and which of it the engine
//! uses (everything, or only Linux 6.1's set when `--compat 6.1` forces the baseline).
//!
//! Detection is split from selection: [`Capabilities::detect`] asks the kernel (throwaway
//! rings and the opcode probe); [`Features::select`] is a pure function of those facts, so
//! the rules are unit-tested without a kernel.

use io_uring::{opcode, IoUring, Probe};

use crate::config::Compat;
use crate::error::{Error, Result};

/// Raw facts about the running kernel's io_uring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// `uname -r`.
    pub kernel: String,
    /// A ring could be set up with `SINGLE_ISSUER | DEFER_TASKRUN` (6.1): completions are
    /// produced only when the worker waits, in its thread, in batches; no IPIs
    /// interrupting it. Every ring the engine makes is set up so.
    pub deferred_taskrun: bool,
    /// `IORING_OP_SENDMSG_ZC` exists: the kernel is 6.1 or newer, so multishot accept and
    /// recv (5.19/6.0), buffer rings (5.19) and direct-descriptor accept (5.19) are there.
    pub has_6_1_opcodes: bool,
    /// `IORING_SETUP_NO_SQARRAY` accepted (6.6).
    pub no_sqarray: bool,
}

/// The io_uring feature set the engine runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// What was asked for.
    pub compat: Compat,
    /// `uname -r`, for the start-up line and bench metadata.
    pub kernel: String,
    /// Set the ring up without the SQ index array (6.6): one less indirection per SQE.
    pub no_sqarray: bool,
}

impl Capabilities {
    /// Ask the running kernel. Fails only if io_uring itself is unusable.
    pub fn detect() -> Result<Capabilities> {
        let kernel = kernel_release();
        let (ring, deferred_taskrun) = match build_probe_ring() {
            Ok(r) => r,
            Err(e) => return Err(unavailable(e, &kernel)),
        };
        let mut probe = Probe::new();
        let opcodes_known = ring.submitter().register_probe(&mut probe).is_ok();
        let has_6_1_opcodes = opcodes_known && probe.is_supported(opcode::SendMsgZc::CODE);
        let no_sqarray = IoUring::<io_uring::squeue::Entry>::builder()
            .setup_no_sqarray()
            .build(2)
            .is_ok();
        Ok(Capabilities {
            kernel,
            deferred_taskrun,
            has_6_1_opcodes,
            no_sqarray,
        })
    }
}

impl Features {
    /// Probe the kernel and pick the feature set (see [`Features::select`]).
    pub fn detect(compat: Compat) -> Result<Features> {
        Features::select(&Capabilities::detect()?, compat)
    }

    /// The feature set for `caps` under `compat`: newer-than-6.1 features only in `auto`,
    /// and an error naming `--engine epoll` when the kernel is below the 6.1 floor.
    pub fn select(caps: &Capabilities, compat: Compat) -> Result<Features> {
        if !caps.has_6_1_opcodes || !caps.deferred_taskrun {
            return Err(Error::msg(format!(
                "io_uring on kernel {} lacks what the uring engine needs (Linux 6.1: multishot \
                 recv, buffer rings, DEFER_TASKRUN); use --engine epoll",
                caps.kernel
            )));
        }
        let newer = compat == Compat::Auto;
        Ok(Features {
            compat,
            kernel: caps.kernel.clone(),
            no_sqarray: newer && caps.no_sqarray,
        })
    }

    /// The part of the start-up line that says what is in use.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            "multishot accept",
            "direct descriptors",
            "multishot recv",
            "provided buffer ring",
            "single-issuer",
            "defer-taskrun",
            "registered ring fd",
        ];
        if self.no_sqarray {
            parts.push("no-sqarray");
        }
        let set = match self.compat {
            Compat::Auto => "auto",
            Compat::V6_1 => "6.1 (forced)",
        };
        format!(
            "{}; feature set {set}, kernel {}",
            parts.join(", "),
            self.kernel
        )
    }
}

/// A tiny ring, and whether it could have `SINGLE_ISSUER | DEFER_TASKRUN`. A plain ring
/// is tried when those flags fail, so that an older kernel gets "lacks what the engine
/// needs" rather than "io_uring is unavailable".
fn build_probe_ring() -> std::io::Result<(IoUring, bool)> {
    let deferred = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_submit_all()
        .build(2);
    match deferred {
        Ok(r) => Ok((r, true)),
        Err(_) => IoUring::new(2).map(|r| (r, false)),
    }
}

/// The one line for a kernel where io_uring_setup itself fails.
fn unavailable(e: std::io::Error, kernel: &str) -> Error {
    let why = match e.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel was built without it".to_string(),
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "not permitted here (kernel.io_uring_disabled, a seccomp filter or a container policy)"
                .to_string()
        }
        _ => Error::from(e).to_string(),
    };
    Error::msg(format!(
        "io_uring is unavailable on kernel {kernel}: {why}; use --engine epoll"
    ))
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it with NUL-terminated strings.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modern() -> Capabilities {
        Capabilities {
            kernel: "6.18.0".into(),
            deferred_taskrun: true,
            has_6_1_opcodes: true,
            no_sqarray: true,
        }
    }

    #[test]
    fn auto_uses_everything_the_kernel_has() {
        let f = Features::select(&modern(), Compat::Auto).expect("modern kernel");
        assert!(f.no_sqarray);
        assert!(f.describe().contains("no-sqarray"));
    }

    #[test]
    fn compat_6_1_masks_newer_features() {
        let f = Features::select(&modern(), Compat::V6_1).expect("modern kernel");
        assert!(!f.no_sqarray);
        assert!(f.describe().contains("6.1 (forced)"));
        assert!(!f.describe().contains("no-sqarray"));
    }

    #[test]
    fn a_6_1_kernel_gets_the_baseline_even_in_auto() {
        let caps = Capabilities {
            kernel: "6.1.0-cloud".into(),
            no_sqarray: false,
            ..modern()
        };
        let f = Features::select(&caps, Compat::Auto).expect("6.1 is the floor");
        assert!(!f.no_sqarray);
    }

    #[test]
    fn below_the_floor_is_one_clear_error_naming_epoll() {
        for caps in [
            Capabilities {
                has_6_1_opcodes: false,
                ..modern()
            },
            Capabilities {
                deferred_taskrun: false,
                ..modern()
            },
        ] {
            let e = Features::select(&caps, Compat::Auto).expect_err("below floor");
            let s = e.to_string();
            assert!(s.contains("--engine epoll") && !s.contains('\n'), "{s}");
        }
    }

    #[test]
    fn unavailable_names_the_cause_and_the_fallback() {
        let e = unavailable(std::io::Error::from_raw_os_error(libc::EPERM), "6.18");
        let s = e.to_string();
        assert!(
            s.contains("not permitted") && s.contains("--engine epoll"),
            "{s}"
        );
        let e = unavailable(std::io::Error::from_raw_os_error(libc::ENOSYS), "6.18");
        assert!(e.to_string().contains("without it"));
    }
}

//! Network namespaces a test creates and removes: servers, checkers and sockets that
//! forge sources or bind well-known ports do it inside one, never on the host's own
//! network. Removal is in `Drop`, so it happens on a panic too; deleting a namespace
//! deletes the veth and dummy links inside it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// One namespace, loopback up; deleted on drop.
pub struct Netns {
    /// Its name (`ip netns` sees it under /run/netns).
    pub name: String,
}

/// Run `ip ARGS`, panicking with its stderr if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// A fresh namespace with `lo` up. Panics where this process is not root: a test
    /// that needs one and cannot make it fails, never passes as if it had run.
    pub fn new() -> Netns {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "this test needs root (network namespaces, raw sockets): run the tests as root, \
             or leave it out by name (cargo test -- --skip NAME)"
        );
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ringecho-t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Move the calling thread into the namespace: sockets it creates from now on live
    /// there (and stay there, whichever thread uses them later).
    pub fn enter(&self) {
        let f = File::open(format!("/run/netns/{}", self.name)).expect("open the netns");
        // SAFETY: setns on an open namespace file descriptor; only this thread moves.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }

    /// Run `f` on a thread inside the namespace and return its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter();
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// A veth pair between this namespace and `other`: `here` = (name, address/prefix)
    /// in this one, `there` likewise in `other`, both up, broadcast addresses set.
    pub fn veth_to(&self, other: &Netns, here: (&str, &str), there: (&str, &str)) {
        self.ip(&[
            "link",
            "add",
            here.0,
            "type",
            "veth",
            "peer",
            "name",
            there.0,
            "netns",
            &other.name,
        ]);
        self.ip(&["addr", "add", here.1, "brd", "+", "dev", here.0]);
        other.ip(&["addr", "add", there.1, "brd", "+", "dev", there.0]);
        self.ip(&["link", "set", here.0, "up"]);
        other.ip(&["link", "set", there.0, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

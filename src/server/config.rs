//! The server's configuration: the `ringecho serve` flags, their documented defaults, and
//! the validation that turns bad input into one clear sentence before any socket exists.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::bail;
use crate::error::{Context, Result};

/// Which event engine serves connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// Completion-driven: multishot accept + multishot recv from a provided buffer ring.
    Uring,
    /// Readiness-driven baseline: edge-triggered epoll, non-blocking sockets.
    Epoll,
}

impl Engine {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Uring => "uring",
            Engine::Epoll => "epoll",
        }
    }
}

/// Which transports are served (RFC 862 defines echo over both, on the same port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
    /// TCP and UDP on the same port number.
    Both,
}

impl Proto {
    /// Serves TCP?
    pub fn tcp(self) -> bool {
        self != Proto::Udp
    }

    /// Serves UDP?
    pub fn udp(self) -> bool {
        self != Proto::Tcp
    }
}

/// Which io_uring feature set the uring engine may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compat {
    /// Everything the running kernel offers (probed at start).
    Auto,
    /// Only what Linux 6.1 has, even on a newer kernel: the baseline path, forced for testing.
    #[value(name = "6.1")]
    V6_1,
}

/// `ringecho serve`: every flag with its default. Validated by [`ServeConfig::validate`].
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Event engine.
    #[arg(long, value_enum, default_value_t = Engine::Uring)]
    pub engine: Engine,

    /// Address to listen on. `::` listens on every IPv4 and IPv6 address (one dual-stack
    /// socket); the default keeps the echo port off the network.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// Port, for TCP and UDP alike (0 picks a free one; the start-up line says which).
    #[arg(long, default_value_t = 12346)]
    pub port: u16,

    /// Transports to serve.
    #[arg(long, value_enum, default_value_t = Proto::Both)]
    pub proto: Proto,

    /// UDP: datagrams per second accepted from one source address; the excess is
    /// dropped and counted [default: no limit].
    #[arg(long, value_name = "PPS")]
    pub udp_rate: Option<u32>,

    /// UDP: receive buffers per worker (a power of two, at most 4096), each big enough
    /// for the largest datagram (64 KiB).
    #[arg(long, default_value_t = 256)]
    pub udp_buffers: u32,

    /// Worker threads, each with its own SO_REUSEPORT listener [default: online CPUs].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Listen backlog (the kernel caps it at net.core.somaxconn).
    #[arg(long, default_value_t = 4096)]
    pub backlog: u32,

    /// Connections served at once, all workers together; beyond it new ones are closed
    /// at once and counted as refused.
    #[arg(long, default_value_t = 65536)]
    pub max_conns: u32,

    /// Pin worker i to CPU i (modulo the CPUs this process may run on).
    #[arg(long)]
    pub pin: bool,

    /// Print connections, bytes and echoes per second every SECS seconds (0 = never).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub stats: u64,

    /// Bytes each worker may hold for echoes its clients have not read yet, on either
    /// engine (suffixes K, M, G: KiB, MiB, GiB). Past three quarters of it, connections
    /// whose echo made no progress for half a second are shed; at all of it the epoll
    /// engine stops reading until memory is freed. The io_uring engine's receive-buffer
    /// pool is this size (rounded down to a power-of-two number of --buffer-size
    /// buffers), so it can never hold more.
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = parse_size)]
    pub hold_budget: u64,

    /// Close a connection whose echo has made no progress for SECS seconds while bytes
    /// wait for it (a client that stopped reading, or vanished); 0 = never.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub stall_timeout: u64,

    /// Size of one receive buffer in bytes (io_uring) / of the read chunk (epoll, at
    /// least 64 KiB). 64 KiB: a large message is one receive completion, not sixteen.
    #[arg(long, value_name = "BYTES", default_value_t = 65536)]
    pub buffer_size: u32,

    /// Receive buffers one connection may hold while its echo is unsent; past this the
    /// server stops reading from it until the client reads (backpressure). The epoll
    /// engine holds at most this many times --buffer-size bytes unsent per connection.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub conn_buffers: u32,

    /// io_uring feature set: `auto` uses what the kernel offers, `6.1` forces the baseline.
    /// The environment variable lets a whole test suite run on the baseline.
    #[arg(long, value_enum, env = "RINGECHO_COMPAT", default_value_t = Compat::Auto)]
    pub compat: Compat,
}

impl ServeConfig {
    /// Reject values that cannot work, with a sentence naming the flag.
    pub fn validate(&self) -> Result<()> {
        if self.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        // A broadcast or multicast address would make every datagram an echo to a whole
        // network. Only a non-loopback IPv4 address can be an interface's broadcast
        // address, so only then are the interfaces read.
        let ip = self.bind.to_canonical();
        let ifaces = if ip.is_ipv4() && !ip.is_loopback() && !ip.is_unspecified() {
            crate::udp::ifaddrs::Interfaces::read().context("listing the host's interfaces")?
        } else {
            Default::default()
        };
        if let Some(why) = crate::udp::ifaddrs::bind_refusal(self.bind, &ifaces) {
            bail!(
                "--bind {} {why}: an echo server there would answer a whole network",
                self.bind
            );
        }
        if let Some(t) = self.threads {
            if t > 1024 {
                bail!("--threads {t} is more than 1024");
            }
        }
        if self.backlog == 0 {
            bail!("--backlog must be at least 1");
        }
        if self.max_conns == 0 {
            bail!("--max-conns must be at least 1");
        }
        if !(64..=1 << 20).contains(&self.buffer_size) {
            bail!(
                "--buffer-size {} must be between 64 and 1048576 bytes",
                self.buffer_size
            );
        }
        if !self.udp_buffers.is_power_of_two() || !(2..=4096).contains(&self.udp_buffers) {
            bail!(
                "--udp-buffers {} must be a power of two between 2 and 4096",
                self.udp_buffers
            );
        }
        if self.udp_rate == Some(0) {
            bail!("--udp-rate must be at least 1 datagram per second");
        }
        if self.conn_buffers == 0 || self.conn_buffers > 4096 {
            bail!(
                "--conn-buffers {} must be between 1 and 4096",
                self.conn_buffers
            );
        }
        let per_conn = self.conn_byte_cap() as u64;
        if self.hold_budget < 2 * per_conn {
            bail!(
                "--hold-budget {} must be at least twice what one connection may hold \
                 (--conn-buffers x --buffer-size = {per_conn} bytes)",
                self.hold_budget
            );
        }
        if self.engine == Engine::Uring
            && self.hold_budget / u64::from(self.buffer_size) > u64::from(MAX_POOL_BUFFERS)
        {
            bail!(
                "--hold-budget {} is more than {MAX_POOL_BUFFERS} buffers of --buffer-size {} \
                 (the most one io_uring buffer ring has); raise --buffer-size or lower the budget",
                self.hold_budget,
                self.buffer_size
            );
        }
        if self.stall_timeout > 86_400 {
            bail!("--stall-timeout {} is more than a day", self.stall_timeout);
        }
        Ok(())
    }

    /// Worker count after applying the default.
    pub fn worker_count(&self) -> usize {
        self.threads.unwrap_or_else(crate::net::online_cpus)
    }

    /// The address the listeners bind.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// Bytes one connection may hold unsent (backpressure threshold), for the epoll engine.
    pub fn conn_byte_cap(&self) -> usize {
        self.conn_buffers as usize * self.buffer_size as usize
    }

    /// The io_uring engine's receive buffers per worker: the hold budget in buffers,
    /// rounded down to a power of two (the buffer ring's size must be one).
    pub fn pool_buffers(&self) -> u32 {
        let n =
            (self.hold_budget / u64::from(self.buffer_size)).clamp(1, u64::from(MAX_POOL_BUFFERS));
        1 << (63 - n.leading_zeros())
    }

    /// The stall timeout, if any.
    pub fn stall(&self) -> Option<Duration> {
        (self.stall_timeout > 0).then(|| Duration::from_secs(self.stall_timeout))
    }
}

/// Most buffers in one io_uring buffer ring (the kernel's limit is 32768 entries).
pub const MAX_POOL_BUFFERS: u32 = 32768;

/// A byte count with an optional binary suffix: `4096`, `512K`, `64M`, `1G`.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.eq_ignore_ascii_case(&'k') => (&t[..i], 10),
        Some((i, c)) if c.eq_ignore_ascii_case(&'m') => (&t[..i], 20),
        Some((i, c)) if c.eq_ignore_ascii_case(&'g') => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a byte count (e.g. 4096, 512K, 64M, 1G)"))?;
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0 && b <= 1 << 40)
        .ok_or_else(|| format!("'{s}' must be between 1 byte and 1 TiB"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeConfig,
    }

    fn cfg(args: &[&str]) -> ServeConfig {
        let mut v = vec!["serve"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).expect("parses").serve
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("2048G").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn the_pool_is_the_budget_in_buffers() {
        let c = cfg(&[]);
        assert_eq!(c.pool_buffers(), 1024, "64 MiB of 64 KiB buffers");
        assert!(c.validate().is_ok());
        let c = cfg(&["--hold-budget", "100M"]);
        assert_eq!(c.pool_buffers(), 1024, "rounded down to a power of two");
        let c = cfg(&["--hold-budget", "32K", "--buffer-size", "512"]);
        assert_eq!(c.pool_buffers(), 64);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn budgets_too_small_or_too_big_are_refused() {
        let small = cfg(&["--hold-budget", "256K"]);
        let e = small.validate().expect_err("one connection's share");
        assert!(e.to_string().contains("--hold-budget"), "{e}");
        let big = cfg(&["--hold-budget", "4G", "--buffer-size", "4096"]);
        assert!(big.validate().is_err(), "a ring has at most 32768 buffers");
        let epoll = cfg(&[
            "--engine",
            "epoll",
            "--hold-budget",
            "4G",
            "--buffer-size",
            "4096",
        ]);
        assert!(epoll.validate().is_ok(), "epoll has no ring");
        assert!(cfg(&["--stall-timeout", "100000"]).validate().is_err());
        assert_eq!(cfg(&["--stall-timeout", "0"]).stall(), None);
    }
}

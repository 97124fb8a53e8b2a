//! The server's configuration: the `ringecho serve` flags, their documented defaults, and
//! the validation that turns bad input into one clear sentence before any socket exists.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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

    /// io_uring: receive buffers per worker (a power of two, at most 32768). With the
    /// default size, a 64 MiB pool per worker, of which only touched pages cost RSS.
    #[arg(long, default_value_t = 1024)]
    pub buffers: u32,

    /// Size of one receive buffer in bytes (io_uring) / of the read chunk (epoll, at
    /// least 64 KiB). 64 KiB: a large message is one receive completion, not sixteen
    /// (measured: 100 x 64 KiB echoes went from 0.69x to 0.86-0.99x epoll's rate).
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
        // network. Interfaces are read only if the address is not plainly unicast.
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
        if !self.buffers.is_power_of_two() || self.buffers > 32768 {
            bail!(
                "--buffers {} must be a power of two between 1 and 32768",
                self.buffers
            );
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
        if self.conn_buffers == 0 || self.conn_buffers >= self.buffers {
            bail!(
                "--conn-buffers {} must be at least 1 and less than --buffers ({})",
                self.conn_buffers,
                self.buffers
            );
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
}

//! The seed's burst workload (kecho's `bench.c`), kept so results line up with what its
//! users know: N threads wait at a barrier and are released together; each connects,
//! sends the 13-byte `dummy message`, reads the echo, closes. The time from send to full
//! echo is recorded per connection (connect time separately), over R rounds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::gate::Gate;
use super::hist;
use crate::error::{Error, Result};

/// The seed's message.
pub const MESSAGE: &[u8] = b"dummy message";

/// One connection's outcome in one round.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Round number (0-based).
    pub round: u32,
    /// Completion order within the round (0 = first echo back).
    pub rank: u32,
    /// connect() time, µs.
    pub connect_us: f64,
    /// Send to full echo, µs.
    pub response_us: f64,
}

/// A burst run's outcome.
#[derive(Debug)]
pub struct BurstResult {
    /// Successful connections, in completion order within each round.
    pub samples: Vec<Sample>,
    /// Response-time histogram (ns) over all rounds.
    pub response: Histogram<u64>,
    /// Connections that failed (connect, wrong echo, timeout).
    pub errors: u64,
}

/// The most burst threads: each takes ~4 memory maps (stack, guards, signal stack), and
/// past the kernel's map limit (65,530 by default) a thread that did start aborts the
/// process setting up its signal stack, which no error path can catch.
pub const MAX_THREADS: usize = 10_000;

/// Run `rounds` bursts of `threads` simultaneous connections against `addr`.
/// Refuse a burst no machine can run before anything connects (`bench burst` checks
/// this before probing the server, so a bad count is reported as such).
pub fn validate(threads: usize, rounds: u32) -> Result<()> {
    if threads == 0 || rounds == 0 {
        crate::bail!("burst needs at least one thread and one round");
    }
    if threads > MAX_THREADS {
        crate::bail!("--threads must be at most {MAX_THREADS} for a burst");
    }
    Ok(())
}

pub fn run(
    addr: SocketAddr,
    threads: usize,
    rounds: u32,
    timeout: Duration,
) -> Result<BurstResult> {
    validate(threads, rounds)?;
    crate::net::raise_nofile_limit();
    let mut result = BurstResult {
        samples: Vec::with_capacity(threads * rounds as usize),
        response: hist::new_histogram(),
        errors: 0,
    };
    for round in 0..rounds {
        let gate = Arc::new(Gate::new(threads));
        // (finish time, connect, response) per successful thread; ranked afterwards.
        let done: Arc<Mutex<Vec<(Instant, Duration, Duration)>>> =
            Arc::new(Mutex::new(Vec::with_capacity(threads)));
        let mut handles = Vec::with_capacity(threads);
        let mut failed = None;
        for t in 0..threads {
            let (g, done) = (Arc::clone(&gate), Arc::clone(&done));
            let spawned = std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    if !g.arrive() {
                        return;
                    }
                    let r = one(addr, timeout);
                    if let Ok(x) = r {
                        if let Ok(mut d) = done.lock() {
                            d.push(x);
                        }
                    }
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    failed = Some(
                        Error::from(e)
                            .context(format!("spawning burst thread {} of {threads}", t + 1)),
                    );
                    // The ones already waiting would wait forever for this one.
                    gate.call_off();
                    break;
                }
            }
        }
        for h in handles {
            let _ = h.join();
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let mut done = done
            .lock()
            .map_err(|_| Error::msg("burst result lock poisoned"))?
            .clone();
        result.errors += (threads - done.len()) as u64;
        done.sort_by_key(|d| d.0);
        for (rank, (_, connect, response)) in done.iter().enumerate() {
            hist::record(&mut result.response, response.as_nanos() as u64);
            result.samples.push(Sample {
                round,
                rank: rank as u32,
                connect_us: connect.as_secs_f64() * 1e6,
                response_us: response.as_secs_f64() * 1e6,
            });
        }
    }
    Ok(result)
}

/// One connection: (finished at, connect time, response time), or why it failed.
fn one(addr: SocketAddr, timeout: Duration) -> std::io::Result<(Instant, Duration, Duration)> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    let connected = t0.elapsed();
    s.set_read_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let t1 = Instant::now();
    s.write_all(MESSAGE)?;
    let mut buf = [0u8; 13];
    s.read_exact(&mut buf)?;
    let response = t1.elapsed();
    if buf != MESSAGE {
        return Err(std::io::Error::other("wrong echo"));
    }
    Ok((Instant::now(), connected, response))
}

/// Mean response per rank over the rounds: the seed's `bench.txt` (rank, average µs).
pub fn mean_by_rank(samples: &[Sample]) -> Vec<(u32, f64)> {
    let max = samples.iter().map(|s| s.rank).max().map_or(0, |m| m + 1);
    let mut sum = vec![(0.0f64, 0u32); max as usize];
    for s in samples {
        let e = &mut sum[s.rank as usize];
        e.0 += s.response_us;
        e.1 += 1;
    }
    sum.iter()
        .enumerate()
        .filter(|(_, e)| e.1 > 0)
        .map(|(r, e)| (r as u32, e.0 / f64::from(e.1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_by_rank_averages_each_rank_over_rounds() {
        let s = |round, rank, response_us| Sample {
            round,
            rank,
            connect_us: 1.0,
            response_us,
        };
        let v = mean_by_rank(&[s(0, 0, 10.0), s(0, 1, 30.0), s(1, 0, 20.0), s(1, 1, 50.0)]);
        assert_eq!(v, vec![(0, 15.0), (1, 40.0)]);
        assert!(mean_by_rank(&[]).is_empty());
    }
}

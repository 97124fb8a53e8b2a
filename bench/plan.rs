//! bench-all's schedule: one list of steps, in run order, made once from the profile and
//! the servers. The phases run exactly these steps, and the step count, the planned time
//! and the ETA come from the same list, so the plan cannot disagree with the run.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::all::Profile;
use super::all_repeat;

/// The phases of a run, in the order they run; each writes its own files when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// The closed-loop matrix of connections × message sizes.
    Throughput,
    /// Open loop at fractions of epoll's closed-loop peak.
    Latency,
    /// The seed's burst: N connections released at once.
    Burst,
    /// UDP closed loop: client sockets × datagram sizes.
    Udp,
    /// UDP open loop at fractions of epoll's UDP peak.
    UdpLatency,
    /// The target points again, in interleaved rounds.
    Repeated,
    /// Idle-connection memory, each server freshly started.
    Memory,
}

impl Phase {
    /// Every phase, in run order.
    pub const ALL: [Phase; 7] = [
        Phase::Throughput,
        Phase::Latency,
        Phase::Burst,
        Phase::Udp,
        Phase::UdpLatency,
        Phase::Repeated,
        Phase::Memory,
    ];

    /// As the console and the metadata name it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Throughput => "throughput",
            Phase::Latency => "latency",
            Phase::Burst => "burst",
            Phase::Udp => "UDP",
            Phase::UdpLatency => "UDP latency",
            Phase::Repeated => "repeated",
            Phase::Memory => "memory",
        }
    }
}

/// What one step measures. Open-loop rates are fractions of a peak measured earlier in
/// the run, so a step names the fraction; the phase resolves it to a rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Work {
    Closed {
        conns: usize,
        size: usize,
    },
    Open {
        conns: usize,
        size: usize,
        percent: u32,
    },
    Burst {
        threads: usize,
        rounds: u32,
    },
    UdpClosed {
        sockets: usize,
        size: usize,
    },
    UdpOpen {
        sockets: usize,
        size: usize,
        percent: u32,
    },
    /// A target point again, in `round` (from 1) of `rounds`.
    Repeat {
        point: all_repeat::TargetPoint,
        round: u32,
        rounds: u32,
    },
    /// Idle connections held open.
    Memory {
        conns: usize,
    },
}

/// One measurement of one server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub phase: Phase,
    /// Index into the run's servers.
    pub server: usize,
    pub work: Work,
    /// Planned seconds, for the ETA.
    pub secs: f64,
}

/// The servers a plan is for: how many, which serve UDP, which have a process (the memory
/// phase measures those in RSS and the module in kernel memory).
#[derive(Debug, Clone, Copy)]
pub struct ServerKind {
    pub udp: bool,
}

/// Every step of a run, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

/// Planned seconds of a memory step (connect, settle, read; close).
const MEMORY_STEP_SECS: f64 = 4.0;

impl Plan {
    /// The schedule of `profile` against `servers`. Servers are interleaved inside every
    /// point, so drift hits all alike; the repeated phase reverses their order every
    /// other round (A B, B A, ...), so a machine that drifts during a round favours none.
    pub fn new(p: &Profile, servers: &[ServerKind]) -> Plan {
        let closed = (p.warmup + p.secs).as_secs_f64() + 0.1;
        let open = (p.warmup + p.latency_secs).as_secs_f64() + 0.2;
        let udp_step = (p.udp_warmup + p.udp_secs).as_secs_f64();
        let all: Vec<usize> = (0..servers.len()).collect();
        let udp: Vec<usize> = all.iter().copied().filter(|&i| servers[i].udp).collect();
        let mut steps = Vec::new();
        let mut each = |phase: Phase, who: &[usize], work: Work, secs: f64| {
            for &server in who {
                steps.push(Step {
                    phase,
                    server,
                    work,
                    secs,
                });
            }
        };
        for &size in &p.sizes {
            for &conns in &p.conns {
                each(
                    Phase::Throughput,
                    &all,
                    Work::Closed { conns, size },
                    closed,
                );
            }
        }
        for &percent in &p.latency_percents {
            let work = Work::Open {
                conns: p.latency_conns,
                size: p.latency_size,
                percent,
            };
            each(Phase::Latency, &all, work, open);
        }
        let burst = Work::Burst {
            threads: p.burst_threads,
            rounds: p.burst_rounds,
        };
        each(Phase::Burst, &all, burst, 0.5 * f64::from(p.burst_rounds));
        for &size in &p.udp_sizes {
            for &sockets in &p.udp_sockets {
                let work = Work::UdpClosed { sockets, size };
                each(Phase::Udp, &udp, work, udp_step + 0.1);
            }
        }
        for &percent in &p.udp_latency_percents {
            let work = Work::UdpOpen {
                sockets: p.udp_latency_sockets,
                size: p.udp_latency_size,
                percent,
            };
            each(Phase::UdpLatency, &udp, work, udp_step + 0.2);
        }
        let targets = all_repeat::targets(&p.conns, &p.sizes, &p.latency_percents);
        let rounds = p.repeat_rounds;
        let reversed: Vec<usize> = all.iter().rev().copied().collect();
        for round in 1..=rounds {
            for &point in &targets {
                let order = if round % 2 == 1 { &all } else { &reversed };
                let work = Work::Repeat {
                    point,
                    round,
                    rounds,
                };
                each(
                    Phase::Repeated,
                    order,
                    work,
                    if point.open { open } else { closed },
                );
            }
        }
        let idle = p.conns.iter().copied().max().unwrap_or(0).max(10_000);
        each(
            Phase::Memory,
            &all,
            Work::Memory { conns: idle },
            MEMORY_STEP_SECS,
        );
        Plan { steps }
    }

    /// The steps of `phase`, in order.
    pub fn of(&self, phase: Phase) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.phase == phase)
    }

    /// Steps of `phase`.
    pub fn count(&self, phase: Phase) -> usize {
        self.of(phase).count()
    }

    /// Planned seconds of the whole run.
    pub fn secs(&self) -> f64 {
        self.steps.iter().map(|s| s.secs).sum()
    }
}

/// A progress bar over the plan's seconds (on a terminal), plus one plain line per
/// finished step with an ETA (always, so logs show progress too). The ETA is ours alone:
/// the bar shows none, since indicatif's own estimate, from the bar's recent speed,
/// disagreed with the line's.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    planned_total: f64,
    planned_done: f64,
    step: usize,
    steps: usize,
}

impl Progress {
    /// Progress through `plan`.
    pub fn new(plan: &Plan) -> Progress {
        let planned_total = plan.secs();
        let bar = ProgressBar::new((planned_total * 1000.0) as u64);
        // The template is a constant that indicatif parses; a failure would only lose
        // the bar's layout, so fall back to the default style.
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:24}] {percent:>3}% {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar,
            started: Instant::now(),
            planned_total,
            planned_done: 0.0,
            step: 0,
            steps: plan.steps.len(),
        }
    }

    /// Say what runs next.
    pub fn starting(&self, what: String) {
        self.bar.set_message(what);
    }

    /// `step` finished with result `line`, and what went wrong at the point (the rule's
    /// reasons, or "") on an indented line of its own, so the result line stays short.
    pub fn finished(&mut self, step: &Step, line: &str, notes: &str) {
        self.step += 1;
        self.planned_done += step.secs;
        self.bar.set_position((self.planned_done * 1000.0) as u64);
        // Remaining planned time, scaled by how far reality ran from the plan so far.
        let pace = self.started.elapsed().as_secs_f64() / self.planned_done.max(1e-9);
        let eta = (self.planned_total - self.planned_done).max(0.0) * pace;
        let width = self.steps.to_string().len();
        let text = format!(
            "[{:>width$}/{}] {line}  eta {}",
            self.step,
            self.steps,
            format_eta(eta)
        );
        let indent = 2 * width + 4;
        self.bar.suspend(|| {
            println!("{text}");
            if !notes.is_empty() {
                println!(
                    "{}",
                    super::all::fit(&format!("{:indent$}{notes}", ""), indent)
                );
            }
        });
    }

    /// A line of the harness's own between steps (a phase's files written, a stop).
    pub fn say(&self, line: &str) {
        self.bar
            .suspend(|| println!("{}", super::all::fit(line, 2)));
    }

    /// Clear the bar.
    pub fn done(&self) {
        self.bar.finish_and_clear();
    }
}

/// "42s", "7m05s", "1h02m": a countdown as short as its size allows.
pub fn format_eta(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(udp: &[bool]) -> Vec<ServerKind> {
        udp.iter().map(|&udp| ServerKind { udp }).collect()
    }

    #[test]
    fn the_quick_plan_is_the_profile_times_the_servers() {
        let p = Profile::new(true);
        // uring, epoll (UDP) and the module (TCP only).
        let plan = Plan::new(&p, &servers(&[true, true, false]));
        assert_eq!(plan.count(Phase::Throughput), 3 * 2 * 3);
        assert_eq!(plan.count(Phase::Latency), 3);
        assert_eq!(plan.count(Phase::Burst), 3);
        assert_eq!(
            plan.count(Phase::Udp),
            2 * 2 * 2,
            "the module serves no UDP"
        );
        assert_eq!(plan.count(Phase::UdpLatency), 2);
        // Quick: 100 × 64 B closed and the 50% open point, 2 rounds, 3 servers.
        assert_eq!(plan.count(Phase::Repeated), 2 * 2 * 3);
        assert_eq!(plan.count(Phase::Memory), 3);
        let sum: usize = Phase::ALL.iter().map(|&ph| plan.count(ph)).sum();
        assert_eq!(sum, plan.steps.len());
        // Phases run in order, never interleaved.
        assert!(plan.steps.windows(2).all(|w| w[0].phase <= w[1].phase));
        let planned = plan.secs();
        assert!(planned > 30.0 && planned < 120.0, "{planned}");
    }

    #[test]
    fn servers_interleave_per_point_and_rounds_alternate_their_order() {
        let p = Profile::new(true);
        let plan = Plan::new(&p, &servers(&[true, true]));
        let tp: Vec<(usize, Work)> = plan
            .of(Phase::Throughput)
            .map(|s| (s.server, s.work))
            .collect();
        assert_eq!(tp[0], (0, Work::Closed { conns: 1, size: 64 }));
        assert_eq!(tp[1], (1, Work::Closed { conns: 1, size: 64 }));
        assert_eq!(
            tp[2].1,
            Work::Closed {
                conns: 10,
                size: 64
            }
        );
        assert_eq!(
            tp.last().map(|t| t.1),
            Some(Work::Closed {
                conns: 100,
                size: 4096
            })
        );
        let order: Vec<(u32, usize)> = plan
            .of(Phase::Repeated)
            .map(|s| match s.work {
                Work::Repeat { round, .. } => (round, s.server),
                _ => (0, 99),
            })
            .collect();
        assert_eq!(order[..2], [(1, 0), (1, 1)]);
        assert_eq!(order[4..6], [(2, 1), (2, 0)], "round 2 reversed");
    }

    #[test]
    fn eta_reads_as_words() {
        assert_eq!(format_eta(-3.0), "0s");
        assert_eq!(format_eta(42.4), "42s");
        assert_eq!(format_eta(59.6), "1m00s");
        assert_eq!(format_eta(462.0), "7m42s");
        assert_eq!(format_eta(3725.0), "1h02m");
    }
}

//! The one validity rule of every measurement bench-all and `bench` make: what a point
//! must look like before its figures are about the server rather than about a host that
//! stalled or a load generator that could not keep up. Every phase's rows describe
//! themselves as an [`Observed`]; [`reasons`] judges it. An invalid measurement is left
//! out of every median, drawn hollow, and listed under problems. Only broken echoes fail
//! a run ([`Reason::is_failure`]: wrong bytes, resets, failed connects, or no echo at
//! all); the rest (stalls, a rate not kept, loss, a lagging load generator) are results
//! about the server or the host, in `bench` and `bench-all` alike.

use std::fmt;

/// An open-loop measurement that achieved less than this share of its rate measured a
/// server (or host) that could not keep the schedule, not its latency at that rate: a
/// healthy point achieves the rate exactly (every message due in the window is echoed),
/// and 10% slack leaves room for the window's edges.
pub const MIN_RATE_KEPT: f64 = 0.9;

/// Fewer echoes than this in the measured window and a measurement is invalid: a p99 of
/// under 1,000 samples rests on fewer than ten of them.
pub const MIN_ECHOES: u64 = 1000;

/// Above this send-lag p99, µs, the open-loop load generator, not the server, set the
/// pace: it sent late on its own account.
pub const LAG_SATURATED_US: f64 = 100.0;

/// A closed-loop load thread busy for at least this share of its CPU, %, is the limit:
/// every server answers as fast as it is asked, so a ratio is the client's.
pub const CLIENT_LIMIT_PCT: f64 = 90.0;

/// UDP: more than this share of datagrams lost, %, and the echoes/s and latency describe
/// the survivors of a drop, not the echo path.
pub const MAX_LOSS_PCT: f64 = 1.0;

/// The server's or the load generator's threads waited for a CPU (runnable, not
/// running) for more than this share of the window, %: something else had their CPU (a
/// CPU hog, a noisy neighbour, a build), so the figures measure the host's load, not the
/// echo path. Each side has a CPU of its own, so on a quiet host they wait for almost
/// nothing.
pub const MAX_CPU_WAIT_PCT: f64 = 10.0;

/// Open loop over TCP: a corrected p50 above one slot of a connection's schedule
/// (connections ÷ rate) means most messages were due while their connection's previous
/// message was still out: the point measured a queue, not the latency at that rate. The
/// send lag cannot show this: it is sampled only where the connection was idle at its
/// slot, so a backlog leaves it with no samples at all.
pub fn backlog_slot_us(conns: u64, rate: f64) -> f64 {
    conns as f64 / rate * 1e6
}

/// What a measurement saw, as far as the rule needs: every row type says this of
/// itself. `None`: not measured or not kept (an older file), and not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observed {
    /// Open loop (messages on a schedule at `rate`) or closed loop.
    pub open: bool,
    /// Connections (UDP: client sockets).
    pub conns: u64,
    /// Open loop: the schedule's messages per second (0 for the closed loop).
    pub rate: f64,
    /// Echoes in the measured window.
    pub echoes: Option<u64>,
    /// Echoes per second (open loop: achieved).
    pub echoes_per_sec: f64,
    /// Wrong bytes, resets, failed connects (UDP: wrong bytes and duplicates).
    pub errors: u64,
    /// Open loop: messages due in the window, and those never echoed.
    pub scheduled: Option<u64>,
    pub unfinished: Option<u64>,
    /// Closed loop over TCP: connections that made no progress in the whole window.
    pub stalled: Option<u64>,
    /// UDP: datagrams counted and of them lost.
    pub sent: Option<u64>,
    pub lost: Option<u64>,
    /// Open loop: p99 of the load generator's own send lateness, µs.
    pub lag_p99_us: Option<f64>,
    /// Open loop over TCP (one message in flight per connection): the corrected p50,
    /// µs, checked against one slot; `None` where messages do not queue behind each
    /// other (UDP) or it was not kept.
    pub queued_p50_us: Option<f64>,
    /// Closed loop: the load generator's CPU, % of one CPU, and its threads.
    pub client_cpu_pct: Option<f64>,
    pub load_threads: Option<u64>,
    /// How long the server's and the load generator's threads waited for a CPU, % of
    /// the window (none: no process to read, as for the module, or not kept).
    pub server_wait_pct: Option<f64>,
    pub client_wait_pct: Option<f64>,
}

/// Why a measurement does not count.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Wrong bytes, resets or failed connects: fails the run.
    Errors(u64),
    /// Nothing came back: fails the run (a server that echoes nothing is broken).
    NoEchoes,
    /// Echoes in the window, under [`MIN_ECHOES`].
    TooFewEchoes(u64),
    /// Open loop: achieved below [`MIN_RATE_KEPT`] of the rate.
    RateNotKept { achieved: f64, rate: f64 },
    /// Open loop: messages due in the window never echoed.
    Unfinished { unfinished: u64, scheduled: u64 },
    /// Closed loop: connections that made no progress in the whole window.
    Stalled(u64),
    /// UDP: more than [`MAX_LOSS_PCT`] of the datagrams lost.
    Lost { lost: u64, sent: u64 },
    /// Open loop: the load generator's send lag p99, µs, above [`LAG_SATURATED_US`].
    LoadGeneratorBehind(f64),
    /// Open loop: corrected p50 above one slot ([`backlog_slot_us`]), both µs.
    Backlogged { p50_us: f64, slot_us: f64 },
    /// The server's (or, `server` false, the load generator's) threads waited for a CPU
    /// for this share of the window, %, above [`MAX_CPU_WAIT_PCT`].
    CpuTaken { server: bool, pct: f64 },
}

impl Reason {
    /// Whether this reason fails the run (broken or no echoes), rather than only
    /// leaving the measurement out.
    pub fn is_failure(&self) -> bool {
        matches!(self, Reason::Errors(_) | Reason::NoEchoes)
    }
}

// No commas: the reasons go into one CSV field.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Errors(n) => write!(f, "{n} errors (wrong bytes/resets/failed connects)"),
            Reason::NoEchoes => write!(f, "no echo completed"),
            Reason::TooFewEchoes(n) => write!(f, "only {n} echoes (floor {MIN_ECHOES})"),
            Reason::RateNotKept { achieved, rate } => write!(
                f,
                "rate not kept: {achieved:.0} of {rate:.0}/s ({:.0}%; floor {:.0}%)",
                achieved / rate * 100.0,
                MIN_RATE_KEPT * 100.0
            ),
            Reason::Unfinished {
                unfinished,
                scheduled,
            } => write!(f, "{unfinished} of {scheduled} messages unfinished"),
            Reason::Stalled(n) => write!(f, "{n} connections stalled for the whole window"),
            Reason::Lost { lost, sent } => write!(
                f,
                "{lost} of {sent} datagrams lost ({:.2}%; limit {MAX_LOSS_PCT}%)",
                *lost as f64 / (*sent).max(1) as f64 * 100.0
            ),
            Reason::Backlogged { p50_us, slot_us } => write!(
                f,
                "backlogged: corrected p50 {p50_us:.0} µs above one slot of a connection \
                 ({slot_us:.0} µs)"
            ),
            Reason::CpuTaken { server, pct } => write!(
                f,
                "the {} waited for a CPU {pct:.0}% of the window (limit {MAX_CPU_WAIT_PCT:.0}%): \
                 the host was busy",
                if *server { "server" } else { "load generator" }
            ),
            Reason::LoadGeneratorBehind(lag) => write!(
                f,
                "load generator behind (send lag p99 {lag:.0} µs; limit {LAG_SATURATED_US:.0}): \
                 it measured the harness"
            ),
        }
    }
}

/// The rule: every reason `o` does not count, none when it is valid.
pub fn reasons(o: &Observed) -> Vec<Reason> {
    let mut why = Vec::new();
    if o.errors > 0 {
        why.push(Reason::Errors(o.errors));
    }
    let none = match o.echoes {
        Some(n) => n == 0,
        None => o.echoes_per_sec <= 0.0 || !o.echoes_per_sec.is_finite(),
    };
    if none {
        why.push(Reason::NoEchoes);
    } else if let Some(n) = o.echoes.filter(|&n| n < MIN_ECHOES) {
        why.push(Reason::TooFewEchoes(n));
    }
    for (server, pct) in [(true, o.server_wait_pct), (false, o.client_wait_pct)] {
        if let Some(pct) = pct.filter(|&p| p > MAX_CPU_WAIT_PCT) {
            why.push(Reason::CpuTaken { server, pct });
        }
    }
    if let (Some(lost), Some(sent)) = (o.lost, o.sent) {
        if sent > 0 && lost as f64 > MAX_LOSS_PCT / 100.0 * sent as f64 {
            why.push(Reason::Lost { lost, sent });
        }
    }
    if o.open {
        if o.rate > 0.0 && !none && o.echoes_per_sec < MIN_RATE_KEPT * o.rate {
            why.push(Reason::RateNotKept {
                achieved: o.echoes_per_sec,
                rate: o.rate,
            });
        }
        if let (Some(unfinished), Some(scheduled)) = (o.unfinished, o.scheduled) {
            if unfinished > 0 {
                why.push(Reason::Unfinished {
                    unfinished,
                    scheduled,
                });
            }
        }
        if let Some(lag) = o.lag_p99_us.filter(|&l| l > LAG_SATURATED_US) {
            why.push(Reason::LoadGeneratorBehind(lag));
        }
        if let Some(p50_us) = o.queued_p50_us.filter(|_| o.rate > 0.0) {
            let slot_us = backlog_slot_us(o.conns, o.rate);
            if p50_us > slot_us {
                why.push(Reason::Backlogged { p50_us, slot_us });
            }
        }
    } else if let Some(n) = o.stalled.filter(|&n| n > 0) {
        why.push(Reason::Stalled(n));
    }
    why
}

/// The reasons as one text ("" when valid), as the CSV files' `problems` column and the
/// problem lists write them.
pub fn describe(why: &[Reason]) -> String {
    why.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether the load generator was the limit (closed loop: its threads at least
/// [`CLIENT_LIMIT_PCT`] busy): its CPU share then, or `None`. Not a reason to leave the
/// point out (the echoes are real), but the point compares the client, and says so.
pub fn client_bound(o: &Observed) -> Option<f64> {
    let (pct, threads) = (o.client_cpu_pct?, o.load_threads?.max(1));
    (!o.open && pct >= CLIENT_LIMIT_PCT * threads as f64).then_some(pct)
}

/// Rows that the rule can judge: every phase's row type.
pub trait Judged {
    /// What the row saw.
    fn observed(&self) -> Observed;

    /// Why it does not count (none: valid).
    fn reasons(&self) -> Vec<Reason> {
        reasons(&self.observed())
    }

    /// Counted by the rule.
    fn valid(&self) -> bool {
        self.reasons().is_empty()
    }

    /// Failed by the rule (broken echoes).
    fn failed(&self) -> bool {
        self.reasons().iter().any(Reason::is_failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A healthy closed-loop point.
    fn closed() -> Observed {
        Observed {
            conns: 100,
            echoes: Some(50_000),
            echoes_per_sec: 50_000.0,
            stalled: Some(0),
            client_cpu_pct: Some(40.0),
            load_threads: Some(1),
            ..Observed::default()
        }
    }

    /// A healthy open-loop point at 10,000/s over 100 connections (slot 10 ms).
    fn open() -> Observed {
        Observed {
            open: true,
            conns: 100,
            rate: 10_000.0,
            echoes: Some(10_000),
            echoes_per_sec: 10_000.0,
            scheduled: Some(10_000),
            unfinished: Some(0),
            lag_p99_us: Some(20.0),
            queued_p50_us: Some(30.0),
            ..Observed::default()
        }
    }

    #[test]
    fn healthy_points_have_no_reason() {
        assert_eq!(reasons(&closed()), vec![]);
        assert_eq!(reasons(&open()), vec![]);
        assert_eq!(client_bound(&closed()), None);
    }

    #[test]
    fn each_reason_on_its_own() {
        let cases: Vec<(Observed, Reason)> = vec![
            (
                Observed {
                    errors: 3,
                    ..closed()
                },
                Reason::Errors(3),
            ),
            (
                Observed {
                    echoes: Some(0),
                    echoes_per_sec: 0.0,
                    ..closed()
                },
                Reason::NoEchoes,
            ),
            (
                Observed {
                    echoes: Some(999),
                    ..closed()
                },
                Reason::TooFewEchoes(999),
            ),
            (
                Observed {
                    stalled: Some(7),
                    ..closed()
                },
                Reason::Stalled(7),
            ),
            (
                Observed {
                    server_wait_pct: Some(35.0),
                    ..closed()
                },
                Reason::CpuTaken {
                    server: true,
                    pct: 35.0,
                },
            ),
            (
                Observed {
                    client_wait_pct: Some(10.5),
                    ..open()
                },
                Reason::CpuTaken {
                    server: false,
                    pct: 10.5,
                },
            ),
            (
                Observed {
                    sent: Some(1000),
                    lost: Some(11),
                    ..closed()
                },
                Reason::Lost {
                    lost: 11,
                    sent: 1000,
                },
            ),
            (
                Observed {
                    echoes_per_sec: 8_999.0,
                    ..open()
                },
                Reason::RateNotKept {
                    achieved: 8_999.0,
                    rate: 10_000.0,
                },
            ),
            (
                Observed {
                    unfinished: Some(4),
                    ..open()
                },
                Reason::Unfinished {
                    unfinished: 4,
                    scheduled: 10_000,
                },
            ),
            (
                Observed {
                    lag_p99_us: Some(101.0),
                    ..open()
                },
                Reason::LoadGeneratorBehind(101.0),
            ),
            (
                Observed {
                    queued_p50_us: Some(10_001.0),
                    ..open()
                },
                Reason::Backlogged {
                    p50_us: 10_001.0,
                    slot_us: 10_000.0,
                },
            ),
        ];
        for (o, want) in cases {
            assert_eq!(reasons(&o), vec![want.clone()], "{o:?}");
            assert_eq!(
                want.is_failure(),
                matches!(want, Reason::Errors(_) | Reason::NoEchoes)
            );
        }
    }

    #[test]
    fn limits_are_inclusive_where_the_constants_say_so() {
        let at_floor = Observed {
            echoes: Some(MIN_ECHOES),
            ..closed()
        };
        assert_eq!(reasons(&at_floor), vec![]);
        let loss_at_limit = Observed {
            sent: Some(1000),
            lost: Some(10),
            ..closed()
        };
        assert_eq!(reasons(&loss_at_limit), vec![], "1.0% is at the limit");
        let kept = Observed {
            echoes_per_sec: 9_000.0,
            ..open()
        };
        assert_eq!(reasons(&kept), vec![], "90% is kept");
        let waited = Observed {
            server_wait_pct: Some(MAX_CPU_WAIT_PCT),
            client_wait_pct: Some(MAX_CPU_WAIT_PCT),
            ..closed()
        };
        assert_eq!(reasons(&waited), vec![], "at the limit");
    }

    #[test]
    fn what_was_not_kept_is_not_checked() {
        // An older file: no counts, only the rate; judged on echoes/s alone.
        let legacy = Observed {
            echoes: None,
            stalled: None,
            ..closed()
        };
        assert_eq!(reasons(&legacy), vec![]);
        let silent = Observed {
            echoes_per_sec: f64::NAN,
            ..legacy
        };
        assert_eq!(reasons(&silent), vec![Reason::NoEchoes]);
        // Stalls are a closed-loop figure; queueing an open-loop TCP one.
        let open_stalled = Observed {
            stalled: Some(3),
            ..open()
        };
        assert_eq!(reasons(&open_stalled), vec![]);
        let udp_open = Observed {
            queued_p50_us: None,
            ..open()
        };
        assert_eq!(reasons(&udp_open), vec![]);
    }

    #[test]
    fn a_busy_load_generator_is_named_but_not_left_out() {
        let busy = Observed {
            client_cpu_pct: Some(180.0),
            load_threads: Some(2),
            ..closed()
        };
        assert_eq!(client_bound(&busy), Some(180.0));
        assert_eq!(reasons(&busy), vec![]);
        let half = Observed {
            client_cpu_pct: Some(100.0),
            ..busy
        };
        assert_eq!(client_bound(&half), None, "two threads at 50% each");
        assert_eq!(client_bound(&Observed { open: true, ..busy }), None);
    }

    #[test]
    fn descriptions_have_no_commas_and_join_with_semicolons() {
        let why = reasons(&Observed {
            errors: 2,
            echoes: Some(10),
            stalled: Some(1),
            ..closed()
        });
        assert_eq!(why.len(), 3);
        let text = describe(&why);
        assert!(!text.contains(','), "{text}");
        assert_eq!(text.matches("; ").count(), 2, "{text}");
        assert_eq!(describe(&[]), "");
    }
}

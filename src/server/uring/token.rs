//! `user_data` encoding: which operation a completion belongs to, for which connection,
//! and (for receives) which arming of it.
//!
//! Layout: `op` in bits 56..64, a 24-bit generation in bits 32..56, an index in bits 0..32.
//! The generation lets a cancel target one specific arming of a connection's receive, so a
//! late cancel can never hit the receive armed after it.

/// What an SQE was, as seen again in its CQE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The listener's multishot accept.
    Accept = 1,
    /// A connection's multishot receive.
    Recv = 2,
    /// A connection's one in-flight send.
    Send = 3,
    /// Cancellation of a connection's receive (backpressure or teardown).
    Cancel = 4,
    /// Closing a served connection's direct descriptor.
    Close = 5,
    /// Closing a connection refused by `--max-conns` (no connection state exists).
    Refuse = 6,
    /// Poll on the shutdown eventfd.
    Wake = 7,
    /// Cancel-everything at shutdown.
    CancelAll = 8,
}

const GEN_MASK: u32 = (1 << 24) - 1;

/// Pack an operation, a 24-bit generation and an index into `user_data`.
#[inline]
pub fn encode(op: Op, index: u32, generation: u32) -> u64 {
    (op as u64) << 56 | u64::from(generation & GEN_MASK) << 32 | u64::from(index)
}

/// Unpack `user_data`; `None` for an op byte we never issue.
#[inline]
pub fn decode(user_data: u64) -> Option<(Op, u32, u32)> {
    let op = match user_data >> 56 {
        1 => Op::Accept,
        2 => Op::Recv,
        3 => Op::Send,
        4 => Op::Cancel,
        5 => Op::Close,
        6 => Op::Refuse,
        7 => Op::Wake,
        8 => Op::CancelAll,
        _ => return None,
    };
    Some((op, user_data as u32, (user_data >> 32) as u32 & GEN_MASK))
}

/// The generation after `g`, wrapping within 24 bits.
#[inline]
pub fn next_generation(g: u32) -> u32 {
    g.wrapping_add(1) & GEN_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_op_and_extreme_fields() {
        for op in [
            Op::Accept,
            Op::Recv,
            Op::Send,
            Op::Cancel,
            Op::Close,
            Op::Refuse,
            Op::Wake,
            Op::CancelAll,
        ] {
            for (idx, gen) in [(0, 0), (u32::MAX, GEN_MASK), (12345, 77)] {
                assert_eq!(decode(encode(op, idx, gen)), Some((op, idx, gen)));
            }
        }
        assert_eq!(decode(0), None);
    }

    #[test]
    fn generation_wraps_in_24_bits() {
        assert_eq!(next_generation(GEN_MASK), 0);
        assert_eq!(encode(Op::Recv, 1, GEN_MASK + 1), encode(Op::Recv, 1, 0));
    }
}

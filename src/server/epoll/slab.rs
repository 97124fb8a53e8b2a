//! Connection storage: a slab (a `Vec` plus an intrusive free list) whose keys carry a
//! generation, so a key can travel through the kernel as epoll's `data.u64` and still be
//! recognised as stale when it comes back.
//!
//! Why the generation: one `epoll_wait` batch can hold two events for the same slot. If
//! handling the first closes the connection and an accept later in the same batch reuses
//! the slot, the second event (computed for the old socket) would otherwise be applied to
//! the new one. Each removal bumps the slot's generation, and [`Slab::get_mut`] refuses a
//! token whose generation no longer matches.

/// A slab key: slot index in the low 32 bits, the slot's generation in the high 32 bits.
///
/// The slab never issues index [`Token::MAX_INDEX`] or above, so tokens whose low half is
/// `u32::MAX` (or `u32::MAX - 1`) are free for the worker's own fixed registrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(u64);

impl Token {
    /// Exclusive upper bound of the slot indices the slab hands out.
    pub const MAX_INDEX: u32 = u32::MAX - 1;

    fn new(index: u32, generation: u32) -> Token {
        Token(u64::from(generation) << 32 | u64::from(index))
    }

    /// Rebuild a token from epoll's `data.u64`.
    pub fn from_raw(raw: u64) -> Token {
        Token(raw)
    }

    /// The value to hand to `epoll_ctl` as `data.u64`.
    pub fn raw(self) -> u64 {
        self.0
    }

    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// The slot index alone: what per-slot side tables (the hold table) are keyed by.
    pub fn slot(self) -> u32 {
        self.0 as u32
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// Sentinel "no next free slot" in the intrusive free list.
const NIL: u32 = u32::MAX;

struct Slot<T> {
    generation: u32,
    entry: Entry<T>,
}

enum Entry<T> {
    Occupied(T),
    /// A free slot links to the next free one, so the free list costs no extra memory.
    Vacant {
        next: u32,
    },
}

/// A generational slab. Insert and remove are O(1); freed slots are reused LIFO, which
/// keeps the hot set of slots (and their cache lines) small.
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: u32,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: NIL,
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Live entries.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// No live entries?
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Store `value`; returns its token, or gives the value back if every index is taken.
    pub fn insert(&mut self, value: T) -> Result<Token, T> {
        if self.free != NIL {
            let index = self.free;
            let slot = &mut self.slots[index as usize];
            let Entry::Vacant { next } = slot.entry else {
                unreachable!("free list points at an occupied slot");
            };
            self.free = next;
            slot.entry = Entry::Occupied(value);
            self.len += 1;
            return Ok(Token::new(index, slot.generation));
        }
        let index = self.slots.len();
        if index >= Token::MAX_INDEX as usize {
            return Err(value);
        }
        self.slots.push(Slot {
            generation: 0,
            entry: Entry::Occupied(value),
        });
        self.len += 1;
        Ok(Token::new(index as u32, 0))
    }

    /// The live entry `token` names, or `None` if it was removed (even if its slot has
    /// been reused since).
    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        match self.slots.get_mut(token.index()) {
            Some(Slot {
                generation,
                entry: Entry::Occupied(value),
            }) if *generation == token.generation() => Some(value),
            _ => None,
        }
    }

    /// The token of the live entry in slot `index`, if there is one.
    pub fn token_at(&self, index: u32) -> Option<Token> {
        match self.slots.get(index as usize) {
            Some(Slot {
                generation,
                entry: Entry::Occupied(_),
            }) => Some(Token::new(index, *generation)),
            _ => None,
        }
    }

    /// Take out the entry `token` names; its slot's generation moves on, so every copy of
    /// `token` still in flight goes stale.
    pub fn remove(&mut self, token: Token) -> Option<T> {
        let index = token.index();
        let slot = self.slots.get_mut(index)?;
        if slot.generation != token.generation() {
            return None;
        }
        match std::mem::replace(&mut slot.entry, Entry::Vacant { next: self.free }) {
            Entry::Occupied(value) => {
                // Wrapping is harmless: a stale token lives one loop iteration (an event
                // batch, a ready list), not 2^32 reuses of its slot.
                slot.generation = slot.generation.wrapping_add(1);
                self.free = index as u32;
                self.len -= 1;
                Some(value)
            }
            vacant => {
                // A token never issued for this slot's current generation: change nothing.
                slot.entry = vacant;
                None
            }
        }
    }

    /// Bytes one slot occupies (what an idle entry costs, besides what it owns).
    #[cfg(test)]
    pub fn slot_size() -> usize {
        std::mem::size_of::<Slot<T>>()
    }

    /// Remove every live entry (shutdown), leaving the slab empty.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.free = NIL;
        self.len = 0;
        self.slots.drain(..).filter_map(|slot| match slot.entry {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_u64() {
        let mut slab = Slab::default();
        let t = slab.insert("a").unwrap();
        let back = Token::from_raw(t.raw());
        assert_eq!(slab.get_mut(back), Some(&mut "a"));
    }

    #[test]
    fn a_reused_slot_rejects_the_old_token() {
        let mut slab = Slab::default();
        let old = slab.insert(1).unwrap();
        assert_eq!(slab.remove(old), Some(1));
        let new = slab.insert(2).unwrap();
        // Same slot, next generation: the event for the closed connection must not land
        // on the new one.
        assert_eq!(old.index(), new.index());
        assert_ne!(old, new);
        assert_eq!(slab.get_mut(old), None);
        assert_eq!(slab.remove(old), None);
        assert_eq!(slab.get_mut(new), Some(&mut 2));
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn double_remove_is_refused() {
        let mut slab = Slab::default();
        let t = slab.insert(7).unwrap();
        assert_eq!(slab.remove(t), Some(7));
        assert_eq!(slab.remove(t), None);
        assert!(slab.is_empty());
    }

    #[test]
    fn free_slots_are_reused_lifo_without_growing() {
        let mut slab = Slab::default();
        let toks: Vec<_> = (0..4).map(|i| slab.insert(i).unwrap()).collect();
        slab.remove(toks[1]);
        slab.remove(toks[3]);
        let a = slab.insert(10).unwrap();
        let b = slab.insert(11).unwrap();
        assert_eq!(a.index(), 3);
        assert_eq!(b.index(), 1);
        assert_eq!(slab.slots.len(), 4);
        let c = slab.insert(12).unwrap();
        assert_eq!(c.index(), 4);
        assert_eq!(slab.get_mut(toks[0]), Some(&mut 0));
        assert_eq!(slab.get_mut(toks[2]), Some(&mut 2));
    }

    #[test]
    fn generations_wrap_instead_of_panicking() {
        let mut slab = Slab::default();
        let t = slab.insert(()).unwrap();
        slab.slots[0].generation = u32::MAX;
        let t = Token::new(t.index() as u32, u32::MAX);
        slab.remove(t).unwrap();
        let again = slab.insert(()).unwrap();
        assert_eq!(again.generation(), 0);
    }

    #[test]
    fn issued_tokens_never_collide_with_reserved_ones() {
        // The worker reserves tokens whose low half is u32::MAX and u32::MAX - 1.
        let reserved = [Token(u64::MAX), Token(u64::MAX - 1)];
        let mut slab = Slab::default();
        for _ in 0..1000 {
            let t = slab.insert(()).unwrap();
            assert!(!reserved.contains(&t));
            assert!(t.index() < Token::MAX_INDEX as usize);
        }
        for r in reserved {
            assert_eq!(slab.get_mut(r), None);
        }
    }

    #[test]
    fn drain_yields_only_live_entries() {
        let mut slab = Slab::default();
        let toks: Vec<_> = (0..5).map(|i| slab.insert(i).unwrap()).collect();
        slab.remove(toks[2]);
        let mut left: Vec<_> = slab.drain().collect();
        left.sort();
        assert_eq!(left, vec![0, 1, 3, 4]);
        assert!(slab.is_empty());
        assert_eq!(slab.insert(9).unwrap().index(), 0);
    }
}

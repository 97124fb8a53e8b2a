//! A start line for threads that must begin together and that can be called off. A
//! `Barrier` cannot be: when spawning the k-th thread fails, the k-1 already waiting on it
//! would wait forever, and a scope joining them would never return.

use std::sync::{Condvar, Mutex, PoisonError};

/// Releases its waiters once `n` of them have arrived, or at once when called off.
pub struct Gate {
    /// (arrived, called off).
    state: Mutex<(usize, bool)>,
    cv: Condvar,
    n: usize,
}

impl Gate {
    /// A gate for `n` threads.
    pub fn new(n: usize) -> Gate {
        Gate {
            state: Mutex::new((0, false)),
            cv: Condvar::new(),
            n,
        }
    }

    /// Arrive and wait: true when all `n` arrived, false when the gate was called off
    /// (before or after).
    pub fn arrive(&self) -> bool {
        // The state is two plain numbers, valid whatever a panicking holder was doing.
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.0 += 1;
        if st.0 >= self.n {
            self.cv.notify_all();
        }
        while st.0 < self.n && !st.1 {
            st = self.cv.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        !st.1
    }

    /// Release every waiter, now and later, with `false`: not all of them will come.
    pub fn call_off(&self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.1 = true;
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn opens_when_all_arrive() {
        let g = Gate::new(3);
        let all = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..3).map(|_| sc.spawn(|| g.arrive())).collect();
            hs.into_iter()
                .map(|h| h.join().expect("join"))
                .collect::<Vec<_>>()
        });
        assert_eq!(all, [true, true, true]);
    }

    #[test]
    fn calling_off_releases_the_ones_waiting_for_a_thread_that_never_came() {
        let g = Gate::new(3);
        let start = Instant::now();
        let got = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..2).map(|_| sc.spawn(|| g.arrive())).collect();
            std::thread::sleep(Duration::from_millis(50));
            g.call_off();
            hs.into_iter()
                .map(|h| h.join().expect("join"))
                .collect::<Vec<_>>()
        });
        assert_eq!(got, [false, false]);
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(!g.arrive(), "a late arrival is released too");
    }
}

//! One computation at a time per key: whoever asks for a key while its value is being computed
//! waits for that computation, then finds its result cached instead of computing it again (the
//! campaign tallies after a merge, asked for by the dashboard, the dossier and the report at
//! once, are counted once).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

/// The keys being computed now, each with its turn.
pub struct Flights<K> {
    turns: Mutex<HashMap<K, Weak<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for Flights<K> {
    fn default() -> Self {
        Flights {
            turns: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> Flights<K> {
    /// Waits until no one else holds `key`'s turn, and holds it until the guard is dropped.
    /// Check the cache again after this returns: the computation waited for may have filled it.
    pub async fn turn(&self, key: &K) -> OwnedMutexGuard<()> {
        let turn = {
            let mut turns = self.turns.lock().expect("flights");
            // Turns nobody holds or waits for any more are forgotten.
            turns.retain(|_, t| t.strong_count() > 0);
            match turns.get(key).and_then(Weak::upgrade) {
                Some(turn) => turn,
                None => {
                    let turn = Arc::new(tokio::sync::Mutex::new(()));
                    turns.insert(key.clone(), Arc::downgrade(&turn));
                    turn
                }
            }
        };
        turn.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::Flights;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// The pattern the tallies follow: cached? else take the turn, look again, compute.
    async fn get(
        flights: &Flights<u32>,
        cache: &Mutex<HashMap<u32, u64>>,
        computed: &AtomicUsize,
        key: u32,
    ) -> u64 {
        if let Some(v) = cache.lock().unwrap().get(&key) {
            return *v;
        }
        let _turn = flights.turn(&key).await;
        if let Some(v) = cache.lock().unwrap().get(&key) {
            return *v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        computed.fetch_add(1, Ordering::SeqCst);
        cache.lock().unwrap().insert(key, u64::from(key) * 10);
        u64::from(key) * 10
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn askers_of_one_key_share_one_computation() {
        let flights = Arc::new(Flights::default());
        let cache = Arc::new(Mutex::new(HashMap::new()));
        let computed = Arc::new(AtomicUsize::new(0));
        let mut asks = Vec::new();
        for i in 0..20 {
            let (flights, cache, computed) = (flights.clone(), cache.clone(), computed.clone());
            asks.push(tokio::spawn(async move {
                get(&flights, &cache, &computed, i % 2).await
            }));
        }
        for (i, ask) in asks.into_iter().enumerate() {
            assert_eq!(ask.await.unwrap(), (i as u64 % 2) * 10);
        }
        // Twenty askers, two keys: two computations.
        assert_eq!(computed.load(Ordering::SeqCst), 2);
        // Nobody holds a turn now: the next ask forgets them.
        let _ = flights.turn(&7).await;
        assert!(flights.turns.lock().unwrap().len() <= 1);
    }

    #[tokio::test]
    async fn a_key_being_computed_does_not_hold_up_another() {
        use futures_util::FutureExt;
        let flights = Flights::default();
        let first = flights.turn(&1).await;
        assert!(
            flights.turn(&2).now_or_never().is_some(),
            "another key's turn is free"
        );
        assert!(
            flights.turn(&1).now_or_never().is_none(),
            "the same key's turn is taken"
        );
        drop(first);
        assert!(
            flights.turn(&1).now_or_never().is_some(),
            "and free once given back"
        );
    }
}

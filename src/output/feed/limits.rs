//! What one client may take of the feed, so that no client (or crowd of
//! them) can lock a viewer out or starve sampling:
//!
//! - **connections** and **streams** (`events`, `stream.mjpeg`) each have a
//!   budget ([`Slots`]: streams a small one of their own, apart from the
//!   connection cap) with a share per peer address; when a budget or a
//!   share is full, the newcomer takes the place of the oldest holder (of
//!   its own peer first, else of the peer holding the most), so a viewer
//!   always gets the page and a stream, and clients that never read are
//!   the ones pushed out;
//! - **renders** (SVG and PNG of past frames and ranges) go through a
//!   small queue: a few at once, a bounded number waiting, a share per
//!   peer; past that a client gets `503` at once, and nothing else (the
//!   page, `events`, `history.json`) ever waits behind them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Streams held at once, over all clients: below the connection cap, so
/// streams never take every connection.
pub const MAX_STREAMS: usize = 384;
/// Streams held at once by one peer address (a room of viewers behind one
/// address, or all of loopback, is a peer too).
pub const STREAMS_PER_PEER: usize = 256;
/// Renders waiting (beyond those running) before new ones are refused.
const MAX_WAITING_RENDERS: usize = 8;
/// Renders running or waiting for one peer address.
const RENDERS_PER_PEER: usize = 2;

/// The peer address of a request's connection, put in its extensions by
/// the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

/// One holder's place; dropping it frees the place.
pub struct Ticket {
    slots: Arc<Slots>,
    id: u64,
    /// Notified when the holder has been pushed out.
    pub evicted: Arc<Notify>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.slots.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.open.retain(|o| o.id != self.id);
    }
}

struct Holder {
    id: u64,
    peer: IpAddr,
    evicted: Arc<Notify>,
}

#[derive(Default)]
struct SlotsInner {
    /// Oldest first.
    open: Vec<Holder>,
    next_id: u64,
}

/// Places with a budget and a share per peer, handed out oldest-out.
pub struct Slots {
    inner: Mutex<SlotsInner>,
    total: usize,
    per_peer: usize,
}

impl Slots {
    /// `total` places, at most `per_peer` for one peer address.
    pub fn new(total: usize, per_peer: usize) -> Arc<Slots> {
        Arc::new(Slots {
            inner: Mutex::default(),
            total: total.max(1),
            per_peer: per_peer.max(1),
        })
    }

    /// The budget of streams.
    pub fn streams() -> Arc<Slots> {
        Slots::new(MAX_STREAMS, STREAMS_PER_PEER)
    }

    /// A place for a newcomer from `peer`, pushing out the peer's oldest
    /// holder if it has its share, else the oldest holder of the peer
    /// holding the most if none is free.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Ticket {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mine = s.open.iter().filter(|o| o.peer == peer).count();
        let victim = if mine >= self.per_peer {
            s.open.iter().position(|o| o.peer == peer)
        } else if s.open.len() >= self.total {
            // The oldest stream of the peer holding the most.
            let mut counts: HashMap<IpAddr, usize> = HashMap::new();
            for o in &s.open {
                *counts.entry(o.peer).or_default() += 1;
            }
            let greedy = counts.into_iter().max_by_key(|(_, n)| *n).map(|(p, _)| p);
            s.open.iter().position(|o| Some(o.peer) == greedy)
        } else {
            None
        };
        if let Some(i) = victim {
            let o = s.open.remove(i);
            o.evicted.notify_one();
        }
        let id = s.next_id;
        s.next_id += 1;
        let evicted = Arc::new(Notify::new());
        s.open.push(Holder {
            id,
            peer,
            evicted: evicted.clone(),
        });
        Ticket {
            slots: self.clone(),
            id,
            evicted,
        }
    }

    /// Streams held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .len()
    }

    /// Whether no stream is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The render queue.
pub struct RenderQueue {
    running: Arc<Semaphore>,
    /// Renders admitted (running or waiting), in all and per peer.
    admitted: Mutex<(usize, HashMap<IpAddr, usize>)>,
    capacity: usize,
}

/// A render's admission; dropping it frees its share.
pub struct RenderTicket<'a> {
    queue: &'a RenderQueue,
    peer: IpAddr,
}

impl Drop for RenderTicket<'_> {
    fn drop(&mut self) {
        let mut a = self
            .queue
            .admitted
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        a.0 -= 1;
        if let Some(n) = a.1.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                a.1.remove(&self.peer);
            }
        }
    }
}

impl RenderQueue {
    /// A queue running `parallel` renders at once.
    pub fn new(parallel: usize) -> RenderQueue {
        let parallel = parallel.max(1);
        RenderQueue {
            running: Arc::new(Semaphore::new(parallel)),
            admitted: Mutex::new((0, HashMap::new())),
            capacity: parallel + MAX_WAITING_RENDERS,
        }
    }

    /// Admits a render for `peer`, or None when the queue or the peer's
    /// share is full (answer 503).
    pub fn admit(&self, peer: IpAddr) -> Option<RenderTicket<'_>> {
        let mut a = self.admitted.lock().unwrap_or_else(|e| e.into_inner());
        let mine = a.1.get(&peer).copied().unwrap_or(0);
        if a.0 >= self.capacity || mine >= RENDERS_PER_PEER {
            return None;
        }
        a.0 += 1;
        *a.1.entry(peer).or_default() += 1;
        Some(RenderTicket { queue: self, peer })
    }

    /// Waits for a turn to run (hold the permit while rendering).
    pub async fn turn(&self) -> OwnedSemaphorePermit {
        self.running
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_new_stream_always_gets_a_place() {
        let slots = Slots::streams();
        // One peer takes more than its share: its oldest go first.
        let flood: Vec<_> = (0..STREAMS_PER_PEER + 3)
            .map(|_| slots.admit(ip(2)))
            .collect();
        assert_eq!(slots.len(), STREAMS_PER_PEER);
        // Other peers fill the budget; a viewer still gets in, pushing out
        // a stream of the peer holding the most.
        let mut crowd = Vec::new();
        let mut p = 3;
        while slots.len() < MAX_STREAMS {
            crowd.push(slots.admit(ip(p)));
            if crowd.len() % 8 == 0 {
                p += 1;
            }
        }
        let viewer = slots.admit(ip(1));
        assert_eq!(slots.len(), MAX_STREAMS);
        drop(viewer);
        assert_eq!(slots.len(), MAX_STREAMS - 1);
        drop(flood);
        drop(crowd);
        assert!(slots.is_empty());
    }

    #[test]
    fn renders_are_bounded_in_all_and_per_peer() {
        let q = RenderQueue::new(2);
        let a1 = q.admit(ip(1)).unwrap();
        let _a2 = q.admit(ip(1)).unwrap();
        assert!(q.admit(ip(1)).is_none(), "a peer's share");
        drop(a1);
        assert!(q.admit(ip(1)).is_some());
        let mut held = Vec::new();
        for p in 2..=200u8 {
            match q.admit(ip(p)) {
                Some(t) => held.push(t),
                None => break,
            }
        }
        assert_eq!(held.len() + 1, 2 + MAX_WAITING_RENDERS);
    }
}

//! The per-organization ring buffer behind resume (CONTRACT §5).
//!
//! Every frame an organization's sockets get is numbered with the next
//! offset and kept here, up to a count and a byte budget. A client that
//! reconnects presents the epoch and the last offset it saw: when this ring
//! still holds every frame after that offset under the same epoch, they are
//! replayed in order; otherwise the welcome says `"recovered": false`.
//!
//! The epoch names one unbroken sequence of offsets. It is new for every
//! ring (so for every process start) and after [`Ring::restart`], which the
//! hub calls when this process may have missed events (its broker queue was
//! gone for a while): offsets then could not promise "every frame in order".

use std::collections::VecDeque;

/// A ring of frames of type `T`, each with its offset and size in bytes.
#[derive(Debug)]
pub struct Ring<T> {
    epoch: String,
    /// Oldest first.
    frames: VecDeque<(u64, T, usize)>,
    /// Offset of the newest frame ever pushed under this epoch (0: none yet).
    last: u64,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
}

/// A fresh, unguessable epoch name.
fn new_epoch() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

impl<T> Ring<T> {
    /// An empty ring keeping at most `max_frames` frames and `max_bytes` bytes
    /// (the newest frame is always kept, however large).
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            epoch: new_epoch(),
            frames: VecDeque::new(),
            last: 0,
            bytes: 0,
            max_frames: max_frames.max(1),
            max_bytes,
        }
    }

    /// The current epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Offset of the newest frame (0 before the first).
    pub fn last_offset(&self) -> u64 {
        self.last
    }

    /// The offset the next pushed frame gets.
    pub fn next_offset(&self) -> u64 {
        self.last + 1
    }

    /// Frames held now.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends the frame made for the next offset and returns that offset;
    /// the oldest frames go when a budget is exceeded.
    pub fn push(&mut self, make: impl FnOnce(u64) -> (T, usize)) -> u64 {
        let offset = self.next_offset();
        let (frame, size) = make(offset);
        self.last = offset;
        self.bytes += size;
        self.frames.push_back((offset, frame, size));
        while self.frames.len() > 1
            && (self.frames.len() > self.max_frames || self.bytes > self.max_bytes)
        {
            if let Some((_, _, size)) = self.frames.pop_front() {
                self.bytes -= size;
            }
        }
        offset
    }

    /// The frames after `offset`, oldest first, when this ring can replay
    /// everything the client missed: same epoch, an offset this ring has
    /// issued, and nothing after it evicted. None means "not recovered".
    pub fn since(&self, epoch: &str, offset: u64) -> Option<impl Iterator<Item = &T> + '_> {
        if epoch != self.epoch || offset > self.last {
            return None;
        }
        let first_held = self.frames.front().map_or(self.last + 1, |(o, ..)| *o);
        if offset + 1 < first_held {
            return None;
        }
        Some(
            self.frames
                .iter()
                .filter(move |(o, ..)| *o > offset)
                .map(|(_, frame, _)| frame),
        )
    }

    /// Starts a new epoch with no frames (offsets start again at 1).
    pub fn restart(&mut self) {
        self.epoch = new_epoch();
        self.frames.clear();
        self.last = 0;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(n: u64, max_frames: usize) -> Ring<u64> {
        let mut ring = Ring::new(max_frames, usize::MAX);
        for _ in 0..n {
            ring.push(|offset| (offset, 10));
        }
        ring
    }

    #[test]
    fn offsets_count_from_one() {
        let mut ring: Ring<u64> = Ring::new(8, 1024);
        assert_eq!(ring.last_offset(), 0);
        assert_eq!(ring.push(|o| (o, 1)), 1);
        assert_eq!(ring.push(|o| (o, 1)), 2);
        assert_eq!(ring.last_offset(), 2);
    }

    #[test]
    fn resume_replays_every_missed_frame_in_order() {
        let ring = ring_with(5, 100);
        let epoch = ring.epoch().to_owned();
        let missed: Vec<u64> = ring.since(&epoch, 2).unwrap().copied().collect();
        assert_eq!(missed, vec![3, 4, 5]);
        assert_eq!(ring.since(&epoch, 5).unwrap().count(), 0, "up to date");
        let all: Vec<u64> = ring.since(&epoch, 0).unwrap().copied().collect();
        assert_eq!(all, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn unknown_epoch_future_offset_or_evicted_frames_are_not_recovered() {
        let ring = ring_with(10, 4); // holds 7..=10
        let epoch = ring.epoch().to_owned();
        assert!(ring.since("another-epoch", 8).is_none());
        assert!(ring.since(&epoch, 11).is_none(), "never issued");
        assert!(ring.since(&epoch, 5).is_none(), "6 was evicted");
        let missed: Vec<u64> = ring.since(&epoch, 6).unwrap().copied().collect();
        assert_eq!(missed, vec![7, 8, 9, 10]);
    }

    #[test]
    fn byte_budget_evicts_but_keeps_the_newest() {
        let mut ring: Ring<u64> = Ring::new(100, 25);
        for _ in 0..5 {
            ring.push(|o| (o, 10));
        }
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.bytes(), 20);
        ring.push(|o| (o, 1000));
        assert_eq!(ring.len(), 1, "a frame over budget alone is still kept");
        assert_eq!(ring.last_offset(), 6);
    }

    #[test]
    fn restart_breaks_resume() {
        let mut ring = ring_with(3, 10);
        let old = ring.epoch().to_owned();
        ring.restart();
        assert_ne!(ring.epoch(), old);
        assert!(ring.since(&old, 3).is_none());
        assert!(ring.is_empty());
        assert_eq!(ring.push(|o| (o, 1)), 1);
    }
}

//! Group commit: many concurrent callers each submit one item and wait for
//! its result, while a few writer tasks take whatever has gathered (up to a
//! limit) and handle it as one batch: one transaction and one statement for
//! hundreds of deliveries instead of one each. Nothing waits to fill a
//! batch: a lone item goes at once, and batches grow only while a writer is
//! busy, i.e. exactly under load.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

type Job<T, R> = (T, oneshot::Sender<R>);

/// The submitting side; cheap to clone.
pub struct Batcher<T, R> {
    jobs: mpsc::Sender<Job<T, R>>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts `writers` tasks that hand batches of at most `max` items to
    /// `handle`, which answers one result per item, in order. They stop once
    /// every `Batcher` clone is dropped and the queue is empty.
    pub fn start<F, Fut>(writers: usize, max: usize, handle: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        let (jobs, queue) = mpsc::channel::<Job<T, R>>(max.max(1) * 4);
        let queue = Arc::new(Mutex::new(queue));
        let handle = Arc::new(handle);
        for _ in 0..writers.max(1) {
            let queue = queue.clone();
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(max);
                loop {
                    {
                        // One writer gathers at a time; the others write meanwhile.
                        let mut queue = queue.lock().await;
                        if queue.recv_many(&mut batch, max.max(1)).await == 0 {
                            return;
                        }
                    }
                    let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) =
                        batch.drain(..).unzip();
                    let results = handle(items).await;
                    debug_assert_eq!(results.len(), replies.len());
                    for (reply, result) in replies.into_iter().zip(results) {
                        // The caller may have gone away (shutdown); nothing to tell then.
                        let _ = reply.send(result);
                    }
                }
            });
        }
        Self { jobs }
    }

    /// Submits `item` and waits for its result; `None` when the writers are gone.
    pub async fn submit(&self, item: T) -> Option<R> {
        let (reply, result) = oneshot::channel();
        self.jobs.send((item, reply)).await.ok()?;
        result.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn answers_each_item_and_batches_under_load() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = batches.clone();
        let batcher = Batcher::start(1, 50, move |items: Vec<u32>| {
            counted.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                items.into_iter().map(|n| n * 2).collect::<Vec<_>>()
            }
        });
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..200u32 {
            let batcher = batcher.clone();
            calls.spawn(async move { (n, batcher.submit(n).await) });
        }
        while let Some(done) = calls.join_next().await {
            let (n, doubled) = done.unwrap();
            assert_eq!(doubled, Some(n * 2));
        }
        let batches = batches.load(Ordering::Relaxed);
        assert!(
            (4..200).contains(&batches),
            "200 items under load went in {batches} batches"
        );
    }
}

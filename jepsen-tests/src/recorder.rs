//! Records history events as they happen: a cheap cloneable handle that timestamps each
//! event on the run's monotonic clock and hands it to one writer thread, which appends
//! it to `history.jsonl` (so a crash of the harness still leaves the history so far).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::history::{write_events, Event, EventType, Op};

/// A handle for recording events; clones share the clock, the op ids and the file.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    next_op: AtomicU64,
    tx: Mutex<Option<Sender<Event>>>,
    writer: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
}

impl Recorder {
    /// Creates `path` and starts the writer; `t_ns` counts from now.
    pub fn create(path: &Path) -> anyhow::Result<Recorder> {
        use anyhow::Context;
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create history {}", path.display()))?;
        let (tx, rx) = channel::<Event>();
        let writer = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || {
                let mut w = BufWriter::new(file);
                while let Ok(e) = rx.recv() {
                    let mut batch = vec![e];
                    batch.extend(rx.try_iter());
                    write_events(&mut w, &batch)?;
                    w.flush()?;
                }
                w.flush()
            })
            .context("cannot start the history writer thread")?;
        Ok(Recorder {
            inner: Arc::new(Inner {
                start: Instant::now(),
                next_op: AtomicU64::new(1),
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
            }),
        })
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The run's start instant (for converting event times back).
    pub fn start(&self) -> Instant {
        self.inner.start
    }

    /// A fresh op id pairing an invoke with its completion.
    pub fn next_op_id(&self) -> u64 {
        self.inner.next_op.fetch_add(1, Ordering::Relaxed)
    }

    /// Records one event now.
    pub fn record(&self, process: u32, kind: EventType, op_id: u64, op: Op) {
        let e = Event {
            t_ns: self.now_ns(),
            process,
            kind,
            op_id,
            op,
        };
        if let Ok(tx) = self.inner.tx.lock() {
            if let Some(tx) = tx.as_ref() {
                // The writer only stops after close(); a send error means it failed, which
                // close() reports.
                let _ = tx.send(e);
            }
        }
    }

    /// Stops the writer after everything recorded so far is on disk.
    pub fn close(&self) -> anyhow::Result<()> {
        if let Ok(mut tx) = self.inner.tx.lock() {
            tx.take();
        }
        let handle = self.inner.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            match h.join() {
                Ok(r) => r.map_err(|e| anyhow::anyhow!("cannot write the history: {e}"))?,
                Err(_) => anyhow::bail!("the history writer thread panicked"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::history::read_history;

    #[test]
    fn recorded_events_reach_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let r = Recorder::create(&path).unwrap();
        for i in 0..100 {
            r.record(
                1,
                EventType::Info,
                0,
                Op::Phase {
                    name: format!("p{i}"),
                },
            );
        }
        r.close().unwrap();
        let back = read_history(&path).unwrap();
        assert_eq!(back.len(), 100);
        assert!(back.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
        assert_eq!(back[99].op, Op::Phase { name: "p99".into() });
    }
}

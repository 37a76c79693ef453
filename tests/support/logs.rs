//! Every log line of a test binary, at every level, with the thread that wrote it, through one
//! global subscriber. A thread-local subscriber (`set_default`) beside other tests' threads
//! trips tracing's per-callsite interest cache, and events go missing. Tests on a
//! current-thread runtime find their own lines (and those of every task they spawn) by thread.
#![allow(dead_code)]

use std::sync::Mutex;

/// The lines logged so far, installing the subscriber on first use.
pub fn logs() -> &'static Mutex<Vec<(std::thread::ThreadId, String)>> {
    static LOGS: std::sync::OnceLock<&'static Mutex<Vec<(std::thread::ThreadId, String)>>> =
        std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static Mutex<_> = Box::leak(Box::default());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Line(logs, Vec::new()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

/// One event's text, kept with its thread when the formatter drops it.
pub struct Line(
    &'static Mutex<Vec<(std::thread::ThreadId, String)>>,
    Vec<u8>,
);

impl std::io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.1).into_owned();
        self.0
            .lock()
            .unwrap()
            .push((std::thread::current().id(), text));
    }
}

/// What this thread logged so far.
pub fn logs_of_this_thread() -> String {
    let me = std::thread::current().id();
    let logs = logs().lock().unwrap();
    logs.iter()
        .filter(|(t, _)| *t == me)
        .map(|(_, l)| l.as_str())
        .collect()
}

/// Every line logged so far, by any thread.
pub fn all_logs() -> String {
    logs()
        .lock()
        .unwrap()
        .iter()
        .map(|(_, l)| l.as_str())
        .collect()
}

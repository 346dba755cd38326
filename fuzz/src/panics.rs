//! Which panics count as crashes.
//!
//! libFuzzer's Rust glue installs a panic hook that aborts on *every* panic, even one the code
//! under test catches. `DocSession` deliberately runs Automerge under `catch_unwind` and turns
//! a panic into an error, which is its documented contract; a target that tests that contract
//! (rather than Automerge's own robustness) calls [`allow_caught_panics`] once and runs its body
//! under [`guard`]: a panic that the code under test catches is then only counted (the first at
//! each source location is printed, as `==lianxin-fuzz== panic #N, first at this place`), while one that escapes to [`guard`]
//! prints `==lianxin-fuzz== uncaught panic` with its message and aborts, which libFuzzer reports
//! as a crash.
//!
//! Set `LIANXIN_FUZZ_STRICT_PANICS=1` to keep libFuzzer's hook and crash on caught panics too
//! (with `RUST_BACKTRACE=1` it prints the stack of the first panic).

use std::panic::{self, UnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, Once};

static COUNT: AtomicUsize = AtomicUsize::new(0);
static LAST: Mutex<String> = Mutex::new(String::new());
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// How many panics happened (caught or not) since [`allow_caught_panics`].
pub fn count() -> usize {
    COUNT.load(Relaxed)
}

/// Replaces libFuzzer's abort-on-any-panic hook with one that counts panics, remembers the
/// last one's message and prints the first at each source location, unless `LIANXIN_FUZZ_STRICT_PANICS=1`. Call it
/// at the start of every run (it acts once).
pub fn allow_caught_panics() {
    INSTALL.call_once(|| {
        if std::env::var_os("LIANXIN_FUZZ_STRICT_PANICS").is_some_and(|v| v == "1") {
            return;
        }
        panic::set_hook(Box::new(|info| {
            let n = COUNT.fetch_add(1, Relaxed) + 1;
            let message = info.to_string();
            let place = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let new_place = SEEN
                .lock()
                .map(|mut seen| {
                    let new = !seen.contains(&place);
                    if new && seen.len() < 1000 {
                        seen.push(place);
                    }
                    new
                })
                .unwrap_or(true);
            if new_place {
                eprintln!("==lianxin-fuzz== panic #{n}, first at this place: {message}");
            }
            if let Ok(mut last) = LAST.lock() {
                *last = message;
            }
        }));
    });
}

/// Runs `body`; if a panic escapes it, prints that panic and aborts.
pub fn guard<F: FnOnce() + UnwindSafe>(body: F) {
    if panic::catch_unwind(body).is_err() {
        let last = LAST.lock().map(|l| l.clone()).unwrap_or_default();
        eprintln!(
            "==lianxin-fuzz== uncaught panic (escaped the code under test): {last}\n\
             ==lianxin-fuzz== rerun the input with LIANXIN_FUZZ_STRICT_PANICS=1 RUST_BACKTRACE=1 \
             for its stack"
        );
        std::process::abort();
    }
}

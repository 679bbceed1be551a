//! Signals: the first SIGINT/SIGTERM/SIGHUP asks the run to stop at the next safe point; a
//! second one ends the process at once — except inside a critical section (a run transaction
//! writing a commit and its refs), which it lets finish first. Modelled on stgit's
//! `signal::critical`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

static IN_CRITICAL: AtomicUsize = AtomicUsize::new(0);
static EXIT_PENDING: AtomicBool = AtomicBool::new(false);

/// The exit status of a process ended by a second signal.
pub const EXIT_ON_SECOND_SIGNAL: i32 = 130;

/// Install the handlers; `cancel` is set by the first signal.
pub fn install(cancel: &Arc<AtomicBool>) {
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let seen = Arc::clone(cancel);
        // SAFETY: the handler only touches atomics and calls `_exit`, both async-signal-safe.
        let _ = unsafe {
            signal_hook::low_level::register(sig, move || {
                if seen.load(Ordering::SeqCst) {
                    if IN_CRITICAL.load(Ordering::SeqCst) > 0 {
                        EXIT_PENDING.store(true, Ordering::SeqCst);
                    } else {
                        libc::_exit(EXIT_ON_SECOND_SIGNAL);
                    }
                }
            })
        };
        let _ = signal_hook::flag::register(sig, Arc::clone(cancel));
    }
    // A file-size limit makes writes fail (EFBIG) like a full disk, instead of killing git
    // machine halfway through a commit; steps get the default back (see engine::process).
    // SAFETY: setting a signal's disposition to ignored has no other effect.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// A section a second Ctrl-C cannot cut: the process ends when the last one is left.
#[must_use = "the section lasts as long as this value"]
pub struct Critical(());

pub fn critical() -> Critical {
    IN_CRITICAL.fetch_add(1, Ordering::SeqCst);
    Critical(())
}

impl Drop for Critical {
    fn drop(&mut self) {
        if IN_CRITICAL.fetch_sub(1, Ordering::SeqCst) == 1 && EXIT_PENDING.load(Ordering::SeqCst) {
            std::process::exit(EXIT_ON_SECOND_SIGNAL);
        }
    }
}

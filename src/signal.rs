//! Signals: the first SIGINT/SIGTERM/SIGHUP asks the run to stop at the next safe point; a
//! second one ends the process at once — except inside a critical section (a run transaction
//! writing a commit and its refs), which it lets finish first. Modelled on stgit's
//! `signal::critical`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

static IN_CRITICAL: AtomicUsize = AtomicUsize::new(0);
/// When the first stop signal came (ms on the monotonic clock).
static FIRST_AT: AtomicU64 = AtomicU64::new(0);
/// Signals this close to the first are the same press (a terminal and git deliver one each).
const SAME_PRESS_MS: u64 = 300;
static EXIT_PENDING: AtomicBool = AtomicBool::new(false);

/// The exit status of a process ended by a second signal.
pub const EXIT_ON_SECOND_SIGNAL: i32 = 130;

/// What a person, or another process by a signal, asks of the run this process executes.
#[derive(Clone, Default)]
pub struct Controls {
    /// Stop now, leaving the run resumable: Ctrl-C, SIGTERM, SIGHUP, `git machine stop`, `q`.
    pub cancel: Arc<AtomicBool>,
    /// Pause once the current step is committed: SIGUSR1, `p`.
    pub pause: Arc<AtomicBool>,
    /// Stop the current step and record it as skipped: SIGUSR2, `s`.
    pub skip: Arc<AtomicBool>,
    /// Messages for the running step wait (in the run's mailbox, or in `said`): SIGURG, `m`.
    pub mail: Arc<AtomicBool>,
    /// Messages typed in this process's live view (`m`), not yet taken.
    pub said: Arc<std::sync::Mutex<Vec<String>>>,
    /// Go back to the controller's conversation once the run has stopped: `c`.
    pub controller: Arc<AtomicBool>,
}

/// The signals that ask a run to pause after its step and to skip its step.
pub const PAUSE_SIGNAL: i32 = signal_hook::consts::SIGUSR1;
pub const SKIP_SIGNAL: i32 = signal_hook::consts::SIGUSR2;
/// The signal that says messages wait in the run's mailbox (its default action is to do
/// nothing, so a process that does not expect it is not harmed).
pub const MAIL_SIGNAL: i32 = signal_hook::consts::SIGURG;

/// Install the handlers: the first stop signal sets `cancel`, SIGUSR1 `pause`, SIGUSR2 `skip`.
pub fn install(controls: &Controls) {
    let _ = signal_hook::flag::register(PAUSE_SIGNAL, Arc::clone(&controls.pause));
    let _ = signal_hook::flag::register(SKIP_SIGNAL, Arc::clone(&controls.skip));
    let _ = signal_hook::flag::register(MAIL_SIGNAL, Arc::clone(&controls.mail));
    let cancel = &controls.cancel;
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let seen = Arc::clone(cancel);
        // SAFETY: the handler only touches atomics and calls getppid, clock_gettime,
        // tcsetattr, write and `_exit`, all async-signal-safe.
        let _ = unsafe {
            signal_hook_registry::register_sigaction(sig, move |info: &libc::siginfo_t| {
                let now = monotonic_ms();
                // Run as `git machine`, git forwards the person's Ctrl-C to us: that is the
                // same press, never a second one.
                let from_parent = info.si_code == libc::SI_USER && info.si_pid() == libc::getppid();
                if !seen.swap(true, Ordering::SeqCst) {
                    FIRST_AT.store(now, Ordering::SeqCst);
                    return;
                }
                let same_press =
                    now.saturating_sub(FIRST_AT.load(Ordering::SeqCst)) < SAME_PRESS_MS;
                if from_parent || same_press {
                    return;
                }
                if IN_CRITICAL.load(Ordering::SeqCst) > 0 {
                    EXIT_PENDING.store(true, Ordering::SeqCst);
                } else {
                    restore_terminal();
                    libc::_exit(EXIT_ON_SECOND_SIGNAL);
                }
            })
        };
    }
    // A file-size limit makes writes fail (EFBIG) like a full disk, instead of killing git
    // machine halfway through a commit; steps get the default back (see engine::process).
    // SAFETY: setting a signal's disposition to ignored has no other effect.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Milliseconds on the monotonic clock; async-signal-safe.
fn monotonic_ms() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the local timespec.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t);
    }
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
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
            restore_terminal();
            std::process::exit(EXIT_ON_SECOND_SIGNAL);
        }
    }
}

// The terminal's modes before the live view changed them, for every way out to restore.
static TERMINAL_SAVED: AtomicBool = AtomicBool::new(false);
static mut TERMINAL: std::mem::MaybeUninit<libc::termios> = std::mem::MaybeUninit::uninit();

/// Read single keys from stdin without echo (Ctrl-C still a signal), if stdin is a terminal.
pub fn keys_mode_on() -> bool {
    // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with a termios this function owns; TERMINAL is
    // written before TERMINAL_SAVED is set, and only read after it is.
    unsafe {
        if libc::isatty(0) != 1 || TERMINAL_SAVED.load(Ordering::SeqCst) {
            return false;
        }
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        if libc::tcgetattr(0, t.as_mut_ptr()) != 0 {
            return false;
        }
        let saved = t.assume_init();
        *std::ptr::addr_of_mut!(TERMINAL) = std::mem::MaybeUninit::new(saved);
        TERMINAL_SAVED.store(true, Ordering::SeqCst);
        let mut keys = saved;
        keys.c_lflag &= !(libc::ICANON | libc::ECHO);
        keys.c_cc[libc::VMIN] = 1;
        keys.c_cc[libc::VTIME] = 0;
        libc::tcsetattr(0, libc::TCSANOW, &keys) == 0
    }
}

/// The terminal's modes from before the live view's key mode, while that mode is on.
pub fn terminal_before_keys() -> Option<libc::termios> {
    // SAFETY: TERMINAL is written before TERMINAL_SAVED is set.
    TERMINAL_SAVED
        .load(Ordering::SeqCst)
        .then(|| unsafe { (*std::ptr::addr_of!(TERMINAL)).assume_init() })
}

/// Give the terminal back as it was.
pub fn keys_mode_off() {
    restore_terminal();
}

/// Restore the terminal's modes and show the cursor; async-signal-safe.
fn restore_terminal() {
    if TERMINAL_SAVED.swap(false, Ordering::SeqCst) {
        // SAFETY: TERMINAL was written before TERMINAL_SAVED was set; tcsetattr and write are
        // async-signal-safe.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, (*std::ptr::addr_of!(TERMINAL)).as_ptr());
            let show = b"\x1b[?25h";
            libc::write(2, show.as_ptr().cast(), show.len());
        }
    }
}

/// The terminal's input (fd 0), for an event loop to wait on; never closed by this.
pub struct Stdin;

impl std::os::fd::AsRawFd for Stdin {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        0
    }
}

/// The bytes waiting on stdin (at most 64), without waiting: empty when none are, or when the
/// terminal hung up.
pub fn read_available() -> Vec<u8> {
    let mut waiting: libc::c_int = 0;
    let mut buf = [0u8; 64];
    // SAFETY: FIONREAD writes one int; read is bounded by the local buffer and by what is
    // waiting, so it does not block.
    unsafe {
        if libc::ioctl(0, libc::FIONREAD, std::ptr::addr_of_mut!(waiting)) != 0 || waiting <= 0 {
            return Vec::new();
        }
        let want = (waiting as usize).min(buf.len());
        let got = libc::read(0, buf.as_mut_ptr().cast(), want);
        buf[..got.max(0) as usize].to_vec()
    }
}

//! Handing the terminal to a program and taking it back: the one place that changes which
//! process group owns the terminal.
//!
//! An interactive step's program (an agent CLI's own interface, or a shell) runs in its own
//! process group, made the terminal's foreground group, so that the keys the person types —
//! Ctrl-C and Ctrl-Z included — go to it and not to git machine. When it ends, however it ends,
//! [`Handover::take_back`] makes git machine's group the foreground group again, puts back the
//! terminal modes saved before (termios), and switches off the modes full-screen programs turn
//! on and may leave behind when they crash: the alternate screen, mouse reporting, bracketed
//! paste, the kitty keyboard protocol, application keypad and cursor keys, a hidden cursor.

/// Undo what full-screen programs may leave on: alternate screen off, mouse reporting off (every
/// mode), bracketed paste off, kitty keyboard flags popped (a pop past the stack's bottom
/// resets them), normal keypad and cursor keys, attributes reset, cursor shown.
pub const RESET_MODES: &str = "\x1b[?1049l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1015l\x1b[?2004l\x1b[<99u\x1b>\x1b[?1l\x1b[0m\x1b[?25h";

/// Whether the terminal can be handed over: stdin is a terminal, and git machine's process
/// group is its foreground group (not a background job, not detached).
pub fn can_hand_over() -> bool {
    // SAFETY: isatty, tcgetpgrp and getpgrp only read.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// The terminal, while a program has it: what to restore when it is taken back.
pub struct Handover {
    saved: libc::termios,
    taken_back: bool,
}

impl Handover {
    /// Save the terminal's modes, then give it `cooked` modes (as a shell leaves them) for the
    /// program: `sane` is the terminal as it was before git machine changed anything (the live
    /// view's key mode), when known.
    pub fn begin(sane: Option<libc::termios>) -> std::io::Result<Handover> {
        let mut saved = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr writes one termios; tcsetattr reads one.
        let saved = unsafe {
            if libc::tcgetattr(0, saved.as_mut_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let saved = saved.assume_init();
            if let Some(sane) = sane {
                libc::tcsetattr(0, libc::TCSADRAIN, &sane);
            }
            saved
        };
        Ok(Handover {
            saved,
            taken_back: false,
        })
    }

    /// Make `pgid` the terminal's foreground group (the child does the same on its side, so
    /// whichever runs first wins the race with the same result).
    pub fn give(&self, pgid: i32) {
        // SAFETY: tcsetpgrp with SIGTTOU blocked, as a background group must to change it.
        unsafe {
            with_sigttou_blocked(|| {
                libc::tcsetpgrp(0, pgid);
            });
        }
    }

    /// Take the terminal back: git machine's group in the foreground, the saved modes, the
    /// modes a program may have left on switched off.
    pub fn take_back(&mut self) {
        if self.taken_back {
            return;
        }
        self.taken_back = true;
        // SAFETY: tcsetpgrp/tcsetattr on fd 0 with SIGTTOU blocked; write of a constant.
        unsafe {
            with_sigttou_blocked(|| {
                libc::tcsetpgrp(0, libc::getpgrp());
                libc::tcsetattr(0, libc::TCSADRAIN, &self.saved);
                let fd = if libc::isatty(2) == 1 { 2 } else { 1 };
                libc::write(fd, RESET_MODES.as_ptr().cast(), RESET_MODES.len());
                // Keys typed for the program but not read by it are not git machine's keys.
                libc::tcflush(0, libc::TCIFLUSH);
            });
        }
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        self.take_back();
    }
}

/// Run `f` with SIGTTOU blocked: a process outside the terminal's foreground group may then
/// change the terminal instead of being stopped.
///
/// # Safety
/// Only sets and restores this thread's signal mask.
unsafe fn with_sigttou_blocked(f: impl FnOnce()) {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    libc::sigemptyset(set.as_mut_ptr());
    libc::sigaddset(set.as_mut_ptr(), libc::SIGTTOU);
    libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), old.as_mut_ptr());
    f();
    libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut());
}

/// In the child, between fork and exec: its own process group, made the terminal's
/// foreground group. Async-signal-safe.
pub fn take_terminal_in_child() -> std::io::Result<()> {
    // SAFETY: setpgid, signal, tcsetpgrp and getpid are async-signal-safe.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::tcsetpgrp(0, libc::getpid());
        libc::signal(libc::SIGTTOU, libc::SIG_DFL);
    }
    Ok(())
}

/// The terminal in cooked mode (line editing, echo) while this lives — for reading the
/// person's lines while the live view's key mode is on — and back as it was after.
pub struct Cooked {
    saved: Option<libc::termios>,
}

impl Cooked {
    pub fn new() -> Cooked {
        let Some(sane) = crate::signal::terminal_before_keys() else {
            return Cooked { saved: None };
        };
        let mut saved = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr writes one termios; tcsetattr reads one.
        unsafe {
            if libc::tcgetattr(0, saved.as_mut_ptr()) != 0 {
                return Cooked { saved: None };
            }
            libc::tcsetattr(0, libc::TCSADRAIN, &sane);
            Cooked {
                saved: Some(saved.assume_init()),
            }
        }
    }
}

impl Drop for Cooked {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: tcsetattr reads one termios.
            unsafe {
                libc::tcsetattr(0, libc::TCSADRAIN, saved);
            }
        }
    }
}

/// One line from the terminal (cooked mode: the terminal delivers whole lines), waiting until
/// it comes or `stop` is set. None at end of input or when stopped.
pub fn read_line(stop: &std::sync::atomic::AtomicBool) -> Option<String> {
    let mut bytes = Vec::new();
    loop {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let mut fd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one local pollfd; read into a local buffer.
        let ready = unsafe { libc::poll(&mut fd, 1, 100) };
        if ready != 1 {
            continue;
        }
        let mut buf = [0u8; 4096];
        let got = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if got <= 0 {
            return (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned());
        }
        bytes.extend_from_slice(&buf[..got as usize]);
        if bytes.ends_with(b"\n") {
            bytes.pop();
            return Some(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}

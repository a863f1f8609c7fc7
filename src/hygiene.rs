//! Process hygiene that must hold before any secret is read: no core dump of this
//! process is ever written, and no other process of the same user may attach to it or
//! read its memory (`PR_SET_DUMPABLE` 0 also makes its /proc files root's).

/// Turns off core dumps (`RLIMIT_CORE` 0, hard and soft) and marks the process not
/// dumpable. Called first thing in `main`.
pub fn no_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on this process with valid arguments.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// The host's name (from the kernel, not /proc/sys, which the unit hides).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether a core file of this process could be written: it is dumpable, or its core
/// size limit is not 0 (for `rotor config check`).
pub fn can_dump_core() -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: PR_GET_DUMPABLE takes no pointer; getrlimit writes into `limit` only.
    unsafe {
        libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0
            || (libc::getrlimit(libc::RLIMIT_CORE, &mut limit) == 0 && limit.rlim_cur != 0)
    }
}

/// Hands the heap's free pages back to the kernel. glibc keeps freed memory for reuse,
/// so what start-up built and dropped (every policy's tables checked once, the
/// migrations) or a burst of work left behind would stay resident for the daemon's
/// life. Called once ready, and by the workers when they go idle after work.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

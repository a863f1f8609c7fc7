//! Process hygiene that must hold before any secret is read: no core dump of this
//! process is ever written, and no other process of the same user may attach to it or
//! read its memory (`PR_SET_DUMPABLE` 0 also makes its /proc files root's).

/// Turns off core dumps (`RLIMIT_CORE` 0, hard and soft) and marks the process not
/// dumpable. Called first thing in `main`.
pub fn no_core_dumps() {
    let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on this process with valid arguments.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Whether the process is marked dumpable (for the tests and `rotor config check`).
pub fn is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE takes no pointer.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 }
}

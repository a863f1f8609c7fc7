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

/// Whether the process is marked dumpable (for the tests and `rotor config check`).
pub fn is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE takes no pointer.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 }
}

//! The Debian package (scripts/package.sh, cargo-deb): installed into a throwaway root
//! with dpkg, its maintainer scripts run against that root. They make the rotor user and
//! /etc/rotor with the README's modes, keep the configuration as a conffile, and neither
//! enable nor start the service. `rotor config check` then runs from the installed
//! binary, and a purge removes rotor's state.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::helpers::*;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn dpkg(root: &Path, args: &[&str]) -> String {
    run(Command::new("dpkg")
        .arg(format!("--instdir={}", root.display()))
        .arg(format!("--admindir={}/var/lib/dpkg", root.display()))
        .args(["--force-script-chrootless", "--force-not-root"])
        .args(args))
}

#[test]
fn the_deb_installs_the_user_modes_and_a_conffile_and_starts_nothing() {
    // The binary this suite built (no second build while cargo runs the tests).
    let built = run(Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package.sh"))
        .env("PROFILE", "dev")
        .env("NO_BUILD", "1"));
    let deb = built.lines().last().unwrap().trim().to_string();
    assert!(
        deb.ends_with("_amd64.deb") && Path::new(&deb).exists(),
        "{built}"
    );

    let info = run(Command::new("dpkg-deb").args(["--info", &deb]));
    assert!(
        info.contains("Package: rotor") && info.contains("libssl3"),
        "{info}"
    );
    let contents = run(Command::new("dpkg-deb").args(["--contents", &deb]));
    for path in [
        "./usr/bin/rotor",
        "./usr/lib/systemd/system/rotor.service",
        "./usr/lib/sysusers.d/rotor.conf",
        "./usr/lib/tmpfiles.d/rotor.conf",
        "./etc/rotor/rotor.toml",
        "./usr/share/doc/rotor/contrib/rotor-alerts.yml",
    ] {
        assert!(contents.contains(path), "{path} missing:\n{contents}");
    }

    let root = std::path::PathBuf::from(FILES_DIR).join(format!("pkg-root-{}", unique()));
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    // Its dependencies (libc6, libssl3 ...) are this machine's, not the empty root's.
    let installed = dpkg(&root, &["--force-depends", "-i", &deb]);
    assert!(
        installed.contains("installed but not started"),
        "{installed}"
    );

    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    let gid: u32 = group
        .lines()
        .find_map(|l| l.strip_prefix("rotor:x:"))
        .and_then(|rest| rest.split(':').next())
        .expect("the rotor group")
        .parse()
        .unwrap();
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("rotor:") && l.ends_with(":/var/lib/rotor:/usr/sbin/nologin")),
        "{passwd}"
    );
    for (path, mode) in [
        ("etc/rotor", 0o750),
        ("etc/rotor/keys", 0o750),
        ("etc/rotor/rotor.toml", 0o640),
    ] {
        let m = std::fs::metadata(root.join(path)).unwrap();
        assert_eq!(
            (m.permissions().mode() & 0o7777, m.uid(), m.gid()),
            (mode, 0, gid),
            "{path}"
        );
    }
    let status = dpkg(&root, &["--status", "rotor"]);
    assert!(
        status.contains("Status: install ok installed") && status.contains("/etc/rotor/rotor.toml"),
        "{status}"
    );
    // Installed, not enabled: no unit link anywhere under the root's /etc.
    let enabled = walk(&root.join("etc"))
        .into_iter()
        .any(|p| p.ends_with("rotor.service"));
    assert!(!enabled, "the package enabled the service");

    // Configured as the postinst says, the installed binary checks its configuration.
    let rotor = root.join("usr/bin/rotor");
    let config = root.join("etc/rotor/rotor.toml");
    run(Command::new(&rotor)
        .args(["--config", config.to_str().unwrap(), "keygen", "--out"])
        .arg(root.join("etc/rotor/master.key")));
    write_private(
        &root.join("etc/rotor/ops.token"),
        &format!("{}\n", strong_token("ops")),
    );
    let checked =
        run(Command::new(&rotor).args(["--config", config.to_str().unwrap(), "config", "check"]));
    assert!(checked.contains("configuration OK"), "{checked}");

    dpkg(&root, &["--purge", "rotor"]);
    assert!(!root.join("var/lib/rotor").exists() && !rotor.exists());
    // The operator's key and token stay.
    assert!(root.join("etc/rotor/master.key").exists());
    std::fs::remove_dir_all(&root).unwrap();
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() && !path.is_symlink() {
                found.extend(walk(&path));
            }
            found.push(path);
        }
    }
    found
}

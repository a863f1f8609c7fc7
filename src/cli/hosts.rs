//! Onboarding helpers: `rotor admin-key generate` makes rotor's admin SSH key pair, `rotor
//! host scan` prints the host keys a host offers, for an operator to check and pin.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};

#[derive(Debug, Subcommand)]
pub enum AdminKey {
    /// Write a new ed25519 key pair (the private key 0600, never overwritten) and print
    /// the public key, for the hosts' authorized_keys (or `[deploy] admin_key_file`).
    Generate {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The key's comment (default rotor@HOSTNAME).
        #[arg(long)]
        comment: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Host {
    /// Print the SSH host key fingerprints HOST[:PORT] offers (`SHA256:...`, one a line)
    /// to pin as `host_keys`, after checking them out of band; or, for
    /// `https://HOST[:PORT]`, its TLS certificate's fingerprint, to pin as an http
    /// resource's `cert_fingerprints`. Logged as a choice.
    Scan {
        #[arg(value_name = "HOST[:PORT] | https://HOST[:PORT]")]
        target: String,
    },
}

pub fn admin_key(command: AdminKey) -> anyhow::Result<ExitCode> {
    let AdminKey::Generate { out, comment } = command;
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    let comment = comment.unwrap_or_else(|| format!("rotor@{}", crate::hygiene::hostname().trim()));
    key.set_comment(comment);
    let private = key.to_openssh(LineEnding::LF)?;
    let public = key.public_key().to_openssh()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&out)
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (an existing key is never overwritten)",
                out.display()
            )
        })?;
    file.write_all(private.as_bytes())?;
    file.sync_all()?;
    let public_path = PathBuf::from(format!("{}.pub", out.display()));
    std::fs::write(&public_path, format!("{public}\n"))?;
    eprintln!(
        "wrote {} (private, 0600) and {}",
        out.display(),
        public_path.display()
    );
    println!("{public}");
    Ok(ExitCode::SUCCESS)
}

pub fn host(command: Host) -> anyhow::Result<ExitCode> {
    let Host::Scan { target } = command;
    let (https, target) = match target.strip_prefix("https://") {
        Some(rest) => (true, rest.trim_end_matches('/').to_string()),
        None => (false, target),
    };
    let (address, port) = match target.rsplit_once(':') {
        Some((a, p)) if !a.contains(':') || a.starts_with('[') => (
            a.trim_matches(['[', ']']).to_string(),
            p.parse::<u16>()
                .map_err(|_| anyhow::anyhow!("HOST[:PORT]: `{p}` is not a port"))?,
        ),
        _ => (target.clone(), if https { 443 } else { 22 }),
    };
    if https {
        let fingerprint =
            crate::driver::http::tls::scan_certificate(&address, port, Duration::from_secs(10))?;
        println!("{fingerprint}");
        tracing::warn!(target: "rotor::security", address = %address, port, fingerprint = %fingerprint,
            "TLS certificate scanned for pinning: trust it only after checking it out of band");
        eprintln!("check it against the server's own `openssl x509 -in CERT.pem -outform DER | openssl dgst -sha256 -binary | base64` before pinning it");
        return Ok(ExitCode::SUCCESS);
    }
    let host = crate::driver::Host {
        resource_id: String::new(),
        address: address.clone(),
        port,
        host_keys: Vec::new(),
        insecure_accept_any_host_key: false,
        admin: None,
        ssh_auth: crate::driver::SshAuth::Auto,
        http: None,
        connect_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(10),
    };
    let keys = crate::driver::ssh::scan_host_keys(&host)?;
    for (kind, fingerprint) in &keys {
        println!("{fingerprint}");
        eprintln!("{address}:{port} {kind} {fingerprint}");
    }
    tracing::warn!(target: "rotor::security", address = %address, port,
        fingerprints = %keys.iter().map(|(_, f)| f.as_str()).collect::<Vec<_>>().join(" "),
        "host keys scanned for pinning: trust them only after checking them out of band");
    eprintln!("check these against the host's own `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` before pinning them");
    Ok(ExitCode::SUCCESS)
}

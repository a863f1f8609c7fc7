//! Unit tests of loading, layering and checking the settings.

use super::*;
use figment::Jail;

/// Loads `toml` (as `etc/rotor.toml`, when given) with `vars` set, in a jail of its own.
fn load_with(toml: Option<&str>, vars: &[(&str, &str)]) -> Result<Settings, Error> {
    let mut out = None;
    Jail::expect_with(|jail| {
        vars.iter().for_each(|(k, v)| jail.set_env(k, v));
        let path = jail.create_dir("etc")?.join("rotor.toml");
        if let Some(text) = toml {
            jail.create_file(&path, text)?;
        }
        out = Some(load(toml.map(|_| jail.directory().join(&path)).as_deref()));
        Ok(())
    });
    out.expect("ran")
}

#[test]
fn environment_overrides_the_file() {
    let s = load_with(
        Some("[worker]\nconcurrency = 3\n[amqp]\nqueue = \"a\"\n"),
        &[
            ("ROTOR_WORKER__CONCURRENCY", "7"),
            ("ROTOR_AMQP__QUEUE", "b.c"),
            ("ROTOR_CONFIG", "x"),
        ],
    )
    .unwrap();
    assert_eq!(s.worker.concurrency, 7);
    assert_eq!(s.amqp.queue, "b.c");
}

#[test]
fn variables_without_a_double_underscore_are_not_settings() {
    let vars = [
        ("ROTOR_CONFIG", "/nowhere.toml"),
        ("ROTOR_WORKER", "x"),
        ("ROTOR_SCHEDULER__HEARTBEAT_TICK", ""),
    ];
    let s = load_with(None, &vars).unwrap();
    assert_eq!(
        (s.worker.concurrency, s.scheduler.heartbeat_tick.as_str()),
        (64, "")
    );
    let err = load_with(None, &[("ROTOR_WORKER____CONCURRENCY", "7")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ROTOR_WORKER____CONCURRENCY") && err.contains("malformed"),
        "{err}"
    );
}

#[test]
fn environment_inside_arrays_and_tables_names_the_key() {
    let toml = "[[http.token]]\nname = \"a\"\ntoken = \"t\"\nscopes = [\"admin\"]\n";
    let err = load_with(
        Some(toml),
        &[(
            "ROTOR_HTTP__TOKEN",
            "[{name = \"a\", token = \"t\", scopes = [\"nope\"]}]",
        )],
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { key, .. } if key == "http.token[0].scopes[0]"),
        "{err}"
    );
    let err = load_with(Some(toml), &[("ROTOR_HTTP__TOKEN__NAME", "b")]).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { key, .. } if key == "http.token"),
        "{err}"
    );
    let err = load_with(None, &[("ROTOR_POLICY__STRICT__LENGTH", "many")]).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { key, .. } if key == "policy.strict.length"),
        "{err}"
    );
}

#[test]
fn secret_values_are_not_repeated_in_errors() {
    for (var, key) in [
        ("ROTOR_DATABASE__URL", "database.url"),
        ("ROTOR_VAULT__MASTER_KEY", "vault.master_key"),
    ] {
        let err = load_with(None, &[(var, "918273645")]).unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { key: k, .. } if k == key),
            "{err}"
        );
        assert!(!err.to_string().contains("918273645"), "{err}");
    }
}

#[test]
fn unknown_key_is_named_with_its_path() {
    let err = load_with(Some("[worker]\nconcurency = 3\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("worker.concurency"), "{err}");
    let err = load_with(None, &[("ROTOR_HTTP__LISTN", "x")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("http.listn"), "{err}");
}

#[test]
fn file_errors_keep_their_kind() {
    assert!(matches!(
        load_with(Some("[worker\n"), &[]),
        Err(Error::Syntax { .. })
    ));
    assert!(matches!(
        load(Some(Path::new("/nonexistent/rotor.toml"))),
        Err(Error::Read { .. })
    ));
}

#[test]
fn scheduler_settings_are_checked_at_load() {
    for (text, key) in [
        ("[scheduler]\ntick = \"0 * * * *\"\n", "scheduler.tick"),
        ("[scheduler]\ntick = \"0 61 * * * *\"\n", "scheduler.tick"),
        (
            "[scheduler]\nheartbeat_tick = \"x y z a b c\"\n",
            "scheduler.heartbeat_tick",
        ),
        (
            "[scheduler]\nwindow = \"25:00-02:00\"\n",
            "scheduler.window",
        ),
        (
            "[scheduler]\ntimezone = \"Europe/Nowhere\"\n",
            "scheduler.timezone",
        ),
        ("[worker]\nper_host = 0\n", "worker.per_host"),
    ] {
        let err = load_with(Some(text), &[]).unwrap_err().to_string();
        assert!(err.contains(key), "{text}: {err}");
    }
    load_with(Some("[scheduler]\ntick = \"*/10 * * * * *\"\nheartbeat_tick = \"\"\nwindow = \"22:00-04:00\"\ntimezone = \"Europe/Helsinki\"\n"), &[]).unwrap();
}

#[test]
fn wrong_type_names_the_key() {
    let err = load_with(Some("[worker]\nconcurrency = \"many\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("configuration key `worker.concurrency`"),
        "{err}"
    );
}

#[test]
fn secrets_come_from_files_relative_to_the_config() {
    Jail::expect_with(|jail| {
        // the config in a folder of its own: the jail's folder is the working directory
        let dir = jail.create_dir("etc")?;
        use std::os::unix::fs::PermissionsExt;
        let private = |p: &std::path::Path| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap()
        };
        jail.create_file(dir.join("db.url"), "postgres://x@y/z\n")?;
        jail.create_file(
            dir.join("rotor.toml"),
            "[database]\nurl_file = \"db.url\"\n",
        )?;
        let s = load(Some(&jail.directory().join("etc/rotor.toml"))).unwrap();
        // A secret file anyone may read is refused, naming the file and its mode.
        let err = s.database.url().unwrap_err().to_string();
        assert!(
            err.contains("database.url_file") && err.contains("mode 0644"),
            "{err}"
        );
        private(&dir.join("db.url"));
        assert_eq!(
            s.database.url().unwrap().expose_secret(),
            "postgres://x@y/z"
        );
        jail.create_file(dir.join("empty"), "\n")?;
        private(&dir.join("empty"));
        let err = secret("amqp.url", &None, &Some(dir.join("empty")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("amqp.url_file") && err.contains("is empty"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn policies_are_refused_with_their_key_and_weak_ones_listed() {
    let err = load_with(
        Some("[policy.tiny]\nlength = 6\nmin_lower = 3\nmin_upper = 3\nmin_digit = 1\n"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("policy.tiny") && err.contains("add up to 7"),
        "{err}"
    );
    let text = "[policy.pin]\nlength = 8\nmin_lower = -1\nmin_upper = -1\nmin_special = -1\n[policy_settings]\nmin_entropy_bits = 40\n";
    let s = load_with(Some(text), &[]).unwrap();
    let all = s.policies().unwrap();
    assert_eq!(
        weak_policies(&all, s.policy_settings.min_entropy_bits)
            .iter()
            .map(|w| w.0.as_str())
            .collect::<Vec<_>>(),
        ["pin"]
    );
    assert!(weak_policies(&all, 80.0).iter().all(|(n, _)| n == "pin"));
    let err = load_with(None, &[("ROTOR_POLICY_SETTINGS__MIN_ENTROPY_BITS", "-1")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("policy_settings.min_entropy_bits"), "{err}");
}

#[test]
fn type_policy_overrides_the_preset_of_a_type() {
    let s = load_with(
        Some("[policy.strict]\nlength = 32\n[type_policy]\nESXI = \"strict\"\nLINUX = \"vcf\"\n"),
        &[],
    )
    .unwrap();
    assert!(s.policies().unwrap().contains_key("strict"));
    assert_eq!(s.default_policy_for_type("ESXI"), "strict");
    assert_eq!(s.default_policy_for_type("LINUX"), "vcf");
    assert_eq!(
        s.default_policy_for_type("NSXT_MANAGER"),
        "nsx",
        "types not named keep their preset"
    );
    let err = load_with(Some("[type_policy]\nESXI = \"nope\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("type_policy.ESXI") && err.contains("nope"),
        "{err}"
    );
}

#[test]
fn bad_listen_address_is_refused() {
    let err = load_with(None, &[("ROTOR_HTTP__LISTEN", "localhost")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("http.listen"), "{err}");
}

#[test]
fn plain_http_off_loopback_and_half_a_tls_pair_are_refused() {
    let err = load_with(Some("[http]\nlisten = \"0.0.0.0:8443\"\n"), &[]).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { key, message } if key == "http.listen" && message.contains("not loopback")),
        "{err}"
    );
    let s = load_with(
        Some("[http]\nlisten = \"0.0.0.0:8443\"\nallow_plaintext = true\n"),
        &[],
    )
    .unwrap();
    assert!(s.http.tls().is_none());
    let s = load_with(
        Some(
            "[http]\nlisten = \"[::]:8443\"\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n",
        ),
        &[],
    )
    .unwrap();
    assert!(
        s.http.tls().is_some_and(|(c, _)| c.is_absolute()),
        "relative to the file's folder"
    );
    let err = load_with(Some("[http]\ntls_cert_file = \"c.pem\"\n"), &[]).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { key, .. } if key == "http.tls_cert_file"),
        "{err}"
    );
    let err = load_with(Some("[http]\nops_listen = \"nowhere\"\n"), &[]).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { key, .. } if key == "http.ops_listen"),
        "{err}"
    );
}

#[test]
fn producers_and_tokens_take_scopes_and_resource_globs() {
    let toml = "[[amqp.producer]]\nuser = \"vcf\"\nscopes = [\"credentials:manage\"]\nresources = [\"esxi-*\"]\n\
                [[http.token]]\nname = \"a\"\ntoken = \"t\"\nscopes = [\"hosts:provision\"]\nresources = [\"web-?\"]\n";
    let s = load_with(Some(toml), &[]).unwrap();
    assert!(s.amqp.producer[0].resources[0].matches("esxi-01"));
    assert!(
        s.http.token[0].resources[0].matches("web-1")
            && !s.http.token[0].resources[0].matches("web-10")
    );
    let twice = "[[amqp.producer]]\nuser = \"vcf\"\nscopes = []\n[[amqp.producer]]\nuser = \"vcf\"\nscopes = []\n";
    let err = load_with(Some(twice), &[]).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { key, .. } if key == "amqp.producer[1].user"),
        "{err}"
    );
    let err = load_with(
        Some("[[amqp.producer]]\nuser = \"vcf\"\nscopes = []\nresources = [\"\"]\n"),
        &[],
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { key, .. } if key.starts_with("amqp.producer[0].resources")),
        "{err}"
    );
}

#[test]
fn tokens_need_128_random_bits() {
    for weak in [
        "letmein-letmein",
        "abcdefghijklmnopqrstuv",
        "0123456789abcdef0123456789abcde",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        assert!(check_token_strength("t", weak).is_err(), "{weak}");
    }
    for strong in [
        "0123456789abcdef0123456789abcdef",
        "q8Zr4Kx2Pf9Tw1Lm6Nb3Vc",
        "admin-3f2b8c9d0e1f4a5b6c7d8e9f0a1b2c3d",
    ] {
        assert!(check_token_strength("t", strong).is_ok(), "{strong}");
    }
}

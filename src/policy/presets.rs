//! The built-in presets, each with where its rules come from, and the preset each
//! resource type uses unless `[type_policy]` says otherwise.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::rules::Policy;
use super::spec::PolicySpec;

/// Printable ASCII punctuation: NSX accepts any of it except its forbidden list.
const ASCII_PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

fn specs() -> [(&'static str, PolicySpec); 4] {
    [
        // VMware Cloud Foundation, SDDC Manager 4.4 and later ("Password requirements" for
        // managed accounts): exactly 20 characters from upper, lower, digits and `!@#$^*`,
        // at least one of each class, no more than 2 identical characters in a row.
        (
            "vcf",
            PolicySpec {
                length: Some(20),
                min_lower: 1,
                min_upper: 1,
                min_digit: 1,
                min_special: 1,
                special_chars: Some("!@#$^*".into()),
                max_identical_run: 2,
                ..Default::default()
            },
        ),
        // ESXi's pam_passwdqc defaults (`min=disabled,disabled,disabled,7,7`, max 40):
        // 7 to 39 characters using at least 3 of the 4 classes, where an uppercase first
        // letter and a digit last character do not count; passwdqc also refuses a password
        // based on the user name. Generated at 20 characters.
        (
            "esxi",
            PolicySpec {
                min_length: Some(7),
                max_length: Some(39),
                generated_length: Some(20),
                min_classes: 3,
                esxi_class_counting: true,
                special_chars: Some("!@#$%^&*-_=+".into()),
                no_username: true,
                ..Default::default()
            },
        ),
        // NSX-T / NSX Manager and Edge local accounts (NSX admin guide, "password
        // complexity"): 12 to 127 characters, at least one of each class, at least 5
        // different characters, and these characters refused: * { } [ ] ( ) / \ ' " ` ~ , ; : . < >
        (
            "nsx",
            PolicySpec {
                min_length: Some(12),
                max_length: Some(127),
                min_lower: 1,
                min_upper: 1,
                min_digit: 1,
                min_special: 1,
                min_distinct: 5,
                special_chars: Some(ASCII_PUNCTUATION.into()),
                forbidden_chars: "*{}[]()/\\'\"`~,;:.<>".into(),
                ..Default::default()
            },
        ),
        // A general Linux account: 24 characters, all four classes, a special set that
        // needs no quoting in a shell; pam_pwquality's default `usercheck=1` refuses a
        // password containing the user name.
        (
            "linux",
            PolicySpec {
                length: Some(24),
                min_lower: 1,
                min_upper: 1,
                min_digit: 1,
                min_special: 1,
                special_chars: Some("!@#$%^&*-_=+".into()),
                no_username: true,
                ..Default::default()
            },
        ),
    ]
}

/// The built-in presets (built once: a policy's table is shared by its clones).
pub fn presets() -> BTreeMap<String, Policy> {
    static PRESETS: OnceLock<BTreeMap<String, Policy>> = OnceLock::new();
    PRESETS
        .get_or_init(|| {
            specs()
                .into_iter()
                .map(|(name, spec)| {
                    (
                        name.to_string(),
                        Policy::from_spec(name, &spec).expect("presets are feasible"),
                    )
                })
                .collect()
        })
        .clone()
}

/// The preset a resource type uses by default.
pub fn preset_for_type(resource_type: &str) -> &'static str {
    match resource_type {
        "ESXI" => "esxi",
        "NSXT_MANAGER" | "NSX_MANAGER" | "NSXT_EDGE" | "NSX_EDGE" | "NSX_CONTROLLER" => "nsx",
        "LINUX" | "POSTGRESQL" | "RABBITMQ" => "linux",
        // vCenter, PSC, the Aria/vRealize appliances, SDDC Manager's own accounts, backup:
        // VCF rotates them under SDDC Manager's rules.
        _ => "vcf",
    }
}

use super::*;
use std::fs;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

/// Loads built-ins plus one user file.
fn load_user(text: &str) -> (tempfile::TempDir, PathBuf, Result<Config, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let user = write(dir.path(), "user.toml", text);
    let result = Config::load_from(&dir.path().join("missing-system.toml"), Some(&user));
    (dir, user, result)
}

fn issues_of(text: &str) -> (PathBuf, Vec<ConfigIssue>) {
    let (_dir, user, result) = load_user(text);
    match result {
        Err(ConfigError::Invalid(issues)) => (user, issues),
        other => panic!("expected issues for {text:?}, got {other:?}"),
    }
}

#[test]
fn builtin_service_types_match_the_spec_table() {
    let expected: [(&str, [u16; 4], [u16; 2]); 17] = [
        ("dev", [3000, 3001, 3002, 3003], [3000, 3099]),
        ("api", [8000, 8001, 8002, 8003], [8000, 8099]),
        ("database", [5430, 5431, 5432, 5433], [5430, 5499]),
        ("auth", [9099, 9100, 9101, 9102], [9099, 9199]),
        ("functions", [5001, 5002, 5003, 5004], [5000, 5099]),
        ("ui", [4000, 4001, 4002, 4003], [4000, 4099]),
        ("hub", [4400, 4401, 4402, 4403], [4400, 4499]),
        ("storybook", [6006, 6007, 6008, 6009], [6006, 6029]),
        ("test", [9200, 9201, 9202, 9203], [9200, 9299]),
        ("proxy", [8100, 8101, 8102, 8103], [8100, 8199]),
        ("docs", [4100, 4101, 4102, 4103], [4100, 4199]),
        ("monitoring", [3100, 3101, 3102, 3103], [3100, 3199]),
        ("build", [8200, 8201, 8202, 8203], [8200, 8299]),
        ("infrastructure", [6370, 6371, 6372, 6373], [6370, 6399]),
        ("ai", [11430, 11431, 11432, 11433], [11400, 11499]),
        ("messaging", [9050, 9051, 9052, 9053], [9050, 9098]),
        ("coordination", [9870, 9871, 9872, 9873], [9870, 9899]),
    ];
    let config = Config::builtin();
    assert_eq!(config.service_types.len(), 17);
    for (name, preferred, range) in expected {
        let t = &config.service_types[name];
        assert_eq!(t.preferred_ports, preferred, "{name} preferred ports");
        assert_eq!(t.range, range, "{name} range");
        let behavior = if name == "ai" { InstanceBehavior::Single } else { InstanceBehavior::Multi };
        assert_eq!(t.instance_behavior, behavior, "{name} instance_behavior");
        assert!(!t.examples.is_empty(), "{name} examples");
    }
    assert_eq!(config.service_types["dev"].description, "Frontend development servers (React, Next.js, Vite)");
    assert_eq!(config.service_types["coordination"].description, "Service coordination and management");
}

#[test]
fn builtin_settings_are_the_documented_defaults() {
    let config = Config::builtin();
    let auto = &config.auto_allocation;
    assert!(!auto.enabled);
    assert_eq!(
        (auto.default_chunk_size, auto.placement, auto.min_port, auto.max_port, auto.preserve_gaps, auto.gap_size),
        (10, Placement::After, 10000, 49151, true, 10)
    );
    assert_eq!(
        auto.rules,
        vec![
            Rule { pattern: "monitoring-*".into(), chunk_size: Some(20), placement: Some(Placement::Smart) },
            Rule { pattern: "database-*".into(), chunk_size: Some(5), placement: None },
        ]
    );
    assert_eq!(config.health, Health { period_secs: 15, max_failures: 3, handoff_grace_secs: 30 });
    assert_eq!(
        config.limits,
        Limits {
            max_allocations_per_user: 1000,
            max_connections_per_user: 64,
            max_connections: 512,
            max_instances_per_user: 64,
            max_sticky_per_user: 256,
            range_share_percent: 50,
        }
    );
    assert_eq!(config.instances, Instances { ttl_secs: 120 });
    assert_eq!(config.allocator, Allocator { idle_timeout_secs: 300 });
    assert_eq!(config.api, Api { tcp: String::new() }, "no TCP unless asked for");
}

#[test]
fn missing_files_leave_the_builtins() {
    let dir = tempfile::tempdir().unwrap();
    let system = dir.path().join("system.toml");
    let user = dir.path().join("user.toml");
    assert_eq!(Config::load_from(&system, Some(&user)).unwrap(), Config::builtin());
    assert_eq!(Config::load_from(&system, None).unwrap(), Config::builtin());
    assert!(Config::validate_files(&system, Some(&user)).is_empty());
}

#[test]
fn a_user_field_overrides_only_that_field() {
    let (_dir, _user, result) = load_user("[service_types.dev]\nrange = [3000, 3050]\n");
    let config = result.unwrap();
    let dev = &config.service_types["dev"];
    let builtin = &Config::builtin().service_types["dev"];
    assert_eq!(dev.range, [3000, 3050]);
    assert_eq!(dev.preferred_ports, builtin.preferred_ports);
    assert_eq!(dev.description, builtin.description);
    assert_eq!(dev.examples, builtin.examples);
    assert_eq!(config.service_types.len(), 17);
}

#[test]
fn user_file_wins_over_system_file_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let system = write(
        dir.path(),
        "system.toml",
        "[service_types.dev]\ndescription = \"site dev\"\nrange = [3000, 3040]\n\
         [auto_allocation]\nenabled = true\ngap_size = 5\n\
         [[auto_allocation.rules]]\npattern = \"x-*\"\nchunk_size = 3\n",
    );
    let user =
        write(dir.path(), "user.toml", "[service_types.dev]\nrange = [3000, 3060]\n[auto_allocation]\ngap_size = 7\n");
    let config = Config::load_from(&system, Some(&user)).unwrap();
    let dev = &config.service_types["dev"];
    assert_eq!(dev.range, [3000, 3060]);
    assert_eq!(dev.description, "site dev");
    assert_eq!(dev.preferred_ports, [3000, 3001, 3002, 3003]);
    assert!(config.auto_allocation.enabled);
    assert_eq!(config.auto_allocation.gap_size, 7);
    // The system's rules list replaced the built-in one; the user kept it.
    assert_eq!(
        config.auto_allocation.rules,
        vec![Rule { pattern: "x-*".into(), chunk_size: Some(3), placement: None }]
    );
}

#[test]
fn port_range_alias_and_case_insensitive_choices() {
    let (_dir, _user, result) = load_user(
        "[service_types.grafana]\nport_range = [13000, 13019]\ninstance_behavior = \"SINGLE\"\n\
         [auto_allocation]\nplacement = \"Smart\"\n",
    );
    let config = result.unwrap();
    let grafana = &config.service_types["grafana"];
    assert_eq!(grafana.range, [13000, 13019]);
    assert_eq!(grafana.instance_behavior, InstanceBehavior::Single);
    assert!(grafana.preferred_ports.is_empty());
    assert_eq!(config.auto_allocation.placement, Placement::Smart);
}

#[test]
fn a_new_type_without_range_is_reported_with_file_and_field() {
    let (user, issues) = issues_of("[service_types.grafana]\ndescription = \"dashboards\"\n");
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].file, user);
    assert_eq!(issues[0].field, "service_types.grafana.range");
    assert!(issues[0].reason.contains("needs a range"), "{}", issues[0].reason);
}

#[test]
fn a_type_from_the_system_file_can_be_refined_by_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let system = write(dir.path(), "system.toml", "[service_types.grafana]\nrange = [13000, 13019]\n");
    let user = write(dir.path(), "user.toml", "[service_types.grafana]\npreferred_ports = [13005]\n");
    let config = Config::load_from(&system, Some(&user)).unwrap();
    assert_eq!(config.service_types["grafana"].preferred_ports, [13005]);
    assert_eq!(config.service_types["grafana"].range, [13000, 13019]);
}

#[test]
fn every_rule_reports_file_field_and_reason() {
    let long_name = "a".repeat(51);
    let cases: Vec<(String, &str, &str)> = vec![
        ("colour = 1\n".into(), "colour", "unknown key"),
        ("[service_types.dev]\ncolour = 1\n".into(), "service_types.dev.colour", "unknown key"),
        ("[auto_allocation]\nenable = true\n".into(), "auto_allocation.enable", "unknown key"),
        (
            "[service_types.dev]\nrange = \"3000-3099\"\n".into(),
            "service_types.dev.range",
            "expected [start, end], found string",
        ),
        (
            "[service_types.dev]\nrange = [3000, 3050, 3099]\n".into(),
            "service_types.dev.range",
            "expected [start, end]",
        ),
        ("[service_types.dev]\nrange = [0, 3099]\n".into(), "service_types.dev.range[0]", "0 is not a port"),
        ("[service_types.dev]\nrange = [3000, 70000]\n".into(), "service_types.dev.range[1]", "70000 is not a port"),
        (
            "[service_types.dev]\nrange = [3099, 3000]\n".into(),
            "service_types.dev.range",
            "start 3099 is above end 3000",
        ),
        (
            "[service_types.dev]\npreferred_ports = [3000, -1]\n".into(),
            "service_types.dev.preferred_ports[1]",
            "-1 is not a port",
        ),
        (
            "[service_types.dev]\npreferred_ports = [3500]\n".into(),
            "service_types.dev.preferred_ports",
            "preferred port 3500 lies outside the range 3000-3099",
        ),
        (
            "[service_types.dev]\nrange = [3050, 3099]\n".into(),
            "service_types.dev.range",
            "preferred port 3000 lies outside the range 3050-3099",
        ),
        (
            "[service_types.dev]\ninstance_behavior = \"double\"\n".into(),
            "service_types.dev.instance_behavior",
            "\"double\" is not one of: single, multi",
        ),
        (
            "[service_types.dev]\nexamples = [\"a\", 2]\n".into(),
            "service_types.dev.examples[1]",
            "expected a string, found integer",
        ),
        (
            "[service_types.dev]\ndescription = 3\n".into(),
            "service_types.dev.description",
            "expected a string, found integer",
        ),
        ("service_types = 3\n".into(), "service_types", "expected a table"),
        ("[service_types]\ndev = 3\n".into(), "service_types.dev", "expected a table"),
        ("health = [1]\n".into(), "health", "expected a table, found array"),
        (
            "[auto_allocation]\nplacement = \"sideways\"\n".into(),
            "auto_allocation.placement",
            "\"sideways\" is not one of: after, before, smart",
        ),
        (
            "[auto_allocation]\nenabled = \"yes\"\n".into(),
            "auto_allocation.enabled",
            "expected true or false, found string",
        ),
        (
            "[auto_allocation]\ndefault_chunk_size = 0\n".into(),
            "auto_allocation.default_chunk_size",
            "0 is outside 1..=1000",
        ),
        (
            "[auto_allocation]\ndefault_chunk_size = 1001\n".into(),
            "auto_allocation.default_chunk_size",
            "1001 is outside 1..=1000",
        ),
        ("[auto_allocation]\ngap_size = 1001\n".into(), "auto_allocation.gap_size", "1001 is outside 0..=1000"),
        ("[auto_allocation]\ngap_size = 1.5\n".into(), "auto_allocation.gap_size", "expected an integer, found float"),
        ("[auto_allocation]\nmin_port = 65536\n".into(), "auto_allocation.min_port", "65536 is not a port"),
        (
            "[auto_allocation]\nmin_port = 50000\n".into(),
            "auto_allocation.min_port",
            "min_port 50000 must be below max_port 49151",
        ),
        (
            "[auto_allocation]\nmax_port = 9000\n".into(),
            "auto_allocation.max_port",
            "min_port 10000 must be below max_port 9000",
        ),
        (
            "[[auto_allocation.rules]]\npattern = \"x-*\"\nchunk_size = 0\n".into(),
            "auto_allocation.rules[0].chunk_size",
            "0 is outside 1..=1000",
        ),
        (
            "[[auto_allocation.rules]]\npattern = \"x-*\"\nplacement = \"up\"\n".into(),
            "auto_allocation.rules[0].placement",
            "is not one of: after, before, smart",
        ),
        (
            "[[auto_allocation.rules]]\nchunk_size = 5\n".into(),
            "auto_allocation.rules[0].pattern",
            "every rule needs a pattern",
        ),
        (
            "[[auto_allocation.rules]]\npattern = \"x-*\"\npreferred_range_start = 9000\n".into(),
            "auto_allocation.rules[0].preferred_range_start",
            "unknown key",
        ),
        ("[auto_allocation]\nrules = 3\n".into(), "auto_allocation.rules", "expected an array, found integer"),
        ("[health]\nperiod_secs = 0\n".into(), "health.period_secs", "0 is below 1"),
        ("[health]\nmax_failures = 5000000000\n".into(), "health.max_failures", "is outside 1..=4294967295"),
        ("[limits]\nmax_connections = 0\n".into(), "limits.max_connections", "0 is below 1"),
        ("[instances]\nttl_secs = -5\n".into(), "instances.ttl_secs", "-5 is below 1"),
        (
            "[allocator]\nidle_timeout_secs = \"5m\"\n".into(),
            "allocator.idle_timeout_secs",
            "expected an integer, found string",
        ),
        ("[api]\ntcp = \"0.0.0.0:9876\"\n".into(), "api.tcp", "not a loopback address"),
        ("[api]\ntcp = \"localhost\"\n".into(), "api.tcp", "is not IP:PORT"),
        ("[api]\ntcp = 9876\n".into(), "api.tcp", "expected a string"),
        (
            "[service_types.\"Bad Type!\"]\nrange = [13000, 13009]\n".into(),
            "service_types.\"Bad Type!\"",
            "1 to 50 ASCII letters",
        ),
        (format!("[service_types.{long_name}]\nrange = [13000, 13009]\n"), "service_types.", "1 to 50 ASCII letters"),
        (
            "[service_types.dev]\nrange = [3000, 3099]\nport_range = [3000, 3099]\n".into(),
            "service_types.dev.port_range",
            "not both",
        ),
    ];
    for (text, field, reason) in cases {
        let (user, issues) = issues_of(&text);
        assert!(
            issues.iter().any(|i| i.file == user && i.field.starts_with(field) && i.reason.contains(reason)),
            "{text:?}: expected {field}: {reason}, got {issues:?}"
        );
    }
}

#[test]
fn edge_values_are_accepted() {
    let (_dir, _user, result) = load_user(
        "[auto_allocation]\ndefault_chunk_size = 1\ngap_size = 0\nmin_port = 1\nmax_port = 65535\n\
         [[auto_allocation.rules]]\npattern = \"x-*\"\nchunk_size = 1000\n\
         [service_types.one]\nrange = [65535, 65535]\npreferred_ports = [65535]\n\
         [api]\ntcp = \"[::1]:9876\"\n",
    );
    let config = result.unwrap();
    assert_eq!(config.api.tcp, "[::1]:9876");
    assert_eq!(config.auto_allocation.default_chunk_size, 1);
    assert_eq!(config.auto_allocation.gap_size, 0);
    assert_eq!(config.service_types["one"].range, [65535, 65535]);
}

#[test]
fn overlapping_ranges_name_both_types_and_the_file_that_moved() {
    let (user, issues) = issues_of("[service_types.grafana]\nrange = [3050, 3149]\n");
    let overlaps: Vec<&ConfigIssue> = issues.iter().filter(|i| i.reason.contains("overlap")).collect();
    assert_eq!(overlaps.len(), 2, "{issues:?}");
    for issue in &overlaps {
        assert_eq!(issue.file, user);
        assert_eq!(issue.field, "service_types.grafana.range");
    }
    assert!(overlaps.iter().any(|i| i.reason == "ranges of dev (3000-3099) and grafana (3050-3149) overlap"));
    assert!(overlaps.iter().any(|i| i.reason == "ranges of grafana (3050-3149) and monitoring (3100-3199) overlap"));
}

#[test]
fn builtin_ranges_do_not_overlap_until_a_file_moves_one() {
    let (user, issues) = issues_of("[service_types.monitoring]\nrange = [3000, 3199]\npreferred_ports = [3100]\n");
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].file, user);
    assert_eq!(issues[0].field, "service_types.monitoring.range");
    assert!(issues[0].reason.contains("dev (3000-3099) and monitoring (3000-3199)"));
}

#[test]
fn syntax_errors_give_line_and_column() {
    let text = "[health]\nperiod_secs = 15\nmax_failures = = 3\n";
    let (user, issues) = issues_of(text);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].file, user);
    assert_eq!(issues[0].field, "");
    let column = text.lines().nth(2).unwrap().rfind('=').unwrap() + 1;
    assert!(issues[0].reason.starts_with(&format!("invalid TOML at line 3, column {column}:")), "{}", issues[0].reason);
}

#[test]
fn issues_from_both_files_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let system = write(dir.path(), "system.toml", "[health]\nperiod_secs = 0\n");
    let user = write(dir.path(), "user.toml", "[limits]\nmax_connections = 0\n");
    let issues = Config::validate_files(&system, Some(&user));
    let located: Vec<(&Path, &str)> = issues.iter().map(|i| (i.file.as_path(), i.field.as_str())).collect();
    assert_eq!(located, [(system.as_path(), "health.period_secs"), (user.as_path(), "limits.max_connections")]);
}

#[test]
fn invalid_error_lists_file_field_reason_lines() {
    let (_dir, user, result) = load_user("[health]\nperiod_secs = 0\n");
    let message = result.unwrap_err().to_string();
    assert_eq!(message, format!("invalid configuration:\n  {}: health.period_secs: 0 is below 1", user.display()));
}

#[test]
fn an_unreadable_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be: reading it fails.
    let user = dir.path().join("user.toml");
    fs::create_dir(&user).unwrap();
    match Config::load_from(&dir.path().join("system.toml"), Some(&user)) {
        Err(ConfigError::Io { op: "read", path, .. }) => assert_eq!(path, user),
        other => panic!("expected an IO error, got {other:?}"),
    }
    let issues = Config::validate_files(&dir.path().join("system.toml"), Some(&user));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].file, user);
    assert!(issues[0].reason.starts_with("cannot read:"), "{}", issues[0].reason);
}

#[test]
fn type_for_port_finds_the_holding_range() {
    let config = Config::builtin();
    assert_eq!(config.type_for_port(3050), Some("dev"));
    assert_eq!(config.type_for_port(3100), Some("monitoring"));
    assert_eq!(config.type_for_port(9876), Some("coordination"));
    assert_eq!(config.type_for_port(11499), Some("ai"));
    assert_eq!(config.type_for_port(10000), None);
    assert_eq!(config.type_for_port(5432), Some("database"));
}

fn auto(name: &str, range: [u16; 2]) -> AutoType {
    AutoType {
        service_type: name.into(),
        range,
        chunk_size: range[1] - range[0] + 1,
        placement: "after".into(),
        rule: None,
        created_at: 0,
        created_by_uid: 1000,
    }
}

#[test]
fn auto_types_join_the_configuration() {
    let autos = [auto("grafana", [11510, 11519]), auto("tiny", [11530, 11531]), auto("dev", [11550, 11559])];
    let config = Config::builtin().with_auto_types(&autos);
    let grafana = &config.service_types["grafana"];
    assert_eq!(grafana.range, [11510, 11519]);
    assert_eq!(grafana.preferred_ports, [11510, 11511, 11512, 11513]);
    assert_eq!(grafana.instance_behavior, InstanceBehavior::Multi);
    assert_eq!(grafana.description, "Auto-allocated service type for grafana");
    // A chunk smaller than four keeps its preferred ports inside the range.
    assert_eq!(config.service_types["tiny"].preferred_ports, [11530, 11531]);
    // A configured type is never replaced.
    assert_eq!(config.service_types["dev"], Config::builtin().service_types["dev"]);
    assert_eq!(config.type_for_port(11515), Some("grafana"));
    assert_eq!(config.type_for_port(11555), None);
}

#[test]
fn the_effective_configuration_prints_as_toml_that_loads_back() {
    let mut config = Config::builtin().with_auto_types(&[auto("grafana", [11510, 11519])]);
    config.auto_allocation.enabled = true;
    let text = toml::to_string(&config).unwrap();
    let (_dir, _user, result) = load_user(&text);
    assert_eq!(result.unwrap(), config);
}

#[test]
fn enabling_auto_allocation_keeps_the_rest_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let original =
        "# my ports\n[service_types.dev]\nrange = [3000, 3050] # narrower\n\n[auto_allocation]\ngap_size = 4\n";
    let user = write(dir.path(), "user.toml", original);
    set_user_auto_allocation_enabled(&user, true).unwrap();
    let edited = fs::read_to_string(&user).unwrap();
    assert!(edited.contains("# my ports") && edited.contains("# narrower"), "{edited}");
    let config = Config::load_from(&dir.path().join("system.toml"), Some(&user)).unwrap();
    assert!(config.auto_allocation.enabled);
    assert_eq!(config.auto_allocation.gap_size, 4);
    assert_eq!(config.service_types["dev"].range, [3000, 3050]);

    set_user_auto_allocation_enabled(&user, false).unwrap();
    let config = Config::load_from(&dir.path().join("system.toml"), Some(&user)).unwrap();
    assert!(!config.auto_allocation.enabled);
    let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["user.toml"]);
}

#[test]
fn enabling_auto_allocation_creates_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("styxy/config.toml");
    set_user_auto_allocation_enabled(&user, true).unwrap();
    let config = Config::load_from(&dir.path().join("system.toml"), Some(&user)).unwrap();
    assert!(config.auto_allocation.enabled);
    assert_eq!(fs::read_to_string(&user).unwrap(), "[auto_allocation]\nenabled = true\n");
}

#[test]
fn enabling_auto_allocation_refuses_an_invalid_file_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    for original in ["[auto_allocation\nenabled = false\n", "[auto_allocation]\ngap_size = -1\n"] {
        let user = write(dir.path(), "user.toml", original);
        match set_user_auto_allocation_enabled(&user, true) {
            Err(ConfigError::Invalid(issues)) => assert_eq!(issues[0].file, user),
            other => panic!("expected refusal for {original:?}, got {other:?}"),
        }
        assert_eq!(fs::read_to_string(&user).unwrap(), original);
    }
}

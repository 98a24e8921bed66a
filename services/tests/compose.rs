//! The Docker stack names only what exists: every service built from `docker/Dockerfile` has its stage,
//! runs a binary with flags that binary accepts, listens on the ports the compose file publishes and its
//! health check calls, and talks to the others on the ports they listen on. Grafana mounts the
//! provisioning in `dashboards/`.

mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn binary(name: &str) -> PathBuf {
    match name {
        "orchestration" => env!("CARGO_BIN_EXE_orchestration").into(),
        "worker" => env!("CARGO_BIN_EXE_worker").into(),
        "ruby-worker" => env!("CARGO_BIN_EXE_ruby-worker").into(),
        "loadgen" => env!("CARGO_BIN_EXE_loadgen").into(),
        other => harness::workspace_binary(other),
    }
}

/// The long flags a binary's `--help` lists (with those of its subcommands for the analyzer).
fn flags(name: &str, subcommand: Option<&str>) -> Vec<String> {
    let output = Command::new(binary(name)).args(subcommand).arg("--help").output().unwrap();
    assert!(output.status.success(), "{name} --help failed");
    let help = String::from_utf8(output.stdout).unwrap();
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value.as_sequence().map(|s| s.iter().map(|v| v.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
}

fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().trim_end_matches(|c: char| !c.is_ascii_digit()).parse().unwrap()
}

/// `host:port` of an URL like `http://collector:4317/path`.
fn host_port(url: &str) -> (String, u16) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap();
    let authority = authority.rsplit('@').next().unwrap();
    let (host, port) = authority.rsplit_once(':').unwrap();
    (host.to_owned(), port.parse().unwrap())
}

#[test]
fn the_compose_stack_names_only_binaries_flags_and_ports_that_exist() {
    let text = std::fs::read_to_string(repo().join("docker/docker-compose.yml")).unwrap();
    let mut compose: Value = serde_yaml_ng::from_str(&text).expect("docker-compose.yml parses");
    compose.apply_merge().unwrap();
    let dockerfile = std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();

    // What each service listens on, from its command: (service, flag) → port.
    let mut listening: BTreeMap<(String, String), u16> = BTreeMap::new();
    let mut built = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap();
        for dependency in match &service["depends_on"] {
            Value::Sequence(s) => s.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
            Value::Mapping(m) => m.keys().map(|k| k.as_str().unwrap().to_owned()).collect(),
            _ => Vec::new(),
        } {
            assert!(names.contains(&dependency.as_str()), "{name} depends on unknown service {dependency}");
        }
        let Some(target) = service["build"]["target"].as_str() else { continue };
        built += 1;
        assert_eq!(service["build"]["dockerfile"], "docker/Dockerfile");
        assert!(dockerfile.contains(&format!("FROM runtime AS {target}\n")), "no Dockerfile stage {target}");
        assert!(
            dockerfile.contains(&format!("/out/{target} /usr/local/bin/{target}")),
            "stage {target} lacks its binary"
        );
        let known = flags(target, None);
        let command = strings(&service["command"]);
        for (i, word) in command.iter().enumerate().filter(|(_, w)| w.starts_with("--")) {
            assert!(known.contains(word), "{name}: {target} has no flag {word} (it has {known:?})");
            if word.ends_with("listen") {
                listening.insert((name.to_owned(), word.clone()), port_of(&command[i + 1]));
            }
        }
        // Published ports and health checks match what the command listens on.
        let ports: Vec<u16> = strings(&service["ports"]).iter().map(|p| port_of(p)).collect();
        for port in &ports {
            assert!(
                listening.iter().any(|((s, _), p)| s == name && p == port),
                "{name} publishes {port} but does not listen on it"
            );
        }
        if let Some(check) = service["healthcheck"]["test"].as_sequence() {
            let url = check.last().unwrap().as_str().unwrap();
            let (_, port) = host_port(url);
            assert!(
                listening.iter().any(|((s, _), p)| s == name && *p == port),
                "{name}'s health check calls port {port}"
            );
        }
    }
    assert_eq!(built, 7, "collector, orchestration, two workers, a Ruby worker, loadgen, analyzer");

    // Who talks to whom: each address names a service and a port it listens on.
    let collector = |flag: &str| listening[&("collector".to_owned(), flag.to_owned())];
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let env = &service["environment"];
        if let Some(endpoint) = env["OTEL_EXPORTER_OTLP_ENDPOINT"].as_str() {
            assert_eq!(host_port(endpoint), ("collector".to_owned(), collector("--grpc-listen")), "{name}");
            assert_eq!(env["OTEL_EXPORTER_OTLP_PROTOCOL"], "grpc", "{name}");
        }
        if let Some(url) = env["DATABASE_URL"].as_str() {
            assert_eq!(host_port(url), ("postgres".to_owned(), 5432), "{name}");
        }
        if let Some(url) = env["HOPTRACE_QUERY_URL"].as_str() {
            assert_eq!(host_port(url), ("collector".to_owned(), collector("--query-listen")), "{name}");
        }
    }
    let collector_command = strings(&services["collector"]["command"]);
    let forward = &collector_command[collector_command.iter().position(|w| w == "--forward-endpoint").unwrap() + 1];
    assert!(names.contains(&host_port(forward).0.as_str()), "the collector forwards to a service of the stack");

    // The Dockerfile's default commands use real flags too.
    for target in ["collector", "orchestration", "worker", "ruby-worker"] {
        let stage = dockerfile.split(&format!("FROM runtime AS {target}\n")).nth(1).unwrap();
        let cmd = stage.lines().find(|l| l.starts_with("CMD ")).unwrap();
        let known = flags(target, None);
        for flag in cmd.split('"').filter(|w| w.starts_with("--")) {
            assert!(known.contains(&flag.to_owned()), "Dockerfile CMD of {target}: no flag {flag}");
        }
    }
    assert!(flags("analyzer", Some("report")).contains(&"--store".to_owned()));

    // Grafana mounts what dashboards/ holds.
    for volume in strings(&services["grafana"]["volumes"]) {
        let source = volume.split(':').next().unwrap();
        let path = repo().join("docker").join(source);
        assert!(path.exists(), "grafana mounts {source}, which does not exist");
    }
}

//! The deployment artifacts stay true: every shipped config validates, the
//! Kubernetes manifests parse and carry what an operator relies on, and the
//! systemd unit and Dockerfile run the binary the way the README says.

use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_yaml::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .collect()
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

#[test]
fn shipped_configs_validate() {
    for rel in ["config/redirector.example.toml", "config/demo.toml"] {
        let path = root().join(rel);
        redirector::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn configmap_toml_validates() {
    let cm = docs("config/kubernetes/configmap.yaml");
    assert_eq!(cm[0]["kind"], "ConfigMap");
    let toml = cm[0]["data"]["redirector.toml"]
        .as_str()
        .expect("redirector.toml key");
    let c = redirector::config::parse(toml, Path::new("configmap.yaml:redirector.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.admin.metrics.map(|m| m.port()), Some(9477));
}

/// The fleet-mode ConfigMap validates once its Secret is where the
/// DaemonSet mounts it (here: a temporary directory in its place), and the
/// DaemonSet mounts that Secret there.
#[test]
fn fleet_configmap_validates_with_its_secret_mounted() {
    let cm = docs("config/kubernetes/fleet.yaml");
    assert_eq!(cm[0]["kind"], "ConfigMap");
    assert_eq!(
        cm[0]["metadata"]["name"], "redirector-config",
        "replaces configmap.yaml"
    );
    let toml = cm[0]["data"]["redirector.toml"]
        .as_str()
        .expect("redirector.toml key");
    let secret = std::env::temp_dir().join(format!("rdt-etcd-secret-{}", std::process::id()));
    std::fs::create_dir_all(&secret).unwrap();
    for f in ["ca.pem", "client.pem", "client-key.pem"] {
        std::fs::write(secret.join(f), "-----BEGIN CERTIFICATE-----\n").unwrap();
    }
    std::fs::write(secret.join("password"), "s3cret\n").unwrap();
    let toml = toml.replace("/etc/redirector-etcd", &secret.display().to_string());
    let parsed = redirector::config::parse(&toml, Path::new("fleet.yaml:redirector.toml"));
    std::fs::remove_dir_all(&secret).unwrap();
    let c = parsed.unwrap_or_else(|e| panic!("{e}"));
    let fleet = c.fleet.expect("a [fleet] section");
    assert_eq!(fleet.endpoints.len(), 3);
    assert_eq!(fleet.auth.expect("auth").password, "s3cret");
    assert!(c.services.iter().all(|s| s.fleet));

    let all = docs("config/kubernetes/daemonset.yaml");
    let ds = all.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    let pod = get(ds, "spec.template.spec");
    let vol = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "redirector-etcd")
        .expect("the etcd Secret as a volume");
    assert_eq!(
        vol["secret"]["optional"], true,
        "optional without fleet mode"
    );
    let mounted = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|m| m["name"] == vol["name"] && m["mountPath"] == "/etc/redirector-etcd");
    assert!(mounted, "the Secret mounted where fleet.yaml reads it");
}

#[test]
fn daemonset_has_what_operators_rely_on() {
    let all = docs("config/kubernetes/daemonset.yaml");
    let ds = all
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let pod = get(ds, "spec.template.spec");
    assert_eq!(pod["hostNetwork"], true);
    let c = get(pod, "containers.0");
    // Explicit capabilities, not privileged.
    assert_ne!(get(c, "securityContext.privileged"), &Value::Bool(true));
    let caps: Vec<&str> = get(c, "securityContext.capabilities.add")
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for cap in ["BPF", "NET_ADMIN", "PERFMON"] {
        assert!(caps.contains(&cap), "missing {cap}: {caps:?}");
    }
    // bpffs from the host, mounted where the pin path lives.
    let vols = pod["volumes"].as_sequence().unwrap();
    let bpffs = vols
        .iter()
        .find(|v| get(v, "hostPath.path") == "/sys/fs/bpf")
        .expect("bpffs hostPath volume");
    let name = bpffs["name"].as_str().unwrap();
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == name && m["mountPath"] == "/sys/fs/bpf")
    );
    // Probes on the daemon's endpoint.
    assert_eq!(get(c, "livenessProbe.httpGet.path"), "/healthz");
    assert_eq!(get(c, "readinessProbe.httpGet.path"), "/readyz");
    assert_eq!(get(c, "livenessProbe.httpGet.port"), 9477);
    // Prometheus scraping.
    let ann = get(ds, "spec.template.metadata.annotations");
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "9477");
    // Resources and an update strategy that replaces one node at a time.
    for k in [
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ] {
        assert!(
            !get(c, &format!("resources.{k}")).is_null(),
            "resources.{k}"
        );
    }
    assert_eq!(get(ds, "spec.updateStrategy.type"), "RollingUpdate");
    assert_eq!(
        get(ds, "spec.updateStrategy.rollingUpdate.maxUnavailable"),
        1
    );
    // The config comes from the ConfigMap, at the path the args name.
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        args[..3],
        ["run", "--config", "/etc/redirector/redirector.toml"]
    );
    assert!(
        vols.iter()
            .any(|v| get(v, "configMap.name") == "redirector-config")
    );
}

#[test]
fn systemd_unit_and_dockerfile_run_the_daemon() {
    let unit = read("config/redirector.service");
    assert!(unit.contains(
        "ExecStart=/usr/local/bin/redirector run --config /etc/redirector/redirector.toml"
    ));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let docker = read("Dockerfile");
    assert!(
        docker.lines().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage"
    );
    assert!(docker.contains("cargo build --release --locked --package redirector"));
    assert!(docker.contains("bpf-linker --version 0.13.0"));
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(crate::daemon::binary())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("switchover") && text.contains("teardown"),
            "{shell}"
        );
    }
}

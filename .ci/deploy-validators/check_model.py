"""Checks the rendered manifests, the compose file and the NATS permissions
against the security model, one explicit assertion per requirement, and that
alerts and dashboard use only metric names the service exports.

    python check_model.py REPO_ROOT RENDERED.yaml...

Prints every failed check and exits 1 if there was any.
"""

import json
import re
import sys
from pathlib import Path

import yaml

EXPORTED_METRICS = {
    "routing_engine_decisions_total",
    "routing_engine_decision_duration_seconds",
    "routing_engine_decision_duration_seconds_bucket",
    "routing_engine_decision_duration_seconds_sum",
    "routing_engine_decision_duration_seconds_count",
    "routing_engine_table_version",
    "routing_engine_table_reloads_total",
    "routing_engine_operator_health",
    "routing_engine_health_events_total",
    "routing_engine_throttled_total",
    "routing_engine_portability_cache_total",
    "routing_engine_dependency_up",
    "routing_engine_tls_handshake_failures_total",
    "routing_engine_tls_reloads_total",
}

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind, name):
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    check(len(found) == 1, f"exactly one {kind} {name} (found {len(found)})")
    return found[0] if found else {}


def ports_of(rule):
    return sorted((p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", []))


def check_network_policy(docs, where):
    policy = one(docs, "NetworkPolicy", "routing-engine")
    if not policy:
        return
    spec = policy["spec"]
    check(spec.get("podSelector") == {"matchLabels": {"app": "routing-engine"}},
          f"{where}: NetworkPolicy selects app=routing-engine")
    check(sorted(spec.get("policyTypes", [])) == ["Egress", "Ingress"],
          f"{where}: NetworkPolicy policyTypes are Ingress and Egress")

    ingress = spec.get("ingress", [])
    check(len(ingress) == 2, f"{where}: exactly two ingress rules, all else denied")
    for rule in ingress:
        check(rule.get("from") and rule.get("ports"),
              f"{where}: every ingress rule names its peers and ports")
    grpc = [r for r in ingress if ports_of(r) == [("TCP", 50051)]]
    if check(len(grpc) == 1, f"{where}: one ingress rule for TCP 50051 alone"):
        check(grpc[0]["from"] == [{"podSelector": {"matchLabels": {"app": "sms-orchestrator"}}}],
              f"{where}: TCP 50051 only from pods app=sms-orchestrator of the namespace")
    http = [r for r in ingress if ports_of(r) == [("TCP", 3001)]]
    if check(len(http) == 1, f"{where}: one ingress rule for TCP 3001 alone"):
        peers = http[0]["from"]
        check(len(peers) == 1 and set(peers[0]) == {"namespaceSelector", "podSelector"},
              f"{where}: TCP 3001 from one peer selected by namespace and pod together")
        if peers:
            pod_labels = peers[0].get("podSelector", {}).get("matchLabels", {})
            ns_labels = peers[0].get("namespaceSelector", {}).get("matchLabels", {})
            check(any("prometheus" in str(v) for v in pod_labels.values()),
                  f"{where}: TCP 3001 only from the Prometheus pods")
            check(bool(ns_labels), f"{where}: TCP 3001 peer namespace is named")
    check(not any(("TCP", 50051) in ports_of(r) and ("TCP", 3001) in ports_of(r)
                  for r in ingress), f"{where}: no rule opens both ports")

    egress = spec.get("egress", [])
    wanted = {
        (("TCP", 5432),): "PostgreSQL",
        (("TCP", 6379),): "Redis",
        (("TCP", 4222),): "NATS",
        (("TCP", 53), ("UDP", 53)): "DNS",
    }
    got = {tuple(ports_of(r)): r for r in egress}
    check(set(got) == set(wanted) and len(egress) == len(wanted),
          f"{where}: egress is exactly 5432, 6379, 4222 and DNS; got {sorted(got)}")
    for ports in [(("TCP", 5432),), (("TCP", 6379),)]:
        rule = got.get(ports, {})
        peers = rule.get("to", [])
        check(len(peers) == 1 and set(peers[0]) == {"podSelector"}
              and peers[0]["podSelector"].get("matchLabels"),
              f"{where}: {wanted[ports]} egress to labelled pods within the namespace only")
    for ports in [(("TCP", 4222),), (("TCP", 53), ("UDP", 53))]:
        rule = got.get(ports, {})
        check(bool(rule.get("to")) and all(p.get("podSelector") for p in rule["to"]),
              f"{where}: {wanted[ports]} egress to selected pods only")


def check_certificates(docs, where, expect_client):
    certs = by_kind(docs, "Certificate")
    for cert in certs:
        name = cert["metadata"]["name"]
        spec = cert["spec"]
        check(spec.get("duration") == "2160h", f"{where}: {name} duration 2160h (90 days)")
        check(spec.get("renewBefore") == "720h", f"{where}: {name} renewBefore 720h (30 days)")
        check(spec.get("issuerRef", {}).get("kind") == "ClusterIssuer",
              f"{where}: {name} issued by the cluster CA's ClusterIssuer")

    server = one(docs, "Certificate", "routing-engine-tls").get("spec", {})
    check(server.get("secretName") == "routing-engine-tls",
          f"{where}: server certificate goes to Secret routing-engine-tls")
    usages = server.get("usages", [])
    check("server auth" in usages and "client auth" not in usages,
          f"{where}: server certificate is for server auth only")
    check("routing-engine.sms-gateway.svc" in server.get("dnsNames", []),
          f"{where}: server certificate names routing-engine.sms-gateway.svc")

    clients = [c for c in certs if "client auth" in c["spec"].get("usages", [])]
    if expect_client:
        check(len(clients) == 1, f"{where}: one client certificate")
    for client in clients:
        spec = client["spec"]
        sans = spec.get("dnsNames", []) + spec.get("uris", [])
        check("server auth" not in spec["usages"], f"{where}: client certificate is client-only")
        check("sms-orchestrator.sms-gateway.svc" in sans,
              f"{where}: client certificate names sms-orchestrator.sms-gateway.svc")


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


# The service's default when the variable is not set (src/server/identity.rs).
DEFAULT_ALLOWED_CLIENT_IDS = [
    "sms-orchestrator.sms-gateway.svc",
    "spiffe://cluster.local/ns/sms-gateway/sa/sms-orchestrator",
]


def allowed_client_ids(env):
    value = env.get("ALLOWED_CLIENT_IDS", {}).get("value")
    if value is None:
        return DEFAULT_ALLOWED_CLIENT_IDS
    return [a.strip() for a in value.split(",") if a.strip()]


def check_client_identity(docs, where):
    """sms-orchestrator's client certificate names an identity the service admits."""
    deploy = one(docs, "Deployment", "routing-engine")
    containers = deploy.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    allowed = allowed_client_ids(env_of(containers[0])) if containers else []
    for cert in by_kind(docs, "Certificate"):
        spec = cert["spec"]
        if "client auth" not in spec.get("usages", []):
            continue
        sans = spec.get("dnsNames", []) + spec.get("uris", [])
        check(any(s in allowed for s in sans),
              f"{where}: client certificate {cert['metadata']['name']} carries an allowed "
              f"identity ({sans} vs {allowed})")


def check_deployment(docs, where):
    deploy = one(docs, "Deployment", "routing-engine")
    if not deploy:
        return
    pod = deploy["spec"]["template"]["spec"]
    check(deploy["spec"].get("replicas", 1) >= 2, f"{where}: at least 2 replicas")
    check(pod.get("automountServiceAccountToken") is False,
          f"{where}: no service account token mounted")
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) > 0,
          f"{where}: pod runs as a fixed non-root user")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          f"{where}: seccomp RuntimeDefault")
    check(bool(pod.get("topologySpreadConstraints") or pod.get("affinity")),
          f"{where}: replicas spread over nodes")

    containers = pod.get("containers", [])
    check(len(containers) == 1, f"{where}: one container")
    container = containers[0] if containers else {}
    csc = container.get("securityContext", {})
    check(csc.get("readOnlyRootFilesystem") is True, f"{where}: read-only root filesystem")
    check(csc.get("allowPrivilegeEscalation") is False, f"{where}: no privilege escalation")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: all capabilities dropped")

    env = env_of(container)
    names = [e["name"] for e in container.get("env", [])]
    http_addr = env.get("HTTP_ADDR", {}).get("value", "")
    check("0.0.0.0" not in http_addr and http_addr == "$(POD_IP):3001",
          f"{where}: HTTP_ADDR is the pod address, never 0.0.0.0 (got {http_addr!r})")
    check(env.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
          == "status.podIP" and names.index("POD_IP") < names.index("HTTP_ADDR"),
          f"{where}: POD_IP from the downward API, defined before HTTP_ADDR")
    check(env.get("GRPC_ADDR", {}).get("value") == "0.0.0.0:50051", f"{where}: GRPC_ADDR")
    for var, secret in [("DATABASE_URL", "routing-engine-database"),
                        ("REDIS_URL", "routing-engine-redis")]:
        ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef", {})
        check(ref.get("name") == secret and ref.get("key") == var,
              f"{where}: {var} from Secret {secret}")
    check("NATS_URL" in env and "RUST_LOG" in env, f"{where}: NATS_URL and RUST_LOG set")
    allowed = allowed_client_ids(env)
    check(bool(allowed) and all("*" not in a for a in allowed),
          f"{where}: ALLOWED_CLIENT_IDS names the callers, no wildcard (got {allowed})")
    check(all("sms-orchestrator" in a for a in allowed),
          f"{where}: only sms-orchestrator's identities are admitted (got {allowed})")

    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    nats = volumes.get(mounts.get("/run/secrets/nats"), {}).get("secret", {})
    check(nats.get("secretName") == "nats-credentials"
          and [i["path"] for i in nats.get("items", [])] == ["nkey.creds"],
          f"{where}: Secret nats-credentials at /run/secrets/nats/nkey.creds")
    tls_volume = volumes.get(mounts.get("/run/secrets/tls"), {})
    sources = tls_volume.get("projected", {}).get("sources", [])
    files = {}
    for source in sources:
        for kind in ("secret", "configMap"):
            if kind in source:
                for item in source[kind].get("items", []):
                    files[item["path"]] = (kind, source[kind]["name"])
    check(files.get("tls.crt") == ("secret", "routing-engine-tls")
          and files.get("tls.key") == ("secret", "routing-engine-tls")
          and files.get("ca.crt", ("",))[0] == "configMap" and len(files) == 3,
          f"{where}: one projected /run/secrets/tls with tls.crt, tls.key and the CA "
          f"ConfigMap's ca.crt (got {files})")

    probes = {p: container.get(p, {}).get("httpGet", {}) for p in
              ("livenessProbe", "readinessProbe", "startupProbe")}
    check(probes["livenessProbe"].get("path") == "/health"
          and probes["readinessProbe"].get("path") == "/ready"
          and all(p.get("port") in (3001, "http-metrics") for p in probes.values()),
          f"{where}: liveness /health, readiness /ready, startup probe, on port 3001")
    check(bool(container.get("resources", {}).get("limits")), f"{where}: resource limits")


def check_other_kinds(docs, where):
    for doc in docs:
        check(doc["metadata"].get("namespace") == "sms-gateway",
              f"{where}: {doc['kind']} {doc['metadata']['name']} in namespace sms-gateway")
    service = one(docs, "Service", "routing-engine").get("spec", {})
    check(service.get("type", "ClusterIP") == "ClusterIP", f"{where}: Service is ClusterIP")
    check(sorted((p["name"], p["port"]) for p in service.get("ports", []))
          == [("grpc", 50051), ("http-metrics", 3001)], f"{where}: Service ports")
    pdb = one(docs, "PodDisruptionBudget", "routing-engine").get("spec", {})
    check(pdb.get("minAvailable") == 1, f"{where}: PodDisruptionBudget minAvailable 1")
    monitor = one(docs, "ServiceMonitor", "routing-engine").get("spec", {})
    check([e.get("port") for e in monitor.get("endpoints", [])] == ["http-metrics"],
          f"{where}: ServiceMonitor scrapes http-metrics")
    dashboards = [d for d in by_kind(docs, "ConfigMap")
                  if d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    check(len(dashboards) == 1, f"{where}: one dashboard ConfigMap labelled grafana_dashboard")


def metric_names(text):
    return set(re.findall(r"\brouting_engine_[a-z_]+", text))


def check_metrics(docs, where):
    rules = one(docs, "PrometheusRule", "routing-engine")
    exprs = {r["alert"]: r["expr"] for g in rules.get("spec", {}).get("groups", [])
             for r in g["rules"]}
    required = {
        "RoutingEngineOperatorDown": ('routing_engine_operator_health{state="down"} == 1', "2m"),
        "RoutingEngineNoHealthyOperator": (
            'increase(routing_engine_decisions_total{outcome="NO_HEALTHY_OPERATOR"}[5m])) > 0',
            None),
        "RoutingEngineTableReloadRefused": (
            'increase(routing_engine_table_reloads_total{result="refused"}[10m])) > 0', None),
        "RoutingEngineDependencyDown": ("routing_engine_dependency_up == 0", "1m"),
        "RoutingEngineErrorRate": ("> 0.05", "5m"),
        "RoutingEngineTlsReloadRefused": (
            'increase(routing_engine_tls_reloads_total{result="refused"}[10m])) > 0', None),
    }
    fors = {r["alert"]: r.get("for") for g in rules.get("spec", {}).get("groups", [])
            for r in g["rules"]}
    for alert, (fragment, duration) in required.items():
        check(fragment in " ".join(exprs.get(alert, "").split()),
              f"{where}: alert {alert} has {fragment!r}")
        check(duration is None or fors.get(alert) == duration,
              f"{where}: alert {alert} waits {duration}")
    check('outcome!~"ok|' in exprs.get("RoutingEngineErrorRate", ""),
          f"{where}: error rate leaves out ok and the caller's errors")
    unknown = metric_names(" ".join(exprs.values())) - EXPORTED_METRICS
    check(not unknown, f"{where}: alerts use only exported metrics (unknown: {unknown})")

    for board in [d for d in by_kind(docs, "ConfigMap")
                  if d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]:
        for key, text in board.get("data", {}).items():
            dashboard = json.loads(text)
            queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
            unknown = metric_names(queries) - EXPORTED_METRICS
            check(not unknown, f"{where}: dashboard uses only exported metrics ({unknown})")
            for needed in ["routing_engine_decisions_total", "routing_engine_operator_health",
                           "routing_engine_decision_duration_seconds_bucket",
                           "routing_engine_throttled_total", "routing_engine_table_version",
                           "routing_engine_portability_cache_total",
                           "routing_engine_dependency_up"]:
                check(needed in queries, f"{where}: dashboard {key} shows {needed}")
            check("histogram_quantile(0.5," in queries and "histogram_quantile(0.99," in queries,
                  f"{where}: dashboard shows latency p50 and p99")


def check_compose(root):
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    services = compose["services"]
    engine = services["routing-engine"]
    check(all(p.startswith("127.0.0.1:") for p in engine.get("ports", [])),
          "compose: routing-engine ports published on the host's loopback only")
    targets = {v.split(":")[1] for v in engine.get("volumes", [])}
    check({"/run/secrets/tls", "/run/secrets/nats"} <= targets,
          "compose: secrets mounted at /run/secrets/tls and /run/secrets/nats")
    check(engine["environment"].get("NATS_CREDS_FILE") == "/run/secrets/nats/nkey.creds",
          "compose: NKey file at the model's path")
    redis_command = services["redis"]["command"]
    if check("--requirepass" in redis_command, "compose: Redis has a password"):
        password = redis_command[redis_command.index("--requirepass") + 1]
        check(f":{password}@" in engine["environment"]["REDIS_URL"],
              "compose: REDIS_URL carries the Redis password")
    check(engine["environment"]["DATABASE_URL"].startswith("postgres://routing_engine_ro:"),
          "compose: the service connects as the read-only role")
    check(all(d.get("condition") for d in engine.get("depends_on", {}).values()),
          "compose: routing-engine waits on conditions")
    init_certs = (root / "deploy/compose/init-certs.sh").read_text()
    check(any(f"DNS:{a}" in init_certs or f"URI:{a}" in init_certs
              for a in DEFAULT_ALLOWED_CLIENT_IDS),
          "compose: the development client certificate carries an admitted identity")
    check("ALLOWED_CLIENT_IDS" not in engine["environment"],
          "compose: the service admits its default callers")
    nats_volumes = " ".join(services["nats"].get("volumes", []))
    check("deploy/nats/accounts.conf" in nats_volumes,
          "compose: NATS runs the production accounts and permissions")


def nats_block(text, name):
    match = re.search(name + r" = \{(.*?)\n\}", text, re.S)
    check(match is not None, f"nats: {name} defined")
    return re.sub(r"#[^\n]*", "", match.group(1)) if match else ""


def quoted(block, section):
    match = re.search(section + r" = \{(.*?)\n  \}", block, re.S)
    return re.findall(r'"([^"]+)"', match.group(1)) if match else []


def check_nats(root):
    """The exact permissions of the health-event contract, nothing more."""
    text = (root / "deploy/nats/accounts.conf").read_text()
    engine = nats_block(text, "ROUTING_ENGINE_PERMISSIONS")
    check(sorted(quoted(engine, "publish")) == [
        "$JS.API.CONSUMER.CREATE.OPERATOR_HEALTH.>",
        "$JS.API.CONSUMER.MSG.NEXT.OPERATOR_HEALTH.*",
    ], "nats: routing-engine publishes only its consumer's two JetStream API requests")
    check(quoted(engine, "subscribe") == ["_INBOX_routing_engine.>"],
          "nats: routing-engine subscribes to its own inbox prefix only")
    check("allow_responses" not in engine and "deny" not in engine,
          "nats: routing-engine has no other grant")
    manager = nats_block(text, "OPERATOR_MANAGEMENT_PERMISSIONS")
    check(quoted(manager, "publish") == ["operator.health.>"]
          and quoted(manager, "subscribe") == ["_INBOX_operator_health_pub.>"]
          and "allow_responses" not in manager,
          "nats: operator-management-service publishes health events, receives only its acks")
    code = re.sub(r"#[^\n]*", "", text)
    check(code.count('"operator.health.>"') == 1,
          "nats: only operator-management-service may publish on operator.health.>")


def main():
    root = Path(sys.argv[1])
    for path in sys.argv[2:]:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
        where = Path(path).name
        check_network_policy(docs, where)
        check_certificates(docs, where, expect_client="example" in where)
        check_deployment(docs, where)
        check_client_identity(docs, where)
        check_other_kinds(docs, where)
        check_metrics(docs, where)
    check_compose(root)
    check_nats(root)

    for failure in failures:
        print(f"FAIL {failure}")
    print(f"model checks: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

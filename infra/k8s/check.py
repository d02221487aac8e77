"""What the Kubernetes manifests must keep saying, beyond the schemas (infra/deploy-check.sh runs
this on every rendered overlay; docs/deployment.md, "Kubernetes"):

* every container has readiness and liveness probes (nodes: /api/v1/health and /livez), resource
  requests, runs as non-root without privilege escalation on a read-only root;
* nodes enroll (the enrollment secret, never a fixed nodes.token) under their pod's name;
* nothing but nodes and nginx may connect to the control plane's port, and only nginx to the
  nodes' (default deny first);
* the nodes' HorizontalPodAutoscaler and PodDisruptionBudget target them, below the control
  plane's 256 node credentials;
* every key of the Secret that pods read is listed in secrets.example.env.

Usage: python3 check.py RENDERED.yaml SECRETS.example.env
"""
import sys

import yaml

rendered, example = sys.argv[1], sys.argv[2]
documents = [d for d in yaml.safe_load_all(open(rendered)) if d]
by_kind = {}
for document in documents:
    by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


secret_keys = {line.split("=", 1)[0] for line in open(example) if "=" in line and not line.startswith("#")}
deployments = by_kind.get("Deployment", {})
check(set(deployments) == {"zaas-control", "zaas-data", "zaas-nginx"}, f"deployments: {sorted(deployments)}")
for name, deployment in deployments.items():
    pod = deployment["spec"]["template"]["spec"]
    check(pod.get("automountServiceAccountToken") is False, f"{name}: mounts a service account token")
    check(pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{name}: may run as root")
    for container in pod["containers"]:
        where = f"{name}/{container['name']}"
        security = container.get("securityContext", {})
        check(security.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation allowed")
        check(security.get("readOnlyRootFilesystem") is True, f"{where}: writable root filesystem")
        check(security.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities not dropped")
        check("requests" in container.get("resources", {}), f"{where}: no resource requests")
        if container["name"] != "exporter":
            check("readinessProbe" in container and "livenessProbe" in container, f"{where}: probes missing")
        for variable in container.get("env", []):
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                check(reference["name"] == "zaas-secrets", f"{where}: secret {reference['name']}")
                check(reference["key"] in secret_keys, f"{where}: {reference['key']} not in {example}")

data = deployments["zaas-data"]["spec"]["template"]["spec"]["containers"][0]
check(data["readinessProbe"]["httpGet"]["path"] == "/api/v1/health", "nodes: readiness is not /api/v1/health")
check(data["livenessProbe"]["httpGet"]["path"] == "/livez", "nodes: liveness is not /livez")
environment = {v["name"]: v for v in data.get("env", [])}
check("ZAAS_NODES_TOKEN" not in environment, "nodes: a fixed credential (ZAAS_NODES_TOKEN)")
check("ZAAS_NODES_ENROLLMENT_SECRET" in environment, "nodes: no enrollment secret")
check(
    environment.get("ZAAS_NODE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
    "nodes: node id is not the pod's name",
)
control = deployments["zaas-control"]["spec"]["template"]["spec"]["containers"][0]
check(
    "ZAAS_NODES_ENROLLMENT_SECRET" in {v["name"] for v in control.get("env", [])},
    "control plane: no enrollment secret",
)

policies = by_kind.get("NetworkPolicy", {})
deny = [p for p in policies.values() if p["spec"].get("podSelector") == {} and not p["spec"].get("ingress")]
check(deny and "Ingress" in deny[0]["spec"].get("policyTypes", []), "no default-deny ingress policy")


def allowed(target, port):
    """The pod names (by app.kubernetes.io/name) and namespaces allowed to reach target:port."""
    sources = set()
    for policy in policies.values():
        selector = policy["spec"].get("podSelector", {}).get("matchLabels", {})
        if selector.get("app.kubernetes.io/name") != target:
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            for peer in rule.get("from", [{"anywhere": True}]):
                if "anywhere" in peer:
                    sources.add("anywhere")
                elif "podSelector" in peer and "namespaceSelector" not in peer:
                    sources.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
                else:
                    sources.add("namespace:" + str(peer.get("namespaceSelector")))
    return sources


check(allowed("zaas-control", 8400) == {"zaas-data", "zaas-nginx"}, f"control plane 8400: {allowed('zaas-control', 8400)}")
check(allowed("zaas-data", 8401) == {"zaas-nginx"}, f"nodes 8401: {allowed('zaas-data', 8401)}")
check(allowed("zaas-nginx", 8080) == {"anywhere"}, f"nginx 8080: {allowed('zaas-nginx', 8080)}")

autoscaler = by_kind.get("HorizontalPodAutoscaler", {}).get("zaas-data")
check(autoscaler is not None, "no autoscaler for the nodes")
if autoscaler:
    check(autoscaler["spec"]["scaleTargetRef"]["name"] == "zaas-data", "the autoscaler does not scale the nodes")
    check(autoscaler["spec"]["maxReplicas"] < 256, "maxReplicas reaches nodes.max_credentials")
    check(autoscaler["spec"]["minReplicas"] >= 2, "fewer than two nodes")
budget = by_kind.get("PodDisruptionBudget", {}).get("zaas-data")
check(
    budget is not None
    and budget["spec"]["selector"]["matchLabels"] == deployments["zaas-data"]["spec"]["selector"]["matchLabels"],
    "no disruption budget selecting the nodes",
)
for name in ("postgres", "redis"):
    service = by_kind.get("Service", {}).get(name, {})
    check(service.get("spec", {}).get("type") == "ExternalName", f"{name}: not an external service")

if failures:
    print(f"{rendered}:\n  " + "\n  ".join(failures))
    sys.exit(1)

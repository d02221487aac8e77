"""Checks Grafana dashboards against a running Prometheus: every panel's query, with Grafana's
variables filled in ($__rate_interval as 1m, a multi-value variable as its All value), must be
valid PromQL that returns data. Run: python3 dashboards.py PROMETHEUS_URL DASHBOARD.json..."""
import json
import sys
import urllib.parse
import urllib.request

prometheus, paths = sys.argv[1], sys.argv[2:]
values = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def panels(items):
    for item in items:
        yield item
        yield from panels(item.get("panels", []))


def query(expr):
    url = prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:  # 400: not valid PromQL
        return json.load(error)


failures = []
checked = 0
for path in paths:
    dashboard = json.load(open(path))
    variables = dict(values)
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            variables["$" + variable["name"]] = variable.get("allValue", ".+")
            definition = variable.get("definition")
            if definition and definition.startswith("label_values("):
                # label_values(metric, label): the metric must have the label.
                metric, label = definition[len("label_values("):-1].split(",")
                series = query(f"count by ({label.strip()}) ({metric.strip()})")
                if series.get("status") != "success" or not series["data"]["result"]:
                    failures.append(f"{path}: variable {variable['name']}: {definition} has no values")
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name in sorted(variables, key=len, reverse=True):
                expr = expr.replace(name, variables[name])
            checked += 1
            reply = query(expr)
            if reply.get("status") != "success":
                failures.append(f"{path}: {panel['title']}: {expr}: {reply.get('error')}")
            elif not reply["data"]["result"]:
                failures.append(f"{path}: {panel['title']}: {expr}: no data")

print(json.dumps({"queries": checked, "failures": len(failures)}))
for failure in failures:
    print(failure, file=sys.stderr)
sys.exit(1 if failures or checked == 0 else 0)

#!/usr/bin/env python3
"""Checks of sonde's packaging files, one subcommand each; run by scripts/packaging-test.sh.

Each subcommand reads the real files (or what a real tool made of them: the extracted
.deb, kustomize's output) and exits 1 with one line per problem. Needs PyYAML, and the
`dockerfile` package (buildkit's parser) for the Dockerfile.
"""

import json
import os
import pathlib
import re
import shutil
import socket
import sys
import time
import tomllib
import urllib.request

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Every kind, and the metric names the dashboards and rules may use.
KINDS = ["http", "dockerhub", "registry", "kubernetes_images", "hwmon"]
METRICS = {
    "sonde_http_up", "sonde_http_duration_seconds", "sonde_http_status_code",
    "sonde_http_redirects", "sonde_http_body_size_bytes",
    "sonde_http_tls_cert_not_after_timestamp_seconds", "sonde_http_probes_total",
    "sonde_http_failures_total", "sonde_http_probe_duration_seconds",
    "sonde_http_probe_duration_seconds_bucket",
    "sonde_dockerhub_pulls_total", "sonde_dockerhub_stars",
    "sonde_dockerhub_last_updated_timestamp_seconds", "sonde_dockerhub_repositories",
    "sonde_dockerhub_rate_limit_remaining",
    "sonde_image_available", "sonde_image_check_status",
    "sonde_kubernetes_image_available", "sonde_kubernetes_image_check_status",
    "sonde_hwmon_temp_celsius", "sonde_hwmon_temp_crit_celsius",
    "sonde_check_success", "sonde_check_duration_seconds",
    "sonde_check_last_run_timestamp_seconds", "sonde_check_last_success_timestamp_seconds",
    "sonde_check_interval_seconds", "sonde_check_runs_total", "sonde_check_failures_total",
    "sonde_build_info", "sonde_config_last_reload_successful",
    "sonde_config_last_reload_success_timestamp_seconds",
}

problems = []


def problem(message):
    problems.append(message)


def expect(condition, message):
    if not condition:
        problem(message)
    return condition


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_all_yaml(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


# ---------------------------------------------------------------------------------------
# .deb and systemd


def parse_control(text):
    fields, key = {}, None
    for line in text.splitlines():
        if line.startswith((" ", "\t")) and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def check_deb(root, control_dir, contents_file, version):
    root, control_dir = pathlib.Path(root), pathlib.Path(control_dir)
    control = parse_control((control_dir / "control").read_text())
    expect(control.get("Package") == "sonde", f"control Package is {control.get('Package')!r}")
    expect(re.fullmatch(re.escape(version) + r"(-\d+)?", control.get("Version", "")),
           f"control Version {control.get('Version')!r} is not {version}[-revision]")
    expect(control.get("Architecture") == "amd64", f"control Architecture {control.get('Architecture')!r}")
    expect(not control.get("Depends"), f"a static binary depends on nothing, got Depends: {control.get('Depends')!r}")
    expect(control.get("Maintainer"), "control has no Maintainer")
    conffiles = (control_dir / "conffiles").read_text().split() if (control_dir / "conffiles").exists() else []
    for path in ["/etc/sonde/sonde.yml", "/etc/default/sonde"]:
        expect(path in conffiles, f"{path} is not a conffile (conffiles: {conffiles})")
    listing = pathlib.Path(contents_file).read_text()
    files = {}
    for line in listing.splitlines():
        parts = line.split()
        files[parts[-1].lstrip(".")] = parts[0]
    units = [p for p in files if p.endswith("/systemd/system/sonde.service")]
    expect(len(units) == 1, f"expected one sonde.service, got {units}")
    for path, mode in [("/usr/bin/sonde", "-rwxr-xr-x"), ("/etc/sonde/sonde.yml", "-rw-r--r--"),
                       ("/etc/default/sonde", "-rw-r--r--")] + [(u, "-rw-r--r--") for u in units]:
        expect(files.get(path) == mode, f"{path}: mode {files.get(path)!r}, want {mode}")
    expect((root / "etc/sonde/sonde.yml").read_bytes() == (ROOT / "packaging/sonde.yml").read_bytes(),
           "/etc/sonde/sonde.yml is not packaging/sonde.yml")
    default = (root / "etc/default/sonde").read_text()
    expect(re.search(r'^ARGS=""$', default, re.M), '/etc/default/sonde lacks ARGS=""')
    for script, needle in [("postinst", "deb-systemd-helper"), ("postinst", "sonde.service"),
                           ("prerm", "sonde.service"), ("postrm", "sonde.service")]:
        path = control_dir / script
        expect(path.exists() and needle in path.read_text(),
               f"maintainer script {script} does not handle {needle}")
    print(f"deb: Package sonde {version} amd64, no Depends, conffiles {' '.join(conffiles)}, "
          f"{len(files)} entries, unit {units[0] if units else '-'}")


def unit_settings(path):
    settings = {}
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def check_unit(path):
    s = unit_settings(path)

    def one(key):
        values = s.get(key, [])
        return values[-1] if values else None

    expect(one("ExecStart") == "/usr/bin/sonde --config.file /etc/sonde/sonde.yml $ARGS",
           f"ExecStart is {one('ExecStart')!r}")
    expect(one("ExecReload") == "/bin/kill -HUP $MAINPID", f"ExecReload is {one('ExecReload')!r}")
    expect(one("EnvironmentFile") in ("/etc/default/sonde", "-/etc/default/sonde"),
           f"EnvironmentFile is {one('EnvironmentFile')!r}")
    expect(one("DynamicUser") == "yes", "no DynamicUser=yes")
    expect(one("ProtectSystem") == "strict", "ProtectSystem is not strict")
    expect(one("CapabilityBoundingSet") == "", "CapabilityBoundingSet is not empty")
    expect(one("PrivateDevices") == "yes", "no PrivateDevices=yes")
    expect(s.get("SystemCallFilter"), "no SystemCallFilter")
    expect(one("WantedBy") == "multi-user.target", "not WantedBy=multi-user.target")
    # The hwmon check reads /sys/class/hwmon: nothing may hide /sys. ProtectKernelTunables
    # only makes it read-only.
    for key in ["InaccessiblePaths", "TemporaryFileSystem", "TemporaryFilesystem", "BindPaths"]:
        for value in s.get(key, []):
            expect("/sys" not in value, f"{key}={value} hides /sys from the hwmon check")
    expect(one("ProcSubset") != "pid", "ProcSubset=pid hides /proc/stat (process_start_time_seconds)")
    families = set((one("RestrictAddressFamilies") or "").split())
    expect({"AF_INET", "AF_INET6"} <= families, "checks need AF_INET and AF_INET6")
    print("unit: ExecStart, ExecReload (SIGHUP), EnvironmentFile and sandbox settings as required")


# ---------------------------------------------------------------------------------------
# Dockerfile and the image


def dockerignore_patterns(path):
    patterns = []
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").lstrip("/"))
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        patterns.append((re.compile(regex), negate))
    return patterns


def ignored(patterns, rel):
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for regex, negate in patterns:
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def check_dockerfile(dockerfile_path, ignore_path, staged, rootfs, arch):
    import dockerfile

    commands = dockerfile.parse_file(dockerfile_path)
    names = [c.cmd for c in commands]
    expect(names and names[0] == "FROM" and commands[0].value == ("scratch",), "first instruction is not FROM scratch")
    expect(names.count("FROM") == 1, "more than one stage: the image must be the binary only")
    expect("RUN" not in names, "RUN needs a shell, which a scratch image does not have")
    args = {}
    for c in commands:
        if c.cmd == "ARG":
            name, _, default = c.value[0].partition("=")
            args[name] = default
    expect("TARGETARCH" in args, "no ARG TARGETARCH")
    args["TARGETARCH"] = arch
    labels = {}
    for c in commands:
        if c.cmd == "LABEL":
            for key, value in zip(c.value[::2], c.value[1::2]):
                labels[key] = value.strip('"')
    for key in ["title", "description", "source", "licenses", "version", "revision"]:
        expect(f"org.opencontainers.image.{key}" in labels, f"no OCI label org.opencontainers.image.{key}")
    users = [c.value[0] for c in commands if c.cmd == "USER"]
    expect(users == ["65534:65534"], f"USER is {users}, want 65534:65534")
    exposed = [v for c in commands if c.cmd == "EXPOSE" for v in c.value]
    expect(exposed in (["10060"], ["10060/tcp"]), f"EXPOSE is {exposed}, want 10060")
    entrypoint = [c for c in commands if c.cmd == "ENTRYPOINT"]
    cmd = [c for c in commands if c.cmd == "CMD"]
    expect(entrypoint and entrypoint[-1].json, "ENTRYPOINT must be in exec form (there is no shell)")
    expect(not cmd or cmd[-1].json, "CMD must be in exec form (there is no shell)")

    # Assemble the image's file system as `docker build` would from COPY instructions.
    patterns = dockerignore_patterns(ignore_path)
    rootfs = pathlib.Path(rootfs)
    rootfs.mkdir(parents=True, exist_ok=True)

    def expand(text):
        return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), ""), text)

    for c in commands:
        if c.cmd in ("ADD",):
            problem("ADD: use COPY")
        if c.cmd != "COPY":
            continue
        flags = dict(f.lstrip("-").split("=", 1) for f in c.flags)
        expect("from" not in flags, "COPY --from: the image is built from the context only")
        *sources, dest = [expand(v) for v in c.value]
        for src in sources:
            candidate = pathlib.Path(staged) / src
            if not candidate.exists():
                candidate = ROOT / src
            if not expect(candidate.is_file(), f"COPY source {src} is not in the build context"):
                continue
            expect(not ignored(patterns, src), f"COPY source {src} is excluded by .dockerignore")
            target = rootfs / dest.lstrip("/")
            if dest.endswith("/"):
                target = target / pathlib.Path(src).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidate, target)
            target.chmod(int(flags.get("chmod", "644"), 8))
            if "chown" in flags:
                uid, _, gid = flags["chown"].partition(":")
                os.chown(target, int(uid), int(gid or uid))
    expect(ignored(patterns, "target/release/sonde"), ".dockerignore lets target/ into the context")
    if problems:
        return
    entry = list(entrypoint[-1].value) + (list(cmd[-1].value) if cmd else [])
    expect((rootfs / entry[0].lstrip("/")).is_file(), f"the entrypoint {entry[0]} is not in the image")
    json.dump({"user": users[0], "command": entry, "entrypoint": list(entrypoint[-1].value),
               "cmd": list(cmd[-1].value) if cmd else [], "labels": labels}, sys.stdout)


def image_user(image_json):
    print(json.loads(pathlib.Path(image_json).read_text())["user"])


def image_command(image_json):
    for arg in json.loads(pathlib.Path(image_json).read_text())["command"]:
        print(arg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def serve_check(port):
    """Waits (at most 20 s) for /-/ready, then checks /metrics."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(base + "/-/ready", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            problem(f"{base}/-/ready did not answer 200 within 20 s")
            return
        time.sleep(0.2)
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        body = r.read().decode()
    for name in ["sonde_build_info", "sonde_check_success", "process_start_time_seconds"]:
        expect(re.search(rf"^{name}[{{ ]", body, re.M), f"/metrics of the image lacks {name}")


# ---------------------------------------------------------------------------------------
# Workflows


def check_workflows(directory, cross_toml):
    uses_re = re.compile(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$")
    for path in sorted(pathlib.Path(directory).glob("*.yml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            m = uses_re.match(line)
            if not m:
                continue
            ref, comment = m.group(1), m.group(2)
            if ref.startswith("./"):
                continue
            expect(re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref),
                   f"{path.name}:{number}: {ref} is not pinned to a full commit SHA")
            expect(re.search(r"#\s*v\d+(\.\d+)*", comment), f"{path.name}:{number}: no '# vX.Y.Z' comment")
    ci = load_yaml(pathlib.Path(directory) / "ci.yml")
    on = ci.get("on", ci.get(True))
    expect("push" in on and "pull_request" in on, "ci.yml must run on push and pull_request")
    steps = [s.get("run", "") for job in ci["jobs"].values() for s in job["steps"]]
    expect("bash scripts/test.sh" in steps, "ci.yml does not run the test command bash scripts/test.sh")

    release = load_yaml(pathlib.Path(directory) / "release.yml")
    on = release.get("on", release.get(True))
    expect(on.get("push", {}).get("tags") == ["v*"], "release.yml must run on v* tags")
    jobs = release["jobs"]
    version_runs = " ".join(s.get("run", "") for s in jobs["version"]["steps"])
    expect("release.sh check-version" in version_runs, "release.yml does not check the tag against Cargo.toml")
    targets = sorted(e["target"] for e in jobs["build"]["strategy"]["matrix"]["include"])
    cross = tomllib.loads(pathlib.Path(cross_toml).read_text())
    expect(targets == sorted(cross["target"].keys()), f"release targets {targets} != Cross.toml {sorted(cross['target'])}")
    expect(targets == sorted(["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl",
                              "armv7-unknown-linux-musleabihf"]), f"release targets {targets}")
    build_runs = " ".join(s.get("run", "") for s in jobs["build"]["steps"])
    for needle in ["cross build --release --locked", "release.sh package", "cargo deb"]:
        expect(needle in build_runs, f"the build job does not run {needle}")
    push = [s for s in jobs["image"]["steps"] if "docker/build-push-action" in s.get("uses", "")]
    expect(push and push[0]["with"].get("push") is True, "the image job does not push")
    platforms = push[0]["with"].get("platforms", "").split(",") if push else []
    expect(sorted(platforms) == ["linux/amd64", "linux/arm/v7", "linux/arm64"], f"image platforms {platforms}")
    arches = sorted(e["docker_arch"] for e in jobs["build"]["strategy"]["matrix"]["include"])
    expect(arches == ["amd64", "arm", "arm64"], f"docker arches {arches} do not match TARGETARCH of the platforms")
    logins = [s for s in jobs["image"]["steps"] if "docker/login-action" in s.get("uses", "")]
    expect(logins and logins[0]["with"].get("registry") == "ghcr.io", "the image is not pushed to ghcr.io")
    release_runs = " ".join(s.get("run", "") for s in jobs["release"]["steps"])
    for needle in ["release.sh checksums", "gh release create", "SHA256SUMS", "*.deb", "*.tar.gz"]:
        expect(needle in release_runs, f"the release job lacks {needle}")


# ---------------------------------------------------------------------------------------
# Kubernetes


def by_kind(documents):
    result = {}
    for d in documents:
        result.setdefault(d["kind"], []).append(d)
    return result


def check_kubernetes(base_file, servicemonitor_file, podmonitor_file, probe_file):
    base = by_kind(load_all_yaml(base_file))
    for kind in ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service"]:
        expect(len(base.get(kind, [])) == 1, f"base: expected one {kind}, got {len(base.get(kind, []))}")
    if problems:
        return
    rules = base["ClusterRole"][0]["rules"]
    granted = {}
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    # Workloads are listed once and then watched (list-then-watch); secrets only got.
    wanted = {("apps", "deployments"): {"get", "list", "watch"}, ("apps", "statefulsets"): {"get", "list", "watch"},
              ("apps", "daemonsets"): {"get", "list", "watch"}, ("batch", "cronjobs"): {"get", "list", "watch"},
              ("", "secrets"): {"get"}, ("", "serviceaccounts"): {"get"}}
    expect(granted == wanted, f"ClusterRole grants {granted}, want exactly {wanted}")
    binding = base["ClusterRoleBinding"][0]
    sa = base["ServiceAccount"][0]["metadata"]
    expect(binding["roleRef"]["name"] == base["ClusterRole"][0]["metadata"]["name"], "binding names another role")
    expect({"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]} in binding["subjects"],
           "the binding does not bind sonde's service account")
    deploy = base["Deployment"][0]
    pod = deploy["spec"]["template"]["spec"]
    expect(pod.get("serviceAccountName") == sa["name"], "the pod does not run as the service account")
    psc = pod.get("securityContext", {})
    expect(psc.get("runAsNonRoot") is True, "pod: runAsNonRoot is not true")
    expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod: seccomp is not RuntimeDefault")
    (container,) = pod["containers"]
    csc = container.get("securityContext", {})
    expect(csc.get("readOnlyRootFilesystem") is True, "container: root file system is not read-only")
    expect(csc.get("allowPrivilegeEscalation") is False, "container: privilege escalation allowed")
    expect(csc.get("capabilities", {}).get("drop") == ["ALL"], "container: capabilities not all dropped")
    expect(container.get("resources", {}).get("requests", {}).keys() >= {"cpu", "memory"}, "no cpu/memory requests")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    expect(ports == {"metrics": 10060}, f"container ports {ports}")
    for probe, path in [("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")]:
        get = container.get(probe, {}).get("httpGet", {})
        expect(get.get("path") == path and get.get("port") in ("metrics", 10060), f"{probe} is {get}")
    expect(re.match(r"ghcr\.io/sonde-exporter/sonde:\d+\.\d+\.\d+$", container["image"]), f"image {container['image']}")
    config = base["ConfigMap"][0]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    expect(volumes.get(mounts.get("/etc/sonde"), {}).get("configMap", {}).get("name") == config["metadata"]["name"],
           "the ConfigMap is not mounted at /etc/sonde")
    expect("--config.file=/etc/sonde/sonde.yml" in container.get("args", []), "sonde is not given the mounted config")
    expect(config["data"].get("sonde.yml") == (ROOT / "packaging/kubernetes/base/sonde.yml").read_text(),
           "the ConfigMap does not carry packaging/kubernetes/base/sonde.yml")
    service = base["Service"][0]
    annotations = service["metadata"].get("annotations", {})
    expect(annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "10060",
                           "prometheus.io/path": "/metrics"}, f"Service annotations {annotations}")
    selector = service["spec"]["selector"]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    expect(all(pod_labels.get(k) == v for k, v in selector.items()), "the Service selects no sonde pod")

    for name, path, kind, endpoints_key in [("servicemonitor", servicemonitor_file, "ServiceMonitor", "endpoints"),
                                            ("podmonitor", podmonitor_file, "PodMonitor", "podMetricsEndpoints")]:
        docs = by_kind(load_all_yaml(path))
        expect(len(docs.get(kind, [])) == 1, f"{name}: expected one {kind}")
        expect(len(docs.get("PrometheusRule", [])) == 1, f"{name}: expected one PrometheusRule")
        other = "PodMonitor" if kind == "ServiceMonitor" else "ServiceMonitor"
        expect(other not in docs, f"{name}: also has a {other} (sonde would be scraped twice)")
        if problems:
            return
        monitor = docs[kind][0]
        target_labels = service["metadata"]["labels"] if kind == "ServiceMonitor" else pod_labels
        match = monitor["spec"]["selector"]["matchLabels"]
        expect(all(target_labels.get(k) == v for k, v in match.items()), f"{kind} selects nothing of sonde's")
        expect(target_labels.get(monitor["spec"].get("jobLabel")) == "sonde",
               f"{kind}: the job would not be named sonde (the alerts expect job=\"sonde\")")
        expect([e.get("port") for e in monitor["spec"][endpoints_key]] == ["metrics"], f"{kind} endpoints")
        expect(monitor["metadata"].get("namespace") == sa["namespace"], f"{kind} is not in sonde's namespace")
        rules = docs["PrometheusRule"][0]
        source = load_yaml(ROOT / "packaging/prometheus/sonde.rules.yml")
        expect(rules["spec"]["groups"] == source["groups"],
               "the PrometheusRule differs from packaging/prometheus/sonde.rules.yml; regenerate it with "
               "python3 scripts/prometheusrule.py > packaging/kubernetes/rules/prometheusrule.yaml")
    check_probe(probe_file, service, sa["namespace"], config["data"]["sonde.yml"])
    print(f"kubernetes: {', '.join(sorted(base))} + ServiceMonitor / PodMonitor + PrometheusRule + Probe as required")


def check_probe(probe_file, service, namespace, sonde_yml):
    """The probe variant: sonde scraped by its ServiceMonitor, and a Probe whose prober is
    sonde's Service and whose module is one of sonde's config."""
    docs = by_kind(load_all_yaml(probe_file))
    for kind in ["ServiceMonitor", "Probe", "PrometheusRule", "Deployment"]:
        expect(len(docs.get(kind, [])) == 1, f"probe: expected one {kind}, got {len(docs.get(kind, []))}")
    if problems:
        return
    spec = docs["Probe"][0]["spec"]
    port = service["spec"]["ports"][0]["port"]
    want = f"{service['metadata']['name']}.{namespace}.svc:{port}"
    expect(spec["prober"] == {"url": want, "path": "/probe"}, f"Probe prober {spec['prober']}, want {want} /probe")
    modules = yaml.safe_load(sonde_yml).get("modules") or {}
    expect(spec.get("module") in modules, f"Probe module {spec.get('module')} is not in sonde's config {list(modules)}")
    expect(spec["targets"]["staticConfig"]["static"], "Probe has no targets")
    expect(docs["Probe"][0]["metadata"].get("namespace") == namespace, "the Probe is not in sonde's namespace")


# ---------------------------------------------------------------------------------------
# Prometheus rules


def check_rules(rules_file, tests_file):
    rules = load_yaml(rules_file)
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    records = [r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r]
    required = {"SondeDown", "SondeURLDown", "SondeTLSCertificateExpiringSoon", "SondeImageAbsent",
                "SondeImageCheckFailing", "SondeDockerHubStale", "SondeSensorOverCritical", "SondeCheckFailing"}
    expect(required <= set(alerts), f"missing alerts: {sorted(required - set(alerts))}")
    tests = load_yaml(tests_file)["tests"]
    fired, quiet = set(), set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    tested_records = {t["expr"].split("{")[0] for test in tests for t in test.get("promql_expr_test", [])}
    for alert in alerts:
        expect(alert in fired, f"no test shows {alert} firing")
        expect(alert in quiet, f"no test shows {alert} not firing")
    for record in records:
        expect(record in tested_records, f"no test checks the value of {record}")
    for g in rules["groups"]:
        for r in g["rules"]:
            for name in re.findall(r"(?<![:\w])sonde_[a-z_]+(?![:\w])", r["expr"]):
                expect(name in METRICS, f"rule {r.get('alert') or r.get('record')}: unknown metric {name}")
            if "alert" in r:
                expect(r.get("labels", {}).get("severity") in ("warning", "critical"), f"{r['alert']}: no severity")
                expect(r.get("annotations", {}).get("summary"), f"{r['alert']}: no summary")
    print(f"rules: {len(alerts)} alerts each tested firing and not firing, {len(records)} recording rules tested")


# ---------------------------------------------------------------------------------------
# compose, Grafana, Rancher


def stage_volumes(service, base, stage):
    """Copies a compose service's bind mounts to their container paths under stage."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if not source.startswith("."):
            continue
        source_path = (base / source).resolve()
        expect(source_path.exists(), f"compose: bind mount source {source} does not exist")
        destination = pathlib.Path(stage) / target.lstrip("/")
        if source_path.is_dir():
            shutil.copytree(source_path, destination, dirs_exist_ok=True)
        elif source_path.is_file():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source_path, destination)


def check_compose(directory, stage):
    base = pathlib.Path(directory)
    stage = pathlib.Path(stage)
    compose = load_yaml(base / "docker-compose.yml")
    services = compose["services"]
    expect(set(services) == {"sonde", "prometheus", "grafana"}, f"compose services {sorted(services)}")
    if problems:
        return
    sonde = services["sonde"]
    expect("10060:10060" in sonde.get("ports", []), "compose: sonde's port 10060 is not published")
    expect(re.match(r"ghcr\.io/sonde-exporter/sonde:\d", sonde.get("image", "")), "compose: sonde image")
    for name, service in services.items():
        stage_volumes(service, base, stage)
        expect(":latest" not in service.get("image", "") and ":" in service.get("image", ""),
               f"compose: {name}'s image is not pinned to a version")
    prometheus = load_yaml(stage / "etc/prometheus/prometheus.yml")
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    expect("sonde" in jobs, "compose: Prometheus has no job sonde (the alerts expect job=\"sonde\")")
    targets = [t for c in jobs.get("sonde", {}).get("static_configs", []) for t in c["targets"]]
    expect(targets == ["sonde:10060"], f"compose: job sonde scrapes {targets}")
    expect((stage / "etc/prometheus/sonde.rules.yml").is_file(), "compose: the rules are not mounted")
    probe = jobs.get("blackbox", {})
    relabel = probe.get("relabel_configs", [])
    expect(probe.get("metrics_path") == "/probe" and relabel and relabel[-1].get("replacement") == "sonde:10060",
           "compose: job blackbox does not probe through sonde's /probe")
    module = probe.get("params", {}).get("module", [None])[0]
    probe_targets = [t for c in probe.get("static_configs", []) for t in c["targets"]]
    expect(len(probe_targets) == 2, f"compose: job blackbox probes {probe_targets}, want two URLs")

    datasources = load_yaml(stage / "etc/grafana/provisioning/datasources/prometheus.yml")["datasources"]
    expect([d["url"] for d in datasources] == ["http://prometheus:9090"], "grafana: datasource url")
    uid = datasources[0].get("uid")
    providers = load_yaml(stage / "etc/grafana/provisioning/dashboards/sonde.yml")["providers"]
    dash_dir = stage / providers[0]["options"]["path"].lstrip("/")
    dashboards = sorted(dash_dir.glob("*.json"))
    expect(dashboards, f"grafana: no dashboard in {providers[0]['options']['path']}")
    exprs = []
    for path in dashboards:
        dash = json.loads(path.read_text())
        rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
        for kind in KINDS:
            expect(kind in rows, f"grafana: {path.name} has no row for kind {kind}")
        ids = [p["id"] for p in dash["panels"]]
        expect(len(ids) == len(set(ids)), f"grafana: {path.name} repeats panel ids")
        for panel in dash["panels"]:
            if panel["type"] == "row":
                continue
            expect(panel.get("datasource", {}).get("uid") == uid, f"grafana: panel {panel['title']} datasource")
            expect(panel.get("targets"), f"grafana: panel {panel['title']} has no query")
            for target in panel.get("targets", []):
                exprs.append((panel["title"], target["expr"]))
    # promtool parses each expression as a recording rule, with Grafana's variables
    # replaced by what they stand for.
    group = []
    for i, (title, expr) in enumerate(exprs):
        concrete = expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
        expect("$" not in concrete, f"grafana: panel {title}: unexpanded variable in {expr}")
        for name in re.findall(r"(?<![:\w])sonde_[a-z_]+(?![:\w])", concrete):
            expect(name in METRICS, f"grafana: panel {title}: unknown metric {name}")
        group.append({"record": f"dashboard:expr_{i}", "expr": concrete})
    with open(stage / "dashboard-exprs.yml", "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": group}]}, f)
    sonde_config = stage / "etc/sonde/sonde.yml"
    expect(sonde_config.is_file(), "compose: sonde's config is not mounted at /etc/sonde/sonde.yml")
    if sonde_config.is_file():
        modules = yaml.safe_load(sonde_config.read_text()).get("modules") or {}
        expect(module in modules, f"compose: job blackbox asks for module {module}, not in sonde's {list(modules)}")
    print(f"compose: 3 services, Prometheus job sonde with rules, Grafana datasource + {len(dashboards)} "
          f"dashboard(s) with a row per kind, {len(exprs)} expressions")


def check_rancher(directory):
    base = pathlib.Path(directory)
    compose = load_yaml(base / "docker-compose.yml")
    sonde = compose["services"]["sonde"]
    labels = sonde.get("labels", {})
    expect(labels.get("prometheus_port") == "10060", f"rancher: prometheus_port label is {labels.get('prometheus_port')!r}, want the string '10060'")
    expect("10060:10060" in sonde.get("ports", []), "rancher: port 10060 not published")
    expect(re.match(r"ghcr\.io/sonde-exporter/sonde:\d", sonde.get("image", "")), "rancher: image")
    rancher = load_yaml(base / "rancher-compose.yml")
    check = rancher["services"]["sonde"].get("health_check", {})
    expect(check.get("port") == 10060 and "/-/healthy" in check.get("request_line", ""), "rancher: health check")
    print("rancher: service with prometheus_port '10060' and a /-/healthy health check")


# ---------------------------------------------------------------------------------------
# Every command line sonde ships, run as a user would run it


def copy_root(source, destination):
    shutil.copytree(source, destination, symlinks=True, dirs_exist_ok=True)


def mount_over(stage, target, source_dir_or_files):
    """A volume mount: the target directory holds only what is mounted there."""
    target_dir = pathlib.Path(stage) / target.lstrip("/")
    if target_dir.exists():
        shutil.rmtree(target_dir)
    target_dir.mkdir(parents=True)
    for name, content in source_dir_or_files.items():
        (target_dir / name).write_text(content)
        (target_dir / name).chmod(0o644)


def shell_commands(line):
    """Splits one README shell line into simple commands: && ; | end one, > ends its words."""
    import shlex

    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, words, redirected = [], [], False
    for token in lexer:
        if token in ("&&", "||", ";", "|", "&"):
            commands.append(words)
            words, redirected = [], False
        elif token in (">", ">>", "<", "2>"):
            redirected = True
        elif not redirected:
            words.append(token)
    commands.append(words)
    return [c for c in commands if c]


def readme_sonde_commands():
    """Every `sonde ...` command in a shell code block of README.md."""
    found, in_block, shell = [], False, False
    pending = ""
    for number, line in enumerate((ROOT / "README.md").read_text().splitlines(), 1):
        if line.startswith("```"):
            in_block = not in_block
            shell = in_block and line.strip("`").strip() in ("sh", "bash", "shell", "console")
            continue
        if not (in_block and shell):
            continue
        line = pending + line
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        for words in shell_commands(line):
            if pathlib.PurePath(words[0]).name == "sonde" and words[0] in ("sonde", "./sonde", "/usr/bin/sonde"):
                found.append((number, words))
    return found


def systemd_args_examples(default_file):
    """ARGS="" and each commented `ARGS="..."` example of /etc/default/sonde, split as systemd splits $ARGS."""
    import shlex

    examples = []
    for line in pathlib.Path(default_file).read_text().splitlines():
        text = line.lstrip("#").strip()
        if text.startswith("ARGS="):
            value = shlex.split(text[len("ARGS="):])
            examples.append(value[0].split() if value else [])
    return examples


def run_shipped(label, stage, argv, cwd=None, chroot=True, env=None, hostname=None):
    """Runs one shipped command line with --config.check appended (in a chroot of stage,
    with only the environment `env` and, given one, its own host name, as a container
    starts)."""
    args = list(argv)
    if "--config.check" not in args:
        args.append("--config.check")
    shown = " ".join(args)
    if chroot:
        prefix = [] if os.geteuid() == 0 else ["sudo"]
        variables = [f"{k}={v}" for k, v in (env or {}).items()]
        if hostname:
            # A pod's own UTS namespace: `--shard=auto/N` reads the index from it.
            prefix = prefix + ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname]
        run = prefix + ["env", "-i"] + variables + [shutil.which("chroot"), "--userspec=65534:65534", str(stage)] + args
    else:
        run = [str(pathlib.Path(cwd) / args[0]) if args[0].startswith("./") else args[0]] + args[1:]
    import subprocess

    result = subprocess.run(run, cwd=cwd, capture_output=True, text=True, timeout=30)
    ok = result.returncode == 0
    print(f"  {'ok  ' if ok else 'FAIL'} {label}: {shown}")
    if not ok:
        problem(f"{label}: `{shown}` exited {result.returncode}: {result.stderr.strip()}")
    return ok


def check_commands(rootfs, image_json, deb_root, tar_dir, web_dir, *kustomized):
    """Runs every command line sonde ships with --config.check appended, each where it runs:
    the image's file system (Dockerfile, compose, Rancher, each Kubernetes variant with its
    ConfigMap mounted), the .deb's (systemd ExecStart with each ARGS example, README commands
    on /etc/sonde) and the release archive (README's ./sonde commands)."""
    import tempfile

    image = json.loads(pathlib.Path(image_json).read_text())
    entrypoint = image["entrypoint"]
    count = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        web_files = {p.name: p.read_text() for p in pathlib.Path(web_dir).iterdir()}

        def stage(name, base, mounts=()):
            path = tmp / name
            copy_root(base, path)
            for target, files in mounts:
                mount_over(path, target, files)
            for directory in [path] + [p for p in path.rglob("*") if p.is_dir()]:
                directory.chmod(0o755)
            return path

        # The image: ENTRYPOINT + CMD as `docker run IMAGE` runs it.
        image_root = stage("image", rootfs)
        count += run_shipped("Dockerfile ENTRYPOINT + CMD", image_root, image["command"])
        # compose: the service's command replaces CMD; its bind mounts overlay the image.
        compose_dir = ROOT / "packaging/compose"
        service = load_yaml(compose_dir / "docker-compose.yml")["services"]["sonde"]
        compose_root = stage("compose", rootfs)
        stage_volumes(service, compose_dir, compose_root)
        count += run_shipped("compose sonde command", compose_root, entrypoint + service["command"])
        rancher = load_yaml(ROOT / "packaging/rancher/docker-compose.yml")["services"]["sonde"]
        expect(not rancher.get("volumes"), "rancher: volumes are not staged by this test")
        count += run_shipped("Rancher sonde command", image_root, entrypoint + rancher["command"])
        # Kubernetes: each variant's Deployment, with its ConfigMaps mounted where it says.
        for path in kustomized:
            documents = load_all_yaml(path)
            config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in documents if d["kind"] == "ConfigMap"}
            workloads = [d for d in documents if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]
            expect(workloads, f"{path}: no workload")
            for workload in workloads:
                pod = workload["spec"]["template"]["spec"]
                volumes = {v["name"]: v for v in pod.get("volumes", [])}
                for container in pod["containers"]:
                    mounts = []
                    for m in container.get("volumeMounts", []):
                        source = volumes.get(m["name"], {}).get("configMap")
                        if source:
                            mounts.append((m["mountPath"], config_maps[source["name"]]))
                    # What the kubelet gives the pod: the service-account volume (when
                    # automounted), the API server's address, and the container's env.
                    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
                    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
                    if pod.get("automountServiceAccountToken", True):
                        mounts.append(("/var/run/secrets/kubernetes.io/serviceaccount", {
                            "token": "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl",
                            "ca.crt": web_files["tls.crt"],
                            "namespace": workload["metadata"].get("namespace", "default"),
                        }))
                    root = stage(f"k8s-{count}", rootfs, mounts)
                    argv = container.get("command") or entrypoint
                    argv = argv + container.get("args", [] if container.get("command") else image["cmd"])
                    label = f"kustomize {pathlib.Path(path).stem} {workload['kind']} {container['name']}"
                    if workload["kind"] == "StatefulSet":
                        # Each pod of a StatefulSet is named after it and its ordinal.
                        for ordinal in range(workload["spec"].get("replicas", 1)):
                            pod = f"{workload['metadata']['name']}-{ordinal}"
                            count += run_shipped(f"{label} (pod {pod})", root, argv, env=env, hostname=pod)
                    else:
                        count += run_shipped(label, root, argv, env=env)
        # systemd: ExecStart with $ARGS empty and with each example of /etc/default/sonde.
        unit = unit_settings(next(pathlib.Path(deb_root).rglob("sonde.service")))
        exec_start = unit["ExecStart"][-1].split()
        deb_stage = stage("deb", deb_root)
        # The files the ARGS examples name (a web config and its TLS pair), made by the test.
        for name, content in web_files.items():
            (deb_stage / "etc/sonde" / name).write_text(content)
            (deb_stage / "etc/sonde" / name).chmod(0o644)
        # The blackbox_exporter config the README's migration commands name, as Debian's
        # prometheus-blackbox-exporter installs it (scripts/test.sh installs the package).
        blackbox = pathlib.Path("/etc/prometheus/blackbox.yml")
        expect(blackbox.is_file(), "/etc/prometheus/blackbox.yml is missing: install prometheus-blackbox-exporter")
        if blackbox.is_file():
            (deb_stage / "etc/prometheus").mkdir(parents=True, exist_ok=True)
            (deb_stage / "etc/prometheus").chmod(0o755)
            shutil.copyfile(blackbox, deb_stage / "etc/prometheus/blackbox.yml")
            (deb_stage / "etc/prometheus/blackbox.yml").chmod(0o644)
        for args in systemd_args_examples(pathlib.Path(deb_root) / "etc/default/sonde"):
            argv = [w for w in exec_start if w != "$ARGS"] + args
            count += run_shipped(f"systemd ExecStart, ARGS=\"{' '.join(args)}\"", deb_stage, argv)
        # README: sonde commands in shell blocks; ./sonde in the release archive's directory,
        # the others on the installed package's files.
        for line, words in readme_sonde_commands():
            if words[0] == "./sonde":
                count += run_shipped(f"README.md:{line}", None, words, cwd=tar_dir, chroot=False)
            else:
                argv = ["/usr/bin/sonde"] + words[1:]
                count += run_shipped(f"README.md:{line}", deb_stage, argv)
    print(f"commands: {count} shipped command lines ran with --config.check and exited 0")


def main():
    command, args = sys.argv[1], sys.argv[2:]
    handlers = {
        "deb": check_deb, "unit": check_unit, "dockerfile": check_dockerfile,
        "image-user": image_user, "image-command": image_command, "free-port": free_port,
        "serve-check": serve_check, "workflows": check_workflows, "kubernetes": check_kubernetes,
        "rules": check_rules, "compose": check_compose, "rancher": check_rancher,
        "commands": check_commands,
    }
    handlers[command](*args)
    if problems:
        for p in problems:
            print(f"packaging_checks {command}: {p}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

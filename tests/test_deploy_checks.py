"""What runs in production, checked by the tools production uses: the alert rules by
`promtool` (Debian's `prometheus` package) against synthetic series, the dashboard
against the metrics a worker really exports (the README's table, which test_metrics
holds to a real scrape); the Kubernetes manifests against the API's schemas
(`kubernetes-validate --strict`), compose against the compose-spec schema
(`check-jsonschema`), the systemd units by `systemd-analyze verify`, the Dockerfile by
hadolint; what every manifest must say (a user that is not root, a read-only root
filesystem, requests and limits, secrets from Secrets, probes, a grace period longer
than the worker's own shutdown); and the image's steps, run in a fresh virtual
environment, since no container builder can pull its base image here (README)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dunning.json"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
BIN = Path(sys.executable).parent
_NAME = re.compile(r"\bdunning_[a-z_]+")
_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def documented() -> set[str]:
    """The metric names of the README's table (its first column), as Prometheus names them."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Metrics"):]
    section = section[:section.index("\n## ", 1) if "\n## " in section else len(section)]
    return {match.group(1) for match in re.finditer(r"^\| `(dunning_[a-z_]+)` \|", section, re.MULTILINE)}


def family(sample: str) -> str:
    """`dunning_sends_total` → `dunning_sends_total`; `..._seconds_bucket` → `..._seconds`."""
    for suffix in ("_bucket", "_count", "_sum", "_created"):
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: `make system` installs Debian's prometheus package, which has it"
    return found


def test_the_alert_rules_are_valid() -> None:
    checked = subprocess.run([promtool(), "check", "rules", "alerts.yaml"], cwd=PROMETHEUS, capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_on_its_series_and_not_on_healthy_ones() -> None:
    tested = subprocess.run([promtool(), "test", "rules", "alerts.test.yaml"], cwd=PROMETHEUS, capture_output=True,
                            text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_test_and_names_only_documented_metrics() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yaml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yaml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert {rule["alert"] for rule in rules} == tested, "an alert without a test that shows it firing"
    known = documented()
    for rule in rules:
        for name in _NAME.findall(rule["expr"]):
            assert family(name) in known, f"{rule['alert']}: {name} is not in the README's metrics table"
        assert rule["labels"]["severity"] in ("page", "ticket") and rule["annotations"]["summary"]


def test_the_dashboard_is_one_grafana_model_over_documented_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24
        mine = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    known = documented()
    queried = set()
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", "the Prometheus chosen when importing, not a fixed one"
        for target in panel["targets"]:
            for name in _NAME.findall(target["expr"]):
                assert family(name) in known, f"{panel['title']}: {name} is not in the README's metrics table"
                queried.add(family(name))
    titles = " ".join(p["title"].lower() for p in panels)
    for subject in ("channel", "rule", "due to sent", "queue", "agenda", "webhook", "errors", "verification"):
        assert subject in titles, f"the dashboard shows no {subject}"
    assert {"dunning_sends_total", "dunning_decision_rules_total", "dunning_reminder_due_to_sent_seconds",
            "dunning_queue_messages", "dunning_agenda_entries", "dunning_webhook_attempts_total",
            "dunning_provider_errors_total"} <= queried


def test_the_readme_documents_what_the_code_defines_and_nothing_else() -> None:
    from prometheus_client import Counter, Histogram

    from worker import metrics

    counted = {m._name + ("_total" if isinstance(m, Counter) else "") for m in vars(metrics).values()
               if isinstance(m, Counter | Histogram)}
    read = set(re.findall(r'"(dunning_[a-z_]+)"', (ROOT / "worker" / "monitoring.py").read_text()))
    assert documented() == counted | read


# --- The deployment files, by the tools that read them ---------------------------------------

def run(*command: str | Path, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_the_kubernetes_manifests_match_the_apis_schemas_strictly(tmp_path: Path) -> None:
    checked = run(BIN / "kubernetes-validate", "--strict", *MANIFESTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(" passed for resource ") == sum(1 for _ in documents()), checked.stdout
    # --strict is what catches a misspelt field (the API server would drop it silently)
    typo = tmp_path / "worker.yaml"
    typo.write_text((DEPLOY / "kubernetes" / "worker.yaml").read_text().replace("readinessProbe:", "readynessProbe:"))
    refused = run(BIN / "kubernetes-validate", "--strict", typo)
    assert refused.returncode != 0 and "readynessProbe" in refused.stdout + refused.stderr


def test_compose_matches_the_compose_spec(tmp_path: Path) -> None:
    checked = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", DEPLOY / "compose.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    typo = tmp_path / "compose.yaml"
    typo.write_text((DEPLOY / "compose.yaml").read_text().replace("stop_grace_period:", "stop_grace:"))
    refused = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", typo)
    assert refused.returncode != 0, refused.stdout


def test_the_systemd_units_verify_with_their_program_in_place(tmp_path: Path) -> None:
    """`systemd-analyze verify` checks that ExecStart runs, so the units are verified as
    installed: /opt/dunning/bin/dunning becomes this checkout's. A warning (an unknown key,
    a missing unit) fails as an error does: systemd would ignore the line."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian's systemd package)"
    units = sorted((DEPLOY / "systemd").iterdir())
    for unit in units:
        text = unit.read_text().replace("/opt/dunning/bin/dunning", str(BIN / "dunning"))
        (tmp_path / unit.name).write_text(text)
    verified = run(analyze, "verify", *(tmp_path / unit.name for unit in units))
    assert verified.returncode == 0 and not verified.stderr.strip(), verified.stdout + verified.stderr
    worker = tmp_path / "dunning-worker.service"
    worker.write_text(worker.read_text().replace("Type=simple", "Typ=simple"))
    warned = run(analyze, "verify", worker)
    assert "Unknown key" in warned.stderr, "a unit's mistake would pass unseen"


def test_the_dockerfile_passes_hadolint() -> None:
    linted = run(BIN / "hadolint", "deploy/Dockerfile")
    assert linted.returncode == 0, linted.stdout + linted.stderr


# --- What every manifest must say ------------------------------------------------------------

def documents() -> Iterator[dict[str, Any]]:
    for manifest in MANIFESTS:
        yield from (document for document in yaml.safe_load_all(manifest.read_text()) if document)


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for document in documents():
        kind, name = document["kind"], document["metadata"]["name"]
        if kind == "Deployment":
            yield name, document["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield name, document["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined: [("RUN", "pip install ..."), ...]."""
    joined = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def image_user() -> int:
    users = [argument for instruction, argument in dockerfile() if instruction == "USER"]
    assert users, "the image runs as root"
    return int(users[-1].split(":")[0])


def shutdown_s(env: list[dict[str, Any]] | dict[str, Any]) -> float:
    from worker.settings import Settings

    pairs = {e["name"]: e.get("value") for e in env} if isinstance(env, list) else env
    return float(pairs.get("DUNNING_SHUTDOWN_S") or Settings.shutdown_s)


def test_every_pod_runs_as_the_images_user_on_a_read_only_root_with_bounded_resources() -> None:
    seen = 0
    for name, spec in pod_specs():
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == image_user() != 0, name
        assert security["seccompProfile"]["type"] == "RuntimeDefault", name
        writable = {volume["name"] for volume in spec.get("volumes", []) if "emptyDir" in volume}
        for container in spec["containers"]:
            seen += 1
            box = container["securityContext"]
            assert box["readOnlyRootFilesystem"] is True and box["allowPrivilegeEscalation"] is False, name
            assert box["capabilities"]["drop"] == ["ALL"], name
            assert {m["mountPath"] for m in container["volumeMounts"] if m["name"] in writable} == {"/tmp"}, \
                f"{name}: the health file and the metrics need a writable /tmp"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name}: {bound}"
    assert seen == 4, "worker, serve and the two CronJobs"


_SECRET = re.compile(r"KEY|TOKEN|PASSWORD|SECRET|DATABASE_URL|SMTP_URL|WEBHOOK_URL")


def test_secrets_come_from_secrets_never_from_the_files() -> None:
    for name, spec in pod_specs():
        for container in spec["containers"]:
            for variable in container.get("env", []):
                if _SECRET.search(variable["name"]):
                    assert "secretKeyRef" in variable.get("valueFrom", {}), f"{name}: {variable['name']}"
            assert {"secretRef": {"name": "dunning"}} in container["envFrom"], name
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for service, body in compose["services"].items():
        for variable, value in (body.get("environment") or {}).items():
            if _SECRET.search(variable) and variable != "POSTGRES_USER":
                assert str(value).startswith("${") or "${POSTGRES_PASSWORD}" in str(value), f"{service}: {variable}"


def test_long_running_pods_have_probes_on_routes_that_answer() -> None:
    """The probes' paths are the ones the worker's metrics port and serve's API answer
    (test_metrics calls them for real); liveness never waits on the database."""
    long_running = {name: spec for name, spec in pod_specs() if not name.endswith(("forewarn", "purge"))}
    assert set(long_running) == {"dunning-worker", "dunning-serve"}
    for name, spec in long_running.items():
        (container,) = spec["containers"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["readinessProbe"]["httpGet"]["port"] in ports, name
        live = container["livenessProbe"]
        assert live.get("httpGet", {}).get("path") == "/healthz" or live["exec"]["command"][-1] == "--check", name
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert all("healthcheck" in body for body in compose.values())
    assert "9464/readyz" in " ".join(compose["worker"]["healthcheck"]["test"])
    assert "8000/readyz" in " ".join(compose["serve"]["healthcheck"]["test"])


def test_the_grace_period_outlasts_the_workers_own_shutdown_everywhere() -> None:
    """At SIGTERM the worker gives what it holds DUNNING_SHUTDOWN_S, then stops its loops (a
    webhook in flight within its timeout): Kubernetes, compose and systemd must wait longer
    before they kill, or a send is cut half-way. 10 s for the loops."""
    (worker,) = (spec for name, spec in pod_specs() if name == "dunning-worker")
    assert worker["terminationGracePeriodSeconds"] >= shutdown_s(worker["containers"][0]["env"]) + 10
    service = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["worker"]
    assert float(service["stop_grace_period"].removesuffix("s")) >= shutdown_s(service["environment"]) + 10
    unit = (DEPLOY / "systemd" / "dunning-worker.service").read_text()
    stop = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)
    assert stop and int(stop.group(1)) >= shutdown_s({}) + 10
    assert "KillMode=mixed" in unit, "SIGTERM to `dunning worker` alone; SIGKILL to all only at the end"


def test_workers_have_a_disruption_budget_and_an_autoscaler_on_queue_depth() -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for document in documents():
        by_kind.setdefault(document["kind"], []).append(document)
    (budget,) = by_kind["PodDisruptionBudget"]
    (worker,) = (d for d in by_kind["Deployment"] if d["metadata"]["name"] == "dunning-worker")
    assert budget["spec"]["selector"] == worker["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] < worker["spec"]["replicas"]
    (scaler,) = by_kind["HorizontalPodAutoscaler"]
    assert scaler["spec"]["scaleTargetRef"]["name"] == "dunning-worker"
    (metric,) = scaler["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] in documented()
    assert scaler["spec"]["minReplicas"] > budget["spec"]["maxUnavailable"]


# --- The image, built from its own steps ---------------------------------------------------------

def test_the_images_steps_install_a_dunning_that_runs_as_its_user_from_a_read_only_app() -> None:
    """No container builder can run the Dockerfile here: its base image (python:3.11-slim)
    comes from a container registry this machine cannot reach (README: the image). So its
    steps run as written: COPY into a fresh app folder, RUN's pip install in a fresh virtual
    environment of the same Python, ENV as set; then, as the image's numeric user with the
    app folder read-only, dunning migrates a database, renders the image's templates and
    answers its health check."""
    with tempfile.TemporaryDirectory(prefix="dunning-image-") as folder:  # not under pytest's root-only folder
        built(Path(folder))


def built(root: Path) -> None:
    app, venv, scratch = root / "app", root / "venv", root / "scratch"
    app.mkdir()
    # the system's Python (Debian's, as the image's is the Python project's 3.11): one the image's user can run
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, timeout=120)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(scratch)}
    ran, command = [], []
    for instruction, argument in dockerfile():
        if instruction == "COPY":
            *sources, target = argument.split()
            for source in sources:
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, app / target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(ROOT / source, app / source)
        elif instruction == "RUN":
            install = argument.split("&&")[0].strip()  # then useradd: the user is setpriv's, below
            assert install.startswith("pip install ")
            done = run(venv / "bin" / "pip", *install.split()[1:], cwd=app, timeout=900)
            assert done.returncode == 0, done.stderr[-3000:]
            ran.append(install)
        elif instruction == "ENV":
            env.update((key, value.replace("/app", str(app))) for key, value in
                       (pair.split("=", 1) for pair in argument.split()))
        elif instruction == "CMD":
            command = json.loads(argument)
    assert ran, "the Dockerfile installs nothing"
    assert command[:2] == ["dunning", "worker"]
    user = image_user()
    scratch.mkdir()
    shutil.chown(scratch, user, user)
    subprocess.run(["chmod", "-R", "a-w", str(app)], check=True)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    env.update(DUNNING_DATABASE_URL=f"sqlite:///{scratch}/dunning.db", TMPDIR=str(scratch),
               DUNNING_HEALTH_FILE=str(scratch / "worker.health"))

    def dunning(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["setpriv", "--reuid", str(user), "--regid", str(user), "--clear-groups",
                               str(venv / "bin" / "dunning"), *arguments], cwd=app, env=env, capture_output=True,
                              text=True, timeout=120)

    migrated = dunning("migrate")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert (scratch / "dunning.db").stat().st_uid == user
    rendered = dunning("templates", "check")
    assert rendered.returncode == 0 and f"in {app / 'templates'}: 0 error(s)" in rendered.stdout, \
        rendered.stdout + rendered.stderr
    check = dunning(command[1], "--check")  # no worker runs here: it says so, and exits 1
    assert check.returncode == 1 and check.stderr.strip() and "Traceback" not in check.stderr, check.stderr
    assert not list(app.rglob("__pycache__")), "the image wrote under /app"

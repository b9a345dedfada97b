"""The hosting configurations in docs/ parse and say what docs/hosting.md promises."""
import re
from pathlib import Path

import yaml

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _bytes(v: str) -> float:
    m = re.fullmatch(r"([\d.]+)([KMG])", str(v))
    assert m, f"not a Kubernetes-style size: {v}"
    return float(m.group(1)) * {"K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)]


#: authenticators that let anyone in (any name, any password, or one shared password)
OPEN_AUTHENTICATORS = {"dummy", "null", "shared-password", "tmp", "jupyterhub.auth.DummyAuthenticator",
                       "tmpauthenticator.TmpAuthenticator", "jupyterhub.authenticators.shared.SharedPasswordAuthenticator"}


def check_fails_closed(authenticator_class, auth: dict) -> None:
    assert authenticator_class, "no authenticator configured (JupyterHub's default depends on the chart)"
    name = authenticator_class if isinstance(authenticator_class, str) else authenticator_class.__name__
    assert name not in OPEN_AUTHENTICATORS and "dummy" not in name.lower(), f"{name} lets anyone in"
    assert auth.get("allow_all") is False, "Authenticator.allow_all must be False (fail closed)"
    assert not auth.get("admin_users"), "no admin user in an example: the course names its own"


def test_z2jh_values():
    values = yaml.safe_load((DOCS / "hosting" / "z2jh-values.yaml").read_text())
    cfg = values["hub"]["config"]
    check_fails_closed(cfg["JupyterHub"]["authenticator_class"], cfg["Authenticator"])
    su = values["singleuser"]
    assert su["defaultUrl"] == "/voila/render/00_tour.ipynb"
    assert su["extraEnv"]["EXPLAINERS_OFFLINE"] == "1"
    assert _bytes(su["memory"]["guarantee"]) <= _bytes(su["memory"]["limit"])
    assert 0 < su["cpu"]["guarantee"] <= su["cpu"]["limit"]
    assert values["singleuser"]["networkPolicy"]["egressAllowRules"]["nonPrivateIPs"] is False
    assert values["cull"]["enabled"] is True


def _hub_config():
    """docs/hosting/jupyterhub_config.py run against a stand-in for traitlets' config object."""
    class C(dict):
        def __getattr__(self, k):
            return self.setdefault(k, C())

        def __setattr__(self, k, v):
            self[k] = v

    c = C()
    code = (DOCS / "hosting" / "jupyterhub_config.py").read_text()
    exec(compile(code, "jupyterhub_config.py", "exec"), {"get_config": lambda: c})
    return c


def test_plain_jupyterhub_config_runs():
    c = _hub_config()
    assert c.Spawner.default_url == "/voila/render/00_tour.ipynb"
    assert c.Spawner.environment["EXPLAINERS_OFFLINE"] == "1"
    check_fails_closed(c.JupyterHub.authenticator_class, c.Authenticator)
    # a spawner that enforces mem_limit / cpu_limit (LocalProcessSpawner ignores them)
    assert c.JupyterHub.spawner_class in ("systemdspawner.SystemdSpawner", "systemd", "dockerspawner.DockerSpawner")
    assert any("websocket_max_message_size" in a for a in c.Spawner.args)


def test_the_checks_reject_an_open_authenticator():
    import pytest

    for bad in (("dummy", {"allow_all": False}), ("generic-oauth", {"allow_all": True}),
                ("generic-oauth", {"allow_all": False, "admin_users": ["lecturer"]}), (None, {})):
        with pytest.raises(AssertionError):
            check_fails_closed(*bad)


def test_dockerfile_installs_like_the_newcomer_test():
    text = (DOCS / "hosting" / "Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in text                 # the CPU build first
    assert re.search(r"pip install --no-cache-dir /tmp/cv-explainers\b", text)   # `pip install .`: no -e, no extras
    assert "[test]" not in text and " -e " not in text
    assert "websocket_max_message_size" in text


def test_hosting_doc_mentions_the_files_and_a_measured_memory():
    text = (DOCS / "hosting.md").read_text()
    for name in ("z2jh-values.yaml", "jupyterhub_config.py", "Dockerfile"):
        assert name in text
    assert re.search(r"\d+ MB", text)


def test_every_path_starts_the_students_server_with_the_same_settings():
    """The Kubernetes image (Dockerfile CMD and ENV, z2jh extraEnv) starts each student's server as
    jupyterhub_config.py does: the same Voila and server arguments (uploads up to 20 MB, no MathJax,
    no tracebacks, idle kernels culled) and the same environment (offline, CPU, fewer malloc arenas)."""
    import json

    c = _hub_config()
    docker = (DOCS / "hosting" / "Dockerfile").read_text().replace("\\\n", " ")
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", docker, re.M).group(1))
    env = dict(re.findall(r"^ENV (\w+)=(\S+)$", docker, re.M))
    assert cmd[0] == "jupyterhub-singleuser"
    assert set(c.Spawner.args) <= set(cmd[1:]), set(c.Spawner.args) - set(cmd[1:])
    extra = yaml.safe_load((DOCS / "hosting" / "z2jh-values.yaml").read_text())["singleuser"]["extraEnv"]
    for k, v in c.Spawner.environment.items():
        if k == "JUPYTER_PATH":             # the page template, where each installs the package
            assert "explainers/app/share/jupyter" in env[k]
            continue
        assert extra.get(k) == v, (k, v, extra.get(k))
    assert env["MALLOC_ARENA_MAX"] == c.Spawner.environment["MALLOC_ARENA_MAX"]

"""The hosting configurations in docs/ parse and say what docs/hosting.md promises."""
import re
from pathlib import Path

import yaml

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _bytes(v: str) -> float:
    m = re.fullmatch(r"([\d.]+)([KMG])", str(v))
    assert m, f"not a Kubernetes-style size: {v}"
    return float(m.group(1)) * {"K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)]


def test_z2jh_values():
    values = yaml.safe_load((DOCS / "hosting" / "z2jh-values.yaml").read_text())
    su = values["singleuser"]
    assert su["defaultUrl"] == "/voila/render/00_tour.ipynb"
    assert su["extraEnv"]["EXPLAINERS_OFFLINE"] == "1"
    assert _bytes(su["memory"]["guarantee"]) <= _bytes(su["memory"]["limit"])
    assert 0 < su["cpu"]["guarantee"] <= su["cpu"]["limit"]
    assert values["singleuser"]["networkPolicy"]["egressAllowRules"]["nonPrivateIPs"] is False
    assert values["cull"]["enabled"] is True


def test_plain_jupyterhub_config_runs():
    class C(dict):
        def __getattr__(self, k):
            return self.setdefault(k, C())

        def __setattr__(self, k, v):
            self[k] = v

    c = C()
    code = (DOCS / "hosting" / "jupyterhub_config.py").read_text()
    exec(compile(code, "jupyterhub_config.py", "exec"), {"get_config": lambda: c})
    assert c.Spawner.default_url == "/voila/render/00_tour.ipynb"
    assert c.Spawner.environment["EXPLAINERS_OFFLINE"] == "1"


def test_hosting_doc_mentions_the_files_and_a_measured_memory():
    text = (DOCS / "hosting.md").read_text()
    for name in ("z2jh-values.yaml", "jupyterhub_config.py", "Dockerfile"):
        assert name in text
    assert re.search(r"\d+ MB", text)

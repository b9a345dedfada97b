"""Benchmarks: ``python -m benchmarks [--quick] [--device cuda] [--only ops,models]``.

Prints a table per section and writes the same figures to ``benchmarks/results.json``.
Every figure is a median over repetitions after a warm-up; ratios compare two things
measured in the same run.  Targets are printed beside the figures; nothing here
asserts (machines are noisy) - the tests only smoke-run ``--quick``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent


def p95(ordered: list[float]) -> float:
    """The 95th percentile of an ascending list (the nearest rank)."""
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def timeit(fn, reps: int = 7, warmup: int = 2, sync=None) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"median_ms": statistics.median(times) * 1e3,
            "p95_ms": p95(times) * 1e3}


def _sync_for(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None


# ----------------------------------------------------------------------------- sections
def bench_ops(quick: bool, device: torch.device) -> list[dict]:
    import torch.nn.functional as F
    import torchvision

    from explainers import ops

    g = torch.Generator().manual_seed(0)
    rows = []

    def boxes(n, spread=800.0):
        xy = torch.rand(n, 2, generator=g) * spread
        return torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 100 + 4], 1), torch.rand(n, generator=g)

    reps = 3 if quick else 9
    for n in ([100] if quick else [1000, 5000]):
        b, s = boxes(n)
        ours = timeit(lambda: ops.nms_trace(b, s, 0.5), reps)
        ref = timeit(lambda: torchvision.ops.nms(b, s, 0.5), reps)
        rows.append({"op": f"nms_trace, {n} boxes", "explainer_ms": ours["median_ms"], "native_ms": ref["median_ms"],
                     "target": "< 20 ms at 1,000 boxes; within 20x" if n == 1000 else "within 20x"})
    if not quick:
        rows.append(nms_in_child(100_000))
    C, S = (16, 20) if quick else (256, 50)
    f = torch.randn(C, S, S, generator=g)
    box = torch.tensor([37.3, 120.9, 611.2, 540.4]) * (S / 50)
    for name, ours_fn, ref_fn in (
        ("roi_align_trace 7x7", lambda: ops.roi_align_trace(f, box, 7, 1 / 16, 2, False),
         lambda: torchvision.ops.roi_align(f[None], [box[None]], 7, 1 / 16, 2, False)),
        ("roi_pool_trace 7x7", lambda: ops.roi_pool_trace(f, box, 7, 1 / 16),
         lambda: torchvision.ops.roi_pool(f[None], [box[None]], 7, 1 / 16)),
    ):
        ours, ref = timeit(ours_fn, reps), timeit(ref_fn, reps)
        rows.append({"op": f"{name}, {C}x{S}x{S}", "explainer_ms": ours["median_ms"], "native_ms": ref["median_ms"],
                     "target": "within 20x"})
    x = torch.randn(1, C, S // 2, S // 2, generator=g)
    pooled, idx = F.max_pool2d(torch.randn(1, C, S, S, generator=g), 2, return_indices=True)
    for mode, ref_fn in (
        ("nearest", lambda: F.interpolate(x, scale_factor=2, mode="nearest")),
        ("bilinear", lambda: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)),
        ("max", lambda: F.max_unpool2d(pooled, idx, 2)),
    ):
        arg = pooled if mode == "max" else x
        ours = timeit(lambda: ops.unpool(arg, mode, 2, indices=idx if mode == "max" else None), reps)
        ref = timeit(ref_fn, reps)
        rows.append({"op": f"unpool {mode}, {C}x{S // 2}x{S // 2}", "explainer_ms": ours["median_ms"],
                     "native_ms": ref["median_ms"], "target": "within 20x"})
    k = torch.randn(3, 3, generator=g)
    side = 8 if quick else 16
    y = torch.randn(side // 2, side // 2, generator=g)
    ours = timeit(lambda: ops.conv_transpose_via_matrix(y, k, (side, side), 2, 1), reps)
    ref = timeit(lambda: ops.reference_conv_transpose(y, k, (side, side), 2, 1), reps)
    rows.append({"op": f"conv_transpose_via_matrix {side}x{side}", "explainer_ms": ours["median_ms"],
                 "native_ms": ref["median_ms"], "target": "within 20x"})
    for r in rows:
        r["ratio"] = r["explainer_ms"] / max(r["native_ms"], 1e-9)
    return rows


# one NMS run in a fresh process: its time, torchvision's, and the growth of the child's peak
# resident size during nms_trace (Linux: peak reset with /proc/self/clear_refs, read from VmHWM)
_NMS_CHILD = """
import json, sys, time
import torch, torchvision
from explainers import ops

def kib(key):
    with open("/proc/self/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith(key + ":")))

torch.set_num_threads(int(sys.argv[2]))
n = int(sys.argv[1])
g = torch.Generator().manual_seed(0)
xy = torch.rand(n, 2, generator=g) * 800
b, s = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 100 + 4], 1), torch.rand(n, generator=g)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")   # peak := now
base = kib("VmRSS")
t0 = time.perf_counter()
keep, tr = ops.nms_trace(b, s, 0.5)
ours = time.perf_counter() - t0
peak = kib("VmHWM") - base
t0 = time.perf_counter()
ref = torchvision.ops.nms(b, s, 0.5)
native = time.perf_counter() - t0
print(json.dumps({"ours_s": ours, "native_s": native, "peak_MB": peak / 1024, "equal": bool(torch.equal(keep, ref))}))
"""


def nms_in_child(n: int) -> dict:
    """``nms_trace`` on ``n`` random boxes (one run) in a subprocess, with its peak memory."""
    import subprocess

    r = subprocess.run([sys.executable, "-c", _NMS_CHILD, str(n), str(torch.get_num_threads())],
                       cwd=ROOT.parent, capture_output=True, text=True, timeout=600, check=False)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["no output"])[-1][:80]
        return {"op": f"nms_trace, {n} boxes", "explainer_ms": float("nan"), "native_ms": float("nan"),
                "target": f"failed: {why}"}
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return {"op": f"nms_trace, {n} boxes (1 run, own process)", "explainer_ms": res["ours_s"] * 1e3,
            "native_ms": res["native_s"] * 1e3, "peak_MB": res["peak_MB"],
            "target": "peak < 1 GB; identical" + ("" if res["equal"] else ": DIFFERENT")}


def bench_sliding(quick: bool, device: torch.device) -> list[dict]:
    from explainers.models import get, make_scene
    from explainers.ops import dense_predict, sliding_window_predict

    m = get("patch", "shapes", str(device))
    rows = []
    for size in ([64] if quick else [128, 256]):
        img = make_scene(10_000_000 + size, size=size).tensor()
        labels_s, tr = sliding_window_predict(m.module, img, m.window, m.stride, batch_size=256)
        labels_d, _, cost_d = dense_predict(m.module, img)
        reps = 2 if quick else 5
        t_s = timeit(lambda: sliding_window_predict(m.module, img, m.window, m.stride, batch_size=256), reps, 1)
        t_d = timeit(lambda: dense_predict(m.module, img), reps, 2)
        rows.append({"image": f"{size}x{size}", "windows": int(labels_s.numel()),
                     "sliding_ms": t_s["median_ms"], "dense_ms": t_d["median_ms"],
                     "speedup": t_s["median_ms"] / t_d["median_ms"],
                     "sliding_GMAC": tr.cost.macs / 1e9, "dense_GMAC": cost_d.macs / 1e9,
                     "mac_ratio": tr.cost.macs / cost_d.macs, "identical_maps": bool(torch.equal(labels_s, labels_d)),
                     "target": ">= 50x faster, identical"})
    return rows


def paired(fn_a, fn_b, reps: int, warmup: int = 1) -> tuple[float, float]:
    """Medians (ms) of two callables timed alternately, so that drift hits both alike."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    ta, tb = [], []
    for _ in range(reps):
        for fn, acc in ((fn_a, ta), (fn_b, tb)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return statistics.median(ta) * 1e3, statistics.median(tb) * 1e3


def _peak_memory_mb(device: torch.device, fn) -> float:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def bench_models(quick: bool, device: torch.device) -> list[dict]:
    import torchvision

    from explainers.models import get, make_scene
    from explainers.models.live import make_live_model

    rows = []
    scene = make_scene(10_000_042, size=(192, 224))
    reps = 3 if quick else 11
    for task in ("segmentation", "detection", "instance"):
        m = get(task, "shapes", str(device))
        plain, traced = paired(lambda: m(scene.image), lambda: m.trace(scene.image), reps, 2)
        rows.append({"model": f"shapes {task}", "input": "224x192", "plain_ms": plain,
                     "trace_ms": traced, "trace_over_plain": traced / plain,
                     "peak_MB": _peak_memory_mb(device, lambda: m.trace(scene.image)), "target": "trace <= 1.10x"})
    if quick:
        return rows
    # COCO architectures with random weights: their cost at their native size
    tvd, tvs = torchvision.models.detection, torchvision.models.segmentation
    img = torch.rand(3, 480, 640)
    for task, build, classes in (
        ("segmentation", lambda: tvs.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21), 21),
        ("detection", lambda: tvd.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None,
                                                                     num_classes=91), 91),
        ("instance", lambda: tvd.maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91), 91),
    ):
        torch.manual_seed(0)
        m = make_live_model(task, build(), [str(i) for i in range(classes)], "random", device)
        r = 4 if task == "instance" and device.type == "cpu" else 9
        plain, traced = paired(lambda: m(img), lambda: m.trace(img), r, 1)
        rows.append({"model": f"COCO arch {task} (random weights)", "input": "640x480",
                     "plain_ms": plain, "trace_ms": traced, "trace_over_plain": traced / plain,
                     "peak_MB": _peak_memory_mb(device, lambda: m.trace(img)), "target": "trace <= 1.10x"})
    return rows


def bench_scale(quick: bool, device: torch.device) -> list[dict]:
    import torchvision

    from explainers import ops
    from explainers.models import get

    rows = []
    seg = get("segmentation", "shapes", str(device))
    det = get("instance", "shapes", str(device))
    for size in ([64, 128] if quick else [128, 256, 512, 1024]):
        img = torch.rand(3, size, size)
        r = 2 if quick else 5
        rows.append({"what": f"SegNet {size}px", "n": size, "median_ms": timeit(lambda: seg(img), r, 1)["median_ms"]})
        rows.append({"what": f"Mask R-CNN (shapes) {size}px", "n": size,
                     "median_ms": timeit(lambda: det(img), r, 1)["median_ms"]})
    g = torch.Generator().manual_seed(0)
    for n in ([100, 300] if quick else [100, 300, 1000, 3000, 10000]):
        xy = torch.rand(n, 2, generator=g) * 2000
        b, s = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 150 + 4], 1), torch.rand(n, generator=g)
        r = 2 if n >= 3000 else 5
        rows.append({"what": f"nms_trace {n} boxes", "n": n,
                     "median_ms": timeit(lambda: ops.nms_trace(b, s, 0.5), r, 1)["median_ms"],
                     "native_ms": timeit(lambda: torchvision.ops.nms(b, s, 0.5), r, 1)["median_ms"]})
    # growth between successive sizes: time ratio against size ratio
    prev = {}
    for row in rows:
        key = row["what"].rsplit(" ", 2)[0] if "nms" not in row["what"] else "nms_trace"
        if key in prev:
            p = prev[key]
            row["growth"] = f"x{row['median_ms'] / p['median_ms']:.1f} for x{row['n'] / p['n']:.1f} size"
        prev[key] = row
    return rows


def bench_widgets(quick: bool, device: torch.device) -> list[dict]:
    """Python time of one animation step and one control change per explainer (no browser)."""
    from explainers.registry import EXPLAINERS, move_control

    rows = []
    reps = 5 if quick else 25
    for entry in EXPLAINERS:
        name, cls = entry.name, entry.load()
        for source in (["lecture"] if quick else ["lecture", "live"]):
            t0 = time.perf_counter()
            e = cls(source=source)
            build = time.perf_counter() - t0
            n = max(1, e.n_steps())
            steps, ctrl = [], []
            for i in range(reps):
                t = time.perf_counter()
                e.step.value = (e.step.value + 1) % n
                steps.append(time.perf_counter() - t)
            for i in range(reps):
                t = time.perf_counter()
                move_control(e, i)
                ctrl.append(time.perf_counter() - t)
            steps.sort()
            ctrl.sort()
            rows.append({"explainer": f"{name} ({source})", "build_ms": build * 1e3,
                         "step_median_ms": statistics.median(steps) * 1e3, "step_p95_ms": p95(steps) * 1e3,
                         "control_median_ms": statistics.median(ctrl) * 1e3, "control_p95_ms": p95(ctrl) * 1e3,
                         "error": e.error_text[:60], "target": "median <= 30 ms"})
    return rows


def bench_voila(quick: bool, device: torch.device) -> list[dict]:
    """Open the tour in headless Chromium: time to the first plot, cold and warm; each page kernel's
    memory, unique (USS: what one more page costs) and resident (RSS), with the kernels forked from
    the zygote (``explainers serve``'s default on Linux) and, in full runs, started the ordinary way."""
    from explainers.app.forking import supported

    if not Path("/usr/bin/chromium").exists():
        return [{"page": "tour", "note": "chromium not installed: skipped"}]
    modes = [fork for fork in (True, False) if supported() or not fork]
    return [row for fork in modes[:1 if quick else 2] for row in _voila_run(quick, fork)]


def _voila_run(quick: bool, fork: bool) -> list[dict]:
    import socket
    import subprocess
    from urllib.request import urlopen

    import psutil
    from playwright.sync_api import sync_playwright

    from explainers.app.forking import page_kernels
    from explainers.app.serve import voila_command, voila_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = voila_env()
    env.update(EXPLAINERS_OFFLINE="1")
    proc = subprocess.Popen(voila_command(port, fork=fork), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/voila/render/"
    rows = []
    try:
        for _ in range(240):
            try:
                urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except OSError:
                time.sleep(0.5)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update"]
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
            pages = ["00_tour"] if quick else ["00_tour", "00_tour", "00_tour", "06_nms", "07_live_model"]
            for i, nb in enumerate(pages):
                page = b.new_page(viewport={"width": 1400, "height": 1000})
                t0 = time.perf_counter()
                page.goto(base + nb + ".ipynb", timeout=180_000)
                page.wait_for_selector(".explainers-plot .main-svg", timeout=180_000)
                secs = time.perf_counter() - t0
                kernels = page_kernels(proc.pid)      # plain ipykernels or forks of the zygote
                mem = []
                for k in kernels:
                    try:
                        mem.append(k.memory_full_info())
                    except psutil.Error:              # a kernel that exited meanwhile (a page closed)
                        pass
                label = "cold (first open)" if i == 0 else ("warm" if nb == "00_tour" else "first open")
                rows.append({"kernels": "forked" if fork else "plain", "page": nb, "when": label,
                             "first_plot_s": secs,
                             "largest_kernel_unique_MB": max((m.uss for m in mem), default=0) / 2**20,
                             "largest_kernel_resident_MB": max((m.rss for m in mem), default=0) / 2**20,
                             "kernels_running": len(kernels), "target": "<= 5 s warm" if nb == "00_tour" else ""})
                page.close()
            b.close()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows


def bench_serve(quick: bool, device: torch.device) -> list[dict]:
    """Students' live-model requests per second on one device (``benchmarks/serve.py``)."""
    from benchmarks.serve import serve

    dev = str(device)
    if quick:
        return serve("detection", "shapes", dev, (1, 2), 0.5, size=(192, 224), threads=1)
    if device.type == "cpu":   # every student costs cores here: a small class, briefly
        return serve("detection", "arch", dev, (1, 2), 5.0, threads=1)
    rows = []
    for task in ("detection", "instance", "segmentation"):
        done = serve(task, "arch", dev, (1, 4, 16), 4.0, threads=1)
        # each task as it ends: a time limit that stops the section still leaves these figures
        print(f"serve {task}: " + "; ".join(f"{r['students asking']} asking: {r['requests/s']:.1f}/s, p50 "
                                          f"{r['latency p50 ms']:.0f} ms, p95 {r['latency p95 ms']:.0f} ms"
                                          for r in done), flush=True)
        rows += done
    return rows


SECTIONS = {"ops": bench_ops, "sliding": bench_sliding, "models": bench_models, "scale": bench_scale,
            "widgets": bench_widgets, "voila": bench_voila,
            "serve": bench_serve}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def print_table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    widths = {c: max(len(c), *(len(_fmt(r.get(c, ""))) for r in rows)) for c in cols}
    print(f"\n## {title}")
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(_fmt(r.get(c, "")).ljust(widths[c]) for c in cols))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, few repetitions (smoke run)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: explainers.models.default_device())")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {list(SECTIONS)}")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 2, as in the targets)")
    p.add_argument("--out", type=Path, default=ROOT / "results.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads or 2)
    if a.device:
        os.environ["EXPLAINERS_DEVICE"] = a.device
    from explainers.models import default_device

    device = default_device()
    machine = {"device": str(device), "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "python": platform.python_version(),
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    print(f"# cv-explainers benchmarks on {device} ({machine['threads']} threads, torch {machine['torch']})")
    results = {"machine": machine, "quick": a.quick, "sections": {}}
    for name in [s.strip() for s in a.only.split(",") if s.strip()]:
        if name not in SECTIONS:
            print(f"unknown section {name!r}; choose from {list(SECTIONS)}", file=sys.stderr)
            return 2
        rows = SECTIONS[name](a.quick, device)
        results["sections"][name] = rows
        print_table(name, rows)
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {a.out}")
    return 0

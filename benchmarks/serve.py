"""How many students' live-model requests one device serves (``python -m benchmarks --only serve``).

A class's live pages each run their own kernel, and each kernel its own copy of the live model
(nothing is shared between students' processes on a GPU). This section starts ``workers``
such processes, each one a student's kernel: it builds the model on the device, warms it up
and waits. Then, for each count ``p`` of students asking at once, ``p`` of them send requests
(one image each, the live page's "run the model" on a 640x480 photo) back to back for a fixed
time; the table gives the requests served per second over all of them, each request's latency
(median and p95, what one student waits) and the device memory a student's process holds.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time

ARCHS = {
    # task -> (torchvision builder, number of classes): the COCO architectures the live page uses
    "detection": ("fasterrcnn_mobilenet_v3_large_fpn", 91),
    "instance": ("maskrcnn_resnet50_fpn_v2", 91),
    "segmentation": ("lraspp_mobilenet_v3_large", 21),
}


def _build(task: str, arch: str, device: str):
    import torch
    import torchvision

    from explainers.models import get
    from explainers.models.live import make_live_model

    if arch == "shapes":
        return get(task, "shapes", device)
    name, classes = ARCHS[task]
    family = torchvision.models.segmentation if task == "segmentation" else torchvision.models.detection
    torch.manual_seed(0)
    module = getattr(family, name)(weights=None, weights_backbone=None, num_classes=classes)
    return make_live_model(task, module, [str(i) for i in range(classes)], "random", torch.device(device))


def _worker(conn, task: str, arch: str, device: str, size: tuple[int, int], threads: int) -> None:
    """One student's kernel: build the model, then serve requests when told to."""
    import torch

    torch.set_num_threads(threads)
    try:
        model = _build(task, arch, device)
        img = torch.rand(3, size[0], size[1], generator=torch.Generator().manual_seed(os.getpid()))
        for _ in range(3):
            model(img)
        held = None
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            held = torch.cuda.memory_reserved() / 2**20
        conn.send(("ready", held))
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                break
            _, start, seconds = msg
            while time.time() < start:
                time.sleep(0.001)
            lat = []
            end = start + seconds
            while time.time() < end:
                t0 = time.perf_counter()
                model(img)          # the live model's call returns results on the CPU: synchronised
                lat.append(time.perf_counter() - t0)
            conn.send(("done", lat))
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _gpu_process_memory_mb(pids: list[int]) -> float | None:
    """Median device memory (MiB) the driver says each of ``pids`` holds, CUDA context included."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        used = {p.pid: p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
        pynvml.nvmlShutdown()
        mine = [used[p] / 2**20 for p in pids if used.get(p)]
        return statistics.median(mine) if mine else None
    except Exception:  # noqa: BLE001 - no NVML (CPU, another vendor, a container hiding pids)
        return None


def serve(task: str, arch: str, device: str, counts: tuple[int, ...], seconds: float,
          size: tuple[int, int] = (480, 640), threads: int = 2, start_timeout: float = 300.0) -> list[dict]:
    """Rows of requests/s and latency for each number of students in ``counts`` asking at once."""
    ctx = mp.get_context("spawn")      # CUDA cannot be used in a forked child of a CUDA process
    workers = []
    try:
        for _ in range(max(counts)):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(there, task, arch, device, size, threads), daemon=True)
            proc.start()
            there.close()
            workers.append((proc, here))
        held = []
        deadline = time.time() + start_timeout
        for proc, conn in workers:
            if not conn.poll(max(1.0, deadline - time.time())):
                raise TimeoutError(f"a worker did not start within {start_timeout:.0f} s")
            kind, value = conn.recv()
            if kind == "error":
                raise RuntimeError(f"worker failed: {value}")
            held.append(value)
        per_process = _gpu_process_memory_mb([p.pid for p, _ in workers]) if device.startswith("cuda") else None
        from benchmarks.run import p95

        rows = []
        for p in counts:
            start = time.time() + 0.5
            for _, conn in workers[:p]:
                conn.send(("run", start, seconds))
            lat: list[float] = []
            for _, conn in workers[:p]:
                if not conn.poll(seconds + 120):
                    raise TimeoutError("a worker stopped answering")
                kind, value = conn.recv()
                if kind == "error":
                    raise RuntimeError(f"worker failed: {value}")
                lat.extend(value)
            lat.sort()
            model = f"COCO arch {task} (random weights)" if arch != "shapes" else f"shapes {task}"
            rows.append({"model": model, "input": f"{size[1]}x{size[0]}", "students asking": p,
                         "requests/s": len(lat) / seconds,
                         "latency p50 ms": statistics.median(lat) * 1e3 if lat else float("nan"),
                         "latency p95 ms": p95(lat) * 1e3 if lat else float("nan"),
                         "reserved MB/student": statistics.median(held) if held[0] is not None else "",
                         "device MB/student": per_process if per_process is not None else ""})
        return rows
    finally:
        for proc, conn in workers:
            try:
                conn.send(("stop",))
            except (OSError, BrokenPipeError):
                pass
        for proc, conn in workers:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
            conn.close()

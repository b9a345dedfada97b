"""Standalone HTML export of an explainer (:meth:`Explainer.export_html`): the page's figure once,
each step as a small patch, image crops cut in the browser, plotly.js inlined."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np

from ._plotview import FIT_JS, TIED_AXES_JS

_EXPORT_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;"
    "margin:16px;color:#222}"
    ".explainer-title{margin:2px 0 8px;font-size:24px}"
    ".explainer-controls{display:flex;flex-wrap:wrap;align-items:center;gap:8px;margin:4px 0}"
    ".explainer-controls[hidden]{display:none}"
    ".explainer-controls button{font-size:15px;padding:3px 10px;min-width:80px}"
    ".explainer-controls input[type=range]{width:420px;vertical-align:middle}"
    ".explainer-controls output{min-width:3em}"
    ".explainer-caption{font-size:19px;line-height:1.35;margin:2px 0;min-height:2.9em}"
    ".explainers-plot{width:100%}")

#: the export's player: rebuilds each step from the patches, draws it as the page does
#: (its frame merged onto the base figure, then Plotly.react), keeps the caption in step
_EXPORT_JS = TIED_AXES_JS + FIT_JS + r"""
(function () {
  "use strict";
  var payload = JSON.parse(document.getElementById("explainer-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var root = $("explainer"), plot = $("explainer-plot"), caption = $("explainer-caption");
  var slider = $("explainer-step"), label = $("explainer-step-label"), playButton = $("explainer-play");
  var speed = $("explainer-speed");
  var n = payload.frames.length;
  var isObject = function (v) { return v !== null && typeof v === "object" && !Array.isArray(v); };
  var clone = function (v) { return v === undefined ? v : JSON.parse(JSON.stringify(v)); };

  // a patch is {"=": value} (replace), {"~": {key: patch}} (an object's keys) or {"#": [[i, patch]]} (list items)
  function apply(value, p) {
    var out, k, i;
    if ("=" in p) return p["="];
    if ("~" in p) {
      out = isObject(value) ? Object.assign({}, value) : {};
      for (k in p["~"]) out[k] = apply(out[k], p["~"][k]);
      return out;
    }
    out = value.slice();
    for (i = 0; i < p["#"].length; i++) out[p["#"][i][0]] = apply(out[p["#"][i][0]], p["#"][i][1]);
    return out;
  }
  // as the page: objects merge key by key, anything else (arrays too) replaces
  function merge(target, src) {
    for (var k in src) {
      // null: back to plotly's default, as None does in Python (plotly.js fails on a null container)
      if (src[k] === null) delete target[k];
      else if (isObject(src[k]) && isObject(target[k])) merge(target[k], src[k]);
      else target[k] = src[k];
    }
    return target;
  }
  var contents = [], content = {};
  for (var k = 0; k < n; k++) { content = apply(content, payload.frames[k].patch); contents.push(content); }

  // {"$crop": [trace, x, y, w, h]}: that part of the base figure's image `trace`, as a PNG
  var images = {}, crops = {};
  function cropped(spec) {
    var key = spec.join(",");
    if (!(key in crops)) {
      var canvas = document.createElement("canvas");
      canvas.width = spec[3];
      canvas.height = spec[4];
      var ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(images[spec[0]], spec[1], spec[2], spec[3], spec[4], 0, 0, spec[3], spec[4]);
      crops[key] = canvas.toDataURL("image/png");
    }
    return crops[key];
  }
  function resolve(props) {
    for (var key in props) {
      if (isObject(props[key]) && Array.isArray(props[key].$crop)) props[key] = cropped(props[key].$crop);
    }
    return props;
  }

  // a step that changes an axis tied to another's scale is drawn afresh (tiedAxes: see _plotview)
  var lastTied = null;
  function tiedKey(layout) {
    return JSON.stringify(tiedAxes(layout).map(function (k) {
      var v = layout[k] || {};
      return [k, v.range, v.domain, v.autorange];
    }));
  }
  var current = payload.active, rev = 0, timer = null;
  // as the page's plot view: on a projector the page fits the window (FIT_JS)
  var figHeight = payload.figure.layout.height || 520;
  function show(step) {
    step = Math.max(0, Math.min(n - 1, step));
    var c = contents[step];
    var data = clone(payload.figure.data), layout = clone(payload.figure.layout);
    Object.keys(c.data || {}).forEach(function (i) { merge(data[Number(i)], resolve(clone(c.data[i]))); });
    merge(layout, clone(c.layout || {}));
    layout.height = fittedHeight(plot, figHeight);
    plot.style.height = String(layout.height) + "px";
    rev += 1;
    layout.datarevision = rev;
    current = step;
    slider.value = String(step);
    label.textContent = String(step + 1) + " of " + String(n);
    caption.innerHTML = payload.captions[step];
    root.setAttribute("data-step", String(step));
    var tiedNow = tiedKey(layout);
    if (lastTied !== null && tiedNow !== lastTied) Plotly.purge(plot);
    lastTied = tiedNow;
    return Plotly.react(plot, data, layout, payload.config);
  }
  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    playButton.textContent = "▶ play";
  }
  function tick() {
    if (current >= n - 1) { stop(); return; }
    show(current + 1);
  }
  function play() {
    if (current >= n - 1) show(0);
    stop();
    timer = setInterval(tick, Number(speed.value));
    playButton.textContent = "❚❚ pause";
  }
  playButton.addEventListener("click", function () { if (timer === null) play(); else stop(); });
  $("explainer-back").addEventListener("click", function () { show(current - 1); });
  $("explainer-forward").addEventListener("click", function () { show(current + 1); });
  slider.addEventListener("input", function () { show(Number(slider.value)); });
  speed.addEventListener("change", function () { if (timer !== null) play(); });
  var resizing = false;
  window.addEventListener("resize", function () {
    if (resizing) return;
    resizing = true;
    requestAnimationFrame(function () { resizing = false; show(current); });
  });

  var loads = payload.crop_sources.map(function (i) {
    var img = new Image();
    images[i] = img;
    img.src = payload.figure.data[i].source;
    return img.decode();
  });
  Promise.all(loads).then(function () { return show(current); }).then(function () {
    root.setAttribute("data-ready", "1");
  }).catch(function (err) {
    $("explainer-error").textContent = "⚠ " + err;
    throw err;
  });
})();
"""


def _export_json(obj):
    """``obj`` as plain JSON values, encoded as plotly encodes a figure (numpy arrays included)."""

    import plotly.io.json as pjson

    return json.loads(pjson.to_json_plotly(obj))


def _figure_at_step_0(explainer, frame0: dict) -> dict:
    """The page's figure with step 0 drawn on a copy (the page itself is left as it is): the export's
    base, so that an export does not depend on the step the page was at when it was made."""
    import plotly.graph_objects as go

    from ._plotview import update_figure

    fig = go.Figure(explainer.fig.to_dict())     # a copy (go.Figure(fig) would share the page's dicts)
    update_figure(fig, frame0.get("data"), frame0.get("layout"))
    return fig.to_plotly_json()


def _export_contents(frames: list, base: dict) -> list:
    """Each step's trace props and layout, complete: a prop that some step sets and this one does
    not keeps the value of the last step before that set it (as when the page plays from step 0),
    else the base figure's. Then any step drawn alone looks as it does in the page."""
    traces: dict = {}
    layout_keys: dict = {}
    for fr in frames:
        for i, props in (fr.get("data") or {}).items():
            traces.setdefault(i, {}).update(dict.fromkeys(props))
        layout_keys.update(dict.fromkeys(fr.get("layout") or {}))
    last = {}
    for i, keys in traces.items():
        trace = base["data"][int(i)]
        last.update({(i, p): trace[p] for p in keys if p in trace})
    last.update({(None, p): base["layout"][p] for p in layout_keys if p in base["layout"]})
    out = []
    for fr in frames:
        data = {i: dict((fr.get("data") or {}).get(i) or {}) for i in traces}
        layout = dict(fr.get("layout") or {})
        for i, keys in traces.items():
            for p in keys:
                if p in data[i]:
                    last[(i, p)] = data[i][p]
                elif (i, p) in last:
                    data[i][p] = last[(i, p)]
        for p in layout_keys:
            if p in layout:
                last[(None, p)] = layout[p]
            elif (None, p) in last:
                layout[p] = last[(None, p)]
        out.append({"data": data, "layout": layout})
    return out


_PNG_URI = "data:image/png;base64,"


def _png_pixels(uri: str):
    """The pixels of an RGB PNG data URI as an ``(H, W, 3)`` uint8 array, else None."""
    import binascii

    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(base64.b64decode(uri[len(_PNG_URI):], validate=True)))
        return np.asarray(img) if img.mode == "RGB" else None
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError):  # not a PNG we can read: keep it
        return None


def _find_crop(child: np.ndarray, parent: np.ndarray):
    """``(x, y)`` of the first place (row by row) where ``child`` is a window of ``parent``, or None."""
    h, w = child.shape[:2]
    H, W_ = parent.shape[:2]
    if h > H or w > W_ or h == 0 or w == 0:
        return None
    first = (parent[:H - h + 1, :W_ - w + 1] == child[0, 0]).all(-1)
    for y, x in zip(*np.nonzero(first)):
        if np.array_equal(parent[y:y + h, x:x + w], child):
            return int(x), int(y)
    return None


def _export_crops(contents: list, base: dict) -> list:
    """Replace each step's image ``source`` that is a window of an RGB image of the base figure
    (the sliding window's crops) by ``{"$crop": [trace, x, y, w, h]}``, cut out in the browser:
    the pixels travel once. Returns the base traces that are cut from."""
    parents = []
    for i, trace in enumerate(base["data"]):
        src = trace.get("source")
        if trace.get("type") == "image" and isinstance(src, str) and src.startswith(_PNG_URI):
            pixels = _png_pixels(src)
            if pixels is not None:
                parents.append((i, pixels))
    if not parents:
        return []
    used, found = set(), {}
    for content in contents:
        for props in content["data"].values():
            src = props.get("source")
            if not isinstance(src, str) or not src.startswith(_PNG_URI):
                continue
            if src not in found:
                found[src] = None
                child = _png_pixels(src)
                for i, pixels in parents if child is not None else ():
                    at = _find_crop(child, pixels)
                    if at is not None:
                        found[src] = {"$crop": [i, at[0], at[1], child.shape[1], child.shape[0]]}
                        break
            if found[src] is not None:
                props["source"] = found[src]
                used.add(found[src]["$crop"][0])
    return sorted(used)


def _export_same(a, b) -> bool:

    return a == b and json.dumps(a) == json.dumps(b)   # 1, 1.0 and True differ in JSON


def _export_patch(old, new):
    """The patch that turns ``old`` into ``new`` (None when they are the same): ``{"=": value}``,
    ``{"~": {key: patch}}`` for an object's changed keys, ``{"#": [[index, patch], ...]}`` for the
    changed items of a list of the same length (the label map: one cell per step), the shorter."""

    if _export_same(old, new):
        return None
    if isinstance(old, dict) and isinstance(new, dict) and all(k in new for k in old):
        sub = {}
        for k, v in new.items():
            p = _export_patch(old[k], v) if k in old else {"=": v}
            if p is not None:
                sub[k] = p
        return {"~": sub}
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        items = [[i, p] for i, (a, b) in enumerate(zip(old, new)) if (p := _export_patch(a, b)) is not None]
        patch = {"#": items}
        if len(json.dumps(patch, separators=(",", ":"))) < len(json.dumps(new, separators=(",", ":"))):
            return patch
    return {"=": new}


def write_export(explainer, path, plotly_src: str | None = None, overwrite: bool = False) -> Path:
    """The body of :meth:`Explainer.export_html` (see there)."""
    import html as _html

    import os

    if not isinstance(overwrite, bool):
        # overwrite="no" is a true string: never replace a user's file on a value that only looks false
        raise TypeError(f"overwrite must be True or False (got {overwrite!r})")
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory: give a file name for the HTML export")
    if path.suffix.lower() not in (".html", ".htm") or not path.stem or path.name.startswith("."):
        raise ValueError(f"export_html writes a web page: give a name ending in .html, e.g. nms.html "
                         f"(got {path.name or path})")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: the folder {folder} is not writable")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"{path} already exists and is kept: give another name, or overwrite=True to "
                              "replace it")
    if explainer.error_text and not explainer.failed:
        # the page hides its picture while it shows an error: an export would show a stale one
        raise ValueError(f"the page shows an error ({explainer.error_text.lstrip('⚠ ')}): change the parameters "
                         "until it draws, then export")
    n = 0 if explainer.failed else max(1, explainer.n_steps())
    first = explainer.frame(0) if n else {}
    frames = [_export_json(first)] + [_export_json(explainer.frame(k)) for k in range(1, n)] if n else []
    base = _export_json(_figure_at_step_0(explainer, first))
    base.setdefault("data", [])
    base.setdefault("layout", {})
    captions = [str(fr.get("caption", "") or "") for fr in frames]
    contents = _export_contents(frames, base)
    crops = _export_crops(contents, base)
    patches, previous = [], {}
    for k, content in enumerate(contents):
        patches.append({"name": str(k), "patch": _export_patch(previous, content) or {"~": {}}})
        previous = content
    active = min(max(0, int(explainer.step.value)), n - 1) if n else 0
    interval = int(explainer.play.interval)
    payload = {"figure": base, "config": {"displaylogo": False, "responsive": True},
               "frames": patches, "captions": captions, "active": active, "crop_sources": crops}
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # inside <script>: no "</script>", no "<!--" (JSON.parse and json.loads read \u003c back as "<")
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    speeds = list(explainer.speed.options)     # the page's own speeds
    if interval not in dict(speeds).values():
        speeds.insert(0, (f"{interval} ms", interval))
    options = "".join(f"<option value='{ms}'{' selected' if ms == interval else ''}>{name}</option>"
                      for name, ms in speeds)
    height = int(base["layout"].get("height") or 520)
    title = _html.escape(explainer.title)
    parts = [(f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n<title>{title}</title>\n"
              "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
              "<link rel='icon' href='data:,'>\n"
              f"<style>{_EXPORT_CSS}</style>\n</head>\n<body>\n<div id='explainer'>\n"
              f"<h1 class='explainer-title'>{title}</h1>\n")]
    if n:
        parts.append(
            # one picture (the live model page): no play / step controls, as on the page
            f"<div class='explainer-controls'{' hidden' if n == 1 else ''}>"
            "<button type='button' id='explainer-play' title='play the steps'>▶ play</button>"
            "<button type='button' id='explainer-back' title='one step back'>◀ step</button>"
            "<button type='button' id='explainer-forward' title='one step forward'>step ▶</button>"
            f"<label>step <input type='range' id='explainer-step' min='0' max='{n - 1}' value='{active}'></label>"
            f"<output id='explainer-step-label'>{active + 1} of {n}</output>"
            f"<label>speed <select id='explainer-speed'>{options}</select></label></div>\n")
    parts.append(f"<div id='explainer-error'>{explainer.error.value}</div>\n")
    if n:
        lines = int(getattr(explainer, "caption_lines", 2))
        parts.append(f"<div id='explainer-caption' class='explainer-caption' aria-live='polite' "
                     f"style='min-height:{1.35 * lines + 0.2:.2f}em'>"
                     f"{captions[active]}</div>\n"
                     f"<div id='explainer-plot' class='explainers-plot' style='height:{height}px'></div>\n")
    parts.append(f"<div id='explainer-check'>{explainer.check.value}</div>\n"
                 f"<div id='explainer-note'>{explainer.note.value}</div>\n</div>\n")
    if n:
        from plotly.offline import get_plotlyjs

        script = (f"<script src='{_html.escape(plotly_src)}'></script>\n" if plotly_src
                  else f"<script>\n{get_plotlyjs()}\n</script>\n")
        parts.append(script +
                     f"<script type='application/json' id='explainer-data'>{data}</script>\n"
                     f"<script>\n{_EXPORT_JS}\n</script>\n")
    parts.append("</body>\n</html>\n")
    # all at once (a temporary file in the same folder, then a rename): never a half-written page
    from .._files import write_whole

    page = "".join(parts).encode("utf-8")
    try:
        write_whole(path, lambda f: f.write(page), overwrite)   # a file that appeared meanwhile is kept too
    except FileExistsError:
        raise FileExistsError(f"{path} already exists and is kept: give another name, or "
                              "overwrite=True to replace it") from None
    return path

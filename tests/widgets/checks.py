"""What the widget tests read off a page."""
import json


def jsonable(obj):
    """``obj`` as plain JSON values, as plotly encodes a figure for the browser (numpy included)."""
    import plotly.io.json as pjson

    return json.loads(pjson.to_json_plotly(obj))


def marks(e) -> list[str]:
    """The check line's marks in order, e.g. ``["✔", "✘"]`` (one per check shown)."""
    return [c for c in e.check_text if c in "✔✘"]


def outlined_cells(trace) -> list:
    """The ``(row, col)`` cells a line trace of cell outlines (closed paths, None-separated) frames."""
    out, group = [], []
    for x, y in zip(list(trace.x or []) + [None], list(trace.y or []) + [None]):
        if x is None:
            if group:
                gx, gy = [p[0] for p in group], [p[1] for p in group]
                out.append((round((min(gy) + max(gy)) / 2), round((min(gx) + max(gx)) / 2)))
            group = []
        else:
            group.append((x, y))
    return out

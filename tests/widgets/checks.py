"""What the widget tests read off a page."""
import json


def jsonable(obj):
    """``obj`` as plain JSON values, as plotly encodes a figure for the browser (numpy included)."""
    import plotly.io.json as pjson

    return json.loads(pjson.to_json_plotly(obj))


def marks(e) -> list[str]:
    """The check line's marks in order, e.g. ``["✔", "✘"]`` (one per check shown)."""
    return [c for c in e.check_text if c in "✔✘"]

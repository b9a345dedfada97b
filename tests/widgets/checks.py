"""What the widget tests read off a page."""


def marks(e) -> list[str]:
    """The check line's marks in order, e.g. ``["✔", "✘"]`` (one per check shown)."""
    return [c for c in e.check_text if c in "✔✘"]

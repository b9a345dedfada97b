"""A file upload button that checks the size in the browser before sending anything.

ipywidgets' ``FileUpload`` sends the whole file to the kernel first; a file larger than the
server's websocket message limit then closes the connection silently and the page dies.
This widget (anywidget) reads ``file.size`` in the browser: a file within ``max_bytes`` is
sent as one binary buffer; a larger one sends only its name and size, and the Python side
shows the limit in the page, which stays usable.
"""
from __future__ import annotations

import anywidget
import traitlets

_JS = r"""
function render({ model, el }) {
  const input = document.createElement("input");
  input.type = "file";
  input.accept = model.get("accept");
  input.style.display = "none";
  const button = document.createElement("button");
  button.className = "jupyter-widgets jupyter-button widget-button explainers-upload";
  button.style.minWidth = "170px";
  button.style.height = "var(--jp-widgets-inline-height, 28px)";
  button.textContent = model.get("description");
  button.addEventListener("click", () => input.click());
  input.addEventListener("change", async () => {
    const file = input.files && input.files[0];
    input.value = "";
    if (!file) return;
    const max = model.get("max_bytes");
    if (file.size > max) {
      model.send({ event: "too_large", name: file.name, size: file.size });
      return;
    }
    button.disabled = true;
    button.textContent = "sending " + file.name + " ...";
    try {
      const buffer = await file.arrayBuffer();
      model.send({ event: "file", name: file.name, size: file.size, type: file.type }, undefined, [buffer]);
    } finally {
      button.disabled = false;
      button.textContent = model.get("description");
    }
  });
  el.appendChild(button);
  el.appendChild(input);
}
export default { render };
"""


class Upload(anywidget.AnyWidget):
    """``on_upload(callback)``: ``callback(name, content: bytes | None, size)``; ``content`` is
    ``None`` when the file was larger than ``max_bytes`` (nothing was sent)."""

    _esm = traitlets.Unicode(_JS).tag(sync=True)
    description = traitlets.Unicode("upload an image").tag(sync=True)
    accept = traitlets.Unicode("image/*").tag(sync=True)
    max_bytes = traitlets.Int(20 * 2**20).tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._callbacks = []
        self.on_msg(self._handle)

    def on_upload(self, callback) -> None:
        self._callbacks.append(callback)

    def _handle(self, _widget, content, buffers) -> None:
        event = content.get("event") if isinstance(content, dict) else None
        if event not in ("file", "too_large"):
            return
        data = None
        if event == "file":             # a file message without its buffer: an empty file, not a too-large one
            data = bytes(buffers[0]) if buffers else b""
        try:
            size = int(content.get("size", 0))
        except (TypeError, ValueError):  # only a crafted message: the bytes that arrived count
            size = len(data or b"")
        for cb in self._callbacks:
            cb(str(content.get("name", "the file")), data, size)

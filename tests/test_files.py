"""explainers._files.publish: a user's file is never replaced unless asked, on any file system."""
import errno
import os

import pytest

from explainers._files import publish


@pytest.mark.parametrize("hard_links", [True, False])
def test_publish_keeps_an_existing_file_unless_asked(tmp_path, monkeypatch, hard_links):
    if not hard_links:                        # e.g. a FAT USB stick or some network shares
        def no_links(src, dst):
            raise OSError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_links)
    dest = tmp_path / "out.html"
    tmp = tmp_path / ".out.tmp"
    tmp.write_text("new")
    publish(tmp, dest, overwrite=False)                  # nothing there: written
    assert dest.read_text() == "new" and not tmp.exists()
    tmp.write_text("newer")
    with pytest.raises(FileExistsError):
        publish(tmp, dest, overwrite=False)              # there: kept, the temporary file left to the caller
    assert dest.read_text() == "new" and tmp.read_text() == "newer"
    publish(tmp, dest, overwrite=True)
    assert dest.read_text() == "newer" and not tmp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.html"]

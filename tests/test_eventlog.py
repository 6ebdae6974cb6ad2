from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mpxtrace.eventlog import LogError, LogWriter, read_log
from helpers import ev, header


def _write(path: Path, records: list) -> None:
    w = LogWriter(path)
    for r in records:
        w.write(r)
    w.close()


def test_log_is_private_and_roundtrips(tmp_path: Path) -> None:
    path = tmp_path / "run.ndjson"
    recs = [ev("map", 1, 0x1000, 0x2000), {"type": "end", "ts": 2}]
    _write(path, [header()] + recs)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    head, body, warnings = read_log(path)
    assert head["type"] == "header" and list(body) == recs and warnings == []


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "run.ndjson"
    path.write_text("precious")
    with pytest.raises(LogError, match="already exists"):
        LogWriter(path)
    assert path.read_text() == "precious"


def test_refuses_symlink_even_dangling(tmp_path: Path) -> None:
    target = tmp_path / "etc-passwd-stand-in"
    link = tmp_path / "run.ndjson"
    os.symlink(target, link)
    with pytest.raises(LogError):
        LogWriter(link)
    assert not target.exists()


def test_torn_last_line_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "run.ndjson"
    path.write_text(json.dumps(header()) + "\n" + json.dumps(ev("map", 1, 0, 4096)) + "\n" + '{"type": "ev')
    _, body, warnings = read_log(path)
    assert len(list(body)) == 1 and len(warnings) == 1 and "torn" in warnings[0]


def test_damage_in_the_middle_is_an_error_with_line_number(tmp_path: Path) -> None:
    path = tmp_path / "run.ndjson"
    path.write_text(json.dumps(header()) + "\nGARBAGE\n" + json.dumps(ev("map", 1, 0, 4096)) + "\n")
    _, body, _ = read_log(path)
    with pytest.raises(LogError, match=":2:"):
        list(body)


def test_not_a_log(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(LogError, match="not an mpxtrace log"):
        read_log(path)

"""`mpxtrace report LOG` with --plot and --perfetto: files made from the capture, the summary
unchanged, and clear errors for what cannot be done."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mpxtrace.cli import main

from synthetic_capture import capture, write


def _log(tmp_path: Path) -> Path:
    path = tmp_path / "capture.ndjson"
    write(path, capture(seconds=5))
    return path


def test_report_writes_plot_and_perfetto_and_the_same_summary(tmp_path: Path) -> None:
    log = _log(tmp_path)
    plain = CliRunner().invoke(main, ["report", str(log), "--json"])
    png, trace = tmp_path / "c.png", tmp_path / "c.json"
    views = CliRunner().invoke(main, ["report", str(log), "--json", "--plot", str(png), "--perfetto", str(trace)])
    assert plain.exit_code == 0 and views.exit_code == 0, views.output
    assert json.loads(views.output) == json.loads(plain.output)
    assert png.read_bytes()[:4] == b"\x89PNG"
    doc = json.loads(trace.read_text())
    summary = json.loads(plain.output)
    slices = [e for e in doc["traceEvents"] if e["ph"] == "b"]
    assert len(slices) == summary["totals"]["allocations"]  # one slice per allocation
    assert {e["pid"] for e in doc["traceEvents"] if e["ph"] == "C"} == {p["pid"] for p in summary["processes"]}


def test_report_view_errors_say_what_to_do(tmp_path: Path) -> None:
    log = _log(tmp_path)
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"mine")
    for args, message in ((["--plot", str(tmp_path / "c.jpg")], "must end in .png or .svg"),
                          (["--plot", str(taken)], "already exists"),
                          (["--perfetto", str(taken)], "already exists"),
                          (["--live", "--speed", "0"], "--speed must be a positive factor")):
        result = CliRunner().invoke(main, ["report", str(log), *args])
        assert result.exit_code != 0 and message in result.output, (args, result.output)
    assert taken.read_bytes() == b"mine"

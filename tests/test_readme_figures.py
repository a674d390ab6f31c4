"""Every measured figure in the README comes from a benchmark's committed raw output.

A figure (a percentage with decimals, seconds, milliseconds, megabytes, a speed-up, images per
second) may stand in the README only inside a results block, which quotes a table of a file
under bench/results/ written by the command that measured it; the block must match the file.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import results  # noqa: E402  (bench/results.py)

FIGURE = re.compile(r"\b\d+(\.\d+)?\s?(ms|s|MB|GB|x|images/s|img/s)\b|\b\d+\.\d+\s?%|\b\d+\.\d+x\b")


def outside_blocks(text: str) -> str:
    """The README without its results blocks and code blocks (commands, not figures)."""
    text = results.BLOCK.sub("", text)
    return re.sub(r"```.*?```", "", text, flags=re.S)


def test_each_results_block_matches_its_file():
    text = results.README.read_text(encoding="utf-8")
    assert results.blocks(text), "the README quotes no results file"
    assert results.mismatches(text) == []


def test_no_measured_figure_stands_outside_a_results_block():
    stray = [
        line.strip()
        for line in outside_blocks(results.README.read_text(encoding="utf-8")).splitlines()
        if FIGURE.search(line)
    ]
    assert stray == []


def test_a_block_that_differs_from_its_file_is_found(tmp_path, monkeypatch):
    record = tmp_path / "bench" / "results" / "x.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"tables": {"t": "| a |\\n|---|\\n| 1.0% |"}}', encoding="utf-8")
    monkeypatch.setattr(results, "ROOT", tmp_path)
    good = "<!-- results: bench/results/x.json t -->\n| a |\n|---|\n| 1.0% |\n<!-- /results -->"
    assert results.mismatches(good) == []
    assert results.mismatches(good.replace("1.0%", "1.5%")) == [
        "the README's 't' table differs from bench/results/x.json"
    ]
    assert results.rewrite(good.replace("1.0%", "1.5%")) == good
    assert "does not exist" in results.mismatches(good.replace("x.json", "y.json"))[0]
    assert FIGURE.search("took 2.2 s") and FIGURE.search("94.8%") and FIGURE.search("13.1x")
    assert not FIGURE.search("resnet18 at 224 px, 5 epochs, 20% validation")

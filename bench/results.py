"""Raw benchmark results under bench/results/, and the README tables made from them.

    write_results("bench/results/quality.json", payload, {"accuracy": markdown_table})
    python bench/results.py check     # every README results block matches its file (a test runs it)
    python bench/results.py readme    # rewrite the README's results blocks from the files

Each file holds the machine (CPU, cores, GPU, torch and timm versions), the date, the command
that produced it, its raw figures and the Markdown tables it printed. The README quotes a table
between two comments naming the file and the table:

    <!-- results: bench/results/quality.json accuracy -->
    | recipe | ... |
    <!-- /results -->

so every figure in a README table can be traced to a command's committed output, and a test
fails when the two disagree.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(
    r"<!-- results: (?P<file>\S+) (?P<table>\S+) -->\n(?P<body>.*?)<!-- /results -->", re.S
)


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": _version("torch"),
        "timm": _version("timm"),
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_line(precision: str | None = None) -> str:
    m = machine()
    line = (
        f"Machine: {m['cpu']}, {m['cores']} CPU cores, {m['gpu'] or 'no GPU'}, "
        f"torch {m['torch']}, timm {m['timm']}"
    )
    return line + (f"; tlapp precision: {precision}." if precision else ".")


def write_results(path: str | os.PathLike, payload: dict, tables: dict[str, str]) -> Path:
    """Write a benchmark's raw results with the machine, date, command and its tables."""
    path = Path(path)
    record = {
        "command": " ".join(["python", *map(str, sys.argv)]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "tables": tables,
        **payload,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"Raw results: {path}", file=sys.stderr)
    return path


def quoted_table(file: str, table: str) -> str:
    """A table as a results file holds it, the way the README quotes it."""
    record = json.loads((ROOT / file).read_text(encoding="utf-8"))
    return record["tables"][table].strip() + "\n"


def blocks(text: str) -> list[re.Match]:
    return list(BLOCK.finditer(text))


def mismatches(text: str) -> list[str]:
    """Each README results block that differs from its file, as a sentence."""
    out = []
    for block in blocks(text):
        file, table = block["file"], block["table"]
        if not (ROOT / file).is_file():
            out.append(f"{file} (quoted for table '{table}') does not exist")
        elif block["body"] != quoted_table(file, table):
            out.append(f"the README's '{table}' table differs from {file}")
    return out


def rewrite(text: str) -> str:
    """The README with each results block quoting its file anew (blocks whose file does not
    exist yet are left as they are: `check` names them)."""

    def quote(block: re.Match) -> str:
        if not (ROOT / block["file"]).is_file():
            return block[0]
        table = quoted_table(block["file"], block["table"])
        return f"<!-- results: {block['file']} {block['table']} -->\n{table}<!-- /results -->"

    return BLOCK.sub(quote, text)


def main() -> int:
    what = sys.argv[1] if len(sys.argv) > 1 else "check"
    text = README.read_text(encoding="utf-8")
    if what == "readme":
        README.write_text(rewrite(text), encoding="utf-8")
        return 0
    problems = mismatches(text)
    print("\n".join(problems) or f"{len(blocks(text))} results blocks match their files")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

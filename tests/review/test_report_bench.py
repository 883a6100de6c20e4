"""``python -m bench report`` at a small size: the benchmark keeps working (figures in
docs/review.md come from the full size)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench import bench_report


@pytest.mark.slow
def test_bench_report_small(tmp_path: Path) -> None:
    result = asyncio.run(bench_report.run(150, tmp_path))
    assert result["entries"] == 150
    assert result["rows"] < 150  # receipts folded
    assert all(result[f"{fmt}_bytes"] > 0 for fmt in ("json", "html", "pdf"))

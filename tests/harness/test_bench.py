import csv
import math

import pytest

from harness import bench


@pytest.mark.slow
def test_tiny_benchmark_writes_its_table(tmp_path):
    assert bench.main(["--tiny", "--archs", "mlp", "--threads", "1", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "bench_cpu.md").read_text()
    assert "| mlp | mp | float32 |" in table
    with open(tmp_path / "bench_cpu.csv") as handle:
        rows = list(csv.DictReader(handle))
    methods = {row["method"] for row in rows}
    assert methods == {"mp", "mp_sequential", "adamw", "ivon"}
    for row in rows:
        assert float(row["seconds_per_1000"]) > 0
        assert float(row["peak_rss_mb"]) > 0
    adamw = next(row for row in rows if row["method"] == "adamw")
    assert math.isclose(float(adamw["mp_over_adamw"]), 1.0)


def test_paper_schedule_estimate_counts_169_sweeps():
    row = bench.Measurement("mlp", "mp", "float32", 1000, 1.0, 1.0, 0.0, math.nan)
    # 25 epochs with ceil(e/2) sweeps: 1+1+2+2+...+12+12+13 = 169
    assert bench.paper_seconds(row, 1000) == 169.0
    baseline = bench.Measurement("mlp", "adamw", "float32", 1000, 1.0, math.nan, 0.0, math.nan)
    assert bench.paper_seconds(baseline, 1000) == 25.0

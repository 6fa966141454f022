"""`selfsup bench --suite mim`: the three methods' training steps timed side by side, each with its own FLOPs."""
import torch

from benchmarks.throughput import main, measure, mim_suite


def test_mim_suite_times_each_method_and_counts_its_own_work(tmp_path):
    rows = measure(mim_suite("tiny", 2, torch.device("cpu")), torch.device("cpu"), "fp32", False, 1, 2)
    assert [r["name"] for r in rows] == ["selfsup mae", "selfsup simmim", "selfsup data2vec"]
    flops = {r["name"]: r["tflops"] * r["step_s"] for r in rows}       # counted work per step, not timing
    # data2vec's step does more than MAE's (teacher pass, M masked copies, a decoder on full grids); SimMIM's
    # encoder sees every patch where MAE's sees a quarter
    assert flops["selfsup data2vec"] > 2 * flops["selfsup mae"] and flops["selfsup simmim"] > flops["selfsup mae"]
    out = tmp_path / "RESULTS.md"
    main(["--suite", "mim", "--batch", "2", "--steps", "1", "--repeats", "2", "--write", str(out)])
    text = out.read_text()
    assert "<!-- mim-tiny-cpu-fp32 -->" in text and "selfsup mae ÷ this" in text
    assert sum(line.startswith("| selfsup") for line in text.splitlines()) == 3

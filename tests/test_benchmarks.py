"""The throughput benchmark runs every suite on CPU and writes RESULTS.md sections (no timing asserted)."""
import pytest

from benchmarks.throughput import main


@pytest.mark.parametrize("suite", ["mae", "bert", "caption"])
def test_throughput_suite_runs_and_records(tmp_path, capsys, suite):
    out = tmp_path / "RESULTS.md"
    args = ["--suite", suite, "--batch", "2", "--steps", "1", "--repeats", "2", "--write", str(out)]
    main(args)
    main(args)                                                    # a rerun replaces its own section
    text = out.read_text()
    assert text.count(f"<!-- {suite}-tiny-cpu-fp32") == 1 and "ours ÷ this" in text
    rows = [line for line in text.splitlines() if line.startswith("| selfsup") or line.startswith("| transformers")]
    assert len(rows) == 2 and rows[0].endswith("1.00× |")
    main(["--suite", "mae", "--batch", "2", "--steps", "1", "--repeats", "2", "--write", str(out)] if suite != "mae" else args)
    assert out.read_text().count("<!-- /") == (1 if suite == "mae" else 2)   # other sections are kept

"""`selfsup bench --suite decode` runs every image path side by side and records the table (no timing asserted)."""
from test_image_sets import noise_folder

from benchmarks.throughput import main
from vision.data import DECODE_THREADS


def test_decode_suite_measures_every_path_and_records(tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    data = noise_folder(tmp_path / "imgs", per_class=4, size=(40, 30))
    main(["--suite", "decode", "--data", str(data), "--store-size", "16", "--crop", "12", "--batch", "4",
          "--workers", "1", "--steps", "1", "--repeats", "1", "--write", str(out)])
    text = out.read_text()
    assert text.count("<!-- decode-imgs -->") == 1 and "Command: `selfsup bench --suite decode --data" in text
    rows = [line for line in text.splitlines() if line.startswith(("| in memory", "| lazy", "| packed", "| streamed"))]
    paths = [line.split(" | ")[0] for line in rows]
    assert paths == ["| in memory (decoded once), 0 workers", "| in memory (decoded once), 1 workers",
                     "| lazy files, 0 workers", "| lazy files, 1 workers", "| packed shards, 0 workers",
                     "| packed shards, 1 workers", "| packed shards shrunk to 16 px (--size), 0 workers",
                     "| packed shards shrunk to 16 px (--size), 1 workers",
                     f"| streamed from the packed shards (datasets streaming; {DECODE_THREADS} decode threads)"]
    assert all(float(r.split(" | ")[1].replace(",", "")) > 0 for r in rows)
    assert "| reduced-scale decode (draft), then resize |" in text and "12 images" in text

"""The README's "Your own data" CPU recipe runs as written: the command between the ``<!-- own-data-cpu -->`` markers,
with only its data folder (``my_data``) replaced, trains and evaluates a small folder-format dataset."""

import json
import re
import shlex
from pathlib import Path

import numpy as np

from adplg.cli.main import main

README = Path(__file__).resolve().parents[1] / "README.md"
DIM = 512  # the recipe's data.feature_dim


def readme_cpu_recipe() -> list[str]:
    """The argv of the README's CPU recipe (the bash block between the own-data-cpu markers, without ``adplg``)."""
    text = README.read_text()
    block = re.search(r"<!-- own-data-cpu -->\s*```bash\n(.*?)```\s*<!-- /own-data-cpu -->", text, re.S)
    assert block, "README.md: no ```bash block between <!-- own-data-cpu --> and <!-- /own-data-cpu -->"
    words = shlex.split(block.group(1).replace("\\\n", " "))
    assert words[0] == "adplg", words
    return words[1:]


def make_folder_dataset(root: Path, train_per_class: int = 16, test_per_class: int = 5, seed: int = 0) -> None:
    """A ``data.format=folder`` dataset: ``<video>.npy`` ``[T, 512]``, ``train.csv`` / ``test.csv`` (``video,label``)
    and ``intervals.txt`` (``<video> s e`` in frames, 16 per snippet); abnormal snippets are shifted by +1.5."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    intervals = []
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        rows = ["video,label"]
        for label in (0, 1):
            for i in range(count):
                name = f"{split}_{'abnormal' if label else 'normal'}_{i:02d}"
                t = int(rng.integers(40, 120))
                x = rng.standard_normal((t, DIM)).astype(np.float32)
                if label:
                    start = int(rng.integers(0, t // 2))
                    x[start:start + t // 4] += 1.5
                    if split == "test":
                        intervals.append(f"{name} {start * 16} {(start + t // 4) * 16}")
                np.save(root / f"{name}.npy", x)
                rows.append(f"{name},{'Fighting' if label else 'Normal'}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    (root / "intervals.txt").write_text("\n".join(intervals) + "\n")


def test_readme_cpu_recipe_runs_as_written(tmp_path, monkeypatch):
    argv = readme_cpu_recipe()
    assert "data.list_dir=my_data" in argv and "train.device=cpu" in argv
    make_folder_dataset(tmp_path / "data")
    argv = [f"data.list_dir={tmp_path / 'data'}" if word == "data.list_dir=my_data" else word for word in argv]
    monkeypatch.chdir(tmp_path)  # the run directory goes to ./runs
    assert main(argv) == 0
    (run,) = (tmp_path / "runs").iterdir()
    steps = next(word for word in argv if word.startswith("train.num_iters="))
    results = run / "evals" / f"step_{steps.split('=')[1]}" / "results.json"
    assert results.is_file()
    assert 0.0 <= json.loads(results.read_text())["metrics"]["auc"] <= 1.0
    assert (run / "checkpoints" / "last.safetensors").is_file()

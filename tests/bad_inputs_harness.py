"""The harness of the bad-input table (issue 14): a workspace per case, the case records, the runner and the
table's counts. The cases live in ``tests/test_bad_inputs_<surface>.py`` (one :class:`CaseTable` each);
``python tests/test_bad_inputs.py`` prints the counts over all of them.

Each case builds its inputs in a fresh workspace (a small synthetic UCF-format set and a copy of one trained
checkpoint), runs the command in-process, and asserts what a user must get. An error case (the default): exit code 2,
one ``adplg: error:`` message (argparse's ``error:`` for malformed flags) and no traceback, the file or key at fault
named, and every file that existed before byte-identical afterwards. An accepted case (``accepted=``, issue 26: e.g.
a duplicated verdict merged with a warning): exit code 0, the warning's strings named, no existing file changed, and
its ``accepted(workspace)`` check of the outcome returns no problem.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adplg.cli.main import main

REPO = Path(__file__).resolve().parents[1]
TRAIN_QUICK = ["train.num_iters=2", "train.warm_up=1", "train.batch_size=4", "train.progress=false",
               "data.feature_dim=64", "data.train_crops=1", "data.test_crops=1"]
PASSWD_LIKE = "".join(f"user{i}:x:{1000 + i}:{1000 + i}:User {i}:/home/user{i}:/bin/bash\n" for i in range(30))


# --------------------------------------------------------------------------------------------------- workspace
def build_base(root: Path) -> Path:
    """A checkpoint trained 30 steps on a small synthetic set (64-d, one crop); returns its ``.safetensors``."""
    from adplg.config import build_config
    from adplg.data.datasets import build_test_set, build_train_set
    from adplg.data.synthetic import generate_synthetic_ucf
    from adplg.training.engine import Trainer, create_run_dir

    data = generate_synthetic_ucf(root / "data", **SYNTHETIC)
    cfg = build_config("demo-cpu-small", overrides=[
        f"data.list_dir={data.root}", f"output_dir={root}", *TRAIN_QUICK, "train.num_iters=30", "train.warm_up=10",
        "train.eval_every=30", "train.log_every=30"])
    run = create_run_dir(cfg, root / "run")
    Trainer(cfg, build_train_set(cfg, progress=False), build_test_set(cfg, progress=False), run).fit()
    return run / "checkpoints" / "last.safetensors"


SYNTHETIC = dict(num_train_normal=8, num_train_abnormal=8, num_test_normal=4, num_test_abnormal=3, feature_dim=64,
                 crops=1, max_snippets=60, seed=3)


class Workspace:
    """One case's folder: ``data/`` (synthetic UCF lists, annotations, features), ``ckpt.safetensors`` + ``.json``
    (a copy of the base checkpoint) and helpers that write bad files into it; ``base_run``: the base run directory
    (copy from it)."""

    def __init__(self, root: Path, base_checkpoint: Path):
        from adplg.data.synthetic import generate_synthetic_ucf

        self.root = root
        self.base_run = base_checkpoint.parent.parent  # build_base's run directory: read it, never write into it
        self.data = generate_synthetic_ucf(root / "data", **SYNTHETIC).root
        self.ckpt = root / "ckpt.safetensors"
        shutil.copy(base_checkpoint, self.ckpt)
        shutil.copy(base_checkpoint.with_suffix(".json"), self.ckpt.with_suffix(".json"))
        self.features = root / "features"  # one test video's features, to score
        self.features.mkdir()
        shutil.copy(self.test_video("Normal"), self.features / "clip.npy")

    @property
    def annotations(self) -> Path:
        return self.data / "UCF_Annotation.txt"

    def test_video(self, kind: str = "Shoplifting") -> Path:
        return sorted((self.data / "test").rglob(f"{kind}*.npy"))[0]

    def train_video(self) -> Path:
        return sorted((self.data / "train").rglob("*.npy"))[0]

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def edit_sidecar(self, change: Callable[[dict], object]) -> None:
        sidecar = self.ckpt.with_suffix(".json")
        meta = json.loads(sidecar.read_text())
        change(meta)
        sidecar.write_text(json.dumps(meta))

    def edit_annotations(self, change: Callable[[list[str]], list[str]]) -> None:
        lines = self.annotations.read_text().splitlines()
        self.annotations.write_text("\n".join(change(lines)) + "\n")

    # -------------------------------------------------------------------------------------- command lines
    def train(self, *extra: str) -> list[str]:
        return ["train", "--preset", "demo-cpu-small", f"data.list_dir={self.data}",
                f"output_dir={self.root / 'runs'}", *TRAIN_QUICK, *extra]

    def test(self, *extra: str, model: Path | None = None) -> list[str]:
        return ["test", "--model_file", str(model or self.ckpt), f"data.list_dir={self.data}",
                f"output_dir={self.root / 'runs'}", "--no_plot", *extra]

    def score(self, *extra: str, inputs: Path | None = None) -> list[str]:
        return ["score", str(inputs or self.features), "--checkpoint", str(self.ckpt),
                "--out", str(self.root / "scores"), "--no-plot", "--quiet", *extra]

    def calibrate(self, *extra: str, inputs: Path | None = None) -> list[str]:
        return ["calibrate", str(inputs or self.features), "--checkpoint", str(self.ckpt), "--target-far", "0.1",
                "--out", str(self.root / "rules.json"), "--quiet", *extra]

    def export(self, *extra: str) -> list[str]:
        deployed = self.root / "model.ts"  # a model already deployed there must survive every failed export
        if not deployed.exists():
            deployed.write_bytes(b"deployed model")
        return ["export", "--checkpoint", str(self.ckpt), "--format", "torchscript",
                "--out", str(self.root / "model.ts"), *extra]

    def doctor(self, *extra: str) -> list[str]:
        return ["doctor", "--preset", "demo-cpu-small", "--list_dir", str(self.data), "--quiet", *extra]

    def extract(self, *extra: str, inputs: Path | None = None) -> list[str]:
        video = inputs or self.write("videos/clip.mp4", b"")
        return ["extract", str(video), "--backbone", "i3d", "--weights", str(self.root / "i3d.pt"),
                "--out", str(self.root / "extracted"), "--crops", "1", "--device", "cpu", "--quiet", *extra]


def do(*steps):
    """The last of ``steps`` (all evaluated in order): a case's preparation, then its command line."""
    return steps[-1]


def truncated_npy(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bad_crc_safetensors(path: Path) -> None:
    data = bytearray(path.read_bytes())
    header = struct.unpack("<Q", data[:8])[0]
    data[8 + header + 7] ^= 0xFF  # one weight byte: the sidecar's sha256 no longer matches
    path.write_bytes(bytes(data))


def video_weights(w: Workspace) -> Path:
    """Random I3D weights in the public layout, for the extraction cases that get past the weights."""
    from backbone_weights import write_random_i3d  # tests/backbone_weights.py

    return write_random_i3d(w.root / "i3d.pt")


# ------------------------------------------------------------------------------------------------------- cases
@dataclass(kw_only=True)
class Case:
    """``build(workspace) -> (argv, needles)``: the command line, and the strings the message must contain.
    ``accepted``: None for an error case; for a case that must succeed, ``accepted(workspace) -> problems`` (strings,
    empty when the outcome is right), run after the command."""

    id: str
    build: Callable[[Workspace], tuple[list[str], list[str]]]
    script: str | None = None  # run `python <script> argv` in a subprocess instead of `adplg argv`
    accepted: Callable[[Workspace], list[str]] | None = None


class CaseTable:
    """The cases of one surface's file; ``case`` and ``cases`` register them, :meth:`pytest_test` makes its test."""

    def __init__(self) -> None:
        self.cases_list: list[Case] = []

    def case(self, id: str, script: str | None = None, accepted: Callable[[Workspace], list[str]] | None = None):
        def register(build):
            self.cases_list.append(Case(id=id, build=build, script=script, accepted=accepted))
            return build
        return register

    def cases(self, id: str, values, make: Callable):
        """One case per value: ``make(workspace, value) -> (argv, needles)``."""
        for value in values:
            self.cases_list.append(Case(id=f"{id}[{value}]", build=lambda w, v=value: make(w, v)))

    def pytest_test(self):
        """The parametrized pytest test of these cases (assign it to a ``test_...`` name in the case file)."""
        @pytest.mark.parametrize("c", self.cases_list, ids=[c.id for c in self.cases_list])
        def test_bad_input(c: Case, base_checkpoint: Path, tmp_path_factory):
            # a neutral folder name: pytest's tmp_path holds the case id, which would match the needles by itself
            out = run_case(c, tmp_path_factory.mktemp("case"), base_checkpoint)
            assert not out.traceback, out.err
            assert out.code == out.expected_code, f"exit {out.code}: {out.err}"
            assert out.named, f"the message does not name the file or key: {out.err}"
            assert not out.leaked, f"the message quotes a file wholesale: {out.err}"
            assert not out.changed, f"existing files changed: {out.changed}"
            assert not out.problems, f"wrong outcome: {out.problems}"
        return test_bad_input


# ------------------------------------------------------------------------------------------------------ runner
@dataclass(kw_only=True)
class Outcome:
    code: int
    expected_code: int
    err: str
    traceback: bool
    named: bool
    changed: list[str]
    problems: list[str]

    @property
    def leaked(self) -> bool:
        """The message quotes a file's content wholesale (more than a few lines of :data:`PASSWD_LIKE`)."""
        return sum(f"user{i}:x:" in self.err for i in range(30)) > 3

    @property
    def clear(self) -> bool:
        """An error case: exit 2, named, one ``error`` message; an accepted case: exit 0 with the right outcome."""
        return (self.code == self.expected_code and not self.traceback and self.named and not self.leaked
                and not self.problems and (self.expected_code == 0 or "error" in self.err))


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_case(c: Case, root: Path, base_checkpoint: Path) -> Outcome:
    """Build ``c`` in a fresh workspace at ``root``, run it, and report what the user got."""
    w = Workspace(root, base_checkpoint)
    argv, needles = c.build(w)
    before = snapshot(root)
    err = io.StringIO()
    traceback = False
    handler = logging.StreamHandler(err)  # warnings and errors logged by the command belong to its message
    if c.script:
        proc = subprocess.run([sys.executable, str(REPO / c.script), *argv], capture_output=True, text=True,
                              cwd=root, timeout=300)
        code, text = proc.returncode, proc.stderr
        traceback = "Traceback" in text
    else:
        logging.getLogger().addHandler(handler)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: malformed flags
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception as exc:  # noqa: BLE001 - an uncaught exception is what a user sees as a traceback
                code, traceback = 1, True
                err.write(f"Traceback: {type(exc).__name__}: {exc}")
        logging.getLogger().removeHandler(handler)
        text = err.getvalue()
    after = snapshot(root)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    problems = c.accepted(w) if c.accepted is not None and code == 0 else []
    return Outcome(code=code or 0, expected_code=0 if c.accepted is not None else 2, err=text,
                   traceback=traceback or "Traceback" in text, named=all(n in text for n in needles),
                   changed=changed, problems=problems)


_BASES: dict[str, Path] = {}


@pytest.fixture(scope="session")
def base_checkpoint(tmp_path_factory) -> Path:
    """The trained base checkpoint, built once per session (shared by every case file that imports the fixture)."""
    if "base" not in _BASES:
        _BASES["base"] = build_base(tmp_path_factory.mktemp("bad-inputs-base"))
    return _BASES["base"]


def summarize(all_cases: list[Case]) -> None:
    """Run ``all_cases`` and print the table's counts, then each case that is not clear."""
    with tempfile.TemporaryDirectory() as tmp:
        base = build_base(Path(tmp) / "base")
        rows = []
        for i, c in enumerate(all_cases):
            rows.append((c.id, run_case(c, Path(tmp) / f"case{i}", base)))
    errors = [o for _, o in rows if o.expected_code == 2]
    accepted = [o for _, o in rows if o.expected_code == 0]
    counts = {
        "tried": len(rows),
        "clear (exit 2, named, no traceback)": sum(o.clear for o in errors),
        "partly clear (exit 2, file/key not named)": sum(o.code == 2 and not o.traceback and not o.named
                                                         for o in errors),
        "accepted as expected (exit 0, right outcome)": sum(o.clear for o in accepted),
        "accepted with a wrong outcome or exit": sum(not o.clear for o in accepted),
        "raw tracebacks": sum(o.traceback for _, o in rows),
        "file contents quoted wholesale": sum(o.leaked for _, o in rows),
        "exit 0 where an error was due": sum(o.code == 0 for o in errors),
        "existing data changed": sum(bool(o.changed) for _, o in rows),
    }
    for name, value in counts.items():
        print(f"{name:45s} {value}")
    for name, o in rows:
        if not o.clear or o.changed:
            print(f"\n--- {name}: exit {o.code}, changed {o.changed}, problems {o.problems}\n{o.err.strip()[-600:]}")

"""Issue 26 (item 8): TorchScript CLIP weights are read without running the archive's code; hostile archives are
refused with an error naming the file."""

from __future__ import annotations

import pickle
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from backbone_weights import random_clip_state, write_random_clip
from torch import Tensor, nn

from adplg.errors import AdplgError
from adplg.models.backbones.clip import load_clip_vision
from adplg.models.backbones.torchscript import read_torchscript_state

MARKER = "ADPLG-HOSTILE-SETSTATE-RAN"
SMALL = {"width": 64, "layers": 1, "patch": 16, "image_size": 32, "output_dim": 24}


class HostileBlock(nn.Module):
    """A scripted module whose TorchScript ``__setstate__`` prints :data:`MARKER`: ``torch.jit.load`` runs it."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))

    @torch.jit.export
    def __getstate__(self):
        return (self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[Tensor, bool]):
        print("ADPLG-HOSTILE-SETSTATE-RAN")   # MARKER (TorchScript cannot read module globals)
        self.weight = state[0]
        self.training = state[1]

    def forward(self, x: Tensor) -> Tensor:
        return x


class WritesMarker:
    """Pickles as a REDUCE of ``exec`` that writes a marker file: any unpickler that runs it leaves the file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def jit_state(path: Path) -> dict[str, Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").state_dict()


def replace_entry(source: Path, target: Path, entry_suffix: str, data: bytes | None) -> Path:
    """Copy the zip ``source`` to ``target`` with the entry ending in ``entry_suffix`` replaced by ``data`` (or
    left out when ``data`` is None)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if info.filename.endswith(entry_suffix):
                if data is not None:
                    new.writestr(info.filename, data)
            else:
                new.writestr(info, old.read(info.filename))
    return target


def data_pkl(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(name for name in archive.namelist() if name.endswith("/data.pkl")))


def test_benign_archive_reads_the_same_tensors_as_torch_jit_load(tmp_path):
    path = write_random_clip(tmp_path / "ViT-B-16.pt", seed=2, jit=True, layers=2)
    state = read_torchscript_state(path, "CLIP weights")
    reference = jit_state(path)
    assert set(state) == set(reference) == set(random_clip_state(seed=2, layers=2))
    for key, value in reference.items():
        assert state[key].dtype == value.dtype == torch.float16, key
        assert torch.equal(state[key], value), key


def test_torchscript_and_state_dict_files_give_the_same_features(tmp_path):
    scripted = load_clip_vision(write_random_clip(tmp_path / "scripted.pt", seed=9, jit=True, **SMALL))
    plain = load_clip_vision(write_random_clip(tmp_path / "plain.pt", seed=9, jit=False, **SMALL))
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(scripted(pixels), plain(pixels), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_hostile_setstate_archive_is_refused_without_running_it(tmp_path, capfd):
    root = nn.Module()
    root.visual = HostileBlock()
    path = tmp_path / "hostile.pt"
    torch.jit.script(root).save(str(path))
    torch.jit.load(str(path))
    assert MARKER in capfd.readouterr().out   # the archive is live: torch.jit.load runs its __setstate__
    with pytest.raises(AdplgError) as info:
        load_clip_vision(path)
    message = str(info.value)
    assert MARKER not in capfd.readouterr().out
    assert str(path) in message and "TorchScript archive refused" in message
    assert "HostileBlock has a custom state (tuple)" in message and "__setstate__" in message


def test_hostile_pickle_reduce_is_refused_without_running_it(tmp_path):
    benign = write_random_clip(tmp_path / "benign.pt", seed=1, jit=True, **SMALL)
    payload = pickle.dumps({"visual": WritesMarker(tmp_path / "probe.txt")}, protocol=4)
    pickle.loads(payload)
    assert (tmp_path / "probe.txt").exists()   # the payload is live: a plain unpickler runs it
    marker = tmp_path / "marker.txt"
    path = replace_entry(benign, tmp_path / "ViT-B-16.pt", "/data.pkl",
                         pickle.dumps({"visual": WritesMarker(marker)}, protocol=4))
    with pytest.raises(AdplgError) as info:
        load_clip_vision(path)
    assert not marker.exists()
    message = str(info.value)
    assert str(path) in message and "data.pkl refers to builtins.exec" in message
    assert "never runs their code" in message


def test_unknown_global_inside_a_module_is_refused(tmp_path):
    benign = write_random_clip(tmp_path / "benign.pt", seed=1, jit=True, **SMALL)
    hostile = data_pkl(benign).replace(b"collections\nOrderedDict", b"os\nsystem", 1)
    assert hostile != data_pkl(benign)
    path = replace_entry(benign, tmp_path / "edited.pt", "/data.pkl", hostile)
    with pytest.raises(AdplgError, match=r"edited\.pt: TorchScript archive refused: data\.pkl refers to "
                                         r"os\.system"):
        load_clip_vision(path)


def test_damaged_archives_are_clear_errors(tmp_path):
    benign = write_random_clip(tmp_path / "benign.pt", seed=1, jit=True, **SMALL)
    no_blob = replace_entry(benign, tmp_path / "no_blob.pt", "/data/0", None)
    with pytest.raises(AdplgError, match=r"no_blob\.pt: damaged TorchScript archive: storage blob "
                                         r"\S+/data/0 is missing"):
        load_clip_vision(no_blob)
    short_blob = replace_entry(benign, tmp_path / "short_blob.pt", "/data/2", b"\0" * 6)
    with pytest.raises(AdplgError, match=r"short_blob\.pt: damaged TorchScript archive: storage blob data/2 holds "
                                         r"6 bytes, a tensor of size \(\d+, 64\) at offset 0 needs \d+"):
        load_clip_vision(short_blob)
    bad_pickle = replace_entry(benign, tmp_path / "bad_pickle.pt", "/data.pkl", b"\x80\x02garbage")
    with pytest.raises(AdplgError, match=r"bad_pickle\.pt: cannot be read as a TorchScript archive"):
        load_clip_vision(bad_pickle)
    other = "big" if sys.byteorder == "little" else "little"
    swapped = replace_entry(benign, tmp_path / "swapped.pt", "/byteorder", other.encode())
    expected = rf"swapped\.pt: .*expected {sys.byteorder}-endian tensors, got {other}-endian"
    with pytest.raises(AdplgError, match=expected):
        load_clip_vision(swapped)

"""The extraction folder format (``adplg.data.extraction``): one reader with one policy. A manifest or record that
exists but is no readable JSON object is an ``AdplgError`` naming the file, what was expected and what was found,
for every reader: the doctor reports that very message as a problem, ``adplg extract`` refuses the folder with it."""

import json

import numpy as np
import pytest

from adplg.cli.main import main
from adplg.data.extraction import (
    FEATURE_KEYS,
    check_extract_folder,
    is_extraction_folder,
    is_finished,
    meta_path,
    read_manifest,
    read_video_record,
    record_crop_files,
    settings_fingerprint,
    write_crop_file,
    write_feature_list,
    write_manifest,
    write_video_record,
)
from adplg.doctor.checks import diagnose_extraction
from adplg.errors import AdplgError

MANIFEST = {"backbone": "i3d", "weights_sha256": "0" * 64, "feature_dim": 8, "crops": 1, "naming": "ucf"}
CORRUPT = {"{not json": r"cannot read the extraction manifest as JSON: JSONDecodeError: .*expected the JSON object",
           "[1, 2]": r"extraction manifest: expected a JSON object .*got a JSON array",
           '"text"': r"extraction manifest: expected a JSON object .*got a JSON string"}


def _finished_video(folder, name: str = "A001", t: int = 3) -> dict:
    write_crop_file(folder / f"{name}.npy", np.ones((t, 8)))
    record = {"video": name, "crops": 1, "crop_files": [f"{name}.npy"], "snippets": t, "feature_shape": [t, 8],
              "settings_fingerprint": settings_fingerprint(MANIFEST)}
    write_video_record(folder, name, record)
    return record


def test_round_trip_and_names(tmp_path):
    folder = tmp_path / "out"
    assert read_manifest(folder) is None and read_video_record(folder, "A001") is None  # absent: None, no error
    assert not is_extraction_folder(folder)
    write_manifest(folder, MANIFEST)
    record = _finished_video(folder)
    assert read_manifest(folder) == MANIFEST and read_video_record(folder, "A001") == record
    assert meta_path(folder, "A001") == folder / "meta" / "A001.json" and is_extraction_folder(folder)
    saved = np.load(folder / "A001.npy")
    assert saved.dtype == np.float32 and saved.shape == (3, 8)
    assert is_finished(folder, "A001", ["A001.npy"], settings_fingerprint(MANIFEST))
    assert not is_finished(folder, "A001", ["A001.npy"], "another fingerprint")
    assert write_feature_list(folder).read_text() == f"{(folder / 'A001.npy').resolve()}\n"


def test_fingerprint_follows_the_feature_settings_only():
    base = settings_fingerprint(MANIFEST)
    assert settings_fingerprint({**MANIFEST, "adplg": "9.9", "versions": {"torch": "x"}}) == base
    for key in (*FEATURE_KEYS, "feature_dim"):
        assert settings_fingerprint({**MANIFEST, key: "changed"}) != base, key


@pytest.mark.parametrize("text", list(CORRUPT))
def test_a_corrupt_manifest_is_an_error_naming_the_file(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(AdplgError, match=CORRUPT[text]) as caught:
        read_manifest(tmp_path)
    assert str(tmp_path / "manifest.json") in str(caught.value)


def test_a_corrupt_record_is_an_error_and_lenient_callers_catch_it(tmp_path, caplog):
    write_manifest(tmp_path, MANIFEST)
    _finished_video(tmp_path, "A001")
    _finished_video(tmp_path, "B002")
    meta_path(tmp_path, "B002").write_text("[]")
    with pytest.raises(AdplgError, match=r"B002\.json: extraction record: expected a JSON object .*got a JSON array"):
        read_video_record(tmp_path, "B002")
    # a re-run extracts such a video again, and features.list leaves it out; both say why in the log
    assert not is_finished(tmp_path, "B002", ["B002.npy"], settings_fingerprint(MANIFEST))
    assert write_feature_list(tmp_path).read_text().splitlines() == [str((tmp_path / "A001.npy").resolve())]
    assert "B002.json" in caplog.text
    with pytest.raises(AdplgError, match=r"A001\.json: crop_files: expected a non-empty list of file names, got \[\]"):
        record_crop_files(meta_path(tmp_path, "A001"), {"crop_files": [], "snippets": 3})
    with pytest.raises(AdplgError, match=r"snippets: expected an integer \(T\), got '3'"):
        record_crop_files(meta_path(tmp_path, "A001"), {"crop_files": ["A001.npy"], "snippets": "3"})


@pytest.mark.parametrize("text", list(CORRUPT))
def test_doctor_reports_and_extract_refuses_a_corrupt_manifest_with_one_message(tmp_path, capsys, text):
    folder = tmp_path / "out"
    write_manifest(folder, MANIFEST)
    _finished_video(folder)
    write_feature_list(folder)
    (folder / "manifest.json").write_text(text)
    with pytest.raises(AdplgError, match=CORRUPT[text]) as caught:
        read_manifest(folder)
    message = str(caught.value)

    problems = diagnose_extraction(folder, progress=False).splits[0].problems
    assert [(p.kind, p.message) for p in problems] == [("manifest", message)]  # the rest of the folder is fine

    with pytest.raises(AdplgError) as refused:
        check_extract_folder(folder, {"backbone": "i3d"})
    assert str(refused.value) == message
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert main(["extract", str(tmp_path / "v.mp4"), "--backbone", "i3d", "--weights", str(tmp_path / "w.pt"),
                 "--out", str(folder), "--quiet"]) == 2
    assert capsys.readouterr().err == f"adplg: error: {message}\n"
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before  # nothing was written


def test_extract_refuses_a_manifest_it_did_not_write(tmp_path):
    write_manifest(tmp_path, {"naming": "sht"})
    with pytest.raises(AdplgError, match=r"not a manifest written by `adplg extract` .*got backbone None and no "
                                         r"weights_sha256.*nothing was overwritten"):
        check_extract_folder(tmp_path)
    assert read_manifest(tmp_path) == {"naming": "sht"}  # reading is not refusing: other readers take it
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"naming": "sht"}

"""The doctor's report: every problem kind with its severity, one report per split (or extraction folder), and its
text rendering (:func:`format_report`; :meth:`DoctorReport.to_dict` for JSON). The checks are in
:mod:`adplg.doctor.checks`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from adplg.data.features import FEATURE_PROBLEM_KINDS
from adplg.data.gt_checks import ERROR, GT_PROBLEM_KINDS, GT_WARNING_KINDS, WARNING, Problem, ProblemList

__all__ = ["Problem", "SplitReport", "DoctorReport", "PROBLEM_KINDS", "format_report"]


STAT_ROWS_PER_FILE = 8  # rows sampled evenly from every valid file for the feature value mean/std

PROBLEM_KINDS: dict[str, str] = {
    "list": "list file missing or malformed",
    "label": "crops without a usable video label",
    "batch_size": "too few crops for train.batch_size",
    **FEATURE_PROBLEM_KINDS,
    "too_long": "T longer than model.max_len",
    "short_outlier": "unusually short videos",
    **GT_PROBLEM_KINDS,  # the test split's GT: gt_checks.check_test_gt, shared with build_test_set
    "manifest": "manifest.json missing, unreadable or incomplete",
    "meta": "meta record unreadable or malformed",
    "meta_mismatch": "crop files disagree with their meta record",
    "orphan": "crop files without a meta record (half-extracted videos)",
    "feature_list": "features.list missing or out of date",
}
WARNING_KINDS = frozenset({"short_outlier", "feature_list", "too_long"}) | GT_WARNING_KINDS
EXTRACTION = "extraction"  # the split name (and DoctorReport.kind) of an `adplg extract` folder check
UNREADABLE_KINDS = frozenset({"unreadable", "truncated", "layout", "ndim"})


# ------------------------------------------------------------------------------------------------------ the report
@dataclass(kw_only=True)
class SplitReport(ProblemList):
    """Counts, statistics and problems of one split."""

    split: str
    list_file: str | None = None
    feature_root: str | None = None
    list_ok: bool = False
    crops: int = 0
    videos: int = 0
    abnormal_videos: int = 0
    normal_videos: int = 0
    expected_crops: int | None = None
    files: int = 0
    files_found: int = 0
    files_missing: int = 0
    files_unreadable: int = 0
    files_nonfinite: int = 0
    nonfinite_values: int = 0
    length_min: int | None = None
    length_median: float | None = None
    length_max: int | None = None
    total_snippets: int = 0
    value_mean: float | None = None
    value_std: float | None = None
    value_sample_size: int = 0
    gt_source: str | None = None
    gt_frames: int | None = None
    rules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def add(self, kind: str, message: str, severity: str | None = None) -> None:
        """Record a problem; the severity defaults to the kind's (warning kinds are ``WARNING_KINDS``)."""
        if severity is None:
            severity = WARNING if kind in WARNING_KINDS else ERROR
        self.problems.append(Problem(kind=kind, message=message, severity=severity))


@dataclass(kw_only=True)
class DoctorReport:
    """The whole diagnosis: what was checked and one ``SplitReport`` per split."""

    config_name: str
    list_dir: str
    feature_dim: int
    splits: list[SplitReport]
    seconds: float = 0.0
    kind: str = "dataset"  # or EXTRACTION: a folder written by `adplg extract`

    @property
    def num_errors(self) -> int:
        """The number of errors over all splits."""
        return sum(len(s.errors) for s in self.splits)

    @property
    def num_warnings(self) -> int:
        """The number of warnings over all splits."""
        return sum(len(s.warnings) for s in self.splits)

    @property
    def healthy(self) -> bool:
        """True when no split has an error (warnings allowed)."""
        return self.num_errors == 0

    def to_dict(self) -> dict:
        """JSON-ready: every field, plus ``healthy``, ``errors`` and ``warnings`` counts."""
        out = asdict(self)
        out.update(healthy=self.healthy, errors=self.num_errors, warnings=self.num_warnings)
        for split, raw in zip(self.splits, out["splits"], strict=True):
            raw.update(errors=len(split.errors), warnings=len(split.warnings))
        return out


# ---------------------------------------------------------------------------------------------------- formatting
def format_report(report: DoctorReport, max_shown: int = 10) -> str:
    """A readable plain-text report: one section per split (counts, statistics, rules, problems grouped by kind with
    the first ``max_shown`` of each kind), then a one-line verdict."""
    if report.kind == EXTRACTION:
        lines = [f"adplg doctor: extraction folder {report.list_dir} ({report.config_name}), feature_dim "
                 f"{report.feature_dim}; checked in {report.seconds:.1f} s"]
    else:
        lines = [f"adplg doctor: config {report.config_name!r}, list dir {report.list_dir}, "
                 f"feature_dim {report.feature_dim}; checked in {report.seconds:.1f} s"]
    for split in report.splits:
        lines += [""] + _format_split(split, max_shown)
    lines += ["", _verdict(report)]
    return "\n".join(lines)


def _format_split(split: SplitReport, max_shown: int) -> list[str]:
    if split.split == EXTRACTION:
        lines = [f"== extraction folder {split.feature_root}: manifest {split.list_file} "
                 f"({'read' if split.list_ok else 'NOT read'})"]
    else:
        lines = [f"== {split.split} split: list {split.list_file} ({'read' if split.list_ok else 'NOT read'}), "
                 f"features under {split.feature_root or '(paths as listed)'}"]
    if split.list_ok:
        lines += _format_counts(split)
    lines += [f"  rule: {rule}" for rule in split.rules]
    lines += [f"  note: {note}" for note in split.notes]
    lines += _format_problems(split, max_shown)
    return lines


def _format_counts(split: SplitReport) -> list[str]:
    crops = f"; expected {split.expected_crops} crop(s) per video" if split.expected_crops else ""
    if split.split == EXTRACTION:
        listed = f"  meta records: {split.crops} crop files of {split.videos} finished videos{crops}"
    else:
        listed = (f"  list: {split.crops} crop entries in {split.videos} videos ({split.abnormal_videos} abnormal, "
                  f"{split.normal_videos} normal){crops}")
    lines = [
        listed,
        f"  files: {split.files} distinct, {split.files_found} found, {split.files_missing} missing, "
        f"{split.files_unreadable} unreadable/truncated/wrong shape, {split.files_nonfinite} with NaN/Inf "
        f"({split.nonfinite_values} values)",
    ]
    if split.length_min is not None:
        lines.append(f"  T per video: min {split.length_min}, median {split.length_median:g}, max {split.length_max}; "
                     f"{split.total_snippets} snippets in all readable crops")
    if split.value_mean is not None:
        lines.append(f"  feature values (sample of {split.value_sample_size} from {STAT_ROWS_PER_FILE} rows per valid "
                     f"file): mean {split.value_mean:.4g}, std {split.value_std:.4g}")
    if split.gt_source:
        frames = f", {split.gt_frames} frames" if split.gt_frames is not None else ""
        lines.append(f"  ground truth: {split.gt_source}{frames}")
    return lines


def _format_problems(split: SplitReport, max_shown: int) -> list[str]:
    if not split.problems:
        return ["  problems: none"]
    lines = [f"  problems: {len(split.errors)} error(s), {len(split.warnings)} warning(s)"]
    by_kind: dict[tuple[str, str], list[Problem]] = {}
    for problem in split.problems:
        by_kind.setdefault((problem.severity, problem.kind), []).append(problem)
    order = sorted(by_kind, key=lambda sk: (sk[0] != ERROR, list(PROBLEM_KINDS).index(sk[1])
                                            if sk[1] in PROBLEM_KINDS else len(PROBLEM_KINDS)))
    for severity, kind in order:
        group = by_kind[(severity, kind)]
        lines.append(f"    [{severity}] {PROBLEM_KINDS.get(kind, kind)}: {len(group)}")
        lines += [f"      - {p.message}" for p in group[:max_shown]]
        if len(group) > max_shown:
            lines.append(f"      ... and {len(group) - max_shown} more")
    return lines


def _verdict(report: DoctorReport) -> str:
    names = "extraction folder" if report.kind == EXTRACTION else ", ".join(s.split for s in report.splits)
    warnings = f" and {report.num_warnings} warning(s)" if report.num_warnings else ""
    if report.healthy:
        return f"verdict: HEALTHY ({names}): no errors{warnings}"
    return f"verdict: PROBLEMS FOUND ({names}): {report.num_errors} error(s){warnings}"

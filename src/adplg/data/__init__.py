"""Data: list files, validated feature loading, frame-level ground truth."""

from adplg.data.features import RESAMPLE_MODES, FeatureStore, resample_segments
from adplg.data.gt import (
    FrameGT,
    SnippetLayout,
    annotation_key,
    build_frame_gt,
    check_lengths,
    load_gt_file,
    read_ucf_annotations,
    read_ucf_frame_counts,
    read_xd_annotations,
)
from adplg.data.lists import (
    LIST_FORMATS,
    CropItem,
    VideoItem,
    common_dir_prefix,
    group_videos,
    parse_label,
    read_list,
    split_crop_suffix,
)

__all__ = [
    "CropItem",
    "VideoItem",
    "LIST_FORMATS",
    "read_list",
    "group_videos",
    "split_crop_suffix",
    "parse_label",
    "common_dir_prefix",
    "FeatureStore",
    "resample_segments",
    "RESAMPLE_MODES",
    "SnippetLayout",
    "FrameGT",
    "annotation_key",
    "read_ucf_annotations",
    "read_ucf_frame_counts",
    "read_xd_annotations",
    "build_frame_gt",
    "load_gt_file",
    "check_lengths",
]

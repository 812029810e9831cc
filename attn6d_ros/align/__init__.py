"""Region-based 6-DoF alignment of object poses to an image (sparse correspondence lines, after Stoiber et
al.: RBGT ACCV 2020, SRT3D IJCV 2022, ICG CVPR 2022): viewpoint templates built once per mesh and cached,
colour histograms learned from the image, regularised Newton steps coarse to fine.

Usage::

    templates, _ = load_or_build_templates(model)          # cached on disk after the first call
    result = align_pose(image_rgb, K, T_cam_obj, templates)  # AlignResult(T, energy, valid_lines, error)
"""

from attn6d_ros.align.solver import AlignConfig, AlignResult, align_pose, outline_energy
from attn6d_ros.align.templates import (
    TemplateConfig,
    ViewTemplates,
    default_cache_dir,
    load_or_build_templates,
)

__all__ = [
    "AlignConfig",
    "AlignResult",
    "TemplateConfig",
    "ViewTemplates",
    "align_pose",
    "default_cache_dir",
    "load_or_build_templates",
    "outline_energy",
]

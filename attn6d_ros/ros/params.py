"""The refinement node's parameters: one frozen dataclass, declared as ROS parameters from its fields.

Every field of `NodeConfig` is one ROS parameter. Its metadata gives the parameter name (dots for nesting,
as in config/refine.yaml), a description, an optional range or set of choices, and whether it is read-only
(fixed at start-up: model, device, subscriptions) or may be changed at run time with `ros2 param set`.

`declare_parameters(node)` registers the validator *before* declaring, so values from a YAML file or the
command line pass the same checks as later `ros2 param set` calls. A bad value raises `ParameterError`, whose
message names the parameter, the value and what was expected; the node turns it into one log line and a
non-zero exit code. This module imports rclpy lazily (only inside `declare_parameters`), so the dataclass
and its checks are usable and testable without ROS.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from attn6d_ros.pose_check import DEFAULT_MIN_SCORE

DEFAULT_CHECKPOINT = "package://attn6d_ros/models/demo_refiner.pt"
DEFAULT_OBJECTS_FILE = "package://attn6d_ros/config/objects.yaml"
RELIABILITIES = ("best_effort", "reliable")
TRACKING_METHODS = ("align", "network")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
# tf2 rejects a leading '/' and whitespace; the rest of REP 103 naming is a convention, not a tf2 rule.
_FRAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]*(/[A-Za-z0-9_.\-]+)*/?$")


# Parameters that are gone, with what replaces them: a node or tool given one says so (issue 27).
REMOVED_PARAMETERS = {
    "depth_search": "the alignment (parameter 'align', on by default) replaces the depth search",
    "region_fit": "the alignment (parameter 'align', on by default) replaces the region fit",
    "region_fit_turn_deg": "use 'align_turn_deg' for the alignment's extra starts",
}


NODE_NAME = "attn6d_refiner"  # the node's name: its parameters file section, its logger
# Parameters rclpy declares itself: neither ours nor typos.
ROS_OWN_PARAMETERS = ("use_sim_time", "start_type_description_service", "qos_overrides.")


class ParameterError(ValueError):
    """A parameter value the node cannot run with; `name` is the parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _param(
    name: str,
    description: str,
    *,
    read_only: bool = False,
    range: tuple[float, float] | None = None,
    choices: tuple[str, ...] | None = None,
    check: Callable[[Any], str | None] | None = None,
) -> dict:
    return {
        "param": name,
        "description": description,
        "read_only": read_only,
        "range": range,
        "choices": choices,
        "check": check,
    }


def _check_device(value: str) -> str | None:
    if not _DEVICE_PATTERN.match(value):
        return "expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
    return None


def _check_non_empty(value: str) -> str | None:
    return "must not be empty" if not value.strip() else None


def _check_frame_prefix(value: str) -> str | None:
    if value.startswith("/"):
        return "must not start with '/' (tf2 rejects frame ids with a leading slash)"
    if not _FRAME_PATTERN.match(value):
        return "may contain only letters, digits, '_', '-', '.' and '/' separators"
    return None


@dataclass(frozen=True)
class NodeConfig:
    """What the refinement node runs with; built once from ROS parameters, replaced on run-time changes."""

    checkpoint: str = field(
        default=DEFAULT_CHECKPOINT,
        metadata=_param(
            "checkpoint",
            "Refiner weights (.pt from attn6d-train): a path, ~ or package://attn6d_ros/...",
            read_only=True,
            check=_check_non_empty,
        ),
    )
    objects_file: str = field(
        default=DEFAULT_OBJECTS_FILE,
        metadata=_param(
            "objects_file",
            "Object table YAML: class id -> mesh, units (m|cm|mm), symmetric (see objects.py)",
            read_only=True,
            check=_check_non_empty,
        ),
    )
    device: str = field(
        default="auto",
        metadata=_param(
            "device",
            "auto | cpu | cuda | cuda:N. auto takes CUDA when available; an explicit cuda without CUDA "
            "is a start-up error, never a silent fallback",
            read_only=True,
            check=_check_device,
        ),
    )
    cpu_threads: int = field(
        default=0,
        metadata=_param(
            "cpu_threads",
            "PyTorch CPU threads for inference; 0 keeps PyTorch's default. Use 1 on a CPU shared with "
            "other busy processes: oversubscribed OpenMP threads were measured 100x slower",
            read_only=True,
            range=(0, 256),
        ),
    )
    stages: int = field(
        default=0,
        metadata=_param(
            "stages",
            "Refinement stages per frame; 0 runs the model's own number. A model trained with "
            "shared stages runs any number, a per-stage model at most its own",
            range=(0, 32),
        ),
    )
    align: bool = field(
        default=True,
        metadata=_param(
            "align",
            "After the last stage, align each pose to the object's region in the image (align/: sparse "
            "region-based alignment after Stoiber et al.; contour templates prepared at start-up and "
            "cached per mesh, colour histograms learned from the image). Not in the paper; on by default "
            "(the shipped weights rely on it: ADD 0.1 d 64.0 % without, 89.5 % with); false: the "
            "network's stages alone",
        ),
    )
    align_turn_deg: float = field(
        default=0.0,
        metadata=_param(
            "align_turn_deg",
            "With align: 0 aligns from the network's pose only; > 0 also from that pose turned by +- "
            "this about each camera axis, degrees (7 starts, the lowest energy wins)",
            range=(0.0, 90.0),
        ),
    )
    align_only_turn_deg: float = field(
        default=15.0,
        metadata=_param(
            "align_only_turn_deg",
            "Objects without trained weights (objects table 'method', objects.py) are refined by the "
            "alignment alone, from the coarse pose and from it turned by +- this about each camera axis, "
            "degrees (7 starts); 0: from the coarse pose only",
            range=(0.0, 90.0),
        ),
    )
    min_score: float = field(
        default=DEFAULT_MIN_SCORE,
        metadata=_param(
            "min_score",
            "Refined poses scoring below this (render/image colour correlation, [0, 1]) are not "
            "published as refined poses; refined/details still reports them with the reason",
            range=(0.0, 1.0),
        ),
    )
    guard: bool = field(
        default=True,
        metadata=_param(
            "guard",
            "Judge the coarse and the refined pose by how well their outlines separate the image's own "
            "colours (pose_check.py): a refinement that agrees less with the image than its coarse pose "
            "is not published as refined; refined/details reports it with the reason",
        ),
    )
    guard_max_align_energy: float = field(
        default=2.2,
        metadata=_param(
            "guard_max_align_energy",
            "With guard and the alignment: an aligned pose whose outline fits the image's colours worse "
            "than this (align.outline_energy; about 1 on a good fit, above 2 on a poor one) is not "
            "published as refined. 2.2 was chosen on the demo object's validation scenes; lower is stricter",
            range=(0.1, 100.0),
        ),
    )
    max_detections: int = field(
        default=32,
        metadata=_param(
            "max_detections",
            "At most this many detections of a frame are refined: beyond it the highest-scored "
            "(results[0].hypothesis.score) are kept and a warning says how many were dropped. Time "
            "grows with the count (refined 16 at a time, so memory does not)",
            range=(1, 10000),
        ),
    )
    publish_tf: bool = field(
        default=True,
        metadata=_param("publish_tf", "Broadcast every refined pose on /tf"),
    )
    tf_prefix: str = field(
        default="",
        metadata=_param(
            "tf_prefix",
            "Prefix of the TF child frames: <tf_prefix><detection id, or class id with _1, _2... for "
            "further instances in a frame>",
            check=_check_frame_prefix,
        ),
    )
    sync_queue_size: int = field(
        default=15,
        metadata=_param(
            "sync.queue_size",
            "Messages kept per input by the approximate-time synchronizer; must cover the detector's "
            "latency: frames per second x detector latency + margin",
            read_only=True,
            range=(1, 1000),
        ),
    )
    sync_slop: float = field(
        default=0.02,
        metadata=_param(
            "sync.slop",
            "Largest stamp difference (seconds) between image, camera_info and detections of one frame",
            read_only=True,
            range=(1e-6, 10.0),
        ),
    )
    sync_warn_after_s: float = field(
        default=5.0,
        metadata=_param(
            "sync.warn_after_s",
            "Warn when images and detections both arrive but no frame has been synchronized for this "
            "long (seconds); the warning names the stamps seen",
            range=(0.1, 3600.0),
        ),
    )
    image_transport: str = field(
        default="raw",
        metadata=_param(
            "image_transport",
            "raw: sensor_msgs/Image on 'image'; compressed: sensor_msgs/CompressedImage (JPEG or PNG, "
            "decoded with Pillow) on '<image>/compressed', as image_transport's compressed publisher "
            "names it (the remapped image topic plus /compressed)",
            read_only=True,
            choices=("raw", "compressed"),
        ),
    )
    image_reliability: str = field(
        default="best_effort",
        metadata=_param(
            "qos.image.reliability",
            "QoS reliability of the image and camera_info subscriptions: best_effort (sensor data, "
            "matches every publisher) or reliable (receives nothing from a best-effort camera)",
            read_only=True,
            choices=RELIABILITIES,
        ),
    )
    image_depth: int = field(
        default=5,
        metadata=_param(
            "qos.image.depth",
            "QoS history depth of the image and camera_info subscriptions (sensor data: 5)",
            read_only=True,
            range=(1, 1000),
        ),
    )
    detections_reliability: str = field(
        default="reliable",
        metadata=_param(
            "qos.detections.reliability",
            "QoS reliability of the detections subscription: reliable, or best_effort for a "
            "best-effort detector",
            read_only=True,
            choices=RELIABILITIES,
        ),
    )
    detections_depth: int = field(
        default=10,
        metadata=_param(
            "qos.detections.depth",
            "QoS history depth of the detections subscription",
            read_only=True,
            range=(1, 1000),
        ),
    )
    overlay_max_rate_hz: float = field(
        default=2.0,
        metadata=_param(
            "overlay.max_rate_hz",
            "Most debug/attention_overlay images per second (0: every processed frame); the overlay "
            "is drawn only while someone subscribes",
            range=(0.0, 1000.0),
        ),
    )
    diagnostics_period_s: float = field(
        default=1.0,
        metadata=_param(
            "diagnostics.period_s",
            "Period of /diagnostics messages, seconds",
            read_only=True,
            range=(0.05, 60.0),
        ),
    )
    warmup: bool = field(
        default=True,
        metadata=_param(
            "warmup",
            "Run one refinement at start-up so that the first frame is not slow (GL context, weights "
            "upload, PyTorch kernels)",
            read_only=True,
        ),
    )
    tracking_enabled: bool = field(
        default=False,
        metadata=_param(
            "tracking.enabled",
            "Refine frames whose detection array is empty (and, with tracking.wait_s > 0, images whose "
            "detections do not arrive) from the last refined poses",
        ),
    )
    tracking_max_age_s: float = field(
        default=1.0,
        metadata=_param(
            "tracking.max_age_s",
            "A track older than this (image stamps, seconds) is dropped",
            range=(0.001, 3600.0),
        ),
    )
    tracking_min_score: float = field(
        default=0.3,
        metadata=_param(
            "tracking.min_score",
            "A refined pose scoring below this does not start or continue a track",
            range=(0.0, 1.0),
        ),
    )
    tracking_method: str = field(
        default="align",
        metadata=_param(
            "tracking.method",
            "How a tracked frame (no detections) is refined from the last poses: align, by the "
            "alignment alone from each track's pose, one start, no network (a few ms per object: "
            "follows the object at camera rate on a CPU); network, as a frame with detections (stages, "
            "and the alignment when align is true). A tracked pose whose alignment failed is not "
            "published as refined",
            choices=TRACKING_METHODS,
        ),
    )
    tracking_wait_s: float = field(
        default=0.0,
        metadata=_param(
            "tracking.wait_s",
            "With tracking: an image (with its camera_info) whose detections have not arrived this many "
            "seconds after it is refined from the tracks, for a detector slower than the camera; set it a "
            "little above the detector's latency. 0: only frames with an empty detection array are tracked",
            range=(0.0, 10.0),
        ),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            check_value(f.metadata["param"], getattr(self, f.name))

    @classmethod
    def from_parameters(cls, values: dict[str, Any]) -> NodeConfig:
        """Builds a config from {parameter name: value}; missing names keep their defaults.

        Raises:
            ParameterError: an unknown name, or a value that fails its check.
        """
        by_param = {f.metadata["param"]: f.name for f in fields(cls)}
        removed = removed_parameters_message(list(values))
        if removed:
            raise ParameterError(next(n for n in values if n in REMOVED_PARAMETERS), removed)
        unknown = sorted(set(values) - set(by_param))
        if unknown:
            raise ParameterError(
                unknown[0], f"unknown parameters {unknown}; known: {sorted(by_param)}"
            )
        return cls(**{by_param[name]: value for name, value in values.items()})

    def with_parameters(self, values: dict[str, Any]) -> NodeConfig:
        """A copy with some parameters changed (run-time `ros2 param set`); checked like `from_parameters`."""
        by_param = {f.metadata["param"]: f.name for f in fields(self)}
        return replace(self, **{by_param[name]: value for name, value in values.items()})

    def as_parameters(self) -> dict[str, Any]:
        """{parameter name: value}, e.g. for logging the resolved configuration."""
        return {f.metadata["param"]: getattr(self, f.name) for f in fields(self)}


def removed_parameters_message(names: list[str]) -> str | None:
    """What to tell a user who set parameters that were removed (REMOVED_PARAMETERS), naming each and what
    replaces it; None when `names` holds none of them."""
    removed = sorted(set(names) & set(REMOVED_PARAMETERS))
    if not removed:
        return None
    reasons = "; ".join(f"{name!r}: {REMOVED_PARAMETERS[name]}" for name in removed)
    return (
        f"removed parameters {removed} (the depth search and the region fit are gone, replaced by the "
        f"region-based alignment; CHANGELOG.md): {reasons}. Delete them from your parameters"
    )


def ignored_parameters(names: Iterable[str]) -> list[str]:
    """Warnings for the given parameter names (YAML, -p) that are not the node's: removed ones, naming what
    replaced each, then unknown ones (typos?) with the known names; rclpy's own are fine. [] when none."""
    known = set(parameter_fields())
    other = sorted(n for n in names if n not in known and not n.startswith(ROS_OWN_PARAMETERS))
    removed = removed_parameters_message(other)
    unknown = [n for n in other if n not in REMOVED_PARAMETERS]
    warnings = [f"ignoring {removed}"] if removed else []
    if unknown:
        warnings.append(f"ignoring unknown parameters {unknown} (typos?); known: {sorted(known)}")
    return warnings


def parameter_fields() -> dict[str, Any]:
    """{parameter name: dataclass field} in declaration order."""
    return {f.metadata["param"]: f for f in fields(NodeConfig)}


def check_value(name: str, value: Any) -> None:
    """Checks one parameter value against its type, range, choices and custom rule.

    Raises:
        ParameterError: naming the parameter, the value and what was expected.
    """
    spec = parameter_fields().get(name)
    if spec is None:
        raise ParameterError(name, f"unknown parameter {name!r}")
    meta = spec.metadata
    expected = type(spec.default)
    ok_type = isinstance(value, expected) and not (
        expected is not bool and isinstance(value, bool)
    )
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok_type = (
            True  # a whole number is a fine double in Python; ROS YAML needs 1.0 (see node.py)
        )
    if not ok_type:
        raise ParameterError(
            name,
            f"parameter {name!r} must be a {expected.__name__}, got {value!r} ({type(value).__name__})",
        )
    if expected is float and not math.isfinite(value):
        raise ParameterError(name, f"parameter {name!r} must be a finite number, got {value!r}")
    if meta["range"] is not None:
        low, high = meta["range"]
        if not low <= value <= high:
            raise ParameterError(
                name, f"parameter {name!r} must be in [{low}, {high}], got {value!r}"
            )
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ParameterError(
            name, f"parameter {name!r} must be one of {meta['choices']}, got {value!r}"
        )
    if meta["check"] is not None:
        reason = meta["check"](value)
        if reason:
            raise ParameterError(name, f"parameter {name!r} {reason}, got {value!r}")


def declare_parameters(node: Any) -> NodeConfig:
    """Declares every NodeConfig field as a ROS parameter on `node` and returns the resulting config.

    The on-set validator is registered first, so overrides from YAML or `-p name:=value` are checked while
    they are declared (rclpy runs on-set callbacks at declaration).

    Raises:
        ParameterError: a value of the wrong type, out of range, or failing its check; names the
            parameter and the value.
    """
    from rcl_interfaces.msg import (
        FloatingPointRange,
        IntegerRange,
        ParameterDescriptor,
        SetParametersResult,
    )
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    def validate(parameters: list) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name not in parameter_fields():
                continue  # use_sim_time, qos_overrides.*: rclpy's own
            try:
                check_value(parameter.name, parameter.value)
            except ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(validate)
    values = {}
    for name, spec in parameter_fields().items():
        meta = spec.metadata
        descriptor = ParameterDescriptor(
            name=name, description=meta["description"], read_only=meta["read_only"]
        )
        if meta["choices"]:
            descriptor.additional_constraints = f"one of {', '.join(meta['choices'])}"
        if meta["range"] is not None:
            low, high = meta["range"]
            if isinstance(spec.default, int) and not isinstance(spec.default, bool):
                descriptor.integer_range = [
                    IntegerRange(from_value=int(low), to_value=int(high), step=1)
                ]
            else:
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)
                ]
        try:
            values[name] = node.declare_parameter(name, spec.default, descriptor).value
        except InvalidParameterTypeException as exc:
            override = _override_value(node, name)
            hint = " (write a decimal point, e.g. 1.0)" if isinstance(spec.default, float) else ""
            raise ParameterError(
                name,
                f"parameter {name!r} must be a {type(spec.default).__name__}, got {override!r} "
                f"({type(override).__name__}){hint}",
            ) from exc
        except InvalidParameterValueException as exc:
            # Our validator's reason already names parameter and value; a range failure in rclpy's descriptor
            # check says 'out of range. Min: .., Max: .., value: ..'.
            raise ParameterError(
                name, _value_error_message(name, _override_value(node, name), exc)
            ) from exc
    return NodeConfig.from_parameters(values)


def _override_value(node: Any, name: str) -> Any:
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps YAML / -p values here
    parameter = overrides.get(name)
    return None if parameter is None else parameter.value


def _value_error_message(name: str, value: Any, exc: Exception) -> str:
    try:
        check_value(name, value)
    except ParameterError as ours:
        return str(ours)
    return f"parameter {name!r} rejected value {value!r}: {exc}"

"""RViz markers of the refinement node (`debug/markers`, visualization_msgs/MarkerArray): each refined object
as its mesh at the refined pose (cyan), its coarse pose as a translucent amber copy, and a label.

The meshes are MESH_RESOURCE markers that point at the object table's mesh files (a `file://` URI, scaled by
the table's units), so a message stays a few hundred bytes whatever the mesh size; RViz loads each file once.
RViz must run where those files are (the same machine or the same install). RViz's mesh loader ignores
per-vertex colours, hence the flat colours, the same as in the attention overlay. Each MarkerArray starts with
a DELETEALL marker: objects no longer refined disappear instead of lingering.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from attn6d_ros.ros import codec
from attn6d_ros.ros.frame_jobs import Job
from attn6d_ros.ros.refiner_setup import MarkerMesh

REFINED_RGBA = (0.1, 0.85, 1.0, 0.9)  # cyan, as the refined model in the attention overlay
COARSE_RGBA = (1.0, 0.7, 0.1, 0.35)  # amber, as the coarse outline
LABEL_RGBA = (1.0, 1.0, 1.0, 1.0)
LABEL_HEIGHT_M = 0.02


@dataclass(frozen=True)
class MarkerItem:
    """One object of a frame.

    Attributes:
        label: text shown above it (instance id and score).
        mesh: the mesh file.
        scale: metres per mesh unit (the object table's units).
        diameter_m: object diameter, metres (places the label above the object).
        T: (4, 4) refined T_cam_obj, metres.
        T_coarse: (4, 4) coarse T_cam_obj, or None.
    """

    label: str
    mesh: Path
    scale: float
    diameter_m: float
    T: np.ndarray
    T_coarse: np.ndarray | None = None


def job_items(jobs: list[Job], meshes: dict[str, MarkerMesh]) -> list[MarkerItem]:
    """One MarkerItem per published job (frame_jobs.run_frame): label with score, refined and coarse pose."""
    items = []
    for job in jobs:
        if not job.published:
            continue
        mesh = meshes[job.class_id]
        tracked = " (tracked)" if job.tracked else ""
        items.append(
            MarkerItem(
                label=f"{job.instance_id} {job.result.score:.2f}{tracked}",
                mesh=mesh.mesh,
                scale=mesh.scale,
                diameter_m=mesh.diameter_m,
                T=job.result.T,
                T_coarse=job.T_init,
            )
        )
    return items


def marker_array(header: object, items: list[MarkerItem]) -> MarkerArray:
    """DELETEALL, then per item: namespace "refined" (mesh), "coarse" (mesh, if T_coarse), "labels" (text);
    marker ids are the item's index. Every marker carries `header` (the image's stamp and frame)."""
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for index, item in enumerate(items):
        markers.append(_mesh(header, "refined", index, item, item.T, REFINED_RGBA))
        if item.T_coarse is not None:
            markers.append(_mesh(header, "coarse", index, item, item.T_coarse, COARSE_RGBA))
        label = Marker(header=header, ns="labels", id=index, type=Marker.TEXT_VIEW_FACING)
        label.action = Marker.ADD
        above = item.T[:3, 3] - np.array([0.0, 0.6 * item.diameter_m, 0.0])  # camera -y is up
        label.pose.position.x, label.pose.position.y, label.pose.position.z = (
            float(v) for v in above
        )
        label.pose.orientation.w = 1.0
        label.scale.z = LABEL_HEIGHT_M
        label.color = _color(LABEL_RGBA)
        label.text = item.label
        markers.append(label)
    return MarkerArray(markers=markers)


def _mesh(
    header: object,
    namespace: str,
    marker_id: int,
    item: MarkerItem,
    T: np.ndarray,
    rgba: tuple[float, float, float, float],
) -> Marker:
    marker = Marker(header=header, ns=namespace, id=marker_id, type=Marker.MESH_RESOURCE)
    marker.action = Marker.ADD
    marker.pose = codec.pose_msg(codec.rclpy_types(), T)
    marker.scale.x = marker.scale.y = marker.scale.z = float(item.scale)
    marker.color = _color(rgba)
    marker.mesh_resource = item.mesh.resolve().as_uri()
    marker.mesh_use_embedded_materials = False
    return marker


def _color(rgba: tuple[float, float, float, float]) -> ColorRGBA:
    return ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])

"""Region-based 6-DoF alignment of one object pose to one image: regularised Newton steps on the contour
posteriors of the correspondence lines, coarse to fine (RBGT ACCV 2020, SRT3D IJCV 2022, ICG CVPR 2022 by
Stoiber et al.; written from the papers' descriptions, not from their code).

How, for a pose ``T_cam_obj``:

1. Colours: foreground / background histograms from the pixels just inside and outside the pose's projected
   contour (histograms.py). At every later correspondence iteration they move a share ``colour_update``
   towards those learned at the current pose (the poses we start from are less exact than a tracker's
   previous frame, so the first histograms are blurred by the error; ours).
2. For each scale of ``scales`` (pixels per line segment, coarse to fine): take the template view nearest to
   the current camera direction, project its contour points and normals (templates.py), and find along a
   line through every point the posterior of the true contour's position (lines.py: mean mu, variance).
3. Newton steps (``newton_steps`` per scale) on the Gaussian approximation of the log posterior,
   sum_i w_i (d_i(theta) - mu_i)^2 / (2 sigma_i^2), where d_i is the line coordinate of contour point i's
   projection and sigma_i^2 the larger of the line's variance and ``sigma_px`` of the scale squared (the
   global uncertainty of a coarse scale). The six parameters theta are a rotation vector about the object's
   origin in camera axes and a translation in the camera frame; the step solves (H + Lambda) theta = g with
   Tikhonov regularisation Lambda = diag(``tikhonov_rotation`` x3, ``tikhonov_translation`` x3).

Energy: minus the mean log posterior of the contour at the pose's own place along lines of the finest
scale, with the histograms of the starting pose (lower: the image supports the pose's contour better).

Starts (``start_turn_deg`` > 0): the alignment also runs from the pose turned by +- that angle about each
camera axis through the object's origin; every start runs ``start_iterations`` correspondence iterations,
and only the one with the lowest energy goes on to the end (ours).

Bad inputs never raise: an object behind the camera, outside the image, or with too few usable lines gives
an AlignResult with ``error`` set and the input pose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from attn6d_ros.align.histograms import CodeImage, ColourModel, learn_colour_model
from attn6d_ros.align.lines import Contour, LineFit, colour_samples, fit_lines, project_contour
from attn6d_ros.align.templates import TemplateConfig, ViewTemplates
from attn6d_ros.geometry import check_intrinsics, check_pose


@dataclass(frozen=True)
class AlignConfig:
    """Settings of the region-based alignment (module docstring). Defaults follow the papers where they
    give one (RBGT / SRT3D / ICG) and were chosen on the seed-77 synthetic scenes otherwise.

    Attributes:
        templates: how the viewpoint templates are built.
        scales: pixels per line segment, one per correspondence iteration, coarse to fine.
        sigma_px: global uncertainty of each scale's contour positions, pixels (as many as scales).
        newton_steps: Newton steps per correspondence iteration.
        search_segments: the contour is looked for this many segments either side of the line's centre.
        window_segments: segments either side of a placement that the step functions explain.
        step_amplitude: a of the smoothed step function (0.5: pixels labelled with certainty).
        step_slope: b of the smoothed step function, segments.
        tikhonov_rotation: Lambda of the rotation parameters, 1 / rad^2.
        tikhonov_translation: Lambda of the translation parameters, 1 / m^2.
        colour_bins: colour histogram bins per channel (a power of two).
        colour_uniform_share: weight of the uniform distribution mixed into each histogram.
        colour_skip_px: pixels next to the contour left out of the first histograms (either side).
        colour_length_px: pixels either side of the contour learned from (at most; cut at the runs).
        colour_update: share by which the histograms move, at every correspondence iteration after the
            first, towards those learned at the current pose (0: learned once, at the start).
        colour_update_skip_px: colour_skip_px of those later histograms.
        min_run_segments: lines whose template runs are shorter than this many segments are dropped.
        min_lines: fewer usable lines than this: error.
        start_turn_deg: 0: one start; else six more, the pose turned by +- this about each camera axis.
        start_iterations: with extra starts, every start runs this many correspondence iterations; then
            only the one with the lowest energy goes on (>= len(scales): all run to the end).
    """

    templates: TemplateConfig = field(default_factory=TemplateConfig)
    scales: tuple[int, ...] = (
        6,
        4,
        2,
        1,
        1,
        1,
    )  # SRT3D / ICG: 6, 4, 2, 1; two more fine ones (ours)
    sigma_px: tuple[float, ...] = (15.0, 5.0, 3.5, 1.5, 1.5, 1.5)  # ICG's standard deviations
    newton_steps: int = 2  # RBGT / ICG
    search_segments: int = 5  # ours: +-30 px at the coarsest scale
    window_segments: int = 4  # ours
    step_amplitude: float = 0.43  # ICG's function amplitude
    step_slope: float = 0.5  # ICG's function slope
    tikhonov_rotation: float = 1000.0  # ICG
    tikhonov_translation: float = 30000.0  # ICG (3000: 90 % against 94 % on seed 77)
    colour_bins: int = 8  # ours (16, as ICG: 92 % against 94 % on seed 77)
    colour_uniform_share: float = 0.05  # ours: no colour impossible
    colour_skip_px: float = 1.0  # ours
    colour_length_px: float = 20.0  # ICG's max considered line length
    colour_update: float = 0.5  # ours (ICG learns at 0.2 per frame while tracking)
    colour_update_skip_px: float = 1.0  # ours
    min_run_segments: float = 3.0  # ICG's min continuous distance
    min_lines: int = 20  # ours: a tenth of the 200 contour points
    start_turn_deg: float = 0.0  # one start: the network's pose
    start_iterations: int = 2  # ours: the coarsest two scales decide between starts

    def __post_init__(self) -> None:
        if not self.scales or len(self.scales) != len(self.sigma_px):
            raise ValueError(
                f"AlignConfig.scales and sigma_px must be non-empty and of equal length, got "
                f"{self.scales!r} and {self.sigma_px!r}"
            )
        for s in self.scales:
            if not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= 32:
                raise ValueError(
                    f"AlignConfig.scales must be integers in [1, 32], got {self.scales!r}"
                )
        if not all(0.0 < x <= 100.0 for x in self.sigma_px):
            raise ValueError(f"AlignConfig.sigma_px must be in (0, 100] px, got {self.sigma_px!r}")
        for name, low, high in (("newton_steps", 1, 20), ("search_segments", 1, 32),
                                ("window_segments", 1, 32), ("min_lines", 1, 10000),
                                ("start_iterations", 1, 100)):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(
                    f"AlignConfig.{name} must be an integer in [{low}, {high}], got {value!r}"
                )
        if self.colour_bins not in (2, 4, 8, 16, 32, 64):
            raise ValueError(
                f"AlignConfig.colour_bins must be 2, 4, 8, 16, 32 or 64, got {self.colour_bins!r}"
            )
        for name, low, high in (("step_amplitude", 0.0, 0.5), ("step_slope", 0.0, 10.0),
                                ("colour_uniform_share", 0.0, 1.0)):  # fmt: skip
            value = getattr(self, name)
            if not low < value <= high:
                raise ValueError(f"AlignConfig.{name} must be in ({low}, {high}], got {value!r}")
        if not 0.0 <= self.colour_update <= 1.0:
            raise ValueError(
                f"AlignConfig.colour_update must be in [0, 1], got {self.colour_update!r}"
            )
        for name in ("tikhonov_rotation", "tikhonov_translation", "colour_skip_px",
                     "colour_update_skip_px", "min_run_segments"):  # fmt: skip
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"AlignConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.colour_length_px > max(self.colour_skip_px, self.colour_update_skip_px):
            raise ValueError(
                f"AlignConfig.colour_length_px must exceed colour_skip_px and colour_update_skip_px "
                f"({self.colour_skip_px}, {self.colour_update_skip_px}), got {self.colour_length_px!r}"
            )
        if not 0.0 <= self.start_turn_deg <= 90.0:
            raise ValueError(
                f"AlignConfig.start_turn_deg must be in [0, 90], got {self.start_turn_deg!r}"
            )


@dataclass(frozen=True)
class AlignResult:
    """The aligned pose.

    Attributes:
        T: (4, 4) the aligned pose (the input pose when ``error`` is set).
        energy: minus the mean log posterior of the contour at the final pose's own place along the finest
            lines (lower: the image supports the pose's contour better); inf when ``error`` is set.
        valid_lines: lines used by the last Newton step.
        starts: starts run (1, or 7 with start_turn_deg).
        error: None, or why the pose could not be aligned.
        fit_energy: the final pose's outline_energy (colours learned at that pose): how well its outline
            separates the image's colours, comparable across images (the guard's measure); inf when
            ``error`` is set.
    """

    T: np.ndarray
    energy: float
    valid_lines: int
    starts: int = 1
    error: str | None = None
    fit_energy: float = float("inf")

    @property
    def ok(self) -> bool:
        return self.error is None


def align_pose(
    image: np.ndarray,
    K: np.ndarray,
    T_cam_obj: np.ndarray,
    templates: ViewTemplates,
    cfg: AlignConfig | None = None,
) -> AlignResult:
    """Aligns ``T_cam_obj`` to the object's region in ``image`` (module docstring).

    Args:
        image: (H, W, 3) uint8 RGB image.
        K: (3, 3) intrinsics of the image.
        T_cam_obj: (4, 4) the starting pose, metres, camera optical frame.
        templates: the object's viewpoint templates (load_or_build_templates).
        cfg: settings (default AlignConfig()).

    Returns:
        An AlignResult; on bad input (pose behind the camera, object outside the image, too few lines)
        one with ``error`` set and the input pose, never an exception.

    Raises:
        ValueError: ``image`` is not an HxWx3 uint8 array, or ``K`` or ``T_cam_obj`` is malformed.
    """
    cfg = cfg or AlignConfig()
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image must be an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}"
        )
    K = check_intrinsics(K)
    T0 = check_pose(T_cam_obj)

    def failed(error: str) -> AlignResult:
        return AlignResult(T=T0.copy(), energy=float("inf"), valid_lines=0, error=error)

    contour = project_contour(templates, T0, K)
    if isinstance(contour, str):
        return failed(contour)
    codes = CodeImage(image, cfg.colour_bins)
    colours = _learn_colours(codes, contour, cfg)
    if colours is None:
        return failed(_outside_message(contour, (image.shape[1], image.shape[0])))
    starts = [T0, *_turned(T0, cfg.start_turn_deg)]
    runs = [_Run(T=T.copy(), colours=colours) for T in starts]
    n_iterations = len(cfg.scales)
    if len(runs) > 1 and cfg.start_iterations < n_iterations:
        # Every start for the first iterations; then only the one the image supports best goes on.
        for run in runs:
            _iterate(codes, K, run, templates, cfg, range(cfg.start_iterations))
        _score(codes, K, runs, templates, colours, cfg)
        runs = [min(runs, key=lambda r: r.energy)]
        first = cfg.start_iterations
    else:
        first = 0
    for run in runs:
        _iterate(codes, K, run, templates, cfg, range(first, n_iterations))
    _score(codes, K, runs, templates, colours, cfg)
    aligned = [r for r in runs if r.error is None]
    if not aligned:
        return failed(runs[0].error)
    best = min(aligned, key=lambda r: r.energy)
    return AlignResult(T=best.T, energy=best.energy, valid_lines=best.lines, starts=len(starts),
                       fit_energy=outline_energy(codes, K, best.T, templates, cfg))  # fmt: skip


def outline_energy(
    image: np.ndarray | CodeImage,
    K: np.ndarray,
    T_cam_obj: np.ndarray,
    templates: ViewTemplates,
    cfg: AlignConfig | None = None,
) -> float:
    """How badly the outline of pose ``T_cam_obj`` fits ``image``: minus the mean log posterior of the
    contour lying where the pose puts it, along the finest scale's lines, with colour histograms learned
    at this pose itself (so that poses and images compare; about 1 where the outline separates the
    colours well, above 2 where it does not, on the demo object). inf when the pose has too few usable
    lines (outside the image, behind the camera)."""
    cfg = cfg or AlignConfig()
    codes = (
        image if isinstance(image, CodeImage) else CodeImage(np.asarray(image), cfg.colour_bins)
    )
    contour = project_contour(templates, np.asarray(T_cam_obj, dtype=np.float64), K)
    if isinstance(contour, str):
        return float("inf")
    colours = _learn_colours(codes, contour, cfg)
    if colours is None:
        return float("inf")
    fit = _fit(codes, contour, colours, cfg.scales[-1], cfg)
    if len(fit.mean_px) < cfg.min_lines:
        return float("inf")
    return -float(np.average(fit.log_posterior_centre, weights=fit.weight + 1e-9))


@dataclass
class _Run:
    """One start's state: its pose, its colour model, the lines of its last step, and its energy."""

    T: np.ndarray
    colours: ColourModel
    lines: int = 0
    energy: float = float("inf")
    error: str | None = None


def _iterate(
    image: CodeImage,
    K: np.ndarray,
    run: _Run,
    templates: ViewTemplates,
    cfg: AlignConfig,
    iterations: range,
) -> None:
    """Correspondence iterations ``iterations`` (indices into cfg.scales) of steps 2-3 of the module
    docstring, each with cfg.newton_steps Newton steps, on ``run`` in place (stops at an error)."""
    for k in iterations:
        if run.error is not None:
            return
        contour = project_contour(templates, run.T, K)
        if isinstance(contour, str):
            run.error = contour
            return
        if k > 0 and cfg.colour_update > 0.0:
            learned = _learn_colours(image, contour, cfg, cfg.colour_update_skip_px)
            run.colours = run.colours.blended(learned, cfg.colour_update)
        fit = _fit(image, contour, run.colours, cfg.scales[k], cfg)
        run.lines = len(fit.mean_px)
        if run.lines < cfg.min_lines:
            run.error = _too_few(run.lines, cfg, image.image_size, contour)
            return
        for _ in range(cfg.newton_steps):
            step = _newton_step(fit, run.T, K, cfg.sigma_px[k], cfg)
            if step is None:
                run.error = "the Newton step left the object behind the camera"
                return
            run.T = _apply(run.T, step)


def _score(
    image: CodeImage,
    K: np.ndarray,
    runs: list[_Run],
    templates: ViewTemplates,
    colours: ColourModel,
    cfg: AlignConfig,
) -> None:
    """Sets each run's energy: minus the mean log posterior of its contour at its own place along lines
    of the finest scale, with the colour model ``colours`` (shared, so that energies compare)."""
    for run in runs:
        if run.error is not None:
            continue
        contour = project_contour(templates, run.T, K)
        if isinstance(contour, str):
            run.error = contour
            continue
        fit = _fit(image, contour, colours, cfg.scales[-1], cfg)
        if len(fit.mean_px) < cfg.min_lines:
            run.error = _too_few(len(fit.mean_px), cfg, image.image_size, contour)
            continue
        run.energy = -float(np.average(fit.log_posterior_centre, weights=fit.weight + 1e-9))


def _fit(
    image: CodeImage, contour: Contour, colours: ColourModel, scale: int, cfg: AlignConfig
) -> LineFit:
    return fit_lines(image, contour, colours, scale=scale, search_segments=cfg.search_segments,
                     window_segments=cfg.window_segments, amplitude=cfg.step_amplitude,
                     slope=cfg.step_slope, min_run_segments=cfg.min_run_segments)  # fmt: skip


def _learn_colours(
    image: CodeImage, contour: Contour, cfg: AlignConfig, skip_px: float | None = None
) -> ColourModel | None:
    skip = cfg.colour_skip_px if skip_px is None else skip_px
    fg, bg = colour_samples(image, contour, skip, cfg.colour_length_px)
    return learn_colour_model(fg.ravel(), bg.ravel(), cfg.colour_bins, cfg.colour_uniform_share)


def _newton_step(
    fit: LineFit, T: np.ndarray, K: np.ndarray, sigma_px: float, cfg: AlignConfig
) -> np.ndarray | None:
    """theta (6,): rotation vector (camera axes, about the object's origin) and translation (metres) of
    one regularised Newton step on the lines of ``fit``; None when a point falls behind the camera."""
    contour = fit.contour
    points_obj = contour.points_obj[fit.keep]
    centres = contour.centres[fit.keep]
    normals = contour.normals[fit.keep]
    rotated = points_obj @ T[:3, :3].T  # R p: the points about the object's origin, camera axes
    X = rotated + T[:3, 3]
    x, y, z = X[:, 0], X[:, 1], X[:, 2]
    if not np.all(z > 1e-3):
        return None
    fx, fy = K[0, 0], K[1, 1]
    uv = np.column_stack([fx * x / z + K[0, 2], fy * y / z + K[1, 2]])
    # Where each point projects now, in its line's coordinate.
    d = np.einsum("ij,ij->i", normals, uv - centres)
    # n^T d(pi)/dX, then the chain through X = exp(w) R p + t + v: dX/dw = -[R p]_x, dX/dv = I.
    g = np.column_stack([normals[:, 0] * fx / z, normals[:, 1] * fy / z,
                         -(normals[:, 0] * fx * x + normals[:, 1] * fy * y) / z**2])  # fmt: skip
    a, b = rotated, g
    cross = np.column_stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                             a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]])  # fmt: skip
    J = np.hstack([cross, g])  # (L, 6): d(line coordinate) / d(rotation vector, translation)
    w = fit.weight / np.maximum(fit.variance_px2, sigma_px**2)
    H = (J * w[:, None]).T @ J
    b = J.T @ (w * (fit.mean_px - d))
    regulariser = np.diag([cfg.tikhonov_rotation] * 3 + [cfg.tikhonov_translation] * 3)
    return np.linalg.solve(H + regulariser, b)


def _apply(T: np.ndarray, theta: np.ndarray) -> np.ndarray:
    moved = T.copy()
    moved[:3, :3] = _rotation(theta[:3]) @ T[:3, :3]
    moved[:3, 3] = T[:3, 3] + theta[3:]
    return moved


def _rotation(rotvec: np.ndarray) -> np.ndarray:
    """3x3 rotation of a rotation vector (Rodrigues' formula; scipy's is slower for one small matrix)."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    x, y, z = rotvec / angle
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def _turned(T: np.ndarray, angle_deg: float) -> list[np.ndarray]:
    """``T`` turned by +- ``angle_deg`` about the camera's x, y and z axes through the object's origin."""
    if angle_deg == 0.0:
        return []
    turns = [sign * np.radians(angle_deg) * axis for axis in np.eye(3) for sign in (1.0, -1.0)]
    return [_apply(T, np.r_[turn, 0.0, 0.0, 0.0]) for turn in turns]


def _outside_message(contour: Contour, size: tuple[int, int]) -> str:
    W, H = size
    u, v = contour.centres[:, 0], contour.centres[:, 1]
    inside = np.mean((u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1))
    return (
        f"too few pixels to learn the object's colours: {inside:.0%} of its contour lies inside the "
        f"{W}x{H} image (contour u {u.min():.0f}..{u.max():.0f}, v {v.min():.0f}..{v.max():.0f} px)"
    )


def _too_few(lines: int, cfg: AlignConfig, size: tuple[int, int], contour: Contour) -> str:
    return (
        f"only {lines} usable correspondence lines (needs {cfg.min_lines}); "
        + _outside_message(contour, size).split(": ", 1)[1]
    )

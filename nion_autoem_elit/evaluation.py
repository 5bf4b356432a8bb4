"""Scoring found atoms against known columns (simulated frames).

A found column counts as a detection when it lies within a fraction (0.3 by
default) of the nearest-neighbour distance from a true column; pairs are
assigned one-to-one by the Hungarian method so a column cannot be claimed twice.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy
import numpy.typing
import scipy.optimize
import scipy.spatial

import nion_autoem_checks as _checks

_NDArray = numpy.typing.NDArray[typing.Any]


@dataclasses.dataclass(frozen=True)
class Matching:
    """One-to-one pairing of found and true columns.

    Attributes
    ----------
    found_index, true_index : (K,) ndarray of int
        Indices of matched pairs.
    found_count, true_count : int
        Number of found and true columns.
    """

    found_index: _NDArray
    true_index: _NDArray
    found_count: int
    true_count: int


def _positions(value: _NDArray, name: str) -> _NDArray:
    expected = "finite (row, col) positions of shape (N, 2)"
    positions = _checks.real_array(value, name, expected)
    if positions.size == 0:
        return positions.reshape(0, 2)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"{name} must be {expected}, got shape {positions.shape}")
    return positions


def _classes(value: _NDArray, name: str, count: int, what: str) -> _NDArray:
    classes = numpy.asarray(value).reshape(-1) if numpy.size(value) else numpy.zeros(0, dtype=int)
    if classes.shape != (count,):
        raise ValueError(f"{name} must have one class per {what} position ({count}), got {classes.size}")
    return classes


def match_columns(found: _NDArray, true: _NDArray, max_distance_px: float) -> Matching:
    """Pair found and true positions closer than ``max_distance_px``.

    Examples
    --------
    >>> m = match_columns(numpy.array([[0.0, 0.1]]), numpy.array([[0.0, 0.0], [5.0, 5.0]]), 1.0)
    >>> m.found_index.tolist(), m.true_index.tolist()
    ([0], [0])
    """
    found = _positions(found, "found")
    true = _positions(true, "true")
    max_distance_px = _checks.number(max_distance_px, "max_distance_px", "a finite distance >= 0 in pixels", lambda v: v >= 0)
    empty = numpy.zeros(0, dtype=int)
    if len(found) == 0 or len(true) == 0:
        return Matching(empty, empty, len(found), len(true))
    distances = scipy.spatial.distance.cdist(found, true)
    # Pairs beyond reach get a prohibitive cost so the assignment never uses them.
    cost = numpy.where(distances <= max_distance_px, distances, 1e6)
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    keep = distances[rows, cols] <= max_distance_px
    return Matching(rows[keep], cols[keep], len(found), len(true))


def score_frame(
    found_positions: _NDArray,
    found_classes: _NDArray,
    true_positions: _NDArray,
    true_classes: _NDArray,
    nearest_neighbour_px: float,
    class_names: typing.Sequence[str],
    *,
    frame_shape: tuple[int, int] | None = None,
    border_px: float = 0.0,
    match_fraction: float = 0.3,
) -> dict[str, typing.Any]:
    """Detection and classification scores for one frame.

    Parameters
    ----------
    frame_shape : tuple of int, optional
        Frame size, needed with ``border_px``.
    border_px : float
        Columns (true and found) closer than this to the frame edge are left
        out on both sides: half-visible columns are ambiguous by nature.
    match_fraction : float
        Matching radius as a fraction of ``nearest_neighbour_px``.

    Returns
    -------
    dict
        Counts ``tp``, ``fp``, ``fn``; ``f1``; ``rmse_px``; per class name the
        counts ``{name}_tp``, ``{name}_fp``, ``{name}_fn`` where a column is a
        true positive for its class only if it is matched and classified right.
    """
    found_positions = _positions(found_positions, "found_positions")
    true_positions = _positions(true_positions, "true_positions")
    found_classes = _classes(found_classes, "found_classes", len(found_positions), "found")
    true_classes = _classes(true_classes, "true_classes", len(true_positions), "true")
    nearest_neighbour_px = _checks.number(nearest_neighbour_px, "nearest_neighbour_px", "a positive finite distance in pixels", lambda v: v > 0)
    border_px = _checks.number(border_px, "border_px", "a finite distance >= 0 in pixels", lambda v: v >= 0)
    match_fraction = _checks.number(match_fraction, "match_fraction", "a positive finite fraction of the column spacing", lambda v: v > 0)
    if border_px > 0 and frame_shape is None:
        raise ValueError("frame_shape must be given as (rows, cols) when border_px > 0, got None")
    if border_px > 0 and frame_shape is not None:
        high = numpy.asarray(frame_shape, dtype=float) - 1.0 - border_px
        keep_true = ((true_positions >= border_px) & (true_positions <= high)).all(axis=1)
        keep_found = ((found_positions >= border_px) & (found_positions <= high)).all(axis=1)
        true_positions, true_classes = true_positions[keep_true], true_classes[keep_true]
        found_positions, found_classes = found_positions[keep_found], found_classes[keep_found]
    matching = match_columns(found_positions, true_positions, match_fraction * nearest_neighbour_px)
    tp = len(matching.found_index)
    fp = matching.found_count - tp
    fn = matching.true_count - tp
    scores: dict[str, typing.Any] = {"tp": tp, "fp": fp, "fn": fn}
    scores["f1"] = 2 * tp / max(2 * tp + fp + fn, 1)
    deltas = found_positions[matching.found_index] - true_positions[matching.true_index]
    scores["squared_error_sum"] = float((deltas**2).sum())
    scores["rmse_px"] = float(numpy.sqrt((deltas**2).sum(axis=1).mean())) if tp else float("nan")
    matched_found = found_classes[matching.found_index]
    matched_true = true_classes[matching.true_index]
    for k, name in enumerate(class_names):
        if k == 0:
            continue
        correct = int(((matched_found == k) & (matched_true == k)).sum())
        scores[f"{name}_tp"] = correct
        scores[f"{name}_fp"] = int((found_classes == k).sum()) - correct
        scores[f"{name}_fn"] = int((true_classes == k).sum()) - correct
    return scores


def summarise(frames: typing.Sequence[dict[str, typing.Any]], class_names: typing.Sequence[str]) -> dict[str, float]:
    """Pool per-frame scores into F1, RMSE and per-class precision and recall.

    Examples
    --------
    >>> s = summarise([{"tp": 9, "fp": 1, "fn": 0, "squared_error_sum": 0.9, "A_tp": 9, "A_fp": 1, "A_fn": 0}], ["bg", "A"])
    >>> round(s["f1"], 3), round(s["A_precision"], 2)
    (0.947, 0.9)
    """
    if not frames:
        raise ValueError("frames must hold the scores of at least one frame, got none")
    required = {"tp", "fp", "fn", "squared_error_sum"} | {f"{name}_{kind}" for name in list(class_names)[1:] for kind in ("tp", "fp", "fn")}
    for index, frame in enumerate(frames):
        missing = sorted(required - set(frame)) if isinstance(frame, typing.Mapping) else sorted(required)
        if missing:
            raise ValueError(f"frames[{index}] must be scores from score_frame with the keys {sorted(required)}, missing {missing}")
    total = {key: sum(float(f.get(key, 0)) for f in frames) for key in frames[0] if not isinstance(frames[0][key], str)}
    tp, fp, fn = total["tp"], total["fp"], total["fn"]
    summary = {
        "f1": 2 * tp / max(2 * tp + fp + fn, 1.0),
        "precision": tp / max(tp + fp, 1.0),
        "recall": tp / max(tp + fn, 1.0),
        "rmse_px": float(numpy.sqrt(total["squared_error_sum"] / max(tp, 1.0))),
    }
    for name in list(class_names)[1:]:
        ktp, kfp, kfn = total[f"{name}_tp"], total[f"{name}_fp"], total[f"{name}_fn"]
        summary[f"{name}_precision"] = ktp / max(ktp + kfp, 1.0)
        summary[f"{name}_recall"] = ktp / max(ktp + kfn, 1.0)
        summary[f"{name}_count"] = ktp + kfn
    return summary


class _FrameLike(typing.Protocol):
    """A frame with its ground truth; read-only, so frozen dataclasses (SyntheticFrame) qualify."""

    @property
    def image(self) -> _NDArray: ...

    @property
    def positions(self) -> _NDArray: ...

    @property
    def classes(self) -> _NDArray: ...

    @property
    def nearest_neighbour_px(self) -> float: ...


def evaluate_finder(
    find: typing.Callable[[_NDArray], tuple[_NDArray, _NDArray]],
    frames: typing.Sequence[_FrameLike],
    class_names: typing.Sequence[str],
    *,
    border_px: float = 4.0,
) -> dict[str, float]:
    """Pooled scores of an atom finder on simulated frames.

    Parameters
    ----------
    find : callable
        Maps a frame to ``(positions, classes)``; works for the ensemble and
        for any baseline alike.
    frames : sequence of SyntheticFrame
        Frames with known columns.
    class_names : sequence of str
        Class names, background first.
    border_px : float
        Edge margin left out of the scoring.

    Returns
    -------
    dict
        See :func:`summarise`.
    """
    if not callable(find):
        raise TypeError(f"find must be a callable image -> (positions, classes), got {type(find).__name__}")
    scores = []
    for frame in frames:
        positions, classes = find(frame.image)
        scores.append(
            score_frame(
                positions,
                classes,
                frame.positions,
                frame.classes,
                frame.nearest_neighbour_px,
                class_names,
                frame_shape=(int(frame.image.shape[0]), int(frame.image.shape[1])),
                border_px=border_px,
            )
        )
    return summarise(scores, class_names)

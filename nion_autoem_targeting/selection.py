"""Choosing targets from an atom table: by class, region, line and clicked points.

An atom table is ``positions_nm`` (N, 2) of (y, x) scan-field nm and
``classes`` (N,) of strings such as ``"Mo"``, ``"S2"`` (two S atoms in the
column), ``"S1"`` (one left) or ``"vacancy"``.  The helpers return boolean masks
or integer indices into that table.

This module is pure numpy/scipy; it knows nothing of Swift.
"""

from __future__ import annotations

import math
import typing

import numpy
import numpy.typing
import scipy.spatial

_NDArray = numpy.typing.NDArray[typing.Any]

__all__ = ["in_region", "near_line", "nearest_to", "select_targets"]


def _positions(positions_nm: numpy.typing.ArrayLike, name: str = "positions_nm") -> _NDArray:
    p = numpy.asarray(positions_nm, dtype=float)
    if p.size == 0:
        return numpy.zeros((0, 2))
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) of (y, x) in nm, got shape {p.shape}")
    if not numpy.all(numpy.isfinite(p)):
        raise ValueError(f"{name} must be finite; it contains NaN or infinity")
    return p


def _pair(value: numpy.typing.ArrayLike, name: str) -> _NDArray:
    v = numpy.asarray(value, dtype=float)
    if v.shape != (2,) or not numpy.all(numpy.isfinite(v)):
        raise ValueError(f"{name} must be a finite (y, x) pair in nm, got {value!r}")
    return v


def _length(value: float, name: str, allow_zero: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite length in nm, got {value!r}")
    return v


def in_region(positions_nm: numpy.typing.ArrayLike, center_nm: numpy.typing.ArrayLike, size_nm: float | numpy.typing.ArrayLike) -> _NDArray:
    """Which atoms lie in an axis-aligned rectangle (edges included).

    Parameters
    ----------
    positions_nm : array_like, shape (N, 2)
        Atom positions (y, x) in nm.
    center_nm : array_like, shape (2,)
        Rectangle centre (y, x) in nm.
    size_nm : float or array_like, shape (2,)
        Rectangle side, or (height, width), in nm.

    Returns
    -------
    mask : ndarray of bool, shape (N,)

    Examples
    --------
    >>> in_region([[0, 0], [0.4, 0.0], [0.6, 0.0]], center_nm=(0, 0), size_nm=(1.0, 0.5)).tolist()
    [True, True, False]
    """
    p = _positions(positions_nm)
    c = _pair(center_nm, "center_nm")
    expected = "a positive side or (height, width) in nm"
    raw = numpy.asarray(size_nm)
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"size_nm must be {expected}, got {size_nm!r}")
    s = numpy.broadcast_to(raw.astype(float), (2,)) if raw.ndim == 0 else raw.astype(float)
    if s.shape != (2,) or not numpy.all(numpy.isfinite(s)) or numpy.any(s <= 0):
        raise ValueError(f"size_nm must be a positive side or (height, width) in nm, got {size_nm!r}")
    return typing.cast(_NDArray, numpy.all(numpy.abs(p - c) <= s / 2, axis=1))


def near_line(positions_nm: numpy.typing.ArrayLike, start_nm: numpy.typing.ArrayLike, end_nm: numpy.typing.ArrayLike, width_nm: float) -> _NDArray:
    """Which atoms lie in a strip of total width ``width_nm`` along a segment.

    Parameters
    ----------
    positions_nm : array_like, shape (N, 2)
        Atom positions (y, x) in nm.
    start_nm, end_nm : array_like, shape (2,)
        Ends of the segment (y, x) in nm (e.g. a line graphic drawn by the user).
    width_nm : float
        Full width of the strip: an atom is inside if its perpendicular distance
        to the segment is at most ``width_nm / 2`` and its projection falls
        between the ends.

    Returns
    -------
    mask : ndarray of bool, shape (N,)

    Examples
    --------
    >>> near_line([[0.05, 0.5], [0.2, 0.5], [0.0, 1.2]], (0, 0), (0, 1), width_nm=0.2).tolist()
    [True, False, False]
    """
    p = _positions(positions_nm)
    a = _pair(start_nm, "start_nm")
    b = _pair(end_nm, "end_nm")
    half = _length(width_nm, "width_nm") / 2
    direction = b - a
    length = float(numpy.hypot(*direction))
    if length == 0:
        raise ValueError("start_nm and end_nm must differ; for atoms around one point use nearest_to or in_region")
    u = direction / length
    rel = p - a
    along = rel @ u
    across = rel @ numpy.array([-u[1], u[0]])
    return typing.cast(_NDArray, (along >= 0) & (along <= length) & (numpy.abs(across) <= half))


def nearest_to(positions_nm: numpy.typing.ArrayLike, points_nm: numpy.typing.ArrayLike, max_distance_nm: float) -> _NDArray:
    """The atom nearest to each point, for points with an atom close enough.

    Parameters
    ----------
    positions_nm : array_like, shape (N, 2)
        Atom positions (y, x) in nm.
    points_nm : array_like, shape (M, 2)
        Points (y, x) in nm, e.g. point graphics the user placed on atoms.
    max_distance_nm : float
        Points with no atom within this distance are dropped.

    Returns
    -------
    indices : ndarray of int, shape (K,), K <= M
        Indices into ``positions_nm`` in the order of the points; an atom
        picked by several points appears once, at its first point.

    Examples
    --------
    >>> atoms = [[0, 0], [0, 0.3], [0.3, 0]]
    >>> nearest_to(atoms, [[0.29, 0.01], [1.0, 1.0], [0.01, 0.0], [0.0, 0.02]], max_distance_nm=0.05).tolist()
    [2, 0]
    """
    p = _positions(positions_nm)
    q = _positions(points_nm, "points_nm")
    limit = _length(max_distance_nm, "max_distance_nm", allow_zero=True)
    if len(p) == 0 or len(q) == 0:
        return numpy.zeros(0, dtype=numpy.intp)
    distance, index = scipy.spatial.cKDTree(p).query(q, k=1)
    index = numpy.asarray(index, dtype=numpy.intp)[numpy.asarray(distance) <= limit]
    _, first = numpy.unique(index, return_index=True)
    return typing.cast(_NDArray, index[numpy.sort(first)])


def select_targets(
    positions_nm: numpy.typing.ArrayLike,
    classes: numpy.typing.ArrayLike,
    *,
    kind: str | typing.Sequence[str] | None = "S2",
    region: tuple[numpy.typing.ArrayLike, float | numpy.typing.ArrayLike] | None = None,
    line: tuple[numpy.typing.ArrayLike, numpy.typing.ArrayLike, float] | None = None,
    points: numpy.typing.ArrayLike | None = None,
    max_distance_nm: float = 0.1,
) -> _NDArray:
    """Indices of the atoms to target, combining class, region, line and points.

    Parameters
    ----------
    positions_nm : array_like, shape (N, 2)
        Atom positions (y, x) in nm.
    classes : array_like of str, shape (N,)
        Class of each atom.
    kind : str or sequence of str or None
        Class(es) to target; None for every class.
    region : (center_nm, size_nm), optional
        Keep only atoms in this rectangle (see :func:`in_region`).
    line : (start_nm, end_nm, width_nm), optional
        Keep only atoms in this strip (see :func:`near_line`).
    points : array_like, shape (M, 2), optional
        Clicked points: keep only the eligible atom nearest to each point, if
        within ``max_distance_nm`` (see :func:`nearest_to`).
    max_distance_nm : float
        Capture distance for ``points``.

    Returns
    -------
    indices : ndarray of int
        Indices into the table: in click order when ``points`` is given,
        otherwise ascending.

    Notes
    -----
    All given criteria must hold.  A clicked point snaps to the nearest atom
    that passes the class, region and line criteria, so a click slightly
    closer to a Mo column than to the intended S2 site still picks the S2 site
    if it lies within ``max_distance_nm``.

    Examples
    --------
    >>> positions = [[0, 0], [0, 0.18], [0, 0.32], [1, 1]]
    >>> classes = ["Mo", "S2", "S2", "S2"]
    >>> select_targets(positions, classes).tolist()
    [1, 2, 3]
    >>> select_targets(positions, classes, region=((0, 0), 1.0)).tolist()
    [1, 2]
    >>> select_targets(positions, classes, points=[[0, 0.05], [0, 0.3]], max_distance_nm=0.15).tolist()
    [1, 2]
    """
    p = _positions(positions_nm)
    c = numpy.asarray(classes).reshape(-1) if numpy.size(classes) else numpy.zeros(0, dtype=str)
    if len(c) != len(p):
        raise ValueError(f"classes must have one entry per atom: got {len(c)} classes for {len(p)} positions")
    if kind is None:
        mask = numpy.ones(len(p), dtype=bool)
    else:
        if not isinstance(kind, str) and not (isinstance(kind, (list, tuple, set, frozenset, numpy.ndarray)) and all(isinstance(k, str) for k in kind)):
            raise TypeError(f"kind must be a class name, a sequence of class names or None, got {kind!r}")
        kinds = [kind] if isinstance(kind, str) else [str(k) for k in kind]
        mask = numpy.isin(c.astype(str), kinds)
    if region is not None:
        if len(region) != 2:
            raise ValueError(f"region must be (center_nm, size_nm), got {region!r}")
        mask &= in_region(p, region[0], region[1])
    if line is not None:
        if len(line) != 3:
            raise ValueError(f"line must be (start_nm, end_nm, width_nm), got {line!r}")
        mask &= near_line(p, line[0], line[1], line[2])
    eligible = numpy.flatnonzero(mask)
    if points is None:
        return typing.cast(_NDArray, eligible.astype(numpy.intp))
    picked = nearest_to(p[eligible], points, max_distance_nm)
    return eligible[picked].astype(numpy.intp)

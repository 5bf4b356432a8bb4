"""A support set: named classes, each with the example tiles the user clicked.

It knows its tile size (pixels, and nm when the image was calibrated) and the
backbone it was made for, and saves to a folder (``support.json`` +
``support.npz``) so the same classes can be used on the next image or in the
next session.  A support set refuses tiles of another size, and
:meth:`SupportSet.check` says what is wrong before a classification would
quietly go wrong: a class without examples (an error) or one whose examples
are all the same tile (a warning: they count as one example).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import pathlib
import typing
import warnings

import numpy
import numpy.typing

from nion_autoem_fewshot.backbone import DEFAULT_BACKBONE
from nion_autoem_fewshot.tiles import TileGrid

_NDArray = numpy.typing.NDArray[typing.Any]

FORMAT_VERSION = 1
#: Tile sizes in nm closer than this (relative) are the same size.
NM_TOLERANCE = 0.02


class IdenticalExamplesWarning(UserWarning):
    """A class's examples are all the same tile: the classifier has one example of it, however many were added."""


class SupportSet:
    """Named classes of example tiles for few-shot classification.

    Parameters
    ----------
    tile_px : int or None
        Tile side in pixels; None takes it from the first tile added.
    tile_nm : float or None
        Tile side in nm, when the tiles came from a calibrated image.
    backbone : str
        Name of the backbone the set is meant for (saved with it).

    Examples
    --------
    >>> rng = numpy.random.default_rng(0)
    >>> support = SupportSet()
    >>> support.add("lattice", rng.normal(size=(32, 32)))
    >>> support.add("lattice", rng.normal(size=(32, 32)))
    >>> support.add("vacuum", numpy.zeros((32, 32)))
    >>> support.class_names, support.counts, support.tile_px
    (('lattice', 'vacuum'), {'lattice': 2, 'vacuum': 1}, 32)
    """

    def __init__(self, tile_px: int | None = None, *, tile_nm: float | None = None, backbone: str = DEFAULT_BACKBONE) -> None:
        if tile_px is not None and (isinstance(tile_px, bool) or not isinstance(tile_px, (int, numpy.integer)) or tile_px < 1):
            raise ValueError(f"tile_px must be a whole number of pixels >= 1 (or None to take it from the first tile), got {tile_px!r}")
        if tile_nm is not None and not (math.isfinite(tile_nm) and tile_nm > 0):
            raise ValueError(f"tile_nm must be a positive number of nm or None, got {tile_nm!r}")
        self.tile_px = None if tile_px is None else int(tile_px)
        self.tile_nm = None if tile_nm is None else float(tile_nm)
        self.backbone = backbone
        self.__examples: dict[str, list[_NDArray]] = {}
        #: Goes up with every change, so a classifier can keep the features of an unchanged set.
        self.revision = 0
        self.__fingerprint: tuple[int, str] = (-1, "")

    def __repr__(self) -> str:
        return f"SupportSet(tile_px={self.tile_px}, tile_nm={self.tile_nm}, counts={self.counts})"

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes, in the order they were created."""
        return tuple(self.__examples)

    @property
    def counts(self) -> dict[str, int]:
        """Examples per class."""
        return {name: len(tiles) for name, tiles in self.__examples.items()}

    @property
    def fingerprint(self) -> str:
        """A digest of the classes and every example tile: equal for equal sets, different after any change."""
        if self.__fingerprint[0] != self.revision:
            digest = hashlib.sha256()
            for name, examples in self.__examples.items():
                digest.update(name.encode() + b"\0" + str(len(examples)).encode() + b"\0")
                for tile in examples:
                    digest.update(tile.tobytes())
            self.__fingerprint = (self.revision, digest.hexdigest())
        return self.__fingerprint[1]

    def add_class(self, class_name: str) -> None:
        """Create a class with no examples yet (a picker's empty row); classifying needs at least one."""
        self.__check_name(class_name)
        self.__examples.setdefault(class_name, [])
        self.revision += 1

    def add(self, class_name: str, tile: numpy.typing.ArrayLike) -> None:
        """Add one example tile (t, t) to a class, creating the class if new.

        Raises
        ------
        ValueError
            If the tile is not square and 2D, or not of this set's tile size.
        """
        self.__check_name(class_name)
        array = numpy.array(tile, dtype=numpy.float32)
        if array.ndim != 2 or array.shape[0] != array.shape[1]:
            raise ValueError(f"a tile must be a square 2D array (t, t), got shape {array.shape}")
        if not numpy.all(numpy.isfinite(array)):
            raise ValueError(f"the tile for {class_name!r} contains NaN or infinite values")
        if self.tile_px is None:
            self.tile_px = int(array.shape[0])
        elif array.shape[0] != self.tile_px:
            raise ValueError(f"this support set holds tiles of {self.tile_px} px, got a tile of {array.shape[0]} px for {class_name!r}; "
                             f"cut the image with tile_px={self.tile_px}" + (f" (or tile_nm={self.tile_nm:g})" if self.tile_nm else "")
                             + ", or start a new support set for this tile size")
        self.__examples.setdefault(class_name, []).append(array)
        self.revision += 1

    def remove(self, class_name: str, index: int | None = None) -> None:
        """Remove one example (``index``) of a class, or the whole class (``index=None``)."""
        if class_name not in self.__examples:
            raise KeyError(f"no class {class_name!r} in this support set; its classes are {list(self.__examples)}")
        if index is None:
            del self.__examples[class_name]
        else:
            examples = self.__examples[class_name]
            if not -len(examples) <= index < len(examples):
                raise IndexError(f"class {class_name!r} has {len(examples)} example(s), no index {index}")
            del examples[index]
        self.revision += 1

    def tiles(self, class_name: str) -> _NDArray:
        """The examples of one class, (n, t, t) float32."""
        examples = self.__examples[class_name]
        size = self.tile_px or 0
        return numpy.stack(examples) if examples else numpy.zeros((0, size, size), dtype=numpy.float32)

    def check(self) -> None:
        """Raise for a set that cannot classify; warn for a class whose examples are all identical.

        Raises
        ------
        ValueError
            No classes, or a class with no examples.

        Warns
        -----
        IdenticalExamplesWarning
            A class has several examples that are all the same tile.

        Examples
        --------
        >>> support = SupportSet(32)
        >>> support.add_class("defect")
        >>> support.check()
        Traceback (most recent call last):
        ...
        ValueError: class 'defect' has no example tiles; add at least one (support.add('defect', tile)) or remove the class
        """
        if not self.__examples:
            raise ValueError("the support set has no classes; add at least one example tile per class (support.add(name, tile))")
        for name, examples in self.__examples.items():
            if not examples:
                raise ValueError(f"class {name!r} has no example tiles; add at least one (support.add({name!r}, tile)) or remove the class")
            if len(examples) > 1 and all(numpy.array_equal(examples[0], other) for other in examples[1:]):
                warnings.warn(f"class {name!r} has {len(examples)} examples that are all the same tile: they count as one example; "
                              "add tiles from other places of that class", IdenticalExamplesWarning, stacklevel=2)

    def check_tile_size(self, tile_px: int, tile_nm: float | None) -> None:
        """Refuse to classify tiles of another size than this set's, saying which size would do."""
        if self.tile_px is None:
            return
        if self.tile_nm is not None and tile_nm is not None:
            if abs(tile_nm - self.tile_nm) > NM_TOLERANCE * self.tile_nm:
                raise ValueError(f"the support set was made with tiles of {self.tile_nm:g} nm ({self.tile_px} px), but tiles of {tile_nm:g} nm were asked for; "
                                 f"classify with tile_nm={self.tile_nm:g}, or make a support set for {tile_nm:g} nm tiles")
            return  # same size in nm: the tiles are resampled to the set's pixels
        if tile_px != self.tile_px:
            raise ValueError(f"the support set was made with tiles of {self.tile_px} px, but tiles of {tile_px} px were asked for; "
                             f"classify with tile_px={self.tile_px}, or make a support set for {tile_px} px tiles")

    @classmethod
    def from_grid(cls, grid: TileGrid, labels: typing.Mapping[str, typing.Iterable[int]], *, backbone: str = DEFAULT_BACKBONE) -> SupportSet:
        """A support set from tiles of a grid: ``{class_name: [tile indices]}`` (an empty list makes an empty class).

        Examples
        --------
        >>> from nion_autoem_fewshot.tiles import cut_tiles
        >>> grid = cut_tiles(numpy.random.default_rng(0).normal(size=(64, 64)), tile_px=16, pixel_size_nm=0.1)
        >>> support = SupportSet.from_grid(grid, {"A": [0, 5], "B": [15]})
        >>> support.counts, support.tile_px, support.tile_nm
        ({'A': 2, 'B': 1}, 16, 1.6)
        """
        support = cls(grid.tile_px, tile_nm=grid.tile_nm, backbone=backbone)
        for name, indices in labels.items():
            support.add_class(name)
            for index in indices:
                if not 0 <= int(index) < len(grid):
                    raise IndexError(f"tile index {index} for {name!r} is outside the grid's {len(grid)} tiles")
                support.add(name, grid.tiles[int(index)])
        return support

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the set into the folder ``path`` (``support.json`` + ``support.npz``); returns the JSON path.

        Examples
        --------
        >>> import tempfile
        >>> support = SupportSet(16, tile_nm=0.8)
        >>> support.add("A", numpy.ones((16, 16)))
        >>> SupportSet.load(support.save(tempfile.mkdtemp())).counts
        {'A': 1}
        """
        folder = pathlib.Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"class_{index}": self.tiles(name) for index, name in enumerate(self.__examples)}
        numpy.savez_compressed(folder / "support.npz", **arrays)  # type: ignore[arg-type]
        metadata = {"format_version": FORMAT_VERSION, "tile_px": self.tile_px, "tile_nm": self.tile_nm, "backbone": self.backbone,
                    "class_names": list(self.__examples), "counts": self.counts, "saved": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        json_path = folder / "support.json"
        json_path.write_text(json.dumps(metadata, indent=2) + "\n")
        return json_path

    @classmethod
    def load(cls, path: str | pathlib.Path) -> SupportSet:
        """Read a set written by :meth:`save` (the folder, or its ``support.json``)."""
        json_path = pathlib.Path(path)
        if json_path.is_dir():
            json_path = json_path / "support.json"
        if not json_path.exists():
            raise FileNotFoundError(f"no support set at {path}: expected a folder with support.json and support.npz written by SupportSet.save")
        metadata = json.loads(json_path.read_text())
        if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"support set {json_path} has format_version {metadata['format_version']}; this nion_autoem_fewshot reads up to {FORMAT_VERSION}")
        support = cls(metadata["tile_px"], tile_nm=metadata.get("tile_nm"), backbone=str(metadata.get("backbone", DEFAULT_BACKBONE)))
        with numpy.load(json_path.with_name("support.npz")) as arrays:
            for index, name in enumerate(metadata["class_names"]):
                support.add_class(name)
                for tile in arrays[f"class_{index}"]:
                    support.add(name, tile)
        return support

    @staticmethod
    def __check_name(class_name: str) -> None:
        if not isinstance(class_name, str) or not class_name.strip():
            raise ValueError(f"class_name must be a non-empty name such as 'lattice' or 'amorphous', got {class_name!r}")
        if class_name == "unknown":
            raise ValueError("'unknown' is the classifier's answer for tiles far from every class; choose another class name")

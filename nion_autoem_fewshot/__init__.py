"""Few-shot classification of image tiles: a few clicked examples in, a classified map out.

Pure algorithms (numpy, scipy, scikit-image, torch); no Nion Swift imports,
so everything works from a notebook:

>>> import numpy
>>> from nion_autoem_fewshot import SupportSet, classify_tiles, cut_tiles, interface_scene
>>> scene = interface_scene((256, 256), seed=1000)
>>> grid = cut_tiles(scene.image, tile_px=32)
>>> support = SupportSet.from_grid(grid, {"rock salt": [0, 8], "honeycomb": [7, 15]})
>>> tile_map = classify_tiles(scene.image, support)
>>> tile_map.class_of(0), tile_map.class_of(7)
('rock salt', 'honeycomb')
>>> len(tile_map.suggestions(2))
2
"""

from __future__ import annotations

from nion_autoem_fewshot.backbone import Backbone
from nion_autoem_fewshot.backbone import BackboneIntegrityError
from nion_autoem_fewshot.backbone import load_backbone
from nion_autoem_fewshot.classifier import TileMap
from nion_autoem_fewshot.classifier import classify_tiles
from nion_autoem_fewshot.support import IdenticalExamplesWarning
from nion_autoem_fewshot.support import SupportSet
from nion_autoem_fewshot.synthetic import interface_scene
from nion_autoem_fewshot.synthetic import particle_scene
from nion_autoem_fewshot.tiles import TileGrid
from nion_autoem_fewshot.tiles import cut_tiles

__all__ = [
    "Backbone",
    "BackboneIntegrityError",
    "IdenticalExamplesWarning",
    "SupportSet",
    "TileGrid",
    "TileMap",
    "classify_tiles",
    "cut_tiles",
    "interface_scene",
    "load_backbone",
    "particle_scene",
]

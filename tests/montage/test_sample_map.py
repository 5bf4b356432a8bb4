"""The sample map (signposts): lattice and quality per tile, rules on them, and a plan that goes to the tiles a rule picks."""

from __future__ import annotations

import math
import pathlib

import numpy
import pytest
import scipy.ndimage

from nion_autoem.geometry import ScanFrame
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import plan
from nion_autoem.plans.sample_map import Rule
from nion_autoem.plans.sample_map import go_to_tiles
from nion_autoem.plans.sample_map import map_montage
from nion_autoem.plans.sample_map import map_sample
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from tests.montage.helpers import montage_offset
from tests.montage.helpers import run_montage
from tests.montage.helpers import twin


def test_a_noisy_lattice_is_found_with_its_spacing_and_turn_and_film_is_not() -> None:
    rng = numpy.random.default_rng(3)
    pixel = 0.04  # nm: atomic resolution
    yy, xx = numpy.mgrid[0:96, 0:192] * pixel
    turn = numpy.where(xx < 96 * pixel, 0.0, math.radians(20.0))
    lattice = sum(numpy.cos(2 * math.pi * (xx * numpy.cos(turn + a) + yy * numpy.sin(turn + a)) / 0.273) for a in (0.0, math.pi / 3, 2 * math.pi / 3))
    image = numpy.hstack([rng.poisson(20.0 + 6.0 * lattice[:, :96]), rng.poisson(20.0 + 6.0 * lattice[:, 96:])]).astype(float)
    image[:48, 48:96] = rng.poisson(26.0, (48, 48))  # amorphous film: shot noise only
    found = map_sample(image, ScanFrame((96, 192), 192 * pixel), 48, symmetry_deg=60.0)  # hexagonal
    by_place = {(r["row"], r["col"]): r for r in found.rows}
    assert not by_place[(0, 1)]["lattice"] and all(r["lattice"] for k, r in by_place.items() if k != (0, 1))
    assert all(r["spacing_nm"] == pytest.approx(0.273, rel=0.03) for r in found.rows if r["lattice"])
    # the grain boundary between columns 1 and 2 turns the lattice by 20°; inside a grain it does not turn
    assert by_place[(1, 1)]["orientation_change_deg"] == pytest.approx(20.0, abs=2.0) and by_place[(1, 0)]["orientation_change_deg"] < 2.0
    assert found.where(Rule("orientation_change_deg", ">", 10.0)) and not found.where("lattice_strength > 1e9")
    with pytest.raises(ValueError, match="rule must read"):
        found.where("spacing is small")
    # blur lowers the focus figure of the same tile
    sharp = image[48:, :48]
    assert map_sample(scipy.ndimage.gaussian_filter(sharp, 1.5), ScanFrame((48, 48), 48 * pixel), 48).rows[0]["focus"] < \
        map_sample(sharp, ScanFrame((48, 48), 48 * pixel), 48).rows[0]["focus"]


def test_go_to_the_hazy_tiles_of_a_montage_lands_on_contamination(tmp_path: pathlib.Path) -> None:
    scope = twin(9)
    montage, _ = run_montage(scope, tmp_path / "montage")
    sample_map = map_montage(montage, 32)  # 1 µm tiles
    offset = montage_offset(scope, montage)
    contamination = [o for o in scope.sample.objects if o.kind == "contamination"]

    def hazy(position: tuple[float, float]) -> bool:
        true = numpy.asarray(position) + offset
        return any(math.dist(true, o.centre_nm) < 0.5 * o.radius_nm + 500.0 for o in contamination)

    picked = sample_map.where("contamination > 0.1")
    clean = sample_map.where("contamination <= 0.0")
    base = sum(map(hazy, [(r["y_nm"], r["x_nm"]) for r in sample_map.rows])) / len(sample_map.rows)
    assert len(picked) >= 5 and len(clean) > 3 * len(picked)
    # a weak signpost, but one that points the right way: haze twice as often under it as anywhere, and less often where it reads none
    assert sum(map(hazy, picked)) / len(picked) > 2.0 * base and sum(map(hazy, clean)) / len(clean) < base, (base, len(picked))
    table = sample_map.product().table
    assert table is not None and len(table.rows) == len(sample_map.rows) and table.columns[5] == "lattice"
    sink = MemorySink()
    box: dict[str, list[object]] = {}

    @plan("signposts")
    def go() -> PlanGenerator:
        box["visits"] = yield from go_to_tiles(montage, sample_map, "contamination > 0.1", zoom=ScanFrame((64, 64), 1000.0), max_visits=2)

    assert ExperimentRunner(scope, go(), run_dir=tmp_path / "run", sink=sink).run().state is RunState.FINISHED
    assert len(box["visits"]) == 2 and {"signpost-target-1", "signpost-target-2", "signpost-visits"} <= set(sink.products)

"""Ready-made policies built from the action language."""

from nion_autoem.plans.point_spectroscopy import PointSpectroscopy

__all__ = ["PointSpectroscopy"]

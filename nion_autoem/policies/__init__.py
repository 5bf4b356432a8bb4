"""Ready-made policies built from the action language."""

from nion_autoem.policies.point_spectroscopy import PointSpectroscopy

__all__ = ["PointSpectroscopy"]

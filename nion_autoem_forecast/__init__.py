"""Forecasting in-situ EELS series, pure (numpy, scipy, torch; no Swift).

- :mod:`~nion_autoem_forecast.preprocess`: energy-drift alignment, background removal, cropping, a common axis;
- :mod:`~nion_autoem_forecast.conditions`: what to watch for ("white-line ratio below 4.2 within 8 s", "pre-peak gone");
- :mod:`~nion_autoem_forecast.baselines`: persistence and linear extrapolation;
- :mod:`~nion_autoem_forecast.models`: the EELSTM-style LSTM on every channel, and the component forecaster that beats it;
- :mod:`~nion_autoem_forecast.uncertainty`: the 90 % band and its calibration, tracked online;
- :mod:`~nion_autoem_forecast.online`: the forecaster that follows a running series and fine-tunes on it;
- :mod:`~nion_autoem_forecast.train`: ``python -m nion_autoem_forecast.train`` remakes the shipped weights.
"""

from __future__ import annotations

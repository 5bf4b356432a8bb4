"""Stage-scale twin, montage and go-to-target tests."""

"""Selects mitsuba 3's ``scalar_rgb`` variant, the one that runs on this CPU (``llvm_ad_rgb`` crashes here)."""
from __future__ import annotations

MITSUBA_VARIANT = "scalar_rgb"


def ensure_variant():
    """Imports mitsuba with the scene builder's variant set and returns the module."""
    import mitsuba as mi

    if mi.variant() != MITSUBA_VARIANT:
        mi.set_variant(MITSUBA_VARIANT)
    return mi

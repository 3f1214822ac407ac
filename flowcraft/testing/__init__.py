"""Test helpers for flowcraft users; the fixtures live in `flowcraft.testing.plugin`."""

from flowcraft.events import EventRecorder

__all__ = ["EventRecorder"]

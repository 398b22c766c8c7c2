"""Inference backends behind one small base class, chosen by a config key."""

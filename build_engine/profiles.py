"""Device profiles for the build tool: the runtime's one loader and schema
(edge/inference/device_profile.py), so a profile the build accepts is one the
cart reads the same way."""
from edge.inference.device_profile import (CALIB_METHODS, INT8_MODES, PRECISIONS, QUANT_FORMATS, ROLES,
                                           RUNTIMES, DeviceProfile, Int8Budget, Placement, Tolerance,
                                           available_profiles, load_profile, parse_profile,
                                           resolve_profile_path)

__all__ = ["CALIB_METHODS", "INT8_MODES", "PRECISIONS", "QUANT_FORMATS", "ROLES", "RUNTIMES", "DeviceProfile",
           "Int8Budget", "Placement", "Tolerance", "available_profiles", "load_profile", "parse_profile",
           "resolve_profile_path"]

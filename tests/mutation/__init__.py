"""The mutation gate: mutmut over the decision paths, a committed report, a CI subset."""

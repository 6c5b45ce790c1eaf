"""The compiled core of Chronolog (Cython + C): segments, framing, indexes, recovery."""

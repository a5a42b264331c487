"""What the relay and the console both speak: wire types, session config, audio math.

Nothing in this package does I/O.
"""

__version__ = "0.1.0"

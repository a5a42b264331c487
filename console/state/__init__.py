"""Reflex state, one class per concern. Secrets stay in plain modules, never in state vars."""

"""Fault injection for Keeper Sync: real processes, real faults, and a check of both databases
afterwards (``make chaos``; ``make chaos FULL=1`` for the full sizes)."""

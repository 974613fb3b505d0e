"""The bottom layer: errors, atomic files and JSONL logs, option dataclasses and their YAML/command-line
loading, per-phase timers, experiment trackers. Imports nothing else of r1kit."""

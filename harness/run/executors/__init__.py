"""Executors hand out the unit of work (one base with its adapters) and stream results back."""

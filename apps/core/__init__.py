"""Shared pieces every other app and the task layer rely on."""

"""AIPROD core package."""

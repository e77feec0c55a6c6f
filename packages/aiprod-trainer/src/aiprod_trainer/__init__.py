"""AIPROD trainer package."""

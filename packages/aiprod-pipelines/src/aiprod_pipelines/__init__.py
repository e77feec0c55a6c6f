"""AIPROD pipelines package."""

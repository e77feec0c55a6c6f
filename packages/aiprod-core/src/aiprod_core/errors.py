"""Exceptions for errors a user can cause; each carries one message that says what to fix."""

from __future__ import annotations


class AiprodError(Exception):
    """Base class of the errors AIPROD reports to users as a one-line message."""


class ConfigError(AiprodError, ValueError):
    """The configuration (files or AIPROD_* environment variables) is missing or invalid."""

"""Errors of the recorder, each one line for people (the CLI prints them without traceback)."""

from __future__ import annotations

from takeover.errors import TakeoverError, UsageError


class RecorderError(TakeoverError):
    """Base of the recorder's errors."""


class WorkspaceError(UsageError):
    """The workspace is missing or is not a directory."""


class WorkspaceBusyError(RecorderError):
    """Another process holds the workspace's recorder lock (it is recording)."""


class EpisodeError(RecorderError):
    """An episode file is missing, unreadable, or does not follow the schema."""


class BagImportError(UsageError):
    """A ROS bag could not be imported: bad path, unreadable bag, unsupported message."""


class TopicMapError(UsageError):
    """The topic map given to the bag importer is malformed or names a missing topic."""


class ExportError(RecorderError):
    """An export could not be written."""


class LeRobotError(UsageError):
    """A LeRobot dataset could not be imported: missing, not a dataset, another version."""

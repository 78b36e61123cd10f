"""Crash-safe HDF5 episodes, the episode store, ROS bag import and robomimic export.

Recording (see writer.py):      EpisodeWriter, EpisodeMeta, RecorderAlert, WriterStats
Reading (see reader.py):        EpisodeStore, EpisodeInfo, read_info, read_episode, EpisodeReader
Repair and checks:              recover_workspace, verify_workspace
File format:                    docs/dataset-format.md (schema.py is its source of truth)

Bag import (`bag_import`) and the robomimic export (`robomimic`) are imported on demand: they
pull in rosbags and are not needed on the robot-side path.
"""

from takeover.recorder.episode_file import EpisodeMeta, ObsSpec
from takeover.recorder.reader import Episode, EpisodeInfo, EpisodeReader, read_episode, read_info
from takeover.recorder.recover import RecoveryResult, recover_workspace
from takeover.recorder.schema import SCHEMA_VERSION
from takeover.recorder.store import EpisodeStore
from takeover.recorder.verify import VerifyReport, verify_episode, verify_workspace
from takeover.recorder.writer import EpisodeWriter, RecorderAlert, WriterStats
from takeover.types import Outcome

__all__ = [
    "SCHEMA_VERSION",
    "Episode",
    "EpisodeInfo",
    "EpisodeMeta",
    "EpisodeReader",
    "EpisodeStore",
    "EpisodeWriter",
    "ObsSpec",
    "Outcome",
    "RecorderAlert",
    "RecoveryResult",
    "VerifyReport",
    "WriterStats",
    "read_episode",
    "read_info",
    "recover_workspace",
    "verify_episode",
    "verify_workspace",
]

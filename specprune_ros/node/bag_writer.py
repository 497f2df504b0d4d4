"""Write serialized ROS 2 messages into a rosbag2 bag (MCAP storage), split by size or
duration. No rclpy: the bytes come as a raw subscription delivers them (CDR).

Library: ``rosbags`` (pure Python, maintained, reads and writes rosbag2 directories with
metadata.yaml and the MCAP storage of ``ros2 bag``, and brings the message definitions of
the ROS 2 distributions to write each file's schema from). ``mcap`` + ``mcap-ros2-support``
write a bare .mcap file: no metadata.yaml, so no rosbag2 directory, and the message
definitions would have to come from elsewhere.

Layout, as ``ros2 bag record --max-bag-size`` writes it: one bag directory ``<bag>`` with
``metadata.yaml`` and the files ``<name>_0.mcap``, ``<name>_1.mcap``, ... The file being
written lives in ``<bag>/.writing_<i>/`` and moves next to the others when it is closed,
after which metadata.yaml lists it: a process killed mid-file leaves every earlier file
listed and readable, and the unfinished one aside (the replay names it).
"""
from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from ruamel.yaml import YAML

from specprune_ros.node.bag_topics import LATCHED, SENSOR, UNFINISHED_PREFIX, TopicSpec

STORE = Stores.ROS2_KILTED  # the message definitions of the PyPI ROS wheels' distribution
_NEVER = QosTime(sec=0, nsec=0)


@dataclass(frozen=True)
class SplitLimits:
    """Start a new file after this many bytes / nanoseconds (0: no limit)."""

    max_bytes: int = 0
    max_duration_ns: int = 0

    def __post_init__(self) -> None:
        if self.max_bytes < 0 or self.max_duration_ns < 0:
            raise ValueError(f"split limits must be >= 0, got {self.max_bytes} bytes, "
                             f"{self.max_duration_ns} ns")


def offered_qos(kind: str) -> Qos:
    """The QoS written into the bag for a topic (what ``ros2 bag play`` offers again)."""
    return Qos(history=QosHistory.KEEP_LAST, depth=1 if kind == LATCHED else 10,
               reliability=QosReliability.BEST_EFFORT if kind == SENSOR
               else QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL if kind == LATCHED
               else QosDurability.VOLATILE,
               deadline=_NEVER, lifespan=_NEVER, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=_NEVER, avoid_ros_namespace_conventions=False)


def _yaml() -> YAML:
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    return yaml


def merged_metadata(parts: Sequence[Dict[str, Any]], files: Sequence[str],
                    custom_data: Dict[str, str]) -> Dict[str, Any]:
    """One rosbag2 metadata document for the finished files, from each file's own."""
    infos = [p["rosbag2_bagfile_information"] for p in parts]
    counts: Dict[str, Dict[str, Any]] = {}
    for info in infos:
        for entry in info["topics_with_message_count"]:
            name = entry["topic_metadata"]["name"]
            if name in counts:
                counts[name]["message_count"] += entry["message_count"]
            else:
                counts[name] = {"topic_metadata": dict(entry["topic_metadata"]),
                                "message_count": entry["message_count"]}
    starts = [i["starting_time"]["nanoseconds_since_epoch"] for i in infos if i["message_count"]]
    ends = [i["starting_time"]["nanoseconds_since_epoch"] + i["duration"]["nanoseconds"]
            for i in infos if i["message_count"]]
    start = min(starts) if starts else 0
    file_entries = [dict(i["files"][0], path=name) for i, name in zip(infos, files)]
    return {"rosbag2_bagfile_information": dict(
        infos[0], relative_file_paths=list(files), files=file_entries,
        starting_time={"nanoseconds_since_epoch": start},
        duration={"nanoseconds": (max(ends) - start) if ends else 0},
        message_count=sum(i["message_count"] for i in infos),
        topics_with_message_count=list(counts.values()),
        custom_data=dict(custom_data) or None)}


class BagWriter:
    """Writes the topics ``specs`` (index = position in specs) into the bag ``path``."""

    def __init__(self, path: str, specs: Sequence[TopicSpec],
                 limits: SplitLimits = SplitLimits()) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag {self.path} exists already: name a new one")
        self.path.mkdir(parents=True)
        self.specs = list(specs)
        self.limits = limits
        self.counts = [0] * len(self.specs)
        self.files: List[str] = []
        self.custom_data: Dict[str, str] = {}
        self._store = get_typestore(STORE)
        self._parts: List[Dict[str, Any]] = []
        self._latched: Dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._writer: Optional[Writer] = None
        self._connections: List[Any] = []
        self._bytes = 0
        self._first_ns: Optional[int] = None

    # ---------------------------------------------------------------- writing
    def write(self, index: int, timestamp_ns: int, data: bytes) -> None:
        """One serialized message of topic ``specs[index]`` received at ``timestamp_ns``."""
        with self._lock:
            if self._writer is not None and self._split_due(timestamp_ns):
                self._finish_file()
            if self._writer is None:
                self._open_file(timestamp_ns)
            self._put(index, timestamp_ns, data)

    def _put(self, index: int, timestamp_ns: int, data: bytes) -> None:
        self._writer.write(self._connections[index], timestamp_ns, data)
        self.counts[index] += 1
        self._bytes += len(data)
        if self.specs[index].qos == LATCHED:
            self._latched[index] = bytes(data)

    def _split_due(self, timestamp_ns: int) -> bool:
        lim = self.limits
        return bool((lim.max_bytes and self._bytes >= lim.max_bytes) or (
            lim.max_duration_ns and timestamp_ns - self._first_ns >= lim.max_duration_ns))

    def _open_file(self, timestamp_ns: int) -> None:
        writer = Writer(self.path / f"{UNFINISHED_PREFIX}{len(self.files)}", version=9,
                        storage_plugin=StoragePlugin.MCAP)
        writer.open()
        self._connections = [writer.add_connection(
            s.topic, s.msgtype, typestore=self._store,
            offered_qos_profiles=[offered_qos(s.qos)]) for s in self.specs]
        self._writer, self._bytes, self._first_ns = writer, 0, timestamp_ns
        for index, data in sorted(self._latched.items()):  # each file holds the instruction
            self._put(index, timestamp_ns, data)

    def _finish_file(self) -> None:
        """Close the file being written, move it into the bag, rewrite metadata.yaml."""
        writer, self._writer = self._writer, None
        for key, value in self.custom_data.items():
            writer.set_custom_data(key, value)
        writer.close()
        name = f"{self.path.name}_{len(self.files)}.mcap"
        (writer.path / f"{writer.path.name}.mcap").replace(self.path / name)
        self._parts.append(_yaml().load(writer.metapath.read_text("utf8")))
        shutil.rmtree(writer.path)
        self.files.append(name)
        self._write_metadata()

    def _write_metadata(self) -> None:
        text = StringIO()
        _yaml().dump(merged_metadata(self._parts, self.files, self.custom_data), text)
        tmp = self.path / "metadata.yaml.tmp"
        tmp.write_text(text.getvalue(), "utf8")
        tmp.replace(self.path / "metadata.yaml")

    # ---------------------------------------------------------------- metadata, end
    def set_custom_data(self, key: str, value: str) -> None:
        """A metadata entry, written with every file closed from now on and the bag's."""
        with self._lock:
            self.custom_data[key] = value

    def close(self) -> None:
        """Close the file in progress; metadata.yaml then lists every file."""
        with self._lock:
            if self._writer is not None:
                self._finish_file()
            elif not self.files:  # nothing was received: an empty but valid bag
                self._open_file(0)
                self._finish_file()

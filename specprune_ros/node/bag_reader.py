"""Read a recording (rosbag2 directory, or a bare .mcap file) back, file by file, without
ROS: messages are deserialised with rosbags' typestore into objects with the ROS field
names, which the node's own conversions (ros_image, tf_motion) take as they are.

A damaged file does not take the others with it: each file of a bag is opened on its own,
and a truncated or unreadable one (or the unfinished file of a recorder that was killed)
becomes a ``problems`` entry naming it, while every other file is read. Whether the topics
a use needs are present with the right types is the caller's check (``check_topics``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from rosbags.rosbag2 import Reader
from rosbags.rosbag2.storage_mcap import McapReader
from rosbags.typesys import get_typestore
from ruamel.yaml import YAML

from specprune_ros.node.bag_topics import (METADATA_KEY, PARAMETERS_KEY, UNFINISHED_PREFIX,
                                           TopicSpec)
from specprune_ros.node.bag_writer import STORE


class BagError(ValueError):
    """A recording cannot be used as asked; the message names the bag, file or topic."""


@dataclass(frozen=True)
class Recorded:
    """One message: topic, its type, the log time (ns) and the serialized bytes."""

    topic: str
    msgtype: str
    log_ns: int
    raw: bytes


@dataclass
class RecordedBag:
    path: str
    messages: List[Recorded] = field(default_factory=list)  # in log-time order
    types: Dict[str, str] = field(default_factory=dict)  # topic -> message type
    custom_data: Dict[str, str] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)  # files that could not be read
    files: List[str] = field(default_factory=list)  # files read

    def counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for m in self.messages:
            out[m.topic] = out.get(m.topic, 0) + 1
        return out

    def metadata(self) -> Dict[str, Any]:
        """The recorder's metadata (empty for a bag another tool wrote)."""
        return json.loads(self.custom_data.get(METADATA_KEY, "{}"))

    def policy_parameters(self) -> Optional[Dict[str, Any]]:
        """{"node", "stamp_ns", "values"} of the recorded policy node, or None."""
        raw = self.custom_data.get(PARAMETERS_KEY)
        return json.loads(raw) if raw else None

    def on(self, topic: str) -> Iterator[Recorded]:
        return (m for m in self.messages if m.topic == topic)


_STORE: List[Any] = []


def typestore() -> Any:
    if not _STORE:
        _STORE.append(get_typestore(STORE))
    return _STORE[0]


def decode(message: Recorded) -> Any:
    """The message as an object with the ROS field names (rosbags' dataclass)."""
    return typestore().deserialize_cdr(message.raw, message.msgtype)


def _metadata(folder: Path) -> Dict[str, Any]:
    meta = folder / "metadata.yaml"
    if not meta.is_file():
        return {}
    return YAML(typ="safe").load(meta.read_text("utf8"))["rosbag2_bagfile_information"]


def _read_mcap(path: Path) -> Tuple[List[Recorded], Dict[str, str]]:
    reader = McapReader(path)
    reader.open()
    try:
        out = [Recorded(c.topic, c.msgtype, t, bytes(raw))
               for c, t, raw in reader.messages(reader.connections)]
        return out, {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def _mcap_files(folder: Path, info: Dict[str, Any]) -> List[Path]:
    if info.get("relative_file_paths"):
        return [folder / Path(p).name for p in info["relative_file_paths"]]
    return sorted(folder.glob("*.mcap"))


def read_bag(path: str) -> RecordedBag:
    """Every readable message of the bag at ``path``; BagError when nothing can be read."""
    root = Path(path)
    bag = RecordedBag(str(root))
    if root.is_file():
        files, info = [root], {}
    elif root.is_dir():
        info = _metadata(root)
        if info.get("storage_identifier", "mcap") != "mcap":
            return _read_other_storage(root, bag)
        files = _mcap_files(root, info)
        bag.problems += [f"{u}: the recording was interrupted while this file was written "
                         f"(no closing index); its messages are not read"
                         for u in sorted(root.glob(f"{UNFINISHED_PREFIX}*"))]
    else:
        raise BagError(f"bag {root} does not exist")
    bag.custom_data = dict(info.get("custom_data") or {})
    for file in files:
        try:
            messages, types = _read_mcap(file)
        except Exception as exc:  # noqa: BLE001 - rosbags raises several kinds: name the file
            bag.problems.append(f"{file}: cannot be read ({type(exc).__name__}: {exc}); "
                                f"truncated or damaged, its messages are left out")
            continue
        bag.messages += messages
        bag.types.update(types)
        bag.files.append(str(file))
    if not bag.files:
        raise BagError(f"bag {root}: no readable file. " + " ".join(bag.problems))
    bag.messages.sort(key=lambda m: m.log_ns)
    return bag


def _read_other_storage(root: Path, bag: RecordedBag) -> RecordedBag:
    """A bag in another storage (sqlite3): rosbags' Reader, all files at once."""
    try:
        with Reader(root) as reader:
            bag.messages = [Recorded(c.topic, c.msgtype, t, bytes(raw))
                            for c, t, raw in reader.messages()]
            bag.types = {c.topic: c.msgtype for c in reader.connections}
            bag.custom_data = dict(reader.metadata.get("custom_data") or {})
            bag.files = [str(root)]
    except Exception as exc:  # noqa: BLE001 - name the bag and what went wrong
        raise BagError(f"bag {root} cannot be read: {type(exc).__name__}: {exc}") from None
    return bag


def check_topics(bag: RecordedBag, specs: Sequence[TopicSpec], needed: Sequence[str]
                 ) -> List[str]:
    """Problems of the topics with the roles ``needed``: absent, without messages, or of
    another type than ``specs`` says (each names the topic, the role and both types)."""
    counts = bag.counts()
    problems = []
    for spec in specs:
        if spec.role not in needed:
            continue
        found = bag.types.get(spec.topic)
        if found is not None and found != spec.msgtype:
            problems.append(f"topic {spec.topic} ({spec.role}) has type {found} in the bag; "
                            f"expected {spec.msgtype}")
        elif not counts.get(spec.topic):
            problems.append(f"topic {spec.topic} ({spec.role}, {spec.msgtype}) has no "
                            f"messages in the bag")
    return problems

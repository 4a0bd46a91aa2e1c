"""MQTT 3.1.1 topic names and topic filters: what is well formed, and what matches what.

A topic name (in PUBLISH and a will) is a concrete path such as `device/<serial>/report`; a
topic filter (in SUBSCRIBE) may hold the wildcards `+` (one level) and `#` (this level and
every level below). Pure functions over strings, shared by the packet codec, the simulator's
broker and anything that routes reports by topic.
"""

from bambufarm.protocol.errors import MqttPacketError


def check_topic_name(topic: str) -> None:
    """Raise MqttPacketError unless `topic` is a non-empty topic name without wildcards."""
    if not topic:
        raise MqttPacketError("topic name is empty (MQTT-4.7.3-1)")
    if "+" in topic or "#" in topic:
        raise MqttPacketError(f"topic name {topic!r} contains a wildcard (MQTT-3.3.2-2)")


def is_valid_topic_filter(topic_filter: str) -> bool:
    """True when `topic_filter` follows the wildcard rules of spec 4.7.1."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when the topic name `topic` matches `topic_filter` (with `+` and `#` wildcards)."""
    if topic_filter == topic:
        return True
    # Wildcards at the first level never match topics starting with "$" (MQTT-4.7.2-1).
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True  # also matches the parent level: "a/#" matches "a"
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)

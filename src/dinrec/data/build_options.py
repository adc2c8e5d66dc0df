"""Which options a log source and a sample protocol take, and where a flat option goes.

build_dataset checks every name here before the log is read, so a misspelt option fails at
once, naming the source or protocol and the options it takes, instead of after a slow read.
`dinrec data build --option NAME=VALUE` and a config's [data] options are one flat mapping;
route_options sends each name to the reader or the protocol that accepts it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dinrec.data.protocols import PROTOCOLS
from dinrec.data.readers import READERS
from dinrec.data.readers.taobao import BEHAVIORS as TAOBAO_BEHAVIORS
from dinrec.data.synthetic import generate_log
from dinrec.data.synthetic_chunked import USERS_PER_CHUNK
from dinrec.history_groups import GROUP_NAME as _GROUP_NAME

SYNTHETIC = "synthetic"
SOURCES: tuple[str, ...] = (*READERS, SYNTHETIC)
# Options that build_dataset sets from its own arguments; naming them twice would be ambiguous.
_READER_OWNED = ("on_error",)
_SYNTHETIC_OWNED = ("seed",)
_CHUNK_OWNED = ("user_seed", "first_user")  # set per chunk by synthetic_chunked
_PROTOCOL_OWNED = ("maxlen", "split", "seed")
# Sources whose behavior types are fixed: history groups are checked against them early.
_KNOWN_BEHAVIORS: dict[str, tuple[str, ...]] = {"taobao": TAOBAO_BEHAVIORS}


def keyword_options(function: Callable[..., Any]) -> list[str]:
    """The keyword-only parameter names of a reader, protocol builder or generator."""
    return [
        name for name, p in inspect.signature(function).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]


def source_option_names(source: str) -> list[str]:
    """Option names a source accepts in reader_options (generator options for synthetic)."""
    if source == SYNTHETIC:  # generate_log's options, and chunking (synthetic_chunked)
        return [*(n for n in keyword_options(generate_log) if n not in _SYNTHETIC_OWNED
                  and n not in _CHUNK_OWNED), USERS_PER_CHUNK]
    if source not in READERS:
        raise ValueError(f"unknown log source {source!r}; known: {', '.join(SOURCES)}")
    return [n for n in keyword_options(READERS[source]) if n not in _READER_OWNED]


def protocol_option_names(protocol: str) -> list[str]:
    """Option names a protocol accepts in protocol_options (maxlen, split, seed excluded)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return [n for n in keyword_options(PROTOCOLS[protocol]) if n not in _PROTOCOL_OWNED]


def route_options(
    source: str, protocol: str, options: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split one flat {name: value} mapping into (reader_options, protocol_options).

    A name goes where it is accepted; "reader.NAME" or "protocol.NAME" picks a side
    explicitly. A name both sides accept, or neither, raises naming it.
    """
    reader_names, protocol_names = source_option_names(source), protocol_option_names(protocol)
    routed: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    for key, value in options.items():
        side, _, name = key.rpartition(".")
        if side and side not in ("reader", "protocol"):
            raise ValueError(f"option {key!r}: prefix must be 'reader.' or 'protocol.'")
        in_reader, in_protocol = name in reader_names, name in protocol_names
        if side == "reader" or (not side and in_reader and not in_protocol):
            routed[0][name] = value
        elif side == "protocol" or (not side and in_protocol and not in_reader):
            routed[1][name] = value
        elif in_reader and in_protocol:
            raise ValueError(f"option {name!r} is accepted by both source {source!r} and "
                             f"protocol {protocol!r}; write reader.{name} or protocol.{name}")
        else:
            raise ValueError(
                f"unknown option {name!r}: source {source!r} takes "
                f"{', '.join(reader_names) or 'none'}; protocol {protocol!r} takes "
                f"{', '.join(protocol_names) or 'none'}"
            )
    return routed


def _check_names(kind: str, given: Mapping[str, Any], accepted: list[str], owned: tuple[str, ...],
                 owner: str) -> None:
    for name in given:
        if name in owned:
            raise ValueError(f"{kind} option {name!r} is set by build_dataset's own {name!r} "
                             "argument; pass it there")
        if name not in accepted:
            raise ValueError(f"{owner} has no option {name!r}; its options: "
                             f"{', '.join(accepted) or 'none'}")


def check_option_names(source: str, protocol: str, reader_options: Mapping[str, Any],
                       protocol_options: Mapping[str, Any]) -> None:
    """Raise naming the first option the source or the protocol does not take, or one that
    build_dataset sets from its own argument (seed, maxlen, split, on_error)."""
    owner = "synthetic generator" if source == SYNTHETIC else f"reader {source!r}"
    owned = _SYNTHETIC_OWNED if source == SYNTHETIC else _READER_OWNED
    _check_names("reader", reader_options, source_option_names(source), owned, owner)
    _check_names("protocol", protocol_options, protocol_option_names(protocol),
                 _PROTOCOL_OWNED, f"protocol {protocol!r}")


def check_history_options(
    source: str, groups: Mapping[str, Sequence[str]] | None,
    sample_behaviors: Sequence[str] | None,
) -> dict[str, list[str]]:
    """history_groups as {group: [types]}, checked before the log is read.

    Group names follow DIN's history_groups (letters, digits, underscores); each group needs
    distinct behavior types, and for a source whose types are known (Taobao's pv / cart /
    fav / buy) an unknown type fails here, naming it, not after a slow read. Types absent
    from the log read fail in BehaviorGroups, naming the group.
    """
    known = _KNOWN_BEHAVIORS.get(source)
    checked: dict[str, list[str]] = {}
    for name, types in (groups or {}).items():
        if not isinstance(name, str) or not _GROUP_NAME.match(name):
            raise ValueError(f"history group name {name!r} must start with a letter and hold "
                             "only letters, digits and underscores")
        if isinstance(types, str) or not types or not all(isinstance(t, str) for t in types):
            raise ValueError(f"history group {name!r}: give a list of behavior types, "
                             f"got {types!r}")
        if len(set(types)) != len(types):
            raise ValueError(f"history group {name!r} names a behavior type twice: {types}")
        checked[name] = list(types)
    named = [("history group " + repr(g), t) for g, t in checked.items()]
    if sample_behaviors is not None:
        if isinstance(sample_behaviors, str) or not sample_behaviors:
            raise ValueError(f"sample_behaviors must be a non-empty list of behavior types, "
                             f"got {sample_behaviors!r}")
        named.append(("sample_behaviors", list(sample_behaviors)))
    for what, types in named:
        unknown = [t for t in types if known is not None and t not in known]
        if unknown:
            raise ValueError(f"{what}: unknown behavior type {unknown[0]!r}; source "
                             f"{source!r} has {', '.join(known or ())}")
    return checked

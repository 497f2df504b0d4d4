"""Parameter tables of the package's ROS nodes: the generic part.

A node describes its parameters as a tuple of ``ParamSpec`` (name, default, documentation,
range, choices, liveness). This module holds what every such table shares and nothing
node-specific:

- ``ParamSpec``: one parameter, with its ParameterDescriptor, the constraint sentence of its
  documentation, its extra rule (choices) and the coercion of an integer to a double;
- ``declare_table``: declare a whole table on a node (StartupError naming a bad override);
- ``coerce_parameters``: the pre-set-parameters callback body (an integer for a double);
- ``ros_value``, ``flatten``: parameter values and parameter YAML as plain Python;
- ``yaml_scalar`` .. ``yaml_entries`` and ``yaml_cli``: the generated, documented parameter
  YAML files and their ``--write`` / ``--check`` command line.

The policy node's table (``specprune_ros.node.parameters``), the executor's
(``specprune_ros.node.executor_parameters``) and the simulator bridge's
(``specprune_ros.sim.sim_bridge_node``) are built from it.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from specprune_ros.node.lifecycle import StartupError

WIDTH = 99  # longest line of a generated parameter YAML


def _is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _fmt(value: Optional[float]) -> str:
    """A range end for the documentation; '-' for an open end."""
    return "-" if value is None else f"{value:g}"


# ------------------------------------------------------------------------------ one parameter
@dataclass(frozen=True)
class ParamSpec:
    """One parameter: default (its type is the parameter's type), documentation, limits."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    lo: Optional[float] = None  # inclusive range, for int and float parameters
    hi: Optional[float] = None
    choices: Tuple[str, ...] = ()  # for string parameters: the allowed values

    @property
    def is_double(self) -> bool:
        return isinstance(self.default, float)

    @property
    def is_double_list(self) -> bool:
        """A non-empty list of floats by default: a DOUBLE_ARRAY parameter."""
        return isinstance(self.default, list) and bool(self.default) \
            and all(isinstance(v, float) for v in self.default)

    def coerce(self, value: Any) -> Any:
        """``value`` in the parameter's type where rcl would refuse a harmless spelling:
        an integer for a double (``ros2 param set x 2``, ``x: 2`` in a yaml) as that float,
        a non-empty list of integers for a list of doubles as floats. Every other value is
        returned as the very same object (the descriptor checks types)."""
        if self.is_double and _is_int(value):
            return float(value)
        if self.is_double_list:
            items = ros_value(value)
            if isinstance(items, list) and items and all(_is_int(v) for v in items):
                return [float(v) for v in items]
        return value

    def notes(self) -> List[str]:
        """Extra sentences for ``constraints()`` (after the type, before the choices);
        none here, a table's subclass adds its own."""
        return []

    def constraints(self) -> str:
        """Range / choices / liveness as one sentence-ish string."""
        parts = []
        if self.lo is not None or self.hi is not None:
            parts.append(f"Range [{_fmt(self.lo)}, {_fmt(self.hi)}].")
        if self.is_double:
            parts.append("Integers are accepted as doubles.")
        parts += self.notes()
        if self.choices:
            parts.append("One of: " + ", ".join(repr(c) for c in self.choices) + ".")
        parts.append(self.liveness())
        return " ".join(parts)

    def liveness(self) -> str:
        """When the parameter may change: the last sentence of ``constraints()``."""
        return "Read-only (fixed at start-up)." if self.read_only else "Live (ros2 param set)."

    def descriptor(self) -> ParameterDescriptor:
        """The rcl ParameterDescriptor: description, read-only flag, constraints, range."""
        desc = ParameterDescriptor(description=self.description, read_only=self.read_only,
                                   additional_constraints=self.constraints())
        if self.lo is None and self.hi is None:
            return desc
        if self.is_double:
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(self.lo), to_value=float(self.hi), step=0.0)]
        elif _is_int(self.default):
            desc.integer_range = [IntegerRange(
                from_value=int(self.lo), to_value=int(self.hi), step=0)]
        return desc

    def check(self, value: Any) -> Optional[str]:
        """Why ``value`` is not allowed beyond what the descriptor checks, or None."""
        if self.choices and value not in self.choices:
            return (f"{self.name} must be one of {', '.join(repr(c) for c in self.choices)}, "
                    f"got {value!r}")
        return None


# ------------------------------------------------------------------------------ on a node
def ros_value(value: Any) -> Any:
    """A parameter value as plain Python (arrays -> lists)."""
    if isinstance(value, (str, bytes, bool, int, float)) or value is None:
        return value
    return list(value)


def _coerce_overrides(node: Node, specs: Iterable[ParamSpec]) -> None:
    """Replace the start-up overrides of ``node`` that a spec coerces (``ParamSpec.coerce``)
    before they are declared: rcl would refuse them for their type."""
    overrides = node._parameter_overrides  # rclpy keeps no public accessor for them
    for spec in specs:
        override = overrides.get(spec.name)
        if override is None:
            continue
        value = spec.coerce(override.value)
        if value is not override.value:
            overrides[spec.name] = Parameter(spec.name, value=value)


def declare_table(node: Node, specs: Sequence[ParamSpec]) -> Dict[str, Any]:
    """Declare every spec on ``node`` with its descriptor; {name: value it ended up with}.
    An override the spec coerces (an integer for a double) is declared as coerced; one of
    the wrong type, out of range or against the spec's rule (choices) raises StartupError
    naming the parameter."""
    _coerce_overrides(node, specs)
    values = {}
    for spec in specs:
        try:
            param = node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except ParameterException as exc:
            raise StartupError(f"parameter {spec.name}: {exc}") from None
        values[spec.name] = ros_value(param.value)
        problem = spec.check(values[spec.name])
        if problem:
            raise StartupError(problem)
    return values


def rule_problem(by_name: Mapping[str, ParamSpec], values: Mapping[str, Any]
                 ) -> Optional[str]:
    """The first spec rule (choices) that ``values`` break, or None; names without a spec
    in ``by_name`` are not checked. Types and ranges are the descriptors' job."""
    for name, value in values.items():
        spec = by_name.get(name)
        problem = spec.check(ros_value(value)) if spec is not None else None
        if problem:
            return problem
    return None


def coerce_parameters(by_name: Mapping[str, ParamSpec], changed: List[Parameter]
                      ) -> List[Parameter]:
    """A pre-set-parameters callback's result: ``changed`` with the values their spec in
    ``by_name`` coerces replaced (what `ros2 param set <node> <double> 2` sends), so that
    the descriptor's type and range checks then apply; the others unchanged."""
    out = []
    for param in changed:
        spec = by_name.get(param.name)
        value = param.value if spec is None else spec.coerce(param.value)
        out.append(param if value is param.value else Parameter(param.name, value=value))
    return out


# ------------------------------------------------------------------------------ yaml
def flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested parameter YAML -> {dotted name: value}, as rcl's parser reads it."""
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def yaml_scalar(value: Any) -> str:
    """A parameter value in YAML flow style (lists as ``[a, b]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:  # 1e-06 -> 1.0e-06 (YAML 1.1 float)
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a double-quoted YAML string
    if isinstance(value, list):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    raise TypeError(f"no YAML form for {value!r}")


def yaml_comment(spec: ParamSpec, indent: str) -> List[str]:
    """The comment lines above a parameter: its description and constraints, wrapped."""
    text = f"{spec.description} {spec.constraints()}"
    return textwrap.wrap(text, WIDTH, initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}# ", break_on_hyphens=False)


def yaml_entry(key: str, value: Any, indent: str) -> List[str]:
    """``key: value``; a list too long for one line becomes a block sequence."""
    line = f"{indent}{key}: {yaml_scalar(value)}"
    if len(line) <= WIDTH or not isinstance(value, list):
        return [line]
    return [f"{indent}{key}:"] + [f"{indent}  - {yaml_scalar(v)}" for v in value]


def yaml_entries(specs: Iterable[ParamSpec], indent: str, key: Callable[[ParamSpec], str]
                 ) -> List[str]:
    """Every spec as its comment and ``key(spec): default``."""
    lines: List[str] = []
    for spec in specs:
        lines += yaml_comment(spec, indent) + yaml_entry(key(spec), spec.default, indent)
    return lines


def yaml_cli(argv: Optional[Sequence[str]], text: str, module: str, whose: str) -> int:
    """The command line of a generated parameter YAML: print it, ``--write PATH`` or
    ``--check PATH`` (exit 1 if outdated); ``module`` is what to rerun to regenerate."""
    parser = argparse.ArgumentParser(description=f"Render {whose} parameter YAML.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="PATH", help="write the YAML to PATH")
    group.add_argument("--check", metavar="PATH", help="exit 1 unless PATH is up to date")
    args = parser.parse_args(argv)
    if args.write:
        Path(args.write).write_text(text)
    elif args.check:
        if Path(args.check).read_text() != text:
            print(f"{args.check} is out of date: run python -m {module} "
                  f"--write {args.check}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0

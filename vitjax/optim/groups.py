"""Parameter groups: the one mechanism behind freezing, per-group learning rates and gradual unfreezing.

Every setting in `config.optim` that decides *which* parameters train and *how fast* expands into one
ordered list of `Rule`s over slash-joined parameter paths (`backbone/encoder/layer_07/mlp/fc1/kernel`).
The first rule whose regex fully matches a path owns that parameter. The list is, in order:

    1. `param_groups`   the user's own (regex, lr multiplier or None, [start]) entries
    2. `unfreeze`       (regex, start) entries: these train with multiplier 1 from `start` on
    3. `unfreeze_every` one encoder block every k from the top, then the embeddings
       (LoRA's adapters: `(.*/)?lora_[ab]` train, when `config.lora` is on)
    4. `freeze`         the preset ("full", "head_only", "last_n_blocks", "none") or a regex to freeze

Every parameter must be owned by some rule, and every rule the user wrote must own some parameter;
rules generated from presets may be shadowed by earlier ones without complaint.

Depth: embeddings are layer 0, `encoder/layer_i` is layer i+1, everything else (final layer norm,
head) is layer depth+1. With layer-wise decay d a parameter of layer i gets d**(depth+1-i) times its
rule's multiplier, and each (rule, layer) pair becomes its own group, named "<rule>@<layer>".
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from vitjax.errors import BadValue
from vitjax.parallel import path_str

PRESETS = ("full", "head_only", "last_n_blocks", "none")
_LAYER = re.compile(r"backbone/encoder/layer_(\d+)/")
_LAYER_NUMBER = re.compile(r"layer_\d+")
_TOP = r"backbone/(?!embeddings/|encoder/).*"


@dataclasses.dataclass(frozen=True)
class Rule:
    """One entry of the ordered rule list.

    `multiplier` scales the base learning rate (None = frozen); `start` is the train step from which
    the group moves (0 = from the beginning); `name` says where the rule came from (its config key);
    `required` rules must own at least one parameter.
    """

    regex: str
    multiplier: float | None
    start: int = 0
    name: str = ""
    required: bool = True


@dataclasses.dataclass(frozen=True)
class Group:
    """The parameters owned by one rule (and one layer, with layer-wise decay).

    `multiplier` is the effective lr multiplier (rule × layer decay); None when the group never
    trains during the run (frozen, multiplier 0, or starting after the last step).
    """

    name: str
    regex: str
    multiplier: float | None
    start: int
    layer: int | None
    paths: tuple[str, ...]
    size: int

    @property
    def trains(self) -> bool:
        return self.multiplier is not None


def path_tree(params) -> Any:
    """The pytree of slash-joined path strings for `params` (`vitjax.parallel.path_str` of each leaf)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: path_str(path), params)


def layer_index(path: str, num_layers: int) -> int:
    """Depth of a parameter: embeddings 0, encoder block i → i+1, anything else num_layers+1."""
    if path.startswith("backbone/embeddings/"):
        return 0
    match = _LAYER.match(path)
    return int(match.group(1)) + 1 if match else num_layers + 1


def _block_regex(blocks: Sequence[int]) -> str:
    names = [f"{i:02d}" for i in blocks]
    alternatives = names[0] if len(names) == 1 else "(" + "|".join(names) + ")"
    return f"backbone/encoder/layer_{alternatives}/.*"


def preset_rules(freeze, num_layers: int, last_n_blocks: int) -> list[Rule]:
    """Expand `optim.freeze`: a preset name, or else a regex of parameters to freeze (join several with |)."""
    if not isinstance(freeze, str):
        raise BadValue(f"optim.freeze={freeze!r}: use a preset {PRESETS} or a regex of parameters to freeze")
    if freeze == "full":
        return [Rule(".*", 1.0, name="all", required=False)]
    if freeze == "head_only":
        return [Rule("head/.*", 1.0, name="head", required=False), Rule(".*", None, name="rest", required=False)]
    if freeze == "last_n_blocks":
        if not 0 <= last_n_blocks <= num_layers:
            raise BadValue(f"optim.last_n_blocks={last_n_blocks} but the backbone has depth {num_layers} "
                           f"(blocks layer_00..layer_{num_layers - 1:02d}); use 0..{num_layers}")
        rules = [Rule("head/.*", 1.0, name="head", required=False)]
        if last_n_blocks:
            top = range(num_layers - last_n_blocks, num_layers)
            rules.append(Rule(_block_regex(top), 1.0, name="last_blocks", required=False))
        return rules + [Rule("backbone/(embeddings|encoder)/.*", None, name="lower", required=False),
                        Rule(".*", 1.0, name="top", required=False)]
    if freeze == "none":
        return []
    return [Rule(freeze, None, name="optim.freeze"), Rule(".*", 1.0, name="rest", required=False)]


def unfreeze_every_rules(every: int, num_layers: int) -> list[Rule]:
    """Top-down gradual unfreezing: the final norm and the top block train from step `every`, the next
    block from 2·`every`, ..., the embeddings last, from (depth+1)·`every`. The head is left to the preset."""
    if every <= 0:
        raise BadValue(f"optim.unfreeze_every must be a positive duration (got {every} steps)")
    rules = [Rule(_TOP, 1.0, every, name="unfreeze_every.top", required=False)]
    for j, block in enumerate(reversed(range(num_layers))):
        rules.append(Rule(_block_regex([block]), 1.0, (j + 1) * every, name=f"unfreeze_every.layer_{block:02d}",
                          required=False))
    return rules + [Rule("backbone/embeddings/.*", 1.0, (num_layers + 1) * every,
                         name="unfreeze_every.embeddings", required=False)]


def expand_rules(cfg, num_layers: int, to_steps: Callable[[Any, str], int],
                 extra: Sequence[Rule] = ()) -> list[Rule]:
    """The ordered rule list for `config.optim` (see the module docstring); `extra` rules (LoRA's
    adapters) go just ahead of the freeze preset.

    `to_steps(duration, key)` converts a start duration (bare numbers are epochs) to train steps.
    """
    rules = []
    for i, entry in enumerate(cfg.param_groups):
        key = f"optim.param_groups[{i}]"
        if not isinstance(entry, (list, tuple)) or len(entry) not in (2, 3) or not isinstance(entry[0], str):
            raise BadValue(f"{key}={entry!r}: write (regex, lr multiplier or None) or "
                           f"(regex, multiplier, start)")
        multiplier = entry[1]
        if multiplier is not None and (isinstance(multiplier, bool) or not isinstance(multiplier, (int, float))
                                       or multiplier < 0):
            raise BadValue(f"{key}: the lr multiplier must be a number >= 0 or None (frozen), "
                           f"got {multiplier!r}")
        start = to_steps(entry[2], key) if len(entry) == 3 else 0
        rules.append(Rule(entry[0], None if multiplier is None else float(multiplier), start, name=key))
    for i, entry in enumerate(cfg.unfreeze):
        key = f"optim.unfreeze[{i}]"
        if not isinstance(entry, (list, tuple)) or len(entry) != 2 or not isinstance(entry[0], str):
            raise BadValue(f"{key}={entry!r}: write (regex, start) with start a duration like 2 (epochs) "
                           f"or '500 steps'")
        rules.append(Rule(entry[0], 1.0, to_steps(entry[1], key), name=key))
    if cfg.unfreeze_every:
        rules += unfreeze_every_rules(to_steps(cfg.unfreeze_every, "optim.unfreeze_every"), num_layers)
    return rules + list(extra) + preset_rules(cfg.freeze, num_layers, cfg.last_n_blocks)


def resolve(rules: Sequence[Rule], params, *, num_layers: int, layer_decay: float = 1.0,
            end: int | None = None) -> tuple[list[Group], Any]:
    """Assign every parameter to a group.

    Returns the groups (in rule order, then by layer) and a pytree like `params` holding each leaf's
    `Group`. `end` is the step the run ends at: groups starting at or after it never train.
    Raises ValueError for unmatched parameters, rules that match nothing, bad regexes, or a
    `num_layers` that disagrees with the encoder blocks present.
    """
    paths = path_tree(params)
    flat_paths = jax.tree.leaves(paths)
    _check_depth(flat_paths, num_layers)
    compiled = []
    for rule in rules:
        try:
            compiled.append(re.compile(rule.regex))
        except re.error as err:
            raise BadValue(f"{rule.name}: invalid regex {rule.regex!r} ({err})") from None
    owner = {}
    for path in flat_paths:
        owner[path] = next((i for i, rx in enumerate(compiled) if rx.fullmatch(path)), None)
    unmatched = [p for p, i in owner.items() if i is None]
    if unmatched:
        raise BadValue(f"{len(unmatched)} parameter(s) match no rule of optim.param_groups/unfreeze/freeze: "
                       f"{_sample(unmatched)}. Add a catch-all such as ('.*', 1.0) to optim.param_groups, "
                       f"or set optim.freeze to a preset that covers every parameter: 'full', 'head_only' "
                       f"or 'last_n_blocks' (freeze='none' leaves them all to optim.param_groups)")
    used = set(owner.values())
    for i, rule in enumerate(rules):
        if rule.required and i not in used:
            raise BadValue(f"{rule.name}: regex {rule.regex!r} matches no parameter (or only parameters an "
                           f"earlier rule owns). Freeze presets are {PRESETS}; paths look like "
                           f"{_patterns(flat_paths)}")
    sizes = dict(zip(flat_paths, (int(np.prod(np.shape(x))) for x in jax.tree.leaves(params))))
    members: dict[tuple[int, int | None], list[str]] = {}
    for path in flat_paths:
        rule = rules[owner[path]]
        split = layer_decay != 1.0 and rule.multiplier is not None
        members.setdefault((owner[path], layer_index(path, num_layers) if split else None), []).append(path)
    groups, by_path = [], {}
    for (i, layer), group_paths in sorted(members.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        rule = rules[i]
        multiplier = rule.multiplier
        if multiplier is not None and layer is not None:
            multiplier *= layer_decay ** (num_layers + 1 - layer)
        if multiplier == 0 or (end is not None and rule.start >= end):
            multiplier = None
        group = Group(name=rule.name if layer is None else f"{rule.name}@{layer}", regex=rule.regex,
                      multiplier=multiplier, start=rule.start, layer=layer, paths=tuple(group_paths),
                      size=sum(sizes[p] for p in group_paths))
        groups.append(group)
        by_path.update(dict.fromkeys(group_paths, group))
    return groups, jax.tree.map(lambda p: by_path[p], paths)


def _check_depth(paths: Sequence[str], num_layers: int) -> None:
    found = sorted({int(m.group(1)) for m in map(_LAYER.match, paths) if m})
    if found and found != list(range(num_layers)):
        raise BadValue(f"num_layers={num_layers} but the parameters hold encoder blocks "
                       f"{[f'layer_{i:02d}' for i in found]}; pass the backbone's depth")


def _patterns(paths: Sequence[str], k: int = 12) -> str:
    """Up to `k` evenly spread examples of the distinct path shapes (block numbers written as NN)."""
    shapes = list(dict.fromkeys(_LAYER_NUMBER.sub("layer_NN", p) for p in paths))
    return ", ".join(shapes[::-(-len(shapes) // k)])


def _sample(paths: Sequence[str], k: int = 6) -> str:
    shown = ", ".join(paths[:k])
    return shown + (f", ... ({len(paths)} in all)" if len(paths) > k else "")


def describe(groups: Sequence[Group], steps_per_epoch: int) -> str:
    """A table of groups (name, regex, depth, #tensors, #params, lr multiplier, start step and epoch)
    and a line with the number of trained parameters."""
    rows = [("group", "regex", "depth", "tensors", "params", "lr x", "start step", "start epoch")]
    for g in groups:
        rows.append((g.name, g.regex, "-" if g.layer is None else str(g.layer), str(len(g.paths)), f"{g.size:,}",
                     "frozen" if g.multiplier is None else f"{g.multiplier:.4g}",
                     "-" if g.multiplier is None else str(g.start),
                     "-" if g.multiplier is None else f"{g.start / steps_per_epoch:.2f}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    trained, total = sum(g.size for g in groups if g.trains), sum(g.size for g in groups)
    lines.append(f"trained: {trained:,} of {total:,} parameters ({100 * trained / max(total, 1):.1f}%)")
    return "\n".join(lines)

"""What every command shares: the config arguments, the official scripts' flags, checkpoint lists with trailing
overrides, and option spellings (``--num_iters`` and ``--num-iters`` are the same option everywhere)."""

from __future__ import annotations

import argparse
from pathlib import Path

from adplg.errors import AdplgError

# the official scripts' flags -> config keys
SEED_FLAGS = {
    "thre_pesudo_a": ("plg.mean_threshold", float),
    "thre_var_a": ("plg.var_threshold", float),
    "pl_his_num": ("plg.history", int),
    "warm_up": ("train.warm_up", int),
    "seed": ("train.seed", int),
    "batch_size": ("train.batch_size", int),
    "num_iters": ("train.num_iters", int),
    "device": ("train.device", str),
    "feature_root": ("data.feature_root", str),
    "list_dir": ("data.list_dir", str),
    "output_dir": ("output_dir", str),
}


def _options(parser: argparse.ArgumentParser) -> tuple[set[str], dict[str, argparse.ArgumentParser]]:
    """The option strings of ``parser`` itself and its sub-commands by name."""
    own: set[str] = set()
    commands: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        own.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            commands.update(action.choices)
    return own, commands


def normalize_spellings(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--num_iters`` and ``--num-iters`` are the same option everywhere: a long option the command does not know
    is replaced by its other spelling (underscores <-> dashes) when the command knows that one. The command is the
    first word naming a sub-command; the options before it are the top-level parser's."""
    known, commands = _options(parser)
    out = []
    for word in argv:
        if word in commands:  # the sub-command: its options from here on
            known, commands = _options(commands[word])[0], {}
        name, eq, value = word.partition("=")
        if word.startswith("--") and name not in known:
            for other in (name.replace("_", "-"), "--" + name[2:].replace("-", "_")):
                if other in known:
                    word = other + eq + value
                    break
        out.append(word)
    return out


def add_config_args(p: argparse.ArgumentParser, preset_default: str | None, flags=tuple(SEED_FLAGS),
                    unused_flags=()) -> None:
    """``--preset``, ``--config``, the official ``flags`` (default: all of ``SEED_FLAGS``) and trailing
    ``section.key=value`` overrides. ``unused_flags``: official flags the command accepts (an official script's
    command line) but does not use, listed in a help section of their own."""
    p.add_argument("--preset", default=preset_default,
                   help="dataset/feature preset (see `adplg presets`)"
                   + (f"; default {preset_default}" if preset_default else ""))
    p.add_argument("--improved", action="store_true",
                   help="use the improved preset of --preset (<preset>-improved: the improvement options, "
                        "`adplg presets` lists what each changes)")
    p.add_argument("--config", help="a YAML file merged over the preset")
    for flag in flags:
        key, kind = SEED_FLAGS[flag]
        p.add_argument(f"--{flag}", type=kind, default=None, help=f"sets {key}")
    if unused_flags:
        group = p.add_argument_group("official flags accepted for compatibility (this command does not use them)")
        for flag in unused_flags:
            key, kind = SEED_FLAGS[flag]
            group.add_argument(f"--{flag}", type=kind, default=None, help=f"sets {key}")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="dotted config overrides")


# the flags that override single alert rules (score, watch): library parameter (their dest) -> flag and help
ALERT_RULE_FLAGS = {
    "on_threshold": ("--threshold", "alert start threshold (overrides the rules)"),
    "off_threshold": ("--off-threshold", "alert end threshold (hysteresis; default = --threshold)"),
    "min_duration_s": ("--min-duration", "drop alerts shorter than this many seconds"),
    "merge_gap_s": ("--merge-gap", "merge alerts separated by at most this many seconds"),
}


def add_alert_rule_args(p: argparse.ArgumentParser, alerts_help: str) -> None:
    """``--alerts`` and the flags that override its rules (``score`` and ``watch``); each flag's dest is the
    parameter of :func:`adplg.inference.alerts.resolve_rules` it sets, so errors about it name the flag."""
    p.add_argument("--alerts", help=alerts_help)
    for parameter, (flag, text) in ALERT_RULE_FLAGS.items():
        p.add_argument(flag, dest=parameter, type=float, metavar=flag[2:].replace("-", "_").upper(), help=text)


def rules_from_args(args: argparse.Namespace, scorer):
    """``(rules, source)`` for ``score`` and ``watch``: :func:`adplg.inference.alerts.resolve_rules` over the
    scorer's rules, ``--alerts`` and the flags of :func:`add_alert_rule_args`; the source text names the flags
    (``"ckpt.alerts.yaml with --threshold 0.3"``)."""
    from adplg.inference.alerts import resolve_rules

    overrides = {parameter: getattr(args, parameter) for parameter in ALERT_RULE_FLAGS}
    return resolve_rules(scorer.rules, scorer.rules_source, alerts_file=args.alerts,
                         labels={parameter: flag for parameter, (flag, _) in ALERT_RULE_FLAGS.items()}, **overrides)


def chosen_preset(args: argparse.Namespace) -> str | None:
    """``--preset``, or with ``--improved`` its improved preset (``ucf-i3d`` -> ``ucf-i3d-improved``); ``--improved``
    without a preset, or for a preset that has no improved one, is an error naming the flag."""
    if not getattr(args, "improved", False):
        return args.preset
    if args.preset is None:
        raise AdplgError("expected a --preset to improve (e.g. --preset ucf-i3d --improved), got none",
                         parameter="improved")
    from adplg.preset_diff import improved_preset

    return improved_preset(args.preset)


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The official flags that were given, as overrides, then the dotted overrides."""
    out = []
    for flag, (key, _) in SEED_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{key}={value}")
    return out + list(getattr(args, "overrides", []))


def split_model_files(words: list[str]) -> tuple[list[str], list[str]]:
    """``--model_file A B k=v``: argparse gives every word to the option; ``key=value`` words that are not files
    are config overrides."""
    overrides = [w for w in words if "=" in w and not Path(w).exists()]
    return [w for w in words if w not in overrides], overrides


def option_for(parser: argparse.ArgumentParser, command: str | None, parameter: str) -> str | None:
    """The flag of ``command`` that sets the library parameter ``parameter`` (its dest, or the dest without a unit
    suffix such as ``_s``; a config key ``section.key`` by ``key``), or None when the command has no such flag."""
    parsers = _options(parser)[1]
    sub = parsers.get(command) if command else None
    key = parameter.rpartition(".")[2]
    candidates = [parameter, key, key.removesuffix("_s")]
    for action in (sub or parser)._actions:
        if action.dest in candidates and action.option_strings:
            return max(action.option_strings, key=len)
    return None

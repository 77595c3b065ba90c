"""The recipe commands: ``recipes`` (what each named recipe sets, and from where) and ``config``
(the fully resolved run config that ``train`` would run), and the ``--recipe`` option."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from ablations.data_option import add_data_option, load_run_config_with_data
from ablations.exit_codes import EXIT_BAD_INPUT
from ablations.yamlfile import ConfigFileError, parse_assignments
from core.recipes import RECIPE_KEY, RecipeError, load_recipe, recipe_names

RECIPES_EPILOG = """\
examples:
  python -m ablations recipes                          # every recipe, one line each, with its source
  python -m ablations recipes lightly_cifar10          # each field it sets, its value and the line that states it
  python -m ablations config --recipe lightly_cifar10  # the whole run config that recipe resolves to
  python -m ablations train configs/cifar10_cpu_small.yaml --recipe official_v2_cifar10

A recipe is shorthand for fields: named in a run config file or a study's base (`recipe: NAME`), with
--recipe on train, run and plan, or varied as a study axis (grid: {recipe: [A, B]}), its fields apply
first and the file's own fields on top. What a run is, is the resolved config.
"""

CONFIG_EPILOG = """\
examples:
  python -m ablations config                                       # the defaults
  python -m ablations config configs/cifar10_cpu_small.yaml --recipe solo_cifar10
  python -m ablations config --recipe paper_imagenet --set train.epochs=200 --data ~/imagenet
"""


def add_recipe_option(parser: argparse.ArgumentParser) -> None:
    """``--recipe NAME`` for train, run and plan."""
    parser.add_argument("--recipe", metavar="NAME",
                        help=f"lay a named recipe's fields under the file's own ({', '.join(recipe_names())}); "
                        "see `python -m ablations recipes`")


def overrides_with_recipe(assignments: list[str], recipe: str | None) -> dict[str, Any]:
    """``--set`` assignments as dotted overrides, plus ``recipe`` when ``--recipe`` was given."""
    overrides = parse_assignments(assignments)
    if recipe is not None:
        if RECIPE_KEY in overrides:
            raise ConfigFileError("--recipe and --set recipe=... both name a recipe: give one of them")
        overrides[RECIPE_KEY] = recipe
    return overrides


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("recipes", help="list the named recipes and their sources, or what one sets",
                       description="The named recipes (core/recipes/*.yaml): published training setups as "
                       "run-config fields, each value with the source line that states it.",
                       epilog=RECIPES_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="show every field this recipe sets, its value and its source")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("config", help="print the fully resolved run config (what train would run)",
                       description="Print, as YAML, the run config that `train` would run: the defaults, "
                       "the recipe, the file, --set and --data, resolved and validated.",
                       epilog=CONFIG_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", type=Path, help="run config YAML (default: none, the defaults)")
    add_recipe_option(p)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one field by dotted path (repeatable)")
    add_data_option(p)
    p.set_defaults(func=cmd_config)


def cmd_recipes(args: argparse.Namespace) -> int:
    if args.name is None:
        width = max(len(n) for n in recipe_names())
        for name in recipe_names():
            recipe = load_recipe(name)
            print(f"{name:<{width}}  {recipe.summary}  [{recipe.source}]")
        return 0
    try:
        recipe = load_recipe(args.name)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{recipe.name}: {recipe.summary}\nsource: {recipe.source}\n")
    width = max(len(k) for k in recipe.values)
    for dotted, value in recipe.values.items():
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        print(f"  {dotted:<{width}}  {text:<14}  {recipe.citations[dotted]}")
    print("\nEvery other field keeps its default (python -m ablations config --recipe "
          f"{recipe.name} prints them all).")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    try:
        overrides = overrides_with_recipe(args.overrides, args.recipe)
        config = load_run_config_with_data(args.config, args.data, overrides)
    except ConfigFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    made_of = [str(args.config) if args.config else "the defaults"]
    if args.recipe:
        made_of.append(f"recipe {args.recipe}")
    made_of += [f"--set {a}" for a in args.overrides] + ([f"--data {args.data}"] if args.data else [])
    print(f"# the run config of {', '.join(made_of)}, resolved (what `train` runs)")
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0

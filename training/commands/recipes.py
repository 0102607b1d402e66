"""``reid recipes``: list the training recipes, one line each with the paper it follows."""

from __future__ import annotations

import argparse

HELP = "list the training recipes"
DESCRIPTION = "Print every training recipe: its name, the paper it follows and what it trains."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``reid recipes`` takes no arguments."""
    parser.add_argument("--verbose", "-v", action="store_true", help="also print each recipe's settings")


def run(args: argparse.Namespace) -> int:
    """Print the recipes."""
    from training.engine.recipes import get_recipe, recipe_names

    names = recipe_names()
    width = max(len(n) for n in names)
    for name in names:
        recipe = get_recipe(name)
        print(f"{name:<{width}}  {recipe.description}  [paper {recipe.paper}]")
        if args.verbose:
            for key, value in sorted(recipe.defaults.items()):
                print(f"{'':<{width}}    {key} = {value!r}")
    return 0
